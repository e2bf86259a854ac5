"""The engine: an objective and a time grid in, every figure of merit out, by the route that fits.

Routes (``method=``):
  ``eigh``      dense eigendecomposition of G_train (M × M): O(M³), exact at every time, ∞ included.
  ``factor``    G_train = F Fᵀ through FᵀF (k × k), k < M: linear features (k = d), samples (k = n).
  ``krylov``    block Lanczos quadrature (population objectives): O(M² p) per block with G stored
                (``operator="stored"``), or never formed (``"tiled"``: O(M² d) per block, O(M) memory), or
                split over a device mesh (``"sharded"``).
  ``infinite``  the infinitely wide student (``routes.infinite``), where it exists.
``method="auto"`` plans every route that applies (memory first, then a cost model of its seconds) and takes
the cheapest; the plan and its reason are recorded in the result (``W2SResult.route``).

Every reported quantity carries an error estimate (``W2SResult.error``): the rounding level for the exact
routes; for Krylov, the largest change of that quantity over the last check (the stopping rule requires it to
be below ``tol`` · s* — s* = E[f*²] sets the scale of every error — twice in a row, and t* to move by less
than ``time_rtol``), or zero where the Krylov space became invariant (the quadrature is then exact).

Float32 problems (``routes.mixed``): eigh decomposes G in float32; Krylov multiplies by G in float32
(``routes.krylov``). Both add the estimates of ``precision.float32_errors``; for Krylov these also floor the
stopping rule (a figure needs to move by less than its float32 estimate, not tol · s*).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax import autodiff
from w2sjax._checks import check_choice, check_positive_int, is_traced
from w2sjax.curves import ErrorEstimate, RouteInfo, rounding_estimate, summarize_compiled, time_error
from w2sjax.features import InfiniteFeatures, RandomFeatures, feature_gram
from w2sjax.objectives import Law, Objective, factor_size, label_count
from w2sjax.routes import dense, krylov, operators
from w2sjax.routes import mixed
from w2sjax.precision import float32_errors
from w2sjax.spectral import default_rcond

METHODS = ("auto", "eigh", "factor", "krylov", "infinite")
OPERATORS = ("auto", "stored", "tiled", "sharded")

DEFAULT_TOL = 1e-11
"""Krylov stopping rule: every loss (curve, L*, L(∞), L_ceil) moves by at most tol · s* between checks."""
DEFAULT_TIME_RTOL = 1e-10
"""Krylov stopping rule: t* moves by at most this, relatively."""
DEFAULT_MAX_BLOCKS = 1024
DEFAULT_CHECK_EVERY = 8
INITIAL_CAPACITY = 64
EIGH_MATRICES = 5
"""M × M arrays alive during the dense route: G, its eigenvectors and the eigensolver's workspace."""
HOST_MEMORY_FRACTION = 0.6
DEFAULT_MEMORY_BYTES = 8 * 2**30
GIB = 2**30

# Cost model (seconds per unit of work), by backend; measured on a 2-core CPU (benchmarks/RESULTS.md) and an
# H100 where noted. Only ratios between routes matter for the choice.
INFINITE_DEGREES = 200  # typical truncation degree of the spherical-harmonic series (planning only)
COSTS = {
    "cpu": {"eigh": 1.9e-10, "gram": 1.6e-8, "pass": 5.0e-10, "tile": 2.4e-8},
    "gpu": {"eigh": 4.0e-12, "gram": 2.0e-11, "pass": 2.0e-12, "tile": 4.0e-11},
}
BLOCKS_BASE, BLOCKS_PER_DECADE = 24, 3.0
"""Predicted Krylov blocks: BLOCKS_BASE + BLOCKS_PER_DECADE · log10(λ_max/λ_cut) (the span of the spectrum
the quadrature must resolve for L(∞))."""


class KrylovConvergenceWarning(UserWarning):
    """The Krylov quadrature did not meet its tolerance within ``max_blocks`` blocks."""


def device_memory_bytes(device=None) -> int:
    """Bytes free on ``device``: its ``memory_stats()`` (GPU), else a fraction of the host's memory (CPU)."""
    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # backends without statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        return int(HOST_MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MEMORY_BYTES


