"""Measurements on a GPU: fig2 and fig3 end to end, and the engine's routes from 4096 to 131072 features.

    python benchmarks/gpu_check.py [--parts fig2 routes fig3] [--sizes 4096 16384 65536 131072]
                                   [--out DIR] [--smoke]

Run in the repository root on a machine with jax (CUDA) and optax (``pip install --no-deps -e .``); the three
parts together take under 9 minutes on one H100. Writes DIR/gpu_check.json (every number, with the device,
date and versions) and DIR/gpu_check.md (the tables), and prints the tables.

  fig2    the fig2 preset at full size (M_ST = 16384, 5 seeds, teachers 16..256) end to end through the studies
          runner (``run_study``), in float64 and in float32, against a bare ``jnp.linalg.eigh`` of one
          16384 × 16384 Gram matrix in the same process (ratio = study seconds / (seeds × eigh seconds)); the
          largest float32-vs-float64 differences of L_ST*, t* (relative) and L_TE over every run.
  routes  ``weak_to_strong`` on fig2's problem (seed 0) by every route at each size where the planner
          (``engine.plan_route``) says it fits: eigh, Krylov with G stored, Krylov matrix-free (tiled), and the
          infinitely wide student; seconds (after a warm-up of the same shapes where it is cheap), Krylov
          blocks, agreement with eigh where eigh ran at that size, peak device memory
          (``memory_stats()["peak_bytes_in_use"]``, where the backend reports it) against the planner's bytes.
  fig3    the fig3 preset at full size end to end (linear features, d = M_TE^(3/2), M_ST = 16 d).

``--smoke`` runs the same code paths at tiny sizes (on CPU in seconds): the test suite uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's w2sjax

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import w2sjax as w  # noqa: E402
from w2sjax.engine import device_memory_bytes, plan_route  # noqa: E402
from w2sjax.environment import environment  # noqa: E402
from w2sjax.features import feature_gram, infinite_features, student_weights, teacher_weights  # noqa: E402
from w2sjax.objectives import Law, Objective  # noqa: E402
from w2sjax.studies import runner  # noqa: E402
from w2sjax.studies.config import preset  # noqa: E402
from w2sjax.w2s import TeacherFit, as_batch, teacher_functions  # noqa: E402

PARTS = ("fig2", "routes", "fig3")
FULL_SIZES = (4096, 16384, 65536, 131072)
ROUTES = ("eigh", "krylov/stored", "krylov/tiled", "infinite")
FIGURES = ("teacher_loss", "best_student_loss", "best_time")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that --smoke shrinks."""

    fig2_student: int
    fig2_teachers: tuple
    fig2_seeds: int
    dim: int
    route_sizes: tuple
    route_teachers: tuple
    num_times: int
    fig3_teachers: tuple | None
    fig3_seeds: int | None


FULL = Sizes(16384, (16, 32, 64, 128, 256), 5, 32, FULL_SIZES, (16, 32, 64, 128, 256), 400, None, None)
SMOKE = Sizes(64, (4, 8), 2, 8, (64,), (4, 8), 40, (4,), 1)


# --------------------------------------------------------------------------------------------------
# Device memory
# --------------------------------------------------------------------------------------------------


def memory_stats() -> dict | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # backends without statistics
        return None
    return dict(stats) if stats else None


def peak_bytes() -> int | None:
    stats = memory_stats()
    return None if stats is None or "peak_bytes_in_use" not in stats else int(stats["peak_bytes_in_use"])


def measured_peak(before: int | None) -> int | None:
    """The peak after a run, where it rose during the run (the counter never resets: a run that stays under an
    earlier peak cannot be measured, reported as None)."""
    after = peak_bytes()
    if after is None or before is None or after <= before:
        return None
    return after


# --------------------------------------------------------------------------------------------------
# fig2 end to end against bare eigh
# --------------------------------------------------------------------------------------------------


