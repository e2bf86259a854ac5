"""The study runner: run units, planned before they run, stored as they finish, resumed after an interruption.

Each (problem, student width, seed) is one *run unit*: one decomposition of the student's G_train scored
against every teacher width of the problem (``w2s.weak_to_strong``). A unit is stored as
``DIR/runs/<key>.json`` the moment it is done, so a study restarted with the same ``DIR`` computes only what
is missing; the aggregate files (``results.json``, ``curves.csv``, ``config.toml``, PNGs) are rebuilt from the
run files at the end. Before anything runs, every unit's route is planned (``engine.plan_route``): a study
that cannot fit in memory is refused at once, and the plan's predicted seconds give the estimate shown at the
start.

Power law: for each group (input dimension and student width), L_ST* ≈ C · L_TE^k is fitted by least squares
on (log L_TE, log L_ST*) over the teacher widths, separately for each seed; the exponent reported is the mean
over seeds ± its standard error (std/√n); with one seed, the least-squares standard error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._io import atomic_write_json, atomic_write_text, from_json_float, json_safe
from w2sjax.curves import LOCATIONS, best_strength, ridge_loss
from w2sjax.engine import plan_route
from w2sjax.environment import environment
from w2sjax.features import RandomFeatures, student_weights, teacher_weights
from w2sjax.inputs import gaussian_inputs, sphere_inputs
from w2sjax.objectives import Law, Objective, Samples
from w2sjax.studies.config import INFINITE, StudyConfig, config_to_toml
from w2sjax.targets import hermite_target, linear_target, random_relu_network_target, sum_target
from w2sjax.w2s import NarrowStudentWarning, TeacherFit, as_batch, teacher_functions, weak_to_strong

RUNS_FOLDER = "runs"
RECORD_FLOATS = (
    "teacher_loss", "best_time", "best_student_loss", "ratio", "pgr", "student_loss_at_infinity", "ceiling_loss",
    "ridge_best_strength", "ridge_best_student_loss", "ridge_ratio",
)


# --------------------------------------------------------------------------------------------------
# Building a problem
# --------------------------------------------------------------------------------------------------


def input_variances(config: StudyConfig, dim: int) -> np.ndarray:
    """(d,) diagonal of Σ: ones, or (spike_variance, v, …, v), v = bulk_variance_scale · d^(−bulk_variance_exponent)."""
    if config.covariance == "identity":
        return np.ones(dim)
    variances = np.full(dim, config.bulk_variance_scale * float(dim) ** (-config.bulk_variance_exponent))
    variances[0] = config.spike_variance
    return variances


def build_inputs(config: StudyConfig, dim: int):
    if config.input_kind == "sphere":
        return sphere_inputs(dim, config.dtype)
    variances = None if config.covariance == "identity" else input_variances(config, dim)
    return gaussian_inputs(dim, variances, config.dtype)


def target_direction(config: StudyConfig, dim: int) -> np.ndarray:
    """β: e₁ or (1, …, 1)/√d (unit norm)."""
    if config.target_direction == "e1":
        beta = np.zeros(dim)
        beta[0] = 1.0
        return beta
    return np.full(dim, 1 / math.sqrt(dim))


def build_target(config: StudyConfig, dim: int, inputs):
    """f*: Σ_j scale_j h_{k_j}(⟨β, x⟩) (the linear target ⟨(Σ scale_j) β, x⟩ when every degree is 1), or a
    random ReLU network standardised under ``inputs``."""
    if config.target == "relu-network":
        return random_relu_network_target(config.target_seed, config.target_units, inputs, standardize=True)
    beta = target_direction(config, dim)
    if all(k == 1 for k in config.target_degrees):
        return linear_target(sum(config.target_scales) * beta, config.dtype)
    terms = [hermite_target(beta, k, s, config.dtype) for k, s in zip(config.target_degrees, config.target_scales)]
    return terms[0] if len(terms) == 1 else sum_target(*terms)


def build_student(config: StudyConfig, dim: int, width, seed: int):
    """Student ``seed`` of ``width`` features (the first rows of the widest finite student of the study:
    students are nested), or the infinitely wide student."""
    if math.isinf(width):
        from w2sjax.features import infinite_features

        return infinite_features(dim, config.activation, config.dtype)
    widest = max(w for w in config.student_widths_for(dim) if not math.isinf(w))
    weights = student_weights(seed, widest, dim, config.activation)[:width]
    return RandomFeatures(weights.astype(config.dtype), jnp.asarray(width, config.dtype), config.activation)


def load_array(path, name: str, ndim: int) -> np.ndarray:
    """A finite real .npy array of ``ndim`` dimensions (ValueError saying what is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name} file {str(path)!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{name} file {str(path)!r} is not a .npy array ({err}); save it with numpy.save") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name} file {str(path)!r} holds several arrays (.npz); give one .npy array")
    if arr.ndim != ndim or arr.size == 0:
        want = "(n, d)" if ndim == 2 else "(n,)"
        raise ValueError(f"{name} must hold a non-empty {want} array; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values (NaN or inf); pass finite numbers")
    return arr


