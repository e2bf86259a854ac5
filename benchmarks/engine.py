"""The engine's routes side by side on the fig2 problem, and the presets end to end.

    python benchmarks/engine.py [--sizes 2048 4096 8192 16384] [--eigh-up-to 4096] [--json FILE] [--quick]
                                [--presets fig2-quick fig2 ...]

Problem: fig2 (ReLU features, d = 32, f* = x₁, x ~ N(0, I)), five teachers 16…256, 400 stopping times from 0.1
to 1e7, student and teachers of seed 0, float64. For every student width, in one process after a warm-up call
of the same shapes:
  - krylov: ``weak_to_strong(method="krylov")`` (stored G) with its cost split (Gram build, label moments,
    Krylov blocks, checks, final figures) and its block count;
  - eigh: ``weak_to_strong(method="eigh")`` and a bare ``jnp.linalg.eigh`` of the same Gram matrix, where
    M ≤ --eigh-up-to (both are O(M³));
  - their agreement (max |ΔL_ST| over the grid and teachers, max relative Δt*, |ΔL_ST(∞)|, |ΔL_ceil|).
The time of the Krylov route is fitted as a power of M_ST over the sizes. ``--presets`` times whole commands
(`w2sjax figure NAME [--quick]`) in fresh processes, first with an empty compilation cache, then warm with and
without the figures (the best of --repeats runs).
Results: a markdown table on stdout and, with --json, every number with the device, date and versions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import w2sjax as w
from w2sjax.engine import solve_objective
from w2sjax.environment import environment
from w2sjax.features import student_weights, teacher_weights

TEACHERS = (16, 32, 64, 128, 256)
TIMES = np.geomspace(0.1, 1e7, 400)
D = 32


def fig2(width: int, dtype=jnp.float64):
    inputs = w.gaussian_inputs(D, dtype=dtype)
    student = w.RandomFeatures(student_weights(0, width, D, "relu").astype(dtype), jnp.asarray(width, dtype))
    teachers = [w.RandomFeatures(teacher_weights(0, m, D, "relu").astype(dtype), jnp.asarray(m, dtype))
                for m in TEACHERS]
    return student, teachers, w.linear_target(np.eye(D)[0], dtype), inputs


def timed(fn, *args, repeats: int = 1, **kwargs):
    """(result, best seconds over repeats) after one warm-up call."""
    jax.block_until_ready(fn(*args, **kwargs))
    best = np.inf
    for _ in range(repeats):
        clock = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        best = min(best, time.perf_counter() - clock)
    return out, best


def krylov_with_split(problem, timings: dict):
    """weak_to_strong by Krylov, recording the engine's phases into ``timings``."""
    import w2sjax.w2s as pipeline

    original = pipeline.solve_objective

    def recording(objective, times, **options):
        timings.clear()
        return original(objective, times, timings=timings, **options)

    pipeline.solve_objective = recording
    try:
        return w.weak_to_strong(*problem, TIMES, method="krylov", operator="stored")
    finally:
        pipeline.solve_objective = original


