"""The weak-to-strong pipeline: teacher fitted on the population, student trained on the teacher's labels.

Teacher (features φ_T):  w_T = G_T⁺ c_T,  L_TE = s* − c_Tᵀ G_T⁺ c_T,  c_T = E[φ_T f*].
Student (features φ_S):  gradient flow from 0 on ½E[(f_w − f_T)²], labels moment b = G_ST w_T,
                         G_ST = E[φ_S φ_Tᵀ];  L_ST(t) in closed form from one decomposition of G_S.
Figures of merit: L_ST(t), L_ST(∞), t* and L_ST* = L_ST(t*), L_ST*/L_TE, the ceiling L_ceil = R_S (the student
on true labels at convergence), PGR = (L_TE − L_ST*)/(L_TE − L_ceil).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, check_times
from w2sjax._io import json_safe
from w2sjax.features import (
    RandomFeatures,
    check_features_inputs,
    feature_factor,
    feature_gram,
    feature_target_moment,
)
from w2sjax.inputs import (
    InputDistribution,
    Target,
    _pytree,
    check_target_inputs,
    target_second_moment,
)
from w2sjax.spectral import (
    SpectralProblem,
    Spectrum,
    best_time,
    decompose,
    decompose_factor,
    inverse_sqrt,
    least_squares_weights,
    residual_loss,
    student_loss,
    student_loss_at_infinity,
)


@_pytree
@dataclasses.dataclass(frozen=True)
class TeacherFit:
    """A teacher trained on the population to convergence.

    Attributes:
      weights: (M_TE,) top-layer weights w_T = G_T⁺ c_T.
      loss: L_TE = s* − c_Tᵀ G_T⁺ c_T.
    """

    weights: jax.Array
    loss: jax.Array


@_pytree
@dataclasses.dataclass(frozen=True)
class W2SResult:
    """Weak-to-strong figures of merit for one (student, teacher) pair; the curve is batched over times.

    Attributes:
      times: (T,) stopping times.
      student_loss: (T,) L_ST(t).
      teacher_loss: L_TE.
      best_time: t* (∞ when the error only decreases).
      best_student_loss: L_ST* = L_ST(t*).
      student_loss_at_infinity: L_ST(∞).
      ceiling_loss: L_ceil = R_S.
      ratio: L_ST*/L_TE.
      pgr: (L_TE − L_ST*)/(L_TE − L_ceil).
      problem: the SpectralProblem, to evaluate L_ST at any other time (``spectral.student_loss``).
    """

    times: jax.Array
    student_loss: jax.Array
    teacher_loss: jax.Array
    best_time: jax.Array
    best_student_loss: jax.Array
    student_loss_at_infinity: jax.Array
    ceiling_loss: jax.Array
    ratio: jax.Array
    pgr: jax.Array
    problem: SpectralProblem

    def to_dict(self) -> dict:
        """Plain Python numbers and lists (JSON-ready); leaves out ``problem``."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "problem":
                continue
            value = np.asarray(getattr(self, f.name))
            out[f.name] = value.tolist() if value.ndim else json_safe(float(value))
        out["times"] = [float(t) for t in np.asarray(self.times)]
        out["student_loss"] = [float(v) for v in np.asarray(self.student_loss)]
        return out


# --------------------------------------------------------------------------------------------------
# Pure pieces (jit-able, vmappable)
# --------------------------------------------------------------------------------------------------


def fit_teacher(teacher: RandomFeatures, target: Target, inputs: InputDistribution, rcond=None) -> TeacherFit:
    """Population least squares for the teacher: w_T = G_T⁺ c_T, L_TE = s* − c_Tᵀ G_T⁺ c_T."""
    spectrum = decompose(feature_gram(teacher, teacher, inputs), rcond)
    c_t = feature_target_moment(teacher, target, inputs)
    s_star = target_second_moment(target, inputs)
    return TeacherFit(least_squares_weights(spectrum, c_t), residual_loss(spectrum, c_t, s_star))


def uses_factor(student: RandomFeatures) -> bool:
    """Linear features with d < M factor as G_S = F Fᵀ, F of shape (M, d): decompose that smaller side."""
    return student.activation == "linear" and student.dim < student.weights.shape[0]


def student_matrix(student: RandomFeatures, inputs: InputDistribution) -> jax.Array:
    """G_S (M_ST, M_ST), or its factor F (M_ST, d) where ``uses_factor``."""
    return feature_factor(student, inputs) if uses_factor(student) else feature_gram(student, student, inputs)


def student_spectrum(student: RandomFeatures, inputs: InputDistribution, rcond=None) -> Spectrum:
    """Decompose G_S on its smaller side: the M_ST×M_ST Gram matrix, or for linear features with d < M_ST
    the thin SVD of the factor U Σ^{1/2}/√M (rank ≤ d)."""
    matrix = student_matrix(student, inputs)
    return decompose_factor(matrix, rcond) if uses_factor(student) else decompose(matrix, rcond)


