"""float32 vs float64: relative errors of every figure of merit on fig2-like problems, and the speed ratio.

    python benchmarks/precision.py --widths 1024 2048 --seeds 2 --methods eigh krylov
    W2SJAX_ROOT=/path/to/other/checkout python benchmarks/precision.py …   (another version of the library)

Each (student width, seed, method) is solved twice from the same float64 weights: in float64, and with the
weights, inputs and target cast to float32 (the studies' ``precision = "float32"``). Prints the relative
error |x32 − x64| / |x64| of L_ST*, t*, L_TE, L_ST(∞), L_ceil and the estimate |err32| / |x32 − x64| coverage.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("W2SJAX_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import jax.numpy as jnp
import numpy as np

import w2sjax  # noqa: F401  (x64 on)
from w2sjax.features import RandomFeatures, student_weights, teacher_weights
from w2sjax.inputs import gaussian_inputs
from w2sjax.targets import linear_target
from w2sjax.w2s import weak_to_strong

FIELDS = ("best_student_loss", "best_time", "teacher_loss", "student_loss_at_infinity", "ceiling_loss")
ERRORS = {"best_student_loss": "best_student_loss", "best_time": "best_time",
          "student_loss_at_infinity": "student_loss_at_infinity", "ceiling_loss": "ceiling_loss"}


def solve(width, teachers, d, seed, dtype, method, times):
    u = student_weights(seed, width, d, "relu")
    student = RandomFeatures(u.astype(dtype), jnp.asarray(width, dtype), "relu")
    ts = [RandomFeatures(teacher_weights(seed, m, d, "relu").astype(dtype), jnp.asarray(m, dtype), "relu")
          for m in teachers]
    inputs = gaussian_inputs(d, dtype=dtype)
    target = linear_target(np.eye(d)[0], dtype)
    clock = time.perf_counter()
    r = jax.block_until_ready(weak_to_strong(student, ts, target, inputs, times, method=method))
    return r, time.perf_counter() - clock


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--teachers", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=["eigh"])
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    times = np.geomspace(0.1, 1e7, 400)
    rows = []
    for method in args.methods:
        for width in args.widths:
            for seed in range(args.seeds):
                r64, s64 = solve(width, args.teachers, args.dim, seed, jnp.float64, method, times)
                r32, s32 = solve(width, args.teachers, args.dim, seed, jnp.float32, method, times)
                r32, s32 = solve(width, args.teachers, args.dim, seed, jnp.float32, method, times) if seed == 0 else (r32, s32)
                r64b, s64 = solve(width, args.teachers, args.dim, seed, jnp.float64, method, times) if seed == 0 else (r64, s64)
                row = {"method": method, "width": width, "seed": seed, "seconds64": s64, "seconds32": s32}
                for f in FIELDS:
                    a, b = np.asarray(getattr(r64, f), np.float64), np.asarray(getattr(r32, f), np.float64)
                    rel = np.abs(b - a) / np.abs(a)
                    row[f] = rel.tolist()
                    if f in ERRORS:
                        est = np.asarray(getattr(r32.error, ERRORS[f]), np.float64)
                        est = est if f == "best_time" else est / np.abs(b)
                        row[f + "_estimate"] = est.tolist()
                        row[f + "_covered"] = bool(np.all(rel <= est))
                rows.append(row)
                print(f"{method:6s} M={width:5d} seed={seed} t64={s64:6.2f}s t32={s32:6.2f}s  " + "  ".join(
                    f"{f[:14]}={np.max(row[f]):.1e}" + (f"(est {np.max(row[f + '_estimate']):.0e}{'' if row[f + '_covered'] else '!'})" if f in ERRORS else "")
                    for f in FIELDS), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
