"""Study configurations: one TOML format for every study (population, finite samples, infinite width).

A study is a set of *problems* (an input dimension d with its teacher widths) × student widths × seeds. Seed s
draws student s and teachers s (``features.student_weights`` / ``teacher_weights``) and, with finite samples,
the samples of seed s. Every key is documented in ``CONFIG_KEYS`` (and in docs/cli.md); the presets are TOML
files in ``w2sjax/studies/presets``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from w2sjax.features import ACTIVATIONS
from w2sjax.inputs import INPUT_KINDS

PRESETS = ("fig2", "fig3", "fig4", "fig5", "sizes", "relu-samples", "shift")
COVARIANCES = ("identity", "spiked")
TARGET_KINDS = ("hermite", "relu-network")
TARGET_DIRECTIONS = ("e1", "ones")
PRECISIONS = ("float64", "float32")
METHODS = ("auto", "eigh", "factor", "krylov", "infinite")
TRAINING_DATA = ("samples", "population")
INFINITE = "inf"
MAX_TIMES = 100_000
"""The most stopping times a study may ask for (every run keeps its whole curve)."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A weak-to-strong study, as read from TOML (every field is a key; see ``CONFIG_KEYS``)."""

    teacher_widths: tuple
    student_widths: tuple = ()
    student_widths_per_dim: tuple = ()
    input_dims: tuple = ()
    input_dim_exponent: float | None = None
    name: str = "study"
    description: str = ""
    activation: str = "relu"
    input_kind: str = "gaussian"
    covariance: str = "identity"
    spike_variance: float = 1.0
    bulk_variance_scale: float = 1.0
    bulk_variance_exponent: float = 1.0
    target: str = "hermite"
    target_direction: str = "e1"
    target_degrees: tuple = (1,)
    target_scales: tuple = (1.0,)
    target_units: int = 64
    target_seed: int = 0
    seeds: tuple = (0, 1, 2)
    times: tuple = (0.1, 1e7)
    num_times: int = 400
    precision: str = "float64"
    method: str = "auto"
    rcond: float | None = None
    samples: int = 0
    teacher_data: str = "samples"
    student_data: str = "samples"
    teacher_time: float = math.inf
    ridge: bool = False
    ratio_powers: tuple = (1.0,)
    inputs_file: str = ""
    labels_file: str = ""
    heldout_file: str = ""
    heldout_labels_file: str = ""
    minority_teacher: tuple = ()
    minority_student: tuple = ()
    minority_test: float = 0.5
    correlations: tuple = (0.9, 0.0)
    spurious_scale: float = 2.0
    chain_widths: tuple = ()
    chain_times: tuple = ("best",)

    def __post_init__(self):
        for name, value in _validated_fields(self).items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """Plain values: tuples as lists, ∞ as "inf", unset optional keys as None."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [INFINITE if (isinstance(v, float) and math.isinf(v)) else v for v in value]
            elif isinstance(value, float) and math.isinf(value):
                value = INFINITE
            out[f.name] = value
        return out

    def problems(self) -> list["Problem"]:
        """The problems of this study, in order."""
        if self.input_dim_exponent is not None:
            return [Problem(round(m**self.input_dim_exponent), (m,)) for m in self.teacher_widths]
        if self.shift:
            return [Problem(d, self.teacher_widths, (a, b)) for d in self.input_dims
                    for a in self.minority_teacher for b in self.minority_student]
        return [Problem(d, self.teacher_widths) for d in self.input_dims]

    def student_widths_for(self, dim: int) -> tuple:
        """M_ST values (ints, or math.inf) for a problem of input dimension ``dim``."""
        if self.student_widths:
            return self.student_widths
        return tuple(k * dim for k in self.student_widths_per_dim)

    def time_grid(self) -> np.ndarray:
        """(num_times,) log-spaced stopping times from times[0] to times[1]."""
        return np.geomspace(self.times[0], self.times[1], self.num_times)

    @property
    def dtype(self):
        return jnp.float64 if self.precision == "float64" else jnp.float32

    @property
    def finite_samples(self) -> bool:
        return self.samples > 0 or bool(self.inputs_file)

    @property
    def own_data(self) -> bool:
        return bool(self.inputs_file)

    @property
    def chain(self) -> bool:
        """A chain study: each unit's student (stage 1) labels stage 2, …, stage K (``w2sjax.chains``)."""
        return bool(self.chain_widths)

    @property
    def stages(self) -> int:
        """K: stages per chain (1 for an ordinary study)."""
        return 1 + len(self.chain_widths)

    def stage_times(self) -> tuple:
        """The K − 1 label times (``chains.chain``'s ``stage_times``): "best" or a time (math.inf allowed)."""
        times = self.chain_times
        return tuple(times) * (self.stages - 1) if len(times) == 1 else tuple(times)

    @property
    def shift(self) -> bool:
        """A group-shift study: teacher, student and test on different mixtures (``w2sjax.shift``)."""
        return bool(self.minority_teacher)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One input dimension and the teacher widths that share it."""

    input_dim: int
    teacher_widths: tuple
    minorities: tuple | None = None  # (η_ℓ, η_u) of a shift study


CONFIG_KEYS = {
    "name": "label used in titles and the default output folder",
    "description": "free text, copied into results.json",
    "activation": "relu | linear (teacher and student features)",
    "input_kind": "gaussian | sphere (radius √d; needs covariance = identity)",
    "input_dims": "list of input dimensions d, each a separate problem with every teacher width",
    "input_dim_exponent": "p: one problem per teacher width with d = round(M_TE^p) (instead of input_dims)",
    "covariance": "identity | spiked: Σ = diag(spike_variance, v, …, v), "
    "v = bulk_variance_scale·d^(−bulk_variance_exponent)",
    "spike_variance": "spiked Σ: variance of x₁",
    "bulk_variance_scale": "spiked Σ: c in v = c·d^(−a)",
    "bulk_variance_exponent": "spiked Σ: a in v = c·d^(−a)",
    "target": "hermite: f* = Σ_j scale_j h_{k_j}(⟨β, x⟩) (degrees [1]: linear) | relu-network: a random ReLU "
    "network of target_units units, standardised to unit variance",
    "target_direction": "e1 | ones: β = e₁ or (1, …, 1)/√d (hermite targets)",
    "target_degrees": "Hermite degrees k_j (hermite targets); [1] is the linear target",
    "target_scales": "scale_j, one per degree (hermite targets)",
    "target_units": "units of the relu-network target",
    "target_seed": "seed of the relu-network target (one network for every seed of the study)",
    "student_widths": "list of student widths M_ST; \"inf\" for the infinitely wide student",
    "student_widths_per_dim": "list of k: M_ST = k·d for each problem (instead of student_widths)",
    "teacher_widths": "list of teacher widths M_TE",
    "seeds": "number of seeds N (seeds 0..N−1) or a list of seeds; seed s draws student s, teachers s (and samples s)",
    "times": "[first, last]: the stopping times, log-spaced from first to last (in units of flow time)",
    "num_times": "number of stopping times",
    "precision": "float64 | float32",
    "method": "auto | eigh | factor | krylov | infinite: the route (auto picks the fastest that fits)",
    "rcond": "relative eigenvalue cutoff (default M·ε of the precision)",
    "samples": "0: train on the population; n > 0: train on n samples drawn per seed (errors stay population errors)",
    "teacher_data": "samples | population: where the teacher is fitted (with samples > 0)",
    "student_data": "samples | population: where the student is trained (with samples > 0)",
    "teacher_time": "the teacher's gradient-flow time; \"inf\" (default): least squares",
    "ridge": "also ridge students, w = (G + μI)⁻¹b, on the same decomposition (μ = 1/t for the times)",
    "ratio_powers": "powers p for the panels of L_ST(t)/L_TE^p (fig3 adds 2)",
    "inputs_file": "your training inputs, an (n, d) .npy array (instead of drawn samples; needs heldout_file)",
    "labels_file": "your true labels on inputs_file, an (n,) .npy array (default: the target's values)",
    "heldout_file": "held-out inputs (m, d) .npy: errors become mean squares over them (with inputs_file)",
    "heldout_labels_file": "your labels on heldout_file, (m,) .npy (default: the target's values)",
    "minority_teacher": "shift studies: minority fractions η_ℓ of the law the teacher is fitted on (a list; "
    "each pairs with every η_u)",
    "minority_student": "shift studies: minority fractions η_u of the law the student trains on",
    "minority_test": "shift studies: minority fraction of the test law (default 0.5: groups balanced)",
    "correlations": "shift studies: [ρ_majority, ρ_minority], corr(x_core, x_spurious) in each group",
    "spurious_scale": "shift studies: standard deviation of the spurious coordinate x₂",
    "chain_widths": "chain studies: widths of stages 2, …, K (the study's student is stage 1; the last may be "
    "\"inf\"); each stage trains on the previous stage's function at its label time",
    "chain_times": "chain studies: label time of each stage but the last: \"best\" (its own t*), a time, or "
    "\"inf\" (least squares); one entry for every stage, or K − 1 entries (default [\"best\"])",
}
assert set(CONFIG_KEYS) == {f.name for f in dataclasses.fields(StudyConfig)}


def _int_tuple(value, name, allow_empty=False, minimum=1) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of integers, e.g. [16, 32]; got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}; got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values {out}; list each once")
    return tuple(out)


def _widths(value, name, stages: bool = False) -> tuple:
    """Student widths: positive integers or "inf" (math.inf), each once, sorted. ``stages``: the widths of a
    chain's stages instead, in order, repeats allowed, "inf" only last."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of widths, e.g. [4096] or [\"inf\", 4096]; got {value!r}")
    out = []
    for v in value:
        if isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
            out.append(math.inf)
        elif isinstance(v, float) and math.isinf(v) and v > 0:
            out.append(math.inf)
        elif isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold integers >= 1 or \"inf\"; got {v!r}")
        else:
            out.append(int(v))
    if stages:
        if math.inf in out[:-1]:
            raise ValueError(f"in {name} only the last stage may be \"inf\": an infinitely wide stage has no finite "
                             "network to label the next one")
        return tuple(out)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values; list each once")
    return tuple(sorted(out))


