"""Targets f*: functions of x with exact moments. Every target is a sum of single-index units (``kernels``).

  ``LinearTarget(beta)``:                    f*(x) = ⟨β, x⟩
  ``HermiteTarget(beta, scale, degree)``:    f*(x) = scale · h_k(⟨β, x⟩), h_k = He_k/√k!
  ``NetworkTarget(inner, outer, activation)``: f*(x) = Σ_j a_j σ(v_jᵀx) (a ReLU or linear network; a trained
                                              teacher's function is one, with a = w_T/√M_TE)
  ``SumTarget(terms)``:                      the sum of its terms

A Hermite target with ‖β‖_Σ = 1 has E[h_k²] = 1 (the paper's convention: ‖β‖ = 1, Σ = I); any other β and Σ
are allowed and their moments are exact. Targets are frozen dataclasses registered as PyTrees: a batch of
targets of one structure (e.g. teachers padded to one width) is the same class with a leading axis.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_finite, check_positive_int, is_traced
from w2sjax.inputs import components, default_float, input_dim, pytree, static_field
from w2sjax.kernels import check_sphere_units, unit_mean, unit_moment, unit_values

NETWORK_ACTIVATIONS = ("relu", "linear")


@pytree
@dataclasses.dataclass(frozen=True)
class LinearTarget:
    """f*(x) = ⟨β, x⟩; β of shape (d,)."""

    beta: jax.Array


@pytree
@dataclasses.dataclass(frozen=True)
class HermiteTarget:
    """f*(x) = scale · h_k(⟨β, x⟩), h_k = He_k/√k!."""

    beta: jax.Array
    scale: jax.Array
    degree: int = static_field(default=1)


@pytree
@dataclasses.dataclass(frozen=True)
class NetworkTarget:
    """f*(x) = Σ_j a_j σ(v_jᵀx).

    Attributes:
      inner: (k, d) the rows v_j (zero rows are padding: they add nothing).
      outer: (k,) the coefficients a_j.
      activation: ``"relu"`` or ``"linear"`` (static).
    """

    inner: jax.Array
    outer: jax.Array
    activation: str = static_field(default="relu")

    @property
    def units(self) -> int:
        return int(self.inner.shape[-2])


@pytree
@dataclasses.dataclass(frozen=True)
class SumTarget:
    """f*(x) = Σ_j f_j(x) over linear, Hermite and network terms."""

    terms: tuple


Target = Union[LinearTarget, HermiteTarget, NetworkTarget, SumTarget]
TARGET_TYPES = (LinearTarget, HermiteTarget, NetworkTarget, SumTarget)


# --------------------------------------------------------------------------------------------------
# Constructors (validate concrete values; the classes themselves take arrays as they are)
# --------------------------------------------------------------------------------------------------


def _vector(beta, name: str):
    """A checked float64 vector; a traced one (jit/vmap/grad) is checked for shape only."""
    if is_traced(beta):
        if jnp.ndim(beta) != 1 or jnp.size(beta) == 0:
            raise ValueError(f"{name} must be a non-empty vector of shape (d,); got shape {jnp.shape(beta)}")
        return beta
    b = np.asarray(beta)
    if np.iscomplexobj(b):
        raise ValueError(f"{name} must be real; got complex values")
    b = np.asarray(b, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"{name} must be a non-empty vector of shape (d,); got shape {b.shape}")
    check_finite(b, name)
    return b


def linear_target(beta, dtype=None) -> LinearTarget:
    """f*(x) = ⟨β, x⟩."""
    return LinearTarget(jnp.asarray(_vector(beta, "beta"), dtype or default_float()))


def hermite_target(beta, degree: int, scale: float = 1.0, dtype=None) -> HermiteTarget:
    """scale · h_degree(⟨β, x⟩). The paper's convention is ‖β‖ = 1 with Σ = I (then E[h_k²] = 1)."""
    b = _vector(beta, "beta")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"Hermite degree must be an integer >= 0; got {degree!r}")
    if not is_traced(scale) and (not np.isfinite(scale) or np.iscomplexobj(scale)):
        raise ValueError(f"Hermite target scale must be a finite real number; got {scale!r}")
    dtype = dtype or default_float()
    scale = jnp.asarray(scale if is_traced(scale) else float(scale), dtype)
    return HermiteTarget(jnp.asarray(b, dtype), scale, int(degree))


