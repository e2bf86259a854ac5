"""One training run scored on several input laws, from one decomposition of G_train.

A student trained on one law (or on samples) and scored on laws P_1, …, P_K (a test law and its groups, say)
shares everything but the readout: with G_train = Q diag(λ) Qᵀ the weights w(t) = Q (ρ(λ, t) ∘ a/√λ) do not
depend on the law it is scored on, and law k only fixes
    L_k(w) = wᵀ G_k w − 2 wᵀ c_k + s*_k,   projected once: (QᵀG_kQ, Qᵀc_k, s*_k)   (``law_problem``).
So K laws cost one eigendecomposition of G_train plus K projections (M² r each), and each law's problem is an
ordinary ``SpectralProblem`` that the curve engine evaluates as it is.

The answer is ONE ``W2SResult`` with a leading evaluation-law axis on every array (``stack_results``; the time
grid is shared and kept (T,)): ``law_result(result, k)`` is the ordinary result on law k, with its own t*
(the per-law best), and ``losses_at(result, t)`` scores every law at common times — e.g. the per-group
errors at the t* chosen on the average test error, where the worst group is read. A leading axis (rather
than a second result type) keeps every consumer of ``W2SResult`` — JSON, plots, the curve functions —
working on each law unchanged, and makes law k's numbers identical to a run scored on law k alone.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from w2sjax.curves import W2SResult, flow_response, loss_from_response
from w2sjax.objectives import Objective, projected_evaluation
from w2sjax.spectral import Decomposition, SpectralProblem, cut_eigenvalues, inverse_sqrt


def law_problem(decomposition: Decomposition, objective: Objective, evaluation, rcond=None) -> SpectralProblem:
    """The spectral problem of ``decomposition``'s training run scored on ``evaluation`` (a Law or Samples):
    its eigenvalues and label coefficients are kept, the readout and target coefficients are law k's."""
    if decomposition.basis is None:
        raise ValueError("scoring on another law needs the decomposition's basis (solve with with_basis=True)")
    problem = decomposition.problem
    scored = dataclasses.replace(objective, evaluation=evaluation)
    gram, target, energy = projected_evaluation(scored, decomposition.basis)
    nu, w = jnp.linalg.eigh(gram)
    nu = cut_eigenvalues(nu, rcond)
    readout = (jnp.sqrt(nu)[:, None] * w.T) * inverse_sqrt(problem.eigenvalues)[None, :]
    target_coef = (w.T @ target) * inverse_sqrt(nu)
    residual = jnp.maximum(energy - jnp.sum(target_coef**2), 0)
    batch = problem.label_coef.shape[:-1]
    return SpectralProblem(problem.eigenvalues, problem.label_coef,
                           jnp.broadcast_to(target_coef, batch + target_coef.shape),
                           jnp.broadcast_to(residual, batch), readout)


law_problem_jit = jax.jit(law_problem, static_argnames=("rcond",))


def stack_results(results) -> W2SResult:
    """Results on K laws (same label sets, times and route) → one result with a leading law axis (times (T,))."""
    results = list(results)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[dataclasses.replace(r, times=None) for r in results])
    return dataclasses.replace(stacked, times=results[0].times)


def law_count(result: W2SResult) -> int:
    """K, the length of the leading law axis of a stacked result."""
    return int(result.problem.eigenvalues.shape[0]) if result.problem.eigenvalues.ndim == 2 else 1


def law_result(result: W2SResult, k: int) -> W2SResult:
    """The ordinary result on law k of a stacked result."""
    if result.problem.eigenvalues.ndim != 2:
        raise ValueError("this result has no evaluation-law axis (give test_inputs as a sequence of laws)")
    picked = jax.tree_util.tree_map(lambda x: x[k], dataclasses.replace(result, times=None))
    return dataclasses.replace(picked, times=result.times)


def loss_at_time(problem: SpectralProblem, time) -> jax.Array:
    """L(t) of every label set at its own time t (shape of the label axes, or scalar), t = ∞ (ρ = 1 on kept
    eigenvalues) and t = 0 (ρ = 0) included."""
    lam = problem.eigenvalues
    t = jnp.asarray(time, lam.dtype)[..., None]
    infinite = jnp.isinf(t)
    rho = jnp.where(infinite, (lam > 0).astype(lam.dtype), flow_response(lam, jnp.where(infinite, 1.0, t)))
    return loss_from_response(problem, rho)


def losses_at(result: W2SResult, time) -> jax.Array:
    """L_k(t) on every law k of a stacked result at times t (broadcast against the label axes: e.g.
    ``result.best_time[0]``, the t* of law 0): (K, …)."""
    return jax.vmap(lambda p: loss_at_time(p, time))(result.problem)
