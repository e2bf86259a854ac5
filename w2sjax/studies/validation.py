"""The paper's statements checked against exact solutions, in one report (``w2sjax validate``).

Five statements of Medvedev, Lyu, Yu, Arora, Li, Srebro (2025), each a section of the report with its measured
numbers, a figure and a verdict computed from those numbers only:

1. early stopping is what helps: trained to convergence the student mimics its teacher, L_ST(∞) → L_TE as
   M_ST → ∞ (exact at M_ST = ∞), while L_ST* < L_TE;
2. ReLU features (Thm 3.1): L_ST*/L_TE → 0 and PGR → 1 as M_TE grows, L_ST* = Õ(L_TE^1.49);
3. linear features (Thm 3.2, spiked Σ, d = M_TE^{3/2}): L_ST* ∝ L_TE², L_ST*/L_TE² tending to a constant;
4. the quadratic limit (Thm 4.1): L_ST* ≥ c·L_TE² over every run measured;
5. bootstrapping (Cor. 2): a chain teacher → S_1 → S_2 → … does not beat the quadratic limit.

Everything is computed through the public engine (``w2s.weak_to_strong``, ``chains.chain``,
``features.infinite_features``) and fitted with ``runner.fit_power_law``. The work is split into *units* (one
engine call each), stored as ``DIR/units/<kind>_<hash>.json`` the moment they finish; each claim's numbers are
stored as ``DIR/claims/claim<N>.json`` when the claim completes. A rerun with the same sizes reuses both (the
hash covers every size the numbers depend on and ``VERSION``), so an interrupted run resumes where it stopped.

Verdicts: ``consistent``, ``not consistent`` (the numbers contradict the statement at these sizes) or
``not decidable at these sizes`` (the numbers cannot tell; the reason says why). The rules are in the
``verdict_claim*`` functions and in docs/validate.md; they read only the stored numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from w2sjax._io import atomic_write_json, atomic_write_text, from_json_float, json_safe
from w2sjax.studies.runner import check_output_folder, fit_power_law

VERSION = 1
"""Bump when a unit's computation changes, so stored units (and the claims built on them) are recomputed."""
NUMBERS_VERSION = 2
"""Bump when the numbers derived from the units change, so stored claims are rebuilt (from the stored units)."""

CLAIMS = (1, 2, 3, 4, 5)
CONSISTENT, INCONSISTENT, UNDECIDED = "consistent", "not consistent", "not decidable at these sizes"
VERDICTS = (CONSISTENT, INCONSISTENT, UNDECIDED)

THM31_EXPONENT = 1.49
"""Thm 3.1: L_ST* = Õ(L_TE^1.49) for ReLU features."""
EXACT_GAP = 1e-8
"""Claim 1: |L_ST(∞) − L_TE|/L_TE at M_ST = ∞ at or below this is 'exact' (rounding is ~1e-13)."""
LOOSE_GAP = 1e-6
"""Claim 1: above this the infinitely wide student does not mimic its teacher."""
PGR_NEAR_ONE = 0.9
"""Claim 2: PGR at the largest teacher at or above this counts as 'near 1'."""
SETTLED_STEP = 0.1
"""Claims 3–5: a relative change of the seed-mean L_ST*/L_TE² between the two largest teachers within ±10%
counts as settled."""
EXPONENT_MARGIN = 0.25
"""Claims 4–5: a tail exponent above 2 by more than max(3·s.e., this) is evidence against the quadratic limit
(the margin absorbs the pre-asymptotic curvature seen where L_ST*/L_TE² falls towards a constant)."""
SLOW_MARGIN = 0.1
"""Claim 2: a tail exponent below 1.49 by more than 3·s.e. + this contradicts L_ST* = Õ(L_TE^1.49)."""
MIMIC_FACTOR = 4
"""Claim 1: the trend of |L_ST(∞) − L_TE| in M_ST is read over the finite widths M_ST ≥ 4·M_TE of each teacher."""


# --------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValidationSizes:
    """Every size of a validation run.

    Attributes:
      name: "quick", "full" or "tiny" (tests), or any label.
      relu_dim: d of the ReLU problems (claims 1, 2), x ~ N(0, I_d), f* = x_1 (and x_1 + s·h_2(x_1)).
      relu_batches: teacher widths of claim 2, grouped into engine calls (each group one padded batch).
      relu_seeds: seeds of claims 1 and 2.
      hermite_scale: s of the second target of claim 2 (0: the linear target only).
      relu_times: (first, last, num) log-spaced stopping times of the ReLU problems.
      mimic_student_widths: finite M_ST of claim 1 (the teachers are claim 2's first group).
      linear_teacher_widths: M_TE of claim 3, each with d = round(M_TE^1.5), Σ = diag(1, d^(−2/3), …).
      linear_seeds: seeds of claim 3.
      linear_times: stopping times of the linear problems (claims 3, 5).
      chain_dim: d of the ReLU chains of claim 5.
      chain_teacher_widths: M_TE of the ReLU chains (one padded batch per seed).
      chain_stage_widths: widths of the chain's stages (ReLU).
      chain_seeds: seeds of claim 5.
      chain_linear_teacher_widths: M_TE of the linear chains of claim 5 (spiked Σ, d = M_TE^1.5); empty: none.
      chain_linear_stage_factor: each linear stage has this many times d features.
      chain_linear_stages: number of stages of the linear chains.
    """

    name: str
    relu_dim: int
    relu_batches: tuple
    relu_seeds: tuple
    hermite_scale: float
    relu_times: tuple
    mimic_student_widths: tuple
    linear_teacher_widths: tuple
    linear_seeds: tuple
    linear_times: tuple
    chain_dim: int
    chain_teacher_widths: tuple
    chain_stage_widths: tuple
    chain_seeds: tuple
    chain_linear_teacher_widths: tuple = ()
    chain_linear_stage_factor: int = 4
    chain_linear_stages: int = 3

    @property
    def relu_teacher_widths(self) -> tuple:
        return tuple(m for batch in self.relu_batches for m in batch)

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


QUICK = ValidationSizes(
    name="quick", relu_dim=8, relu_batches=((8, 16, 32, 64, 128, 256),), relu_seeds=(0, 1), hermite_scale=1.0,
    relu_times=(0.1, 1e7, 200), mimic_student_widths=(128, 256, 512),
    linear_teacher_widths=(16, 32, 64, 128), linear_seeds=(0, 1), linear_times=(0.1, 1e9, 200),
    chain_dim=8, chain_teacher_widths=(4, 8, 16, 32), chain_stage_widths=(256, 256, 256), chain_seeds=(0, 1),
)
FULL = ValidationSizes(
    name="full", relu_dim=16, relu_batches=((16, 32, 64, 128, 256), (512,), (1024,), (2048,)),
    relu_seeds=(0, 1, 2), hermite_scale=1.0, relu_times=(0.1, 1e7, 300),
    mimic_student_widths=(128, 256, 512, 1024, 2048),
    linear_teacher_widths=(16, 32, 64, 128, 256, 512, 1024), linear_seeds=(0, 1, 2), linear_times=(0.1, 1e10, 300),
    chain_dim=16, chain_teacher_widths=(8, 16, 32, 64, 128), chain_stage_widths=(1024, 1024, 1024),
    chain_seeds=(0, 1, 2), chain_linear_teacher_widths=(8, 16, 32, 64), chain_linear_stage_factor=4,
)
TINY = ValidationSizes(
    name="tiny", relu_dim=4, relu_batches=((4, 8, 16),), relu_seeds=(0,), hermite_scale=1.0,
    relu_times=(0.1, 1e6, 60), mimic_student_widths=(32, 64),
    linear_teacher_widths=(4, 9, 16), linear_seeds=(0,), linear_times=(0.1, 1e7, 60),
    chain_dim=4, chain_teacher_widths=(2, 4, 8), chain_stage_widths=(16, 16), chain_seeds=(0,),
)
SIZES = {"quick": QUICK, "full": FULL, "tiny": TINY}