def load_own_data(config: StudyConfig, dim: int | None = None) -> dict:
    """Training inputs, labels, held-out inputs and labels from the config's files (labels None: the target's)."""
    x = load_array(config.inputs_file, "inputs_file", 2)
    xh = load_array(config.heldout_file, "heldout_file", 2)
    if xh.shape[1] != x.shape[1]:
        raise ValueError(f"heldout_file has dimension {xh.shape[1]} but inputs_file has {x.shape[1]}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"inputs_file has dimension {x.shape[1]} but the study's input_dims say {dim}")
    y = yh = None
    if config.labels_file:
        y = load_array(config.labels_file, "labels_file", 1)
        yh = load_array(config.heldout_labels_file, "heldout_labels_file", 1)
        if y.shape[0] != x.shape[0] or yh.shape[0] != xh.shape[0]:
            raise ValueError(f"labels_file must have {x.shape[0]} values and heldout_labels_file {xh.shape[0]}; "
                             f"got {y.shape[0]} and {yh.shape[0]}")
    return {"inputs": x, "labels": y, "heldout": xh, "heldout_labels": yh}


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path and Path(path).is_file() else ""


def build_teachers(config: StudyConfig, dim: int, widths, seed: int) -> list:
    return [RandomFeatures(teacher_weights(seed, m, dim, config.activation).astype(config.dtype),
                           jnp.asarray(m, config.dtype), config.activation) for m in widths]


# --------------------------------------------------------------------------------------------------
# Run units
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunUnit:
    """One decomposition of G_train: (problem, student width, seed), scored against the problem's teachers."""

    input_dim: int
    teacher_widths: tuple
    student_width: float
    seed: int
    signature: str
    minorities: tuple | None = None  # (η_ℓ, η_u) of a shift study

    @property
    def width_label(self) -> str:
        return INFINITE if math.isinf(self.student_width) else str(int(self.student_width))

    @property
    def key(self) -> str:
        shift = "" if self.minorities is None else "_eta{:g}-{:g}".format(*self.minorities)
        return f"d{self.input_dim}{shift}_mst{self.width_label}_seed{self.seed}_{self.signature}"


def run_units(config: StudyConfig) -> list[RunUnit]:
    """Every run unit of a study, in order (problem, student width, seed)."""
    units = []
    for problem in config.problems():
        for width in config.student_widths_for(problem.input_dim):
            for seed in config.seeds:
                sig = _signature(config, problem.input_dim, problem.teacher_widths, width, seed, problem.minorities)
                units.append(RunUnit(problem.input_dim, problem.teacher_widths, width, seed, sig, problem.minorities))
    return units


def _signature(config: StudyConfig, dim: int, teacher_widths, width, seed: int, minorities=None) -> str:
    """Hash of everything a unit's numbers depend on, so a changed study never reuses a stale file."""
    spec = config.to_dict()
    for key in ("name", "description", "seeds", "student_widths", "student_widths_per_dim", "teacher_widths",
                "input_dims", "ratio_powers", "minority_teacher", "minority_student"):
        spec.pop(key)
    if minorities is not None:
        spec["minorities"] = list(minorities)
    widest = max((w for w in config.student_widths_for(dim) if not math.isinf(w)), default=0)
    spec.update(dim=dim, teachers=list(teacher_widths), width=str(width), widest=widest, seed=seed)
    for key in ("inputs_file", "labels_file", "heldout_file", "heldout_labels_file"):
        spec[key] = _file_digest(spec[key])
    return hashlib.sha256(json.dumps(json_safe(spec), sort_keys=True).encode()).hexdigest()[:10]


def shift_problem(config: StudyConfig, unit: RunUnit):
    """(ShiftLaws, f*) of a shift unit: the two-group model of ``w2sjax.shift`` at the unit's (η_ℓ, η_u)."""
    from w2sjax.shift import SpuriousModel, core_target, shift_laws

    model = SpuriousModel(unit.input_dim, *config.correlations, config.spurious_scale, "linear")
    return shift_laws(model, *unit.minorities, config.minority_test), core_target(model)


def unit_objective(config: StudyConfig, unit: RunUnit) -> Objective:
    """The student objective of a unit with placeholder (zero) teachers and a student of weight shapes only
    (drawing millions of weights takes seconds): the sizes the planner needs."""
    if math.isinf(unit.student_width):
        student = build_student(config, unit.input_dim, unit.student_width, unit.seed)
    else:
        shape = jax.ShapeDtypeStruct((int(unit.student_width), unit.input_dim), config.dtype)
        student = RandomFeatures(shape, jnp.asarray(unit.student_width, config.dtype), config.activation)
    functions = _placeholder_labels(config, unit, [int(m) for m in unit.teacher_widths])
    if unit.minorities is not None:
        laws, target = shift_problem(config, unit)
        return Objective(student, (functions,), target, Law(laws.student), Law(laws.test))
    inputs = build_inputs(config, unit.input_dim)
    target = build_target(config, unit.input_dim, inputs)
    if config.finite_samples and config.student_data == "samples":
        n = config.samples or load_own_data(config)["inputs"].shape[0]
        points = jnp.zeros((n, unit.input_dim), config.dtype)
        return Objective(student, (functions, functions), target, Samples(points), Law(inputs))
    return Objective(student, (functions,), target, Law(inputs))


def _placeholder_labels(config: StudyConfig, unit: RunUnit, widths: list) -> object:
    """Network functions of the given widths (one label set each), as shapes only (nothing is compiled or
    computed): the shapes of a unit's labels."""

    def placeholder():
        batch = as_batch([RandomFeatures(jnp.zeros((m, unit.input_dim), config.dtype), jnp.asarray(m, config.dtype),
                                         config.activation) for m in widths])
        return teacher_functions(batch, TeacherFit(jnp.zeros(batch.weights.shape[:2], config.dtype), None))

    return jax.eval_shape(placeholder)


def stage_objectives(config: StudyConfig, unit: RunUnit) -> list[Objective]:
    """The objectives of stages 2, …, K of a chain unit, with placeholder labels of the previous stage's width
    (one label set per teacher) and students of weight shapes only: the sizes the planner needs."""
    inputs = build_inputs(config, unit.input_dim)
    target = build_target(config, unit.input_dim, inputs)
    n = len(unit.teacher_widths)
    objectives, previous = [], int(unit.student_width)
    for width in config.chain_widths:
        if math.isinf(width):
            from w2sjax.features import infinite_features

            student = infinite_features(unit.input_dim, config.activation, config.dtype)
        else:
            shape = jax.ShapeDtypeStruct((int(width), unit.input_dim), config.dtype)
            student = RandomFeatures(shape, jnp.asarray(width, config.dtype), config.activation)
        labels = _placeholder_labels(config, unit, [previous] * n)
        objectives.append(Objective(student, (labels,), target, Law(inputs)))
        previous = width
    return objectives


def _stage_method(config: StudyConfig, width) -> str:
    """The route a chain stage asks for: the study's, "auto" for an infinitely wide stage (``chains``)."""
    return "auto" if math.isinf(width) else config.method


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """The planned route of every unit (``engine.Plan``), of the later stages of chain units, and the predicted
    seconds in all."""

    units: tuple
    plans: tuple
    seconds: float
    narrow: tuple = ()  # (M_ST, teacher widths ≥ M_ST) of the units whose student is not wider than a teacher
    stage_plans: tuple = ()  # per unit, the plans of stages 2, …, K of a chain (empty otherwise)

    def describe(self) -> str:
        routes = {}
        for i, (unit, plan) in enumerate(zip(self.units, self.plans)):
            routes.setdefault(f"M_ST={unit.width_label}", set()).add(_route_key(plan))
            for k, stage in enumerate(self.stage_plans[i] if self.stage_plans else (), start=2):
                routes.setdefault(f"stage {k}", set()).add(_route_key(stage))
        parts = [f"{w}: {', '.join(sorted(r))}" for w, r in routes.items()]
        line = f"{len(self.units)} run units ({'; '.join(parts)}); estimate {_duration(self.seconds)} of computing"
        for m_st, widths in self.narrow:
            line += (f"\nnote: M_ST = {m_st} is not wider than M_TE = {', '.join(map(str, widths))}: those students "
                     "can at best about match their teachers (PGR undefined where L_ceil ≥ L_TE)")
        return line


def _route_key(plan) -> str:
    """"method/operator" of a plan or a result's route ("krylov/stored", "eigh")."""
    return plan.method + (f"/{plan.operator}" if plan.operator else "")


MAX_UNITS = 100_000
CURVE_MEMORY_FRACTION = 0.25


def check_study_size(config: StudyConfig, memory_bytes: int | None = None) -> None:
    """ValueError, before any unit is built, when the study is too large to hold: the number of run units,
    the curves it keeps (records × times), or one unit's weights and teacher fits."""
    from w2sjax.engine import check_model_sizes, device_memory_bytes

    memory = device_memory_bytes() if memory_bytes is None else int(memory_bytes)
    problems = config.problems()
    units = sum(len(config.student_widths_for(p.input_dim)) for p in problems) * len(config.seeds)
    if units > MAX_UNITS:
        raise ValueError(f"the study has {units:,} run units (widths × seeds × problems), more than {MAX_UNITS:,}; "
                         "use fewer seeds or widths")
    records = sum(len(config.student_widths_for(p.input_dim)) * len(p.teacher_widths) for p in problems) * config.stages
    curve_bytes = records * len(config.seeds) * config.num_times * 8
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # the curves are kept in host memory
    if curve_bytes > CURVE_MEMORY_FRACTION * host:
        raise ValueError(f"the curves of every run ({records * len(config.seeds):,} runs × {config.num_times:,} times) "
                         f"need {curve_bytes / 2**30:.3g} GiB; use fewer times, seeds or widths")
    for p in problems:  # weights are drawn in float64 whatever the precision
        widest = max((*config.student_widths_for(p.input_dim), *config.chain_widths))
        check_model_sizes(widest, p.teacher_widths, p.input_dim, 8, memory_bytes=memory)


def plan_study(config: StudyConfig, units=None, memory_bytes: int | None = None) -> StudyPlan:
    """Plan every unit's route before anything runs; ValueError naming the unit and the sizes that would fit."""
    check_study_size(config, memory_bytes)
    units = run_units(config) if units is None else units
    plans, stage_plans = [], []
    for unit in units:
        try:
            plans.append(plan_route(unit_objective(config, unit), config.num_times, method=config.method,
                                    memory_bytes=memory_bytes))
        except ValueError as err:
            raise ValueError(f"run unit d={unit.input_dim}, M_ST={unit.width_label}: {err}") from None
        if config.chain:
            stages = []
            for k, (objective, width) in enumerate(zip(stage_objectives(config, unit), config.chain_widths), start=2):
                try:
                    stages.append(plan_route(objective, config.num_times, method=_stage_method(config, width),
                                             memory_bytes=memory_bytes))
                except ValueError as err:
                    raise ValueError(f"run unit d={unit.input_dim}, M_ST={unit.width_label}, chain stage {k}: "
                                     f"{err}") from None
            stage_plans.append(tuple(stages))
    every = plans + [p for stages in stage_plans for p in stages]
    seconds = sum(p.seconds.get(_route_key(p), 0.0) for p in every)
    narrow = {}
    for unit in units:
        for width in (unit.student_width, *config.chain_widths):
            label = INFINITE if math.isinf(width) else str(int(width))
            wide = tuple(sorted(m for m in unit.teacher_widths if m >= width))
            if wide:
                narrow[label] = tuple(sorted(set(narrow.get(label, ())) | set(wide)))
    return StudyPlan(tuple(units), tuple(plans), seconds, tuple(narrow.items()), tuple(stage_plans))


@contextlib.contextmanager
def quiet_narrow():
    """Silence NarrowStudentWarning inside a unit: the study's plan says it once (``StudyPlan.describe``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NarrowStudentWarning)
        yield


def compute_unit(config: StudyConfig, unit: RunUnit) -> dict:
    """Run one unit: its records (one per teacher width, and per stage of a chain), curves and seconds,
    JSON-ready."""
    clock = time.perf_counter()
    if config.chain:
        records, curves, routes = _chain_records(config, unit)
        return {"key": unit.key, "signature": unit.signature, "records": records, "curves": curves,
                "route": routes, "seconds": time.perf_counter() - clock}
    inputs = build_inputs(config, unit.input_dim)
    target = build_target(config, unit.input_dim, inputs)
    student = build_student(config, unit.input_dim, unit.student_width, unit.seed)
    teachers = build_teachers(config, unit.input_dim, unit.teacher_widths, unit.seed)
    times = config.time_grid()
    options = {}
    if config.own_data:
        data = load_own_data(config, unit.input_dim)
        heldout = data["heldout"] if data["heldout_labels"] is None else Samples(
            jnp.asarray(data["heldout"], config.dtype), jnp.asarray(data["heldout_labels"], config.dtype))
        options = dict(samples=data["inputs"], labels=data["labels"], heldout=heldout)
    elif config.finite_samples:
        options = dict(samples=config.samples, sample_seed=unit.seed, teacher_data=config.teacher_data,
                       student_data=config.student_data)
    samples = int(options["samples"].shape[0]) if config.own_data else config.samples
    group_losses = None
    if unit.minorities is not None:  # scored on (P_test, group 0, group 1); t* chosen on P_test
        from w2sjax.scoring import law_result, losses_at

        laws, target = shift_problem(config, unit)
        with quiet_narrow():
            stacked = weak_to_strong(student, teachers, target, laws.student, times, method=config.method,
                                     rcond=config.rcond, teacher_time=config.teacher_time,
                                     teacher_inputs=laws.teacher, test_inputs=laws.evaluations)
        result = jax.device_get(law_result(stacked, 0))
        group_losses = np.asarray(losses_at(stacked, result.best_time))[1:]  # (groups, teachers)
        teacher_group_losses = np.asarray(stacked.teacher_loss)[1:]
    else:
        with quiet_narrow():
            result = weak_to_strong(student, teachers, target, inputs, times, method=config.method,
                                    rcond=config.rcond, teacher_time=config.teacher_time, **options)
        result = jax.device_get(result)
    records, curves, ridge_curves = [], [], []
    for k, width in enumerate(unit.teacher_widths):
        r = result.select(k)
        record = _record(unit, width, r, result.route, samples)
        if group_losses is not None:
            record.update(minority_teacher=unit.minorities[0], minority_student=unit.minorities[1],
                          gain=float(r.teacher_loss - r.best_student_loss),
                          group_losses=[float(v) for v in group_losses[:, k]],
                          worst_group_loss=float(np.max(group_losses[:, k])),
                          teacher_group_losses=[float(v) for v in teacher_group_losses[:, k]],
                          teacher_worst_group_loss=float(np.max(teacher_group_losses[:, k])))
        if config.ridge:
            strengths = jnp.asarray(np.sort(1 / times))
            mu, loss, _ = best_strength(r.problem, strengths, ridge_loss(r.problem, strengths))
            record.update(ridge_best_strength=float(mu), ridge_best_student_loss=float(loss),
                          ridge_ratio=float(loss / r.teacher_loss))
            ridge_curves.append(json_safe(np.asarray(ridge_loss(r.problem, jnp.asarray(1 / times))).tolist()))
        records.append(json_safe(record))
        curves.append(json_safe(np.asarray(r.student_loss).tolist()))
    data = {"key": unit.key, "signature": unit.signature, "records": records, "curves": curves,
            "route": result.route.to_dict(), "seconds": time.perf_counter() - clock}
    if config.ridge:
        data["ridge_curves"] = ridge_curves  # L(μ) at μ = 1/t, in the order of the times (for the figures)
    return data


def _record(unit: RunUnit, teacher_width: int, r, route, samples: int = 0) -> dict:
    """The figures of merit of one teacher's result ``r`` (a W2SResult of one teacher) in a unit."""
    return {
        "input_dim": unit.input_dim, "student_width": unit.width_label if math.isinf(unit.student_width)
        else int(unit.student_width), "teacher_width": teacher_width, "seed": unit.seed, "samples": samples,
        **{name: float(getattr(r, name)) for name in RECORD_FLOATS[:7]},
        "best_time_location": LOCATIONS[int(r.best_time_location)],
        "route": _route_key(route), "blocks": route.blocks,
        "error_estimate": {name: float(v) for name, v in dataclasses.asdict(r.error).items()},
    }


def chain_students(config: StudyConfig, unit: RunUnit) -> list:
    """Stages 2, …, K of a unit's chain (``chains.chain_stage_weights`` of the unit's seed), the last
    infinitely wide where chain_widths ends with "inf"."""
    from w2sjax.chains import chain_stage_weights
    from w2sjax.features import infinite_features

    stages = []
    for k, width in enumerate(config.chain_widths, start=2):
        if math.isinf(width):
            stages.append(infinite_features(unit.input_dim, config.activation, config.dtype))
        else:
            weights = chain_stage_weights(unit.seed, k, int(width), unit.input_dim, config.activation)
            stages.append(RandomFeatures(weights.astype(config.dtype), jnp.asarray(width, config.dtype),
                                         config.activation))
    return stages


def _chain_records(config: StudyConfig, unit: RunUnit) -> tuple[list, list, list]:
    """A chain unit: the unit's student is stage 1, ``chain_students`` the rest. Returns the records and curves,
    one per (stage, teacher) in that order, each with its stage, its width and the time τ_k at which it labels
    the next, and each stage's route."""
    from w2sjax.chains import chain

    inputs = build_inputs(config, unit.input_dim)
    target = build_target(config, unit.input_dim, inputs)
    stages = [build_student(config, unit.input_dim, unit.student_width, unit.seed), *chain_students(config, unit)]
    teachers = build_teachers(config, unit.input_dim, unit.teacher_widths, unit.seed)
    result = jax.device_get(chain(stages, teachers, target, inputs, config.time_grid(),
                                  stage_times=list(config.stage_times()), method=config.method, rcond=config.rcond,
                                  teacher_time=config.teacher_time))
    widths = (unit.student_width, *config.chain_widths)
    records, curves = [], []
    for k, (stage, width) in enumerate(zip(result, widths), start=1):
        for i, m_te in enumerate(unit.teacher_widths):
            r = stage.select(i)
            record = _record(unit, m_te, r, stage.route)
            record.update(stage=k, stage_width=INFINITE if math.isinf(width) else int(width),
                          label_time=float(result.label_times[k - 1, i]) if k < len(widths) else None)
            records.append(json_safe(record))
            curves.append(json_safe(np.asarray(r.student_loss).tolist()))
    return records, curves, [stage.route.to_dict() for stage in result]


def _numbers(values) -> bool:
    """Every value reads back as a float (``json_safe``'s numbers, null, "inf", "-inf")."""
    try:
        for v in values:
            if isinstance(v, bool) or not (v is None or isinstance(v, (int, float)) or v in ("inf", "-inf")):
                return False
            from_json_float(v)
    except (TypeError, ValueError):
        return False
    return True


def _load_unit(path: Path, unit: RunUnit, num_times: int | None = None, stages: int = 1) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("signature") != unit.signature:
        return None
    records, curves = data.get("records"), data.get("curves")
    if not isinstance(records, list) or not isinstance(curves, list) or len(records) != len(unit.teacher_widths) * stages:
        return None
    needed = set(RECORD_FLOATS[:7]) | {"input_dim", "student_width", "teacher_width", "seed"}
    if stages > 1:
        needed |= {"stage", "stage_width", "label_time"}
    if not all(isinstance(r, dict) and needed <= set(r) for r in records) or "seconds" not in data:
        return None  # a damaged or foreign file is recomputed, never trusted
    if not all(_numbers(r[k] for k in RECORD_FLOATS[:7]) for r in records) or len(curves) != len(records):
        return None
    if not all(isinstance(c, list) and (num_times is None or len(c) == num_times) and _numbers(c) for c in curves):
        return None
    if not _numbers([data["seconds"]]) or data["seconds"] is None:
        return None
    return data


def clear_runs(out) -> int:
    """Delete the run files (and leftover temporary files) under ``out/runs``; returns how many."""
    folder = Path(out) / RUNS_FOLDER
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and (path.suffix == ".json" or path.name.endswith(".tmp")):
            path.unlink()
            removed += 1
    return removed


def check_output_folder(out, runs: bool = True) -> Path:
    """The output folder (with its ``runs/`` subfolder unless ``runs=False``), created and tested for writing
    before any work (ValueError saying what to change)."""
    folder = Path(out)
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"output folder {str(folder)!r}: {str(parent)!r} is a file; give a folder path")
            break
    runs = folder / RUNS_FOLDER if runs else folder
    if runs.exists() and not runs.is_dir():
        raise ValueError(f"{str(runs)!r} is a file; remove it or give another output folder")
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to output folder {str(folder)!r} ({err.strerror}); give a writable folder") from None
    return folder


