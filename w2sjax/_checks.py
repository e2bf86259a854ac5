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
