"""Ridge: w = (G + μI)⁻¹b, the explicit-regularisation counterpart of early stopping, from the same decomposition.

With G = Q diag(λ) Qᵀ (and b in the range of G, as every label moment here is),
    w(μ) = Q diag(1/(λ + μ)) Qᵀ b = Q diag((1 − μ/(λ + μ))/λ) Qᵀ b.
Gradient flow has the gain (1 − e^{−tλ})/λ; ridge replaces the decay e^{−tλ} by μ/(λ + μ), so on the population
    L(μ) = Σ_i (a_i − a*_i − (μ/(λ_i + μ)) a_i)² + R          (``spectral.student_loss_from_decay``)
and on samples (``finite.FiniteProblem``) the gain is 1/(λ + μ). The two agree to first order in tλ at t = 1/μ
(e^{−x} against 1/(1 + x)) but not beyond: close curves, not equal ones.
μ → 0 gives least squares (the flow at t = ∞); μ → ∞ gives w = 0 (error s*).
"""

from __future__ import annotations

import dataclasses
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, check_times
from w2sjax.features import RandomFeatures, check_features_inputs
from w2sjax._io import json_safe
from w2sjax.finite import (
    ExactMoments,
    FiniteProblem,
    finite_loss_at_infinity,
    finite_loss_from_gain,
    finite_loss_slope,
    population_student_problem,
    population_teacher,
)
from w2sjax.inputs import InputDistribution, _pytree
from w2sjax.relu_net_target import check_target_inputs
from w2sjax.spectral import (
    refine_log_minimum,
    tie_tolerance,
    SpectralProblem,
    Spectrum,
    student_loss_at_infinity,
    student_loss_from_decay,
)

Problem = Union[SpectralProblem, FiniteProblem]


def check_strengths(strengths) -> np.ndarray:
    """A strictly increasing 1-D array of positive ridge strengths μ."""
    mu = check_times(strengths)
    if np.any(mu <= 0):
        raise ValueError("ridge strengths must be > 0 (μ = 0 is least squares: the flow at t = ∞)")
    if np.any(np.diff(mu) <= 0):
        raise ValueError("ridge strengths must be strictly increasing (e.g. np.logspace(-6, 1, 200))")
    return mu


def ridge_decay(eigenvalues: jax.Array, strengths: jax.Array) -> jax.Array:
    """μ/(λ + μ) for strengths (T,) and eigenvalues (..., r) → (T, ..., r)."""
    mu = jnp.reshape(strengths, strengths.shape + (1,) * eigenvalues.ndim)
    return mu / (eigenvalues + mu)


def ridge_gain(eigenvalues: jax.Array, strength) -> jax.Array:
    """1/(λ + μ) on kept eigenvalues, 0 on cut ones (b has no component there)."""
    return jnp.where(eigenvalues > 0, 1 / (eigenvalues + strength), 0)


@jax.jit
def ridge_weights(spectrum: Spectrum, label_moment: jax.Array, strength) -> jax.Array:
    """w = Q diag(1/(λ + μ)) Qᵀ b = (G + μI)⁻¹ b for b in the range of G, shape (M,)."""
    q = spectrum.eigenvectors
    return q @ (ridge_gain(spectrum.eigenvalues, strength) * (q.T @ label_moment))


def _loss_at(problem: Problem, strength) -> jax.Array:
    if isinstance(problem, FiniteProblem):
        return finite_loss_from_gain(problem, ridge_gain(problem.eigenvalues, strength))
    return student_loss_from_decay(problem, strength / (problem.eigenvalues + strength))


def _slope_at(problem: Problem, strength) -> jax.Array:
    """dL/d log μ."""
    lam = problem.eigenvalues
    if isinstance(problem, FiniteProblem):  # d/d log μ of 1/(λ + μ) is −μ/(λ + μ)²
        return finite_loss_slope(problem, ridge_gain(lam, strength), -strength / (lam + strength) ** 2)
    decay = strength / (lam + strength)  # d decay/d log μ = μλ/(λ + μ)²
    gap = problem.label_coef - problem.target_coef - decay * problem.label_coef
    return -2 * jnp.sum(gap * problem.label_coef * strength * lam / (lam + strength) ** 2, axis=-1)


@jax.jit
def ridge_loss(problem: Problem, strengths: jax.Array) -> jax.Array:
    """Population error of ridge at every μ: (T,) → (T,); a ``SpectralProblem`` (population training) or a
    ``FiniteProblem`` (training on samples)."""
    return jax.vmap(lambda mu: _loss_at(problem, mu))(strengths)