# --------------------------------------------------------------------------------------------------
# Power-law fits
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """L_ST* ≈ prefactor · L_TE^exponent.

    Attributes:
      exponent: mean of the per-seed least-squares slopes of log L_ST* on log L_TE.
      exponent_stderr: standard error of that mean (std/√n over seeds); with one seed, the slope's
        least-squares standard error (NaN with fewer than three points).
      prefactor: exp of the mean per-seed intercept.
      seed_exponents: the per-seed slopes.
      num_points: points used in all.
    """

    exponent: float
    exponent_stderr: float
    prefactor: float
    seed_exponents: tuple
    num_points: int

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


def fit_power_law(teacher_loss, student_loss, seeds) -> PowerLawFit:
    """Fit L_ST* = C · L_TE^k per seed (least squares in log–log) and combine over seeds."""
    x_all, y_all, s_all = (np.asarray(a, dtype=np.float64) for a in (teacher_loss, student_loss, seeds))
    if not (x_all.shape == y_all.shape == s_all.shape) or x_all.ndim != 1:
        raise ValueError("teacher_loss, student_loss and seeds must be 1-D arrays of the same length")
    slopes, intercepts, stderr_single, points = [], [], math.nan, 0
    for seed in np.unique(s_all):
        keep = (s_all == seed) & (x_all > 0) & (y_all > 0) & np.isfinite(x_all) & np.isfinite(y_all)
        x, y = np.log(x_all[keep]), np.log(y_all[keep])
        if x.size < 2 or np.ptp(x) == 0:
            continue
        slope, intercept = np.polyfit(x, y, 1)
        slopes.append(float(slope))
        intercepts.append(float(intercept))
        points += x.size
        if x.size > 2:
            resid = y - (slope * x + intercept)
            stderr_single = float(np.sqrt(resid @ resid / (x.size - 2) / np.sum((x - x.mean()) ** 2)))
    if not slopes:
        raise ValueError("a power-law fit needs, for some seed, two or more teacher widths with distinct L_TE > 0")
    n = len(slopes)
    stderr = float(np.std(slopes, ddof=1) / math.sqrt(n)) if n > 1 else stderr_single
    return PowerLawFit(float(np.mean(slopes)), stderr, float(np.exp(np.mean(intercepts))), tuple(slopes), points)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """A study's aggregate.

    Attributes:
      config: the StudyConfig.
      times: (T,) stopping times.
      records: one dict per (unit, teacher width) with the figures of merit, route and error estimates.
      curves: (n_records, T) L_ST(t), aligned with ``records``.
      fits: one dict per group with the power-law fit (where one is possible).
      seconds_computed: seconds of the units computed by this call; seconds_reused: of the units read back.
      wall_seconds: wall time of this call.
      runs_computed, runs_reused: run units computed now / read back from an earlier call.
      environment: versions, device, precision.
      ridge_curves: (n_records, T) ridge L(μ) at μ = 1/t, aligned with ``records`` (NaN rows for units stored
        without them); None unless the study asks for ridge.
    """

    config: StudyConfig
    times: np.ndarray
    records: list
    curves: np.ndarray
    fits: list
    seconds_computed: float
    seconds_reused: float
    wall_seconds: float
    runs_computed: int
    runs_reused: int
    environment: dict
    ridge_curves: np.ndarray | None = None

    def to_dict(self) -> dict:
        return json_safe({
            "config": self.config.to_dict(), "environment": self.environment,
            "seconds": {"computed_now": self.seconds_computed, "reused_from_earlier_runs": self.seconds_reused,
                        "wall": self.wall_seconds},
            "runs_computed": self.runs_computed, "runs_reused": self.runs_reused,
            "records": self.records, "fits": self.fits,
        })


