"""Exact derivatives of the spectral figures of merit, robust to equal and near-equal eigenvalues.

The figures of a population objective are smooth *spectral functions* of the training Gram matrix, although
its eigenvectors are not (they are not even defined on a repeated eigenvalue). With G = Q diag(λ) Qᵀ and
x̃ = Qᵀx, a spectral form F = xᵀ f(G) y has the derivative (Daleckii–Krein)

    dF = Σ_ij Γ_ij (QᵀdG Q)_ij x̃_i ỹ_j + (Qᵀdx)ᵀ f(λ) ∘ ỹ + x̃ᵀ f(λ) ∘ (Qᵀdy),
    Γ_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j),  Γ_ii = f'(λ_i),

with no division by an eigenvalue gap. Near-ties (|λ_i − λ_j| ≤ ``NEAR_TIE`` · the scale on which f varies)
use Γ_ij = (f'(λ_i) + f'(λ_j))/2 − (f'''(λ_i) + f'''(λ_j)) (λ_i − λ_j)²/24 (error O(gap⁴)); elsewhere the
quotient itself (error ε/``NEAR_TIE`` relative to the scale). Cut eigenvalues (``spectral.cut_eigenvalues``)
are zero and carry f = 0: Γ_ij = f(λ_i)/λ_i between a kept λ_i and a cut one, 0 between two cut ones. This is
the exact derivative wherever the cut directions are an exact null space (linear features with M > d,
duplicated features, zero padding rows) and the derivative with the cut set held fixed elsewhere.

The figures in these terms (eigh route: G_train, b, c; factor route: C = FᵀF, the label and target preimages
β, γ, with λ^{2α} = 1 instead of 1/λ):

    L(t)     = bᵀ h₁(G) b − 2 bᵀ h₂(G) c + s*,    h₁ = ρ²/λ, h₂ = ρ/λ, ρ = 1 − e^{−tλ}
    L(∞)     = bᵀ G⁺ b − 2 bᵀ G⁺ c + s*;          L_ceil = R = s* − cᵀ G⁺ c
    t*       = e^{u*} with s(u*) = 0, s = dL/du = bᵀ ∂_u h₁(G) b − 2 bᵀ ∂_u h₂(G) c (u = log t):
               du* = −∂_θ s / ∂_u s (implicit function theorem; ∂_u s = L''(u*) > 0 at a minimum)
    L*       = L(t*): dL* = ∂_θ L(t*) (envelope theorem); L(∞) where t* = ∞, s* where t* = 0.

``eigh_solution``, ``factor_solution`` and ``teacher_solution`` run the routes exactly as the engine does
(the forward values are those of ``routes.dense`` and ``curves.summarize``) and carry these derivatives as
custom VJPs: ``jax.grad``, ``jax.vjp``, ``jit`` and ``vmap`` apply; forward-mode (``jax.jvp``) does not. The
moments (G, b, c, s*) are differentiated by JAX through the kernels of ``kernels``. The decomposition
itself (eigenvalues, eigenvectors, the spectral problem) is not differentiable: asking for its derivative
raises; the error estimates are treated as constants.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from w2sjax.curves import (
    RouteInfo,
    flow_response,
    flow_response_log_slope,
    loss_curvature,
    loss_from_response,
    loss_slope_from_response,
    summarize_compiled,
)
from w2sjax.objectives import Objective, target_energy, target_moment, target_preimage, train_factor, train_gram_and_labels
from w2sjax.routes import dense
from w2sjax.spectral import SpectralProblem, inverse_sqrt

NEAR_TIE = 1e-3
"""Eigenvalue pairs closer than this, relative to the scale on which f varies (min(λ, 1/t)), use the Taylor
form of the divided difference (error ≤ (10⁻³)⁴/…); others use the quotient (error ≈ ε/10⁻³)."""
PHI_SERIES = 0.25
"""(1 − e^{−x})/x from its Taylor series below this x (16 terms: below ε), from expm1 above."""


# --------------------------------------------------------------------------------------------------
# Spectral functions of the flow and their divided differences
# --------------------------------------------------------------------------------------------------


def phi1(x: jax.Array) -> jax.Array:
    """(1 − e^{−x})/x for x ≥ 0 (1 at 0), accurate with all its derivatives (series below PHI_SERIES)."""
    small = x < PHI_SERIES
    xs = jnp.where(small, x, 0.0)
    series = jnp.zeros_like(x)
    for k in range(16, -1, -1):
        series = series * (-xs) + 1.0 / math.factorial(k + 1)
    xl = jnp.where(small, 1.0, x)
    return jnp.where(small, series, -jnp.expm1(-xl) / xl)


def flow_functions(t, factor: bool) -> dict:
    """The spectral functions of the flow at time t: h1, h2 (the loss), s1, s2 (its slope in u = log t).

    eigh route (factor=False): h1 = ρ²/λ, h2 = ρ/λ, s1 = ∂_u h1 = 2ρ t e^{−tλ}, s2 = ∂_u h2 = t e^{−tλ};
    factor route: each times λ (h1 = ρ², h2 = ρ, …). t = None: t = ∞ (h1 = h2 = 1/λ, or 1)."""
    if t is None:
        if factor:
            one = lambda lam: jnp.ones_like(lam)
            return {"h1": one, "h2": one}
        inv = lambda lam: 1.0 / lam
        return {"h1": inv, "h2": inv}

    def h2(lam):
        return t * phi1(t * lam)

    def h1(lam):
        x = t * lam
        return t * x * phi1(x) ** 2

    def s2(lam):
        return t * jnp.exp(-t * lam)

    def s1(lam):
        x = t * lam
        return 2 * t * x * phi1(x) * jnp.exp(-x)

    out = {"h1": h1, "h2": h2, "s1": s1, "s2": s2}
    if factor:
        out = {k: (lambda f: (lambda lam: lam * f(lam)))(f) for k, f in out.items()}
    return out


def _derivative(fn, order: int):
    for _ in range(order):
        fn = (lambda g: (lambda x: jax.jvp(g, (x,), (jnp.ones_like(x),))[1]))(fn)
    return fn


def divided_differences(fn, eigenvalues: jax.Array, rate=None):
    """(Γ (r, r), f (r,)): Γ_ij = f[λ_i, λ_j] for an elementwise f of the kept eigenvalues, f = 0 on cut ones.

    Args:
      fn: f on positive eigenvalues (elementwise jnp).
      eigenvalues: (r,) λ, exactly 0 where cut.
      rate: the t of the flow (f varies on the scale min(λ, 1/t)); None for t = ∞ (scale λ).
    """
    lam = eigenvalues
    kept = lam > 0
    safe = jnp.where(kept, lam, 1.0)
    f = jnp.where(kept, fn(safe), 0.0)
    d1 = jnp.where(kept, _derivative(fn, 1)(safe), 0.0)
    d3 = jnp.where(kept, _derivative(fn, 3)(safe), 0.0)
    a, b = lam[:, None], lam[None, :]
    diff = a - b
    scale = jnp.maximum(a, b)
    if rate is not None:
        scale = jnp.minimum(scale, 1.0 / rate)
    both = kept[:, None] & kept[None, :]
    near = both & (jnp.abs(diff) <= NEAR_TIE * scale)
    direct = (f[:, None] - f[None, :]) / jnp.where(near | (diff == 0), 1.0, diff)
    taylor = 0.5 * (d1[:, None] + d1[None, :]) - (d3[:, None] + d3[None, :]) * diff**2 / 24
    gamma = jnp.where(near, taylor, direct)
    return jnp.where(kept[:, None] | kept[None, :], gamma, 0.0), f


# --------------------------------------------------------------------------------------------------
# Cotangents of the figures in the eigenbasis
# --------------------------------------------------------------------------------------------------


def _zero_or(ct, like):
    """A cotangent as an array (zeros where it is symbolically zero)."""
    if ct is None or isinstance(ct, SymbolicZero):
        return jnp.zeros(jnp.shape(like), jnp.result_type(like))
    return ct


def _is_zero(ct) -> bool:
    return ct is None or isinstance(ct, SymbolicZero)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Cotangents:
    """Cotangents accumulated in the eigenbasis: of QᵀGQ (r, r), of x̃ = Qᵀx (n, r), ỹ = Qᵀy (r,), and s*."""

    gram: jax.Array
    labels: jax.Array
    target: jax.Array
    energy: jax.Array

    def tree(self):
        return (self.gram, self.labels, self.target, self.energy)


def _form_cotangent(fns, keys, lam, labels, target, weights, rate):
    """Cotangent contributions of Σ_l w_l (x_lᵀ f_a(G) x_l − 2 x_lᵀ f_b(G) y) for (f_a, f_b) = fns[keys]:
    (Γ_a ∘ Σ w_l x̃_l x̃_lᵀ − 2 Γ_b ∘ (Σ w_l x̃_l) ỹᵀ, x̃ cotangent (n, r), ỹ cotangent (r,))."""
    gamma_a, f_a = divided_differences(fns[keys[0]], lam, rate)
    gamma_b, f_b = divided_differences(fns[keys[1]], lam, rate)
    weighted = weights @ labels
    outer = (labels * weights[:, None]).T @ labels
    gram = gamma_a * outer - 2 * gamma_b * (weighted[:, None] * target[None, :])
    label_ct = weights[:, None] * (2 * f_a * labels - 2 * f_b * target)
    target_ct = -2 * f_b * weighted
    return gram, label_ct, target_ct


def _add(acc: _Cotangents, gram, labels, target, energy=0.0) -> _Cotangents:
    return _Cotangents(acc.gram + gram, acc.labels + labels, acc.target + target, acc.energy + energy)


def spectral_cotangents(problem: SpectralProblem, labels, target, times, result, cts, factor: bool) -> _Cotangents:
    """Cotangents of the moments in the eigenbasis from those of the figures of a population problem.

    Args:
      problem: the route's SpectralProblem (eigenvalues cut to 0).
      labels: (n, r) x̃ = Qᵀb (eigh) or Sᵀβ (factor); target: (r,) ỹ = Qᵀc or Sᵀγ.
      times: (T,); result: the W2SResult of the forward pass.
      cts: {figure: cotangent or None}: student_loss (n, T), student_loss_at_infinity, ceiling_loss,
        best_time, best_student_loss (n,).
    """
    lam = problem.eigenvalues
    n, r = labels.shape
    dtype = labels.dtype
    acc = _Cotangents(jnp.zeros((r, r), dtype), jnp.zeros((n, r), dtype), jnp.zeros((r,), dtype), jnp.zeros((), dtype))
    infinity = flow_functions(None, factor)
    at_inf = jnp.zeros((n,), dtype)
    if cts.get("student_loss_at_infinity") is not None:
        at_inf = at_inf + cts["student_loss_at_infinity"]
    best_loss_ct = cts.get("best_student_loss")
    best_time_ct = cts.get("best_time")
    location = result.best_time_location
    if best_loss_ct is not None:  # L* at t* = ∞ is L(∞); at t* = 0 it is s*
        at_inf = at_inf + jnp.where(location == 2, best_loss_ct, 0.0)
        acc = _add(acc, 0.0, 0.0, 0.0, jnp.sum(jnp.where(location == -2, best_loss_ct, 0.0)))
    if cts.get("student_loss_at_infinity") is not None or best_loss_ct is not None:
        gram, label_ct, target_ct = _form_cotangent(infinity, ("h1", "h2"), lam, labels, target, at_inf, None)
        acc = _add(acc, gram, label_ct, target_ct, jnp.sum(at_inf))
    if cts.get("ceiling_loss") is not None:  # R = s* − yᵀ G⁺ y
        w = jnp.sum(cts["ceiling_loss"])
        gamma, f = divided_differences(infinity["h2"], lam, None)
        acc = _add(acc, -w * gamma * (target[:, None] * target[None, :]), 0.0, -2 * w * f * target, w)
    if best_loss_ct is not None or best_time_ct is not None:
        acc = _best_cotangents(acc, problem, labels, target, result, best_loss_ct, best_time_ct, factor)
    if cts.get("student_loss") is not None:
        acc = _curve_cotangents(acc, lam, labels, target, times, cts["student_loss"], factor)
    return acc


def _best_cotangents(acc, problem, labels, target, result, loss_ct, time_ct, factor):
    """t* (implicit function theorem) and L* (envelope theorem) at interior optima, one label set at a time."""
    lam = problem.eigenvalues
    n = labels.shape[0]
    dtype = labels.dtype
    t_best = result.best_time
    interior = jnp.abs(result.best_time_location) <= 1
    rate = jnp.where(interior, t_best, 1.0)
    u = jnp.log(rate)

    def curvature(a, s, res, ui):
        return loss_curvature(SpectralProblem(lam, a, s, res, problem.readout), ui)

    curv = jax.vmap(curvature)(problem.label_coef, problem.target_coef, problem.residual, u)
    loss_w = jnp.zeros((n,), dtype) if loss_ct is None else jnp.where(interior, loss_ct, 0.0)
    slope_w = jnp.zeros((n,), dtype)
    if time_ct is not None:  # dt* = t* du* = −t* ds / L''(u*)
        ok = interior & (curv > 0)
        slope_w = jnp.where(ok, -time_ct * rate / jnp.where(ok, curv, 1.0), 0.0)

    def one(carry, inputs):
        l, t, wl, ws = inputs
        fns = flow_functions(t, factor)
        onehot_l = jax.nn.one_hot(l, n, dtype=dtype) * wl
        onehot_s = jax.nn.one_hot(l, n, dtype=dtype) * ws
        g1, x1, y1 = _form_cotangent(fns, ("h1", "h2"), lam, labels, target, onehot_l, t)
        g2, x2, y2 = _form_cotangent(fns, ("s1", "s2"), lam, labels, target, onehot_s, t)
        return _add(carry, g1 + g2, x1 + x2, y1 + y2, wl), None

    def step(carry, inputs):
        skip = (inputs[2] == 0) & (inputs[3] == 0)
        return jax.lax.cond(skip, lambda c, i: (c, None), one, carry, inputs)

    acc, _ = jax.lax.scan(step, acc, (jnp.arange(n), rate, loss_w, slope_w))
    return acc


def _curve_cotangents(acc, lam, labels, target, times, curve_ct, factor):
    """L(t) at every grid time, one time at a time (times whose cotangent is zero are skipped)."""

    def one(carry, inputs):
        t, w = inputs
        gram, label_ct, target_ct = _form_cotangent(flow_functions(t, factor), ("h1", "h2"), lam, labels, target, w, t)
        return _add(carry, gram, label_ct, target_ct, jnp.sum(w)), None

    def step(carry, inputs):
        return jax.lax.cond(jnp.all(inputs[1] == 0), lambda c, i: (c, None), one, carry, inputs)

    acc, _ = jax.lax.scan(step, acc, (times, curve_ct.T))
    return acc


def times_cotangent(problem: SpectralProblem, times, curve_ct):
    """Σ_l ct_lt dL_l/dt = Σ_l ct_lt s_l(t)/t."""
    lam = problem.eigenvalues

    def slope(t):
        return loss_slope_from_response(problem, flow_response(lam, t), flow_response_log_slope(lam, t))

    slopes = jax.vmap(slope, out_axes=-1)(times)
    return jnp.sum(curve_ct * slopes, axis=0) / times


def _symmetric(x):
    return 0.5 * (x + x.T)


_FIGURES = ("student_loss", "student_loss_at_infinity", "ceiling_loss", "best_time", "best_student_loss")


def _figure_cotangents(result_ct) -> dict:
    return {k: (None if _is_zero(getattr(result_ct, k)) else getattr(result_ct, k)) for k in _FIGURES}


def _check_no_decomposition_cotangent(*trees):
    for tree in trees:
        for leaf in jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, SymbolicZero)):
            if not _is_zero(leaf):
                raise ValueError(
                    "the decomposition (eigenvalues, eigenvectors, the spectral problem) is not differentiable "
                    "(eigenvectors of repeated eigenvalues are not defined); differentiate the figures of merit "
                    "(student_loss, best_student_loss, best_time, student_loss_at_infinity, ceiling_loss)"
                )


def _value(tree):
    """Primal values of a tree of ``CustomVJPPrimal`` (custom VJPs with symbolic zeros)."""
    return jax.tree_util.tree_map(lambda x: x.value if isinstance(x, CustomVJPPrimal) else x, tree,
                                  is_leaf=lambda x: isinstance(x, CustomVJPPrimal))




# --------------------------------------------------------------------------------------------------
# The eigh route (population objectives)
# --------------------------------------------------------------------------------------------------


def population_moments(objective: Objective):
    """(G, B, c, s*) of a population objective."""
    gram, labels = train_gram_and_labels(objective)
    return gram, labels, target_moment(objective), target_energy(objective)


def _eigh_primal(objective: Objective, times, rcond, route: RouteInfo):
    decomposition = dense.eigh_route(objective, rcond=rcond)
    return summarize_compiled(decomposition.problem, times, route=route), decomposition


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def eigh_solution(objective: Objective, times, rcond, route: RouteInfo):
    """(W2SResult, Decomposition) of a population objective by the eigh route, with exact derivatives."""
    return _eigh_primal(objective, times, rcond, route)


def _eigh_fwd(objective, times, rcond, route):
    objective, times = _value(objective), _value(times)
    result, decomposition = _eigh_primal(objective, times, rcond, route)
    return (result, decomposition), (objective, times, result, decomposition)


def _eigh_bwd(rcond, route, residuals, cts):
    objective, times, result, decomposition = residuals
    result_ct, decomposition_ct = cts
    _check_no_decomposition_cotangent(result_ct.problem, decomposition_ct)
    figure_cts = _figure_cotangents(result_ct)
    moments, pullback = jax.vjp(population_moments, objective)
    gram, labels, target, energy = moments
    q = decomposition.basis
    acc = spectral_cotangents(decomposition.problem, labels @ q, target @ q, times, result, figure_cts, False)
    gram_ct = q @ _symmetric(acc.gram) @ q.T
    (objective_ct,) = pullback((gram_ct, acc.labels @ q.T, q @ acc.target, acc.energy))
    times_ct = _zero_or(None if _is_zero(result_ct.times) else result_ct.times, times)
    if figure_cts["student_loss"] is not None:
        times_ct = times_ct + times_cotangent(decomposition.problem, times, figure_cts["student_loss"])
    return objective_ct, times_ct


eigh_solution.defvjp(_eigh_fwd, _eigh_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------------------------------
# The factor route (population objectives on a factored law: G = F Fᵀ, b = F β, c = F γ)
# --------------------------------------------------------------------------------------------------


def factor_moments(objective: Objective):
    """(C = FᵀF, label preimages β (n, k), target preimage γ (k,), s*)."""
    factor, preimages = train_factor(objective)
    return factor.T @ factor, preimages, target_preimage(objective), target_energy(objective)


def _factor_primal(objective: Objective, times, rcond, route: RouteInfo, with_basis: bool):
    decomposition = dense.factor_route(objective, rcond=rcond, with_basis=with_basis)
    return summarize_compiled(decomposition.problem, times, route=route), decomposition


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def factor_solution(objective: Objective, times, rcond, route: RouteInfo, with_basis: bool):
    """(W2SResult, Decomposition) of a population objective by the factor route, with exact derivatives."""
    return _factor_primal(objective, times, rcond, route, with_basis)


def _factor_fwd(objective, times, rcond, route, with_basis):
    objective, times = _value(objective), _value(times)
    result, decomposition = _factor_primal(objective, times, rcond, route, with_basis)
    return (result, decomposition), (objective, times, result, decomposition)


def _factor_bwd(rcond, route, with_basis, residuals, cts):
    objective, times, result, decomposition = residuals
    result_ct, decomposition_ct = cts
    _check_no_decomposition_cotangent(result_ct.problem, decomposition_ct)
    figure_cts = _figure_cotangents(result_ct)
    moments, pullback = jax.vjp(factor_moments, objective)
    small, preimages, target, energy = moments
    _, s = jnp.linalg.eigh(small)
    acc = spectral_cotangents(decomposition.problem, preimages @ s, target @ s, times, result, figure_cts, True)
    (objective_ct,) = pullback((s @ _symmetric(acc.gram) @ s.T, acc.labels @ s.T, s @ acc.target, acc.energy))
    times_ct = _zero_or(None if _is_zero(result_ct.times) else result_ct.times, times)
    if figure_cts["student_loss"] is not None:
        times_ct = times_ct + times_cotangent(decomposition.problem, times, figure_cts["student_loss"])
    return objective_ct, times_ct


factor_solution.defvjp(_factor_fwd, _factor_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------------------------------
# A teacher: weights and error at its time (population objectives, labels = f*)
# --------------------------------------------------------------------------------------------------


def _teacher_forward(objective: Objective, time, rcond):
    decomposition = dense.eigh_decomposition(objective, rcond)
    problem = decomposition.problem
    lam = problem.eigenvalues
    infinite = jnp.isinf(time)
    rho = jnp.where(infinite, (lam > 0).astype(lam.dtype), flow_response(lam, jnp.where(infinite, 1.0, time)))
    loss = loss_from_response(problem, rho)[0]
    weights = ((rho * problem.label_coef * inverse_sqrt(lam)) @ decomposition.basis.T)[0]
    return weights, loss, decomposition


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def teacher_solution(objective: Objective, time, rcond):
    """(w (M,), L) of one teacher trained on f* to ``time`` (∞: least squares), eigh route, exact derivatives.

    w = g(G) b with g = ρ/λ (1/λ at ∞); L = bᵀh₁(G)b − 2bᵀh₂(G)c + s* (b = c = E[φ f*])."""
    weights, loss, _ = _teacher_forward(objective, time, rcond)
    return weights, loss


def _teacher_fwd(objective, time, rcond):
    objective, time = _value(objective), _value(time)
    weights, loss, decomposition = _teacher_forward(objective, time, rcond)
    return (weights, loss), (objective, time, decomposition)


def _teacher_bwd(rcond, residuals, cts):
    objective, time, decomposition = residuals
    weights_ct, loss_ct = cts
    moments, pullback = jax.vjp(population_moments, objective)
    gram, labels, target, energy = moments
    q = decomposition.basis
    lam = decomposition.problem.eigenvalues
    xt, yt = labels @ q, target @ q
    infinite = jnp.isinf(time)
    rate = jnp.where(infinite, 1.0, time)
    finite, at_inf = flow_functions(rate, False), flow_functions(None, False)
    r = lam.shape[0]
    acc = _Cotangents(jnp.zeros((r, r)), jnp.zeros_like(xt), jnp.zeros_like(yt), jnp.zeros(()))
    pick = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(infinite, y, x), a, b)
    if not _is_zero(weights_ct):  # w = Q (g ∘ x̃): Γ_g ∘ (Qᵀw̄) x̃ᵀ, and g ∘ Qᵀw̄ on x̃
        wt = q.T @ weights_ct
        gf, ff = divided_differences(finite["h2"], lam, rate)
        gi, fi = divided_differences(at_inf["h2"], lam, None)
        gamma, f = pick((gf, ff), (gi, fi))
        acc = _add(acc, gamma * (wt[:, None] * xt[0][None, :]), (f * wt)[None, :], 0.0)
    if not _is_zero(loss_ct):
        w = jnp.reshape(loss_ct, (1,))
        a = _form_cotangent(finite, ("h1", "h2"), lam, xt, yt, w, rate)
        b = _form_cotangent(at_inf, ("h1", "h2"), lam, xt, yt, w, None)
        gram_ct, label_ct, target_ct = pick(a, b)
        acc = _add(acc, gram_ct, label_ct, target_ct, loss_ct)
    (objective_ct,) = pullback((q @ _symmetric(acc.gram) @ q.T, acc.labels @ q.T, q @ acc.target, acc.energy))
    return objective_ct, jnp.zeros_like(time)


teacher_solution.defvjp(_teacher_fwd, _teacher_bwd, symbolic_zeros=True)
