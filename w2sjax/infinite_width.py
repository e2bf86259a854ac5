"""The infinitely wide student, solved: its closed-form spectral problem (``routes.infinite``) through the curve
engine, with the truncation bound as the error estimate of every figure.

  L_ST(t)        closed form; error ≤ δ(t_max) + rounding (δ the lumped tail's bound, ``truncation_bound``)
  t*, L_ST*      refined on the closed-form curve; L_ST* error ≤ δ(t*) + rounding. Where t* falls past the
                 grid, the degrees are planned again to cover 2 t* (once).
  L_ST(∞)        exact to rounding (the tail's totals are closed-form moments): the student mimics its labels
  L_ceil         exact to rounding: E[f_p²] − ‖P f_p‖² (ReLU) or s* − ‖a*‖² (linear)
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.curves import ErrorEstimate, RouteInfo, rounding_estimate, summarize_compiled, time_error
from w2sjax.routes.infinite import DEFAULT_TOL, infinite_decomposition, truncation_bound



class TruncationWarning(UserWarning):
    """The infinite route could not bring its truncation bound below the tolerance (small d, huge times)."""


def _how(truncation, linear: bool) -> tuple:
    if linear:
        return (
            ("all", f"closed form: gradient flow on the linear coefficients through Σ/d, {len(truncation.degrees)} "
                    "space(s) of equal variance; exact up to rounding (estimate r·ε·scale)"),
        )
    degrees = [g for g in truncation.degrees if g != "tail"]
    return (
        ("curve", f"closed form over spherical-harmonic degrees {degrees[0]}…{degrees[-1]} ({len(degrees)} "
                  f"components) and one lumped tail component (degrees ≥ {truncation.first_tail_degree}); "
                  "error ≤ ρ_*²A_t + 2ρ_*√(A_t C_t) at the last time, plus rounding"),
        ("L*, t*", "refined on the closed-form curve; L* error = the tail bound at t*, t* error from the loss error "
                   "and the curvature"),
        ("L(∞)", "exact up to rounding (tail totals from closed-form moments): the student mimics its labels"),
        ("L_ceil", "exact up to rounding: E[f_p²] − ‖P f_p‖² over the target's non-ReLU part"),
    )


@jax.jit
def _errors(problem, truncation, best_times, t_max):
    """(ErrorEstimate, δ(t_max), s* = ‖a*‖² + R per label set): tail bound at the last time (curve) and at t*
    (L*), rounding elsewhere."""
    rounding = rounding_estimate(problem)
    at_end = truncation_bound(truncation, t_max)
    at_best = jnp.where((best_times > 0) & jnp.isfinite(best_times), best_times, jnp.inf)
    best_error = truncation_bound(truncation, at_best) + rounding
    error = ErrorEstimate(at_end + rounding, best_error, time_error(problem, best_times, best_error), rounding, rounding)
    return error, at_end, jnp.sum(problem.target_coef**2, axis=-1) + problem.residual


def solve_infinite(objective, times: jax.Array, *, reason: str = "requested", tol: float = DEFAULT_TOL):
    """(W2SResult batched over the label sets, Decomposition, Truncation) of an infinitely wide student."""
    times = jnp.asarray(times)
    t_max = float(np.asarray(times)[-1])
    cover = t_max
    linear = objective.features.activation == "linear"
    for _ in range(2):
        decomposition, truncation = infinite_decomposition(objective, cover, tol)
        problem = decomposition.problem
        route = RouteInfo("infinite", None, reason, 0, True, _how(truncation, linear))
        result = summarize_compiled(problem, times, ceiling=truncation.ceiling, route=route)
        best = np.asarray(result.best_time)
        finite = np.isfinite(best) & (best > 0)
        needed = float(np.max(best[finite])) if np.any(finite) else 0.0
        if linear or needed <= cover:
            break
        cover = 2 * needed
    error, curve_truncation, energy = _errors(problem, truncation, result.best_time, t_max)
    scale = float(np.max(np.asarray(energy)))
    converged = bool(np.all(np.asarray(curve_truncation) <= tol * max(scale, 1e-300)))
    if not converged:
        warnings.warn(
            f"the infinite route's truncation bound {float(jnp.max(curve_truncation)):.3g} exceeds tol={tol:g}·s* "
            f"at t = {t_max:g} with degrees below {truncation.first_tail_degree}: shorten the time grid (small d "
            "needs many degrees)", TruncationWarning, stacklevel=3,
        )
        result = dataclasses.replace(result, route=dataclasses.replace(result.route, converged=False))
    return dataclasses.replace(result, error=error), decomposition, truncation
