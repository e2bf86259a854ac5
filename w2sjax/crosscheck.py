"""Cross-check of the exact solver against discrete training with optax, on one small W2S problem.

Default problem: x ~ N(0, I_16), f*(x) = x_1, ReLU teacher of width 32 and student of width 512 with the
weights of seed 0 (``features.teacher_weights`` / ``features.student_weights``). Every check ends in one of
four verdicts: passed, failed (a deviation beyond the tolerance), inconclusive (the check could not have seen
the deviation it exists to detect), diverged (a run left the range of any stable gradient descent: a
non-finite error, or one above ``discrete.stable_gd_error_bound``). Only "passed" passes.

  gd_vs_discrete_closed_form_max_abs   max_k |L(w_k) − L_GD(k)| between ``optax.sgd(η)`` on the population
                                       objective and the closed form ``curves.gd_loss``, over every step of
                                       every run below (student; the teacher likewise):   ≤ 1e-10 (float64).
  gd_vs_flow_max_abs                   max_k |L(w_k) − L_GF(kη)| for each step size η, kη ≤ horizon:
                                       ≤ the a-priori bound ``discrete.gd_flow_bound`` (= O(η); it needs
                                       ηλ_max < 1, so a larger step fails).
  flow_convergence_order               slope of log(gd_vs_flow_max_abs) against log η:    within [0.8, 1.2].
      Informative when the slope's worst-case error from the uncertainty of the deviations (their
      disagreement with the closed form plus the rounding level of L) is at most 1/5 of the half-width 0.2.
  online_sgd_vs_flow                   online SGD (fresh minibatches with teacher labels, several seeds, up to
                                       2.5 t*):
      best error: the minimum over k of the seed-averaged error curve; standard error = the spread of L(w_k)
                  over seeds, pooled over kη in [t*/2, 3t*/2], / √seeds;      |difference from L_ST*| ≤ 5 SE.
      its location: the mean over seeds of each run's argmin kη, SE = spread / √seeds;
                  |difference from t*| ≤ 5 SE + η·record spacing, or inside the flow's basin around t* where
                  L_ST(t) − L_ST* ≤ 5 SE of the best error (the runs cannot locate a minimum more finely).

When a statistical check is informative. Each online check exists to detect one alternative: training that
stops at the wrong scale of time, a factor 2 early or late (t*/2 or 2t*). A check is informative when that
alternative would fall outside its acceptance region by at least 2 of its standard errors, so that it would be
flagged with probability ≥ Φ(2) ≈ 97.7% (normal approximation):
      best error:   (5 + 2) SE ≤ Δ₂ = min(L_ST(t*/2), L_ST(2t*)) − L_ST*,
      location:     t*/2 + 2 SE_t < the acceptance region < 2t* − 2 SE_t, and the runs reach 2t*.
Otherwise a check within its tolerance is "inconclusive" (its noise could hide the deviation), never "passed"; a
difference beyond the tolerance still fails. They are inconclusive too when the flow has no finite optimal
time (t* = 0 or ∞). The location check reads its
alternative 2t* only if the runs reach it, hence the online horizon of 2.5 t*.

The best error is taken from the seed-averaged curve because the minimum of a single noisy run sits below its
expected curve by a few times the run's fluctuation (the minimum picks a favourable fluctuation), a bias that does
not shrink with more seeds. Without a true difference, the location's difference/SE is roughly Student-t with
n − 1 degrees of freedom, so the 5-SE rule raises a false alarm with probability about 1.5% for n = 4 seeds and
0.2% for n = 8 (the pooled SE of the best error has more degrees of freedom and fewer false alarms).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from w2sjax._checks import check_choice, check_positive_int
from w2sjax.curves import best_time, gd_loss, loss_at_infinity, rounding_estimate, student_loss
from w2sjax.discrete import (
    gd_flow_bound,
    label_function,
    online_runs,
    population_runs,
    population_training,
    stable_gd_error_bound,
    student_objective,
    teacher_objective,
    train_population,
)
from w2sjax.features import ACTIVATIONS, RandomFeatures, student_weights, teacher_weights
from w2sjax.inputs import gaussian_inputs
from w2sjax.spectral import SpectralProblem
from w2sjax.targets import linear_target

CLOSED_FORM_TOLERANCE = 1e-10
ORDER_RANGE = (0.8, 1.2)
ONLINE_TOLERANCE_SE = 5.0
"""Tolerance of the statistical checks, in standard errors (and of the order, in slope uncertainties)."""
DETECTION_MARGIN_SE = 2.0
"""A check is informative when its alternative lies this many standard errors beyond its acceptance region."""
TIME_RESOLUTION = 2.0
"""The alternative the online checks must tell from the flow's optimum: stopping at t*/2 or 2t*."""
FLOW_GRID = np.logspace(-2, 7, 451)

