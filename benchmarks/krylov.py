"""Krylov quadrature against the dense eigendecomposition, on the fig2 workload.

    python benchmarks/krylov.py [--quick] [--fig2-width M] [--sizes M ...] [--dense-sizes M ...]
                                [--tmax 1e4 1e6 ...] [--repeats R] [--precision float64|float32] [--json FILE]

The fig2 workload: ReLU, d = 32, linear target x_1, teachers M_TE ∈ {16, 32, 64, 128, 256} (one block Krylov
basis of 6 vectors serves all five), times logspace(-1, 4, 1000) (the range that holds t* and the overtraining
rise). Every timing is end to end through ``methods.solve`` (moments, teachers, decomposition or Krylov
iterations, curves, t*), after a warm-up call that compiles, median of --repeats.

  fig2       dense (eigh) against Krylov with the stored Gram matrix and Krylov matrix-free, at --fig2-width:
             seconds, speed-up, max |ΔL_ST| over the grid and max |Δt*| against eigh, blocks;
  crossover  at --fig2-width, the last time of the grid pushed to each --tmax: Krylov seconds, blocks and
             accuracy against the (time-independent) dense route; the dense route wins beyond the first t_max
             where Krylov is slower or cannot meet its tolerance within its block budget (M/(2p) blocks);
  scaling    Krylov matrix-free at --sizes and dense at --dense-sizes: seconds, blocks, memory (the device's
             peak bytes in use where it reports them — GPUs — else the process's peak resident memory; sizes
             run in ascending order so a peak belongs to the largest size so far) and the planner's estimate;
             the exponent of seconds ∝ M^α fitted by least squares on log–log axes.
  largest    the largest student the planner fits on this device (matrix-free Krylov) and its time
             extrapolated from the fitted exponent (not run).

--quick: small sizes for a 2-core CPU (about two minutes). Without it: the issue's GPU sizes (fig2 at
M_ST = 16384; scaling up to 131072); where one command has a time limit, run the sections separately with
--skip (e.g. ``--skip scaling`` then ``--skip fig2 crossover``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import w2sjax  # noqa: F401  (float64)
from w2sjax import methods
from w2sjax._io import atomic_write_json
from w2sjax.environment import environment
from w2sjax.features import RandomFeatures
from w2sjax.inputs import gaussian_inputs, linear_target
from w2sjax.krylov import KrylovConvergenceWarning
from w2sjax.spectral import best_time, student_loss
from w2sjax.sweep import student_weights, teacher_weights

D = 32
TEACHER_WIDTHS = (16, 32, 64, 128, 256)
T_MIN, T_MAX, NUM_TIMES = 1e-1, 1e4, 1000
FULL = dict(fig2_width=16384, sizes=(16384, 32768, 65536, 131072), dense_sizes=(4096, 8192, 16384),
            tmax=(1e4, 1e5, 1e6, 1e7, 1e8, 1e10, 1e12))
QUICK = dict(fig2_width=2048, sizes=(512, 1024, 2048, 4096), dense_sizes=(512, 1024, 2048),
             tmax=(1e4, 1e6, 1e8, 1e10, 1e12))


def problem(width: int, dtype):
    inputs = gaussian_inputs(D, dtype=dtype)
    beta = np.zeros(D)
    beta[0] = 1.0
    target = linear_target(beta, dtype)
    student = RandomFeatures(student_weights(0, width, D, "relu").astype(dtype), jnp.asarray(width, dtype), "relu")
    teachers = [
        RandomFeatures(teacher_weights(0, m, D, "relu").astype(dtype), jnp.asarray(m, dtype), "relu")
        for m in TEACHER_WIDTHS
    ]
    return student, teachers, target, inputs


def peak_memory_bytes() -> tuple[int, str]:
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024), "process peak RSS"


def timed_solve(width, dtype, times, repeats, **options):
    """(median seconds, Solution) of methods.solve after a warm-up call."""
    student, teachers, target, inputs = problem(width, dtype)

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KrylovConvergenceWarning)
            sol = methods.solve(student, teachers, target, inputs, times, **options)
        jax.block_until_ready([r.student_loss for r in sol.results])
        return sol

    sol = call()
    samples = []
    for _ in range(repeats):
        clock = time.perf_counter()
        sol = call()
        samples.append(time.perf_counter() - clock)
    return (statistics.median(samples) if samples else float("nan")), sol


def compare(a, b) -> tuple[float, float]:
    loss = max(float(np.max(np.abs(np.asarray(x.student_loss) - np.asarray(y.student_loss))))
               for x, y in zip(a.results, b.results))
    best = max(abs(float(x.best_time) - float(y.best_time)) for x, y in zip(a.results, b.results))
    return loss, best


def fit_exponent(widths, seconds) -> float | None:
    if len(widths) < 2:
        return None
    return float(np.polyfit(np.log(widths), np.log(seconds), 1)[0])


def run_fig2(width, dtype, repeats, tol):
    times = np.logspace(np.log10(T_MIN), np.log10(T_MAX), NUM_TIMES)
    dense_s, dense = timed_solve(width, dtype, times, repeats, method="eigh")
    out = {"width": width, "dense_seconds": dense_s, "routes": {},
           "_problems": [jax.tree_util.tree_map(jnp.asarray, r.problem) for r in dense.results]}
    print(f"\nfig2 at M_ST = {width} (5 teachers, {NUM_TIMES} times in [{T_MIN:g}, {T_MAX:g}]): eigh {dense_s:.3g} s")
    for operator in ("dense", "tiled"):
        try:
            sec, sol = timed_solve(width, dtype, times, repeats, method="krylov", operator=operator, tol=tol)
        except ValueError as err:  # the stored Gram matrix may not fit
            out["routes"][operator] = {"error": str(err)}
            print(f"  krylov ({operator}): {err}")
            continue
        loss, best = compare(sol, dense)
        k = sol.krylov
        out["routes"][operator] = {
            "seconds": sec, "speedup": dense_s / sec, "blocks": k.blocks, "dimension": k.dimension,
            "converged": k.converged, "error_estimate": k.error_estimate,
            "max_abs_loss_diff": loss, "max_abs_best_time_diff": best,
        }
        print(f"  krylov ({operator:5s}): {sec:.3g} s = {dense_s / sec:.3g}× faster, {k.blocks} blocks "
              f"(dimension {k.dimension}), max|ΔL| {loss:.2g}, max|Δt*| {best:.2g}")
    return out


def compare_with_spectral(sol, problems, times) -> tuple[float, float]:
    """max |ΔL_ST| and |Δt*| against the dense route's spectral problems evaluated on ``times``."""
    t = jnp.asarray(times)
    loss = best = 0.0
    for result, problem in zip(sol.results, problems):
        curve = student_loss(problem, t)
        t_best, _ = best_time(problem, t, curve)
        loss = max(loss, float(np.max(np.abs(np.asarray(result.student_loss) - np.asarray(curve)))))
        best = max(best, abs(float(result.best_time) - float(t_best)))
    return loss, best


