"""Targets that are ReLU networks, f*(x) = Σ_j a_j relu(v_jᵀx), with exact moments.

For x ~ N(0, Σ), Σ = diag(s) (and on the sphere of radius √d, where every moment of degree 2 in x equals the
N(0, I) one):
  E[σ(Ax) f*(x)] = E[σ(Ax) relu(Vx)ᵀ] a            (``features.activation_cross_moment``; σ = relu or linear)
  s* = E[f*²]    = aᵀ E[relu(Vx) relu(Vx)ᵀ] a
  E[f*]          = Σ_j a_j ‖v_j‖_Σ / √(2π)          (Gaussian)
                 = Σ_j a_j ‖v_j‖ √d / (√(2π) E‖z‖)  (sphere; E‖z‖ = √2 Γ((d+1)/2)/Γ(d/2) for z ~ N(0, I_d))
"Standardised" scales a so that Var[f*] = s* − E[f*]² = 1.

The core targets (linear, Hermite, sums) know nothing of this class, so this module also provides drop-in
versions of ``target_values``, ``target_second_moment``, ``feature_target_moment`` and ``check_target_inputs``
that accept either kind of target and defer to the core for the core kinds.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax import features as _features
from w2sjax import inputs as _inputs
from w2sjax._checks import check_finite, check_positive_int
from w2sjax.features import RandomFeatures, activation_cross_moment, sample_weights
from w2sjax.inputs import InputDistribution, _pytree

TARGET_STREAM = 3  # key stream of random_relu_network_target: fold_in(key(seed), 3)


@_pytree
@dataclasses.dataclass(frozen=True)
class ReLUNetworkTarget:
    """f*(x) = Σ_j a_j relu(v_jᵀx).

    Attributes:
      inner_weights: (k, d) V, one row v_j per unit.
      outer_weights: (k,) a.
    """

    inner_weights: jax.Array
    outer_weights: jax.Array

    @property
    def dim(self) -> int:
        return int(self.inner_weights.shape[-1])

    @property
    def units(self) -> int:
        return int(self.inner_weights.shape[0])


def _default_float():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def relu_network_target(
    inner_weights, outer_weights, *, standardize: bool = False, inputs: InputDistribution | None = None, dtype=None
) -> ReLUNetworkTarget:
    """The target Σ_j a_j relu(v_jᵀx) for V = inner_weights (k, d), a = outer_weights (k,).

    With ``standardize=True`` a is rescaled so that Var[f*(x)] = 1 under ``inputs`` (required then)."""
    v = np.asarray(inner_weights, dtype=np.float64)
    a = np.asarray(outer_weights, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"inner_weights must be a non-empty (units, d) matrix; got shape {v.shape}")
    if a.shape != (v.shape[0],):
        raise ValueError(f"outer_weights must have shape ({v.shape[0]},), one per unit; got {a.shape}")
    check_finite(v, "ReLU network inner_weights")
    check_finite(a, "ReLU network outer_weights")
    dtype = dtype or (inputs.variances.dtype if inputs is not None else _default_float())
    target = ReLUNetworkTarget(jnp.asarray(v, dtype), jnp.asarray(a, dtype))
    if not standardize:
        return target
    if inputs is None:
        raise ValueError("standardize=True needs the input distribution: pass inputs=...")
    check_target_inputs(target, inputs)
    variance = float(relu_network_variance(target, inputs))
    if not variance > 0:
        raise ValueError("cannot standardise a ReLU network whose output is constant (variance 0); change its weights")
    return ReLUNetworkTarget(target.inner_weights, target.outer_weights / math.sqrt(variance))


def random_relu_network_target(
    seed: int, units: int, inputs: InputDistribution, *, standardize: bool = True
) -> ReLUNetworkTarget:
    """A random ReLU network: rows v_j uniform on the unit sphere, a_j ~ N(0, 1/units), drawn from
    ``fold_in(key(seed), 3)``; standardised to unit variance under ``inputs`` by default."""
    check_positive_int(units, "target units")
    v, a = _random_network_weights(int(seed), units, inputs.dim)
    return relu_network_target(
        np.asarray(v), np.asarray(a), standardize=standardize, inputs=inputs, dtype=inputs.variances.dtype
    )


@partial(jax.jit, static_argnames=("units", "dim"))
def _random_network_weights(seed, units: int, dim: int):
    key_v, key_a = jax.random.split(jax.random.fold_in(jax.random.key(seed), TARGET_STREAM))
    v = sample_weights(key_v, units, dim, "relu", jnp.float64)
    return v, jax.random.normal(key_a, (units,), jnp.float64) / math.sqrt(units)


# --------------------------------------------------------------------------------------------------
# Moments of a ReLU-network target
# --------------------------------------------------------------------------------------------------


def relu_network_values(target: ReLUNetworkTarget, x: jax.Array) -> jax.Array:
    """f*(x) = relu(x Vᵀ) a for x of shape (..., d); returns shape (...)."""
    return jnp.maximum(x @ target.inner_weights.T, 0) @ target.outer_weights


def relu_network_activation_moment(act: str, A: jax.Array, target: ReLUNetworkTarget, variances) -> jax.Array:
    """E[σ(A x) f*(x)] = E[σ(Ax) relu(Vx)ᵀ] a: (M, d) → (M,)."""
    return activation_cross_moment(act, "relu", A, target.inner_weights, variances) @ target.outer_weights


@jax.jit
def relu_network_second_moment(target: ReLUNetworkTarget, inputs: InputDistribution) -> jax.Array:
    """s* = aᵀ E[relu(Vx) relu(Vx)ᵀ] a."""
    v, a = target.inner_weights, target.outer_weights
    return a @ activation_cross_moment("relu", "relu", v, v, inputs.variances) @ a


def mean_norm_ratio(inputs: InputDistribution) -> float:
    """E[relu(vᵀx)] / (‖v‖_Σ/√(2π)): 1 for Gaussian inputs, √d / E‖z‖ on the sphere of radius √d."""
    if inputs.kind == "gaussian":
        return 1.0
    d = inputs.dim
    mean_norm = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    return math.sqrt(d) / mean_norm


@jax.jit
def relu_network_mean(target: ReLUNetworkTarget, inputs: InputDistribution) -> jax.Array:
    """E[f*(x)] = Σ_j a_j ‖v_j‖_Σ / √(2π) (Gaussian; times √d/E‖z‖ on the sphere)."""
    norms = jnp.sqrt(jnp.sum(target.inner_weights**2 * inputs.variances, axis=-1))
    return mean_norm_ratio(inputs) * (norms @ target.outer_weights) / math.sqrt(2 * math.pi)


@jax.jit
def relu_network_variance(target: ReLUNetworkTarget, inputs: InputDistribution) -> jax.Array:
    """Var[f*(x)] = s* − E[f*]²."""
    return relu_network_second_moment(target, inputs) - relu_network_mean(target, inputs) ** 2


# --------------------------------------------------------------------------------------------------
# Drop-in versions of the core target functions that accept ReLU-network targets too
# --------------------------------------------------------------------------------------------------


def target_values(target, x: jax.Array) -> jax.Array:
    """f*(x) for x (..., d) → (...); any target kind."""
    if isinstance(target, ReLUNetworkTarget):
        return relu_network_values(target, x)
    return _inputs.target_values(target, x)


def target_second_moment(target, inputs: InputDistribution) -> jax.Array:
    """s* = E[f*²]; any target kind."""
    if isinstance(target, ReLUNetworkTarget):
        return relu_network_second_moment(target, inputs)
    return _inputs.target_second_moment(target, inputs)


def activation_target_moment(act: str, A: jax.Array, target, variances) -> jax.Array:
    """E[σ(A x) f*(x)] (unnormalised); any target kind."""
    if isinstance(target, ReLUNetworkTarget):
        return relu_network_activation_moment(act, A, target, variances)
    return _features.activation_target_moment(act, A, target, variances)


def feature_target_moment(f: RandomFeatures, target, inputs: InputDistribution) -> jax.Array:
    """c = E[φ(x) f*(x)], shape (M,); any target kind."""
    return activation_target_moment(f.activation, f.weights, target, inputs.variances) / jnp.sqrt(f.width)


def target_dim(target) -> int:
    if isinstance(target, ReLUNetworkTarget):
        return target.dim
    return _inputs.target_dim(target)


def check_target_inputs(target, inputs: InputDistribution) -> None:
    """ValueError where the target's closed-form moments do not hold for these inputs (any target kind)."""
    if isinstance(target, ReLUNetworkTarget):
        if target.dim != inputs.dim:
            raise ValueError(f"target dimension {target.dim} does not match the input dimension {inputs.dim}")
        check_finite(np.asarray(target.inner_weights), "ReLU network inner_weights")
        check_finite(np.asarray(target.outer_weights), "ReLU network outer_weights")
        return
    _inputs.check_target_inputs(target, inputs)