def group_label(config: StudyConfig, record: dict) -> str:
    """Runs fitted together: same d and M_ST; with d tied to M_TE, same student rule M_ST = k·d; in a chain,
    also the same stage."""
    if "stage" in record:
        plain = group_label(config, {k: v for k, v in record.items() if k != "stage"})
        k = record["stage"]
        return f"{plain}, stage {k}" + (f" (M = {record['stage_width']})" if k > 1 else "")
    width = record["student_width"]
    if "minority_teacher" in record:
        return (f"d = {record['input_dim']}, M_ST = {width}, η_ℓ = {record['minority_teacher']:g}, "
                f"η_u = {record['minority_student']:g}")
    if config.input_dim_exponent is not None:
        if config.student_widths_per_dim:
            return "M_ST = ∞" if width == INFINITE else f"M_ST = {width // record['input_dim']}d"
        return f"M_ST = {width}"
    return f"d = {record['input_dim']}, M_ST = {width}"


def run_name(record: dict) -> str:
    if "stage" in record:
        return run_name({k: v for k, v in record.items() if k != "stage"}) + f"_stage{record['stage']}"
    if "minority_teacher" in record:
        return (f"d{record['input_dim']}_eta{record['minority_teacher']:g}-{record['minority_student']:g}_mst"
                f"{record['student_width']}_mte{record['teacher_width']}_seed{record['seed']}")
    return f"d{record['input_dim']}_mst{record['student_width']}_mte{record['teacher_width']}_seed{record['seed']}"