def parse_claims(text) -> tuple:
    """'1,2,5' (or a sequence of ints) → (1, 2, 5); ValueError naming the bad entry."""
    if text is None:
        return CLAIMS
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    out = set()
    for item in items:
        try:
            k = int(item)
        except (TypeError, ValueError):
            k = None
        if k not in CLAIMS or isinstance(item, bool):
            raise ValueError(f"--claims takes numbers from 1 to 5 separated by commas (e.g. 1,2,5); got {item!r}")
        out.add(k)
    if not out:
        raise ValueError("--claims is empty; give numbers from 1 to 5 separated by commas (e.g. 1,2,5)")
    return tuple(sorted(out))


def _hash(spec) -> str:
    return hashlib.sha256(json.dumps(json_safe(spec), sort_keys=True).encode()).hexdigest()[:12]


def _grid(times) -> np.ndarray:
    first, last, num = times
    return np.geomspace(float(first), float(last), int(num))


# --------------------------------------------------------------------------------------------------
# Units: one engine call each
# --------------------------------------------------------------------------------------------------

RECORD = ("teacher_loss", "best_student_loss", "best_time", "student_loss_at_infinity", "ceiling_loss", "pgr")


def _records(result, widths, seed, **extra) -> list:
    import jax

    result = jax.device_get(result)
    out = []
    for k, m in enumerate(widths):
        r = result.select(k) if np.ndim(result.teacher_loss) else result
        rec = {"teacher_width": int(m), "seed": int(seed), **extra}
        rec.update({name: float(getattr(r, name)) for name in RECORD})
        rec["error_best_student_loss"] = float(r.error.best_student_loss)
        rec["route"] = result.route.method
        out.append(rec)
    return out


def _e1(d: int) -> np.ndarray:
    beta = np.zeros(d)
    beta[0] = 1.0
    return beta


def relu_target(d: int, hermite_scale: float):
    """f* = x_1, or x_1 + s·h_2(x_1) (h_2 = (x² − 1)/√2, unit variance)."""
    from w2sjax.targets import hermite_target, linear_target, sum_target

    linear = linear_target(_e1(d))
    return linear if hermite_scale == 0 else sum_target(linear, hermite_target(_e1(d), 2, hermite_scale))


def spiked_inputs(d: int):
    """x ~ N(0, diag(1, v, …, v)), v = d^(−2/3) (= 1/M_TE for d = M_TE^1.5)."""
    from w2sjax.inputs import gaussian_inputs

    variances = np.full(d, float(d) ** (-2.0 / 3.0))
    variances[0] = 1.0
    return gaussian_inputs(d, variances)


def linear_dim(teacher_width: int) -> int:
    return int(round(teacher_width ** 1.5))


def _teachers(seed, widths, d, activation):
    from w2sjax.features import random_features, teacher_weights

    return [random_features(teacher_weights(seed, m, d, activation), activation) for m in widths]


def compute_relu(spec: dict) -> list:
    """ReLU student (finite width or ∞) against a batch of ReLU teachers, x ~ N(0, I_d)."""
    from w2sjax.features import student_features
    from w2sjax.inputs import gaussian_inputs
    from w2sjax.w2s import weak_to_strong

    d, seed = spec["dim"], spec["seed"]
    width = math.inf if spec["student_width"] == "inf" else int(spec["student_width"])
    student = student_features(seed, width, d, "relu")
    result = weak_to_strong(student, _teachers(seed, spec["teacher_widths"], d, "relu"),
                            relu_target(d, spec["hermite_scale"]), gaussian_inputs(d), _grid(spec["times"]))
    return _records(result, spec["teacher_widths"], seed, student_width=spec["student_width"])


def compute_linear(spec: dict) -> list:
    """Infinitely wide linear student against one linear teacher, spiked Σ, d = round(M_TE^1.5), f* = x_1."""
    from w2sjax.features import infinite_features
    from w2sjax.targets import linear_target
    from w2sjax.w2s import weak_to_strong

    m, seed = spec["teacher_width"], spec["seed"]
    d = linear_dim(m)
    teacher = _teachers(seed, [m], d, "linear")[0]
    result = weak_to_strong(infinite_features(d, "linear"), teacher, linear_target(_e1(d)), spiked_inputs(d),
                            _grid(spec["times"]))
    return _records(result, [m], seed, dim=d, student_width="inf")


def compute_chain(spec: dict) -> list:
    """A chain teacher → S_1 → … → S_K (stage times: each stage's own t*), one record per (stage, teacher)."""
    import jax

    from w2sjax.chains import chain, chain_stages
    from w2sjax.inputs import gaussian_inputs
    from w2sjax.targets import linear_target

    seed, activation = spec["seed"], spec["activation"]
    if activation == "relu":
        d = spec["dim"]
        inputs = gaussian_inputs(d)
    else:
        d = linear_dim(spec["teacher_widths"][0])
        inputs = spiked_inputs(d)
    stages = chain_stages(seed, spec["stage_widths"], d, activation)
    result = jax.device_get(chain(stages, _teachers(seed, spec["teacher_widths"], d, activation),
                                  linear_target(_e1(d)), inputs, _grid(spec["times"])))
    out = []
    for k, (stage, m_k) in enumerate(zip(result, spec["stage_widths"]), start=1):
        out += _records(stage, spec["teacher_widths"], seed, stage=k, stage_width=int(m_k), dim=d)
    return out


COMPUTE: dict[str, Callable[[dict], list]] = {"relu": compute_relu, "linear": compute_linear, "chain": compute_chain}
"""Unit kind → computation (spec → records). Tests may replace entries."""


class Units:
    """Stored units under ``folder/units`` (or in memory only with folder None); progress lines to ``say``."""

    def __init__(self, folder: Path | None, say: Callable[[str], None]):
        self.folder = None if folder is None else Path(folder) / "units"
        self.say = say
        self.computed = 0
        self.reused = 0
        self.seconds = 0.0

    def get(self, kind: str, spec: dict, label: str) -> list:
        spec = json_safe({**spec, "kind": kind, "version": VERSION})
        key = f"{kind}_{_hash(spec)}"
        path = None if self.folder is None else self.folder / f"{key}.json"
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("spec") == spec and isinstance(data.get("records"), list):
                    self.reused += 1
                    return [_floats(r) for r in data["records"]]
            except (OSError, ValueError):
                pass  # a damaged file is recomputed
        self.say(f"  {label} ...")
        clock = time.perf_counter()
        records = COMPUTE[kind](spec)
        seconds = time.perf_counter() - clock
        self.say(f"  {label}: {seconds:.1f} s")
        self.computed += 1
        self.seconds += seconds
        if path is not None:
            atomic_write_json(path, {"spec": spec, "records": records, "seconds": seconds})
        return [_floats(json_safe(r)) for r in records]


def _floats(record: dict) -> dict:
    return {k: (from_json_float(v) if k in RECORD or k == "error_best_student_loss" else v) for k, v in record.items()}


# --------------------------------------------------------------------------------------------------
# Fits and trends
# --------------------------------------------------------------------------------------------------


def _fit(x, y, seeds) -> dict | None:
    try:
        f = fit_power_law(x, y, seeds)
    except ValueError:
        return None
    return {"exponent": f.exponent, "stderr": f.exponent_stderr, "prefactor": f.prefactor, "points": f.num_points}


