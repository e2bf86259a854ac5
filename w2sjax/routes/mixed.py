"""Mixed precision for float32 problems: the O(M³) eigendecomposition in float32, everything cheap in float64.

A problem is float32 when its features' weights are (the studies' ``precision = "float32"``). Its routes then
compute
  - the moments G, B, c, s* in float64 (O(M² d), O(M n d)): a float32 Gram carries a relative error ε₃₂ in
    every entry, and a float32 residual s* − ‖a*‖² cancels;
  - the eigendecomposition of G rounded to float32 (O(M³): the only float32 work of the eigh route);
  - the projections b̃ = Qᵀb, c̃ = Qᵀc (O(M² n)) and every figure of merit in float64, in the sum-of-squares
    form of ``spectral`` (no cancellation against s* where L ≪ s*).
The eigenvalues are cut at the float64 level (M · ε₆₄ · λ_max), not at M · ε₃₂: at t* the flow still moves
along eigenvalues far below ε₃₂ λ_max (tλ ≈ 10⁻¹ there on fig2), and in float64 arithmetic their noisy
coefficients cost nothing to the error at finite times (their terms ρ a(ρ a − 2a*) ≈ tλ·… stay small). L(∞)
and L_ceil, which weigh every eigenvalue by 1/λ, are not determined by a float32 eigendecomposition below
ε₃₂ λ_max; ``w2sjax.precision`` bounds and flags them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from w2sjax.objectives import target_energy, target_moment, train_gram_and_labels
from w2sjax.spectral import Decomposition, cut_eigenvalues, default_rcond, population_problem


def is_float32(objective) -> bool:
    """The objective's features hold float32 weights (infinitely wide students have none)."""
    weights = getattr(objective.features, "weights", None)
    return weights is not None and weights.dtype == jnp.float32


def time_dtype(dtype):
    """Times of a float32 problem are kept in float64 (a float32 time moves L(t) by t L'(t) ε₃₂)."""
    return jnp.float64 if jnp.dtype(dtype) == jnp.float32 else dtype


def as_float64(tree):
    """Every float32 leaf of a PyTree cast to float64 (exact); other leaves unchanged."""
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float64) if getattr(x, "dtype", None) == jnp.float32 else x,
                                  tree)


def eigh_decomposition(objective, rcond: float | None = None) -> Decomposition:
    """Population objectives: moments in float64, eigh of G in float32, projections and the problem in float64.
    ``rcond`` default: M · ε₆₄ (see the module docstring)."""
    wide = as_float64(objective)
    gram, labels = train_gram_and_labels(wide)
    lam, q = jnp.linalg.eigh(gram.astype(jnp.float32))
    lam, q = lam.astype(jnp.float64), q.astype(jnp.float64)
    lam = cut_eigenvalues(lam, default_rcond(lam.shape[-1], jnp.float64) if rcond is None else rcond)
    problem = population_problem(lam, labels @ q, target_moment(wide) @ q, target_energy(wide))
    return Decomposition(problem, q)