def _fits(config: StudyConfig, records: list) -> list:
    fits = []
    for label in dict.fromkeys(r["group"] for r in records):
        rows = [r for r in records if r["group"] == label]
        if len({r["teacher_width"] for r in rows}) < 2:
            continue
        try:
            fit = fit_power_law([r["teacher_loss"] for r in rows], [r["best_student_loss"] for r in rows],
                                [r["seed"] for r in rows])
        except ValueError:
            continue
        entry = {"group": label, "input_dim": rows[0]["input_dim"] if config.input_dim_exponent is None else None,
                 "student_width": rows[0]["student_width"]}
        entry.update(fit.to_dict())
        fits.append(entry)
    return fits


def run_study(config: StudyConfig, out=None, *, fresh: bool = False, progress: bool = True, plots: bool = True,
              memory_bytes: int | None = None, on_plan=None) -> StudyResult:
    """Run a study; with ``out``, store each unit in ``out/runs/`` as it finishes (reusing the ones already there
    unless ``fresh``) and write results.json, curves.csv, config.toml and the figures.

    ``on_plan(plan, todo)`` is called once the study is planned, before any unit runs (the CLI prints the
    estimate there). A KeyboardInterrupt leaves every finished unit saved; it propagates as ``Interrupted``
    with the counts."""
    from tqdm.auto import tqdm

    clock = time.perf_counter()
    check_study_size(config, memory_bytes)
    units = run_units(config)
    folder = None if out is None else check_output_folder(out)
    if folder is not None and fresh:
        clear_runs(folder)
    done, todo = {}, []
    for unit in units:
        data = (_load_unit(folder / RUNS_FOLDER / f"{unit.key}.json", unit, config.num_times, config.stages)
                if folder is not None else None)
        if data is None:
            todo.append(unit)
        else:
            done[unit.key] = data
    reused = len(done)
    plan = plan_study(config, todo, memory_bytes)
    if on_plan is not None:
        on_plan(plan, todo)
    bar = tqdm(total=len(units), initial=reused, desc=config.name, unit="run", disable=not progress, leave=False)
    computed = 0
    try:
        for unit in todo:
            bar.set_postfix_str(f"d={unit.input_dim} M_ST={unit.width_label} seed={unit.seed}")
            data = compute_unit(config, unit)
            if folder is not None:
                atomic_write_json(folder / RUNS_FOLDER / f"{unit.key}.json", data)
            done[unit.key] = data
            computed += 1
            bar.update(1)
    except KeyboardInterrupt:
        raise Interrupted(reused + computed, len(units), folder) from None
    finally:
        bar.close()
    return _aggregate(config, units, done, todo, reused, folder, plots, clock)