def run_crossover(width, dtype, repeats, tol, tmaxes, dense_seconds, dense_problems):
    rows = []
    print(f"\ncrossover at M_ST = {width}: dense {dense_seconds:.3g} s at every t_max")
    budget = max(8, width // (2 * (len(TEACHER_WIDTHS) + 1)))
    crossover = None
    for tmax in tmaxes:
        times = np.logspace(np.log10(T_MIN), np.log10(tmax), NUM_TIMES)
        sec, sol = timed_solve(width, dtype, times, repeats, method="krylov", operator="auto", tol=tol,
                               max_blocks=budget)
        loss, best = compare_with_spectral(sol, dense_problems, times)
        k = sol.krylov
        rows.append({"tmax": tmax, "seconds": sec, "blocks": k.blocks, "converged": k.converged,
                     "max_abs_loss_diff": loss, "max_abs_best_time_diff": best})
        print(f"  t_max = {tmax:8.0e}: krylov {sec:.3g} s, {k.blocks} blocks, converged {k.converged}, "
              f"max|ΔL| {loss:.2g}, max|Δt*| {best:.2g}")
        if crossover is None and (not k.converged or sec >= dense_seconds):
            crossover = tmax
    return {"width": width, "dense_seconds": dense_seconds, "block_budget": budget, "rows": rows,
            "dense_wins_from_tmax": crossover}


def run_scaling(sizes, dense_sizes, dtype, repeats, tol):
    times = np.logspace(np.log10(T_MIN), np.log10(T_MAX), NUM_TIMES)
    rows = []
    print("\nscaling (matrix-free Krylov; dense eigh)")
    for route, widths in (("krylov", sizes), ("eigh", dense_sizes)):
        for m in sorted(widths):
            options = dict(method="krylov", operator="tiled", tol=tol) if route == "krylov" else dict(method="eigh")
            try:
                sec, sol = timed_solve(m, dtype, times, repeats, **options)
            except ValueError as err:
                rows.append({"route": route, "width": m, "error": str(err)})
                print(f"  {route} M = {m}: {err}")
                continue
            peak, source = peak_memory_bytes()
            plan = sol.plan
            row = {"route": route, "width": m, "seconds": sec, "peak_memory_bytes": peak, "memory_source": source,
                   "planned_bytes": plan.needed_bytes}
            if sol.krylov is not None:
                row.update(blocks=sol.krylov.blocks, converged=sol.krylov.converged)
            rows.append(row)
            print(f"  {route:6s} M = {m:7d}: {sec:.3g} s, peak {peak / 2**20:.0f} MiB ({source}), "
                  f"planned {plan.needed_bytes / 2**20:.0f} MiB" + (f", {row['blocks']} blocks" if "blocks" in row else ""))
    exponents = {}
    for route in ("krylov", "eigh"):
        ok = [r for r in rows if r["route"] == route and "seconds" in r]
        exponents[route] = fit_exponent([r["width"] for r in ok], [r["seconds"] for r in ok])
        if exponents[route] is not None:
            print(f"  fitted exponent, {route}: seconds ∝ M^{exponents[route]:.2f}")
    return {"rows": rows, "exponents": exponents}


def run_largest(scaling, dtype):
    itemsize = jnp.dtype(dtype).itemsize
    memory = methods.device_memory_bytes()
    width = methods._largest_width(
        lambda m: methods.krylov_bytes(m, D, len(TEACHER_WIDTHS) + 1, itemsize=itemsize, operator="tiled") <= memory
    )
    ok = [r for r in scaling["rows"] if r["route"] == "krylov" and "seconds" in r]
    alpha = scaling["exponents"].get("krylov")
    predicted = None
    if ok and alpha is not None:
        last = max(ok, key=lambda r: r["width"])
        predicted = last["seconds"] * (width / last["width"]) ** alpha
    print(f"\nlargest matrix-free Krylov student that fits {memory / 2**30:.3g} GiB: M_ST = {width:,}"
          + (f", predicted {predicted:.3g} s" if predicted is not None else ""))
    return {"memory_bytes": memory, "width": width, "predicted_seconds": predicted}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CPU")
    parser.add_argument("--fig2-width", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="Krylov (matrix-free) scaling sizes")
    parser.add_argument("--dense-sizes", type=int, nargs="+", default=None, help="dense scaling sizes")
    parser.add_argument("--tmax", type=float, nargs="+", default=None, help="last times for the crossover")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="float64", choices=("float64", "float32"))
    parser.add_argument("--skip", nargs="*", default=(), choices=("fig2", "crossover", "scaling", "largest"))
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    fig2_width = args.fig2_width or preset["fig2_width"]
    sizes = args.sizes or preset["sizes"]
    dense_sizes = args.dense_sizes or preset["dense_sizes"]
    tmaxes = args.tmax or preset["tmax"]
    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    env = environment()
    print(f"device: {env['device']} ({env['backend']}, {env['device_count']} device(s)), jax {env['jax']}, "
          f"{args.precision}")
    report = {"environment": env, "precision": args.precision, "quick": args.quick, "tol": args.tol,
              "repeats": args.repeats, "command": " ".join(sys.argv)}
    dense_seconds = dense_problems = None
    if "fig2" not in args.skip:
        report["fig2"] = run_fig2(fig2_width, dtype, args.repeats, args.tol)
        dense_seconds, dense_problems = report["fig2"]["dense_seconds"], report["fig2"].pop("_problems")
    if "crossover" not in args.skip:
        if dense_seconds is None:
            dense_seconds, dense = timed_solve(fig2_width, dtype, np.logspace(-1, 4, NUM_TIMES), args.repeats,
                                               method="eigh")
            dense_problems = [jax.tree_util.tree_map(jnp.asarray, r.problem) for r in dense.results]
        report["crossover"] = run_crossover(fig2_width, dtype, args.repeats, args.tol, tmaxes, dense_seconds,
                                            dense_problems)
    if "scaling" not in args.skip:
        report["scaling"] = run_scaling(sizes, dense_sizes, dtype, args.repeats, args.tol)
        if "largest" not in args.skip:
            report["largest"] = run_largest(report["scaling"], dtype)
    if args.json:
        atomic_write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