def series_summary(rows: Sequence[dict], x_key="x", y_key="y") -> dict:
    """Per teacher width (ascending): seed geometric means of x = L_TE and y = L_ST* and the mean of y/x² over
    seeds; the power-law fit of y on x over the whole range and over its upper part (the last
    max(3, ⌈n/2⌉) widths: the tail exponent), local slopes between consecutive widths, and the relative steps
    of mean y/x²."""
    widths = sorted({r["teacher_width"] for r in rows})
    per = []
    for m in widths:
        sel = [r for r in rows if r["teacher_width"] == m]
        x = np.array([r[x_key] for r in sel])
        y = np.array([r[y_key] for r in sel])
        with np.errstate(divide="ignore", invalid="ignore"):
            q = y / x ** 2
            r1 = y / x
        per.append({
            "teacher_width": m, "seeds": len(sel),
            "x": float(np.exp(np.mean(np.log(x)))) if np.all(x > 0) else math.nan,
            "y": float(np.exp(np.mean(np.log(y)))) if np.all(y > 0) else math.nan,
            "ratio": float(np.mean(r1)), "quadratic_ratio": float(np.mean(q)),
            "quadratic_ratio_se": float(np.std(q, ddof=1) / math.sqrt(q.size)) if q.size > 1 else math.nan,
        })
    seeds = [r["seed"] for r in rows]
    xs, ys = [r[x_key] for r in rows], [r[y_key] for r in rows]
    whole = _fit(xs, ys, seeds)
    tail_widths = set(widths[-max(3, math.ceil(len(widths) / 2)):]) if len(widths) >= 3 else set()
    tail_rows = [r for r in rows if r["teacher_width"] in tail_widths]
    tail = _fit([r[x_key] for r in tail_rows], [r[y_key] for r in tail_rows], [r["seed"] for r in tail_rows]) \
        if tail_rows else None
    local = []
    for a, b in zip(per, per[1:]):
        dx = math.log(b["x"]) - math.log(a["x"]) if a["x"] > 0 and b["x"] > 0 else math.nan
        dy = math.log(b["y"]) - math.log(a["y"]) if a["y"] > 0 and b["y"] > 0 else math.nan
        local.append({"from": a["teacher_width"], "to": b["teacher_width"],
                      "slope": dy / dx if dx and math.isfinite(dx) and dx != 0 else math.nan})
    steps = [b["quadratic_ratio"] / a["quadratic_ratio"] - 1 for a, b in zip(per, per[1:])]
    return json_safe({"widths": widths, "per_width": per, "fit": whole, "tail_fit": tail,
                      "tail_widths": sorted(tail_widths), "local_slopes": local, "quadratic_steps": steps,
                      "min_quadratic_ratio": min((float(y / x ** 2) for x, y in zip(xs, ys) if x > 0), default=None)})


def _num(value) -> float:
    return math.nan if value is None else float(value)


def quadratic_evidence(series: dict) -> tuple[str, str]:
    """How a series' numbers bear on L_ST* ≥ c·L_TE², with the reason. With k ± se the tail exponent, s the last
    local slope and δ the last step of the seed-mean L_ST*/L_TE² (falling: δ < −10%):
    INCONSISTENT when falling, k − 2 > max(3·se, EXPONENT_MARGIN) and s − 2 > EXPONENT_MARGIN (the ratio still
    falls at the largest teachers with no sign of the local exponent coming back to 2);
    UNDECIDED when falling and k − 2 > 3·se otherwise (larger teachers are needed to see it settle or not);
    CONSISTENT otherwise (also with too few widths to fit: nothing against the limit)."""
    tail = series.get("tail_fit")
    steps = series.get("quadratic_steps") or []
    if not tail or not steps:
        return CONSISTENT, "too few teacher widths"
    k, se = _num(tail["exponent"]), _num(tail["stderr"])
    se = 0.0 if math.isnan(se) else se
    last = _num(steps[-1])
    slopes = series.get("local_slopes") or []
    local = _num(slopes[-1]["slope"]) if slopes else math.nan
    why = (f"tail exponent {k:.3f} ± {se:.3f}, last local slope {local:.3f}, last step of L_ST*/L_TE² "
           f"{last:+.1%}")
    falling = last < -SETTLED_STEP
    if falling and k - 2 > max(3 * se, EXPONENT_MARGIN) and not local - 2 <= EXPONENT_MARGIN:
        return INCONSISTENT, why
    if falling and k - 2 > 3 * se:
        return UNDECIDED, why
    return CONSISTENT, why


# --------------------------------------------------------------------------------------------------
# The claims: numbers
# --------------------------------------------------------------------------------------------------

STATEMENTS = {
    1: "Early stopping is what helps. Trained to convergence, the student mimics its teacher: L_ST(∞) → L_TE as "
       "M_ST → ∞ (exactly L_TE at M_ST = ∞), while the early-stopped student is better than its teacher, "
       "L_ST* < L_TE.",
    2: "ReLU random features (Thm 3.1): for a linear target (and a linear plus even-polynomial one), "
       "L_ST*/L_TE → 0 and PGR → 1 as M_TE grows, with L_ST* = Õ(L_TE^1.49).",
    3: "Linear random features (Thm 3.2), spiked diagonal covariance, d = M_TE^{3/2}: L_ST* ∝ L_TE², i.e. "
       "L_ST*/L_TE² tends to a constant as M_TE grows (the paper reports about 1).",
    4: "The quadratic limit (Thm 4.1): weak-to-strong gain is at most quadratic, L_ST* ≥ c·L_TE² for a constant "
       "c > 0.",
    5: "Bootstrapping (Cor. 2): a chain teacher → student_1 → student_2 → …, each stage trained on the previous "
       "stage's early-stopped function, does not beat the quadratic limit: L_k* ≥ c·L_TE² at every stage k.",
}
TITLES = {1: "Early stopping is what helps", 2: "ReLU features (Thm 3.1)", 3: "Linear features (Thm 3.2)",
          4: "The quadratic limit (Thm 4.1)", 5: "Bootstrapping: chains of students (Cor. 2)"}
TARGET_NAMES = {"linear": "f* = x_1", "hermite": "f* = x_1 + {s:g}·h_2(x_1)"}


def _targets(sizes: ValidationSizes) -> list:
    return [("linear", 0.0)] + ([("hermite", sizes.hermite_scale)] if sizes.hermite_scale else [])


def _relu_spec(sizes, seed, widths, student_width, scale) -> dict:
    return {"dim": sizes.relu_dim, "seed": seed, "teacher_widths": list(widths), "student_width": student_width,
            "hermite_scale": scale, "times": list(sizes.relu_times)}


def numbers_claim2(sizes: ValidationSizes, units: Units) -> dict:
    targets = {}
    for name, scale in _targets(sizes):
        rows = []
        for seed in sizes.relu_seeds:
            for batch in sizes.relu_batches:
                label = (f"claim 2: ReLU d={sizes.relu_dim}, {TARGET_NAMES[name].format(s=scale)}, M_ST=∞, "
                         f"seed {seed}, M_TE {','.join(map(str, batch))}")
                rows += units.get("relu", _relu_spec(sizes, seed, batch, "inf", scale), label)
        for r in rows:  # excess over the ceiling (0 for the linear target): the part early stopping can remove
            r["x"] = r["teacher_loss"] - r["ceiling_loss"]
            r["y"] = r["best_student_loss"] - r["ceiling_loss"]
        series = series_summary(rows)
        for entry in series["per_width"]:
            sel = [r for r in rows if r["teacher_width"] == entry["teacher_width"]]
            entry["pgr"] = float(np.mean([r["pgr"] for r in sel]))
            entry["teacher_loss"] = float(np.mean([r["teacher_loss"] for r in sel]))
            entry["best_student_loss"] = float(np.mean([r["best_student_loss"] for r in sel]))
            entry["ceiling_loss"] = float(np.mean([r["ceiling_loss"] for r in sel]))
        targets[name] = {"target": TARGET_NAMES[name].format(s=scale), "hermite_scale": scale, "series": series,
                         "runs": rows}
    return {"dim": sizes.relu_dim, "seeds": list(sizes.relu_seeds), "student_width": "inf",
            "teacher_widths": list(sizes.relu_teacher_widths), "targets": targets}