def network_target(inner, outer, activation: str = "relu", dtype=None) -> NetworkTarget:
    """Σ_j a_j σ(v_jᵀx) for V = inner (k, d), a = outer (k,)."""
    check_choice(activation, NETWORK_ACTIVATIONS, "network activation")
    dtype = dtype or default_float()
    if is_traced(inner, outer):
        if jnp.ndim(inner) != 2 or jnp.shape(outer) != jnp.shape(inner)[:1]:
            raise ValueError(f"network weights must be inner (units, d) and outer (units,); got shapes "
                             f"{jnp.shape(inner)} and {jnp.shape(outer)}")
        return NetworkTarget(jnp.asarray(inner, dtype), jnp.asarray(outer, dtype), activation)
    v = np.asarray(inner, dtype=np.float64)
    a = np.asarray(outer, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"network inner weights must be a non-empty (units, d) matrix; got shape {v.shape}")
    if a.shape != (v.shape[0],):
        raise ValueError(f"network outer weights must have shape ({v.shape[0]},), one per unit; got {a.shape}")
    check_finite(v, "network inner weights")
    check_finite(a, "network outer weights")
    return NetworkTarget(jnp.asarray(v, dtype), jnp.asarray(a, dtype), activation)


def sum_target(*terms) -> SumTarget:
    """The sum of linear, Hermite and network targets (sums are flattened)."""
    if not terms:
        raise ValueError("a sum target needs at least one term")
    flat = []
    for t in terms:
        if not isinstance(t, TARGET_TYPES):
            raise ValueError(f"sum target terms must be targets; got {type(t).__name__}")
        flat.extend(target_terms(t))
    return SumTarget(tuple(flat))


def relu_network_target(inner, outer, *, standardize: bool = False, inputs=None, dtype=None) -> NetworkTarget:
    """A ReLU network Σ_j a_j relu(v_jᵀx); ``standardize=True`` rescales a so that Var[f*] = 1 under ``inputs``."""
    target = network_target(inner, outer, "relu", dtype or (None if inputs is None else inputs_dtype(inputs)))
    if not standardize:
        return target
    if inputs is None:
        raise ValueError("standardize=True needs the input distribution: pass inputs=...")
    check_target_inputs(target, inputs)
    variance = float(target_second_moment(target, inputs) - target_mean(target, inputs) ** 2)
    if not variance > 0:
        raise ValueError("cannot standardise a network whose output is constant (variance 0); change its weights")
    return NetworkTarget(target.inner, target.outer / math.sqrt(variance), "relu")


TARGET_STREAM = 3  # key stream of random_relu_network_target: fold_in(key(seed), 3)


def random_relu_network_target(seed: int, units: int, inputs, *, standardize: bool = True) -> NetworkTarget:
    """A random ReLU network: rows uniform on the unit sphere, a_j ~ N(0, 1/units), from ``fold_in(key(seed), 3)``;
    standardised to unit variance under ``inputs`` by default."""
    check_positive_int(units, "target units")
    d = input_dim(inputs)
    key_v, key_a = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), TARGET_STREAM))
    z = jax.random.normal(key_v, (units, d), jnp.float64)
    v = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    a = jax.random.normal(key_a, (units,), jnp.float64) / math.sqrt(units)
    return relu_network_target(np.asarray(v), np.asarray(a), standardize=standardize, inputs=inputs,
                               dtype=inputs_dtype(inputs))


def inputs_dtype(inputs):
    return components(inputs)[0][1].dtype