def check_model_sizes(student_width, teacher_widths, dim: int, itemsize: int = 8, *, teachers_per_batch: int | None = None,
                      memory_bytes: int | None = None) -> None:
    """ValueError, before any weights are drawn, when the weights (M_ST + Σ M_TE) × d or the teachers' dense fits
    (n × 5 M_TE² numbers: teachers use eigh) cannot fit in memory. ``student_width`` may be ∞ (no weights)."""
    memory = device_memory_bytes() if memory_bytes is None else int(memory_bytes)
    rows = (0 if math.isinf(student_width) else int(student_width)) + sum(int(m) for m in teacher_widths)
    weights = rows * int(dim) * itemsize
    if weights > memory:
        raise ValueError(f"the weights alone ({rows:,} features × d = {int(dim):,}) need {weights / GIB:.3g} GiB but "
                         f"{memory / GIB:.3g} GiB is available; use a smaller input dimension or fewer features")
    widest = max(int(m) for m in teacher_widths)
    n = len(teacher_widths) if teachers_per_batch is None else teachers_per_batch
    fits = n * EIGH_MATRICES * widest * widest * itemsize
    if fits > memory:
        raise ValueError(f"fitting {n} teacher(s) of up to M_TE = {widest:,} features (dense, padded to the widest) "
                         f"needs {fits / GIB:.3g} GiB but {memory / GIB:.3g} GiB is available; use narrower teachers")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The route for one objective, and why.

    Attributes:
      method, operator: the route (operator None for dense routes).
      reason: one line.
      memory_bytes: available per device.
      needed_bytes: {route: bytes} for every route that applies.
      seconds: {route: predicted seconds} (the cost model; ratios matter, not the values).
    """

    method: str
    operator: str | None
    reason: str
    memory_bytes: int
    needed_bytes: dict
    seconds: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _route_key(method, operator):
    return method if operator is None else f"{method}/{operator}"


def predicted_blocks(width: int, itemsize: int) -> int:
    """Blocks the Krylov quadrature is predicted to need (the stopping rule decides)."""
    span = math.log10(1 / (width * (2.2e-16 if itemsize == 8 else 1.2e-7)))
    return int(BLOCKS_BASE + BLOCKS_PER_DECADE * span)


def route_needs(objective: Objective, times: int, *, shards: int = 1, tile_rows: int | None = None,
                max_blocks: int = DEFAULT_MAX_BLOCKS) -> dict:
    """{route: (bytes per device, predicted seconds)} for every route that applies to ``objective``."""
    f = objective.features
    m, d = f.rows, f.dim
    n = label_count(objective) + 1
    itemsize = jnp.dtype(f.weights.dtype).itemsize
    wide = jnp.dtype(mixed.time_dtype(f.weights.dtype)).itemsize  # float32 problems: basis, curves in float64
    backend = "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "cpu"
    cost = COSTS[backend]
    curve_bytes = (times * n + 2 * min(times, 4096) * n) * wide
    out = {}
    if objective.population or shards == 1:
        eval_extra = 0 if objective.population else 2 * m * m * itemsize
        out["eigh"] = (EIGH_MATRICES * m * m * itemsize + eval_extra + curve_bytes,
                       cost["eigh"] * m**3 + cost["gram"] * m * m)
    k = factor_size(objective)
    if k is not None and k < m:
        extra = 0 if objective.population else m * m * itemsize + 2 * m * k * itemsize
        out["factor"] = ((2 * m * k + 3 * k * k) * itemsize + extra + curve_bytes,
                         cost["eigh"] * k**3 + 2 * cost["pass"] * m * k * k)
    if objective.population and isinstance(objective.train, Law):
        blocks = min(predicted_blocks(m, wide), max_blocks)
        capacity = min(max_blocks, max(INITIAL_CAPACITY, blocks))
        basis = krylov.krylov_bytes(m, n, capacity, wide, shards) + curve_bytes
        reorth = 4 * cost["pass"] * m * (n + 1) ** 2 * blocks * blocks / 2
        if shards == 1:
            out["krylov/stored"] = (basis + operators.stored_bytes(m, itemsize),
                                    cost["gram"] * m * m + blocks * cost["pass"] * m * m * (n + 1) + reorth)
            rows = tile_rows or operators.default_square_tile_rows(m, itemsize=itemsize)
            tile = operators.TILE_TEMPORARIES * rows * rows * itemsize
            out["krylov/tiled"] = (basis + tile + 2 * m * d * wide,
                                   blocks * cost["tile"] * m * m / 2 + reorth)
        else:
            local = -(-m // shards)
            rows = tile_rows or operators.default_tile_rows(local, itemsize, columns=m)
            tile = operators.TILE_TEMPORARIES * rows * m * itemsize
            out["krylov/sharded"] = (basis + tile + 2 * m * d * wide,
                                     blocks * cost["tile"] * m * m / shards + reorth)
    return out


def plan_route(objective: Objective, times: int, *, method: str = "auto", operator: str = "auto",
               memory_bytes: int | None = None, mesh=None, tile_rows: int | None = None,
               max_blocks: int = DEFAULT_MAX_BLOCKS, dense_only: bool = False) -> Plan:
    """Choose the route: the requested one if it applies and fits, else (auto) the cheapest that fits.
    ``dense_only``: consider only the dense routes (eigh, factor), as under jit/vmap/grad.

    Raises:
      ValueError: when the requested route does not apply or does not fit, or nothing fits; the message names
        the route and size that would.
    """
    check_choice(method, METHODS, "method")
    check_choice(operator, OPERATORS, "operator")
    memory = device_memory_bytes() if memory_bytes is None else int(memory_bytes)
    if isinstance(objective.features, InfiniteFeatures):
        return _plan_infinite(objective, method, memory)
    shards = 1 if mesh is None else int(mesh.shape["tiles"])
    needs = route_needs(objective, times, shards=shards, tile_rows=tile_rows, max_blocks=max_blocks)
    if dense_only:
        needs = {k: v for k, v in needs.items() if k in ("eigh", "factor")}
    needed = {k: int(v[0]) for k, v in needs.items()}
    seconds = {k: float(v[1]) for k, v in needs.items()}
    fits = {k: v <= memory for k, v in needed.items()}
    m = objective.features.rows

    def plan(key, reason):
        method_, _, op = key.partition("/")
        return Plan(method_, op or None, reason, memory, needed, seconds)

    def describe(key):
        return f"{key} needs {needed[key] / GIB:.3g} GiB"

    if method == "infinite":
        raise ValueError("method='infinite' needs an infinitely wide student (width 'inf'); this one has "
                         f"M = {m} features")
    if method != "auto":
        if method == "krylov":
            candidates = [k for k in needed if k.startswith("krylov/") and (operator == "auto" or k.endswith(operator))]
        else:
            candidates = [method] if method in needed else []
        if not candidates:
            raise ValueError(_not_applicable(method, operator, objective, shards))
        fitting = [k for k in candidates if fits[k]]
        if not fitting:
            others = [k for k in needed if fits[k]]
            hint = f"; {', '.join(others)} fit{'s' if len(others) == 1 else ''} (--method {others[0].split('/')[0]})" if others else ""
            raise ValueError(
                f"M = {m:,} features: {', '.join(describe(k) for k in candidates)} but {memory / GIB:.3g} GiB is "
                f"available per device{hint}"
            )
        best = min(fitting, key=lambda k: seconds[k])
        return plan(best, "requested")
    fitting = [k for k in needed if fits[k]]
    if not fitting:
        raise ValueError(
            f"M = {m:,} features fit no route in {memory / GIB:.3g} GiB per device: "
            + "; ".join(describe(k) for k in needed)
            + ". Use fewer features or teachers, a shorter time grid, or more devices (--shard)"
        )
    best = min(fitting, key=lambda k: seconds[k])
    others = ", ".join(f"{k} {seconds[k]:.3g} s" for k in sorted(seconds, key=seconds.get) if k != best)
    reason = f"predicted {seconds[best]:.3g} s (cheapest that fits; {others or 'no other route applies'})"
    return plan(best, reason)


def _plan_infinite(objective: Objective, method: str, memory: int) -> Plan:
    """The only route of an infinitely wide student (ValueError where it does not apply)."""
    from w2sjax.routes.infinite import single_law

    if method not in ("auto", "infinite"):
        raise ValueError(f"method={method!r} needs a finite student; an infinitely wide student is solved by "
                         "method='infinite' (or 'auto')")
    single_law(objective)
    reason = "requested" if method == "infinite" else "the student is infinitely wide: closed form"
    # per label set of M_TE units: the Gram of unit directions (M_TE² d) and the Legendre recurrence over
    # ~INFINITE_DEGREES degrees (M_TE² L): O(M_TE² (d + L)), no M_ST
    pairs = sum(int(np.prod(np.shape(t.inner)[:-1])) * int(np.shape(t.inner)[-2])
                for t in (objective.labels or ()) if hasattr(t, "inner"))
    dim = objective.features.dim
    backend = "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "cpu"
    needed = {"infinite": pairs * 3 * 8 + (1 << 20)}
    seconds = {"infinite": 0.05 + pairs * (dim + INFINITE_DEGREES) * COSTS[backend]["pass"]}
    return Plan("infinite", None, reason, memory, needed, seconds)


def _not_applicable(method, operator, objective: Objective, shards: int) -> str:
    if method == "factor":
        return ("method='factor' needs G_train = F Fᵀ with fewer columns than features: linear features under one "
                "Gaussian law with d < M, or n < M samples")
    if method == "krylov":
        if not objective.population:
            return "method='krylov' needs population training scored on the same law; use method='eigh'"
        return f"operator={operator!r} does not apply here ({'sharded needs a mesh' if shards == 1 else 'use sharded'})"
    return f"method={method!r} does not apply to this objective"


# --------------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------------


FLOAT32_HOW = ("float32 eigh of G (moments, projections and figures in float64): estimates from an eigenvalue "
               "error 4·ε32·λ_max (w2sjax.precision)")
FLOAT32_KRYLOV_HOW = ("float32 products G·V (G stored in float32, or its tiles formed in float32); moments, basis, "
                      "reorthogonalisation, T and its eigendecomposition, quadrature and figures in float64. Loss "
                      "estimates add those of an eigenvalue error 4·ε32·λ_max (w2sjax.precision), which also "
                      "floor the stopping rule")


def solve_objective(
    objective: Objective,
    times,
    *,
    method: str = "auto",
    operator: str = "auto",
    rcond: float | None = None,
    tol: float = DEFAULT_TOL,
    time_rtol: float = DEFAULT_TIME_RTOL,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    check_every: int = DEFAULT_CHECK_EVERY,
    tile_rows: int | None = None,
    mesh=None,
    memory_bytes: int | None = None,
    with_basis: bool = False,
    progress=None,
    timings: dict | None = None,
):
    """Every figure of merit of every label set of ``objective`` on ``times`` (increasing, positive).

    Returns:
      (W2SResult batched over the label sets, Decomposition, Plan). The result's ``route`` says how each
      quantity was obtained; ``error`` holds the estimates. The decomposition's basis is formed only
      ``with_basis`` (weights of the trained model at any time: ``weights_at``). ``timings``: a dict that
      receives the seconds of each phase (each phase then waits for its arrays).
    """
    infinite = isinstance(objective.features, InfiniteFeatures)
    dtype = jnp.dtype(objective.features.dtype) if infinite else objective.features.weights.dtype
    times = jnp.asarray(times, mixed.time_dtype(dtype))  # float32 problems: float64 times
    traced = is_traced(objective, times)
    if traced and method == "krylov":
        raise ValueError("method='krylov' runs a host-side loop (its stopping rule reads values on the host) and "
                         "cannot run under jit, vmap or grad; use method='eigh', 'factor' or 'auto' there")
    plan = plan_route(objective, int(times.shape[0]), method=method, operator=operator, memory_bytes=memory_bytes,
                      mesh=mesh, tile_rows=tile_rows, max_blocks=max_blocks, dense_only=traced)
    if plan.method == "infinite":
        from w2sjax.infinite_width import solve_infinite
        from w2sjax.routes.infinite import DEFAULT_TOL as INFINITE_TOL

        result, decomposition, _ = solve_infinite(objective, times, reason=plan.reason, tol=min(tol, INFINITE_TOL))
        return result, decomposition, plan
    if plan.method in ("eigh", "factor"):
        watch = Stopwatch(timings)
        if plan.method == "eigh":
            how = (("all", "eigh of G_train: exact up to rounding (estimate r·ε·scale)"),)
        else:
            how = (("all", "eigh of FᵀF (G_train = F Fᵀ): exact up to rounding (estimate r·ε·scale)"),)
        route = RouteInfo(plan.method, None, plan.reason, 0, True, how)
        if objective.population:  # exact derivatives (autodiff): same forward values
            solution = autodiff.eigh_solution if plan.method == "eigh" else autodiff.factor_solution
            args = (rcond, route) if plan.method == "eigh" else (rcond, route, with_basis)
            result, decomposition = solution(objective, times, *args)
            if plan.method == "eigh" and mixed.is_float32(objective):  # float32 eigh: its own error estimates
                result = dataclasses.replace(result, error=float32_errors(result), route=dataclasses.replace(
                    route, how=(("all", FLOAT32_HOW),)))
            watch.lap("decomposition and figures", result)
            return result, decomposition, plan
        if plan.method == "eigh":
            decomposition = dense.eigh_route(objective, rcond=rcond)
        else:
            decomposition = dense.factor_route(objective, rcond=rcond, with_basis=with_basis)
        watch.lap("decomposition", decomposition)
        result = summarize_compiled(decomposition.problem, times, route=route)
        watch.lap("final figures", result)
        return result, decomposition, plan
    return _solve_krylov(objective, times, plan, rcond=rcond, tol=tol, time_rtol=time_rtol, max_blocks=max_blocks,
                         check_every=check_every, tile_rows=tile_rows, mesh=mesh, with_basis=with_basis,
                         progress=progress, timings=timings)


def _krylov_operator(objective: Objective, kind: str, tile_rows: int, mesh):
    """(padded objective, operator) for the Krylov route. Float32 problems: the padded objective (moments) in
    float64; G stored in float32 (float64 tiles rounded), or its tiles formed in float32 from the float32 weights
    and inputs (matrix-free)."""
    shards = 1 if mesh is None else int(mesh.shape["tiles"])
    features = operators.padded_features(objective.features, tile_rows, shards)
    padded = mixed.as_float64(dataclasses.replace(objective, features=features))
    inputs = objective.train.inputs
    if kind == "stored" and mixed.is_float32(objective):
        return padded, operators.StoredGram(_rounded_gram(padded.features, padded.train.inputs, tile_rows))
    if kind == "stored":
        return padded, operators.StoredGram(_stored_gram(features, inputs))
    if kind == "tiled":
        return padded, operators.TiledGram(features, inputs, tile_rows)
    from w2sjax.routes.sharding import sharded_gram

    return padded, sharded_gram(features, inputs, mesh, tile_rows)


@jax.jit
def _stored_gram(features: RandomFeatures, inputs) -> jax.Array:
    """G of a padded model in one fused pass (measured faster than a scan over symmetric tiles on CPU)."""
    return feature_gram(features, features, inputs)


@partial(jax.jit, static_argnames=("tile_rows",))
def _rounded_gram(features: RandomFeatures, inputs, tile_rows: int) -> jax.Array:
    """G (size, size) in float32 of a padded float64 model: float64 tiles rounded into a float32 array (no
    float64 M × M array is formed)."""
    return operators.symmetric_gram(features, inputs, tile_rows, jnp.float32)


LOSSES = ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss")


def _changes(current: dict, previous: dict | None, allowed: dict):
    """(largest change of the losses between two checks in units of what each may move (``allowed``: {loss:
    bound, per label set or one for all}), largest relative change of t*)."""
    if previous is None:
        return math.inf, math.inf
    loss = 0.0
    for key in LOSSES:
        bound = np.maximum(allowed[key], np.finfo(np.float64).tiny)
        bound = bound[..., None] if np.ndim(current[key]) > np.ndim(bound) else bound
        loss = max(loss, float(np.max(np.abs(current[key] - previous[key]) / bound)))
    new, old = current["best_time"], previous["best_time"]
    both_inf = np.isinf(new) & np.isinf(old)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(np.log(np.where(both_inf, 1.0, new)) - np.log(np.where(both_inf, 1.0, old)))
    rel = np.where(np.isnan(rel), np.inf, rel)
    return loss, float(np.max(rel))


def remaining_error(change: float, last_change: float) -> float:
    """The error left after a check, from the last two changes c_k, c_{k−1}: with a contraction
    q = c_k/c_{k−1} < 1/2 the remaining changes sum to at most c_k q/(1 − q) (geometric convergence, as block
    Lanczos quadrature converges on a clustered spectrum); otherwise the error is not yet seen to contract and
    the estimate is the change itself times 10 (a stagnating check is not trusted)."""
    if not math.isfinite(change) or not math.isfinite(last_change) or last_change <= 0:
        return math.inf
    q = change / last_change
    if q < 0.5:
        return max(change * q / (1 - q), 0.0) if change > 0 else 0.0
    return 10 * change


def _allowed(result, loss_tol: float, time_rtol: float, float32: bool) -> dict:
    """What each figure may move between the last checks: tol · s* (losses) and time_rtol (t*); float32
    problems: at least its float32 estimate (``precision.float32_errors``: the float32 products blur the
    quadrature to that level, below which a check cannot converge)."""
    if not float32:
        return {**{k: loss_tol for k in LOSSES}, "best_time": time_rtol}
    errors = float32_errors(result)
    e = {k: np.asarray(getattr(errors, k), np.float64) for k in LOSSES + ("best_time",)}
    return {**{k: np.maximum(loss_tol, e[k]) for k in LOSSES}, "best_time": max(time_rtol, float(np.max(e["best_time"])))}


@partial(jax.jit, static_argnames=("float32",))
def _krylov_errors(result, converge: dict, time_change: float, float32: bool) -> ErrorEstimate:
    """Estimates of a Krylov result (its route not yet attached): each loss's convergence error ``converge``
    plus the rounding level; t* by the shift the loss error implies (``time_error``) or its last change,
    whichever is larger. Float32 problems: the losses' float32 estimates (``precision.float32_errors``) plus
    their convergence errors; t* by its float32 estimate or its last change (the checks follow t* directly)."""
    problem = result.problem
    rounding = rounding_estimate(problem)
    loss = {k: jnp.broadcast_to(jnp.asarray(converge[k], rounding.dtype), rounding.shape) for k in LOSSES}
    if float32:
        e = float32_errors(dataclasses.replace(result, error=dataclasses.replace(
            result.error, best_time=jnp.full(result.best_time.shape, time_change))))
        return ErrorEstimate(*(getattr(e, k) + loss[k] for k in LOSSES[:2]), e.best_time,
                             *(getattr(e, k) + loss[k] for k in LOSSES[2:]))
    loss = {k: v + rounding for k, v in loss.items()}
    t_error = jnp.maximum(time_error(problem, result.best_time, loss["best_student_loss"]), time_change)
    return ErrorEstimate(loss["student_loss"], loss["best_student_loss"], t_error, loss["student_loss_at_infinity"],
                         loss["ceiling_loss"])


class Stopwatch:
    """Seconds per phase, each phase ended by waiting for its arrays (only when timings are asked for)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.clock = time.perf_counter()

    def lap(self, phase: str, *arrays):
        if self.timings is None:
            return
        jax.block_until_ready(arrays)
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.clock
        self.clock = now