def numbers_claim1(sizes: ValidationSizes, units: Units) -> dict:
    batch = sizes.relu_batches[0]
    rows = []
    for seed in sizes.relu_seeds:
        # M_ST = ∞ is claim 2's first unit (the same spec: stored once, used by both)
        rows += units.get("relu", _relu_spec(sizes, seed, batch, "inf", 0.0),
                          f"claim 1: ReLU d={sizes.relu_dim}, f* = x_1, M_ST=∞, seed {seed}")
        for m in sizes.mimic_student_widths:
            rows += units.get("relu", _relu_spec(sizes, seed, batch, int(m), 0.0),
                              f"claim 1: ReLU d={sizes.relu_dim}, f* = x_1, M_ST={m}, seed {seed}")
    for r in rows:
        r["gap"] = abs(r["student_loss_at_infinity"] - r["teacher_loss"]) / r["teacher_loss"]
        r["ratio"] = r["best_student_loss"] / r["teacher_loss"]
    widths = [*map(int, sizes.mimic_student_widths), "inf"]
    per_student = []
    for m in widths:  # over the teachers with M_ST >= 4·M_TE (every teacher at M_ST = ∞)
        sel = [r for r in rows if r["student_width"] == m and (m == "inf" or m >= MIMIC_FACTOR * r["teacher_width"])]
        if not sel:
            continue
        per_student.append({"student_width": m, "teachers": sorted({r["teacher_width"] for r in sel}), "mean_gap": float(np.mean([r["gap"] for r in sel])),
                            "max_gap": float(np.max([r["gap"] for r in sel])),
                            "max_ratio": float(np.max([r["ratio"] for r in sel])),
                            "mean_ratio": float(np.mean([r["ratio"] for r in sel]))})
    per_teacher = []
    finite = [m for m in widths if m != "inf"]
    for t in batch:
        gaps = [float(np.mean([r["gap"] for r in rows if r["student_width"] == m and r["teacher_width"] == t]))
                for m in finite]
        wide = [(m, g) for m, g in zip(finite, gaps) if m >= MIMIC_FACTOR * t]  # the regime M_ST >> M_TE
        slope = (float(np.polyfit(np.log([m for m, _ in wide]), np.log([g for _, g in wide]), 1)[0])
                 if len(wide) >= 2 and all(g > 0 for _, g in wide) else None)
        per_teacher.append({"teacher_width": t, "gaps": gaps, "slope": slope,
                            "slope_widths": [m for m, _ in wide] if slope is not None else []})
    return json_safe({"dim": sizes.relu_dim, "seeds": list(sizes.relu_seeds), "teacher_widths": list(batch),
                      "student_widths": widths, "per_student": per_student, "per_teacher": per_teacher,
                      "runs": rows})


def numbers_claim3(sizes: ValidationSizes, units: Units) -> dict:
    rows = []
    for m in sizes.linear_teacher_widths:
        for seed in sizes.linear_seeds:
            rows += units.get("linear", {"teacher_width": int(m), "seed": seed, "times": list(sizes.linear_times)},
                              f"claim 3: linear, M_TE={m}, d={linear_dim(m)}, M_ST=∞, seed {seed}")
    for r in rows:
        r["x"], r["y"] = r["teacher_loss"], r["best_student_loss"]
    series = series_summary(rows)
    for entry in series["per_width"]:
        entry["dim"] = linear_dim(entry["teacher_width"])
    return {"seeds": list(sizes.linear_seeds), "teacher_widths": list(sizes.linear_teacher_widths),
            "series": series, "runs": rows}


def numbers_claim5(sizes: ValidationSizes, units: Units) -> dict:
    settings = []
    relu_rows = []
    for seed in sizes.chain_seeds:
        spec = {"activation": "relu", "dim": sizes.chain_dim, "seed": seed,
                "teacher_widths": list(sizes.chain_teacher_widths), "stage_widths": list(sizes.chain_stage_widths),
                "times": list(sizes.relu_times)}
        relu_rows += units.get("chain", spec, f"claim 5: ReLU chain d={sizes.chain_dim}, stages "
                               f"{'→'.join(map(str, sizes.chain_stage_widths))}, seed {seed}")
    settings.append({"name": f"ReLU, d = {sizes.chain_dim}, x ~ N(0, I), f* = x_1, stages "
                             f"{' → '.join(map(str, sizes.chain_stage_widths))}", "rows": relu_rows,
                     "stages": len(sizes.chain_stage_widths)})
    if sizes.chain_linear_teacher_widths:
        rows = []
        for m in sizes.chain_linear_teacher_widths:
            d = linear_dim(m)
            for seed in sizes.chain_seeds:
                spec = {"activation": "linear", "seed": seed, "teacher_widths": [int(m)],
                        "stage_widths": [sizes.chain_linear_stage_factor * d] * sizes.chain_linear_stages,
                        "times": list(sizes.linear_times)}
                rows += units.get("chain", spec, f"claim 5: linear chain M_TE={m}, d={d}, stages "
                                  f"{sizes.chain_linear_stages}×{sizes.chain_linear_stage_factor}d, seed {seed}")
        settings.append({"name": f"linear, spiked Σ, d = M_TE^1.5, f* = x_1, {sizes.chain_linear_stages} stages "
                                 f"of {sizes.chain_linear_stage_factor}·d", "rows": rows,
                         "stages": sizes.chain_linear_stages})
    out = []
    for s in settings:
        for r in s["rows"]:
            r["x"], r["y"] = r["teacher_loss"], r["best_student_loss"]
        stages = []
        for k in range(1, s["stages"] + 1):
            rows = [r for r in s["rows"] if r["stage"] == k]
            first = {(r["teacher_width"], r["seed"]): r["best_student_loss"] for r in s["rows"] if r["stage"] == 1}
            gain = [r["best_student_loss"] / first[(r["teacher_width"], r["seed"])] for r in rows]
            stages.append({"stage": k, "series": series_summary(rows),
                           "vs_stage1": {"min": float(np.min(gain)), "max": float(np.max(gain))}})
        out.append({"name": s["name"], "stages": stages, "runs": s["rows"]})
    return json_safe({"seeds": list(sizes.chain_seeds), "settings": out})


def numbers_claim4(parts: dict) -> dict:
    """Every run of claims 1, 2, 3, 5: min L_ST*/L_TE², and every series' fitted exponents."""
    runs, series = [], []
    c1, c2, c3, c5 = (parts.get(k) for k in (1, 2, 3, 5))
    if c1:
        runs += [("claim 1: ReLU M_ST=" + str(r["student_width"]), r["teacher_loss"], r["best_student_loss"])
                 for r in c1["runs"]]
    if c2:
        for name, t in c2["targets"].items():
            tag = f"claim 2: ReLU M_ST=∞, {t['target']}" + (" (excess over L_ceil)" if name != "linear" else "")
            runs += [(tag, r["x"], r["y"]) for r in t["runs"]]
            series.append({"name": tag, **_series_entry(t["series"])})
    if c3:
        tag = "claim 3: linear M_ST=∞, spiked Σ"
        runs += [(tag, r["x"], r["y"]) for r in c3["runs"]]
        series.append({"name": tag, **_series_entry(c3["series"])})
    if c5:
        for s in c5["settings"]:
            for st in s["stages"]:
                tag = f"claim 5: chain {s['name'].split(',')[0]}, stage {st['stage']}"
                runs += [(tag, r["x"], r["y"]) for r in s["runs"] if r["stage"] == st["stage"]]
                series.append({"name": tag, **_series_entry(st["series"])})
    ratios = [(tag, y / x ** 2, x) for tag, x, y in runs if x > 0]
    smallest = min(ratios, key=lambda t: t[1]) if ratios else None
    by_tag = {}
    for tag, q, _ in ratios:
        by_tag[tag] = min(q, by_tag.get(tag, math.inf))
    return json_safe({
        "runs": len(ratios),
        "min_quadratic_ratio": None if smallest is None else smallest[1],
        "min_at": None if smallest is None else {"series": smallest[0], "teacher_loss": smallest[2]},
        "min_by_series": by_tag, "series": series,
        "points": [{"series": tag, "teacher_loss": x, "best_student_loss": y} for tag, x, y in runs],
    })


def _series_entry(s: dict) -> dict:
    return {"fit": s["fit"], "tail_fit": s["tail_fit"], "tail_widths": s["tail_widths"],
            "quadratic_steps": s["quadratic_steps"], "widths": s["widths"], "local_slopes": s["local_slopes"],
            "min_quadratic_ratio": s["min_quadratic_ratio"]}


# --------------------------------------------------------------------------------------------------
# The claims: verdicts (from the numbers only)
# --------------------------------------------------------------------------------------------------


