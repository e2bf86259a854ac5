"""``w2sjax large``: one large student against one or more teachers, by the route that fits (eigh or Krylov).

The fig2-style problem: x ~ N(0, I_d), random features with the default weight law (``sweep.student_weights``,
``sweep.teacher_weights``), linear target ⟨e₁, x⟩ (‖β‖ = 1). Writes DIR/results.json atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from w2sjax._checks import check_positive_int
from w2sjax._io import atomic_write_json
from w2sjax.commands.solve import log_times
from w2sjax.features import ACTIVATIONS
from w2sjax.krylov import DEFAULT_MAX_BLOCKS, DEFAULT_TIME_RTOL, DEFAULT_TOL
from w2sjax.methods import KRYLOV_MIN_WIDTH, METHODS, OPERATORS


def register(sub) -> None:
    p = sub.add_parser(
        "large",
        help="one large student by the route that fits (dense eigh or Krylov quadrature)",
        description="Weak-to-strong curves of one student of M_ST random features (x ~ N(0, I_d), linear target "
        "<e1, x>) against teachers of the given widths, by dense eigendecomposition or by block Lanczos "
        "quadrature with matrix-free Gram products (--method auto picks from the size and the device memory). "
        "Writes DIR/results.json.",
    )
    p.add_argument("--student-width", type=int, required=True, metavar="M", help="M_ST")
    p.add_argument("--teacher-width", type=int, nargs="+", required=True, metavar="m", help="one or more M_TE")
    p.add_argument("--dim", type=int, default=32, metavar="d", help="input dimension (default 32)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    p.add_argument("--method", default="auto", choices=METHODS, help="route (default auto)")
    p.add_argument(
        "--operator", default="auto", choices=OPERATORS,
        help="Krylov's Gram matrix: stored (dense), matrix-free tiles (tiled), or auto (stored if it fits)",
    )
    p.add_argument(
        "--times", nargs=3, type=float, default=(-1.0, 4.0, 200), metavar=("START", "STOP", "NUM"),
        help="log10 of the first and last time and the number of times (default -1 4 200)",
    )
    p.add_argument("--tol", type=float, default=DEFAULT_TOL, help=f"absolute tolerance on L_ST (default {DEFAULT_TOL:g})")
    p.add_argument(
        "--time-rtol", type=float, default=DEFAULT_TIME_RTOL,
        help=f"relative tolerance on t* (default {DEFAULT_TIME_RTOL:g})",
    )
    p.add_argument("--max-blocks", type=int, default=DEFAULT_MAX_BLOCKS, help="most block Lanczos steps")
    p.add_argument("--tile-rows", type=int, default=None, help="rows per kernel tile (default: from memory)")
    p.add_argument("--student-seed", type=int, default=0)
    p.add_argument("--teacher-seed", type=int, default=0)
    p.add_argument("--memory-gb", type=float, default=None, help="memory per device to plan with (default: measured)")
    p.add_argument(
        "--krylov-min-width", type=int, default=KRYLOV_MIN_WIDTH,
        help=f"auto uses Krylov from this student width on (default {KRYLOV_MIN_WIDTH})",
    )
    p.add_argument("--shard", action="store_true", help="spread the kernel tiles over every device (a 'tiles' mesh)")
    p.add_argument(
        "--distributed", action="store_true",
        help="call jax.distributed.initialize() first (multi-host: run the same command on every process)",
    )
    p.add_argument("--precision", default="float64", choices=("float64", "float32"))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    check_positive_int(args.student_width, "--student-width")
    for m in args.teacher_width:
        check_positive_int(m, "--teacher-width")
    check_positive_int(args.dim, "--dim")
    check_positive_int(args.max_blocks, "--max-blocks")
    if args.tile_rows is not None:
        check_positive_int(args.tile_rows, "--tile-rows")
    if not (np.isfinite(args.tol) and args.tol > 0):
        raise ValueError(f"--tol must be a positive number; got {args.tol}")
    if not (np.isfinite(args.time_rtol) and args.time_rtol > 0):
        raise ValueError(f"--time-rtol must be a positive number; got {args.time_rtol}")
    if args.memory_gb is not None and not (np.isfinite(args.memory_gb) and args.memory_gb > 0):
        raise ValueError(f"--memory-gb must be a positive number; got {args.memory_gb}")
    if args.times[0] <= -300:
        raise ValueError("--times START is log10 of the first time; pick a START above -300")


def run(args) -> int:
    _check_args(args)
    import jax
    import jax.numpy as jnp

    if args.distributed:
        jax.distributed.initialize()

    from w2sjax.environment import environment
    from w2sjax.features import RandomFeatures
    from w2sjax.inputs import gaussian_inputs, linear_target
    from w2sjax.methods import solve
    from w2sjax.sharding import device_mesh
    from w2sjax.sweep import student_weights, teacher_weights

    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    times = log_times(*args.times)
    d = args.dim
    inputs = gaussian_inputs(d, dtype=dtype)
    beta = np.zeros(d)
    beta[0] = 1.0
    target = linear_target(beta, dtype)
    w_s = student_weights(args.student_seed, args.student_width, d, args.activation)
    student = RandomFeatures(w_s.astype(dtype), jnp.asarray(args.student_width, dtype), args.activation)
    teachers = [
        RandomFeatures(
            teacher_weights(args.teacher_seed, m, d, args.activation).astype(dtype), jnp.asarray(m, dtype), args.activation
        )
        for m in args.teacher_width
    ]
    mesh = device_mesh() if args.shard else None
    memory = None if args.memory_gb is None else int(args.memory_gb * 2**30)
    clock = time.perf_counter()
    solution = solve(
        student,
        teachers,
        target,
        inputs,
        times,
        method=args.method,
        operator=args.operator,
        tol=args.tol,
        time_rtol=args.time_rtol,
        max_blocks=args.max_blocks,
        tile_rows=args.tile_rows,
        mesh=mesh,
        memory_bytes=memory,
        krylov_min_width=args.krylov_min_width,
    )
    jax.block_until_ready(solution.results[-1].student_loss)
    seconds = time.perf_counter() - clock
    record = solution.to_dict()
    for m, r in zip(args.teacher_width, record["results"]):
        r["teacher_width"] = m
    record.update(
        config={
            "student_width": args.student_width,
            "teacher_widths": list(args.teacher_width),
            "dim": d,
            "activation": args.activation,
            "target": "linear, beta = e1",
            "inputs": "gaussian, identity covariance",
            "method": args.method,
            "operator": args.operator,
            "times": {"log10_start": args.times[0], "log10_stop": args.times[1], "num": int(args.times[2])},
            "tol": args.tol,
            "time_rtol": args.time_rtol,
            "max_blocks": args.max_blocks,
            "tile_rows": args.tile_rows,
            "student_seed": args.student_seed,
            "teacher_seed": args.teacher_seed,
            "precision": args.precision,
            "sharded": bool(args.shard),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
        },
        seconds=seconds,
        environment=environment(),
    )
    out = Path(args.out) / "results.json"
    if jax.process_index() == 0:
        atomic_write_json(out, record)
    route = solution.method + (f" ({solution.plan.operator} operator)" if solution.method == "krylov" else "")
    extra = ""
    if solution.krylov is not None:
        k = solution.krylov
        extra = f", {k.blocks} blocks of {k.block_size}, error estimate {k.error_estimate:.2g}"
    print(f"M_ST = {args.student_width}: {route}{extra}, {seconds:.3g} s")
    for m, r in zip(args.teacher_width, record["results"]):
        print(
            f"  M_TE = {m:>6}   L_TE = {_fmt(r['teacher_loss'])}   L_ST* = {_fmt(r['best_student_loss'])}"
            f" at t* = {_fmt(r['best_time'])}   ratio = {_fmt(r['ratio'])}"
        )
    if jax.process_index() == 0:
        print(f"wrote {out}")
    return 0


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, (int, float)) else str(x)
