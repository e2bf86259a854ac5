"""Random-feature families and their exact population moments.

A width-M model has fixed bottom weights U ∈ R^{M×d}, activation σ, features φ(x) = σ(U x)/√M.
Default weight laws (DESIGN): ReLU rows uniform on the unit sphere; linear i.i.d. N(0, 1/d) entries.

Closed forms for x ~ N(0, Σ), Σ = diag(s), ‖a‖_Σ = √(aᵀΣa):
  ReLU × ReLU:   ‖a‖_Σ ‖b‖_Σ (sin θ + (π − θ) cos θ) / (2π),  cos θ = aᵀΣb / (‖a‖_Σ ‖b‖_Σ)
  ReLU × linear: aᵀΣb / 2          linear × linear: aᵀΣb
  ReLU × h_k(βᵀx) (Σ = I): ‖a‖ c_k (âᵀβ)^k,  c_0 = 1/√(2π), c_1 = 1/2, c_k = He_{k−2}(0)/(√(2π)√k!)
  linear × h_k(βᵀx) (Σ = I): aᵀβ if k = 1 else 0
Degree-1 homogeneous moments on the sphere of radius √d equal the N(0, I) ones.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_finite, check_positive_int
from w2sjax.inputs import (
    HermiteTarget,
    InputDistribution,
    LinearTarget,
    Target,
    _pytree,
    hermite_at_zero,
    static_field,
    target_terms,
)

ACTIVATIONS = ("relu", "linear")


@_pytree
@dataclasses.dataclass(frozen=True)
class RandomFeatures:
    """φ(x) = σ(U x)/√width.

    Attributes:
      weights: (M, d) bottom-layer weights U; rows past ``width`` may be zero padding.
      width: the M in 1/√M (a traced scalar, so padded models of different widths share one shape).
      activation: ``"relu"`` or ``"linear"`` (static).
    """

    weights: jax.Array
    width: jax.Array
    activation: str = static_field(default="relu")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        """Features of x (..., d) → (..., M)."""
        return activate(self.activation, x @ self.weights.T) / jnp.sqrt(self.width)


def random_features(weights, activation: str = "relu", dtype=None) -> RandomFeatures:
    """Wrap explicit weights (M, d), used exactly as given."""
    check_choice(activation, ACTIVATIONS, "activation")
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"weights must be a non-empty (M, d) matrix; got shape {w.shape}")
    check_finite(w, f"{activation} feature weights")
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    return RandomFeatures(jnp.asarray(w, dtype), jnp.asarray(w.shape[0], dtype), activation)


def sample_weights(key: jax.Array, width: int, dim: int, activation: str, dtype=None) -> jax.Array:
    """Weights by the default law: ReLU rows uniform on the unit sphere; linear entries N(0, 1/d)."""
    check_choice(activation, ACTIVATIONS, "activation")
    check_positive_int(width, "width")
    check_positive_int(dim, "dim")
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    return _sample_weights(key, int(width), int(dim), activation, jnp.dtype(dtype))


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _sample_weights(key, width, dim, activation, dtype):
    z = jax.random.normal(key, (width, dim), dtype)
    if activation == "relu":
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z / math.sqrt(dim)


def activate(activation: str, z: jax.Array) -> jax.Array:
    if activation == "relu":
        return jnp.maximum(z, 0)
    if activation == "linear":
        return z
    raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")


# --------------------------------------------------------------------------------------------------
# Moments of the unnormalised activations σ(aᵀx)
# --------------------------------------------------------------------------------------------------


def _safe_div(num, den):
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def relu_kernel(cos_theta: jax.Array) -> jax.Array:
    """(sin θ + (π − θ) cos θ)/(2π): E[relu(u) relu(v)] for unit-variance u, v with correlation cos θ."""
    c = jnp.clip(cos_theta, -1.0, 1.0)
    theta = jnp.arccos(c)
    return (jnp.sqrt(jnp.maximum(1 - c * c, 0)) + (jnp.pi - theta) * c) / (2 * jnp.pi)


def activation_cross_moment(
    act_a: str, act_b: str, A: jax.Array, B: jax.Array, variances: jax.Array
) -> jax.Array:
    """E[σ_a(A x) σ_b(B x)ᵀ] for x ~ N(0, diag(variances)): (Ma, d), (Mb, d) → (Ma, Mb)."""
    inner = (A * variances) @ B.T
    if act_a == "linear" and act_b == "linear":
        return inner
    if act_a == "relu" and act_b == "relu":
        na = jnp.sqrt(jnp.sum(A * A * variances, axis=-1))
        nb = jnp.sqrt(jnp.sum(B * B * variances, axis=-1))
        norms = na[:, None] * nb[None, :]
        return norms * relu_kernel(_safe_div(inner, norms))
    return inner / 2  # relu × linear


def activation_target_moment(act: str, A: jax.Array, target: Target, variances: jax.Array) -> jax.Array:
    """E[σ(A x) f*(x)]: (M, d) → (M,)."""
    total = jnp.zeros(A.shape[:-1], A.dtype)
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            inner = (A * variances) @ term.beta
            total = total + (inner / 2 if act == "relu" else inner)
        elif isinstance(term, HermiteTarget):
            total = total + term.scale * _hermite_moment(act, A, term.beta, term.degree)
        else:
            raise ValueError(f"unknown target term {type(term).__name__}")
    return total


def relu_hermite_coefficient(k: int) -> float:
    """c_k with E[relu(z) h_k(z)] = c_k for z ~ N(0, 1)."""
    if k == 0:
        return 1 / math.sqrt(2 * math.pi)
    if k == 1:
        return 0.5
    return hermite_at_zero(k - 2) / (math.sqrt(2 * math.pi) * math.sqrt(math.factorial(k)))


def _hermite_moment(act: str, A: jax.Array, beta: jax.Array, k: int) -> jax.Array:
    """E[σ(A x) h_k(βᵀx)] for x ~ N(0, I), ‖β‖ = 1."""
    inner = A @ beta
    if act == "linear":
        return inner if k == 1 else jnp.zeros_like(inner)
    norm = jnp.linalg.norm(A, axis=-1)
    cos = _safe_div(inner, norm)
    return norm * relu_hermite_coefficient(k) * cos**k


# --------------------------------------------------------------------------------------------------
# Moments of normalised features φ = σ(U x)/√M
# --------------------------------------------------------------------------------------------------


def feature_gram(fa: RandomFeatures, fb: RandomFeatures, inputs: InputDistribution) -> jax.Array:
    """G_ab = E[φ_a(x) φ_b(x)ᵀ], shape (Ma, Mb)."""
    moment = activation_cross_moment(fa.activation, fb.activation, fa.weights, fb.weights, inputs.variances)
    return moment / jnp.sqrt(fa.width * fb.width)


def feature_target_moment(f: RandomFeatures, target: Target, inputs: InputDistribution) -> jax.Array:
    """c = E[φ(x) f*(x)], shape (M,)."""
    return activation_target_moment(f.activation, f.weights, target, inputs.variances) / jnp.sqrt(f.width)


def feature_factor(f: RandomFeatures, inputs: InputDistribution) -> jax.Array:
    """F with E[φ φᵀ] = F Fᵀ for linear features: F = U Σ^{1/2}/√M, shape (M, d)."""
    if f.activation != "linear":
        raise ValueError("only linear features factor through the input space; use feature_gram for ReLU")
    return f.weights * jnp.sqrt(inputs.variances) / jnp.sqrt(f.width)


def check_features_inputs(f: RandomFeatures, inputs: InputDistribution, name: str = "features") -> None:
    if f.dim != inputs.dim:
        raise ValueError(f"{name} have input dimension {f.dim} but the inputs have dimension {inputs.dim}")
