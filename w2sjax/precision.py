"""Error estimates of float32 problems (``routes.mixed``: eigh in float32, everything else in float64; the Krylov
route: products G·V in float32, everything else in float64).

A float32 eigendecomposition of G is the exact one of G + E with ‖E‖ ≈ ε₃₂ λ_max (backward stability; the
rounding of G to float32 is of the same size), and so is each float32 product G·V of the Krylov route: its
quadrature (Ritz values, coefficients) is then a spectral problem with the same eigenvalue error. To first order in the eigenvalues, with b̃ = Qᵀb, c̃ = Qᵀc,

    L(t) = s* + Σ_i h₁(λ_i) b̃_i² − 2 h₂(λ_i) b̃_i c̃_i,    h₁ = ρ²/λ, h₂ = ρ/λ,
    δL(t) ≈ δ (Σ_i (h₁'(λ_i) b̃_i² − 2 h₂'(λ_i) b̃_i c̃_i)²)^½,    δ = ``EIGENVALUE_ERROR`` · ε₃₂ · λ_max,

(eigenvalue errors of size δ with independent signs: an estimate, not a bound; the factor 4 in δ is a margin,
and the measured errors on fig2-like problems are 10–100× below it, docs/precision.md), and t* moves by
δu* = δs/L''(u*) (s = dL/du, u = log t, estimated the same way). h₁' and h₂' are bounded by t²
as λ → 0, so these stay small at finite times. L(∞) = s* + Σ (a_i² − 2 a_i a*_i) and L_ceil = s* − Σ a*_i²
weigh every eigenvalue by 1/λ: a term whose eigenvalue is below δ is not determined at all, so

    δL(∞) = Σ_i |a_i² − 2 a_i a*_i| min(1, δ/λ_i),    δL_ceil = Σ_i a*_i² min(1, δ/λ_i).

The float32 data themselves (weights, input law, target rounded to float32) move the moments by ~ε₃₂
relative, hence L − s* by ``DATA_ERROR`` · ε₃₂ |L − s*|: added to every loss estimate. ``float32_errors`` returns these (plus
the float64 rounding level) as the result's ``ErrorEstimate``;
``precision_warning`` warns when any of them exceeds ``RELATIVE_TARGET`` of its value.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.autodiff import flow_functions
from w2sjax.curves import ErrorEstimate, W2SResult, initial_loss, loss_curvature, rounding_estimate
from w2sjax.spectral import SpectralProblem

EIGENVALUE_ERROR = 4.0
"""δ = EIGENVALUE_ERROR · ε₃₂ · λ_max: the eigenvalue error of a float32 eigendecomposition of G."""
DATA_ERROR = 16.0
"""The float32 data move L − s* by DATA_ERROR · ε₃₂ · |L − s*| (measured: 2.3 ε₃₂ on fig2, where the teachers'
least-squares fits amplify the rounding of their weights)."""
RELATIVE_TARGET = 1e-4
"""float32 figures whose estimated relative error exceeds this are named in a ``PrecisionWarning``."""


class PrecisionWarning(UserWarning):
    """A float32 figure of merit whose error cannot be bounded to ``RELATIVE_TARGET``."""


def _slopes(fns, keys, lam):
    """(f_a'(λ), f_b'(λ)) elementwise."""
    grad = lambda f: jax.vmap(jax.grad(f))(lam)
    return grad(fns[keys[0]]), grad(fns[keys[1]])


def _sensitivity(problem: SpectralProblem, t, keys) -> jax.Array:
    """(Σ_i (f_a'(λ_i) b̃_i² − 2 f_b'(λ_i) b̃_i c̃_i)²)^½ per label set, at one time t (population problems)."""
    lam = problem.eigenvalues
    root = jnp.sqrt(jnp.maximum(lam, 0))
    bt, ct = problem.label_coef * root, problem.target_coef * root
    da, db = _slopes(flow_functions(t, False), keys, jnp.maximum(lam, 0))
    return jnp.sqrt(jnp.sum((da * bt**2 - 2 * db * bt * ct) ** 2, axis=-1))


@jax.jit
def float32_errors(result: W2SResult) -> ErrorEstimate:
    """Error estimates of a float32 population result, eigh (``routes.mixed``) or Krylov (its quadrature as the
    spectral problem; see the module docstring)."""
    problem = jax.lax.stop_gradient(result.problem)
    lam = problem.eigenvalues
    delta = EIGENVALUE_ERROR * jnp.finfo(jnp.float32).eps * jnp.max(lam)
    rounding = rounding_estimate(problem)
    curve = jax.vmap(lambda t: _sensitivity(problem, t, ("h1", "h2")), out_axes=-1)(result.times)
    curve = delta * curve + rounding[..., None]
    best = jax.lax.stop_gradient(result.best_time)
    finite = jnp.isfinite(best) & (best > 0)
    rate = jnp.where(finite, best, 1.0)

    def at_best(a, s, r, t):
        one = SpectralProblem(lam, a, s, r, problem.readout)
        loss = delta * _sensitivity(one, t, ("h1", "h2"))
        slope = delta * _sensitivity(one, t, ("s1", "s2"))
        curvature = loss_curvature(one, jnp.log(t))
        return loss, jnp.where(curvature > 0, slope / jnp.where(curvature > 0, curvature, 1.0), jnp.inf)

    shape = problem.residual.shape
    flat = lambda x: x.reshape((-1, x.shape[-1]))
    loss, time = jax.vmap(at_best)(flat(problem.label_coef), flat(problem.target_coef), problem.residual.reshape(-1),
                                   rate.reshape(-1))
    weight = jnp.where(lam > 0, jnp.minimum(1.0, delta / jnp.where(lam > 0, lam, 1.0)), 0.0)
    a, s = problem.label_coef, problem.target_coef
    at_inf = jnp.sum(jnp.abs(a**2 - 2 * a * s) * weight, axis=-1) + rounding
    ceiling = jnp.sum(s**2 * weight, axis=-1) + rounding
    at_best_loss = jnp.where(finite, loss.reshape(shape) + rounding, jnp.where(jnp.isinf(best), at_inf, rounding))
    time = jnp.where(finite, time.reshape(shape), 0.0)
    time = jnp.maximum(time, jax.lax.stop_gradient(result.error.best_time))
    # the float32 data (weights, input law, target) rounded: moments off by ~ε₃₂ relative, L − s* by ε₃₂ |L − s*|
    eps32, energy = DATA_ERROR * jnp.finfo(jnp.float32).eps, initial_loss(problem)
    data = lambda value: eps32 * jnp.abs(jax.lax.stop_gradient(value) - energy[..., None] if jnp.ndim(value) > jnp.ndim(energy) else jax.lax.stop_gradient(value) - energy)
    # one estimate per label set for the whole curve (its largest), as every route reports it
    return ErrorEstimate(jnp.max(curve + data(result.student_loss), axis=-1), at_best_loss + data(result.best_student_loss), time,
                         at_inf + data(result.student_loss_at_infinity), ceiling + data(result.ceiling_loss))


def precision_warning(result: W2SResult, stacklevel: int = 3) -> None:
    """PrecisionWarning naming every float32 figure whose estimated relative error exceeds RELATIVE_TARGET."""
    e = result.error
    names = {"best_student_loss": "L_ST*", "student_loss_at_infinity": "L_ST(inf)", "ceiling_loss": "L_ceil",
             "student_loss": "L_ST(t)"}
    worst = {}
    for field, label in names.items():
        value = np.abs(np.asarray(getattr(result, field), np.float64))
        est = np.asarray(getattr(e, field), np.float64)
        if field == "student_loss":  # one estimate for the whole curve: relative to its smallest value
            value = np.min(value, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(value > 0, est / value, np.where(est > 0, np.inf, 0.0))
        worst[label] = float(np.nanmax(rel)) if rel.size else 0.0
    worst["t*"] = float(np.max(np.asarray(e.best_time, np.float64))) if np.size(e.best_time) else 0.0
    bad = {k: v for k, v in worst.items() if v > RELATIVE_TARGET}
    if bad:
        listed = ", ".join(f"{k} (estimated relative error {v:.1g})" for k, v in bad.items())
        warnings.warn(f"float32: {listed} cannot be bounded to {RELATIVE_TARGET:g}; see result.error, or use float64 "
                      "(float32 arithmetic on G does not resolve its eigenvalues below ε32·λ_max)",
                      PrecisionWarning, stacklevel=stacklevel)