def verdict_claim1(n: dict) -> tuple[str, str]:
    inf = next(p for p in n["per_student"] if p["student_width"] == "inf")
    gap, ratio = _num(inf["max_gap"]), _num(inf["max_ratio"])
    if not gap <= LOOSE_GAP:
        return INCONSISTENT, f"at M_ST = ∞, |L_ST(∞) − L_TE|/L_TE reaches {gap:.2e} (> {LOOSE_GAP:g}): the " \
                             "converged student does not mimic its teacher"
    if not ratio < 1:
        return INCONSISTENT, f"at M_ST = ∞ the early-stopped student is not better than its teacher " \
                             f"(max L_ST*/L_TE = {ratio:.4f})"
    growing = [p for p in n["per_teacher"] if p["slope"] is not None and _num(p["slope"]) >= 0]
    if growing:
        t = growing[0]
        return INCONSISTENT, f"for M_TE = {t['teacher_width']} the gap |L_ST(∞) − L_TE|/L_TE does not shrink as " \
                             f"M_ST grows (fitted slope {_num(t['slope']):+.2f} in log M_ST)"
    slopes = [_num(p["slope"]) for p in n["per_teacher"] if p["slope"] is not None]
    if gap > EXACT_GAP:
        return UNDECIDED, f"at M_ST = ∞ the gap is {gap:.2e}: above rounding ({EXACT_GAP:g}) but not large"
    if not slopes:
        return UNDECIDED, (f"no teacher has two finite student widths M_ST ≥ {MIMIC_FACTOR}·M_TE: the approach "
                           "M_ST → ∞ is not measured")
    return CONSISTENT, (f"at M_ST = ∞, |L_ST(∞) − L_TE|/L_TE ≤ {gap:.1e} (rounding) and L_ST*/L_TE ≤ {ratio:.3f} < 1; "
                        f"at finite M_ST ≥ {MIMIC_FACTOR}·M_TE the gap shrinks with M_ST for every teacher measured (slopes "
                        f"{min(slopes):+.2f} … {max(slopes):+.2f} in log M_ST)")


def verdict_claim2(n: dict) -> tuple[str, str]:
    verdicts, reasons = [], []
    for name, t in n["targets"].items():
        s = t["series"]
        per = s["per_width"]
        label = t["target"]
        if len(per) < 3 or not s["tail_fit"]:
            verdicts.append(UNDECIDED)
            reasons.append(f"{label}: fewer than three teacher widths")
            continue
        first, last = _num(per[0]["ratio"]), _num(per[-1]["ratio"])
        pgr = _num(per[-1]["pgr"])
        k, se = _num(s["tail_fit"]["exponent"]), _num(s["tail_fit"]["stderr"])
        se = 0.0 if math.isnan(se) else se
        whole = _num(s["fit"]["exponent"]) if s["fit"] else math.nan
        what = "(L_ST* − L_ceil)/(L_TE − L_ceil)" if name != "linear" else "L_ST*/L_TE"
        if not last < first:
            verdicts.append(INCONSISTENT)
            reasons.append(f"{label}: {what} does not fall as M_TE grows ({first:.3g} → {last:.3g})")
        elif k + 3 * se + SLOW_MARGIN < THM31_EXPONENT:
            verdicts.append(INCONSISTENT)
            reasons.append(f"{label}: tail exponent {k:.3f} ± {se:.3f} is clearly below {THM31_EXPONENT}")
        elif pgr < PGR_NEAR_ONE:
            verdicts.append(UNDECIDED)
            reasons.append(f"{label}: {what} falls ({first:.3g} → {last:.3g}) but PGR only reaches {pgr:.3f} "
                           f"(< {PGR_NEAR_ONE}) at M_TE = {per[-1]['teacher_width']}: larger teachers are needed")
        elif whole < THM31_EXPONENT or k + 3 * se < THM31_EXPONENT:
            verdicts.append(UNDECIDED)
            reasons.append(f"{label}: PGR → {pgr:.3f} but the exponent (whole {whole:.3f}, tail {k:.3f} ± {se:.3f}) "
                           f"is not clearly ≥ {THM31_EXPONENT}")
        else:
            verdicts.append(CONSISTENT)
            reasons.append(f"{label}: {what} {first:.3g} → {last:.3g}, PGR → {pgr:.4f}; exponent {whole:.3f} over "
                           f"the range, {k:.3f} ± {se:.3f} at the large end (Thm 3.1 needs ≥ {THM31_EXPONENT})")
    return _combine(verdicts), "; ".join(reasons)


def _combine(verdicts) -> str:
    if INCONSISTENT in verdicts:
        return INCONSISTENT
    if UNDECIDED in verdicts or not verdicts:
        return UNDECIDED
    return CONSISTENT


def verdict_claim3(n: dict) -> tuple[str, str]:
    s = n["series"]
    per, steps = s["per_width"], [_num(v) for v in s["quadratic_steps"]]
    if len(per) < 3:
        return UNDECIDED, "fewer than three teacher widths: a trend of L_ST*/L_TE² cannot be read"
    q_first, q_last = _num(per[0]["quadratic_ratio"]), _num(per[-1]["quadratic_ratio"])
    k = _num(s["tail_fit"]["exponent"]) if s["tail_fit"] else math.nan
    se = _num(s["tail_fit"]["stderr"]) if s["tail_fit"] else math.nan
    first, last = steps[0], steps[-1]
    text = (f"L_ST*/L_TE² = {q_first:.3f} at M_TE = {per[0]['teacher_width']} → {q_last:.3f} at "
            f"M_TE = {per[-1]['teacher_width']} (paper: about 1); last step {last:+.1%}, first {first:+.1%}; tail "
            f"exponent {k:.3f} ± {se:.3f}")
    settling = abs(last) <= SETTLED_STEP and abs(last) <= abs(first)
    if settling:
        return CONSISTENT, text + ": the ratio settles"
    if abs(last) > SETTLED_STEP and abs(last) >= abs(first):
        return INCONSISTENT, text + ": the ratio keeps changing at a steady rate (not ∝ L_TE²)"
    return UNDECIDED, text + ": the ratio has not settled within 10% per step at these sizes"


def verdict_claim4(n: dict) -> tuple[str, str]:
    q = n["min_quadratic_ratio"]
    usable = [s for s in n["series"] if s["tail_fit"] and len(s["widths"]) >= 3]
    if q is None or not usable:
        return UNDECIDED, "no series with three or more teacher widths"
    against, open_ = [], []
    for s in usable:
        status, why = quadratic_evidence(s)
        if status == INCONSISTENT:
            against.append(f"{s['name']}: {why}")
        elif status == UNDECIDED:
            open_.append(f"{s['name']}: {why}")
    top = max(usable, key=lambda s: _num(s["tail_fit"]["exponent"]))
    k, se = _num(top["tail_fit"]["exponent"]), _num(top["tail_fit"]["stderr"])
    head = f"min L_ST*/L_TE² = {q:.3g} over {n['runs']} runs; largest tail exponent {k:.3f} ± {se:.3f} ({top['name']})"
    if q <= 0:
        return INCONSISTENT, f"min L_ST*/L_TE² = {q:.3g} ≤ 0"
    if against:
        return INCONSISTENT, "L_ST*/L_TE² falls towards 0 without settling — " + "; ".join(against)
    if open_:
        return UNDECIDED, (head + "; still falling by more than 10% per step with an exponent significantly above 2 "
                           "— larger teachers are needed to see it settle: " + "; ".join(open_))
    return CONSISTENT, head + ": no series above 2 by more than 3 s.e. while still falling"