def _float(value, name, positive=False, allow_inf=False) -> float:
    if allow_inf and isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        alternative = ' or "inf"' if allow_inf else ""
        raise ValueError(f"{name} must be a finite number{alternative}; got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a positive number; got {value}")
    return value


def _float_tuple(value, name) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list of numbers; got {value!r}")
    return tuple(_float(v, name) for v in value)


def _fraction_tuple(value, name) -> tuple:
    values = _float_tuple(value, name) if value not in ((), []) else ()
    if any(not 0 <= x <= 1 for x in values):
        raise ValueError(f"{name} holds minority fractions in [0, 1]; got {list(values)}")
    return values


def _choice(value, choices, name) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def _count(value, name, minimum) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _validated_fields(c: StudyConfig) -> dict:
    """Normalised field values, or ValueError saying what to change."""
    v = {}
    if not isinstance(c.name, str) or not c.name or any(ch in c.name for ch in "/\\"):
        raise ValueError(f"name must be a non-empty string without slashes; got {c.name!r}")
    if not isinstance(c.description, str):
        raise ValueError("description must be a string")
    for value, choices, name in (
        (c.activation, ACTIVATIONS, "activation"), (c.input_kind, INPUT_KINDS, "input_kind"),
        (c.covariance, COVARIANCES, "covariance"), (c.target, TARGET_KINDS, "target"),
        (c.target_direction, TARGET_DIRECTIONS, "target_direction"), (c.precision, PRECISIONS, "precision"),
        (c.method, METHODS, "method"), (c.teacher_data, TRAINING_DATA, "teacher_data"),
        (c.student_data, TRAINING_DATA, "student_data"),
    ):
        _choice(value, choices, name)
    v["teacher_widths"] = tuple(sorted(_int_tuple(c.teacher_widths, "teacher_widths")))
    v["student_widths"] = _widths(c.student_widths, "student_widths")
    v["student_widths_per_dim"] = (_widths(c.student_widths_per_dim, "student_widths_per_dim")
                                   if c.student_widths_per_dim not in ((), []) else ())
    if bool(v["student_widths"]) == bool(v["student_widths_per_dim"]):
        raise ValueError("give exactly one of student_widths (e.g. [4096]) and student_widths_per_dim (e.g. [16])")
    v["input_dims"] = _int_tuple(c.input_dims, "input_dims", allow_empty=True)
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
        raise ValueError(f"target_scales needs one scale per degree: {len(v['target_degrees'])} degrees, "
                         f"{len(v['target_scales'])} scales")
    if c.input_kind == "sphere" and c.target == "hermite" and any(k != 1 for k in v["target_degrees"]):
        raise ValueError("Hermite targets of degree != 1 have no closed-form moments on the sphere: use "
                         "input_kind = \"gaussian\" (or target_degrees = [1])")
    v["target_units"] = _count(c.target_units, "target_units", 1)
    v["target_seed"] = _count(c.target_seed, "target_seed", 0)
    seeds = c.seeds
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive count or a list of seeds; got {seeds}")
        seeds = list(range(int(seeds)))
    v["seeds"] = _int_tuple(seeds, "seeds", minimum=0)
    times = c.times
    if not isinstance(times, (list, tuple)) or len(times) != 2:
        raise ValueError(f"times must be [first, last] (the first and last stopping time); got {times!r}")
    v["times"] = tuple(_float(t, "times", positive=True) for t in times)
    if v["times"][0] >= v["times"][1]:
        raise ValueError(f"times needs first < last; got {list(v['times'])}")
    v["num_times"] = _count(c.num_times, "num_times", 2)
    if v["num_times"] > MAX_TIMES:
        raise ValueError(f"num_times = {v['num_times']:,} is more than {MAX_TIMES:,}: every run keeps its whole "
                         "curve; use fewer times (400 resolve a curve over 8 decades)")
    if c.rcond is not None:
        v["rcond"] = _float(c.rcond, "rcond", positive=True)
        if v["rcond"] >= 1:
            raise ValueError(f"rcond is a relative eigenvalue cutoff in (0, 1); got {v['rcond']}")
    v["samples"] = _count(c.samples, "samples", 0)
    v["teacher_time"] = _float(c.teacher_time, "teacher_time", positive=True, allow_inf=True)
    if not isinstance(c.ridge, bool):
        raise ValueError(f"ridge must be true or false; got {c.ridge!r}")
    v["ratio_powers"] = _float_tuple(c.ratio_powers, "ratio_powers")
    if any(p <= 0 for p in v["ratio_powers"]):
        raise ValueError(f"ratio_powers must be positive; got {list(v['ratio_powers'])}")
    dims = ([round(m ** v["input_dim_exponent"]) for m in v["teacher_widths"]] if c.input_dim_exponent is not None
            else list(v["input_dims"]))
    if c.covariance == "spiked" and min(dims) < 2:
        raise ValueError("a spiked covariance needs input dimension d >= 2")
    for key in ("inputs_file", "labels_file", "heldout_file", "heldout_labels_file"):
        if not isinstance(getattr(c, key), str):
            raise ValueError(f"{key} must be a path (a string); got {getattr(c, key)!r}")
    if bool(c.inputs_file) != bool(c.heldout_file):
        raise ValueError("your own data needs both inputs_file (training) and heldout_file (for the errors)")
    if (c.labels_file or c.heldout_labels_file) and not c.inputs_file:
        raise ValueError("labels_file/heldout_labels_file go with inputs_file/heldout_file")
    if bool(c.labels_file) != bool(c.heldout_labels_file):
        raise ValueError("give both labels_file and heldout_labels_file, or neither (the target gives the labels)")
    if c.inputs_file and v["samples"]:
        raise ValueError("samples = n draws samples; with inputs_file the samples are yours: drop samples")
    if c.inputs_file and "population" in (c.teacher_data, c.student_data):
        raise ValueError("with your own data the teacher and student train on it: teacher_data and student_data "
                         "must be \"samples\"")
    v["minority_teacher"] = _fraction_tuple(c.minority_teacher, "minority_teacher")
    v["minority_student"] = _fraction_tuple(c.minority_student, "minority_student")
    v["minority_test"] = _fraction_tuple([c.minority_test], "minority_test")[0]
    v["correlations"] = _float_tuple(c.correlations, "correlations")
    if len(v["correlations"]) != 2 or not all(-1 < r < 1 for r in v["correlations"]):
        raise ValueError(f"correlations must be [ρ_majority, ρ_minority], each strictly between -1 and 1; got "
                         f"{list(v['correlations'])}")
    v["spurious_scale"] = _float(c.spurious_scale, "spurious_scale", positive=True)
    if bool(v["minority_teacher"]) != bool(v["minority_student"]):
        raise ValueError("a shift study needs both minority_teacher and minority_student (lists of fractions)")
    if v["minority_teacher"]:
        if c.activation != "relu" or c.input_kind != "gaussian" or c.covariance != "identity":
            raise ValueError("shift studies build their own two-group Gaussian law with ReLU features: keep "
                             "activation = \"relu\", input_kind = \"gaussian\", covariance = \"identity\"")
        if c.target != "hermite" or v["target_degrees"] != (1,) or c.target_direction != "e1":
            raise ValueError("shift studies use the core target f* = x₁: keep target = \"hermite\", "
                             "target_degrees = [1], target_direction = \"e1\"")
        if v["samples"] or c.inputs_file or c.input_dim_exponent is not None or min(dims) < 2:
            raise ValueError("shift studies are population studies over input_dims >= 2: drop samples, "
                             "inputs_file and input_dim_exponent")
        if math.inf in v["student_widths"] + v["student_widths_per_dim"]:
            raise ValueError("an infinitely wide student needs isotropic inputs; shift studies have two "
                             "anisotropic groups: give finite student_widths")
    v["chain_widths"], v["chain_times"] = _chain_fields(c, v)
    if math.inf in v["student_widths"] + v["student_widths_per_dim"] and (v["samples"] > 0 or c.inputs_file) and c.student_data == "samples":
        raise ValueError("an infinitely wide student cannot be trained on finite samples: set student_data = "
                         "\"population\" or give finite student_widths")
    return v


