"""``w2sjax crosscheck``: the exact solver against optax training on a small problem, with pass/fail."""

from __future__ import annotations

import time
from pathlib import Path

from w2sjax._io import atomic_write_json
from w2sjax.environment import environment

EXIT_CODES = {"passed": 0, "failed": 1, "diverged": 1, "inconclusive": 3}


def register(sub) -> None:
    p = sub.add_parser(
        "crosscheck",
        help="check the closed form against optax training (GD, online SGD)",
        description="Train the top layer of a small ReLU W2S problem (x ~ N(0, I_d), f* = x_1) with optax and "
        "compare with the exact solver: GD on the population objective against the closed form of discrete GD "
        "(<= 1e-10) and against gradient flow (O(eta), fitted order in [0.8, 1.2]), and online SGD with fresh "
        "minibatches against the flow's best error and its time (within 5 standard errors over seeds). "
        "A statistical check whose noise could hide stopping a factor 2 off the optimal time is INCONCLUSIVE; a "
        "run whose error leaves the range of stable gradient descent (or is NaN/inf) is DIVERGED. "
        "Prints a table, writes DIR/crosscheck.json with --out. Exit status: 0 all passed, 1 a check failed or a "
        "run diverged, 3 inconclusive (nothing failed, but a check could not have detected a deviation).",
    )
    p.add_argument("--out", metavar="DIR", help="folder for crosscheck.json (default: print only)")
    p.add_argument("--seeds", type=int, default=4, help="online SGD seeds (default 4, at least 2)")
    p.add_argument("--seed", type=int, default=0, help="weight seed of teacher and student (default 0)")
    p.add_argument("--dim", type=int, default=16, help="input dimension d (default 16)")
    p.add_argument("--teacher-width", type=int, default=32, help="M_TE (default 32)")
    p.add_argument("--student-width", type=int, default=512, help="M_ST (default 512)")
    p.add_argument("--batch-size", type=int, default=1024, help="online SGD minibatch size (default 1024)")
    p.add_argument("--online-step", type=float, default=1.0, help="online SGD step size (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from w2sjax.crosscheck import CrosscheckConfig, format_report, run_crosscheck

    config = CrosscheckConfig(
        dim=args.dim,
        teacher_width=args.teacher_width,
        student_width=args.student_width,
        seed=args.seed,
        batch_size=args.batch_size,
        online_step_size=args.online_step,
        online_seeds=args.seeds,
    )
    if args.out is not None:  # a folder that cannot be written is refused before the training runs
        from w2sjax.studies.runner import check_output_folder

        check_output_folder(args.out, runs=False)
    clock = time.perf_counter()
    report = run_crosscheck(config)
    report["seconds"]["total"] = time.perf_counter() - clock
    print(format_report(report))
    if args.out is not None:
        report["environment"] = environment()
        path = Path(args.out) / "crosscheck.json"
        atomic_write_json(path, report)
        print(f"wrote {path}")
    return EXIT_CODES[report["status"]]