def fig2_config(sizes: Sizes, precision: str):
    return dataclasses.replace(preset("fig2"), student_widths=(sizes.fig2_student,), teacher_widths=sizes.fig2_teachers,
                               seeds=tuple(range(sizes.fig2_seeds)), input_dims=(sizes.dim,), num_times=sizes.num_times,
                               precision=precision)


def bare_eigh_seconds(width: int, dim: int, dtype) -> float:
    """Seconds of jnp.linalg.eigh of fig2's Gram matrix at ``width`` (compiled first, then timed once)."""
    f = w.RandomFeatures(student_weights(0, width, dim, "relu").astype(dtype), jnp.asarray(width, dtype))
    gram = jax.block_until_ready(feature_gram(f, f, w.gaussian_inputs(dim, dtype=dtype)))
    eigh = jax.jit(jnp.linalg.eigh)
    jax.block_until_ready(eigh(gram))  # compile and warm
    clock = time.perf_counter()
    jax.block_until_ready(eigh(gram))
    return time.perf_counter() - clock


def run_fig2(sizes: Sizes) -> dict:
    out = {"student_width": sizes.fig2_student, "teacher_widths": list(sizes.fig2_teachers), "seeds": sizes.fig2_seeds}
    records = {}
    for precision in ("float64", "float32"):
        config = fig2_config(sizes, precision)
        clock = time.perf_counter()
        result = runner.run_study(config, None, progress=False, plots=False)
        seconds = time.perf_counter() - clock
        eigh = bare_eigh_seconds(sizes.fig2_student, sizes.dim, config.dtype)
        routes = sorted({r["route"] for r in result.records})
        out[precision] = {"study_seconds": seconds, "bare_eigh_seconds": eigh,
                          "ratio_to_eigh_per_seed": seconds / (sizes.fig2_seeds * eigh), "routes": routes}
        records[precision] = {(r["seed"], r["teacher_width"]): r for r in result.records}
    diffs = {}
    for name in FIGURES:
        worst = 0.0
        for key, r64 in records["float64"].items():
            a, b = float(r64[name]), float(records["float32"][key][name])
            if math.isinf(a) or math.isinf(b):
                worst = max(worst, 0.0 if a == b else math.inf)
                continue
            worst = max(worst, abs(a - b) / (abs(a) if name == "best_time" else 1.0))
        diffs[name] = worst
    out["float32_vs_float64"] = {"max_abs_teacher_loss": diffs["teacher_loss"],
                                 "max_abs_best_student_loss": diffs["best_student_loss"],
                                 "max_rel_best_time": diffs["best_time"]}
    return out


# --------------------------------------------------------------------------------------------------
# The routes, size by size
# --------------------------------------------------------------------------------------------------


def fig2_problem(width, sizes: Sizes, dtype=jnp.float64):
    d = sizes.dim
    inputs = w.gaussian_inputs(d, dtype=dtype)
    if math.isinf(width):
        student = infinite_features(d, "relu", dtype)
    else:
        student = w.RandomFeatures(student_weights(0, width, d, "relu").astype(dtype), jnp.asarray(width, dtype))
    teachers = [w.RandomFeatures(teacher_weights(0, m, d, "relu").astype(dtype), jnp.asarray(m, dtype))
                for m in sizes.route_teachers]
    return student, teachers, w.linear_target(np.eye(d)[0], dtype), inputs


def planned_bytes(width: int, sizes: Sizes, dtype=jnp.float64):
    """The planner's bytes per route for fig2's objective at ``width`` (placeholder teachers: sizes only)."""
    d = sizes.dim
    shape = jax.ShapeDtypeStruct((width, d), dtype)
    student = w.RandomFeatures(shape, jnp.asarray(width, dtype))
    batch = as_batch([w.RandomFeatures(jnp.zeros((m, d), dtype), jnp.asarray(m, dtype)) for m in sizes.route_teachers])
    functions = teacher_functions(batch, TeacherFit(jnp.zeros(batch.weights.shape[:2], dtype), None))
    objective = Objective(student, (functions,), w.linear_target(np.eye(d)[0], dtype), Law(w.gaussian_inputs(d, dtype=dtype)))
    return plan_route(objective, sizes.num_times)


