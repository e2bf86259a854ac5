"""The curve engine: one spectral problem → L(t) on any grid, L(∞), t* refined past the grid, figures of merit.

All functions are pure and jit-able; a problem's leading axes (label sets, e.g. teachers) are batch axes.

  response     ρ(λ, t) = 1 − e^{−tλ} (flow), λ/(λ + μ) (ridge), 1 − (1 − ηλ)^k (gradient descent)
  loss         L(ρ) = ‖R_o (ρ ∘ a) − a*‖² + R                          (``spectral``)
  slope        dL/du = 2 (R_o(ρ ∘ a) − a*)ᵀ R_o(∂ρ/∂u ∘ a)             (u = log t, or log μ)
  L(∞)         ρ = 1 on kept eigenvalues: the error of G⁺b
  t*           argmin_t L(t): the grid minimum brackets it, bisection on the sign of the slope refines it.
               A minimum at an edge of the grid is followed past the grid, up to the natural limits of the
               spectrum: t = ε/λ_max (below it L = L(0) = s* to rounding) and t = 64/λ_min (above it L = L(∞)
               to rounding), so the search is always bracketed. t* = ∞ when the error is lowest at ∞ (up to
               64 ε s*), t* = 0 when it is lowest before training (labels that only hurt).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._io import json_safe
from w2sjax.inputs import pytree, static_field
from w2sjax.spectral import SpectralProblem, select_labels

BISECTION_STEPS = 80
PROBES = 48
"""Log-spaced probes between an edge of the grid and the natural limit on that side."""
INFINITY_SPAN = 64.0
"""t·λ_min past which e^{−tλ} < e^{−64}: L(t) equals L(∞) to rounding."""
CURVE_CHUNK_ELEMENTS = 1 << 24
"""Entries of the (times, label sets, eigenvalues) block alive at once while a curve is evaluated."""

LOCATIONS = {0: "inside the grid", 1: "above the grid", -1: "below the grid", 2: "infinity", -2: "zero"}


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


def flow_response(eigenvalues: jax.Array, t) -> jax.Array:
    """ρ = 1 − e^{−tλ} on kept eigenvalues (0 on cut ones), with expm1 for small tλ."""
    return jnp.where(eigenvalues > 0, -jnp.expm1(-t * eigenvalues), 0)


def flow_response_log_slope(eigenvalues: jax.Array, t) -> jax.Array:
    """∂ρ/∂(log t) = tλ e^{−tλ}."""
    x = t * eigenvalues
    return jnp.where(eigenvalues > 0, x * jnp.exp(-x), 0)


def ridge_response(eigenvalues: jax.Array, strength) -> jax.Array:
    """ρ = λ/(λ + μ) on kept eigenvalues: w = (G + μI)⁻¹b."""
    return jnp.where(eigenvalues > 0, eigenvalues / (eigenvalues + strength), 0)


def ridge_response_log_slope(eigenvalues: jax.Array, strength) -> jax.Array:
    """∂ρ/∂(log μ) = −λμ/(λ + μ)²."""
    return jnp.where(eigenvalues > 0, -eigenvalues * strength / (eigenvalues + strength) ** 2, 0)


def gd_response(eigenvalues: jax.Array, step_size, steps) -> jax.Array:
    """ρ = 1 − (1 − ηλ)^k for integer k, with expm1/log1p where 1 − ηλ > 0."""
    x = step_size * eigenvalues
    below_one = x < 1
    log_base = jnp.log1p(-jnp.where(below_one, x, 0))
    rho = jnp.where(below_one, -jnp.expm1(steps * log_base), 1 - jnp.power(1 - x, steps))
    return jnp.where(eigenvalues > 0, rho, 0)


def gd_decay(eigenvalues: jax.Array, step_size, steps) -> jax.Array:
    """(1 − ηλ)^k on kept eigenvalues (1 on cut ones)."""
    return 1 - gd_response(eigenvalues, step_size, steps)


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def loss_from_response(problem: SpectralProblem, response: jax.Array) -> jax.Array:
    """L = ‖R_o(ρ ∘ a) − a*‖² + R; ρ (..., r) broadcasts against the problem's label axes."""
    learnt = response * problem.label_coef
    if problem.readout is not None:
        learnt = learnt @ problem.readout.T
    return jnp.sum((learnt - problem.target_coef) ** 2, axis=-1) + problem.residual


