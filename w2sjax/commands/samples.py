"""``w2sjax samples``: teacher and students trained on n samples (drawn, or your own arrays), as a study.

Two modes, both run by the study runner (planned, with progress, resumable in DIR):
  drawn:  --n N --dim D [--distribution gaussian|sphere]: samples drawn per seed; exact population errors;
  yours:  --inputs X.npy --heldout XH.npy: your training inputs; errors are mean squares over the held-out
          array. Labels come from --target on both arrays, or from your --labels Y.npy and --heldout-labels YH.npy.
"""

from __future__ import annotations

import math

from w2sjax.commands._common import add_study_options, add_times_option, execute, override
from w2sjax.features import ACTIVATIONS

TARGETS = ("relu-network", "linear")


def register(sub) -> None:
    p = sub.add_parser(
        "samples",
        help="finite-sample W2S: teacher and students trained on n samples (or your own inputs)",
        description="Teacher (M_TE features) fitted on n samples with the true labels, students trained by gradient "
        "flow on the teacher's values at the same samples; errors are population errors (exact moments for drawn "
        "samples; mean squares over --heldout for your own inputs). The ceiling is the student on the true labels "
        "at its own best time. Writes DIR/results.json, curves.csv, config.toml and figures; resumable like "
        "`w2sjax run`.",
    )
    data = p.add_argument_group("data (give --inputs and --heldout, or --n and --dim)")
    data.add_argument("--inputs", metavar="X.npy", help="your training inputs, an (n, d) array")
    data.add_argument("--heldout", metavar="XH.npy", help="held-out inputs (m, d): errors are means over them")
    data.add_argument("--labels", metavar="Y.npy", help="your labels on --inputs, (n,) (instead of --target)")
    data.add_argument("--heldout-labels", metavar="YH.npy", help="your labels on --heldout, (m,)")
    data.add_argument("--n", type=int, help="number of samples to draw per seed (drawn mode)")
    data.add_argument("--dim", type=int, help="input dimension d (drawn mode; with your data, read from it)")
    data.add_argument("--distribution", default="gaussian", choices=("gaussian", "sphere"),
                      help="input law of the drawn mode (N(0, I) or the sphere of radius √d)")
    tg = p.add_argument_group("target")
    tg.add_argument("--target", default="relu-network", choices=TARGETS,
                    help="f*: a random ReLU network standardised to unit variance, or <e1, x>")
    tg.add_argument("--target-units", type=int, default=64, help="units of the ReLU-network target")
    tg.add_argument("--target-seed", type=int, default=0, help="seed of the ReLU-network target")
    md = p.add_argument_group("models and training")
    md.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="activation of every feature")
    md.add_argument("--teacher-width", type=int, default=48, help="M_TE")
    md.add_argument("--student-widths", type=int, nargs="+", default=[256, 512, 1024], metavar="M",
                    help="student widths M_ST")
    md.add_argument("--teacher-time", type=float, default=math.inf, help="gradient-flow time of the teacher "
                    "(default inf: least squares)")
    add_times_option(md, (0.1, 1e6, 141))
    md.add_argument("--ridge", action="store_true", help="also ridge students on the same samples at μ = 1/t")
    add_study_options(p, "results/samples")
    p.set_defaults(func=run)


def build_config(args):
    from w2sjax.studies.config import StudyConfig
    from w2sjax.studies.runner import load_array

    own = args.inputs is not None or args.heldout is not None
    if own:
        if args.inputs is None or args.heldout is None:
            raise ValueError("your own data needs both --inputs X.npy (training) and --heldout XH.npy (for the errors)")
        if args.n is not None:
            raise ValueError("--n draws samples; with --inputs the samples are yours: drop --n")
        dim = load_array(args.inputs, "--inputs", 2).shape[1]
        if args.dim is not None and args.dim != dim:
            raise ValueError(f"--dim {args.dim} does not match --inputs, which has dimension {dim}")
    else:
        if args.labels is not None or args.heldout_labels is not None:
            raise ValueError("--labels/--heldout-labels go with --inputs/--heldout (your own data)")
        if args.n is None or args.dim is None:
            raise ValueError("give --inputs X.npy and --heldout XH.npy, or --n N and --dim D to draw samples")
        if args.n <= 0 or args.dim <= 0:
            raise ValueError(f"--n and --dim must be positive integers; got {args.n}, {args.dim}")
        dim = args.dim
    first, last, num = args.times
    return StudyConfig(
        name="samples", description=f"finite samples ({'your data' if own else f'n = {args.n} drawn'})",
        activation=args.activation, input_kind="gaussian" if own else args.distribution, input_dims=(dim,),
        target="relu-network" if args.target == "relu-network" else "hermite", target_units=args.target_units,
        target_seed=args.target_seed, student_widths=tuple(args.student_widths), teacher_widths=(args.teacher_width,),
        seeds=(0,), times=(first, last), num_times=int(num) if num == int(num) else num,
        samples=0 if own else args.n, teacher_time=args.teacher_time, ridge=args.ridge,
        inputs_file=args.inputs or "", heldout_file=args.heldout or "", labels_file=args.labels or "",
        heldout_labels_file=args.heldout_labels or "",
    )


def run(args) -> int:
    config = override(build_config(args), args)
    return execute(config, args.out or "results/samples", args)
