"""The spectral solver: gradient flow on a quadratic population loss, exactly, at every time at once.

Gradient flow dw/dt = −(G w − b) from w = 0, with G = Q diag(λ) Qᵀ, gives
    w(t) = Q diag(g(λ, t)) Qᵀ b,   g(λ, t) = (1 − e^{−tλ})/λ   (g(0, t) = t).
With b̃ = Qᵀb, c̃ = Qᵀc and, on the kept eigenvalues λ_i > 0,
    a_i = b̃_i/√λ_i   (labels),   a*_i = c̃_i/√λ_i   (target),
the error L(w) = wᵀGw − 2wᵀc + s* becomes a sum of non-negative terms
    L(t) = Σ_i (a_i − a*_i − e^{−tλ_i} a_i)² + R,   R = s* − Σ_i a*_i²,
which keeps its relative accuracy even where L(t) ≪ s*. Discrete gradient descent with step η replaces
e^{−tλ} by (1 − ηλ)^k (``student_loss_from_decay``).

Eigenvalues λ_i ≤ rcond · λ_max are treated as zero (their directions carry no label and no target for a
population Gram matrix). The default ``rcond`` is M · ε(dtype), numpy's rank tolerance.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from w2sjax.inputs import _pytree


@_pytree
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """G = Q diag(λ) Qᵀ restricted to its kept eigenvalues.

    Attributes:
      eigenvalues: (r,) λ, zero where cut off.
      eigenvectors: (M, r) Q with orthonormal columns.
    """

    eigenvalues: jax.Array
    eigenvectors: jax.Array


@_pytree
@dataclasses.dataclass(frozen=True)
class SpectralProblem:
    """A quadratic loss in the eigenbasis of G, ready to be evaluated at any time.

    Attributes:
      eigenvalues: (..., r) λ (zero where cut off).
      label_coef: (..., r) a = Qᵀb/√λ (zero where λ = 0).
      target_coef: (..., r) a* = Qᵀc/√λ.
      residual: (...) R = s* − Σ a*², the error of the best predictor in span(φ), clipped at 0.
    """

    eigenvalues: jax.Array
    label_coef: jax.Array
    target_coef: jax.Array
    residual: jax.Array


def default_rcond(size: int, dtype) -> float:
    return float(size * jnp.finfo(dtype).eps)


def cut_eigenvalues(eigenvalues: jax.Array, rcond: float | None) -> jax.Array:
    """Eigenvalues (..., r) with λ ≤ rcond·λ_max set to 0 (default rcond = r·ε)."""
    if rcond is None:
        rcond = default_rcond(eigenvalues.shape[-1], eigenvalues.dtype)
    top = jnp.max(eigenvalues, axis=-1, keepdims=True)
    return jnp.where(eigenvalues > rcond * top, eigenvalues, 0)


def decompose(gram: jax.Array, rcond: float | None = None) -> Spectrum:
    """Eigendecomposition of a symmetric PSD matrix (M, M), small eigenvalues cut to zero."""
    lam, q = jnp.linalg.eigh(gram)
    return Spectrum(cut_eigenvalues(lam, rcond), q)


def decompose_factor(factor: jax.Array, rcond: float | None = None) -> Spectrum:
    """Spectrum of G = F Fᵀ from the thin SVD of F (M, r), r < M: costs O(M r²), not O(M³)."""
    u, s, _ = jnp.linalg.svd(factor, full_matrices=False)
    if rcond is None:
        rcond = default_rcond(factor.shape[0], factor.dtype)
    return Spectrum(cut_eigenvalues(s * s, rcond), u)


def inverse_sqrt(eigenvalues: jax.Array) -> jax.Array:
    """1/√λ on kept eigenvalues, 0 elsewhere."""
    pos = eigenvalues > 0
    return jnp.where(pos, 1 / jnp.sqrt(jnp.where(pos, eigenvalues, 1)), 0)


def spectral_problem(
    spectrum: Spectrum, label_moment: jax.Array, target_moment: jax.Array, target_energy: jax.Array
) -> SpectralProblem:
    """Project b = E[φ y] (label_moment, (M,)) and c = E[φ f*] (target_moment, (M,)) on the eigenbasis."""
    scale = inverse_sqrt(spectrum.eigenvalues)
    label_coef = (spectrum.eigenvectors.T @ label_moment) * scale
    target_coef = (spectrum.eigenvectors.T @ target_moment) * scale
    residual = jnp.maximum(target_energy - jnp.sum(target_coef**2, axis=-1), 0)
    return SpectralProblem(spectrum.eigenvalues, label_coef, target_coef, residual)


def residual_loss(spectrum: Spectrum, target_moment: jax.Array, target_energy: jax.Array) -> jax.Array:
    """s* − cᵀG⁺c: the error of least squares in span(φ) (a teacher's L_TE, a student's ceiling)."""
    target_coef = (spectrum.eigenvectors.T @ target_moment) * inverse_sqrt(spectrum.eigenvalues)
    return jnp.maximum(target_energy - jnp.sum(target_coef**2, axis=-1), 0)


def least_squares_weights(spectrum: Spectrum, moment: jax.Array) -> jax.Array:
    """G⁺ b: the limit of gradient flow from zero, shape (M,)."""
    inv = jnp.where(spectrum.eigenvalues > 0, 1 / jnp.where(spectrum.eigenvalues > 0, spectrum.eigenvalues, 1), 0)
    q = spectrum.eigenvectors
    return q @ (inv * (q.T @ moment))


def flow_gain(eigenvalues: jax.Array, t: jax.Array) -> jax.Array:
    """g(λ, t) = (1 − e^{−tλ})/λ, with g(0, t) = t; computed with expm1 for small tλ."""
    pos = eigenvalues > 0
    lam = jnp.where(pos, eigenvalues, 1)
    return jnp.where(pos, -jnp.expm1(-t * lam) / lam, t)


def flow_weights(spectrum: Spectrum, label_moment: jax.Array, t: jax.Array) -> jax.Array:
    """w(t) = Q diag(g(λ, t)) Qᵀ b on the kept eigenvalues, shape (M,)."""
    q = spectrum.eigenvectors
    gain = jnp.where(spectrum.eigenvalues > 0, flow_gain(spectrum.eigenvalues, t), 0)
    return q @ (gain * (q.T @ label_moment))


def student_loss_from_decay(problem: SpectralProblem, decay: jax.Array) -> jax.Array:
    """L = Σ_i (a_i − a*_i − decay_i a_i)² + R for decay of shape (..., r) (broadcast against the problem)."""
    gap = problem.label_coef - problem.target_coef
    return jnp.sum((gap - decay * problem.label_coef) ** 2, axis=-1) + problem.residual


@jax.jit
def student_loss(problem: SpectralProblem, times: jax.Array) -> jax.Array:
    """L(t) for every time: times (T,) → (T,) (or (T, ...) for a batched problem)."""
    one_time = lambda t: student_loss_from_decay(problem, jnp.exp(-t * problem.eigenvalues))
    return jax.vmap(one_time)(times)


@jax.jit
def student_loss_at_infinity(problem: SpectralProblem) -> jax.Array:
    """L(∞) = Σ (a − a*)² + R: the error of G⁺b."""
    return jnp.sum((problem.label_coef - problem.target_coef) ** 2, axis=-1) + problem.residual


def student_loss_log_slope(problem: SpectralProblem, log_t: jax.Array) -> jax.Array:
    """dL/d(log t) = t · Σ_i 2 (a_i − a*_i − e^{−tλ_i} a_i) λ_i e^{−tλ_i} a_i."""
    t = jnp.exp(log_t)
    decay = jnp.exp(-t * problem.eigenvalues)
    gap = problem.label_coef - problem.target_coef
    terms = (gap - decay * problem.label_coef) * problem.eigenvalues * decay * problem.label_coef
    return 2 * t * jnp.sum(terms, axis=-1)


_BISECTION_STEPS = 80
_EDGE_EXTENSION = 20.0  # in log t: a minimum at the grid's edge is searched e^20 ≈ 5e8 times further out


def refine_log_minimum(loss_at_log, slope_at_log, log_grid: jax.Array, losses: jax.Array):
    """Minimise a scalar loss of a log-parameter u past its grid.

    The grid minimum brackets the optimum between its neighbours (extended by e^20 at an edge of the grid);
    bisection on the sign of the slope d loss/du locates it to machine precision. The result is never above
    the grid minimum.

    Args:
      loss_at_log(u), slope_at_log(u): the loss and its derivative at log-parameter u.
      log_grid: (T,) increasing log-parameters; losses: (T,) the loss on them.

    Returns:
      (parameter, loss, falls_past_top, rises_past_bottom): the refined minimum (parameter = exp(u)), and
      whether the loss still falls e^20 past the grid's top or still rises e^20 below its bottom (the
      bisection never moved that end of the bracket).
    """
    k = jnp.argmin(losses)
    last = log_grid.shape[0] - 1
    lo_start = jnp.where(k > 0, log_grid[jnp.maximum(k - 1, 0)], log_grid[0] - _EDGE_EXTENSION)
    hi_start = jnp.where(k < last, log_grid[jnp.minimum(k + 1, last)], log_grid[last] + _EDGE_EXTENSION)

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        rising = slope_at_log(mid) > 0
        return jnp.where(rising, lo, mid), jnp.where(rising, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, step, (lo_start, hi_start))
    mid = 0.5 * (lo + hi)
    loss_refined = loss_at_log(mid)
    better = loss_refined <= losses[k]
    param = jnp.where(better, jnp.exp(mid), jnp.exp(log_grid[k]))
    loss = jnp.where(better, loss_refined, losses[k])
    return param, loss, (k == last) & (hi == hi_start), (k == 0) & (lo == lo_start)


def tie_tolerance(problem) -> jax.Array:
    """64 ε s*: two errors closer than this are equal up to rounding (s* = Σ a*² + R = L(0))."""
    s_star = jnp.sum(problem.target_coef**2, axis=-1) + problem.residual
    return 64 * jnp.finfo(problem.eigenvalues.dtype).eps * s_star


@jax.jit
def best_time(problem: SpectralProblem, times: jax.Array, losses: jax.Array | None = None):
    """Optimal stopping time t* = argmin_t L(t) and L(t*), refined past the grid.

    The grid minimum brackets t* between its neighbours (extended by e^20 at either edge of the grid);
    bisection on the sign of dL/d(log t) then locates it to machine precision. t* = ∞ when the error never
    rises past the grid's last point (a curve that only falls), or when L(∞) is within ``tie_tolerance``
    (64 ε s*) of the best finite candidate. The returned loss is never above the grid minimum. Times must be increasing
    and positive. Works on an unbatched problem; vmap it for batches.

    Returns:
      (t*, L(t*)) as scalars.
    """
    if losses is None:
        losses = student_loss(problem, times)
    loss_at = lambda u: student_loss_from_decay(problem, jnp.exp(-jnp.exp(u) * problem.eigenvalues))
    slope_at = lambda u: student_loss_log_slope(problem, u)
    t_best, loss_best, never_rises, _ = refine_log_minimum(loss_at, slope_at, jnp.log(times), losses)
    loss_inf = student_loss_at_infinity(problem)
    # Still falling from the grid's last point to e^20 past it, or no higher at ∞ up to rounding (a curve
    # flat within rounding has its grid argmin anywhere on the flat tail): t* = ∞.
    at_infinity = never_rises | (loss_inf <= loss_best + tie_tolerance(problem))
    return jnp.where(at_infinity, jnp.inf, t_best), jnp.where(at_infinity, jnp.minimum(loss_inf, loss_best), loss_best)