def verdict_claim5(n: dict) -> tuple[str, str]:
    against, parts, undecided = [], [], False
    for s in n["settings"]:
        for st in s["stages"]:
            series = st["series"]
            if len(series["widths"]) < 3 or not series["tail_fit"]:
                undecided = True
                continue
            status, why = quadratic_evidence(series)
            if status == INCONSISTENT:
                against.append(f"{s['name']}, stage {st['stage']}: {why}")
            elif status == UNDECIDED:
                undecided = True
                parts.append(f"{s['name'].split(',')[0]} stage {st['stage']} still falling: {why}")
        last = s["stages"][-1]
        parts.append(f"{s['name'].split(',')[0]}: stage {last['stage']} min L*/L_TE² = "
                     f"{_num(last['series']['min_quadratic_ratio']):.3g}, tail exponent "
                     f"{_num((last['series']['tail_fit'] or {}).get('exponent')):.3f}, L_K*/L_1* in "
                     f"[{_num(last['vs_stage1']['min']):.3f}, {_num(last['vs_stage1']['max']):.3f}]")
    if against:
        return INCONSISTENT, "a stage falls below the quadratic limit — " + "; ".join(against)
    if undecided:
        return UNDECIDED, ("fewer than three teacher widths in a chain setting, or a stage still falling with an "
                           "exponent significantly above 2; " + "; ".join(parts))
    return CONSISTENT, "no stage has a tail exponent significantly above 2 while still falling; " + "; ".join(parts)


VERDICT_RULES = {1: verdict_claim1, 2: verdict_claim2, 3: verdict_claim3, 4: verdict_claim4, 5: verdict_claim5}


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _figure(width, height, cols=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))  # fixed margins: a constrained layout costs seconds per figure
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, cols)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.15 / width, bottom=0.15, top=0.9, wspace=0.32)
    return fig, (np.atleast_1d(axes))


def figure_claim1(n):
    fig, (a, b) = _figure(9, 3.6, 2)
    finite = [m for m in n["student_widths"] if m != "inf"]
    pos = finite + [max(finite) * 4] if finite else [1]
    colors = _colors(len(n["teacher_widths"]))
    for t, c in zip(n["teacher_widths"], colors):
        gaps = [np.mean([r["gap"] for r in n["runs"] if r["teacher_width"] == t and r["student_width"] == m])
                for m in n["student_widths"]]
        ratios = [np.mean([r["ratio"] for r in n["runs"] if r["teacher_width"] == t and r["student_width"] == m])
                  for m in n["student_widths"]]
        a.plot(pos[:-1], gaps[:-1], "o-", color=c, label=f"M_TE={t}")
        a.plot(pos[-1:], np.maximum(gaps[-1:], 1e-16), "*", color=c, ms=10)  # exact zero drawn at 1e-16
        b.plot(pos, ratios, "o-", color=c, label=f"M_TE={t}")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xticks(pos, [str(m) for m in finite] + ["∞"])
        ax.minorticks_off()
        ax.set_xlabel("M_ST")
    a.set_yscale("log")
    a.set_ylabel("|L_ST(∞) − L_TE| / L_TE")
    a.set_title("trained to convergence: mimics the teacher")
    b.axhline(1, color="k", lw=0.8, ls="--")
    b.set_ylabel("L_ST* / L_TE")
    b.set_title("early-stopped: better than the teacher")
    a.legend(fontsize=7)
    return fig


def _colors(n):
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.85, max(n, 1))]


def figure_claim2(n):
    fig, (a, b, c) = _figure(13, 3.8, 3)
    for (name, t), color in zip(n["targets"].items(), ("C0", "C3")):
        s = t["series"]
        per = s["per_width"]
        x = np.array([r["x"] for r in t["runs"]])
        y = np.array([r["y"] for r in t["runs"]])
        lab = t["target"] + (" (excess over L_ceil)" if name != "linear" else "")
        fit = s["fit"]
        a.plot(x, y, "o", color=color, ms=4, alpha=0.6,
               label=lab + (f": k = {fit['exponent']:.2f}" if fit else ""))
        xm = np.array([p["x"] for p in per])
        ym = np.array([p["y"] for p in per])
        for k, ls in ((THM31_EXPONENT, ":"), (2.0, "--")):
            a.plot(xm, ym[0] * (xm / xm[0]) ** k, ls, color=color, lw=0.8)
        mids = [math.sqrt(l["from"] * l["to"]) for l in s["local_slopes"]]
        b.plot(mids, [_num(l["slope"]) for l in s["local_slopes"]], "o-", color=color, label=lab)
        c.plot([p["teacher_width"] for p in per], [p["pgr"] for p in per], "o-", color=color, label=lab)
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("L_TE (− L_ceil)")
    a.set_ylabel("L_ST* (− L_ceil)")
    a.set_title("L_ST* against L_TE (dotted: slope 1.49, dashed: 2)")
    a.legend(fontsize=7)
    for k, ls in ((THM31_EXPONENT, ":"), (2.0, "--")):
        b.axhline(k, color="k", lw=0.8, ls=ls)
    b.set_xscale("log")
    b.set_xlabel("M_TE (geometric middle of consecutive widths)")
    b.set_ylabel("local slope d log L_ST* / d log L_TE")
    b.set_title("local exponent along the range")
    c.axhline(1, color="k", lw=0.8, ls="--")
    c.set_xscale("log")
    c.set_xlabel("M_TE")
    c.set_ylabel("PGR")
    c.set_title("PGR (seed mean)")
    return fig


def figure_claim3(n):
    fig, (a, b) = _figure(9, 3.6, 2)
    s = n["series"]
    per = s["per_width"]
    for seed in n["seeds"]:
        rows = [r for r in n["runs"] if r["seed"] == seed]
        a.plot([r["x"] for r in rows], [r["y"] for r in rows], "o", ms=4, alpha=0.6)
    xm = np.array([p["x"] for p in per])
    a.plot(xm, [p["quadratic_ratio"] for p in per[-1:]] * xm ** 2, "k--", lw=0.8, label="c·L_TE² (c at largest M_TE)")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("L_TE")
    a.set_ylabel("L_ST*")
    a.set_title("linear features, M_ST = ∞")
    a.legend(fontsize=7)
    widths = [p["teacher_width"] for p in per]
    q = np.array([_num(p["quadratic_ratio"]) for p in per])
    se = np.array([_num(p["quadratic_ratio_se"]) for p in per])
    b.errorbar(widths, q, yerr=np.nan_to_num(se), fmt="o-")
    b.axhline(1, color="k", lw=0.8, ls="--")
    b.set_xscale("log")
    b.set_xlabel("M_TE (d = M_TE^1.5)")
    b.set_ylabel("L_ST* / L_TE²")
    b.set_title("tends to a constant (paper: ≈ 1)")
    return fig


def figure_claim4(n):
    fig, (a,) = _figure(6.5, 4.2, 1)
    tags = list(dict.fromkeys(p["series"] for p in n["points"]))
    for tag, color in zip(tags, _palette(len(tags))):
        pts = [p for p in n["points"] if p["series"] == tag and p["teacher_loss"] > 0]
        a.plot([p["teacher_loss"] for p in pts], [p["best_student_loss"] / p["teacher_loss"] ** 2 for p in pts],
               "o", ms=3.5, color=color, label=tag, alpha=0.75)
    if n["min_quadratic_ratio"] is not None:
        a.axhline(n["min_quadratic_ratio"], color="k", lw=0.8, ls="--", label="min over every run")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("L_TE (− L_ceil where marked)")
    a.set_ylabel("L_ST* / L_TE²")
    a.set_title("bounded below: no better than quadratic")
    a.legend(fontsize=6)
    return fig


def _palette(n):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def figure_claim5(n):
    fig, axes = _figure(4.6 * len(n["settings"]), 3.8, len(n["settings"]))
    for ax, s in zip(axes, n["settings"]):
        colors = _colors(len(s["stages"]))
        for st, color in zip(s["stages"], colors):
            per = st["series"]["per_width"]
            ax.plot([p["x"] for p in per], [p["quadratic_ratio"] for p in per], "o-", color=color,
                    label=f"stage {st['stage']}")
        ax.set_xscale("log")
        ax.set_xlabel("L_TE")
        ax.set_ylabel("L_k* / L_TE² (seed mean)")
        ax.set_title(s["name"], fontsize=8)
        ax.legend(fontsize=7)
    return fig


FIGURES = {1: figure_claim1, 2: figure_claim2, 3: figure_claim3, 4: figure_claim4, 5: figure_claim5}