def timed(fn):
    before = peak_bytes()
    clock = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - clock, measured_peak(before)


def agreement(result, reference) -> dict:
    """Largest differences from the eigh route: |ΔL_ST| over the grid, relative Δt*, |ΔL_ST(∞)|, |ΔL_ceil|."""
    a, b = jax.device_get(result), jax.device_get(reference)
    t1, t2 = np.asarray(a.best_time), np.asarray(b.best_time)
    both = np.isfinite(t1) & np.isfinite(t2)
    return {
        "max_abs_student_loss": float(np.max(np.abs(np.asarray(a.student_loss) - np.asarray(b.student_loss)))),
        "max_rel_best_time": float(np.max(np.abs(t1[both] - t2[both]) / t2[both])) if both.any() else 0.0,
        "same_infinite_best_times": bool(np.array_equal(np.isinf(t1), np.isinf(t2))),
        "max_abs_loss_at_infinity": float(np.max(np.abs(np.asarray(a.student_loss_at_infinity)
                                                        - np.asarray(b.student_loss_at_infinity)))),
        "max_abs_ceiling_loss": float(np.max(np.abs(np.asarray(a.ceiling_loss) - np.asarray(b.ceiling_loss)))),
    }


def run_routes(sizes: Sizes) -> list:
    times = np.geomspace(0.1, 1e7, sizes.num_times)
    rows = []
    memory = device_memory_bytes()
    for width in sizes.route_sizes:
        plan = planned_bytes(width, sizes)
        problem = fig2_problem(width, sizes)
        reference = None
        for route in ROUTES[:3]:
            method, _, operator = route.partition("/")
            row = {"student_width": width, "route": route, "planned_bytes": plan.needed_bytes.get(route),
                   "available_bytes": memory, "auto_choice": plan.method + (f"/{plan.operator}" if plan.operator else "")}
            if route not in plan.needed_bytes or plan.needed_bytes[route] > memory:
                rows.append({**row, "status": "does not fit (planner)"})
                continue
            options = {"method": method, **({"operator": operator} if operator else {})}
            try:
                if width <= 16384:  # warm-up of the same shapes: compile time apart from run time
                    jax.block_until_ready(w.weak_to_strong(*problem, times, **options))
                result, seconds, peak = timed(lambda: w.weak_to_strong(*problem, times, **options))
            except Exception as err:  # noqa: BLE001 - a failure is a measurement too
                rows.append({**row, "status": f"failed: {type(err).__name__}: {str(err)[:200]}"})
                continue
            row.update(status="ran", seconds=seconds, blocks=int(result.route.blocks), peak_bytes=peak,
                       warm=width <= 16384)
            if route == "eigh":
                reference = result
            elif reference is not None:
                row["agreement_with_eigh"] = agreement(result, reference)
            rows.append(row)
        del problem
    inf_problem = fig2_problem(math.inf, sizes)
    jax.block_until_ready(w.weak_to_strong(*inf_problem, times, method="infinite"))
    result, seconds, peak = timed(lambda: w.weak_to_strong(*inf_problem, times, method="infinite"))
    rows.append({"student_width": "inf", "route": "infinite", "status": "ran", "seconds": seconds, "blocks": 0,
                 "peak_bytes": peak, "warm": True, "planned_bytes": None, "available_bytes": memory,
                 "auto_choice": "infinite",
                 "ratio_by_teacher": [float(v) for v in np.asarray(result.ratio)]})
    return rows


# --------------------------------------------------------------------------------------------------
# fig3 end to end
# --------------------------------------------------------------------------------------------------


