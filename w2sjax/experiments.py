"""The paper's experiments as configurable sweeps: configs, presets, a resumable runner, power-law fits.

An experiment is a set of *problems* (an input dimension d with its teacher widths) × student widths × seeds.
Seed s draws student s and teachers s (independent streams, see ``w2sjax.sweep``); each (problem, student
width, seed) is one *run unit*: one decomposition of G_S scored against every teacher width of the problem
by ``w2sjax.sweep.run_sweep``. A run unit is stored as one file ``DIR/runs/<key>.json`` the moment it is
done, so an interrupted sweep restarted with the same ``DIR`` computes only what is missing; the aggregate
files (``results.json``, ``curves.csv``, PNGs) are rebuilt from the run files at the end.

Power law: for each group (input dimension and student width), L_ST* ≈ C · L_TE^k is fitted by least
squares on (log L_TE, log L_ST*) over the teacher widths, separately for each seed; the exponent reported is
the mean over seeds ± its standard error (std/√n); with one seed, the least-squares standard error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import time
import tomllib
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from w2sjax._io import atomic_write_json, atomic_write_text, from_json_float, json_safe
from w2sjax.environment import environment
from w2sjax.features import ACTIVATIONS
from w2sjax.inputs import INPUT_KINDS, gaussian_inputs, hermite_target, linear_target, sphere_inputs, sum_target
from w2sjax.sweep import run_sweep, student_weights

PRESETS = ("fig2", "fig3", "fig4", "fig5", "sizes")
COVARIANCES = ("identity", "spiked")
TARGET_DIRECTIONS = ("e1", "ones")
PRECISIONS = ("float64", "float32")
RUNS_FOLDER = "runs"
RECORD_FLOATS = (
    "teacher_loss",
    "best_time",
    "best_student_loss",
    "ratio",
    "pgr",
    "student_loss_at_infinity",
    "ceiling_loss",
)

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A weak-to-strong sweep, as read from a TOML file (every field is a TOML key; see ``CONFIG_KEYS``).

    Problems: one per entry of ``input_dims``, all teachers together; or, with ``input_dim_exponent`` = p,
    one per teacher width M_TE with its own d = round(M_TE^p).
    Inputs: x ~ N(0, Σ) (``input_kind = "gaussian"``) or uniform on the sphere of radius √d. Σ = I, or
    ``covariance = "spiked"``: Σ = diag(spike_variance, v, …, v), v = bulk_variance_scale · d^(−bulk_variance_exponent).
    Target: f* = Σ_j target_scales[j] · h_{target_degrees[j]}(⟨β, x⟩), β = e₁ or (1, …, 1)/√d; all degrees 1
    means the linear target ⟨(Σ_j scales_j) β, x⟩ (valid for any Σ); other degrees need Σ = I.
    Students: ``student_widths``, or ``student_widths_per_dim`` = k for M_ST = k·d.
    Times: ``num_times`` log-spaced stopping times from 10^times_log10[0] to 10^times_log10[1].
    """

    teacher_widths: tuple
    student_widths: tuple = ()
    student_widths_per_dim: tuple = ()
    input_dims: tuple = ()
    input_dim_exponent: float | None = None
    name: str = "experiment"
    description: str = ""
    activation: str = "relu"
    input_kind: str = "gaussian"
    covariance: str = "identity"
    spike_variance: float = 1.0
    bulk_variance_scale: float = 1.0
    bulk_variance_exponent: float = 1.0
    target_direction: str = "e1"
    target_degrees: tuple = (1,)
    target_scales: tuple = (1.0,)
    seeds: tuple = (0, 1, 2)
    times_log10: tuple = (-1.0, 7.0)
    num_times: int = 400
    precision: str = "float64"
    rcond: float | None = None
    ratio_powers: tuple = (1.0,)

    def __post_init__(self):
        for name, value in _validated_fields(self).items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """Plain JSON-ready values: tuples as lists, unset optional keys as None."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def problems(self) -> list["Problem"]:
        """The problems of this sweep, in order."""
        if self.input_dim_exponent is not None:
            return [Problem(round(m**self.input_dim_exponent), (m,)) for m in self.teacher_widths]
        return [Problem(d, self.teacher_widths) for d in self.input_dims]

    def student_widths_for(self, dim: int) -> tuple:
        """M_ST values for a problem of input dimension ``dim``."""
        if self.student_widths:
            return self.student_widths
        return tuple(k * dim for k in self.student_widths_per_dim)

    def times(self) -> np.ndarray:
        """(num_times,) log-spaced stopping times."""
        return np.logspace(self.times_log10[0], self.times_log10[1], self.num_times)

    @property
    def dtype(self):
        return jnp.float64 if self.precision == "float64" else jnp.float32


@dataclasses.dataclass(frozen=True)
class Problem:
    """One input dimension and the teacher widths that share it."""

    input_dim: int
    teacher_widths: tuple


CONFIG_KEYS = {
    "name": "label used in titles and the default output folder",
    "description": "free text, copied into results.json",
    "activation": "relu | linear (teacher and student)",
    "input_kind": "gaussian | sphere (radius √d; needs covariance = identity)",
    "input_dims": "list of input dimensions d, each a separate problem with every teacher width",
    "input_dim_exponent": "p: one problem per teacher width with d = round(M_TE^p) (instead of input_dims)",
    "covariance": "identity | spiked: Σ = diag(spike_variance, v, …, v), "
    "v = bulk_variance_scale·d^(−bulk_variance_exponent)",
    "spike_variance": "spiked Σ: variance of x₁",
    "bulk_variance_scale": "spiked Σ: c in v = c·d^(−a)",
    "bulk_variance_exponent": "spiked Σ: a in v = c·d^(−a)",
    "target_direction": "e1 | ones: β = e₁ or (1, …, 1)/√d",
    "target_degrees": "Hermite degrees k_j of f* = Σ_j scale_j h_{k_j}(⟨β, x⟩); [1] is the linear target",
    "target_scales": "scale_j, one per degree",
    "student_widths": "list of student widths M_ST",
    "student_widths_per_dim": "list of k: M_ST = k·d for each problem (instead of student_widths)",
    "teacher_widths": "list of teacher widths M_TE",
    "seeds": "number of seeds N (seeds 0..N−1) or a list of seeds; seed s draws student s and teachers s",
    "times_log10": "[start, stop]: stopping times from 10^start to 10^stop",
    "num_times": "number of log-spaced stopping times",
    "precision": "float64 | float32",
    "rcond": "relative eigenvalue cutoff (default M·ε of the precision)",
    "ratio_powers": "powers p for the panels of L_ST(t)/L_TE^p (fig3 adds 2)",
}
assert set(CONFIG_KEYS) == {f.name for f in dataclasses.fields(ExperimentConfig)}


def _int_tuple(value, name, allow_empty=False, minimum=1) -> tuple:
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"{name} must be a list of integers, e.g. [16, 32]; got {value!r}")
    if not items and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}; got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values {out}; list each once")
    return tuple(out)


def _float(value, name, positive=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite{' positive' if positive else ''} number; got {value}")
    return value


def _float_tuple(value, name) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list of numbers; got {value!r}")
    return tuple(_float(v, name) for v in value)


def _choice(value, choices, name) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def _validated_fields(c: ExperimentConfig) -> dict:
    """Normalised field values, or ValueError saying what to change."""
    v = {}
    if not isinstance(c.name, str) or not c.name or any(ch in c.name for ch in "/\\"):
        raise ValueError(f"name must be a non-empty string without slashes; got {c.name!r}")
    if not isinstance(c.description, str):
        raise ValueError("description must be a string")
    _choice(c.activation, ACTIVATIONS, "activation")
    _choice(c.input_kind, INPUT_KINDS, "input_kind")
    _choice(c.covariance, COVARIANCES, "covariance")
    _choice(c.target_direction, TARGET_DIRECTIONS, "target_direction")
    _choice(c.precision, PRECISIONS, "precision")

    v["teacher_widths"] = tuple(sorted(_int_tuple(c.teacher_widths, "teacher_widths")))
    v["student_widths"] = tuple(sorted(_int_tuple(c.student_widths, "student_widths", allow_empty=True)))
    v["student_widths_per_dim"] = tuple(
        sorted(_int_tuple(c.student_widths_per_dim, "student_widths_per_dim", allow_empty=True))
    )
    if bool(v["student_widths"]) == bool(v["student_widths_per_dim"]):
        raise ValueError("give exactly one of student_widths (e.g. [4096]) and student_widths_per_dim (e.g. [16])")
    v["input_dims"] = tuple(_int_tuple(c.input_dims, "input_dims", allow_empty=True))
    if c.input_dim_exponent is not None:
        v["input_dim_exponent"] = _float(c.input_dim_exponent, "input_dim_exponent", positive=True)
    if bool(v["input_dims"]) == (c.input_dim_exponent is not None):
        raise ValueError("give exactly one of input_dims (e.g. [32]) and input_dim_exponent (e.g. 1.5)")

    v["spike_variance"] = _float(c.spike_variance, "spike_variance", positive=True)
    v["bulk_variance_scale"] = _float(c.bulk_variance_scale, "bulk_variance_scale", positive=True)
    v["bulk_variance_exponent"] = _float(c.bulk_variance_exponent, "bulk_variance_exponent")
    if c.input_kind == "sphere" and c.covariance != "identity":
        raise ValueError("sphere inputs are isotropic: set covariance = \"identity\" or input_kind = \"gaussian\"")

    v["target_degrees"] = _int_tuple(c.target_degrees, "target_degrees", minimum=0)
    v["target_scales"] = _float_tuple(c.target_scales, "target_scales")
    if len(v["target_degrees"]) != len(v["target_scales"]):
        raise ValueError(
            f"target_scales needs one scale per degree: {len(v['target_degrees'])} degrees, "
            f"{len(v['target_scales'])} scales"
        )
    if any(k != 1 for k in v["target_degrees"]):
        if c.covariance != "identity" or c.input_kind != "gaussian":
            raise ValueError(
                "Hermite targets of degree != 1 need input_kind = \"gaussian\" and covariance = \"identity\" "
                "(use target_degrees = [1] for other inputs)"
            )

    seeds = c.seeds
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive count or a list of seeds; got {seeds}")
        seeds = list(range(int(seeds)))
    v["seeds"] = _int_tuple(seeds, "seeds", minimum=0)

    times = c.times_log10
    if not isinstance(times, (list, tuple)) or len(times) != 2:
        raise ValueError(f"times_log10 must be [start, stop] (log10 of the first and last time); got {times!r}")
    v["times_log10"] = tuple(_float(t, "times_log10") for t in times)
    if v["times_log10"][0] >= v["times_log10"][1]:
        raise ValueError(f"times_log10 needs start < stop; got {list(v['times_log10'])}")
    if isinstance(c.num_times, bool) or not isinstance(c.num_times, (int, np.integer)) or c.num_times < 2:
        raise ValueError(f"num_times must be an integer >= 2; got {c.num_times!r}")
    v["num_times"] = int(c.num_times)
    if c.rcond is not None:
        v["rcond"] = _float(c.rcond, "rcond", positive=True)
        if v["rcond"] >= 1:
            raise ValueError(f"rcond is a relative eigenvalue cutoff in (0, 1); got {v['rcond']}")
    v["ratio_powers"] = _float_tuple(c.ratio_powers, "ratio_powers")
    if any(p <= 0 for p in v["ratio_powers"]):
        raise ValueError(f"ratio_powers must be positive; got {list(v['ratio_powers'])}")

    dims = (
        [round(m ** v["input_dim_exponent"]) for m in v["teacher_widths"]]
        if c.input_dim_exponent is not None
        else list(v["input_dims"])
    )
    if c.covariance == "spiked" and min(dims) < 2:
        raise ValueError("a spiked covariance needs input dimension d >= 2")
    return v


def config_from_dict(data: dict, source: str = "config") -> ExperimentConfig:
    """An ExperimentConfig from a mapping of TOML keys; unknown keys are a ValueError listing the valid ones."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a table of keys")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(CONFIG_KEYS)}")
    if "teacher_widths" not in data:
        raise ValueError(f"{source}: teacher_widths is required (e.g. teacher_widths = [16, 32, 64])")
    return ExperimentConfig(**data)


