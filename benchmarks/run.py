"""The exact route against bare eigendecomposition and against iterative training, side by side.

    python benchmarks/run.py [--sizes 1024 2048 4096] [--quick] [--precision float64|float32] [--json FILE]

For each student width M_ST, on the fig2-style problem (ReLU, d = 32, target x_1, teachers 16…256) with the
time grid logspace(-1, 6, 1000), in one process, after a warm-up call, median of --repeats:
  eigh        jnp.linalg.eigh of the student Gram matrix alone;
  sweep       the whole w2sjax sweep: moments, decomposition, 5 teachers × 1000 curves, optimal stopping times;
  iterative   the same 1000-point curve for one teacher (M_TE = 64) by optax gradient descent on the population
              objective, to 1e-6: the step η is the largest with the a-priori bound max_k |L_GD(k) − L_GF(kη)|
              ≤ 1e-6 (``discrete.gd_flow_bound``), and the run needs t_max/η steps. When that is more than
              --max-steps, the time is extrapolated from a measured run of --max-steps steps (linear in steps:
              each step is one M×M matrix-vector product); the table says which;
  online_sgd  the SGD-simulation protocol: batch 1024, 1000 steps per teacher, 5 teachers, step 0.5, one seed.
Errors: of the iterative route, the measured max |L_GD − L_GF| over the steps it ran (and the bound);
of online SGD, max |L_SGD(k) − L_GF(kη)| over its 1000 steps (it is a different, noisy protocol).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import w2sjax as w
from w2sjax import discrete
from w2sjax._io import atomic_write_json
from w2sjax.environment import environment
from w2sjax.features import feature_gram
from w2sjax.sweep import student_weights, teacher_weights

D = 32
TEACHER_WIDTHS = (16, 32, 64, 128, 256)
ITERATIVE_TEACHER = 64
TIMES = np.logspace(-1, 6, 1000)
TOLERANCE = 1e-6
SGD_BATCH, SGD_STEPS, SGD_STEP_SIZE = 1024, 1000, 0.5


def median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up: compilation
    samples = []
    for _ in range(repeats):
        clock = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(time.perf_counter() - clock)
    return statistics.median(samples)


def largest_accurate_step(problem, tolerance: float) -> float:
    """Largest η with gd_flow_bound(η) ≤ tolerance (bisection in log η; the bound grows with η)."""
    lam_max = float(jnp.max(problem.eigenvalues))
    lo, hi = np.log(1e-16 / lam_max), np.log(0.999 / lam_max)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(discrete.gd_flow_bound(problem, np.exp(mid))) <= tolerance:
            lo = mid
        else:
            hi = mid
    return float(np.exp(lo))


def bench_size(m: int, dtype, repeats: int, max_steps: int, sgd: bool) -> dict:
    inputs = w.gaussian_inputs(D, dtype=dtype)
    target = w.linear_target(np.eye(D)[0], dtype)
    student = w.RandomFeatures(jnp.asarray(student_weights(0, m, D, "relu"), dtype), jnp.asarray(m, dtype), "relu")
    gram = jax.block_until_ready(jax.jit(feature_gram)(student, student, inputs))
    row = {"student_width": m}

    eigh = jax.jit(jnp.linalg.eigh)
    row["eigh_s"] = median_time(lambda: eigh(gram), repeats)

    def sweep():
        return w.run_sweep(inputs, target, student_widths=(m,), teacher_widths=TEACHER_WIDTHS, times=TIMES)

    row["sweep_s"] = median_time(sweep, repeats)
    result = sweep()
    row["sweep_timings"] = result.timings
    row["sweep_over_eigh"] = row["sweep_s"] / row["eigh_s"]

    # Iterative: optax GD on the exact population objective for one teacher.
    teacher = w.RandomFeatures(
        jnp.asarray(teacher_weights(0, ITERATIVE_TEACHER, D, "relu"), dtype), jnp.asarray(ITERATIVE_TEACHER, dtype), "relu"
    )
    objective, labels = discrete.student_objective(student, teacher, target, inputs)
    problem = discrete.objective_problem(objective)
    eta = largest_accurate_step(problem, TOLERANCE)
    needed = int(np.ceil(TIMES[-1] / eta))
    ran = min(needed, max_steps)
    record = np.unique(np.linspace(0, ran, 101).astype(int))
    gd = optax.sgd(eta)
    t_run = median_time(lambda: discrete.train_population(objective, gd, record).errors, max(1, repeats // 2))
    trajectory = discrete.train_population(objective, gd, record)
    flow = w.student_loss(problem, jnp.asarray(record * eta, dtype))
    row.update(
        iterative_step=eta,
        iterative_stable_step=2 / float(jnp.max(problem.eigenvalues)),
        iterative_steps_needed=needed,
        iterative_steps_run=ran,
        iterative_extrapolated=needed > ran,
        iterative_s=t_run * needed / ran,
        iterative_error_bound=float(discrete.gd_flow_bound(problem, eta)),
        iterative_error_measured=float(np.max(np.abs(np.asarray(trajectory.errors) - np.asarray(flow)))),
    )
    row["iterative_over_sweep"] = row["iterative_s"] / row["sweep_s"]

    if sgd:
        steps = np.arange(0, SGD_STEPS + 1, 10)
        opt = optax.sgd(SGD_STEP_SIZE)
        runs = []
        for m_t in TEACHER_WIDTHS:
            t = w.RandomFeatures(jnp.asarray(teacher_weights(0, m_t, D, "relu"), dtype), jnp.asarray(m_t, dtype), "relu")
            obj, lab = discrete.student_objective(student, t, target, inputs)
            runs.append((obj, lab))

        def online_all():
            return [
                discrete.online_runs(obj, student, lab, inputs, opt, steps, batch_size=SGD_BATCH, seeds=(0,)).errors
                for obj, lab in runs
            ]

        row["online_sgd_s"] = median_time(online_all, 1)
        errors = online_all()
        gaps = [
            np.max(np.abs(np.asarray(e[0]) - np.asarray(w.student_loss(discrete.objective_problem(obj),
                                                                       jnp.asarray(steps * SGD_STEP_SIZE, dtype)))))
            for e, (obj, _) in zip(errors, runs)
        ]
        row["online_sgd_error"] = float(max(gaps))
        row["online_sgd_over_sweep"] = row["online_sgd_s"] / row["sweep_s"]
    return row


def print_table(rows, precision: str) -> None:
    print(f"\nw2sjax benchmark ({precision}, {environment()['device']}, jax {jax.__version__})")
    head = (f"{'M_ST':>6} {'eigh s':>9} {'sweep s':>9} {'sweep/eigh':>10} {'iter s':>11} {'iter/sweep':>11} "
            f"{'iter err':>9} {'sgd s':>8} {'sgd/sweep':>9} {'sgd err':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = "*" if r["iterative_extrapolated"] else " "
        sgd = (f"{r['online_sgd_s']:8.2f} {r['online_sgd_over_sweep']:9.2f} {r['online_sgd_error']:8.1e}"
               if "online_sgd_s" in r else f"{'-':>8} {'-':>9} {'-':>8}")
        print(f"{r['student_width']:6d} {r['eigh_s']:9.3f} {r['sweep_s']:9.3f} {r['sweep_over_eigh']:10.3f} "
              f"{r['iterative_s']:10.3g}{mark} {r['iterative_over_sweep']:11.3g} {r['iterative_error_measured']:9.1e} {sgd}")
    print("* iterative time extrapolated from a measured run (steps needed / steps run)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="student widths (default 1024 2048 4096)")
    parser.add_argument("--quick", action="store_true", help="sizes 256 512 1024, one repeat")
    parser.add_argument("--precision", default="float64", choices=("float64", "float32"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=20_000, help="most GD steps actually run before extrapolating")
    parser.add_argument("--no-sgd", action="store_true", help="skip the online SGD protocol")
    parser.add_argument("--json", default=None, help="write the results here (atomically)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([256, 512, 1024] if args.quick else [1024, 2048, 4096])
    repeats = 1 if args.quick else args.repeats
    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    rows = []
    for m in sizes:
        rows.append(bench_size(m, dtype, repeats, args.max_steps, not args.no_sgd))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows, args.precision)
    if args.json:
        atomic_write_json(Path(args.json), {
            "command": " ".join(["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d"),
            "precision": args.precision,
            "environment": environment(),
            "rows": rows,
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