def _solve_krylov(objective, times, plan, *, rcond, tol, time_rtol, max_blocks, check_every, tile_rows, mesh,
                  with_basis, progress, timings):
    from w2sjax.routes.sharding import to_host

    m = objective.features.rows
    itemsize = jnp.dtype(objective.features.weights.dtype).itemsize
    if tile_rows is None:
        if plan.operator == "sharded":
            shards = int(mesh.shape["tiles"])
            tile_rows = operators.default_tile_rows(-(-m // shards), itemsize, columns=m)
        else:
            tile_rows = operators.default_square_tile_rows(m, itemsize=itemsize)
    float32 = mixed.is_float32(objective)
    wide = mixed.time_dtype(objective.features.weights.dtype)  # float32 problems: basis and quadrature in float64
    rcond = default_rcond(m, wide) if rcond is None else float(rcond)
    watch = Stopwatch(timings)
    padded, op = _krylov_operator(objective, plan.operator, int(tile_rows), mesh)
    watch.lap("gram", op)
    n = label_count(objective)
    max_blocks = min(check_positive_int(max_blocks, "max_blocks"), -(-m // (n + 1)) + 1)
    capacity = min(max_blocks, max(INITIAL_CAPACITY, predicted_blocks(m, jnp.dtype(wide).itemsize)))
    state = krylov.krylov_start(padded, op, capacity, int(tile_rows))
    watch.lap("label moments", state)
    scale = float(to_host(state.energy))
    steps, previous, last_change = 0, None, math.inf
    converged = exhausted = False
    change = time_change = estimate = math.inf
    while steps < max_blocks:
        if steps >= state.capacity:
            state = krylov.krylov_grow(state, min(2 * state.capacity, max_blocks))
        stop = min(steps + check_every, state.capacity, max_blocks)
        state = krylov.krylov_advance(state, np.int32(steps), np.int32(stop))
        watch.lap("blocks", state)
        steps = stop
        decomposition, dimension, next_norm = krylov.krylov_decomposition(state, np.int32(steps), rcond)
        result = summarize_compiled(decomposition.problem, times)
        current = {k: to_host(getattr(result, k)) for k in LOSSES + ("best_time",)}
        exhausted = float(to_host(next_norm)) == 0.0 or int(to_host(dimension)) >= m
        allowed = _allowed(result, tol * scale, time_rtol, float32)
        change, time_change = _changes(current, previous, allowed)
        estimate = remaining_error(change, last_change)  # in units of ``allowed``
        if progress is not None:
            worst = estimate * max(float(np.max(allowed[k])) for k in LOSSES)
            progress(steps, worst / scale if scale > 0 else worst)
        previous, last_change = current, change
        watch.lap("checks")
        if exhausted or (estimate <= 1 and time_change <= allowed["best_time"]):
            converged = True
            break
    if with_basis:
        decomposition, _, _ = krylov.krylov_decomposition(state, np.int32(steps), rcond, with_basis=True)
    estimate = 0.0 if exhausted else estimate
    time_estimate = 0.0 if exhausted else time_change
    how = (
        ("curve, L*, L(∞), L_ceil", f"block Gauss quadrature of {steps} blocks of {n + 1} vectors; error estimate = "
                                    "the change over the last check extrapolated geometrically (remaining_error)"
                                    if not exhausted else
                                    f"block Gauss quadrature on an invariant Krylov space ({steps} blocks): exact"),
        ("t*", "refined on the quadrature; estimate = relative change over the last check, or "
               f"{'its float32 estimate' if float32 else 'the shift implied by the loss error'}, whichever is larger"),
    ) + ((("float32", FLOAT32_KRYLOV_HOW),) if float32 else ())
    info = RouteInfo("krylov", plan.operator, plan.reason, steps, converged, how)
    problem = decomposition.problem
    result = summarize_compiled(problem, times)
    converge = {k: estimate * np.maximum(allowed[k], np.finfo(np.float64).tiny) for k in LOSSES}
    result = dataclasses.replace(result, error=_krylov_errors(result, converge, time_estimate, float32), route=info)
    watch.lap("final figures", result)
    if not converged:
        warnings.warn(
            f"the Krylov quadrature did not reach tol={tol:g}·s* (t* rtol {time_rtol:g}) within {steps} blocks: "
            f"last change of the losses {change:.3g}× what the tolerance allows, of t* {time_change:.3g}. Raise "
            "max_blocks, or use method='eigh' where it fits",
            KrylovConvergenceWarning,
            stacklevel=3,
        )
    return result, decomposition, plan
