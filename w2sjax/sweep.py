"""Sweeps: many teachers and seeds against one decomposition per student.

For each student (width, seed) the Gram matrix G_S is built and decomposed once; every teacher
(width × seed) is then fitted and scored in one compiled, vmapped call. Teachers of different widths are
padded with zero rows to the largest width: a zero row is a feature that is identically zero, which the
pseudo-inverse ignores, and the 1/√M scale uses each teacher's own width. Students are nested: the student of
width m uses the first m rows of the largest student's weights (per student seed), so sweeps over M_ST are
coherent.

Seeds: student seed s draws weights from ``fold_in(key(s), 0)``; teacher seed s of width m from
``fold_in(fold_in(key(s), 1), m)``.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_positive_int
from w2sjax.features import ACTIVATIONS, RandomFeatures, check_features_inputs, sample_weights
from w2sjax.inputs import InputDistribution, Target, check_target_inputs
from w2sjax.spectral import SpectralProblem, Spectrum, decompose, decompose_factor, inverse_sqrt, student_loss
from w2sjax.w2s import (
    TeacherFit,
    check_increasing_times,
    fit_teacher,
    student_matrix,
    student_target_coef,
    summarize,
    teacher_label_moment,
    uses_factor,
)

STUDENT_STREAM, TEACHER_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Results of a sweep, as numpy arrays.

    Axes: S = student widths, s = student seeds, K = teacher widths, k = teacher seeds, T = times.

    Attributes:
      times: (T,)
      student_widths, student_seeds, teacher_widths, teacher_seeds: the sweep's axes.
      teacher_loss: (K, k) L_TE.
      student_loss: (S, s, K, k, T) L_ST(t).
      best_time, best_student_loss, student_loss_at_infinity, ratio, pgr: (S, s, K, k).
      ceiling_loss: (S, s) L_ceil.
      timings: seconds spent building moments, decomposing, and computing curves (summed over students).
    """

    times: np.ndarray
    student_widths: tuple
    student_seeds: tuple
    teacher_widths: tuple
    teacher_seeds: tuple
    teacher_loss: np.ndarray
    student_loss: np.ndarray
    best_time: np.ndarray
    best_student_loss: np.ndarray
    student_loss_at_infinity: np.ndarray
    ratio: np.ndarray
    pgr: np.ndarray
    ceiling_loss: np.ndarray
    timings: dict


def student_weights(seed: int, width: int, dim: int, activation: str) -> jax.Array:
    """The (width, d) weights of student seed ``seed``; a smaller width is a prefix of a larger one.

    Drawn in float64 whatever the precision of the sweep, so float32 and float64 runs share weights."""
    key = jax.random.fold_in(jax.random.key(seed), STUDENT_STREAM)
    return sample_weights(key, width, dim, activation, jnp.float64)


