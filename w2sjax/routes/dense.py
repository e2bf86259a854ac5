"""Dense routes: one eigendecomposition of G_train (``eigh``), or of the small side of a factor (``factor``).

``eigh``:   G_train = Q diag(λ) Qᵀ (M × M, O(M³)); a = Qᵀb/√λ; population objectives read a* = Qᵀc/√λ, others
            project G_eval and c on Q (``spectral.projected_problem``).
``factor``: G_train = F Fᵀ with F (M, k), k < M, and labels with known preimages b = F β (linear features:
            k = d; samples: F = Φᵀ/√n, k = n). With FᵀF = S diag(λ) Sᵀ (k × k, O(M k²)) the eigenvectors of
            G_train are Q = F S diag(1/√λ) and a = Qᵀb/√λ = Sᵀβ exactly, without forming Q; population
            objectives read a* = Sᵀγ (c = F γ).
Both are exact at every time, ∞ included, up to rounding; both are pure and jit-able.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from w2sjax.objectives import (
    Objective,
    projected_evaluation,
    target_energy,
    target_moment,
    target_preimage,
    train_factor,
    train_gram_and_labels,
)
from w2sjax.routes import mixed
from w2sjax.spectral import (
    Decomposition,
    SpectralProblem,
    cut_eigenvalues,
    default_rcond,
    inverse,
    population_problem,
    projected_problem,
)


def eigh_decomposition(objective: Objective, rcond: float | None = None) -> Decomposition:
    """Decompose G_train (M × M) densely; basis = Q."""
    if objective.population and mixed.is_float32(objective):  # float32: eigh in float32, the rest in float64
        return mixed.eigh_decomposition(objective, rcond)
    gram, labels = train_gram_and_labels(objective)
    lam, q = jnp.linalg.eigh(gram)
    lam = cut_eigenvalues(lam, rcond)
    projected = labels @ q
    if objective.population:
        problem = population_problem(lam, projected, target_moment(objective) @ q, target_energy(objective))
    else:
        gram_eval, target_eval, energy = projected_evaluation(objective, q)
        problem = projected_problem(lam, projected, gram_eval, target_eval, energy, rcond)
    return Decomposition(problem, q)


def factor_decomposition(objective: Objective, rcond: float | None = None, with_basis: bool = True) -> Decomposition:
    """Decompose G_train = F Fᵀ through FᵀF (k × k); basis = F S diag(1/√λ) (formed only ``with_basis``, or when
    the evaluation needs it)."""
    factor, preimages = train_factor(objective)
    size = factor.shape[0]
    lam, s = jnp.linalg.eigh(factor.T @ factor)
    lam = cut_eigenvalues(lam, default_rcond(max(size, lam.shape[-1]), lam.dtype) if rcond is None else rcond)
    kept = lam > 0
    label_coef = jnp.where(kept, preimages @ s, 0)
    need_basis = with_basis or not objective.population
    basis = (factor @ s) * jnp.sqrt(inverse(lam)) if need_basis else None
    if objective.population:
        target_coef = jnp.where(kept, target_preimage(objective) @ s, 0)
        residual = jnp.maximum(target_energy(objective) - jnp.sum(target_coef**2), 0)
        batch = label_coef.shape[:-1]
        problem = SpectralProblem(
            lam, label_coef, jnp.broadcast_to(target_coef, batch + target_coef.shape), jnp.broadcast_to(residual, batch)
        )
    else:
        gram_eval, target_eval, energy = projected_evaluation(objective, basis)
        problem = projected_problem(lam, label_coef * jnp.sqrt(lam), gram_eval, target_eval, energy, rcond)
    return Decomposition(problem, basis)


eigh_route = jax.jit(eigh_decomposition, static_argnames=("rcond",))
factor_route = jax.jit(factor_decomposition, static_argnames=("rcond", "with_basis"))