def route_rows(sizes, eigh_up_to: int, repeats: int) -> list:
    rows = []
    for m in sizes:
        problem = fig2(m)
        split: dict = {}
        kry, kry_s = timed(krylov_with_split, problem, split, repeats=repeats)
        row = {"M_ST": m, "krylov_s": kry_s, "krylov_blocks": kry.route.blocks, "krylov_split": dict(split),
               "best_ratio": np.asarray(kry.ratio).tolist()}
        if m <= eigh_up_to:
            ref, eigh_s = timed(w.weak_to_strong, *problem, TIMES, method="eigh", repeats=repeats)
            gram = jax.jit(lambda f, i: w.feature_gram(f, f, i))(problem[0], problem[3])
            _, bare_s = timed(jax.jit(jnp.linalg.eigh), gram, repeats=repeats)
            t, t_ref = np.asarray(kry.best_time), np.asarray(ref.best_time)
            row.update(
                eigh_s=eigh_s, bare_eigh_s=bare_s, eigh_over_krylov=eigh_s / kry_s,
                max_abs_diff_curve=float(np.max(np.abs(np.asarray(kry.student_loss) - np.asarray(ref.student_loss)))),
                max_rel_diff_best_time=float(np.max(np.abs(t / t_ref - 1))),
                max_abs_diff_infinity=float(np.max(np.abs(np.asarray(kry.student_loss_at_infinity)
                                                          - np.asarray(ref.student_loss_at_infinity)))),
                max_abs_diff_ceiling=float(np.max(np.abs(np.asarray(kry.ceiling_loss) - np.asarray(ref.ceiling_loss)))),
            )
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def preset_rows(presets, repeats: int = 1) -> list:
    """Whole `w2sjax figure` commands in fresh processes: cold (an empty compilation cache), then warm (the same
    cache) with the figures and without them (--no-plots), each warm command the best of ``repeats`` runs. Every
    run recomputes every unit (--fresh)."""
    rows = []
    for spec in presets:
        name, quick = (spec[: -len("-quick")], True) if spec.endswith("-quick") else (spec, False)
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, W2SJAX_CACHE=cache)
            command = [sys.executable, "-m", "w2sjax", "figure", name, "--no-progress", "--fresh"]
            command += ["--quick"] if quick else []

            def seconds(folder, *extra):
                clock = time.perf_counter()
                proc = subprocess.run(command + ["--out", f"{out}/{folder}", *extra], env=env, capture_output=True,
                                      text=True)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-2000:])
                return time.perf_counter() - clock

            row = {"preset": spec, "cold_s": seconds("cold")}
            row["warm_runs_s"] = [seconds("warm") for _ in range(repeats)]
            row["warm_no_plots_runs_s"] = [seconds("warm-no-plots", "--no-plots") for _ in range(repeats)]
            row["warm_s"], row["warm_no_plots_s"] = min(row["warm_runs_s"]), min(row["warm_no_plots_runs_s"])
            records = json.loads(open(f"{out}/warm/results.json").read())
            row["fits"] = [{"group": f["group"], "exponent": f["exponent"], "stderr": f["exponent_stderr"]}
                           for f in records["fits"]]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def markdown(rows, presets, exponent) -> str:
    lines = ["| M_ST | Krylov s (blocks) | Gram / moments / blocks / checks / final s | eigh s | bare eigh s | "
             "eigh/Krylov | max ΔL_ST | max Δt*/t* | ΔL(∞) | ΔL_ceil |", "|" + "---|" * 10]
    for r in rows:
        s = r["krylov_split"]
        split = " / ".join(f"{s.get(k, 0):.2f}" for k in ("gram", "label moments", "blocks", "checks", "final figures"))
        eigh = (f"{r['eigh_s']:.2f} | {r['bare_eigh_s']:.2f} | {r['eigh_over_krylov']:.1f} | "
                f"{r['max_abs_diff_curve']:.1e} | {r['max_rel_diff_best_time']:.1e} | {r['max_abs_diff_infinity']:.1e} | "
                f"{r['max_abs_diff_ceiling']:.1e}") if "eigh_s" in r else "– | – | – | – | – | – | –"
        lines.append(f"| {r['M_ST']} | {r['krylov_s']:.2f} ({r['krylov_blocks']}) | {split} | {eigh} |")
    if exponent is not None:
        lines.append(f"\nKrylov time ∝ M_ST^{exponent:.2f} over M_ST = {rows[0]['M_ST']} … {rows[-1]['M_ST']}.")
    if presets:
        lines += ["", "| command | cold s (empty cache) | warm s | warm s, --no-plots | fitted exponents |",
                  "|---|---|---|---|---|"]
        for p in presets:
            fits = "; ".join(f"{f['group']}: {f['exponent']:.3f} ± {f['stderr']:.3f}" for f in p["fits"])
            quick = " --quick" if p["preset"].endswith("-quick") else ""
            lines.append(f"| `w2sjax figure {p['preset'].removesuffix('-quick')}{quick}` | {p['cold_s']:.1f} | "
                         f"{p['warm_s']:.1f} | {p['warm_no_plots_s']:.1f} | {fits} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--eigh-up-to", type=int, default=4096, help="run eigh only up to this M_ST (O(M³))")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--presets", nargs="*", default=[], help="e.g. fig2-quick fig2 fig3-quick")
    parser.add_argument("--quick", action="store_true", help="sizes 1024 2048, eigh up to 2048, fig2-quick only")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.eigh_up_to, args.presets = [1024, 2048], 2048, args.presets or ["fig2-quick"]
    rows = route_rows(args.sizes, args.eigh_up_to, args.repeats)
    exponent = None
    if len(rows) > 1:
        exponent = float(np.polyfit(np.log([r["M_ST"] for r in rows]), np.log([r["krylov_s"] for r in rows]), 1)[0])
    presets = preset_rows(args.presets, args.repeats)
    print(markdown(rows, presets, exponent))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "environment": environment(),
                       "command": " ".join(sys.argv), "routes": rows, "krylov_exponent": exponent,
                       "presets": presets}, f, indent=2)


if __name__ == "__main__":
    main()