# --------------------------------------------------------------------------------------------------
# Units, values and moments
# --------------------------------------------------------------------------------------------------


def target_terms(target: Target) -> tuple:
    if isinstance(target, SumTarget):
        return target.terms
    if isinstance(target, TARGET_TYPES):
        return (target,)
    raise ValueError(
        f"unknown target type {type(target).__name__}; use LinearTarget, HermiteTarget, NetworkTarget or SumTarget"
    )


def target_units(target: Target) -> list:
    """[(kind, degree, directions (k, d), coefficients (k,)), …] with f* = Σ coefficientsᵀ σ(directions x)."""
    units = []
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            units.append(("linear", 1, term.beta[..., None, :], jnp.ones(term.beta.shape[:-1] + (1,), term.beta.dtype)))
        elif isinstance(term, HermiteTarget):
            units.append(("hermite", term.degree, term.beta[..., None, :], term.scale[..., None]))
        else:
            units.append((term.activation, 1, term.inner, term.outer))
    return units


def target_dim(target: Target) -> int:
    dims = {int(u[2].shape[-1]) for u in target_units(target)}
    if len(dims) != 1:
        raise ValueError(f"all target terms must have the same input dimension; got {sorted(dims)}")
    return dims.pop()


def target_values(target: Target, x: jax.Array) -> jax.Array:
    """f*(x) for x of shape (..., d); returns shape (...)."""
    total = 0.0
    for kind, degree, directions, coef in target_units(target):
        total = total + unit_values(kind, degree, x @ directions.T) @ coef
    return total


def target_second_moment(target: Target, inputs) -> jax.Array:
    """s* = E[f*(x)²]."""
    units = target_units(target)
    total = 0.0
    for ka, da, A, ca in units:
        for kb, db, B, cb in units:
            total = total + ca @ unit_moment(ka, da, A, kb, db, B, inputs) @ cb
    return total


def target_mean(target: Target, inputs) -> jax.Array:
    """E[f*(x)]."""
    return sum(unit_mean(kind, degree, A, inputs) @ coef for kind, degree, A, coef in target_units(target))


def units_target_moment(kind: str, degree: int, A: jax.Array, target: Target, inputs) -> jax.Array:
    """E[σ(A x) f*(x)] for units σ(A x): (M, d) → (M,)."""
    total = 0.0
    for kb, db, B, cb in target_units(target):
        total = total + unit_moment(kind, degree, A, kb, db, B, inputs) @ cb
    return total


def target_cross_moment(p: Target, q: Target, inputs) -> jax.Array:
    """E[f_p(x) f_q(x)]."""
    total = 0.0
    for ka, da, A, ca in target_units(p):
        total = total + ca @ units_target_moment(ka, da, A, q, inputs)
    return total


def check_target_inputs(target: Target, inputs) -> None:
    """ValueError where the target does not fit the inputs (dimension, non-finite values, sphere units)."""
    d = target_dim(target)
    if d != input_dim(inputs):
        raise ValueError(f"target dimension {d} does not match the input dimension {input_dim(inputs)}")
    sphere = any(law.kind == "sphere" for _, law in components(inputs))
    for kind, degree, directions, coef in target_units(target):
        if not is_traced(directions, coef):
            check_finite(np.asarray(directions), "target directions")
            check_finite(np.asarray(coef), "target coefficients")
        if sphere:
            check_sphere_units(kind, degree, "target")


def scale_target(target: Target, factor) -> Target:
    """factor · f*."""
    out = []
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            out.append(LinearTarget(term.beta * factor))
        elif isinstance(term, HermiteTarget):
            out.append(HermiteTarget(term.beta, term.scale * factor, term.degree))
        else:
            out.append(NetworkTarget(term.inner, term.outer * factor, term.activation))
    return out[0] if not isinstance(target, SumTarget) else SumTarget(tuple(out))


def cast_target(target: Target, dtype) -> Target:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), target)