def parse_config(text: str, quick: bool = False, source: str = "config") -> ExperimentConfig:
    """Parse TOML text; with ``quick``, the keys of its ``[quick]`` table replace the top-level ones."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source} is not valid TOML: {err}") from None
    overrides = data.pop("quick", None)
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise ValueError(f"{source}: quick must be a table ([quick]) of keys that replace the top-level ones")
        config_from_dict({**data, **overrides}, f"{source} [quick]")
    if quick:
        if overrides is None:
            raise ValueError(f"{source} has no [quick] table; run it without --quick or add one")
        data = {**data, **overrides}
    return config_from_dict(data, source)


def load_config(path, quick: bool = False) -> ExperimentConfig:
    """Read an ExperimentConfig from a TOML file (see ``CONFIG_KEYS``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    return parse_config(path.read_text(), quick, str(path))


def preset_text(name: str) -> str:
    """The shipped TOML of a preset."""
    _choice(name, PRESETS, "preset")
    return resources.files("w2sjax").joinpath("presets", f"{name}.toml").read_text()


def preset(name: str, quick: bool = False) -> ExperimentConfig:
    """A preset (``PRESETS``): the paper's figures 2–5 and the size map; ``quick`` for the CPU-sized variant."""
    return parse_config(preset_text(name), quick, f"preset {name}")


def config_to_toml(config: ExperimentConfig) -> str:
    """TOML text that ``parse_config`` reads back to ``config``."""
    lines = []
    for key, value in config.to_dict().items():
        if value is not None:  # TOML has no null: an absent key means the default
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


# --------------------------------------------------------------------------------------------------
# Building the problem
# --------------------------------------------------------------------------------------------------


def input_variances(config: ExperimentConfig, dim: int) -> np.ndarray:
    """(d,) diagonal of Σ: ones, or (spike_variance, v, …, v), v = bulk_variance_scale · d^(−bulk_variance_exponent)."""
    if config.covariance == "identity":
        return np.ones(dim)
    variances = np.full(dim, config.bulk_variance_scale * float(dim) ** (-config.bulk_variance_exponent))
    variances[0] = config.spike_variance
    return variances


def build_inputs(config: ExperimentConfig, dim: int):
    if config.input_kind == "sphere":
        return sphere_inputs(dim, config.dtype)
    variances = None if config.covariance == "identity" else input_variances(config, dim)
    return gaussian_inputs(dim, variances, config.dtype)


def target_direction(config: ExperimentConfig, dim: int) -> np.ndarray:
    """β: e₁ or (1, …, 1)/√d (unit norm)."""
    if config.target_direction == "e1":
        beta = np.zeros(dim)
        beta[0] = 1.0
        return beta
    return np.full(dim, 1 / math.sqrt(dim))


def build_target(config: ExperimentConfig, dim: int):
    """f* = Σ_j scale_j h_{k_j}(⟨β, x⟩); the linear target ⟨(Σ scale_j) β, x⟩ when every degree is 1."""
    beta = target_direction(config, dim)
    if all(k == 1 for k in config.target_degrees):
        return linear_target(sum(config.target_scales) * beta, config.dtype)
    terms = [hermite_target(beta, k, s, config.dtype) for k, s in zip(config.target_degrees, config.target_scales)]
    return terms[0] if len(terms) == 1 else sum_target(*terms)


# --------------------------------------------------------------------------------------------------
# Run units and their files
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunUnit:
    """One decomposition of G_S: (problem, student width, seed), scored against the problem's teachers."""

    input_dim: int
    teacher_widths: tuple
    student_width: int
    seed: int
    signature: str

    @property
    def key(self) -> str:
        return f"d{self.input_dim}_mst{self.student_width}_seed{self.seed}_{self.signature}"


def run_units(config: ExperimentConfig) -> list[RunUnit]:
    """Every run unit of a config, in order (problem, student width, seed)."""
    units = []
    for problem in config.problems():
        for width in config.student_widths_for(problem.input_dim):
            for seed in config.seeds:
                sig = _unit_signature(config, problem, width, seed)
                units.append(RunUnit(problem.input_dim, problem.teacher_widths, width, seed, sig))
    return units


def _unit_signature(config: ExperimentConfig, problem: Problem, width: int, seed: int) -> str:
    """Hash of everything a run unit's numbers depend on, so a changed config never reuses a stale file."""
    spec = {
        "activation": config.activation,
        "input_kind": config.input_kind,
        "variances": input_variances(config, problem.input_dim).tolist(),
        "target": [config.target_direction, list(config.target_degrees), list(config.target_scales)],
        "teacher_widths": list(problem.teacher_widths),
        "student_width": width,
        "seed": seed,
        "times": [list(config.times_log10), config.num_times],
        "precision": config.precision,
        "rcond": config.rcond,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def compute_unit(config: ExperimentConfig, unit: RunUnit) -> dict:
    """Run one unit with ``run_sweep``: its records (one per teacher width), curves and timings, JSON-ready."""
    clock = time.perf_counter()
    inputs = build_inputs(config, unit.input_dim)
    target = build_target(config, unit.input_dim)
    widest = max(config.student_widths_for(unit.input_dim))

    def nested_student(seed, width, dim, activation):
        # Students are nested, as in one run_sweep over every width: width m is the first m rows of the widest.
        return student_weights(seed, widest, dim, activation)[:width]

    sweep = run_sweep(
        inputs,
        target,
        activation=config.activation,
        student_widths=(unit.student_width,),
        teacher_widths=unit.teacher_widths,
        times=config.times(),
        student_seeds=(unit.seed,),
        teacher_seeds=(unit.seed,),
        rcond=config.rcond,
        student_weights_fn=nested_student,
    )
    records, curves = [], []
    for k, width in enumerate(unit.teacher_widths):
        records.append(
            {
                "input_dim": unit.input_dim,
                "teacher_width": width,
                "student_width": unit.student_width,
                "teacher_seed": unit.seed,
                "student_seed": unit.seed,
                "teacher_loss": float(sweep.teacher_loss[k, 0]),
                "best_time": float(sweep.best_time[0, 0, k, 0]),
                "best_student_loss": float(sweep.best_student_loss[0, 0, k, 0]),
                "ratio": float(sweep.ratio[0, 0, k, 0]),
                "pgr": float(sweep.pgr[0, 0, k, 0]),
                "student_loss_at_infinity": float(sweep.student_loss_at_infinity[0, 0, k, 0]),
                "ceiling_loss": float(sweep.ceiling_loss[0, 0]),
            }
        )
        curves.append(sweep.student_loss[0, 0, k, 0].tolist())
    return {
        "key": unit.key,
        "signature": unit.signature,
        "records": [json_safe(r) for r in records],
        "curves": json_safe(curves),
        "timings": dict(sweep.timings),
        "seconds": time.perf_counter() - clock,
    }


def _load_unit(path: Path, unit: RunUnit) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("signature") != unit.signature or len(data.get("records", ())) != len(unit.teacher_widths):
        return None
    return data


def clear_runs(out) -> int:
    """Delete the run files (and any leftover temporary files) under ``out/runs``; returns how many."""
    folder = Path(out) / RUNS_FOLDER
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and (path.suffix == ".json" or path.name.endswith(".tmp")):
            path.unlink()
            removed += 1
    return removed


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
    """Fit L_ST* = C · L_TE^k per seed (least squares in log–log) and combine over seeds.

    Args:
      teacher_loss, student_loss: (n,) L_TE and L_ST* of n runs.
      seeds: (n,) the seed of each run; each seed needs two or more distinct positive L_TE.
    """
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
class ExperimentResult:
    """An experiment's aggregate.

    Attributes:
      config: the ExperimentConfig.
      times: (T,) stopping times.
      records: one dict per run (input_dim, teacher_width, student_width, teacher_seed, student_seed,
        teacher_loss, best_time, best_student_loss, ratio, pgr, student_loss_at_infinity, ceiling_loss, run,
        group), numbers as floats (best_time may be ∞).
      curves: (n_runs, T) L_ST(t), aligned with ``records``.
      fits: one dict per group: {"group", "input_dim" (None for fig3-like sweeps), "student_width" or
        "student_width_per_dim", **PowerLawFit.to_dict()} (absent where a fit is impossible).
      timings: seconds spent building moments, decomposing, computing curves (summed over run units).
      wall_seconds: wall time of this call.
      runs_computed, runs_reused: run units computed now / read back from an earlier call.
      environment: ``w2sjax.environment.environment()`` plus the precision.
      out: the output folder, or None.
    """

    config: ExperimentConfig
    times: np.ndarray
    records: list
    curves: np.ndarray
    fits: list
    timings: dict
    wall_seconds: float
    runs_computed: int
    runs_reused: int
    environment: dict
    out: str | None = None

    def to_dict(self) -> dict:
        return json_safe(
            {
                "config": self.config.to_dict(),
                "environment": self.environment,
                "timings": self.timings,
                "wall_seconds": self.wall_seconds,
                "runs_computed": self.runs_computed,
                "runs_reused": self.runs_reused,
                "records": self.records,
                "fits": self.fits,
            }
        )


def group_label(config: ExperimentConfig, record: dict) -> str:
    """Runs fitted together: same d and M_ST; with d tied to M_TE, same student rule M_ST = k·d."""
    if config.input_dim_exponent is not None:
        if config.student_widths_per_dim:
            return f"M_ST = {record['student_width'] // record['input_dim']}d"
        return f"M_ST = {record['student_width']}"
    return f"d = {record['input_dim']}, M_ST = {record['student_width']}"


def run_name(record: dict) -> str:
    return (
        f"d{record['input_dim']}_mst{record['student_width']}_mte{record['teacher_width']}"
        f"_seed{record['student_seed']}"
    )


def _fits(config: ExperimentConfig, records: list) -> list:
    fits = []
    for label in dict.fromkeys(r["group"] for r in records):
        rows = [r for r in records if r["group"] == label]
        if len({r["teacher_width"] for r in rows}) < 2:
            continue
        try:
            fit = fit_power_law(
                [r["teacher_loss"] for r in rows],
                [r["best_student_loss"] for r in rows],
                [r["student_seed"] for r in rows],
            )
        except ValueError:
            continue
        entry = {"group": label}
        if config.input_dim_exponent is None:
            entry["input_dim"] = rows[0]["input_dim"]
        if config.student_widths_per_dim and config.input_dim_exponent is not None:
            entry["student_width_per_dim"] = rows[0]["student_width"] // rows[0]["input_dim"]
        else:
            entry["student_width"] = rows[0]["student_width"]
        entry.update(fit.to_dict())
        fits.append(entry)
    return fits


def run_experiment(
    config: ExperimentConfig,
    out=None,
    *,
    fresh: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> ExperimentResult:
    """Run a sweep; with ``out``, store each run unit in ``out/runs/`` as it finishes (reusing the ones already
    there unless ``fresh``) and write results.json, curves.csv, config.toml and the figures.

    Returns:
      ExperimentResult (records, curves, power-law fits, timings).
    """
    from tqdm.auto import tqdm

    clock = time.perf_counter()
    units = run_units(config)
    folder = None
    if out is not None:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {str(folder)!r} is a file; give a folder")
        if fresh:
            clear_runs(folder)
    done, todo = {}, []
    for unit in units:
        data = _load_unit(folder / RUNS_FOLDER / f"{unit.key}.json", unit) if folder is not None else None
        if data is None:
            todo.append(unit)
        else:
            done[unit.key] = data
    reused = len(done)
    bar = tqdm(total=len(units), initial=reused, desc=config.name, unit="run", disable=not progress, leave=False)
    try:
        for unit in todo:
            bar.set_postfix_str(f"d={unit.input_dim} M_ST={unit.student_width} seed={unit.seed}")
            data = compute_unit(config, unit)
            if folder is not None:
                atomic_write_json(folder / RUNS_FOLDER / f"{unit.key}.json", data)
            done[unit.key] = data
            bar.update(1)
    finally:
        bar.close()

    records, curves = [], []
    timings = {"moments": 0.0, "decomposition": 0.0, "curves": 0.0}
    for unit in units:
        data = done[unit.key]
        for key in timings:
            timings[key] += float(data["timings"][key])
        for rec, curve in zip(data["records"], data["curves"]):
            rec = {k: (from_json_float(v) if k in RECORD_FLOATS else v) for k, v in rec.items()}
            rec["run"] = run_name(rec)
            rec["group"] = group_label(config, rec)
            records.append(rec)
            curves.append([from_json_float(v) for v in curve])
    env = environment()
    env["precision"] = config.precision
    result = ExperimentResult(
        config=config,
        times=config.times(),
        records=records,
        curves=np.asarray(curves, dtype=np.float64).reshape(len(records), config.num_times),
        fits=_fits(config, records),
        timings=timings,
        wall_seconds=0.0,
        runs_computed=len(todo),
        runs_reused=reused,
        environment=env,
        out=None if folder is None else str(folder),
    )
    if folder is not None:
        files = write_outputs(result, folder, plots=plots)
    result = dataclasses.replace(result, wall_seconds=time.perf_counter() - clock)
    if folder is not None:
        atomic_write_json(folder / "results.json", {**result.to_dict(), "files": files})
    return result


def curves_csv(result: ExperimentResult) -> str:
    """CSV text: a ``time`` column and one L_ST(t) column per run (named as ``record["run"]``)."""
    buf = io.StringIO()
    buf.write(",".join(["time"] + [r["run"] for r in result.records]) + "\n")
    table = np.column_stack([result.times, result.curves.T]) if result.records else result.times[:, None]
    np.savetxt(buf, table, delimiter=",", fmt="%.17g")
    return buf.getvalue()


def write_outputs(result: ExperimentResult, folder: Path, plots: bool = True) -> list:
    """curves.csv, config.toml and the figures; returns the file names (results.json is written last)."""
    from w2sjax import plots as plotting

    atomic_write_text(folder / "curves.csv", curves_csv(result))
    atomic_write_text(folder / "config.toml", config_to_toml(result.config))
    files = ["results.json", "curves.csv", "config.toml"]
    if plots:
        files += plotting.save_figures(result, folder)
    return files


# --------------------------------------------------------------------------------------------------
# Terminal summary
# --------------------------------------------------------------------------------------------------


def summary_rows(result: ExperimentResult) -> list[dict]:
    """One row per (group, M_TE): means over seeds (ratio also its std), median t*."""
    rows = []
    keys = dict.fromkeys((r["group"], r["input_dim"], r["student_width"], r["teacher_width"]) for r in result.records)
    for group, dim, m_st, m_te in keys:
        sel = [
            r
            for r in result.records
            if (r["group"], r["input_dim"], r["student_width"], r["teacher_width"]) == (group, dim, m_st, m_te)
        ]
        ratio = np.array([r["ratio"] for r in sel])
        rows.append(
            {
                "group": group,
                "input_dim": dim,
                "student_width": m_st,
                "teacher_width": m_te,
                "seeds": len(sel),
                "teacher_loss": float(np.mean([r["teacher_loss"] for r in sel])),
                "best_student_loss": float(np.mean([r["best_student_loss"] for r in sel])),
                "ratio": float(ratio.mean()),
                "ratio_std": float(ratio.std(ddof=1)) if ratio.size > 1 else math.nan,
                "best_time": float(np.median([r["best_time"] for r in sel])),
                "pgr": float(np.mean([r["pgr"] for r in sel])),
            }
        )
    return rows


def summary_table(result: ExperimentResult) -> str:
    """Plain-text table of the summary rows, the fitted exponents and the timing split."""
    head = f"{'d':>6} {'M_ST':>7} {'M_TE':>6} {'seeds':>5} {'L_TE':>10} {'L_ST*':>10} {'L_ST*/L_TE':>17} {'t*':>10} {'PGR':>7}"
    lines = [head, "-" * len(head)]
    for r in summary_rows(result):
        spread = "" if math.isnan(r["ratio_std"]) else f" ± {r['ratio_std']:.3f}"
        lines.append(
            f"{r['input_dim']:>6} {r['student_width']:>7} {r['teacher_width']:>6} {r['seeds']:>5} "
            f"{r['teacher_loss']:>10.4g} {r['best_student_loss']:>10.4g} {r['ratio']:>8.4f}{spread:<9} "
            f"{r['best_time']:>10.4g} {r['pgr']:>7.3f}"
        )
    for fit in result.fits:
        err = fit["exponent_stderr"]
        err_text = "" if err is None else f" ± {err:.3f}"
        lines.append(
            f"power law [{fit['group']}]: L_ST* ≈ {fit['prefactor']:.3g} · L_TE^({fit['exponent']:.3f}{err_text})"
        )
    t = result.timings
    lines.append(
        f"time: moments {t['moments']:.1f} s, decomposition {t['decomposition']:.1f} s, curves {t['curves']:.1f} s; "
        f"runs computed {result.runs_computed}, reused {result.runs_reused}; wall {result.wall_seconds:.1f} s"
    )
    return "\n".join(lines)