# --------------------------------------------------------------------------------------------------
# Tables for the report
# --------------------------------------------------------------------------------------------------


def _g(v, digits=4) -> str:
    v = _num(v)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}g}"


def _fit_text(fit) -> str:
    if not fit:
        return "n/a"
    se = _num(fit["stderr"])
    return f"{fit['exponent']:.3f}" + ("" if math.isnan(se) else f" ± {se:.3f}")


def table_claim1(n) -> list[str]:
    lines = [f"Over the teachers with M_ST ≥ {MIMIC_FACTOR}·M_TE (every teacher at M_ST = ∞; all pairs are in the figure):",
             "", "| M_ST | teachers M_TE | mean \\|L_ST(∞) − L_TE\\|/L_TE | max | max L_ST*/L_TE | mean L_ST*/L_TE |",
             "|---|---|---|---|---|---|"]
    for p in n["per_student"]:
        m = "∞" if p["student_width"] == "inf" else p["student_width"]
        lines.append(f"| {m} | {', '.join(map(str, p['teachers']))} | {_g(p['mean_gap'], 3)} | {_g(p['max_gap'], 3)} | {_g(p['max_ratio'])} | "
                     f"{_g(p['mean_ratio'])} |")
    lines += ["", f"Fitted slope of the gap against M_ST (log–log, finite widths M_ST ≥ {MIMIC_FACTOR}·M_TE), per "
              "teacher: " + ", ".join(f"M_TE = {p['teacher_width']}: {_g(p['slope'], 3)}" for p in n["per_teacher"]
                                      if p["slope"] is not None) + "."]
    return lines


def table_claim2(n) -> list[str]:
    lines = []
    for name, t in n["targets"].items():
        s = t["series"]
        lines += [f"**{t['target']}** (d = {n['dim']}, M_ST = ∞, seeds {', '.join(map(str, n['seeds']))}; "
                  f"L_ceil = {_g(s['per_width'][0]['ceiling_loss'], 4)})", "",
                  "| M_TE | L_TE | L_ST* | (L_ST* − L_ceil)/(L_TE − L_ceil) | PGR | L_ST*/L_TE² (excess) |",
                  "|---|---|---|---|---|---|"]
        for p in s["per_width"]:
            lines.append(f"| {p['teacher_width']} | {_g(p['teacher_loss'])} | {_g(p['best_student_loss'])} | "
                         f"{_g(p['ratio'])} | {_g(p['pgr'])} | {_g(p['quadratic_ratio'])} |")
        local = ", ".join(f"{l['from']}→{l['to']}: {_g(l['slope'], 3)}" for l in s["local_slopes"])
        lines += ["", f"Fitted exponent (L_ST* − L_ceil ∝ (L_TE − L_ceil)^k): {_fit_text(s['fit'])} over the range, "
                  f"{_fit_text(s['tail_fit'])} over M_TE ∈ {{{', '.join(map(str, s['tail_widths']))}}} "
                  f"(references 1.49 and 2). Local slopes: {local}.", ""]
    return lines


def table_claim3(n) -> list[str]:
    s = n["series"]
    lines = ["| M_TE | d | L_TE | L_ST* | L_ST*/L_TE² (± s.e.) | step |", "|---|---|---|---|---|---|"]
    steps = [None] + s["quadratic_steps"]
    for p, st in zip(s["per_width"], steps):
        lines.append(f"| {p['teacher_width']} | {p['dim']} | {_g(p['x'])} | {_g(p['y'])} | "
                     f"{_g(p['quadratic_ratio'])} ± {_g(p['quadratic_ratio_se'], 2)} | "
                     f"{'' if st is None else f'{_num(st):+.1%}'} |")
    local = ", ".join(f"{l['from']}→{l['to']}: {_g(l['slope'], 3)}" for l in s["local_slopes"])
    lines += ["", f"Fitted exponent: {_fit_text(s['fit'])} over the range, {_fit_text(s['tail_fit'])} over "
              f"M_TE ∈ {{{', '.join(map(str, s['tail_widths']))}}}. Local slopes: {local}. "
              "(L_TE and L_ST* are geometric means over seeds; L_ST*/L_TE² is the mean of the per-seed ratios.)"]
    return lines


def table_claim4(n) -> list[str]:
    lines = [f"Minimum of L_ST*/L_TE² over every run ({n['runs']} runs): **{_g(n['min_quadratic_ratio'])}** "
             f"({(n['min_at'] or {}).get('series', 'n/a')}, at L_TE = {_g((n['min_at'] or {}).get('teacher_loss'))}).",
             "", "| series | min L*/L_TE² | exponent (range) | tail exponent | last local slope | "
             "last step of L*/L_TE² | reading |", "|---|---|---|---|---|---|---|"]
    for s in n["series"]:
        steps, local = s["quadratic_steps"], s.get("local_slopes") or []
        reading = quadratic_evidence(s)[0] if s["tail_fit"] else "too few widths"
        reading = {CONSISTENT: "no evidence against", INCONSISTENT: "against", UNDECIDED: "still falling"}.get(
            reading, reading)
        lines.append(f"| {s['name']} | {_g(s['min_quadratic_ratio'])} | {_fit_text(s['fit'])} | "
                     f"{_fit_text(s['tail_fit'])} | {_g(local[-1]['slope'], 3) if local else 'n/a'} | "
                     f"{'' if not steps else f'{_num(steps[-1]):+.1%}'} | {reading} |")
    usable = [s for s in n["series"] if s["tail_fit"]]
    if usable:
        top = max(usable, key=lambda s: _num(s["tail_fit"]["exponent"]))
        whole = max((s for s in n["series"] if s["fit"]), key=lambda s: _num(s["fit"]["exponent"]))
        lines += ["", f"Largest fitted exponent: {_fit_text(whole['fit'])} over the range ({whole['name']}); largest "
                  f"tail exponent {_fit_text(top['tail_fit'])} ({top['name']})."]
    return lines


def table_claim5(n) -> list[str]:
    lines = []
    for s in n["settings"]:
        lines += [f"**{s['name']}** (seeds {', '.join(map(str, n['seeds']))}; each stage labels the next at its own "
                  "t*)", "", "| M_TE | L_TE | " + " | ".join(f"L_{st['stage']}*/L_TE²" for st in s["stages"]) + " |",
                  "|---|---|" + "---|" * len(s["stages"])]
        per0 = s["stages"][0]["series"]["per_width"]
        for i, p in enumerate(per0):
            lines.append(f"| {p['teacher_width']} | {_g(p['x'])} | "
                         + " | ".join(_g(st["series"]["per_width"][i]["quadratic_ratio"]) for st in s["stages"]) + " |")
        lines += ["", "Per stage: " + "; ".join(
            f"stage {st['stage']}: exponent {_fit_text(st['series']['fit'])}, tail {_fit_text(st['series']['tail_fit'])}"
            f", min L*/L_TE² {_g(st['series']['min_quadratic_ratio'])}, L_k*/L_1* ∈ [{_g(st['vs_stage1']['min'])}, "
            f"{_g(st['vs_stage1']['max'])}]" for st in s["stages"]) + ".", ""]
    return lines


TABLES = {1: table_claim1, 2: table_claim2, 3: table_claim3, 4: table_claim4, 5: table_claim5}