def _label_time(value, name) -> str | float:
    if isinstance(value, str) and value.strip().lower() == "best":
        return "best"
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 0:
        raise ValueError(f"{name} holds \"best\", a time >= 0 or \"inf\"; got {value!r}")
    return float(value)


def _chain_fields(c: StudyConfig, v: dict) -> tuple:
    """(chain_widths, chain_times) checked against the rest of the study (ValueError saying what to change)."""
    widths = _widths(c.chain_widths, "chain_widths", stages=True) if c.chain_widths not in ((), []) else ()
    if not isinstance(c.chain_times, (list, tuple)) or not c.chain_times:
        raise ValueError(f"chain_times must be a non-empty list, e.g. [\"best\"]; got {c.chain_times!r}")
    times = tuple(_label_time(t, "chain_times") for t in c.chain_times)
    if not widths:
        if times != ("best",):
            raise ValueError("chain_times goes with chain_widths (the stages after the study's student)")
        return widths, times
    if len(times) not in (1, len(widths)):
        raise ValueError(f"chain_times needs one entry or {len(widths)} (one per stage but the last); got {len(times)}")
    if math.inf in v["student_widths"] + v["student_widths_per_dim"]:
        raise ValueError("the study's student is the chain's first stage and labels the next: give finite "
                         "student_widths (an infinitely wide stage may only be the last of chain_widths)")
    if v["samples"] or c.inputs_file or v["minority_teacher"] or c.ridge:
        raise ValueError("chains are population studies of plain students: drop samples, inputs_file, "
                         "minority_teacher/minority_student and ridge")
    if c.method == "infinite":
        raise ValueError("method = \"infinite\" is the route of an infinitely wide stage only: use \"auto\" (an "
                         "\"inf\" last stage takes it by itself)")
    return widths, times


def config_from_dict(data: dict, source: str = "config") -> StudyConfig:
    """A StudyConfig from a mapping of TOML keys; unknown keys are a ValueError listing the valid ones."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a table of keys")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(CONFIG_KEYS)}")
    if "teacher_widths" not in data:
        raise ValueError(f"{source}: teacher_widths is required (e.g. teacher_widths = [16, 32, 64])")
    try:
        return StudyConfig(**data)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def parse_config(text: str, quick: bool = False, source: str = "config") -> StudyConfig:
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


def load_config(path, quick: bool = False) -> StudyConfig:
    """Read a StudyConfig from a TOML file (see ``CONFIG_KEYS``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} cannot be read as text ({err})") from None
    return parse_config(text, quick, str(path))


def preset_text(name: str) -> str:
    """The shipped TOML of a preset."""
    _choice(name, PRESETS, "preset")
    return resources.files("w2sjax.studies").joinpath(f"presets/{name}.toml").read_text()


def preset(name: str, quick: bool = False) -> StudyConfig:
    """A preset (``PRESETS``); ``quick`` for the CPU-sized variant (its ``[quick]`` table)."""
    return parse_config(preset_text(name), quick, f"preset {name}")


def config_to_toml(config: StudyConfig) -> str:
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