def teacher_label_moment(
    student: RandomFeatures, teacher: RandomFeatures, teacher_weights: jax.Array, inputs: InputDistribution
) -> jax.Array:
    """b = E[φ_S f_T] = G_ST w_T, shape (M_ST,)."""
    return feature_gram(student, teacher, inputs) @ teacher_weights


def w2s_problem(
    spectrum: Spectrum,
    label_moment: jax.Array,
    target_coef: jax.Array,
    residual: jax.Array,
) -> SpectralProblem:
    """The student's SpectralProblem for labels b, given the target's coefficients a* = Qᵀc_S/√λ and R_S
    (computed once per student and shared by all its teachers)."""
    label_coef = (spectrum.eigenvectors.T @ label_moment) * inverse_sqrt(spectrum.eigenvalues)
    return SpectralProblem(spectrum.eigenvalues, label_coef, target_coef, residual)


def student_target_coef(spectrum: Spectrum, student: RandomFeatures, target: Target, inputs: InputDistribution):
    """(a*, R_S): the target in the student's eigenbasis and the part of f* outside the student's span."""
    c_s = feature_target_moment(student, target, inputs)
    target_coef = (spectrum.eigenvectors.T @ c_s) * inverse_sqrt(spectrum.eigenvalues)
    residual = jnp.maximum(target_second_moment(target, inputs) - jnp.sum(target_coef**2), 0)
    return target_coef, residual


def summarize(
    problem: SpectralProblem, times: jax.Array, teacher_loss: jax.Array, losses: jax.Array | None = None
) -> W2SResult:
    """Every figure of merit of one SpectralProblem at the given (increasing, positive) times
    (``losses``: L(t) on ``times`` when already computed)."""
    if losses is None:
        losses = student_loss(problem, times)
    t_best, loss_best = best_time(problem, times, losses)
    ceiling = problem.residual
    return W2SResult(
        times=times,
        student_loss=losses,
        teacher_loss=teacher_loss,
        best_time=t_best,
        best_student_loss=loss_best,
        student_loss_at_infinity=student_loss_at_infinity(problem),
        ceiling_loss=ceiling,
        ratio=loss_best / teacher_loss,
        pgr=(teacher_loss - loss_best) / (teacher_loss - ceiling),
        problem=problem,
    )


@partial(jax.jit, static_argnames=("rcond",))
def _weak_to_strong(student, teacher, target, inputs, times, rcond=None) -> W2SResult:
    teacher_fit = fit_teacher(teacher, target, inputs, rcond)
    spectrum = student_spectrum(student, inputs, rcond)
    target_coef, residual = student_target_coef(spectrum, student, target, inputs)
    labels = teacher_label_moment(student, teacher, teacher_fit.weights, inputs)
    problem = w2s_problem(spectrum, labels, target_coef, residual)
    return summarize(problem, times, teacher_fit.loss)


# --------------------------------------------------------------------------------------------------
# Validated entry point
# --------------------------------------------------------------------------------------------------


def check_increasing_times(times) -> np.ndarray:
    t = check_times(times)
    if np.any(t <= 0):
        raise ValueError("stopping times must be > 0 (the loss at t = 0 is s*; drop t = 0 from the grid)")
    if np.any(np.diff(t) <= 0):
        raise ValueError("stopping times must be strictly increasing (e.g. np.logspace(-1, 6, 1000))")
    return t


def check_problem(student: RandomFeatures, teacher: RandomFeatures, target: Target, inputs: InputDistribution):
    check_features_inputs(student, inputs, "student features")
    check_features_inputs(teacher, inputs, "teacher features")
    check_target_inputs(target, inputs)
    check_finite(np.asarray(student.weights), "student weights")
    check_finite(np.asarray(teacher.weights), "teacher weights")


def weak_to_strong(
    student: RandomFeatures,
    teacher: RandomFeatures,
    target: Target,
    inputs: InputDistribution,
    times,
    rcond: float | None = None,
) -> W2SResult:
    """The weak-to-strong curve and its figures of merit, exactly.

    Args:
      student: student features (M_ST, d).
      teacher: teacher features (M_TE, d).
      target: f*, e.g. ``linear_target(beta)``.
      inputs: the input distribution (its dtype sets the precision).
      times: (T,) strictly increasing positive stopping times.
      rcond: relative eigenvalue cutoff (default M·ε).

    Returns:
      W2SResult with L_ST on ``times`` and t*, L_ST*, L_ST(∞), L_TE, L_ceil, ratio, PGR.
    """
    check_problem(student, teacher, target, inputs)
    t = jnp.asarray(check_increasing_times(times), inputs.variances.dtype)
    return _weak_to_strong(student, teacher, target, inputs, t, rcond=rcond)
