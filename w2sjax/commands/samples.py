"""``w2sjax samples``: teacher and students trained on n samples (drawn, or the user's own array).

Two modes:
  drawn:  --n N --dim D [--distribution gaussian|sphere]: samples drawn per seed, exact population moments;
  yours:  --inputs X.npy --heldout XH.npy: your training inputs; errors are mean squares over the held-out
          array (moments empirical over it). Labels come from --target on both arrays, or from your own
          --labels Y.npy and --heldout-labels YH.npy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from w2sjax.features import ACTIVATIONS
from w2sjax.finite import ROUTES

TARGETS = ("relu-net", "linear")
PNG = "samples.png"


def register(sub) -> None:
    p = sub.add_parser(
        "samples",
        help="finite-sample W2S: teacher and students trained on n samples (or your own inputs)",
        description="Teacher (M_TE features) fitted on n samples with the true labels, students trained by gradient "
        "flow on the teacher's values at the same samples; errors are population errors (exact moments for "
        "drawn samples; means over --heldout for your own inputs). Writes DIR/results.json, DIR/curves.csv, "
        f"DIR/{PNG}.",
    )
    data = p.add_argument_group("data (give --inputs and --heldout, or --n and --dim)")
    data.add_argument("--inputs", metavar="X.npy", help="training inputs, an (n, d) array")
    data.add_argument("--heldout", metavar="XH.npy", help="held-out inputs (m, d): errors are means over them")
    data.add_argument("--labels", metavar="Y.npy", help="your labels on --inputs, (n,) (instead of --target)")
    data.add_argument("--heldout-labels", metavar="YH.npy", help="your labels on --heldout, (m,)")
    data.add_argument("--n", type=int, help="number of samples to draw per seed (drawn mode)")
    data.add_argument("--dim", type=int, help="input dimension d (drawn mode)")
    data.add_argument("--distribution", default="gaussian", choices=("gaussian", "sphere"),
                      help="input distribution of the drawn mode (default gaussian, N(0, I))")
    tg = p.add_argument_group("target")
    tg.add_argument("--target", default="relu-net", choices=TARGETS,
                    help="f*: a random ReLU network standardised to unit variance (default), or <beta, x> with a "
                    "random unit beta")
    tg.add_argument("--target-units", type=int, default=64, help="units of the ReLU-network target (default 64)")
    tg.add_argument("--target-seed", type=int, default=0, help="seed of the target (default 0)")
    md = p.add_argument_group("models and training")
    md.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    md.add_argument("--teacher-width", type=int, default=48, help="M_TE (default 48)")
    md.add_argument("--student-widths", type=int, nargs="+", default=[256, 512, 1024], metavar="M",
                    help="student widths M_ST (default 256 512 1024)")
    md.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of weights (and drawn samples)")
    md.add_argument("--teacher-time", type=float, default=math.inf,
                    help="gradient-flow time of the teacher (default inf: least squares)")
    md.add_argument(
        "--times", nargs=3, type=float, default=(-1.0, 6.0, 141), metavar=("START", "STOP", "NUM"),
        help="log10 of the first and last student time and their number (default -1 6 141)",
    )
    md.add_argument("--ridge", action="store_true", help="also ridge students on the same samples at mu = 1/t")
    md.add_argument("--route", default="auto", choices=ROUTES,
                    help="decompose the n×n kernel or the M×M covariance (default auto: the smaller)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def load_array(path, name: str, ndim: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name} file {str(path)!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{name} file {str(path)!r} is not a readable .npy array ({err})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.size == 0:
        want = "(n, d)" if ndim == 2 else "(n,)"
        raise ValueError(f"{name} must hold a non-empty {want} array; got shape {getattr(arr, 'shape', None)}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values (NaN or inf); pass finite numbers")
    return arr


def build_setup(args):
    """(moments, samples_for_seed, labels_for, description) from the parsed arguments."""
    import jax.numpy as jnp

    from w2sjax.finite import ExactMoments, _target_values, draw_samples, held_out_moments
    from w2sjax.inputs import linear_target, make_inputs
    from w2sjax.relu_net_target import random_relu_network_target

    own = args.inputs is not None or args.heldout is not None
    if own:
        if args.inputs is None or args.heldout is None:
            raise ValueError("your own data needs both --inputs X.npy (training) and --heldout XH.npy (for the errors)")
        if args.n is not None or args.dim is not None:
            raise ValueError("--n and --dim are for drawn samples; drop them when giving --inputs/--heldout")
        x = load_array(args.inputs, "--inputs", 2)
        xh = load_array(args.heldout, "--heldout", 2)
        if xh.shape[1] != x.shape[1]:
            raise ValueError(f"--heldout has dimension {xh.shape[1]} but --inputs has {x.shape[1]}")
        d = x.shape[1]
    else:
        if args.labels is not None or args.heldout_labels is not None:
            raise ValueError("--labels/--heldout-labels go with --inputs/--heldout (your own data)")
        if args.n is None or args.dim is None:
            raise ValueError("give --inputs X.npy and --heldout XH.npy, or --n N and --dim D to draw samples")
        if args.n <= 0 or args.dim <= 0:
            raise ValueError(f"--n and --dim must be positive integers; got {args.n}, {args.dim}")
        d = args.dim
    if args.target_units <= 0:
        raise ValueError(f"--target-units must be a positive integer; got {args.target_units}")

    # The target's weights are drawn for N(0, I) (or the sphere); with your own data it is rescaled to unit
    # variance over the held-out array.
    ref = make_inputs(args.distribution if not own else "gaussian", d)
    if args.target == "relu-net":
        target = random_relu_network_target(args.target_seed, args.target_units, ref, standardize=not own)
        target_desc = f"relu-network ({args.target_units} units, seed {args.target_seed})"
    else:
        rng = np.random.default_rng(args.target_seed)
        beta = rng.standard_normal(d)
        target = linear_target(beta / np.linalg.norm(beta))
        target_desc = f"linear (random unit beta, seed {args.target_seed})"

    if own:
        if (args.labels is None) != (args.heldout_labels is None):
            raise ValueError("give both --labels and --heldout-labels (your labels), or neither (use --target)")
        if args.labels is not None:
            y = load_array(args.labels, "--labels", 1)
            yh = load_array(args.heldout_labels, "--heldout-labels", 1)
            if y.shape[0] != x.shape[0] or yh.shape[0] != xh.shape[0]:
                raise ValueError(f"--labels must have {x.shape[0]} values and --heldout-labels {xh.shape[0]}; "
                                 f"got {y.shape[0]} and {yh.shape[0]}")
            target_desc = f"your labels ({args.labels}, {args.heldout_labels})"
        else:
            y = np.asarray(_target_values(target, jnp.asarray(x)))
            yh = np.asarray(_target_values(target, jnp.asarray(xh)))
            if args.target == "relu-net":
                scale = float(np.std(yh))
                if not scale > 0:
                    raise ValueError("the ReLU-network target is constant on the held-out inputs; check --heldout")
                y, yh = y / scale, yh / scale
                target_desc += ", standardised over the held-out inputs"
        moments = held_out_moments(xh, y=yh)
        x_j, y_j = jnp.asarray(x), jnp.asarray(y)
        return moments, (lambda s: x_j), (lambda _: y_j), {
            "data": "your inputs", "inputs_file": str(args.inputs), "heldout_file": str(args.heldout),
            "heldout_size": int(xh.shape[0]), "errors": "mean squares over the held-out inputs", "target": target_desc,
            "dim": d,
        }
    moments = ExactMoments(ref, target)
    return moments, (lambda s: draw_samples(ref, args.n, s)), (lambda xs: _target_values(target, xs)), {
        "data": f"drawn ({args.distribution})", "errors": "population, exact moments", "target": target_desc, "dim": d,
    }


def run(args) -> int:
    from w2sjax.commands.solve import log_times
    from w2sjax.finite_experiment import finite_study, study_record, write_study

    times = log_times(*args.times)
    if args.teacher_width <= 0 or any(m <= 0 for m in args.student_widths):
        raise ValueError("--teacher-width and --student-widths must be positive integers")
    if not args.teacher_time > 0:
        raise ValueError(f"--teacher-time must be > 0 (inf for least squares); got {args.teacher_time}")
    moments, samples_for_seed, labels_for, desc = build_setup(args)
    result = finite_study(
        moments=moments, samples_for_seed=samples_for_seed, labels_for=labels_for, activation=args.activation,
        teacher_width=args.teacher_width, student_widths=args.student_widths, seeds=args.seeds, times=times,
        teacher_time=args.teacher_time, route=args.route, ridge=args.ridge,
    )
    config = {**desc, "activation": args.activation, "teacher_width": args.teacher_width,
              "teacher_time": "inf" if math.isinf(args.teacher_time) else args.teacher_time, "route": args.route,
              "ridge": bool(args.ridge)}
    record = study_record(result, config)
    out = Path(args.out)
    record["files"] = [str(out / f) for f in ("results.json", "curves.csv", PNG)]
    title = f"{desc['target']}; d = {desc['dim']}, n = {result.n}, $M_{{TE}}$ = {args.teacher_width}"
    write_study(out, record, result, PNG, title)
    for entry in record["per_width"]:
        ratios = ", ".join(f"{v:.4g}" for v in entry["ratio"])
        print(f"M_ST = {entry['student_width']:>6} ({entry['route']}): L_ST*/L_TE = {ratios}")
    print(f"L_TE = {', '.join(f'{v:.6g}' for v in record['teacher_loss'])}\nwrote {out / 'results.json'}, "
          f"{out / 'curves.csv'}, {out / PNG}")
    return 0
