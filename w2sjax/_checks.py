"""Input validation shared by the public entry points: each failure is a ValueError that says what to change."""

from __future__ import annotations

import numpy as np


def is_traced(*trees) -> bool:
    """Any leaf is a JAX tracer (inside jit, vmap or grad): concrete-value checks are skipped there."""
    import jax

    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


def check_finite(array, name: str) -> None:
    arr = np.asarray(array)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf); pass finite numbers")


def check_shape(array, shape: tuple, name: str) -> None:
    arr_shape = tuple(np.shape(array))
    if len(arr_shape) != len(shape) or any(s is not None and a != s for a, s in zip(arr_shape, shape)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}; got {arr_shape}")


def check_times(times, name: str = "times") -> np.ndarray:
    """A 1-D array of finite, non-negative real times."""
    raw = np.asarray(times)
    if np.iscomplexobj(raw) or raw.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers; got dtype {raw.dtype}")
    t = raw.astype(np.float64)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {np.shape(times)}")
    check_finite(t, name)
    if np.any(t < 0):
        raise ValueError(f"{name} must be >= 0 (gradient-flow time); got min {t.min():.3g}")
    return t


def check_choice(value, choices, name: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A whole-number seed (an int, or a float like 3.0): 1.7 or "a" is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if not (np.isfinite(value) and float(value) == int(value)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    return int(value)


def check_real(array, name: str) -> np.ndarray:
    """A real numeric array (complex or non-numeric values are a ValueError), as float64."""
    arr = np.asarray(array)
    if np.iscomplexobj(arr) or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers; got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_rcond(rcond, name: str = "rcond"):
    """None (the default M·ε) or a relative eigenvalue cutoff in [0, 1); traced values pass unchecked."""
    if rcond is None or is_traced(rcond):
        return rcond
    if isinstance(rcond, bool) or not isinstance(rcond, (int, float, np.integer, np.floating)) or not (
            np.isfinite(rcond) and 0 <= rcond < 1):
        raise ValueError(f"{name} is a relative eigenvalue cutoff in [0, 1) (None: M·ε); got {rcond!r}")
    return rcond
