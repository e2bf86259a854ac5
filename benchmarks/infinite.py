"""The infinitely wide student (M_ST = ∞): cost of the closed-form route, the weak-to-strong exponent it shows,
and finite students converging to it.

    python benchmarks/infinite.py [--repeats 5] [--sweep-seeds 3] [--max-teacher 4096]
                                  [--convergence] [--sizes 512 1024 2048 4096 8192] [--json FILE]

  fig2       the fig2 problem at M_ST = ∞ (ReLU, d = 32, x ~ N(0, I), f* = x₁, teachers 16…256 × 5 seeds,
             400 times from 0.1 to 1e7): ``weak_to_strong`` end to end (teacher fits included), the first call
             (compilation) and the median of --repeats warm calls, also for one seed's five teachers; per teacher width the seed means of L_TE,
             L_ST*, t*, and the largest truncation bound reported in ``result.error``.
  sweep      M_TE = 16 … --max-teacher (powers of two) × --sweep-seeds seeds, M_ST = ∞: the fitted exponent of
             L_ST* against L_TE (log-log least squares over the seed means), and the wall time of the sweep.
  convergence  (--convergence) finite students of --sizes units (3 seeds, dense eigh route) against M_ST = ∞
             for the fig2 problem with M_TE = 64: seed-averaged errors of L_ST(t) (over the whole grid, and at
             t*/2, t*, 2t*), L_ST* and log t*, and their fitted slopes against M.
Prints markdown tables and writes a JSON (default benchmarks/infinite.json).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

import w2sjax as w
from w2sjax._io import atomic_write_json
from w2sjax.environment import environment
from w2sjax.features import infinite_features, random_features, student_weights, teacher_weights

D = 32
TEACHER_WIDTHS = (16, 32, 64, 128, 256)
SEEDS = 5
TIMES = np.geomspace(0.1, 1e7, 400)
CONVERGENCE_TEACHER = 64
CONVERGENCE_SEEDS = 3


def problem(d: int = D):
    return w.gaussian_inputs(d), w.linear_target(np.eye(d)[0])


def teachers_of(width: int, seeds, d: int = D):
    return [random_features(teacher_weights(s, width, d, "relu")) for s in seeds]


def block(result):
    jax.block_until_ready(result.student_loss)
    return result


def fig2(repeats: int) -> dict:
    inputs, target = problem()
    teachers = [t for m in TEACHER_WIDTHS for t in teachers_of(m, range(SEEDS))]
    student = infinite_features(D)
    run = lambda: block(w.weak_to_strong(student, teachers, target, inputs, TIMES))
    clock = time.perf_counter()
    result = run()
    first = time.perf_counter() - clock
    warm = []
    for _ in range(repeats):
        clock = time.perf_counter()
        run()
        warm.append(time.perf_counter() - clock)
    rows = []
    for i, m in enumerate(TEACHER_WIDTHS):
        part = slice(i * SEEDS, (i + 1) * SEEDS)
        rows.append({
            "teacher_width": m,
            "teacher_loss": float(np.mean(np.asarray(result.teacher_loss)[part])),
            "best_student_loss": float(np.mean(np.asarray(result.best_student_loss)[part])),
            "ratio": float(np.mean(np.asarray(result.ratio)[part])),
            "best_time": float(np.exp(np.mean(np.log(np.asarray(result.best_time)[part])))),
            "error_bound": float(np.max(np.asarray(result.error.student_loss)[part])),
        })
    # the five teachers of one seed (the figure's problem for one seed), same compiled shapes per teacher count
    one_seed = [t for m in TEACHER_WIDTHS for t in teachers_of(m, [0])]
    run_one = lambda: block(w.weak_to_strong(student, one_seed, target, inputs, TIMES))
    run_one()
    one = []
    for _ in range(repeats):
        clock = time.perf_counter()
        run_one()
        one.append(time.perf_counter() - clock)
    return {"first_call_s": first, "warm_median_s": statistics.median(warm), "repeats": repeats,
            "one_seed_warm_median_s": statistics.median(one), "route": result.route.how, "rows": rows}


def sweep(max_teacher: int, seeds: int) -> dict:
    inputs, target = problem()
    student = infinite_features(D)
    widths = [2**k for k in range(4, int(math.log2(max_teacher)) + 1)]
    # widths ≤ 256 in one padded batch (one compilation), each wider width in its own batch (no padding)
    groups = [[m for m in widths if m <= 256]] + [[m] for m in widths if m > 256]
    rows = []
    clock = time.perf_counter()
    for group in groups:
        start = time.perf_counter()
        batch = [t for m in group for t in teachers_of(m, range(seeds))]
        result = block(w.weak_to_strong(student, batch, target, inputs, TIMES))
        for i, m in enumerate(group):
            part = slice(i * seeds, (i + 1) * seeds)
            rows.append({"teacher_width": m, "teacher_loss": float(np.mean(np.asarray(result.teacher_loss)[part])),
                         "best_student_loss": float(np.mean(np.asarray(result.best_student_loss)[part])),
                         "best_time": float(np.exp(np.mean(np.log(np.asarray(result.best_time)[part])))),
                         "error_bound": float(np.max(np.asarray(result.error.best_student_loss)[part])),
                         "batch_seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - clock
    te = np.log([r["teacher_loss"] for r in rows])
    st = np.log([r["best_student_loss"] for r in rows])
    exponent = float(np.polyfit(te, st, 1)[0])
    return {"seconds": seconds, "seeds": seeds, "exponent": exponent, "rows": rows}


def curve_of(result):
    """L(t) of a one-label spectral problem (numpy, any t)."""
    p = result.problem
    lam, a, b = (np.asarray(x).reshape(-1) for x in (p.eigenvalues, p.label_coef, p.target_coef))
    r = float(np.asarray(p.residual).reshape(()))
    return lambda t: np.sum((-np.expm1(-np.multiply.outer(np.asarray(t), lam)) * a - b) ** 2, axis=-1) + r


def convergence(sizes) -> dict:
    inputs, target = problem()
    teacher = teachers_of(CONVERGENCE_TEACHER, [0])[0]
    exact = w.weak_to_strong(infinite_features(D), teacher, target, inputs, TIMES)
    t_star = float(exact.best_time)
    probe = t_star * np.array([0.5, 1.0, 2.0])
    exact_curve = curve_of(exact)
    rows = []
    for m in sizes:
        clock = time.perf_counter()
        curves, probes, bests, logs = [], [], [], []
        for seed in range(CONVERGENCE_SEEDS):
            student = random_features(student_weights(seed, m, D, "relu"))
            result = w.weak_to_strong(student, teacher, target, inputs, TIMES, method="eigh")
            curves.append(np.asarray(result.student_loss))
            probes.append(curve_of(result)(probe))
            bests.append(float(result.best_student_loss))
            logs.append(math.log(float(result.best_time)))
        rows.append({
            "student_width": m, "seconds": time.perf_counter() - clock,
            "curve_error_max": float(np.max(np.abs(np.mean(curves, 0) - np.asarray(exact.student_loss)))),
            "curve_error_near_best": float(np.max(np.abs(np.mean(probes, 0) - exact_curve(probe)))),
            "best_loss_error": abs(float(np.mean(bests)) - float(exact.best_student_loss)),
            "log_best_time_error": abs(float(np.mean(logs)) - math.log(t_star)),
        })
    slopes = {}
    if len(sizes) > 1:
        for key in ("curve_error_max", "curve_error_near_best", "best_loss_error", "log_best_time_error"):
            slopes[key] = float(np.polyfit(np.log(sizes), np.log([r[key] for r in rows]), 1)[0])
    return {"teacher_width": CONVERGENCE_TEACHER, "seeds": CONVERGENCE_SEEDS,
            "infinite": {"best_student_loss": float(exact.best_student_loss), "best_time": t_star,
                         "teacher_loss": float(exact.teacher_loss)},
            "rows": rows, "slopes": slopes}


def table(rows, columns) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    return head + "".join("| " + " | ".join(fmt(r[c]) for c in columns) + " |\n" for r in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep-seeds", type=int, default=3)
    parser.add_argument("--max-teacher", type=int, default=4096)
    parser.add_argument("--convergence", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--json", default=str(Path(__file__).with_name("infinite.json")))
    args = parser.parse_args(argv)

    out = {"environment": environment(), "command": "python " + " ".join(sys.argv)}
    out["fig2"] = f = fig2(args.repeats)
    print(f"## fig2 at M_ST = ∞ (d = {D}, {len(TEACHER_WIDTHS)} widths × {SEEDS} seeds, {TIMES.size} times)\n")
    print(f"first call {f['first_call_s']:.2f} s, warm median {f['warm_median_s']:.3f} s over {f['repeats']}; "
          f"one seed (five teachers): warm median {f['one_seed_warm_median_s']:.3f} s\n")
    print(table(f["rows"], ["teacher_width", "teacher_loss", "best_student_loss", "ratio", "best_time",
                            "error_bound"]))
    out["sweep"] = s = sweep(args.max_teacher, args.sweep_seeds)
    print(f"## M_TE sweep at M_ST = ∞ ({s['seeds']} seeds): {s['seconds']:.1f} s, "
          f"L_ST* ∝ L_TE^{s['exponent']:.3f}\n")
    print(table(s["rows"], ["teacher_width", "teacher_loss", "best_student_loss", "best_time", "error_bound",
                            "batch_seconds"]))
    if args.convergence:
        out["convergence"] = c = convergence(args.sizes)
        print(f"## finite M_ST → ∞ (M_TE = {c['teacher_width']}, {c['seeds']} seeds; ∞: L* = "
              f"{c['infinite']['best_student_loss']:.6g}, t* = {c['infinite']['best_time']:.6g})\n")
        print(table(c["rows"], ["student_width", "curve_error_max", "curve_error_near_best", "best_loss_error",
                                "log_best_time_error", "seconds"]))
        print("fitted slopes against M: " + ", ".join(f"{k} {v:.3f}" for k, v in c["slopes"].items()) + "\n")
    atomic_write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