class Interrupted(Exception):
    """A study stopped by Ctrl-C; ``saved`` of ``total`` units are on disk in ``folder``."""

    def __init__(self, saved: int, total: int, folder):
        super().__init__(f"{saved} of {total} run units saved")
        self.saved, self.total, self.folder = saved, total, folder


def _aggregate(config, units, done, todo, reused, folder, plots, clock) -> StudyResult:
    records, curves, ridge_curves = [], [], []
    todo_keys = {u.key for u in todo}
    seconds_now = seconds_before = 0.0
    for unit in units:
        data = done[unit.key]
        if unit.key in todo_keys:
            seconds_now += float(data["seconds"])
        else:
            seconds_before += float(data["seconds"])
        for rec, curve in zip(data["records"], data["curves"]):
            rec = {k: (from_json_float(v) if k in RECORD_FLOATS or (k == "label_time" and v is not None) else v)
                   for k, v in rec.items()}
            rec["run"] = run_name(rec)
            rec["group"] = group_label(config, rec)
            records.append(rec)
            curves.append([from_json_float(v) for v in curve])
        ridge = data.get("ridge_curves") or [[math.nan] * config.num_times] * len(data["records"])
        ridge_curves += [[from_json_float(v) for v in curve] for curve in ridge]
    env = environment()
    env["precision"] = config.precision
    result = StudyResult(
        config=config, times=config.time_grid(), records=records,
        curves=np.asarray(curves, dtype=np.float64).reshape(len(records), config.num_times),
        fits=_fits(config, records), seconds_computed=seconds_now, seconds_reused=seconds_before, wall_seconds=0.0,
        runs_computed=len(todo), runs_reused=reused, environment=env,
        ridge_curves=np.asarray(ridge_curves, dtype=np.float64).reshape(len(records), config.num_times)
        if config.ridge else None,
    )
    files = write_outputs(result, folder, plots=plots) if folder is not None else []
    result = dataclasses.replace(result, wall_seconds=time.perf_counter() - clock)
    if folder is not None:
        atomic_write_json(folder / "results.json", {**result.to_dict(), "files": files})
    return result


