"""``w2sjax large``: one large student against one or more teachers, by the route that fits.

The fig2-style problem: x ~ N(0, I_d), random features with the default weight law (``features.student_weights``,
``teacher_weights``), linear target ⟨e₁, x⟩. Writes DIR/results.json atomically.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from w2sjax._checks import check_positive_int
from w2sjax.commands._common import add_max_hours_option, add_times_option, check_estimate, number, time_grid
from w2sjax.engine import DEFAULT_MAX_BLOCKS, DEFAULT_TIME_RTOL, DEFAULT_TOL, METHODS, OPERATORS
from w2sjax.features import ACTIVATIONS
from w2sjax.studies.config import PRECISIONS


def width(text: str):
    """A student width: a positive integer or "inf"."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--student-width must be a positive integer or inf; got {text!r}") from None
    if value != int(value) or value < 1:
        raise ValueError(f"--student-width must be a positive integer or inf; got {text!r}")
    return int(value)


def register(sub) -> None:
    p = sub.add_parser(
        "large",
        help="one large student by the route that fits (dense eigh or Krylov quadrature)",
        description="Weak-to-strong figures of one student of M_ST random features (x ~ N(0, I_d), linear target "
        "<e1, x>) against teachers of the given widths, by dense eigendecomposition or block Lanczos quadrature "
        "(stored, matrix-free or sharded Gram products); --method auto picks from the size and the memory. "
        "Writes DIR/results.json.",
    )
    p.add_argument("--student-width", type=str, required=True, metavar="M", help="M_ST (an integer, or inf)")
    p.add_argument("--teacher-width", type=int, nargs="+", required=True, metavar="m", help="one or more M_TE")
    p.add_argument("--dim", type=int, default=32, metavar="d", help="input dimension")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="activation")
    p.add_argument("--method", default="auto", choices=METHODS, help="route")
    p.add_argument("--operator", default="auto", choices=OPERATORS,
                   help="Krylov's G: stored, matrix-free tiles (tiled), sharded over devices, or auto")
    add_times_option(p)
    p.add_argument("--tol", type=float, default=DEFAULT_TOL, help="Krylov: error estimate of every loss ≤ tol·s*")
    p.add_argument("--time-rtol", type=float, default=DEFAULT_TIME_RTOL, help="Krylov: relative tolerance on t*")
    p.add_argument("--max-blocks", type=int, default=DEFAULT_MAX_BLOCKS, help="Krylov: most block steps")
    p.add_argument("--tile-rows", type=int, default=None, help="rows per kernel tile (default: from the backend)")
    p.add_argument("--student-seed", type=int, default=0, help="seed of the student's weights")
    p.add_argument("--teacher-seed", type=int, default=0, help="seed of the teachers' weights")
    p.add_argument("--memory-gb", type=float, default=None, help="memory per device to plan with (default: measured)")
    p.add_argument("--shard", action="store_true", help="spread the kernel tiles over every device (--operator sharded)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host: run the same command on every process)")
    p.add_argument("--precision", default="float64", choices=PRECISIONS, help="float64 or float32")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    add_max_hours_option(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def _check_args(args):
    m = width(args.student_width)
    for t in args.teacher_width:
        check_positive_int(t, "--teacher-width")
    check_positive_int(args.dim, "--dim")
    check_positive_int(args.max_blocks, "--max-blocks")
    for value, flag in ((args.student_seed, "--student-seed"), (args.teacher_seed, "--teacher-seed")):
        if value < 0:
            raise ValueError(f"{flag} must be an integer >= 0; got {value}")
    if args.tile_rows is not None:
        check_positive_int(args.tile_rows, "--tile-rows")
    for value, flag in ((args.tol, "--tol"), (args.time_rtol, "--time-rtol")):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a positive number; got {value}")
    if args.memory_gb is not None and not (np.isfinite(args.memory_gb) and args.memory_gb > 0):
        raise ValueError(f"--memory-gb must be a positive number; got {args.memory_gb}")
    return m


def run(args) -> int:
    m = _check_args(args)
    times = time_grid(args)
    import jax
    import jax.numpy as jnp

    if args.distributed:
        jax.distributed.initialize()
    from w2sjax._io import atomic_write_json
    from w2sjax.environment import environment
    from w2sjax.features import RandomFeatures, teacher_weights
    from w2sjax.inputs import gaussian_inputs
    from w2sjax.routes.sharding import device_mesh
    from w2sjax.studies.config import StudyConfig
    from w2sjax.studies.runner import build_student, check_output_folder, check_study_size, plan_study
    from w2sjax.targets import linear_target
    from w2sjax.w2s import weak_to_strong

    out = Path(args.out)
    if jax.process_index() == 0:
        check_output_folder(out, runs=False)
    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    d = args.dim
    config = StudyConfig(teacher_widths=tuple(sorted(set(args.teacher_width))), student_widths=(m,), input_dims=(d,),
                         activation=args.activation, precision=args.precision, seeds=(args.student_seed,),
                         method=args.method)
    memory = None if args.memory_gb is None else int(args.memory_gb * 2**30)
    check_study_size(config, memory)  # before any weights are drawn
    if not (args.shard or args.operator == "sharded"):
        plan = plan_study(config, memory_bytes=memory)
        check_estimate(plan.seconds, args.max_hours)
        if not args.no_progress:
            print(f"M_ST = {args.student_width}: {plan.describe()}", flush=True)
    inputs = gaussian_inputs(d, dtype=dtype)
    beta = np.zeros(d)
    beta[0] = 1.0
    target = linear_target(beta, dtype)
    student = build_student(config, d, m, args.student_seed)
    teachers = [RandomFeatures(teacher_weights(args.teacher_seed, t, d, args.activation).astype(dtype),
                               jnp.asarray(t, dtype), args.activation) for t in args.teacher_width]
    options = dict(tol=args.tol, time_rtol=args.time_rtol, max_blocks=args.max_blocks, tile_rows=args.tile_rows,
                   memory_bytes=None if args.memory_gb is None else int(args.memory_gb * 2**30))
    if args.shard or args.operator == "sharded":
        options.update(mesh=device_mesh(), operator="sharded")
    elif args.operator != "auto":
        options["operator"] = args.operator
    if not args.no_progress:
        options["progress"] = lambda blocks, estimate: print(
            f"  Krylov: {blocks} blocks, estimated error {estimate:.2g}·s*", file=sys.stderr, flush=True)
    if math.isinf(m):
        options = {}
    clock = time.perf_counter()
    result = jax.block_until_ready(weak_to_strong(student, teachers, target, inputs, times, method=args.method,
                                                  **options))
    seconds = time.perf_counter() - clock
    record = result.to_dict()
    record.update(
        config={"student_width": "inf" if math.isinf(m) else m, "teacher_widths": list(args.teacher_width), "dim": d,
                "activation": args.activation, "target": "linear, beta = e1", "inputs": "gaussian, identity",
                "method": args.method, "operator": args.operator, "times": list(args.times), "tol": args.tol,
                "time_rtol": args.time_rtol, "max_blocks": args.max_blocks, "tile_rows": args.tile_rows,
                "student_seed": args.student_seed, "teacher_seed": args.teacher_seed, "precision": args.precision,
                "devices": jax.device_count(), "processes": jax.process_count()},
        seconds=seconds, environment=environment(),
    )
    if jax.process_index() == 0:
        atomic_write_json(out / "results.json", record)
    route = result.route
    extra = f", {route.blocks} blocks" if route.blocks else ""
    print(f"M_ST = {args.student_width}: {route.method}{'/' + route.operator if route.operator else ''}{extra}, "
          f"{seconds:.3g} s ({route.reason})")
    for i, t in enumerate(args.teacher_width):
        r = result.select(i)
        print(f"  M_TE = {t:>6}   L_TE = {number(r.teacher_loss)}   L_ST* = {number(r.best_student_loss)} at t* = "
              f"{number(r.best_time)}   ratio = {number(r.ratio)}   error estimate {number(r.error.best_student_loss)}")
    if jax.process_index() == 0:
        print(f"wrote {out / 'results.json'}")
    return 0
