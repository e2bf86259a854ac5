"""Cross-check of the exact solver against discrete training with optax, on one small W2S problem.

Default problem: x ~ N(0, I_16), f*(x) = x_1, ReLU teacher of width 32 and student of width 512 with the sweep's
weights of seed 0 (``sweep.teacher_weights`` / ``sweep.student_weights``). Checks and their tolerances:

  gd_vs_discrete_closed_form_max_abs   max_k |L(w_k) − L_GD(k)| between ``optax.sgd(η)`` on the population
                                       objective and the closed form of discrete GD, over every step of every
                                       run below (student; the teacher likewise):      ≤ 1e-10 (float64).
  gd_vs_flow_max_abs                   max_k |L(w_k) − L_GF(kη)| for each step size η, k η ≤ horizon:
                                       ≤ the a-priori bound ``discrete.gd_flow_bound`` (= O(η); it needs
                                       ηλ_max < 1, so a larger step fails).
  flow_convergence_order               slope of log(gd_vs_flow_max_abs) against log η:   within [0.8, 1.2].
  online_sgd_vs_flow                   online SGD (fresh minibatches with teacher labels, several seeds):
      best error: the minimum over k of the seed-averaged error curve; standard error = the spread of L(w_k)
                  over seeds, pooled over kη in [t*/2, 3t*/2], / √seeds;      |difference from L_ST*| ≤ 5 SE.
      its location: the mean over seeds of each run's argmin kη, SE = spread / √seeds;
                  |difference from t*| ≤ 5 SE + η·record spacing, or inside the flow's basin around t* where
                  L_ST(t) − L_ST* ≤ 5 SE of the best error (the runs cannot locate a minimum more finely).
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
from w2sjax.discrete import (
    discrete_gd_error,
    gd_flow_bound,
    objective_problem,
    online_runs,
    population_runs,
    student_objective,
    teacher_objective,
    train_population,
)
from w2sjax.features import ACTIVATIONS, RandomFeatures
from w2sjax.inputs import gaussian_inputs, linear_target
from w2sjax.spectral import best_time, student_loss, student_loss_at_infinity
from w2sjax.sweep import student_weights, teacher_weights

CLOSED_FORM_TOLERANCE = 1e-10
ORDER_RANGE = (0.8, 1.2)
ONLINE_TOLERANCE_SE = 5.0

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
      online_horizon: online runs stop at this multiple of the flow's t*.
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
    online_horizon: float = 1.5

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
        if self.online_seeds < 2:
            raise ValueError("online seeds must be >= 2 (the standard error is the spread over seeds)")
        return dataclasses.replace(self, step_sizes=steps)


@dataclasses.dataclass(frozen=True)
class Check:
    """One pass/fail line of the report: ``value`` against ``tolerance`` (a readable rule)."""

    name: str
    value: float
    tolerance: str
    passed: bool


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


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def fitted_order(step_sizes, deviations) -> float:
    """Least-squares slope of log(deviation) against log(η)."""
    return float(np.polyfit(np.log(np.asarray(step_sizes)), np.log(np.asarray(deviations)), 1)[0])


def online_statistics(
    errors: np.ndarray, steps: np.ndarray, step_size: float, flow_errors: np.ndarray, best_error: float, best_t: float
) -> dict:
    """Best error and its location of online runs against the flow's (L_ST*, t*).

    Args:
      errors: (n, R) L(w_k) of n seeds at the record steps.
      steps: (R,) record steps k (the flow time is kη).
      step_size: η.
      flow_errors: (R,) the flow's L_ST(kη) at the record steps.
      best_error, best_t: the flow's L_ST* and t*.

    Best error: the minimum of the seed-averaged curve; SE = the spread over seeds, pooled over the records with
    kη in [t*/2, 3t*/2] (one record's spread over a few seeds is too noisy to divide by), over √n. Passes when
    |best error − L_ST*| ≤ 5 SE.
    Location: the mean over seeds of each run's argmin kη, SE = spread/√n. Passes when it is within 5 SE + η·record
    spacing of t*, or inside the flow's basin {t : L_ST(t) − L_ST* ≤ 5 SE of the best error} around t* (a minimum is
    located only up to the times whose errors the runs cannot tell apart).
    """
    n = errors.shape[0]
    times = steps * step_size
    mean_curve = errors.mean(axis=0)
    k = int(np.argmin(mean_curve))
    window = (times >= 0.5 * best_t) & (times <= 1.5 * best_t)
    if not window.any():
        window = np.arange(times.size) == k
    error_se = float(np.sqrt(errors[:, window].var(axis=0, ddof=1).mean() / n))
    error_diff = float(mean_curve[k] - best_error)
    at_best = errors[:, int(np.argmin(np.abs(times - best_t)))]

    run_times = times[np.argmin(errors, axis=1)]
    mean_time = float(run_times.mean())
    time_se = float(run_times.std(ddof=1) / math.sqrt(n))
    spacing = float(np.max(np.diff(times))) if times.size > 1 else 0.0
    time_diff = mean_time - best_t
    basin = _basin(times, np.asarray(flow_errors) - best_error, ONLINE_TOLERANCE_SE * error_se)
    time_ok = abs(time_diff) <= ONLINE_TOLERANCE_SE * time_se + spacing or basin[0] <= mean_time <= basin[1]
    return {
        "seeds": int(n),
        "flow_best_error": best_error,
        "flow_best_time": best_t,
        "sgd_best_error": float(mean_curve[k]),
        "sgd_best_error_se": error_se,
        "best_error_difference": error_diff,
        "best_error_difference_in_se": _ratio(error_diff, error_se),
        "best_error_tolerance": ONLINE_TOLERANCE_SE * error_se,
        "best_error_passed": bool(abs(error_diff) <= ONLINE_TOLERANCE_SE * error_se),
        "sgd_best_time": mean_time,
        "sgd_best_time_se": time_se,
        "best_time_difference": time_diff,
        "best_time_difference_in_se": _ratio(time_diff, time_se),
        "best_time_tolerance": ONLINE_TOLERANCE_SE * time_se + spacing,
        "flow_basin": list(basin),
        "best_time_passed": bool(time_ok),
        "sgd_error_at_flow_best_time": float(at_best.mean()),
        "mean_curve_best_time": float(times[k]),
        "per_seed_best_error": [float(v) for v in errors.min(axis=1)],
        "per_seed_best_time": [float(t) for t in run_times],
    }


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
_loss_at_infinity = jax.jit(student_loss_at_infinity)


@jax.jit
def _deviations(problem, step_sizes, record_steps, errors):
    """max_k |L(w_k) − L_GD(k)| and max_k |L(w_k) − L_GF(kη)| per run: (n,), (n, R), (n, R) → (n,), (n,)."""

    def one(eta, steps, err):
        closed = discrete_gd_error(problem, eta, steps)
        flow = student_loss(problem, steps * eta)
        return jnp.max(jnp.abs(err - closed)), jnp.max(jnp.abs(err - flow))

    return jax.vmap(one)(step_sizes, record_steps, errors)


def run_crosscheck(config: CrosscheckConfig = CrosscheckConfig()) -> dict:
    """Run every check of the module docstring; returns a JSON-ready dict (``passed``, ``checks`` and details)."""
    config = config.validated()
    seconds = {}
    clock = time.perf_counter()
    student, teacher, target, inputs = crosscheck_models(config)
    objective, labels = student_objective(student, teacher, target, inputs)
    teacher_obj = teacher_objective(teacher, target, inputs)
    problem = objective_problem(objective)
    teacher_problem = objective_problem(teacher_obj)
    t_star, l_star = (float(v) for v in _best_time(problem, np.logspace(-2, 7, 451)))
    l_inf = float(_loss_at_infinity(problem))
    teacher_loss = float(teacher_problem.residual)
    seconds["setup"] = time.perf_counter() - clock

    clock = time.perf_counter()
    etas = np.asarray(config.step_sizes)
    n_steps = [int(math.ceil(config.horizon / eta)) for eta in etas]
    # one compiled call for every step size: each row counts to its own K and then repeats K (empty segments)
    record = np.minimum(np.arange(max(n_steps) + 1)[None, :], np.asarray(n_steps)[:, None])
    runs = population_runs(objective, GD, record, {"learning_rate": jnp.asarray(etas)})
    deviations = _deviations(problem, jnp.asarray(etas), jnp.asarray(record), runs.errors)
    closed_form, flow_dev = (np.asarray(v).tolist() for v in deviations)
    bounds = [float(gd_flow_bound(problem, eta)) for eta in etas]
    order = fitted_order(etas, flow_dev)
    teacher_eta = config.step_sizes[len(config.step_sizes) // 2]
    teacher_steps = np.arange(int(math.ceil(config.horizon / teacher_eta)) + 1)
    teacher_run = train_population(teacher_obj, GD, teacher_steps, hyperparams={"learning_rate": teacher_eta})
    teacher_closed = _max_abs(teacher_run.errors, discrete_gd_error(teacher_problem, teacher_eta, teacher_steps))
    seconds["population"] = time.perf_counter() - clock

    clock = time.perf_counter()
    eta = config.online_step_size
    online_end = config.online_horizon * t_star if math.isfinite(t_star) else config.horizon
    online_steps = np.arange(int(math.ceil(online_end / eta)) + 1)
    runs = online_runs(
        objective, student, labels, inputs, GD, online_steps,
        batch_size=config.batch_size, seeds=range(config.online_seeds), hyperparams={"learning_rate": eta},
    )
    flow_errors = np.asarray(_flow_error(problem, online_steps * eta))
    online = online_statistics(np.asarray(runs.errors), online_steps, eta, flow_errors, l_star, t_star)
    online.update(step_size=eta, batch_size=config.batch_size, steps=int(online_steps[-1]))
    online["discrete_gd_best_error"] = float(np.min(discrete_gd_error(problem, eta, online_steps)))
    seconds["online"] = time.perf_counter() - clock

    error_ok, time_ok = online["best_error_passed"], online["best_time_passed"]
    closed_form_max = float(np.max(closed_form))  # NaN (a diverged run) propagates and fails
    checks = [
        Check("gd_vs_discrete_closed_form_max_abs", closed_form_max, f"<= {CLOSED_FORM_TOLERANCE:g}",
              closed_form_max <= CLOSED_FORM_TOLERANCE),
        Check("teacher_gd_vs_discrete_closed_form_max_abs", teacher_closed, f"<= {CLOSED_FORM_TOLERANCE:g}",
              teacher_closed <= CLOSED_FORM_TOLERANCE),
    ]
    checks += [  # the bound holds for η λ_max < 1 only: a larger step fails this check
        Check(f"gd_vs_flow_max_abs[eta={eta_i:g}]", dev,
              f"<= bound {bound:.3g}" if math.isfinite(bound) else "needs eta*lambda_max < 1",
              math.isfinite(bound) and dev <= bound)
        for eta_i, dev, bound in zip(config.step_sizes, flow_dev, bounds)
    ]
    checks += [
        Check("flow_convergence_order", order, f"in [{ORDER_RANGE[0]}, {ORDER_RANGE[1]}]",
              ORDER_RANGE[0] <= order <= ORDER_RANGE[1]),
        Check("online_sgd_vs_flow.best_error_difference", online["best_error_difference"],
              f"|.| <= {ONLINE_TOLERANCE_SE:g} SE = {ONLINE_TOLERANCE_SE * online['sgd_best_error_se']:.3g}", error_ok),
        Check("online_sgd_vs_flow.best_time_difference", online["best_time_difference"],
              f"|.| <= {ONLINE_TOLERANCE_SE:g} SE + dt = {online['best_time_tolerance']:.3g} or t in basin "
              f"[{online['flow_basin'][0]:.4g}, {online['flow_basin'][1]:.4g}]", time_ok),
    ]
    online["passed"] = bool(error_ok and time_ok)
    return {
        "passed": all(c.passed for c in checks),
        "checks": [dataclasses.asdict(c) for c in checks],
        "gd_vs_discrete_closed_form_max_abs": closed_form_max,
        "teacher_gd_vs_discrete_closed_form_max_abs": teacher_closed,
        "gd_vs_flow_max_abs": {
            "step_sizes": [float(e) for e in etas],
            "steps": n_steps,
            "max_abs": flow_dev,
            "bound": bounds,
            "vs_discrete_closed_form_max_abs": closed_form,
        },
        "flow_convergence_order": order,
        "online_sgd_vs_flow": online,
        "tolerances": {
            "closed_form_max_abs": CLOSED_FORM_TOLERANCE,
            "flow_convergence_order": list(ORDER_RANGE),
            "online_standard_errors": ONLINE_TOLERANCE_SE,
            "gd_vs_flow": "discrete.gd_flow_bound per step size",
        },
        "problem": {
            "teacher_loss": teacher_loss,
            "best_time": t_star,
            "best_student_loss": l_star,
            "student_loss_at_infinity": l_inf,
            "ceiling_loss": float(problem.residual),
            "target": "x_1",
            "inputs": f"N(0, I_{config.dim})",
        },
        "config": dataclasses.asdict(config),
        "seconds": seconds,
    }


def format_report(report: dict) -> str:
    """The checks as a fixed-width table, with the problem on top."""
    p = report["problem"]
    width = max(len("tolerance"), *(len(c["tolerance"]) for c in report["checks"]))
    lines = [
        f"problem: L_TE = {p['teacher_loss']:.6g}   L_ST* = {p['best_student_loss']:.6g} at t* = {p['best_time']:.6g}"
        f"   L_ST(inf) = {p['student_loss_at_infinity']:.6g}",
        f"{'check':<44} {'value':>11}  {'tolerance':<{width}}  pass",
    ]
    for c in report["checks"]:
        verdict = "yes" if c["passed"] else "NO"
        lines.append(f"{c['name']:<44} {c['value']:>11.4g}  {c['tolerance']:<{width}}  {verdict}")
    o = report["online_sgd_vs_flow"]
    lines.append(
        f"online SGD ({o['seeds']} seeds, batch {o['batch_size']}, eta {o['step_size']:g}): best error "
        f"{o['sgd_best_error']:.6g} ± {o['sgd_best_error_se']:.2g} (flow {o['flow_best_error']:.6g}, discrete GD "
        f"{o['discrete_gd_best_error']:.6g}) at t = {o['sgd_best_time']:.4g} ± {o['sgd_best_time_se']:.2g} "
        f"(flow {o['flow_best_time']:.4g})"
    )
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)