@jax.jit
def ridge_loss_at_zero(problem: Problem) -> jax.Array:
    """The μ → 0 limit: least squares, the flow's t = ∞."""
    if isinstance(problem, FiniteProblem):
        return finite_loss_at_infinity(problem)
    return student_loss_at_infinity(problem)


@jax.jit
def best_ridge(problem: Problem, strengths: jax.Array, losses: jax.Array | None = None):
    """(μ*, L(μ*)) refined past the grid like ``spectral.best_time``; μ* = 0 (least squares, the flow's t = ∞)
    when the error still rises e^20 below the grid's smallest μ, or when L(0) is within 64 ε s* of the best
    positive μ (or lower); the loss is then the lower of the two. Unbatched; strengths increasing, positive."""
    if losses is None:
        losses = ridge_loss(problem, strengths)
    mu_best, loss_best, _, rises_below = refine_log_minimum(
        lambda u: _loss_at(problem, jnp.exp(u)), lambda u: _slope_at(problem, jnp.exp(u)), jnp.log(strengths), losses
    )
    loss_zero = ridge_loss_at_zero(problem)
    at_zero = rises_below | (loss_zero <= loss_best + tie_tolerance(problem))
    return jnp.where(at_zero, 0.0, mu_best), jnp.where(at_zero, jnp.minimum(loss_zero, loss_best), loss_best)


@_pytree
@dataclasses.dataclass(frozen=True)
class RidgeResult:
    """Ridge figures of merit.

    Attributes:
      strengths: (T,) μ.
      student_loss: (T,) L_ST(μ), population error.
      teacher_loss: L_TE.
      best_strength, best_student_loss: μ* and L_ST(μ*) (μ* = 0 when least squares is best).
      student_loss_at_zero: L_ST(μ → 0), least squares.
      ceiling_loss: L_ceil as given.
      ratio: L_ST*/L_TE.   pgr: (L_TE − L_ST*)/(L_TE − L_ceil).
    """

    strengths: jax.Array
    student_loss: jax.Array
    teacher_loss: jax.Array
    best_strength: jax.Array
    best_student_loss: jax.Array
    student_loss_at_zero: jax.Array
    ceiling_loss: jax.Array
    ratio: jax.Array
    pgr: jax.Array

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = np.asarray(getattr(self, f.name))
            out[f.name] = [json_safe(v) for v in value.tolist()] if value.ndim else json_safe(float(value))
        return out


@jax.jit
def _summary(problem, strengths, teacher_loss, ceiling_loss):
    losses = ridge_loss(problem, strengths)
    mu_best, loss_best = best_ridge(problem, strengths, losses)
    return RidgeResult(
        strengths=strengths, student_loss=losses, teacher_loss=teacher_loss, best_strength=mu_best,
        best_student_loss=loss_best, student_loss_at_zero=ridge_loss_at_zero(problem), ceiling_loss=ceiling_loss,
        ratio=loss_best / teacher_loss, pgr=(teacher_loss - loss_best) / (teacher_loss - ceiling_loss),
    )


def ridge_summary(problem: Problem, strengths, teacher_loss, ceiling_loss) -> RidgeResult:
    """Every ridge figure of merit of one problem (e.g. ``FiniteW2SResult.problem``) on a grid of μ."""
    mu = jnp.asarray(check_strengths(strengths), jnp.result_type(problem.eigenvalues))
    return _summary(problem, mu, jnp.asarray(teacher_loss), jnp.asarray(ceiling_loss))


def ridge_weak_to_strong(
    student: RandomFeatures, teacher: RandomFeatures, target, inputs: InputDistribution, strengths, rcond=None
) -> RidgeResult:
    """Population weak-to-strong with a ridge student: teacher fitted by least squares on the population,
    student w(μ) = (G_S + μI)⁻¹ G_ST w_T for every μ. Any target kind (ReLU networks included)."""
    check_target_inputs(target, inputs)
    for features, name in ((student, "student features"), (teacher, "teacher features")):
        check_features_inputs(features, inputs, name)
        check_finite(np.asarray(features.weights), name)
    moments = ExactMoments(inputs, target)
    teacher_weights, teacher_loss = population_teacher(teacher, moments, rcond)
    problem = population_student_problem(student, teacher, teacher_weights, moments, rcond)
    return ridge_summary(problem, strengths, teacher_loss, problem.residual)

