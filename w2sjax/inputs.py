"""Input distributions and targets, with their exact second moments.

Inputs (DESIGN):
  ``gaussian``: x ~ N(0, Σ), Σ = diag(variances) (identity by default);
  ``sphere``:   x uniform on the sphere of radius √d.

Targets:
  ``LinearTarget(beta)``:            f*(x) = ⟨β, x⟩ (any norm, any diagonal Σ);
  ``HermiteTarget(beta, degree)``:   f*(x) = scale · h_k(⟨β, x⟩), h_k = He_k / √k!, ‖β‖ = 1, Σ = I;
  ``SumTarget(terms)``:              the sum of the terms above.

All classes are frozen dataclasses registered as PyTrees: array fields are leaves, names and degrees are
static, so they pass through ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, check_positive_int, check_shape

INPUT_KINDS = ("gaussian", "sphere")


def _pytree(cls):
    """Register a frozen dataclass as a PyTree; fields with metadata static=True are static."""
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def static_field(**kwargs):
    return dataclasses.field(metadata={"static": True}, **kwargs)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class InputDistribution:
    """Distribution of x ∈ R^d.

    Attributes:
      variances: (d,) diagonal of Σ (all ones for the identity and for the sphere).
      kind: ``"gaussian"`` or ``"sphere"`` (radius √d).
    """

    variances: jax.Array
    kind: str = static_field(default="gaussian")

    @property
    def dim(self) -> int:
        return int(self.variances.shape[-1])

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples, shape (n, d)."""
        return sample_inputs(self, key, n)


def gaussian_inputs(dim: int, variances=None, dtype=None) -> InputDistribution:
    """x ~ N(0, diag(variances)); identity covariance when ``variances`` is None."""
    check_positive_int(dim, "dim")
    dtype = dtype or _default_float()
    if variances is None:
        var = jnp.ones((dim,), dtype)
    else:
        var = np.asarray(variances, dtype=np.float64)
        check_shape(var, (dim,), "input variances")
        check_finite(var, "input variances")
        if np.any(var <= 0):
            raise ValueError("input variances must be > 0 (the diagonal of Σ); got a value <= 0")
        var = jnp.asarray(var, dtype)
    return InputDistribution(var, "gaussian")


def sphere_inputs(dim: int, dtype=None) -> InputDistribution:
    """x uniform on the sphere of radius √d."""
    check_positive_int(dim, "dim")
    return InputDistribution(jnp.ones((dim,), dtype or _default_float()), "sphere")


def make_inputs(kind: str, dim: int, variances=None, dtype=None) -> InputDistribution:
    """Input distribution by name: ``"gaussian"`` (optionally diagonal ``variances``) or ``"sphere"``."""
    if kind == "gaussian":
        return gaussian_inputs(dim, variances, dtype)
    if kind == "sphere":
        if variances is not None:
            raise ValueError("sphere inputs are isotropic: drop `variances`, or use kind='gaussian'")
        return sphere_inputs(dim, dtype)
    raise ValueError(f"unknown input distribution {kind!r}; choose one of {INPUT_KINDS}")


def sample_inputs(inputs: InputDistribution, key: jax.Array, n: int) -> jax.Array:
    """n i.i.d. samples of x, shape (n, d)."""
    z = jax.random.normal(key, (n, inputs.dim), inputs.variances.dtype)
    if inputs.kind == "sphere":
        return z * (math.sqrt(inputs.dim) / jnp.linalg.norm(z, axis=-1, keepdims=True))
    return z * jnp.sqrt(inputs.variances)


def _default_float():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class LinearTarget:
    """f*(x) = ⟨β, x⟩; β of shape (d,), any norm."""

    beta: jax.Array


@_pytree
@dataclasses.dataclass(frozen=True)
class HermiteTarget:
    """f*(x) = scale · h_k(⟨β, x⟩) with h_k = He_k/√k! (E[h_j h_k] = δ_jk); ‖β‖ = 1, needs Σ = I."""

    beta: jax.Array
    scale: jax.Array
    degree: int = static_field(default=1)


@_pytree
@dataclasses.dataclass(frozen=True)
class SumTarget:
    """f*(x) = Σ_j f_j(x) over linear and Hermite terms."""

    terms: tuple


Target = Union[LinearTarget, HermiteTarget, SumTarget]
TARGET_KINDS = ("linear", "hermite", "sum")


def linear_target(beta, dtype=None) -> LinearTarget:
    beta = np.asarray(beta, dtype=np.float64)
    if beta.ndim != 1 or beta.size == 0:
        raise ValueError(f"beta must be a non-empty vector of shape (d,); got shape {beta.shape}")
    check_finite(beta, "beta")
    return LinearTarget(jnp.asarray(beta, dtype or _default_float()))