def teacher_weights(seed: int, width: int, dim: int, activation: str) -> jax.Array:
    """The (width, d) weights of teacher seed ``seed`` at this width."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), TEACHER_STREAM), width)
    return sample_weights(key, width, dim, activation, jnp.float64)


def padded_teachers(weights: Sequence[jax.Array], activation: str, dtype) -> RandomFeatures:
    """Stack teachers of different widths into one batch (n, M_max, d), zero-padded, with their widths."""
    m_max = max(w.shape[0] for w in weights)
    stacked = jnp.stack([jnp.pad(w, ((0, m_max - w.shape[0]), (0, 0))) for w in weights]).astype(dtype)
    widths = jnp.asarray([w.shape[0] for w in weights], dtype)
    return RandomFeatures(stacked, widths, activation)


@partial(jax.jit, static_argnames=("rcond",))
def fit_teachers(teachers: RandomFeatures, target: Target, inputs: InputDistribution, rcond=None) -> TeacherFit:
    """``fit_teacher`` vmapped over a padded batch of teachers (leading axis)."""
    return jax.vmap(lambda t: fit_teacher(t, target, inputs, rcond))(teachers)


@jax.jit
def score_teachers(
    spectrum: Spectrum,
    student: RandomFeatures,
    teachers: RandomFeatures,
    fits: TeacherFit,
    target: Target,
    inputs: InputDistribution,
    times: jax.Array,
):
    """Every teacher of a padded batch against one decomposed student: one compiled call.

    The curves of all teachers share one e^{−tλ} per time: the batched problem keeps λ unbatched (r,)
    and the label coefficients batched (n, r)."""
    target_coef, residual = student_target_coef(spectrum, student, target, inputs)
    labels = jax.vmap(lambda t, fit: teacher_label_moment(student, t, fit.weights, inputs))(teachers, fits)
    label_coef = (labels @ spectrum.eigenvectors) * inverse_sqrt(spectrum.eigenvalues)
    batch = SpectralProblem(spectrum.eigenvalues, label_coef, target_coef, residual)
    losses = student_loss(batch, times).T  # (n, T)

    def one(coef, curve, teacher_loss):
        problem = SpectralProblem(spectrum.eigenvalues, coef, target_coef, residual)
        return summarize(problem, times, teacher_loss, curve)

    return jax.vmap(one)(label_coef, losses, fits.loss)


_student_matrix = jax.jit(student_matrix)
_decompose = jax.jit(decompose, static_argnames=("rcond",))
_decompose_factor = jax.jit(decompose_factor, static_argnames=("rcond",))


def run_sweep(
    inputs: InputDistribution,
    target: Target,
    *,
    activation: str = "relu",
    student_widths: Sequence[int],
    teacher_widths: Sequence[int],
    times,
    student_seeds: Sequence[int] = (0,),
    teacher_seeds: Sequence[int] = (0,),
    rcond: float | None = None,
    student_weights_fn: Callable | None = None,
    teacher_weights_fn: Callable | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Weak-to-strong figures for every (student width, student seed, teacher width, teacher seed).

    Args:
      inputs: input distribution; its dtype is the precision of the whole sweep.
      target: f*.
      activation: ``"relu"`` or ``"linear"`` (teacher and student alike).
      student_widths, teacher_widths: positive widths.
      times: (T,) strictly increasing positive stopping times.
      student_seeds, teacher_seeds: integer seeds.
      rcond: relative eigenvalue cutoff (default M·ε).
      student_weights_fn(seed, width, d, activation) / teacher_weights_fn: override the weight laws.
      progress(done, total): called after each student.
    """
    check_choice(activation, ACTIVATIONS, "activation")
    student_widths = tuple(check_positive_int(m, "student width") for m in student_widths)
    teacher_widths = tuple(check_positive_int(m, "teacher width") for m in teacher_widths)
    if not student_widths or not teacher_widths:
        raise ValueError("give at least one student width and one teacher width")
    student_seeds, teacher_seeds = tuple(int(s) for s in student_seeds), tuple(int(s) for s in teacher_seeds)
    if not student_seeds or not teacher_seeds:
        raise ValueError("give at least one student seed and one teacher seed")
    check_target_inputs(target, inputs)
    dtype = inputs.variances.dtype
    times_np = check_increasing_times(times)
    times_j = jnp.asarray(times_np, dtype)
    d = inputs.dim
    draw_student = student_weights_fn or student_weights
    draw_teacher = teacher_weights_fn or teacher_weights

    timings = {"moments": 0.0, "decomposition": 0.0, "curves": 0.0}
    clock = time.perf_counter()
    teacher_list = [draw_teacher(s, m, d, activation) for m in teacher_widths for s in teacher_seeds]
    teachers = padded_teachers(teacher_list, activation, dtype)
    check_features_inputs(RandomFeatures(teachers.weights[0], teachers.width[0], activation), inputs, "teachers")
    fits = jax.block_until_ready(fit_teachers(teachers, target, inputs, rcond))
    timings["moments"] += time.perf_counter() - clock

    n_s, n_K, n_k = len(student_seeds), len(teacher_widths), len(teacher_seeds)
    shape = (len(student_widths), n_s, n_K, n_k)
    out = {k: np.empty(shape) for k in ("best_time", "best_student_loss", "student_loss_at_infinity", "ratio", "pgr")}
    curves = np.empty(shape + (times_np.size,))
    ceiling = np.empty(shape[:2])
    total, done = len(student_widths) * n_s, 0
    for j, seed in enumerate(student_seeds):
        full = jnp.asarray(draw_student(seed, max(student_widths), d, activation), dtype)
        for i, width in enumerate(student_widths):
            student = RandomFeatures(full[:width], jnp.asarray(width, dtype), activation)
            check_features_inputs(student, inputs, "students")
            clock = time.perf_counter()
            matrix = jax.block_until_ready(_student_matrix(student, inputs))
            timings["moments"] += time.perf_counter() - clock
            clock = time.perf_counter()
            decomp = _decompose_factor if uses_factor(student) else _decompose
            spectrum = jax.block_until_ready(decomp(matrix, rcond=rcond))
            timings["decomposition"] += time.perf_counter() - clock
            clock = time.perf_counter()
            res = jax.block_until_ready(score_teachers(spectrum, student, teachers, fits, target, inputs, times_j))
            timings["curves"] += time.perf_counter() - clock
            for key in out:
                out[key][i, j] = np.asarray(getattr(res, key)).reshape(n_K, n_k)
            curves[i, j] = np.asarray(res.student_loss).reshape(n_K, n_k, -1)
            ceiling[i, j] = float(np.asarray(res.ceiling_loss)[0])
            done += 1
            if progress is not None:
                progress(done, total)

    return SweepResult(
        times=times_np,
        student_widths=student_widths,
        student_seeds=student_seeds,
        teacher_widths=teacher_widths,
        teacher_seeds=teacher_seeds,
        teacher_loss=np.asarray(fits.loss).reshape(n_K, n_k),
        student_loss=curves,
        ceiling_loss=ceiling,
        timings=timings,
        **out,
    )