HOW = {
    1: "ReLU features, x ~ N(0, I_d), f* = x_1; teachers fitted by least squares on the population; students of "
       "finite width (exact eigendecomposition) and M_ST = ∞ (closed form over spherical harmonics). The gap "
       "|L_ST(∞) − L_TE|/L_TE measures how far the converged student is from its teacher.",
    2: "ReLU features, x ~ N(0, I_d), M_ST = ∞ (closed form). With the Hermite term the student cannot reach f* "
       "even on true labels (L_ceil > 0 for Gaussian inputs: x_1² is not of the form |x|·g(x/|x|)); the losses are "
       "then taken in excess of L_ceil, so (L_ST* − L_ceil)/(L_TE − L_ceil) = 1 − PGR. Exponents are fitted per "
       "seed by least squares in log–log (runner.fit_power_law; ± s.e. over seeds).",
    3: "Linear features (entries N(0, 1/d)), x ~ N(0, diag(1, d^{-2/3}, …)), d = round(M_TE^1.5), f* = x_1, "
       "M_ST = ∞ (closed form per eigen-direction of Σ).",
    4: "Every run of claims 1, 2, 3 and 5 (the Hermite target of claim 2 in excess of its L_ceil). A series speaks "
       f"against the limit if the seed-mean L_ST*/L_TE² still falls by more than {SETTLED_STEP:.0%} per step at the "
       f"largest teachers while its tail exponent exceeds 2 by more than max(3 s.e., {EXPONENT_MARGIN}) and its last "
       f"local slope exceeds 2 by more than {EXPONENT_MARGIN}; still falling so with a tail exponent above 2 by more "
       "than 3 s.e. otherwise, it leaves the statement undecided at these sizes.",
    5: "chains.chain: stage 1 trains on the teacher's function, stage k ≥ 2 on stage k − 1's function at its own "
       "optimal stopping time t*_{k−1}; every stage is scored against f* and compared with the teacher's L_TE.",
}


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _claim_spec(claim: int, sizes: ValidationSizes) -> dict:
    s = sizes
    relu = {"dim": s.relu_dim, "batches": s.relu_batches, "seeds": s.relu_seeds, "times": s.relu_times}
    specs = {
        1: {**relu, "first": s.relu_batches[0], "students": s.mimic_student_widths},
        2: {**relu, "hermite": s.hermite_scale},
        3: {"widths": s.linear_teacher_widths, "seeds": s.linear_seeds, "times": s.linear_times},
        5: {"dim": s.chain_dim, "widths": s.chain_teacher_widths, "stages": s.chain_stage_widths,
            "seeds": s.chain_seeds, "times": s.relu_times, "linear": s.chain_linear_teacher_widths,
            "factor": s.chain_linear_stage_factor, "linear_stages": s.chain_linear_stages,
            "linear_times": s.linear_times},
    }
    if claim == 4:
        return {f"claim{k}": specs[k] for k in (1, 2, 3, 5)} | {"claim": 4, "version": [VERSION, NUMBERS_VERSION]}
    return {**specs[claim], "claim": claim, "version": [VERSION, NUMBERS_VERSION]}


def _compute_numbers(claim: int, sizes: ValidationSizes, units: Units, parts: dict) -> dict:
    if claim == 1:
        return numbers_claim1(sizes, units)
    if claim == 2:
        return numbers_claim2(sizes, units)
    if claim == 3:
        return numbers_claim3(sizes, units)
    if claim == 5:
        return numbers_claim5(sizes, units)
    return numbers_claim4(parts)


def run_validation(out=None, sizes: ValidationSizes = QUICK, claims=CLAIMS, *, fresh: bool = False,
                   say: Callable[[str], None] | None = print) -> dict:
    """Check the statements ``claims`` at ``sizes``; with ``out``, write report.md, report.json and one PNG per
    claim there (each claim's numbers stored in ``out/claims/`` as it completes, each engine call in
    ``out/units/``; a rerun reuses both unless ``fresh``). Returns the report as a dict (``report["exit_status"]``:
    1 if a statement is found inconsistent, else 0)."""
    claims = parse_claims(claims)
    say = say or (lambda _: None)
    clock = time.perf_counter()
    folder = None if out is None else Path(out)
    if folder is not None:
        check_output_folder(folder, runs=False)
        if fresh:
            for sub in ("units", "claims"):
                if (folder / sub).is_dir():
                    for p in (folder / sub).iterdir():
                        if p.is_file() and p.suffix in (".json", ".tmp"):
                            p.unlink()
    units = Units(folder, say)
    needed = sorted(set(claims) | ({1, 2, 3, 5} if 4 in claims else set()), key=lambda c: (c == 4, c))
    numbers, seconds, reused = {}, {}, []
    for claim in needed:
        spec = _claim_spec(claim, sizes)
        signature = _hash(spec)
        path = None if folder is None else folder / "claims" / f"claim{claim}.json"
        data = None
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict) or data.get("signature") != signature or "numbers" not in data:
                data = None
        if data is not None:
            numbers[claim], seconds[claim] = data["numbers"], float(data.get("seconds", 0.0))
            reused.append(claim)
            say(f"claim {claim}: numbers reused from {path}")
            continue
        say(f"claim {claim}: {TITLES[claim]}")
        start = time.perf_counter()
        numbers[claim] = json_safe(_compute_numbers(claim, sizes, units, numbers))
        seconds[claim] = time.perf_counter() - start
        if path is not None:
            atomic_write_json(path, {"claim": claim, "signature": signature, "sizes": sizes.to_dict(),
                                     "numbers": numbers[claim], "seconds": seconds[claim]})
        say(f"claim {claim}: done in {seconds[claim]:.1f} s")
    sections = []
    for claim in claims:
        verdict, reason = VERDICT_RULES[claim](numbers[claim])
        figure = None
        if folder is not None:
            from w2sjax.studies.plots import save_png

            from matplotlib.ticker import NullFormatter

            figure = f"claim{claim}.png"
            fig = FIGURES[claim](numbers[claim])
            for ax in fig.axes:  # no labels on minor log ticks: they overlap
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            save_png(fig, folder / figure)
        sections.append({"claim": claim, "title": TITLES[claim], "statement": STATEMENTS[claim], "how": HOW[claim],
                         "verdict": verdict, "reason": reason, "figure": figure, "seconds": seconds[claim],
                         "reused": claim in reused, "numbers": numbers[claim]})
        say(f"claim {claim}: {verdict} — {reason}")
    from w2sjax.environment import environment

    status = 1 if any(s["verdict"] == INCONSISTENT for s in sections) else 0
    report = json_safe({
        "sizes": sizes.to_dict(), "claims": list(claims), "sections": sections, "exit_status": status,
        "seconds": {"wall": time.perf_counter() - clock, "units_computed": units.computed,
                    "units_reused": units.reused, "units_seconds": units.seconds},
        "environment": environment(),
    })
    if folder is not None:
        atomic_write_text(folder / "report.md", report_markdown(report))
        atomic_write_json(folder / "report.json", report)
    return report


def report_markdown(report: dict) -> str:
    sizes = report["sizes"]
    lines = ["# w2sjax validate: the paper's statements against exact solutions", "",
             "Medvedev, Lyu, Yu, Arora, Li, Srebro (2025), *Weak-to-Strong Generalization Even in Random Feature "
             "Networks, Provably*. Every number below is computed exactly (population gradient flow, closed-form "
             "moments), not sampled; the verdicts are computed from these numbers by the rules in docs/validate.md. "
             "A finite sweep can contradict an asymptotic statement or agree with it; it cannot prove it.", "",
             f"Sizes: **{sizes['name']}**. Wall time {report['seconds']['wall']:.1f} s "
             f"({report['seconds']['units_computed']} engine calls computed, {report['seconds']['units_reused']} "
             "reused).", "", "| claim | statement | verdict | key numbers |", "|---|---|---|---|"]
    for s in report["sections"]:
        lines.append(f"| {s['claim']} | {s['title']} | **{s['verdict']}** | {s['reason'].replace('|', chr(92) + '|')} |")
    for s in report["sections"]:
        lines += ["", f"## {s['claim']}. {s['title']}", "", f"> {s['statement']}", "", f"**Verdict: {s['verdict']}.** "
                  f"{s['reason']}.", "", s["how"], ""]
        lines += TABLES[s["claim"]](s["numbers"])
        if s["figure"]:
            lines += ["", f"![claim {s['claim']}]({s['figure']})"]
        lines += ["", f"_{'numbers reused from an earlier run; ' if s['reused'] else ''}computed in "
                      f"{_num(s['seconds']):.1f} s._"]
    env = report.get("environment", {})
    lines += ["", "---", "", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()
                                                        if isinstance(v, (str, int, float))), ""]
    return "\n".join(lines)