def run_fig3(sizes: Sizes) -> dict:
    config = preset("fig3")
    if sizes.fig3_teachers is not None:
        config = dataclasses.replace(config, teacher_widths=sizes.fig3_teachers, seeds=tuple(range(sizes.fig3_seeds)),
                                     num_times=sizes.num_times)
    clock = time.perf_counter()
    result = runner.run_study(config, None, progress=False, plots=False)
    seconds = time.perf_counter() - clock
    dims = sorted({r["input_dim"] for r in result.records})
    return {"seconds": seconds, "runs": len(result.records), "input_dims": dims,
            "student_widths": sorted({r["student_width"] for r in result.records}, key=float),
            "routes": sorted({r["route"] for r in result.records}),
            "fits": [{"group": f["group"], "exponent": f["exponent"]} for f in result.fits]}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def gib(value) -> str:
    return "–" if value is None else f"{value / 2**30:.3g}"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"Device: {report['device']}; date {report['date']}; jax {env.get('jax')}, jaxlib {env.get('jaxlib')}"
             f"{'; SMOKE (tiny sizes)' if report['smoke'] else ''}.", ""]
    if "fig2" in report:
        f = report["fig2"]
        lines += [f"fig2 end to end (M_ST = {f['student_width']}, {f['seeds']} seeds, teachers {f['teacher_widths']}):", "",
                  "| precision | study s | bare eigh s | study / (seeds × eigh) | routes |", "|---|---|---|---|---|"]
        for p in ("float64", "float32"):
            r = f[p]
            lines.append(f"| {p} | {r['study_seconds']:.3g} | {r['bare_eigh_seconds']:.3g} | "
                         f"{r['ratio_to_eigh_per_seed']:.3g} | {', '.join(r['routes'])} |")
        d = f["float32_vs_float64"]
        lines += ["", f"float32 vs float64, largest over every run: |ΔL_ST*| {d['max_abs_best_student_loss']:.3g}, "
                      f"|Δt*|/t* {d['max_rel_best_time']:.3g}, |ΔL_TE| {d['max_abs_teacher_loss']:.3g}", ""]
    if "routes" in report:
        lines += ["Routes on fig2 (seed 0):", "",
                  "| M_ST | route | status | s | blocks | max abs ΔL_ST vs eigh | max rel Δt* vs eigh | "
                  "peak GiB | planned GiB |", "|---|---|---|---|---|---|---|---|---|"]
        for r in report["routes"]:
            agree = r.get("agreement_with_eigh") or {}
            seconds = f"{r['seconds']:.3g}" if "seconds" in r else "–"
            lines.append(f"| {r['student_width']} | {r['route']} | {r['status']} | {seconds} | {r.get('blocks', '–')} | "
                         f"{agree.get('max_abs_student_loss', '–') if not agree else format(agree['max_abs_student_loss'], '.2g')} | "
                         f"{'–' if not agree else format(agree['max_rel_best_time'], '.2g')} | "
                         f"{gib(r.get('peak_bytes'))} | {gib(r.get('planned_bytes'))} |")
        lines.append("")
    if "fig3" in report:
        f = report["fig3"]
        lines += [f"fig3 end to end: {f['seconds']:.3g} s, {f['runs']} runs, d in {f['input_dims']}, "
                  f"routes {', '.join(f['routes'])}", ""]
    lines.append("Seconds per part: " + ", ".join(f"{k} {v:.3g}" for k, v in report["part_seconds"].items()))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--sizes", nargs="+", type=int, help="student widths of the routes part")
    parser.add_argument("--out", default="results/gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the same code paths in seconds on a CPU")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.sizes:
        sizes = dataclasses.replace(sizes, route_sizes=tuple(args.sizes))
    device = jax.devices()[0]
    report = {"device": f"{device.platform}: {getattr(device, 'device_kind', '')}".strip(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "smoke": bool(args.smoke), "parts": list(args.parts), "host": platform.node(),
              "environment": environment(), "memory_stats_available": memory_stats() is not None,
              "part_seconds": {}}
    for part in args.parts:
        clock = time.perf_counter()
        report[part] = {"fig2": run_fig2, "routes": run_routes, "fig3": run_fig3}[part](sizes)
        report["part_seconds"][part] = time.perf_counter() - clock
        print(f"{part}: {report['part_seconds'][part]:.1f} s", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from w2sjax._io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "gpu_check.json", report)
    table = markdown(report)
    atomic_write_text(out / "gpu_check.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