CURVE_COLUMNS = ("run", "input_dim", "student_width", "teacher_width", "seed", "time", "student_loss",
                 "teacher_loss", "loss_ratio")
STAGE_COLUMNS = ("stage", "stage_width")
"""A chain study's curves.csv has these two columns after ``seed`` (its student_width is stage 1's)."""


def curve_columns(config: StudyConfig) -> tuple:
    """The columns of a study's curves.csv."""
    if not config.chain:
        return CURVE_COLUMNS
    at = CURVE_COLUMNS.index("seed") + 1
    return CURVE_COLUMNS[:at] + STAGE_COLUMNS + CURVE_COLUMNS[at:]


def curves_csv(result: StudyResult) -> str:
    """CSV text in long format, one row per (run, time): the layout of every command's curves.csv."""
    buf = io.StringIO()
    buf.write(",".join(curve_columns(result.config)) + "\n")
    for rec, curve in zip(result.records, result.curves):
        head = f"{rec['run']},{rec['input_dim']},{rec['student_width']},{rec['teacher_width']},{rec['seed']}"
        if "stage" in rec:
            head += f",{rec['stage']},{rec['stage_width']}"
        lte = rec["teacher_loss"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.asarray(curve) / lte  # an exact teacher (L_TE = 0) gives inf
        for t, value, r in zip(result.times, curve, ratio):
            buf.write(f"{head},{t:.17g},{value:.17g},{lte:.17g},{r:.17g}\n")
    return buf.getvalue()


def write_outputs(result: StudyResult, folder: Path, plots: bool = True) -> list:
    """curves.csv, config.toml and the figures; returns the file names (results.json is written last)."""
    atomic_write_text(folder / "curves.csv", curves_csv(result))
    atomic_write_text(folder / "config.toml", config_to_toml(result.config))
    files = ["results.json", "curves.csv", "config.toml"]
    if plots:
        from w2sjax.studies import plots as plotting

        files += plotting.save_figures(result, folder)
    return files


# --------------------------------------------------------------------------------------------------
# Terminal summary
# --------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summary_rows(result: StudyResult) -> list[dict]:
    """One row per (group, M_TE): means over seeds (ratio also its spread over seeds), median t*."""
    rows = []
    keys = dict.fromkeys((r["group"], r["input_dim"], r["student_width"], r["teacher_width"]) for r in result.records)
    for group, dim, m_st, m_te in keys:
        sel = [r for r in result.records
               if (r["group"], r["input_dim"], r["student_width"], r["teacher_width"]) == (group, dim, m_st, m_te)]
        ratio = np.array([r["ratio"] for r in sel])
        pgr = np.array([r["pgr"] for r in sel])
        rows.append({
            "group": group, "input_dim": dim, "student_width": m_st, "teacher_width": m_te, "seeds": len(sel),
            "teacher_loss": float(np.mean([r["teacher_loss"] for r in sel])),
            "best_student_loss": float(np.mean([r["best_student_loss"] for r in sel])),
            "ratio": float(ratio.mean()), "ratio_sd": float(ratio.std(ddof=1)) if ratio.size > 1 else math.nan,
            "best_time": float(np.median([r["best_time"] for r in sel])),
            "pgr": float(np.mean(pgr)) if np.all(np.isfinite(pgr)) else math.nan,
            "route": ", ".join(sorted({r["route"] for r in sel})),
        })
        if "stage" in sel[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                quadratic = [r["best_student_loss"] / r["teacher_loss"] ** 2 for r in sel]
            rows[-1].update(stage=sel[0]["stage"], stage_width=sel[0]["stage_width"],
                            quadratic_ratio=float(np.mean(quadratic)))
        if "minority_teacher" in sel[0]:
            rows[-1].update({k: sel[0][k] for k in ("minority_teacher", "minority_student")})
            rows[-1].update({k: float(np.mean([r[k] for r in sel]))
                             for k in ("gain", "worst_group_loss", "teacher_worst_group_loss")})
    return rows


def shift_table(result: StudyResult) -> str:
    """The table of a shift study: per (η_ℓ, η_u), the W2S gain and the worst-group errors (means over seeds)."""
    head = (f"{'η_ℓ':>5} {'η_u':>5} {'M_ST':>6} {'M_TE':>5} {'seeds':>5} {'L_TE':>9} {'L_ST*':>9} {'gain':>9} "
            f"{'worst grp TE':>12} {'worst grp ST':>12} {'t* (median)':>12}")
    lines = [head, "-" * len(head)]
    for r in summary_rows(result):
        lines.append(
            f"{r['minority_teacher']:>5.2f} {r['minority_student']:>5.2f} {str(r['student_width']):>6} "
            f"{r['teacher_width']:>5} {r['seeds']:>5} {r['teacher_loss']:>9.4g} {r['best_student_loss']:>9.4g} "
            f"{r['gain']:>9.4g} {r['teacher_worst_group_loss']:>12.4g} {r['worst_group_loss']:>12.4g} "
            f"{r['best_time']:>12.4g}")
    lines.append("gain = L_TE − L_ST* on the test law; worst grp = the larger group error (teacher; student at t*)")
    return "\n".join(lines)


def summary_table(result: StudyResult) -> str:
    """Plain-text table: means over seeds, ± the spread (sample standard deviation) over seeds; the fitted
    exponents ± their standard error; where the time went."""
    if result.config.shift:
        now = f"computed {result.runs_computed} run units in {_duration(result.seconds_computed)}"
        if result.runs_reused:
            now += f"; reused {result.runs_reused} from earlier runs (they took {_duration(result.seconds_reused)})"
        return shift_table(result) + f"\ntime: {now}; wall {_duration(result.wall_seconds)}"
    chain = result.config.chain
    stage_head = f" {'stage: M':>11} {'L_ST*/L_TE²':>11}" if chain else ""
    head = (f"{'d':>6} {'M_ST':>7}{stage_head} {'M_TE':>6} {'seeds':>5} {'L_TE':>10} {'L_ST*':>10} "
            f"{'L_ST*/L_TE (± sd)':>19} {'t* (median)':>12} {'PGR':>7}  route")
    lines = [head, "-" * len(head)]
    for r in summary_rows(result):
        spread = "" if math.isnan(r["ratio_sd"]) else f" ± {r['ratio_sd']:.3f}"
        pgr = "    n/a" if math.isnan(r["pgr"]) else f"{r['pgr']:>7.3f}"
        stage = f" {str(r['stage']) + ': ' + str(r['stage_width']):>11} {r['quadratic_ratio']:>11.4g}" if chain else ""
        lines.append(
            f"{r['input_dim']:>6} {str(r['student_width']):>7}{stage} {r['teacher_width']:>6} {r['seeds']:>5} "
            f"{r['teacher_loss']:>10.4g} {r['best_student_loss']:>10.4g} {r['ratio']:>9.4f}{spread:<10} "
            f"{r['best_time']:>12.4g} {pgr}  {r['route']}"
        )
    if chain:
        lines.append("stage k trains on stage k − 1's function at its label time (stage 1 on the teacher's); every "
                     "stage is scored against f* and compared with the teacher's L_TE")
    if any(math.isnan(r["pgr"]) for r in summary_rows(result)):
        lines.append("PGR n/a: the student cannot beat its teacher even on true labels (L_ceil >= L_TE)")
    for fit in result.fits:
        err = fit["exponent_stderr"]
        err_text = "" if err is None else f" ± {err:.3f} (s.e. over seeds)"
        lines.append(f"power law [{fit['group']}]: L_ST* ≈ {fit['prefactor']:.3g} · L_TE^{fit['exponent']:.3f}{err_text}")
    now = f"computed {result.runs_computed} run units in {_duration(result.seconds_computed)}"
    if result.runs_reused:
        now += f"; reused {result.runs_reused} from earlier runs (they took {_duration(result.seconds_reused)})"
    lines.append(f"time: {now}; wall {_duration(result.wall_seconds)}")
    return "\n".join(lines)
