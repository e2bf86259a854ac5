"""The spectral form of a training objective: what every route produces and the curve engine evaluates.

Gradient flow dw/dt = −(G w − b) from w = 0, with G = Q diag(λ) Qᵀ on its kept eigenvalues, gives
    w(t) = Q diag(g(λ, t)) Qᵀ b = Q (ρ(λ, t) ∘ a / √λ),   g = (1 − e^{−tλ})/λ,   ρ = 1 − e^{−tλ} ∈ [0, 1],
with the label coefficients a = Qᵀb/√λ. The *response* ρ is the fraction of each eigendirection learnt; other
schedules only change it (discrete GD: 1 − (1 − ηλ)^k; ridge: λ/(λ + μ)). The error
    L(w) = wᵀ G_eval w − 2 wᵀ c + s*
is a sum of non-negative terms,
    L(ρ) = ‖R_o (ρ ∘ a) − a*‖² + R,
with a readout R_o and target coefficients a* fixed by the evaluation:
  - population training, scored on the training law (G_eval = G): R_o = I, a* = Qᵀc/√λ, R = s* − ‖a*‖²
    (the part of f* outside the span of the features: the ceiling);
  - scored on another law or on held-out data: with P = Qᵀ G_eval Q = W diag(ν) Wᵀ, the readout is
    R_o = diag(√ν) Wᵀ diag(1/√λ), a* = Wᵀ Qᵀ c/√ν and R = s* − ‖a*‖² (the error of the best predictor in span(Q)).
This form keeps its relative accuracy where L ≪ s*.

Eigenvalues λ ≤ rcond · λ_max are cut to zero (default rcond = M · ε, numpy's rank tolerance): on those
directions the flow does not move.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from w2sjax.inputs import pytree


@pytree
@dataclasses.dataclass(frozen=True)
class SpectralProblem:
    """A quadratic objective in the eigenbasis of its training Gram matrix.

    Attributes:
      eigenvalues: (r,) λ, zero where cut.
      label_coef: (..., r) a = Qᵀb/√λ (zero where λ = 0); leading axes are label sets (teachers).
      target_coef: (..., s) a*.
      residual: (...) R ≥ 0.
      readout: (s, r) R_o, or None for the identity (population training scored on its own law).
    """

    eigenvalues: jax.Array
    label_coef: jax.Array
    target_coef: jax.Array
    residual: jax.Array
    readout: jax.Array | None = None


@pytree
@dataclasses.dataclass(frozen=True)
class Decomposition:
    """A route's answer: the spectral problem and, where the route has one, the basis that maps it back to
    weights, w(t) = basis @ (ρ(λ, t) ∘ a/√λ).

    Attributes:
      problem: the SpectralProblem.
      basis: (M, r) Q (eigenvectors; Krylov: V_k S), or None (infinite width).
    """

    problem: SpectralProblem
    basis: jax.Array | None = None


def default_rcond(size: int, dtype) -> float:
    """M · ε(dtype): numpy's rank tolerance."""
    return float(size * jnp.finfo(dtype).eps)


def cut_eigenvalues(eigenvalues: jax.Array, rcond: float | None) -> jax.Array:
    """Eigenvalues (..., r) with λ ≤ rcond · λ_max set to 0 (default rcond = r · ε)."""
    from w2sjax._checks import check_rcond

    check_rcond(rcond)
    if rcond is None:
        rcond = default_rcond(eigenvalues.shape[-1], eigenvalues.dtype)
    top = jnp.max(eigenvalues, axis=-1, keepdims=True)
    return jnp.where(eigenvalues > rcond * top, eigenvalues, 0)


def inverse_sqrt(eigenvalues: jax.Array) -> jax.Array:
    """1/√λ on kept eigenvalues, 0 elsewhere."""
    pos = eigenvalues > 0
    return jnp.where(pos, 1 / jnp.sqrt(jnp.where(pos, eigenvalues, 1)), 0)


def inverse(eigenvalues: jax.Array) -> jax.Array:
    """1/λ on kept eigenvalues, 0 elsewhere."""
    pos = eigenvalues > 0
    return jnp.where(pos, 1 / jnp.where(pos, eigenvalues, 1), 0)


def population_problem(eigenvalues, projected_labels, projected_target, target_energy) -> SpectralProblem:
    """The identity-readout problem from b̃ = Qᵀb (..., r), c̃ = Qᵀc (r,) and s* = E[f*²]."""
    scale = inverse_sqrt(eigenvalues)
    target_coef = projected_target * scale
    residual = jnp.maximum(target_energy - jnp.sum(target_coef**2, axis=-1), 0)
    label_coef = projected_labels * scale
    batch = label_coef.shape[:-1]
    return SpectralProblem(
        eigenvalues, label_coef, jnp.broadcast_to(target_coef, batch + target_coef.shape[-1:]),
        jnp.broadcast_to(residual, batch),
    )


def projected_problem(eigenvalues, projected_labels, eval_gram, eval_target, target_energy, rcond=None) -> SpectralProblem:
    """The readout problem from b̃ = Qᵀb (..., r), P = QᵀG_evalQ (r, r), p = Qᵀc (r,) and s*."""
    nu, w = jnp.linalg.eigh(eval_gram)
    nu = cut_eigenvalues(nu, rcond)
    readout = (jnp.sqrt(nu)[:, None] * w.T) * inverse_sqrt(eigenvalues)[None, :]
    target_coef = (w.T @ eval_target) * inverse_sqrt(nu)
    residual = jnp.maximum(target_energy - jnp.sum(target_coef**2), 0)
    label_coef = projected_labels * inverse_sqrt(eigenvalues)
    batch = label_coef.shape[:-1]
    return SpectralProblem(
        eigenvalues, label_coef, jnp.broadcast_to(target_coef, batch + target_coef.shape),
        jnp.broadcast_to(residual, batch), readout,
    )


def label_batch_size(problem: SpectralProblem) -> int:
    return int(problem.label_coef.shape[0]) if problem.label_coef.ndim > 1 else 1


def select_labels(problem: SpectralProblem, index) -> SpectralProblem:
    """The problem of one label set of a batched problem."""
    return SpectralProblem(
        problem.eigenvalues, problem.label_coef[index], problem.target_coef[index], problem.residual[index],
        problem.readout,
    )