def hermite_target(beta, degree: int, scale: float = 1.0, dtype=None) -> HermiteTarget:
    """scale · h_degree(⟨β, x⟩); β must have unit norm (DESIGN), degree ≥ 0."""
    beta = np.asarray(beta, dtype=np.float64)
    if beta.ndim != 1 or beta.size == 0:
        raise ValueError(f"beta must be a non-empty vector of shape (d,); got shape {beta.shape}")
    check_finite(beta, "beta")
    if not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"Hermite degree must be an integer >= 0; got {degree!r}")
    norm = float(np.linalg.norm(beta))
    if abs(norm - 1.0) > 1e-6:
        raise ValueError(f"a Hermite target needs ‖beta‖ = 1; got ‖beta‖ = {norm:.6g} (divide beta by its norm)")
    if not np.isfinite(scale):
        raise ValueError(f"Hermite target scale must be finite; got {scale!r}")
    dtype = dtype or _default_float()
    return HermiteTarget(jnp.asarray(beta, dtype), jnp.asarray(scale, dtype), int(degree))


def sum_target(*terms) -> SumTarget:
    if not terms:
        raise ValueError("a sum target needs at least one term")
    for t in terms:
        if not isinstance(t, (LinearTarget, HermiteTarget)):
            raise ValueError(f"sum target terms must be LinearTarget or HermiteTarget; got {type(t).__name__}")
    return SumTarget(tuple(terms))


def target_terms(target: Target) -> tuple:
    if isinstance(target, SumTarget):
        return target.terms
    if isinstance(target, (LinearTarget, HermiteTarget)):
        return (target,)
    raise ValueError(f"unknown target type {type(target).__name__}; use LinearTarget, HermiteTarget or SumTarget")


def target_dim(target: Target) -> int:
    dims = {int(t.beta.shape[-1]) for t in target_terms(target)}
    if len(dims) != 1:
        raise ValueError(f"all target terms must have the same input dimension; got {sorted(dims)}")
    return dims.pop()


def hermite_polynomial(k: int, z: jax.Array) -> jax.Array:
    """Probabilists' Hermite polynomial He_k(z) by the three-term recurrence."""
    he_prev, he = jnp.ones_like(z), z
    if k == 0:
        return he_prev
    for n in range(1, k):
        he_prev, he = he, z * he - n * he_prev
    return he


def hermite_at_zero(n: int) -> float:
    """He_n(0): 0 for odd n, (−1)^{n/2} (n−1)!! for even n."""
    if n % 2:
        return 0.0
    return float((-1) ** (n // 2) * math.prod(range(n - 1, 0, -2)))


def target_values(target: Target, x: jax.Array) -> jax.Array:
    """f*(x) for x of shape (..., d); returns shape (...)."""
    total = 0.0
    for term in target_terms(target):
        z = x @ term.beta
        if isinstance(term, LinearTarget):
            total = total + z
        else:
            total = total + term.scale * hermite_polynomial(term.degree, z) / math.sqrt(math.factorial(term.degree))
    return total


def _term_pair_moment(p, q, variances) -> jax.Array:
    """E[f_p(x) f_q(x)] for two terms."""
    if isinstance(p, LinearTarget) and isinstance(q, LinearTarget):
        return jnp.sum(p.beta * variances * q.beta)
    if isinstance(p, HermiteTarget) and isinstance(q, HermiteTarget):
        if p.degree != q.degree:
            return jnp.zeros((), variances.dtype)
        return p.scale * q.scale * jnp.dot(p.beta, q.beta) ** p.degree
    lin, her = (p, q) if isinstance(p, LinearTarget) else (q, p)
    if her.degree != 1:
        return jnp.zeros((), variances.dtype)
    return her.scale * jnp.dot(lin.beta, her.beta)


def target_second_moment(target: Target, inputs: InputDistribution) -> jax.Array:
    """s* = E[f*(x)²]."""
    terms = target_terms(target)
    return sum(_term_pair_moment(p, q, inputs.variances) for p in terms for q in terms)


def check_target_inputs(target: Target, inputs: InputDistribution) -> None:
    """Raise ValueError where the target's closed-form moments do not hold for these inputs."""
    d = target_dim(target)
    if d != inputs.dim:
        raise ValueError(f"target dimension {d} does not match the input dimension {inputs.dim}")
    for term in target_terms(target):
        check_finite(np.asarray(term.beta), "target beta")
        if isinstance(term, HermiteTarget):
            if inputs.kind == "sphere" and term.degree != 1:
                raise ValueError(
                    f"Hermite targets of degree {term.degree} have no closed-form moments on the sphere "
                    "(only degree 1, which is linear); use gaussian inputs"
                )
            if inputs.kind == "gaussian" and not np.allclose(np.asarray(inputs.variances), 1.0):
                raise ValueError("Hermite targets need identity covariance (Σ = I); drop the input variances")
