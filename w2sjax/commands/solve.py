"""``w2sjax solve``: the exact W2S curve for explicit weights from an .npz file (linear target ⟨beta, x⟩)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from w2sjax._io import atomic_write_json
from w2sjax.environment import environment
from w2sjax.features import ACTIVATIONS, random_features
from w2sjax.inputs import gaussian_inputs, linear_target
from w2sjax.w2s import weak_to_strong

REQUIRED = ("student_weights", "teacher_weights", "beta")
OPTIONAL = ("input_variances",)


def register(sub) -> None:
    p = sub.add_parser(
        "solve",
        help="exact W2S curve for explicit weights (FILE.npz)",
        description="Exact weak-to-strong curve for the weights in FILE.npz: student_weights (M_ST×d), "
        "teacher_weights (M_TE×d), beta (d), optional input_variances (d) for x ~ N(0, diag(input_variances)). "
        "Features σ(Ux)/√M, linear target ⟨beta, x⟩. Writes DIR/results.json.",
    )
    p.add_argument("--features", required=True, metavar="FILE.npz", help="weights file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    p.add_argument(
        "--times", nargs=3, type=float, default=(-1.0, 6.0, 1000), metavar=("START", "STOP", "NUM"),
        help="log10 of the first and last time and the number of times (default -1 6 1000: logspace(-1, 6, 1000))",
    )
    p.add_argument("--precision", default="float64", choices=("float64", "float32"))
    p.set_defaults(func=run)


def load_features_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"features file {str(path)!r} does not exist")
    with np.load(path) as data:
        missing = [k for k in REQUIRED if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {missing}; it must hold {list(REQUIRED)} (and optionally {list(OPTIONAL)})")
        unknown = sorted(set(data.files) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ValueError(f"{path} holds unknown arrays {unknown}; valid names: {list(REQUIRED + OPTIONAL)}")
        return {k: np.asarray(data[k], dtype=np.float64) for k in data.files}


def log_times(start: float, stop: float, num) -> np.ndarray:
    if num != int(num) or int(num) < 1:
        raise ValueError(f"--times NUM must be a positive integer; got {num}")
    if not (np.isfinite(start) and np.isfinite(stop)) or stop < start:
        raise ValueError(f"--times needs finite START <= STOP (log10 of times); got {start}, {stop}")
    return np.logspace(start, stop, int(num))


def run(args) -> int:
    import jax.numpy as jnp

    dtype = jnp.float64 if args.precision == "float64" else jnp.float32
    arrays = load_features_file(args.features)
    student = random_features(arrays["student_weights"], args.activation, dtype)
    teacher = random_features(arrays["teacher_weights"], args.activation, dtype)
    d = student.dim
    inputs = gaussian_inputs(d, arrays.get("input_variances"), dtype)
    target = linear_target(arrays["beta"], dtype)
    times = log_times(*args.times)
    clock = time.perf_counter()
    result = weak_to_strong(student, teacher, target, inputs, times)
    result.student_loss.block_until_ready()
    elapsed = time.perf_counter() - clock
    record = result.to_dict()
    record.update(
        student_width=int(student.weights.shape[0]),
        teacher_width=int(teacher.weights.shape[0]),
        input_dim=d,
        activation=args.activation,
        precision=args.precision,
        features_file=str(args.features),
        seconds=elapsed,
        environment=environment(),
    )
    atomic_write_json(Path(args.out) / "results.json", record)
    print(
        f"L_TE = {record['teacher_loss']:.6g}   L_ST* = {record['best_student_loss']:.6g} at t* = {record['best_time']:.6g}"
        f"   ratio = {record['ratio']:.4g}   PGR = {record['pgr']:.4g}   L_ST(inf) = {record['student_loss_at_infinity']:.6g}"
        f"   L_ceil = {record['ceiling_loss']:.6g}\nwrote {Path(args.out) / 'results.json'}"
    )
    return 0
