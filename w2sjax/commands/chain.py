"""``w2sjax chain``: a chain of students teacher → S_1 → … → S_K on the population, every stage exactly."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

from w2sjax.commands._common import add_times_option, number, time_grid
from w2sjax.features import ACTIVATIONS
from w2sjax.studies.config import METHODS

CURVE_COLUMNS = ("seed", "teacher_width", "stage", "stage_width", "time", "student_loss", "teacher_loss", "loss_ratio")


def register(sub) -> None:
    p = sub.add_parser(
        "chain",
        help="a chain of students: teacher -> S_1 -> S_2 -> ..., each trained on the previous stage's function",
        description="Stage 1 learns from the teacher (fitted to f* = x_1 by least squares); stage k >= 2 learns by "
        "gradient flow from the function of stage k-1 at its stopping time ('best': its own t*, a number: that "
        "time, inf: least squares). Inputs x ~ N(0, I_d); every stage is scored against f* and its ratio and PGR "
        "are against the teacher's L_TE. Writes DIR/results.json (every stage's figures of merit, per seed) and "
        "DIR/curves.csv (L_k(t) per seed, teacher, stage).",
    )
    p.add_argument("--stages", required=True, nargs="+", type=int, metavar="M",
                   help="widths of the stages, in order (e.g. 512 1024 1024)")
    p.add_argument("--stage-times", nargs="+", default=["best"], metavar="T",
                   help="time at which each stage but the last labels the next: 'best' (its own t*), a number, or "
                   "inf; one value for all, or one per stage but the last (default best)")
    p.add_argument("--teacher-width", required=True, nargs="+", type=int, metavar="M_TE",
                   help="teacher width(s); each teacher labels its own chain")
    p.add_argument("--dim", type=int, default=16, help="input dimension d")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="activation of every model")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 (weights of teacher and stages)")
    add_times_option(p)
    p.add_argument("--method", default="auto", choices=[m for m in METHODS if m != "infinite"],
                   help="route of every stage")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def parse_stage_times(values, count: int) -> list:
    """'best' | number | 'inf' per entry; one entry is used for every labelling stage (ValueError on bad input)."""
    entries = []
    for v in values:
        text = str(v).strip().lower()
        if text == "best":
            entries.append("best")
            continue
        try:
            t = float(text)
        except ValueError:
            raise ValueError(f"--stage-times takes 'best', a time >= 0 or inf; got {v!r}") from None
        if not t >= 0:
            raise ValueError(f"--stage-times takes 'best', a time >= 0 or inf; got {v!r}")
        entries.append(t)
    if count == 1:
        return []
    if len(entries) == 1:
        return entries * (count - 1)
    if len(entries) != count - 1:
        raise ValueError(f"--stage-times needs one value or {count - 1} (one per stage but the last); got {len(entries)}")
    return entries


def check_sizes(args) -> None:
    for name, values in (("--stages", args.stages), ("--teacher-width", args.teacher_width)):
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"{name} takes positive integers; got {bad[0]}")
    if args.dim < 1:
        raise ValueError(f"--dim must be a positive integer; got {args.dim}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer; got {args.seeds}")


def run(args) -> int:
    import jax
    import numpy as np

    from w2sjax._io import atomic_write_json, atomic_write_text
    from w2sjax.chains import chain, chain_stages
    from w2sjax.environment import environment
    from w2sjax.features import random_features, teacher_weights
    from w2sjax.inputs import gaussian_inputs
    from w2sjax.studies.runner import check_output_folder
    from w2sjax.targets import linear_target

    check_sizes(args)
    times = time_grid(args)
    stage_times = parse_stage_times(args.stage_times, len(args.stages))
    out = Path(args.out)
    check_output_folder(out, runs=False)
    d = args.dim
    beta = np.zeros(d)
    beta[0] = 1.0
    target, inputs = linear_target(beta), gaussian_inputs(d)
    runs, csv = [], io.StringIO()
    csv.write(",".join(CURVE_COLUMNS) + "\n")
    clock = time.perf_counter()
    for seed in range(args.seeds):
        stages = chain_stages(seed, args.stages, d, args.activation)
        teachers = [random_features(teacher_weights(seed, m, d, args.activation), args.activation)
                    for m in args.teacher_width]
        result = jax.device_get(chain(stages, teachers, target, inputs, times,
                                      stage_times=stage_times or "best", method=args.method))
        runs.append({"seed": seed, **result.to_dict()})
        for i, m_te in enumerate(args.teacher_width):
            one = result.select(i)
            lte = float(one.teacher_loss)
            print(f"seed {seed}, M_TE = {m_te}: L_TE = {number(lte)}")
            for k, (stage, width) in enumerate(zip(one, args.stages), start=1):
                label = "" if k == len(args.stages) else f"   labels stage {k + 1} at t = {number(one.label_times[k - 1])}"
                print(f"  stage {k} (M = {width}): L* = {number(stage.best_student_loss)} at t* = "
                      f"{number(stage.best_time)}   L*/L_TE = {number(stage.ratio)}   L*/L_TE^2 = "
                      f"{number(float(stage.best_student_loss) / lte ** 2 if lte > 0 else math.nan)}   PGR = "
                      f"{number(stage.pgr)}   L(inf) = {number(stage.student_loss_at_infinity)}   "
                      f"[{stage.route.method}]{label}")
                for t, value in zip(times, np.asarray(stage.student_loss)):
                    ratio = value / lte if lte > 0 else math.inf
                    csv.write(f"{seed},{m_te},{k},{width},{t:.17g},{value:.17g},{lte:.17g},{ratio:.17g}\n")
    seconds = time.perf_counter() - clock
    atomic_write_json(out / "results.json", {
        "stage_widths": args.stages, "stage_times": stage_times or [], "teacher_widths": args.teacher_width,
        "input_dim": d, "activation": args.activation, "target": "x_1", "inputs": "N(0, I)", "method": args.method,
        "seeds": list(range(args.seeds)), "runs": runs, "seconds": seconds, "environment": environment(),
    })
    atomic_write_text(out / "curves.csv", csv.getvalue())
    print(f"wrote {out / 'results.json'} and {out / 'curves.csv'} ({seconds:.1f} s)")
    return 0
