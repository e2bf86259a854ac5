"""``w2sjax solve``: the exact W2S figures for explicit weights from an .npz file (linear target ⟨beta, x⟩)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

from w2sjax._checks import check_finite
from w2sjax.commands._common import add_times_option, number, time_grid
from w2sjax.features import ACTIVATIONS
from w2sjax.studies.config import METHODS, PRECISIONS

REQUIRED = ("student_weights", "teacher_weights", "beta")
OPTIONAL = ("input_variances",)


def register(sub) -> None:
    p = sub.add_parser(
        "solve",
        help="exact W2S figures for explicit weights (FILE.npz)",
        description="Exact weak-to-strong figures for the weights in FILE.npz: student_weights (M_ST×d), "
        "teacher_weights (M_TE×d, or n×M_TE×d for n teachers), beta (d), optional input_variances (d) for "
        "x ~ N(0, diag(input_variances)). Features σ(Ux)/√M, linear target ⟨beta, x⟩. Writes DIR/results.json.",
    )
    p.add_argument("--features", required=True, metavar="FILE.npz", help="weights file (numpy.savez)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="activation of every feature")
    add_times_option(p)
    p.add_argument("--precision", default="float64", choices=PRECISIONS, help="float64 or float32")
    p.add_argument("--method", default="auto", choices=METHODS, help="route")
    p.set_defaults(func=run)


def load_features_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"features file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not an .npz archive; save the weights with numpy.savez(path, "
                         f"{', '.join(f'{k}=...' for k in REQUIRED)})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED if k not in data.files]
            if missing:
                raise ValueError(f"{path} lacks {missing}; it must hold {list(REQUIRED)} (and optionally {list(OPTIONAL)})")
            unknown = sorted(set(data.files) - set(REQUIRED) - set(OPTIONAL))
            if unknown:
                raise ValueError(f"{path} holds unknown arrays {unknown}; valid names: {list(REQUIRED + OPTIONAL)}")
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{str(path)!r} cannot be read as an .npz archive ({err})") from None
    for name, arr in arrays.items():
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{name} in {path} must hold real numbers; got dtype {arr.dtype}")
        check_finite(arr, f"{name} in {path}")
    return {k: v.astype(np.float64) for k, v in arrays.items()}


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from w2sjax._io import atomic_write_json
    from w2sjax.environment import environment
    from w2sjax.features import random_features
    from w2sjax.inputs import gaussian_inputs
    from w2sjax.targets import linear_target
    from w2sjax.w2s import weak_to_strong

    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    times = time_grid(args)
    arrays = load_features_file(args.features)
    student = random_features(arrays["student_weights"], args.activation, dtype)
    teacher_arr = arrays["teacher_weights"]
    if teacher_arr.ndim == 3:
        teachers = [random_features(t, args.activation, dtype) for t in teacher_arr]
    else:
        teachers = random_features(teacher_arr, args.activation, dtype)
    d = student.dim
    inputs = gaussian_inputs(d, arrays.get("input_variances"), dtype)
    target = linear_target(arrays["beta"], dtype)
    out = Path(args.out)
    from w2sjax.studies.runner import check_output_folder

    check_output_folder(out, runs=False)
    clock = time.perf_counter()
    result = jax.block_until_ready(weak_to_strong(student, teachers, target, inputs, times, method=args.method))
    seconds = time.perf_counter() - clock
    record = result.to_dict()
    record.update(student_width=student.rows, teacher_width=[t.rows for t in teachers] if isinstance(teachers, list)
                  else teachers.rows, input_dim=d, activation=args.activation, precision=args.precision,
                  features_file=str(args.features), seconds=seconds, environment=environment())
    atomic_write_json(out / "results.json", record)
    rows = [result.select(i) for i in range(len(teachers))] if isinstance(teachers, list) else [result]
    for r in rows:
        print(f"L_TE = {number(r.teacher_loss)}   L_ST* = {number(r.best_student_loss)} at t* = {number(r.best_time)}"
              f"   ratio = {number(r.ratio)}   PGR = {number(r.pgr)}   L_ST(inf) = {number(r.student_loss_at_infinity)}"
              f"   L_ceil = {number(r.ceiling_loss)}")
    print(f"route: {result.route.method}{'/' + result.route.operator if result.route.operator else ''}; "
          f"wrote {out / 'results.json'}")
    return 0