PASSED, FAILED, INCONCLUSIVE, DIVERGED = "passed", "failed", "inconclusive", "diverged"
STATUSES = (PASSED, FAILED, INCONCLUSIVE, DIVERGED)

# one optimizer object for every run: the step size is a traced hyperparameter, so runs of equal shapes share
# one compilation (an optax optimizer is a static argument of the training loops)
GD = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


@dataclasses.dataclass(frozen=True)
class CrosscheckConfig:
    """The cross-check problem and its training runs.

    Attributes:
      dim, teacher_width, student_width, activation: the problem (x ~ N(0, I_d), f*(x) = x_1).
      seed: weight seed of teacher and student.
      step_sizes: GD step sizes η of the population runs, each run to ``horizon`` (flow time).
      horizon: flow time t = kη of the population runs.
      online_step_size, batch_size, online_seeds: online SGD (steps to ``online_horizon`` × t*).
      online_horizon: online runs stop at this multiple of the flow's t* (> 2: they must reach 2t*).
    """

    dim: int = 16
    teacher_width: int = 32
    student_width: int = 512
    activation: str = "relu"
    seed: int = 0
    step_sizes: tuple = (4.0, 2.0, 1.0, 0.5)
    horizon: float = 1000.0
    online_step_size: float = 1.0
    batch_size: int = 1024
    online_seeds: int = 4
    online_horizon: float = 2.5

    def validated(self) -> "CrosscheckConfig":
        for name in ("dim", "teacher_width", "student_width", "batch_size", "online_seeds"):
            check_positive_int(getattr(self, name), name.replace("_", " "))
        check_choice(self.activation, ACTIVATIONS, "activation")
        steps = tuple(float(s) for s in self.step_sizes)
        if len(steps) < 3 or any(not (math.isfinite(s) and s > 0) for s in steps) or len(set(steps)) != len(steps):
            raise ValueError(f"step_sizes needs at least 3 distinct positive step sizes (e.g. 4 2 1 0.5); got {steps}")
        for name in ("horizon", "online_step_size", "online_horizon"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', ' ')} must be a positive number; got {value}")
        if self.online_horizon <= TIME_RESOLUTION:
            raise ValueError(f"online horizon must exceed {TIME_RESOLUTION:g} (the runs must reach "
                             f"{TIME_RESOLUTION:g} t* to tell it from t*); got {self.online_horizon}")
        if self.online_seeds < 2:
            raise ValueError("online seeds must be >= 2 (the standard error is the spread over seeds)")
        return dataclasses.replace(self, step_sizes=steps)


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report: ``value`` against ``tolerance`` (a readable rule), its verdict and why.

    Attributes:
      status: ``"passed"``, ``"failed"``, ``"inconclusive"`` or ``"diverged"``.
      passed: status == "passed".
      note: why a check did not pass (empty when it passed).
    """

    name: str
    value: float
    tolerance: str
    status: str
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed}


def crosscheck_models(config: CrosscheckConfig):
    """(student, teacher, target, inputs) of the cross-check problem."""
    d, act = config.dim, config.activation
    inputs = gaussian_inputs(d)
    target = linear_target(np.eye(d)[0])
    student = RandomFeatures(
        student_weights(config.seed, config.student_width, d, act), jnp.asarray(float(config.student_width)), act
    )
    teacher = RandomFeatures(
        teacher_weights(config.seed, config.teacher_width, d, act), jnp.asarray(float(config.teacher_width)), act
    )
    return student, teacher, target, inputs


def fitted_order(step_sizes, deviations) -> float:
    """Least-squares slope of log(deviation) against log(η)."""
    return float(np.polyfit(np.log(np.asarray(step_sizes)), np.log(np.asarray(deviations)), 1)[0])


def order_uncertainty(step_sizes, deviations, uncertainties) -> float:
    """Worst-case error of ``fitted_order`` when each deviation D_i is known to ±δ_i.

    log D_i is then known to ±e_i, e_i = −log(1 − δ_i/D_i) (∞ where δ_i ≥ D_i), and the least-squares slope
    Σ(x_i − x̄) y_i / Σ(x_i − x̄)² (x = log η) moves by at most Σ|x_i − x̄| e_i / Σ(x_i − x̄)²."""
    x = np.log(np.asarray(step_sizes, np.float64))
    dev = np.asarray(deviations, np.float64)
    delta = np.asarray(uncertainties, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dev > 0, delta / dev, np.inf)
        e = np.where(ratio < 1, -np.log1p(-np.where(ratio < 1, ratio, 0.0)), np.inf)
    centred = x - x.mean()
    spread = float(np.sum(centred**2))
    if not spread > 0 or not np.all(np.isfinite(e)):
        return math.inf
    return float(np.sum(np.abs(centred) * e) / spread)


def flow_optimum(problem: SpectralProblem) -> tuple:
    """(t*, L_ST*) of gradient flow (t* refined past the grid; ∞ or 0 where the optimum is there)."""
    t_star, l_star, _ = _best_time(problem, jnp.asarray(FLOW_GRID))
    return float(t_star), float(l_star)


def diverged_rows(errors, bound: float) -> np.ndarray:
    """(n,) True where a run's errors (n, R) hold a non-finite value or pass the stable-GD bound."""
    errors = np.asarray(errors, np.float64)
    finite = np.all(np.isfinite(errors), axis=-1)
    above = np.any(np.where(np.isfinite(errors), errors, 0.0) > bound, axis=-1)
    return ~finite | above


def online_statistics(errors: np.ndarray, steps: np.ndarray, step_size: float, problem: SpectralProblem) -> dict:
    """Best error and its location of online runs against the flow's (L_ST*, t*), with their verdicts.

    Args:
      errors: (n, R) L(w_k) of n seeds at the record steps.
      steps: (R,) record steps k (the flow time is kη).
      step_size: η.
      problem: the unbatched population SpectralProblem of the objective the runs train on.

    Best error: the minimum of the seed-averaged curve; SE = the spread over seeds, pooled over the records with
    kη in [t*/2, 3t*/2] (one record's spread over a few seeds is too noisy to divide by), over √n. Passes when
    |best error − L_ST*| ≤ 5 SE; informative when (5 + 2) SE ≤ Δ₂ = min(L(t*/2), L(2t*)) − L_ST*.
    Location: the mean over seeds of each run's argmin kη, SE = spread/√n. Passes when it is within 5 SE + η·record
    spacing of t*, or inside the flow's basin {t : L_ST(t) − L_ST* ≤ 5 SE of the best error} around t* (a minimum is
    located only up to the times whose errors the runs cannot tell apart). Informative when that acceptance region
    lies inside (t*/2 + 2 SE, 2t* − 2 SE) and the runs reach 2t*.
    Every verdict is "diverged" when a run diverged (``diverged_rows`` with ``discrete.stable_gd_error_bound``).
    """
    errors = np.asarray(errors, np.float64)
    steps = np.asarray(steps)
    n = errors.shape[0]
    times = steps * step_size
    best_t, best_error = flow_optimum(problem)
    bound = float(stable_gd_error_bound(problem))
    diverged = diverged_rows(errors, bound)
    out = {
        "seeds": int(n),
        "flow_best_error": best_error,
        "flow_best_time": best_t,
        "stable_error_bound": bound,
        "diverged_seeds": [int(i) for i in np.flatnonzero(diverged)],
    }
    nan = math.nan
    if diverged.any():
        finite = errors[np.isfinite(errors)]
        largest = f"{finite.max():.3g}" if finite.size == errors.size else "non-finite"
        top = float(np.max(np.asarray(problem.eigenvalues)))
        note = (f"{int(diverged.sum())} of {n} runs diverged (largest error {largest}; a stable gradient descent "
                f"stays below {bound:.3g}); eta*lambda_max = {step_size * top:.3g}: lower the step size")
        return {**out, **_empty_online(), "best_error_status": DIVERGED, "best_time_status": DIVERGED,
                "best_error_note": note, "best_time_note": note}

    flow_errors = np.asarray(_flow_error(problem, jnp.asarray(times, jnp.float64)))
    mean_curve = errors.mean(axis=0)
    k = int(np.argmin(mean_curve))
    window = (times >= 0.5 * best_t) & (times <= 1.5 * best_t)
    if not window.any():
        window = np.arange(times.size) == k
    error_se = float(np.sqrt(errors[:, window].var(axis=0, ddof=1).mean() / n))
    error_diff = float(mean_curve[k] - best_error)
    error_tol = ONLINE_TOLERANCE_SE * error_se

    run_times = times[np.argmin(errors, axis=1)]
    mean_time = float(run_times.mean())
    time_se = float(run_times.std(ddof=1) / math.sqrt(n))
    spacing = float(np.max(np.diff(times))) if times.size > 1 else 0.0
    time_diff = mean_time - best_t
    time_tol = ONLINE_TOLERANCE_SE * time_se + spacing
    basin = _basin(times, flow_errors - best_error, error_tol)
    error_ok = abs(error_diff) <= error_tol
    time_ok = abs(time_diff) <= time_tol or basin[0] <= mean_time <= basin[1]

    has_optimum = math.isfinite(best_t) and best_t > 0
    lo_alt, hi_alt = (best_t / TIME_RESOLUTION, best_t * TIME_RESOLUTION) if has_optimum else (nan, nan)
    if has_optimum:
        around = np.asarray(_flow_error(problem, jnp.asarray([lo_alt, hi_alt])))
        resolution = float(np.min(around) - best_error)
    else:
        resolution = nan
    detectable = (ONLINE_TOLERANCE_SE + DETECTION_MARGIN_SE) * error_se
    accept = (min(best_t - time_tol, basin[0]), max(best_t + time_tol, basin[1]))
    margin = DETECTION_MARGIN_SE * time_se
    reaches = bool(times[-1] >= hi_alt) if has_optimum else False
    error_informative = has_optimum and detectable <= resolution
    time_informative = has_optimum and reaches and lo_alt + margin < accept[0] and accept[1] + margin < hi_alt

    if not has_optimum:
        why = f"the flow's optimal time is {best_t:g}: there is no early-stopped optimum to compare with"
        error_note = time_note = why
    else:
        error_note = "" if error_informative else (
            f"uninformative: (5 + 2) SE = {detectable:.3g} exceeds the flow's excess error {resolution:.3g} at "
            f"t*/2 or 2t*; the check could not tell stopping a factor 2 off from the optimum (more seeds or a "
            f"larger batch)")
        if not reaches:
            time_note = f"uninformative: the runs end at t = {times[-1]:.4g}, before 2t* = {hi_alt:.4g}"
        elif not time_informative:
            time_note = (f"uninformative: the acceptance region [{accept[0]:.4g}, {accept[1]:.4g}] (± 2 SE = "
                         f"{margin:.3g}) reaches t*/2 = {lo_alt:.4g} or 2t* = {hi_alt:.4g} (more seeds or a larger "
                         f"batch)")
        else:
            time_note = ""
    # a deviation beyond the tolerance is a failure whatever the check's power; a pass counts only if informative
    error_status = FAILED if has_optimum and not error_ok else PASSED if error_informative else INCONCLUSIVE
    time_status = FAILED if has_optimum and not time_ok else PASSED if time_informative else INCONCLUSIVE
    if error_status == FAILED:
        error_note = f"|{error_diff:.3g}| > 5 SE = {error_tol:.3g}"
    if time_status == FAILED:
        time_note = f"|{time_diff:.4g}| > 5 SE + dt = {time_tol:.4g} and t outside the basin"
    out.update({
        "sgd_best_error": float(mean_curve[k]),
        "sgd_best_error_se": error_se,
        "best_error_difference": error_diff,
        "best_error_difference_in_se": _ratio(error_diff, error_se),
        "best_error_tolerance": error_tol,
        "best_error_resolution": resolution,
        "best_error_detectable": detectable,
        "best_error_passed": error_status == PASSED,
        "best_error_status": error_status,
        "best_error_note": error_note,
        "sgd_best_time": mean_time,
        "sgd_best_time_se": time_se,
        "best_time_difference": time_diff,
        "best_time_difference_in_se": _ratio(time_diff, time_se),
        "best_time_tolerance": time_tol,
        "flow_basin": list(basin),
        "best_time_acceptance": list(accept),
        "best_time_alternatives": [lo_alt, hi_alt],
        "best_time_passed": time_status == PASSED,
        "best_time_status": time_status,
        "best_time_note": time_note,
        "sgd_error_at_flow_best_time": float(errors[:, int(np.argmin(np.abs(times - best_t)))].mean())
        if math.isfinite(best_t) else nan,
        "mean_curve_best_time": float(times[k]),
        "per_seed_best_error": [float(v) for v in errors.min(axis=1)],
        "per_seed_best_time": [float(t) for t in run_times],
    })
    return out


def _empty_online() -> dict:
    keys = ("sgd_best_error", "sgd_best_error_se", "best_error_difference", "best_error_difference_in_se",
            "best_error_tolerance", "best_error_resolution", "best_error_detectable", "sgd_best_time",
            "sgd_best_time_se", "best_time_difference", "best_time_difference_in_se", "best_time_tolerance",
            "sgd_error_at_flow_best_time", "mean_curve_best_time")
    out = {k: math.nan for k in keys}
    out.update(flow_basin=[math.nan, math.nan], best_time_acceptance=[math.nan, math.nan],
               best_time_alternatives=[math.nan, math.nan], best_error_passed=False, best_time_passed=False,
               per_seed_best_error=[], per_seed_best_time=[])
    return out


def _basin(times: np.ndarray, excess: np.ndarray, level: float) -> tuple:
    """The interval of record times around the flow's minimum where its excess error stays ≤ level."""
    k = int(np.argmin(excess))
    inside = excess <= level
    lo = k
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = k
    while hi < times.size - 1 and inside[hi + 1]:
        hi += 1
    return float(times[lo]), float(times[hi])


def _ratio(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


_best_time = jax.jit(best_time)
_flow_error = jax.jit(student_loss)
_loss_at_infinity = jax.jit(loss_at_infinity)


@jax.jit
def _deviations(problem, step_sizes, record_steps, errors):
    """max_k |L(w_k) − L_GD(k)| and max_k |L(w_k) − L_GF(kη)| per run: (n,), (n, R), (n, R) → (n,), (n,)."""

    def one(eta, steps, err):
        closed = gd_loss(problem, eta, steps)
        flow = student_loss(problem, steps * eta)
        return jnp.max(jnp.abs(err - closed)), jnp.max(jnp.abs(err - flow))

    return jax.vmap(one)(step_sizes, record_steps, errors)


def _closed_form_check(name, value, diverged_etas, top, bound) -> Check:
    tolerance = f"<= {CLOSED_FORM_TOLERANCE:g}"
    if diverged_etas:
        etas = ", ".join(f"{e:g}" for e in diverged_etas)
        products = ", ".join(f"{e * top:.3g}" for e in diverged_etas)
        note = (f"GD with eta = {etas} diverged (eta*lambda_max = {products}; stable up to 2): errors non-finite or "
                f"above the stable-GD bound {bound:.3g}")
        return Check(name, value, tolerance, DIVERGED, note)
    ok = value <= CLOSED_FORM_TOLERANCE  # NaN fails
    return Check(name, value, tolerance, PASSED if ok else FAILED, "" if ok else f"{value:.3g} > {tolerance[3:]}")


def run_crosscheck(config: CrosscheckConfig = CrosscheckConfig()) -> dict:
    """Run every check of the module docstring; returns a JSON-ready dict (``status``, ``passed``, ``checks``…)."""
    config = config.validated()
    seconds = {}
    clock = time.perf_counter()
    student, teacher, target, inputs = crosscheck_models(config)
    objective = student_objective(student, teacher, target, inputs)
    training = population_training(objective)
    teacher_training = population_training(teacher_objective(teacher, target, inputs))
    problem, teacher_problem = training.problem, teacher_training.problem
    t_star, l_star = flow_optimum(problem)
    l_inf = float(_loss_at_infinity(problem))
    teacher_loss = float(teacher_problem.residual)
    top = float(jnp.max(problem.eigenvalues))
    bound = float(stable_gd_error_bound(problem))
    seconds["setup"] = time.perf_counter() - clock

    clock = time.perf_counter()
    etas = np.asarray(config.step_sizes)
    n_steps = [int(math.ceil(config.horizon / eta)) for eta in etas]
    # one compiled call for every step size: each row counts to its own K and then repeats K (empty segments)
    record = np.minimum(np.arange(max(n_steps) + 1)[None, :], np.asarray(n_steps)[:, None])
    runs = population_runs(training, GD, record, {"learning_rate": jnp.asarray(etas)})
    run_errors = np.asarray(runs.errors)
    diverged = diverged_rows(run_errors, bound)
    deviations = _deviations(problem, jnp.asarray(etas), jnp.asarray(record), runs.errors)
    closed_form, flow_dev = (np.asarray(v).tolist() for v in deviations)
    bounds = [float(gd_flow_bound(problem, eta)) for eta in etas]
    order = fitted_order(etas, flow_dev) if np.all(np.asarray(flow_dev) > 0) else math.nan
    rounding = float(rounding_estimate(problem))
    uncertainty = order_uncertainty(etas, flow_dev, np.asarray(closed_form) + rounding)
    teacher_eta = config.step_sizes[len(config.step_sizes) // 2]
    teacher_steps = np.arange(int(math.ceil(config.horizon / teacher_eta)) + 1)
    teacher_run = train_population(teacher_training, GD, teacher_steps, hyperparams={"learning_rate": teacher_eta})
    teacher_errors = np.asarray(teacher_run.errors)
    teacher_closed_curve = np.asarray(gd_loss(teacher_problem, teacher_eta, jnp.asarray(teacher_steps)))
    teacher_closed = float(np.max(np.abs(teacher_errors - teacher_closed_curve)))
    teacher_bound = float(stable_gd_error_bound(teacher_problem))
    teacher_top = float(jnp.max(teacher_problem.eigenvalues))
    teacher_diverged = bool(diverged_rows(teacher_errors[None], teacher_bound)[0])
    seconds["population"] = time.perf_counter() - clock

    clock = time.perf_counter()
    eta = config.online_step_size
    online_end = config.online_horizon * t_star if math.isfinite(t_star) and t_star > 0 else config.horizon
    online_steps = np.arange(int(math.ceil(online_end / eta)) + 1)
    runs = online_runs(
        training, student, label_function(objective), inputs, GD, online_steps,
        batch_size=config.batch_size, seeds=range(config.online_seeds), hyperparams={"learning_rate": eta},
    )
    online = online_statistics(np.asarray(runs.errors), online_steps, eta, problem)
    online.update(step_size=eta, batch_size=config.batch_size, steps=int(online_steps[-1]),
                  step_size_times_lambda_max=eta * top)
    online["discrete_gd_best_error"] = float(np.min(np.asarray(gd_loss(problem, eta, jnp.asarray(online_steps)))))
    seconds["online"] = time.perf_counter() - clock

    closed_form_max = float(np.max(closed_form))  # NaN (a diverged run) propagates and fails
    diverged_etas = [float(e) for e, bad in zip(etas, diverged) if bad]
    checks = [
        _closed_form_check("gd_vs_discrete_closed_form_max_abs", closed_form_max, diverged_etas, top, bound),
        _closed_form_check("teacher_gd_vs_discrete_closed_form_max_abs", teacher_closed,
                           [float(teacher_eta)] if teacher_diverged else [], teacher_top, teacher_bound),
    ]
    for eta_i, dev, flow_bound, bad in zip(config.step_sizes, flow_dev, bounds, diverged):
        name = f"gd_vs_flow_max_abs[eta={eta_i:g}]"
        if bad:
            checks.append(Check(name, dev, "needs a stable run", DIVERGED,
                                f"GD diverged (eta*lambda_max = {eta_i * top:.3g}; stable up to 2)"))
        elif not math.isfinite(flow_bound):  # the bound holds for η λ_max < 1 only: a larger step fails
            checks.append(Check(name, dev, "needs eta*lambda_max < 1", FAILED,
                                f"eta*lambda_max = {eta_i * top:.3g} >= 1: no a-priori bound; use a smaller step"))
        else:
            ok = dev <= flow_bound
            checks.append(Check(name, dev, f"<= bound {flow_bound:.3g}", PASSED if ok else FAILED,
                                "" if ok else f"{dev:.3g} above the a-priori bound {flow_bound:.3g}"))
    order_tolerance = f"in [{ORDER_RANGE[0]}, {ORDER_RANGE[1]}]"
    allowed = (ORDER_RANGE[1] - ORDER_RANGE[0]) / 2 / ONLINE_TOLERANCE_SE
    if diverged.any():
        checks.append(Check("flow_convergence_order", order, order_tolerance, DIVERGED,
                            "a population run diverged: its deviation has no order"))
    elif not uncertainty <= allowed:
        checks.append(Check("flow_convergence_order", order, order_tolerance, INCONCLUSIVE,
                            f"uninformative: the slope is known only to ±{uncertainty:.3g} (> {allowed:g}): the "
                            "deviations are at the level of their own uncertainty"))
    else:
        ok = ORDER_RANGE[0] <= order <= ORDER_RANGE[1]
        checks.append(Check("flow_convergence_order", order, order_tolerance, PASSED if ok else FAILED,
                            "" if ok else f"order {order:.3g} outside {order_tolerance[3:]}"))
    checks += [
        Check("online_sgd_vs_flow.best_error_difference", online["best_error_difference"],
              f"|.| <= {ONLINE_TOLERANCE_SE:g} SE = {online['best_error_tolerance']:.3g}",
              online["best_error_status"], online["best_error_note"]),
        Check("online_sgd_vs_flow.best_time_difference", online["best_time_difference"],
              f"|.| <= {ONLINE_TOLERANCE_SE:g} SE + dt = {online['best_time_tolerance']:.3g} or t in basin "
              f"[{online['flow_basin'][0]:.4g}, {online['flow_basin'][1]:.4g}]",
              online["best_time_status"], online["best_time_note"]),
    ]
    online["passed"] = bool(online["best_error_passed"] and online["best_time_passed"])
    status = overall_status(checks)
    return {
        "status": status,
        "passed": status == PASSED,
        "checks": [c.to_dict() for c in checks],
        "gd_vs_discrete_closed_form_max_abs": closed_form_max,
        "teacher_gd_vs_discrete_closed_form_max_abs": teacher_closed,
        "gd_vs_flow_max_abs": {
            "step_sizes": [float(e) for e in etas],
            "steps": n_steps,
            "max_abs": flow_dev,
            "bound": bounds,
            "vs_discrete_closed_form_max_abs": closed_form,
            "diverged": [bool(b) for b in diverged],
            "step_size_times_lambda_max": [float(e * top) for e in etas],
        },
        "flow_convergence_order": order,
        "flow_convergence_order_uncertainty": uncertainty,
        "online_sgd_vs_flow": online,
        "tolerances": {
            "closed_form_max_abs": CLOSED_FORM_TOLERANCE,
            "flow_convergence_order": list(ORDER_RANGE),
            "flow_convergence_order_max_uncertainty": allowed,
            "online_standard_errors": ONLINE_TOLERANCE_SE,
            "detection_margin_standard_errors": DETECTION_MARGIN_SE,
            "time_resolution_factor": TIME_RESOLUTION,
            "gd_vs_flow": "discrete.gd_flow_bound per step size",
            "diverged": "an error non-finite or above discrete.stable_gd_error_bound",
        },
        "problem": {
            "teacher_loss": teacher_loss,
            "best_time": t_star,
            "best_student_loss": l_star,
            "student_loss_at_infinity": l_inf,
            "ceiling_loss": float(problem.residual),
            "lambda_max": top,
            "stable_error_bound": bound,
            "target": "x_1",
            "inputs": f"N(0, I_{config.dim})",
        },
        "config": dataclasses.asdict(config),
        "seconds": seconds,
    }


def overall_status(checks) -> str:
    """failed if any check failed, else diverged if any diverged, else inconclusive if any was, else passed."""
    statuses = {c.status if isinstance(c, Check) else c["status"] for c in checks}
    for status in (FAILED, DIVERGED, INCONCLUSIVE):
        if status in statuses:
            return status
    return PASSED


VERDICTS = {PASSED: "yes", FAILED: "NO", INCONCLUSIVE: "INCONCLUSIVE", DIVERGED: "DIVERGED"}


def format_report(report: dict) -> str:
    """The checks as a fixed-width table, with the problem on top, notes for checks that did not pass and the
    verdict (PASSED, FAILED, DIVERGED or INCONCLUSIVE) last."""
    p = report["problem"]
    width = max(len("tolerance"), *(len(c["tolerance"]) for c in report["checks"]))
    lines = [
        f"problem: L_TE = {p['teacher_loss']:.6g}   L_ST* = {p['best_student_loss']:.6g} at t* = {p['best_time']:.6g}"
        f"   L_ST(inf) = {p['student_loss_at_infinity']:.6g}",
        f"{'check':<44} {'value':>11}  {'tolerance':<{width}}  pass",
    ]
    for c in report["checks"]:
        lines.append(f"{c['name']:<44} {c['value']:>11.4g}  {c['tolerance']:<{width}}  {VERDICTS[c['status']]}")
    o = report["online_sgd_vs_flow"]
    lines.append(
        f"online SGD ({o['seeds']} seeds, batch {o['batch_size']}, eta {o['step_size']:g}): best error "
        f"{o['sgd_best_error']:.6g} ± {o['sgd_best_error_se']:.2g} (flow {o['flow_best_error']:.6g}, discrete GD "
        f"{o['discrete_gd_best_error']:.6g}) at t = {o['sgd_best_time']:.4g} ± {o['sgd_best_time_se']:.2g} "
        f"(flow {o['flow_best_time']:.4g})"
    )
    if math.isfinite(o["best_error_detectable"]) and math.isfinite(o["best_error_resolution"]):
        acc, alt = o["best_time_acceptance"], o["best_time_alternatives"]
        lines.append(
            f"resolution: (5 + 2) SE = {o['best_error_detectable']:.3g} vs the flow's excess at t*/2, 2t*: "
            f"{o['best_error_resolution']:.3g}; time acceptance [{acc[0]:.4g}, {acc[1]:.4g}] ± 2 SE = "
            f"{2 * o['sgd_best_time_se']:.3g} vs t*/2, 2t* = {alt[0]:.4g}, {alt[1]:.4g}"
        )
    for c in report["checks"]:
        if c["status"] != PASSED:
            lines.append(f"{c['status'].upper()}: {c['name']}: {c['note']}")
    lines.append(report["status"].upper())
    return "\n".join(lines)