def loss_slope_from_response(problem: SpectralProblem, response, response_slope) -> jax.Array:
    """dL/du = 2 (R_o(ρ ∘ a) − a*)ᵀ R_o(∂ρ/∂u ∘ a)."""
    learnt = response * problem.label_coef
    moved = response_slope * problem.label_coef
    if problem.readout is not None:
        learnt, moved = learnt @ problem.readout.T, moved @ problem.readout.T
    return 2 * jnp.sum((learnt - problem.target_coef) * moved, axis=-1)


def _curve(problem: SpectralProblem, params: jax.Array, response_fn) -> jax.Array:
    """L at every parameter: params (T,) → (..., T), in chunks of times (bounded memory)."""
    batch = max(1, math.prod(problem.label_coef.shape[:-1]))
    width = problem.label_coef.shape[-1] + (0 if problem.readout is None else problem.readout.shape[0])
    chunk = int(max(1, min(params.shape[0], CURVE_CHUNK_ELEMENTS // (batch * width))))
    pad = -params.shape[0] % chunk
    padded = jnp.pad(params, (0, pad), mode="edge").reshape(-1, chunk)
    one = lambda p: loss_from_response(problem, response_fn(problem.eigenvalues, p))
    values = jax.lax.map(jax.vmap(one), padded).reshape((-1,) + problem.residual.shape)
    return jnp.moveaxis(values[: params.shape[0]], 0, -1)


def checked_grid(values, name: str, *, positive: bool = True, increasing: bool = True, integer: bool = False):
    """A concrete 1-D grid checked (finite, > 0 or ≥ 0, strictly increasing or not, whole numbers); tracers
    pass unchecked (validation happens outside jit)."""
    if isinstance(values, jax.core.Tracer):
        return values
    raw = np.asarray(values)
    if np.iscomplexobj(raw) or raw.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers; got dtype {raw.dtype}")
    grid = raw.astype(np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"{name} has non-finite values (NaN or inf); pass finite numbers")
    if positive and np.any(grid <= 0):
        raise ValueError(f"{name} must be > 0; got min {grid.min():.3g}")
    if not positive and np.any(grid < 0):
        raise ValueError(f"{name} must be >= 0; got min {grid.min():.3g}")
    if integer and np.any(grid != np.round(grid)):
        raise ValueError(f"{name} must be whole numbers (step counts)")
    if increasing and np.any(np.diff(grid) <= 0):
        raise ValueError(f"{name} must be strictly increasing (e.g. np.geomspace(0.1, 1e7, 400))")
    return values


def student_loss(problem: SpectralProblem, times) -> jax.Array:
    """L(t) of gradient flow at every time (finite, ≥ 0): (T,) → (..., T)."""
    return _student_loss(problem, jnp.asarray(checked_grid(times, "times", positive=False, increasing=False)))


def ridge_loss(problem: SpectralProblem, strengths) -> jax.Array:
    """L(μ) of ridge, w = (G + μI)⁻¹b, at every strength μ > 0: (T,) → (..., T)."""
    return _ridge_loss(problem, jnp.asarray(checked_grid(strengths, "ridge strengths", increasing=False)))


def gd_loss(problem: SpectralProblem, step_size, steps) -> jax.Array:
    """L(w_k) of gradient descent with step η at whole step counts k ≥ 0 (K,) → (..., K)."""
    steps = checked_grid(steps, "steps", positive=False, increasing=False, integer=True)
    return _gd_loss(problem, step_size, jnp.asarray(steps))


@jax.jit
def _student_loss(problem: SpectralProblem, times: jax.Array) -> jax.Array:
    return _curve(problem, times, flow_response)


@jax.jit
def _ridge_loss(problem: SpectralProblem, strengths: jax.Array) -> jax.Array:
    return _curve(problem, strengths, ridge_response)


@jax.jit
def _gd_loss(problem: SpectralProblem, step_size, steps: jax.Array) -> jax.Array:
    return _curve(problem, steps, lambda lam, k: gd_response(lam, step_size, k))


@jax.jit
def loss_at_infinity(problem: SpectralProblem) -> jax.Array:
    """L(∞): the error of G⁺b (least squares; for ridge, μ → 0)."""
    return loss_from_response(problem, (problem.eigenvalues > 0).astype(problem.label_coef.dtype))


def initial_loss(problem: SpectralProblem) -> jax.Array:
    """L(0) = ‖a*‖² + R = s*."""
    return jnp.sum(problem.target_coef**2, axis=-1) + problem.residual


def tie_tolerance(problem: SpectralProblem) -> jax.Array:
    """64 ε s*: two errors closer than this are equal up to rounding."""
    return 64 * jnp.finfo(problem.label_coef.dtype).eps * initial_loss(problem)


def spectrum_limits(problem: SpectralProblem):
    """(log ε/λ_max, log 64/λ_min): below the first L = L(0), above the second L = L(∞), to rounding."""
    lam = problem.eigenvalues
    kept = lam > 0
    top = jnp.max(lam)
    bottom = jnp.min(jnp.where(kept, lam, jnp.inf))
    eps = jnp.finfo(lam.dtype).eps
    safe_top = jnp.where(top > 0, top, 1.0)
    safe_bottom = jnp.where(jnp.isfinite(bottom), bottom, safe_top)
    return jnp.log(eps / safe_top), jnp.log(INFINITY_SPAN / safe_bottom)


# --------------------------------------------------------------------------------------------------
# The best stopping time
# --------------------------------------------------------------------------------------------------


def refine_minimum(loss_at, slope_at, log_grid, losses, lower_limit, upper_limit):
    """Minimise a loss of u = log(parameter), following a minimum at an edge of the grid past it.

    Args:
      loss_at(u), slope_at(u): the loss and dloss/du (scalars).
      log_grid: (T,) increasing; losses: (T,) the loss on it.
      lower_limit, upper_limit: the natural limits of u (beyond them the loss is constant to rounding).

    Returns:
      (u*, loss*, location, at_lower, at_upper): location 0 inside the grid, −1 below it, 1 above it;
      at_lower/at_upper: the lowest point is the natural limit itself (the optimum is at 0 or ∞).
    """
    first, last = log_grid[0], log_grid[-1]
    lower_limit = jnp.minimum(lower_limit, first - 1.0)
    upper_limit = jnp.maximum(upper_limit, last + 1.0)
    below = jnp.linspace(lower_limit, first, PROBES + 1)[:-1]
    above = jnp.linspace(last, upper_limit, PROBES + 1)[1:]
    probe_losses = jax.vmap(loss_at)(jnp.concatenate([below, above]))
    grid = jnp.concatenate([below, log_grid, above])
    values = jnp.concatenate([probe_losses[:PROBES], losses, probe_losses[PROBES:]])
    k = jnp.argmin(values)
    end = grid.shape[0] - 1
    lo = grid[jnp.maximum(k - 1, 0)]
    hi = grid[jnp.minimum(k + 1, end)]

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        rising = slope_at(mid) > 0
        return jnp.where(rising, lo, mid), jnp.where(rising, mid, hi)

    lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, step, (lo, hi))
    mid = 0.5 * (lo + hi)
    refined = loss_at(mid)
    better = refined <= values[k]
    u = jnp.where(better, mid, grid[k])
    loss = jnp.where(better, refined, values[k])
    location = jnp.where(u < first, -1, jnp.where(u > last, 1, 0))
    return u, loss, location, k == 0, k == end


def _best(problem: SpectralProblem, params, losses, response_fn, slope_fn, increasing_is_infinity: bool):
    """(parameter*, loss*, location) for one label set; location as in ``LOCATIONS``."""
    lam = problem.eigenvalues

    def loss_at(u):
        return loss_from_response(problem, response_fn(lam, jnp.exp(u)))

    def slope_at(u):
        p = jnp.exp(u)
        return loss_slope_from_response(problem, response_fn(lam, p), slope_fn(lam, p))

    low, high = spectrum_limits(problem)
    if not increasing_is_infinity:  # ridge: large μ is no training, small μ is least squares
        low, high = -high, -low
    u, loss, location, at_lower, at_upper = refine_minimum(loss_at, slope_at, jnp.log(params), losses, low, high)
    tie = tie_tolerance(problem)
    at_inf_value, at_zero_value = loss_at_infinity(problem), initial_loss(problem)
    # an edge of the probes is the optimum only if the refined loss is not clearly below that limit's value
    # (coarse probes far from the grid can bracket an interior minimum next to the last probe)
    high_value, low_value = (at_inf_value, at_zero_value) if increasing_is_infinity else (at_zero_value, at_inf_value)
    at_upper = at_upper & ~(loss < high_value - tie)
    at_lower = at_lower & ~(loss < low_value - tie)
    if increasing_is_infinity:
        infinite = at_upper | (at_inf_value <= loss + tie)
        zero = ~infinite & (at_lower | (at_zero_value <= loss + tie))
        param = jnp.where(infinite, jnp.inf, jnp.where(zero, 0.0, jnp.exp(u)))
        loss = jnp.where(infinite, jnp.minimum(at_inf_value, loss), jnp.where(zero, at_zero_value, loss))
        location = jnp.where(infinite, 2, jnp.where(zero, -2, location))
    else:  # μ* = 0 is least squares (the flow's ∞), μ* = ∞ is no training
        least = at_lower | (at_inf_value <= loss + tie)
        none = ~least & (at_upper | (at_zero_value <= loss + tie))
        param = jnp.where(least, 0.0, jnp.where(none, jnp.inf, jnp.exp(u)))
        loss = jnp.where(least, jnp.minimum(at_inf_value, loss), jnp.where(none, at_zero_value, loss))
        location = jnp.where(least, -2, jnp.where(none, 2, location))
    return param, loss, location


def best_time(problem: SpectralProblem, times, losses=None):
    """(t*, L(t*), location) for an unbatched problem (vmap ``_best_time`` for batches); times strictly
    increasing and positive.

    location: 0 inside the grid, 1 above it, −1 below it, 2 at ∞ (t* = ∞: the error is lowest trained to
    convergence), −2 at 0 (t* = 0: training only hurts)."""
    return _best_time(problem, jnp.asarray(checked_grid(times, "times")), losses)


def best_strength(problem: SpectralProblem, strengths, losses=None):
    """(μ*, L(μ*), location) of ridge for an unbatched problem; μ* = 0 is least squares (location −2)."""
    return _best_strength(problem, jnp.asarray(checked_grid(strengths, "ridge strengths")), losses)


@jax.jit
def _best_time(problem: SpectralProblem, times: jax.Array, losses: jax.Array | None = None):
    if losses is None:
        losses = _student_loss(problem, times)
    return _best(problem, times, losses, flow_response, flow_response_log_slope, True)


@jax.jit
def _best_strength(problem: SpectralProblem, strengths: jax.Array, losses: jax.Array | None = None):
    if losses is None:
        losses = _ridge_loss(problem, strengths)
    return _best(problem, strengths, losses, ridge_response, ridge_response_log_slope, False)


def loss_curvature(problem: SpectralProblem, log_time) -> jax.Array:
    """d²L/d(log t)² at one log-time (forward-mode derivative of the analytic slope)."""
    lam = problem.eigenvalues

    def slope_at(u):
        t = jnp.exp(u)
        return loss_slope_from_response(problem, flow_response(lam, t), flow_response_log_slope(lam, t))

    return jax.jvp(slope_at, (log_time,), (jnp.ones_like(log_time),))[1]


# --------------------------------------------------------------------------------------------------
# Figures of merit
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RouteInfo:
    """How a result was computed (static, hashable).

    Attributes:
      method: ``"eigh"``, ``"factor"``, ``"krylov"`` or ``"infinite"``.
      operator: Krylov's G: ``"stored"``, ``"tiled"`` or ``"sharded"``; None otherwise.
      reason: why this route (``method="auto"``), or ``"requested"``.
      blocks: Krylov block steps (0 otherwise).
      converged: the route met its tolerance (always True for exact routes).
      how: ((quantity, how it was obtained), …).
    """

    method: str
    operator: str | None = None
    reason: str = "requested"
    blocks: int = 0
    converged: bool = True
    how: tuple = ()

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["how"] = dict(self.how)
        return out


@pytree
@dataclasses.dataclass(frozen=True)
class ErrorEstimate:
    """Error estimates, one per figure of merit (absolute on errors, relative on t*)."""

    student_loss: jax.Array
    best_student_loss: jax.Array
    best_time: jax.Array
    student_loss_at_infinity: jax.Array
    ceiling_loss: jax.Array


@pytree
@dataclasses.dataclass(frozen=True)
class W2SResult:
    """Figures of merit of a student (batched over label sets: leading axes, e.g. teachers).

    Attributes:
      times: (T,) stopping times (for ridge results: the strengths μ).
      student_loss: (..., T) L_ST(t).
      teacher_loss: (...) L_TE (NaN where there is no teacher).
      best_time: (...) t* (∞: lowest trained to convergence; 0: training only hurts). Ridge: μ*.
      best_student_loss: (...) L_ST* = L_ST(t*).
      best_time_location: (...) where t* was found: 0 inside the grid, ±1 above/below it, 2 at ∞, −2 at 0.
      student_loss_at_infinity: (...) L_ST(∞).
      ceiling_loss: (...) L_ceil: the student on the true labels (population: trained to convergence, R_S;
        samples: at its own best time).
      ratio: (...) L_ST*/L_TE.
      pgr: (...) (L_TE − L_ST*)/(L_TE − L_ceil) where L_ceil < L_TE; NaN where the student cannot beat its
        teacher even on true labels.
      error: ErrorEstimate of each figure.
      problem: the SpectralProblem (``student_loss(result.problem, times)`` at other times).
      route: RouteInfo (static).
    """

    times: jax.Array
    student_loss: jax.Array
    teacher_loss: jax.Array
    best_time: jax.Array
    best_student_loss: jax.Array
    best_time_location: jax.Array
    student_loss_at_infinity: jax.Array
    ceiling_loss: jax.Array
    ratio: jax.Array
    pgr: jax.Array
    error: ErrorEstimate
    problem: SpectralProblem
    route: RouteInfo = static_field(default=RouteInfo("eigh"))

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.best_time.shape)

    def select(self, index) -> "W2SResult":
        """One label set of a batched result (arrays indexed on their leading axis)."""
        pick = lambda x: x[index]
        fields = {name: pick(getattr(self, name)) for name in SCALAR_FIELDS}
        return W2SResult(
            times=self.times, **fields, error=jax.tree_util.tree_map(pick, self.error),
            problem=select_labels(self.problem, index), route=self.route,
        )

    def to_dict(self) -> dict:
        """JSON-ready: numbers and lists (∞ as "inf", NaN as null), the route and every error estimate;
        leaves out ``problem``."""
        out = {"times": np.asarray(self.times).tolist()}
        for name in SCALAR_FIELDS:
            out[name] = np.asarray(getattr(self, name)).tolist()
        out["best_time_location"] = _map_nested(out["best_time_location"], lambda c: LOCATIONS[int(c)])
        out["error_estimate"] = {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(self.error).items()}
        pgr = np.asarray(self.pgr)
        if np.any(np.isnan(pgr)):
            out["pgr_note"] = "PGR is NaN where L_ceil >= L_TE: the student cannot beat its teacher even on true labels"
        out["route"] = self.route.to_dict()
        return json_safe(out)


SCALAR_FIELDS = (
    "student_loss", "teacher_loss", "best_time", "best_student_loss", "best_time_location",
    "student_loss_at_infinity", "ceiling_loss", "ratio", "pgr",
)


def _map_nested(value, fn):
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def gain_ratio(teacher_loss, best_loss, ceiling):
    """(L_ST*/L_TE, PGR) with PGR = (L_TE − L_ST*)/(L_TE − L_ceil) where L_ceil < L_TE, else NaN."""
    defined = ceiling < teacher_loss
    pgr = jnp.where(defined, (teacher_loss - best_loss) / jnp.where(defined, teacher_loss - ceiling, 1), jnp.nan)
    return best_loss / teacher_loss, pgr


def rounding_estimate(problem: SpectralProblem) -> jax.Array:
    """r ε (‖a‖² + ‖a*‖² + R): the rounding level of the sum of squares (per label set)."""
    eps = jnp.finfo(problem.label_coef.dtype).eps
    r = problem.eigenvalues.shape[-1]
    scale = jnp.sum(problem.label_coef**2, axis=-1) + initial_loss(problem)
    return r * eps * scale


def summarize(
    problem: SpectralProblem,
    times: jax.Array,
    teacher_loss=None,
    ceiling=None,
    loss_error=None,
    route: RouteInfo = RouteInfo("eigh"),
    losses=None,
) -> W2SResult:
    """Every figure of merit of a (batched) problem at the given increasing positive times.

    Args:
      teacher_loss: (...) L_TE (NaN if None).
      ceiling: (...) L_ceil (default: the residual R, the population ceiling).
      loss_error: (...) an absolute error estimate of every loss (default: the rounding level).
      losses: L(t) on ``times`` when already computed.
    """
    if losses is None:
        losses = _student_loss(problem, times)
    batch = problem.residual.shape
    best = jax.vmap(lambda a, s, r, l: _best_time(SpectralProblem(problem.eigenvalues, a, s, r, problem.readout), times, l))
    la = problem.label_coef.reshape((-1, problem.label_coef.shape[-1]))
    ta = problem.target_coef.reshape((-1, problem.target_coef.shape[-1]))
    t_best, l_best, where = best(la, ta, problem.residual.reshape(-1), losses.reshape((-1, times.shape[0])))
    t_best, l_best, where = (x.reshape(batch) for x in (t_best, l_best, where))
    at_inf = loss_at_infinity(problem)
    ceiling = problem.residual if ceiling is None else jnp.broadcast_to(ceiling, batch)
    teacher_loss = jnp.full(batch, jnp.nan, losses.dtype) if teacher_loss is None else jnp.broadcast_to(teacher_loss, batch)
    ratio, pgr = gain_ratio(teacher_loss, l_best, ceiling)
    loss_error = rounding_estimate(problem) if loss_error is None else jnp.broadcast_to(loss_error, batch)
    error = ErrorEstimate(loss_error, loss_error, time_error(problem, t_best, loss_error), loss_error, loss_error)
    return W2SResult(
        times=times, student_loss=losses, teacher_loss=teacher_loss, best_time=t_best, best_student_loss=l_best,
        best_time_location=where, student_loss_at_infinity=at_inf, ceiling_loss=ceiling, ratio=ratio, pgr=pgr,
        error=error, problem=problem, route=route,
    )


@jax.jit
def _summarize_arrays(problem, times, teacher_loss, ceiling, loss_error, losses):
    return summarize(problem, times, teacher_loss, ceiling, loss_error, RouteInfo("eigh"), losses)


def summarize_compiled(problem, times, teacher_loss=None, ceiling=None, loss_error=None,
                       route: RouteInfo = RouteInfo("eigh"), losses=None) -> W2SResult:
    """``summarize`` compiled once per shape: the route (static text, block counts) is attached after the call,
    so that it never forces a recompilation."""
    result = _summarize_arrays(problem, times, teacher_loss, ceiling, loss_error, losses)
    return dataclasses.replace(result, route=route)


def route_free(fn, static_argnames=()):
    """``fn(result, *args, **kwargs) -> W2SResult`` jitted, with the result's route (static: text and block
    counts) taken off before the call and put back after, so that one compiled program per shape serves every
    route."""
    compiled = jax.jit(fn, static_argnames=static_argnames)

    @functools.wraps(fn)
    def call(result: W2SResult, *args, **kwargs) -> W2SResult:
        out = compiled(dataclasses.replace(result, route=RouteInfo("eigh")), *args, **kwargs)
        return dataclasses.replace(out, route=result.route)

    return call


def time_error(problem: SpectralProblem, best_times, loss_error) -> jax.Array:
    """Relative error of t* implied by an error δ of the loss: |Δ log t*| ≈ √(2δ / L''(log t*)) (0 at t* = 0
    or ∞, where no finite time is reported; ∞ where the curve is flat)."""
    la = problem.label_coef.reshape((-1, problem.label_coef.shape[-1]))
    ta = problem.target_coef.reshape((-1, problem.target_coef.shape[-1]))
    finite = jnp.isfinite(best_times) & (best_times > 0)
    u = jnp.log(jnp.where(finite, best_times, 1.0)).reshape(-1)

    def one(a, s, r, ui):
        return loss_curvature(SpectralProblem(problem.eigenvalues, a, s, r, problem.readout), ui)

    curvature = jax.vmap(one)(la, ta, problem.residual.reshape(-1), u).reshape(best_times.shape)
    spread = jnp.sqrt(2 * loss_error / jnp.where(curvature > 0, curvature, jnp.nan))
    return jnp.where(finite, jnp.where(curvature > 0, spread, jnp.inf), 0.0)
