"""Finite samples: teacher and student trained by gradient flow on n examples, scored by POPULATION error.

Training on samples X (n, d) with labels y (n,): Φ = φ(X) (n, M), gradient flow from w = 0 on the empirical
loss ½(1/n)Σ(f_w(x_i) − y_i)² is dw/dt = −(Ĝw − b̂), Ĝ = ΦᵀΦ/n, b̂ = Φᵀy/n, so with Ĝ = Q diag(λ) Qᵀ
    w(t) = Q diag(g(λ, t)) b̃,   b̃ = Qᵀb̂,   g(λ, t) = (1 − e^{−tλ})/λ.
Both sides of the thin SVD Φ/√n = U diag(√λ) Qᵀ give (λ, Q); the smaller one is decomposed:
    kernel route (n < M):      ΦΦᵀ/n = U diag(λ) Uᵀ (n×n),  Q = Φᵀ U diag(1/√(nλ))  (M×n);
    covariance route (n ≥ M):  ΦᵀΦ/n = Q diag(λ) Qᵀ (M×M), accumulated over chunks of samples (n may be huge).
Eigenvalues λ ≤ rcond·λ_max are cut to zero (default rcond = size·ε, size = the decomposed matrix's); the flow
never moves along them (b̂ lies in the range of Ĝ).

Scoring: L(w) = wᵀGw − 2wᵀc + s* with G = E[φφᵀ], c = E[φf*], s* = E[f*²] — exact moments of the input
distribution, or empirical ones over a held-out array (``HeldOutMoments``: G = Φ_hᵀΦ_h/m, c = Φ_hᵀy_h/m,
s* = mean y_h², i.e. the held-out mean squared error). G is not diagonal in the empirical basis; with
P = QᵀGQ = W diag(ν) Wᵀ (r×r) and p = Qᵀc, computed once,
    L = Σ_j (√ν_j (Wᵀh)_j − a*_j)² + R,   h = g(λ, t) ∘ b̃,   a* = Wᵀp/√ν,   R = s* − Σ a*²,
a sum of non-negative terms (R is the error of the best predictor in span(Q)); a grid of T times is one
(T×r)(r×r) product. Ridge (``w2sjax.ridge``) replaces g by 1/(λ + μ).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._io import json_safe
from w2sjax._checks import check_choice, check_finite, check_positive_int, check_shape
from w2sjax.features import RandomFeatures, feature_gram
from w2sjax.inputs import InputDistribution, _pytree, sample_inputs
from w2sjax.relu_net_target import (
    check_target_inputs,
    feature_target_moment,
    target_second_moment,
    target_values,
)
from w2sjax.spectral import (
    SpectralProblem,
    Spectrum,
    cut_eigenvalues,
    decompose,
    refine_log_minimum,
    tie_tolerance,
    flow_gain,
    inverse_sqrt,
    least_squares_weights,
    residual_loss,
    spectral_problem,
)
from w2sjax.w2s import check_increasing_times, student_spectrum, summarize

ROUTES = ("auto", "kernel", "covariance")
TRAINING_DATA = ("samples", "population")
SAMPLE_STREAM = 2  # samples of seed s come from fold_in(key(s), 2) (sweep uses 0 and 1 for weights)
_CHUNK_ELEMENTS = 1 << 22  # feature-matrix entries per chunk of samples (32 MiB in float64)


# --------------------------------------------------------------------------------------------------
# Where the population moments come from
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class ExactMoments:
    """Exact moments of ``target`` under ``inputs`` (any core target, or a ``ReLUNetworkTarget``)."""

    inputs: InputDistribution
    target: object


@_pytree
@dataclasses.dataclass(frozen=True)
class HeldOutMoments:
    """Moments as means over a held-out sample: E[u(x)] ≈ (1/m)Σ_i u(x_i).

    Attributes:
      inputs: (m, d) held-out inputs.
      targets: (m,) the target's values f*(x_i) on them.
    """

    inputs: jax.Array
    targets: jax.Array

    @property
    def dim(self) -> int:
        return int(self.inputs.shape[-1])


Moments = Union[ExactMoments, HeldOutMoments]


def held_out_moments(x, y=None, target=None, dtype=None) -> HeldOutMoments:
    """Held-out moments from inputs x (m, d) and the target's values y (m,), or ``target`` to evaluate on x."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"held-out inputs must be a non-empty (m, d) array; got shape {x.shape}")
    check_finite(x, "held-out inputs")
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    if (y is None) == (target is None):
        raise ValueError("give the held-out target values y, or a target to evaluate on the held-out inputs (one)")
    if y is None:
        y = np.asarray(target_values(target, jnp.asarray(x, dtype)), dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    check_shape(y, (x.shape[0],), "held-out target values")
    check_finite(y, "held-out target values")
    return HeldOutMoments(jnp.asarray(x, dtype), jnp.asarray(y, dtype))


def population_gram(fa: RandomFeatures, fb: RandomFeatures, moments: Moments) -> jax.Array:
    """G_ab = E[φ_a φ_bᵀ] (Ma, Mb)."""
    if isinstance(moments, ExactMoments):
        return feature_gram(fa, fb, moments.inputs)
    return fa(moments.inputs).T @ fb(moments.inputs) / moments.inputs.shape[0]


def population_target_moment(f: RandomFeatures, moments: Moments) -> jax.Array:
    """c = E[φ f*] (M,)."""
    if isinstance(moments, ExactMoments):
        return feature_target_moment(f, moments.target, moments.inputs)
    return f(moments.inputs).T @ moments.targets / moments.inputs.shape[0]


def population_second_moment(moments: Moments) -> jax.Array:
    """s* = E[f*²]."""
    if isinstance(moments, ExactMoments):
        return target_second_moment(moments.target, moments.inputs)
    return jnp.mean(moments.targets**2)


# --------------------------------------------------------------------------------------------------
# Samples and the empirical side
# --------------------------------------------------------------------------------------------------


def draw_samples(inputs: InputDistribution, n: int, seed: int) -> jax.Array:
    """n samples (n, d) of seed ``seed``, from the key fold_in(key(seed), 2)."""
    check_positive_int(n, "n (number of samples)")
    return _sample_inputs(inputs, jax.random.fold_in(jax.random.key(int(seed)), SAMPLE_STREAM), int(n))


_sample_inputs = jax.jit(sample_inputs, static_argnames=("n",))


def choose_route(n: int, width: int, route: str = "auto") -> str:
    """``"kernel"`` (decompose ΦΦᵀ/n, n×n) when n < M, else ``"covariance"`` (ΦᵀΦ/n, M×M), unless forced."""
    check_choice(route, ROUTES, "route")
    if route != "auto":
        return route
    return "kernel" if n < width else "covariance"


def chunk_size(n: int, width: int) -> int:
    """Samples per chunk, so that a chunk's feature matrix holds at most 2^22 entries."""
    return max(1, min(n, _CHUNK_ELEMENTS // max(width, 1)))


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """(n, ...) → (n_chunks, chunk, ...), zero-padded. Zero inputs have zero ReLU and linear features, and
    padded labels are zero, so padding adds nothing to the sums below."""
    n = x.shape[0]
    pad = -n % chunk
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((-1, chunk) + x.shape[1:])


def _chunked_outer(fn, x: jax.Array, y: jax.Array, chunk: int):
    """(Σ_i F_iᵀF_i / n, Σ_i F_iᵀ y_i / n) for F = fn(x) (n, k), y (n, j), over chunks of samples."""
    n = x.shape[0]

    def body(carry, xy):
        xc, yc = xy
        f = fn(xc)
        return (carry[0] + f.T @ f, carry[1] + f.T @ yc), None

    probe = jax.eval_shape(fn, x[:1])
    k, dtype = probe.shape[-1], probe.dtype
    init = (jnp.zeros((k, k), dtype), jnp.zeros((k, y.shape[-1]), dtype))
    (ff, fy), _ = jax.lax.scan(body, init, (_chunks(x, chunk), _chunks(y, chunk)))
    return ff / n, fy / n


def predict(features: RandomFeatures, weights: jax.Array, x: jax.Array, chunk: int | None = None) -> jax.Array:
    """f_w(x) = φ(x)ᵀw for x (n, d) → (n,), over chunks of samples."""
    return _predict(features, weights, x, chunk or chunk_size(x.shape[0], features.weights.shape[0]))


@partial(jax.jit, static_argnames=("chunk",))
def _predict(features, weights, x, chunk):
    values = jax.lax.map(lambda xc: features(xc) @ weights, _chunks(x, chunk))
    return values.reshape(-1)[: x.shape[0]]


def kernel_spectrum(phi: jax.Array, rcond=None) -> Spectrum:
    """Spectrum of ΦᵀΦ/n from the n×n kernel ΦΦᵀ/n = U diag(λ) Uᵀ: Q = ΦᵀU diag(1/√(nλ)) (M, n), zero
    columns where λ is cut."""
    n = phi.shape[0]
    lam, u = jnp.linalg.eigh(phi @ phi.T / n)
    lam = cut_eigenvalues(lam, rcond)
    return Spectrum(lam, (phi.T @ u) * (inverse_sqrt(lam) / math.sqrt(n)))


def _as_columns(labels: jax.Array) -> jax.Array:
    return labels[:, None] if labels.ndim == 1 else labels


def _label_coef(spectrum: Spectrum, label_moment: jax.Array) -> jax.Array:
    """b̃ = Qᵀb̂ on kept eigenvalues: (M, k) → (k, r)."""
    return jnp.where(spectrum.eigenvalues > 0, (spectrum.eigenvectors.T @ label_moment).T, 0)


def empirical_fit(features: RandomFeatures, x: jax.Array, labels: jax.Array, route: str, rcond=None):
    """Decompose the empirical covariance ΦᵀΦ/n and project the labels (pure; ``route`` must be resolved).

    Args:
      features: the model's features (M, d).
      x: (n, d) training inputs.
      labels: (n, k) label vectors (k label sets share one decomposition).
      route: ``"kernel"`` (n×n, Φ built whole) or ``"covariance"`` (M×M, summed over chunks of samples).

    Returns:
      (Spectrum with Q (M, r), λ (r,); b̃ = Qᵀb̂ of shape (k, r)), r = n (kernel) or M (covariance).
    """
    n, width = x.shape[0], features.weights.shape[0]
    if route == "kernel":
        phi = features(x)
        spectrum = kernel_spectrum(phi, rcond)
        label_moment = phi.T @ labels / n
    elif route == "covariance":
        cov, label_moment = _chunked_outer(features, x, labels, chunk_size(n, width))
        spectrum = decompose(cov, rcond)
    else:
        raise ValueError(f"route must be resolved to 'kernel' or 'covariance'; got {route!r}")
    return spectrum, _label_coef(spectrum, label_moment)


# --------------------------------------------------------------------------------------------------
# The population side: G and c in the empirical eigenbasis
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class FiniteProblem:
    """Population error of the weights w = Q (gain ∘ b̃), for any gain (flow, ridge, gradient descent).

    L = ‖C (gain ∘ b̃) − a*‖² + R with CᵀC = QᵀGQ.

    Attributes:
      eigenvalues: (r,) λ of the empirical covariance ΦᵀΦ/n (zero where cut).
      label_coef: (..., r) b̃ = Qᵀb̂, the empirical label moment in the empirical eigenbasis.
      mixing: (r, r) C = diag(√ν) Wᵀ, where QᵀGQ = W diag(ν) Wᵀ.
      target_coef: (r,) a* = WᵀQᵀc/√ν (zero where ν is cut).
      residual: R = s* − ‖a*‖², the error of the best predictor in span(Q), clipped at 0.
    """

    eigenvalues: jax.Array
    label_coef: jax.Array
    mixing: jax.Array
    target_coef: jax.Array
    residual: jax.Array


def finite_problem(
    spectrum: Spectrum, label_coef: jax.Array, projected_gram: jax.Array, projected_target: jax.Array,
    target_energy: jax.Array, rcond=None,
) -> FiniteProblem:
    """Build the problem from P = QᵀGQ (r, r), p = Qᵀc (r,) and s*: one r×r eigendecomposition."""
    nu, w = jnp.linalg.eigh(projected_gram)
    mixing = jnp.sqrt(jnp.maximum(nu, 0))[:, None] * w.T
    target_coef = (w.T @ projected_target) * inverse_sqrt(cut_eigenvalues(nu, rcond))
    residual = jnp.maximum(target_energy - jnp.sum(target_coef**2), 0)
    return FiniteProblem(spectrum.eigenvalues, label_coef, mixing, target_coef, residual)


def projected_moments(features: RandomFeatures, basis: jax.Array, moments: Moments):
    """(QᵀGQ (r, r), Qᵀc (r,), s*) for the basis Q (M, r); held-out moments are summed over chunks."""
    if isinstance(moments, ExactMoments):
        gq = feature_gram(features, features, moments.inputs) @ basis
        c = feature_target_moment(features, moments.target, moments.inputs)
        return basis.T @ gq, basis.T @ c, target_second_moment(moments.target, moments.inputs)
    x, y = moments.inputs, moments.targets
    chunk = chunk_size(x.shape[0], max(features.weights.shape[0], basis.shape[1]))
    zz, zy = _chunked_outer(lambda xc: features(xc) @ basis, x, y[:, None], chunk)
    return zz, zy[:, 0], jnp.mean(y**2)


@partial(jax.jit, static_argnames=("rcond",))
def _kernel_problem(features, x, labels, moments, rcond=None):
    spectrum, label_coef = empirical_fit(features, x, labels, "kernel", rcond)
    gram, target, energy = projected_moments(features, spectrum.eigenvectors, moments)
    return spectrum, finite_problem(spectrum, label_coef, gram, target, energy, rcond)


@partial(jax.jit, static_argnames=("chunk",))
def _empirical_covariance(features, x, labels, chunk):
    return _chunked_outer(features, x, labels, chunk)


@partial(jax.jit, static_argnames=("rcond",))
def _covariance_problem(features, covariance, label_moment, moments, rcond=None):
    # Depends on M only, not on n: one compilation serves every sample size.
    spectrum = decompose(covariance, rcond)
    gram, target, energy = projected_moments(features, spectrum.eigenvectors, moments)
    problem = finite_problem(spectrum, _label_coef(spectrum, label_moment), gram, target, energy, rcond)
    return spectrum, problem


def _sample_problem(features, x, labels, moments, route, rcond=None):
    if route == "kernel":
        return _kernel_problem(features, x, labels, moments, rcond)
    chunk = chunk_size(x.shape[0], features.weights.shape[0])
    covariance, label_moment = _empirical_covariance(features, x, labels, chunk)
    return _covariance_problem(features, covariance, label_moment, moments, rcond)


def sample_problem(
    features: RandomFeatures, x: jax.Array, labels: jax.Array, moments: Moments, route: str = "auto", rcond=None
):
    """Train on (x, labels), score on the population: (Spectrum, FiniteProblem). The covariance route
    compiles its n-dependent sum apart from its M-dependent rest, so new sample sizes recompile only the sum.

    Args:
      features: (M, d) features.  x: (n, d) samples.  labels: (n,) or (n, k) label sets.
      moments: ``ExactMoments`` or ``HeldOutMoments``.
      route: ``"auto"`` (the smaller of n×n and M×M), ``"kernel"`` or ``"covariance"``.

    Returns:
      The empirical spectrum and the problem; its ``label_coef`` is (r,) for one label vector, (k, r) for k.
    """
    y = jnp.asarray(labels, x.dtype)
    resolved = choose_route(x.shape[0], features.weights.shape[0], route)
    spectrum, problem = _sample_problem(features, x, _as_columns(y), moments, resolved, rcond)
    if y.ndim == 1:
        problem = dataclasses.replace(problem, label_coef=problem.label_coef[0])
    return spectrum, problem


# --------------------------------------------------------------------------------------------------
# Losses over a grid
# --------------------------------------------------------------------------------------------------


def finite_loss_from_gain(problem: FiniteProblem, gain: jax.Array) -> jax.Array:
    """L = ‖C (gain ∘ b̃) − a*‖² + R for gain (..., r) (broadcast against label_coef) → (...)."""
    kept = jnp.where(problem.eigenvalues > 0, gain, 0)
    resid = (kept * problem.label_coef) @ problem.mixing.T - problem.target_coef
    return jnp.sum(resid**2, axis=-1) + problem.residual


@jax.jit
def finite_loss(problem: FiniteProblem, times: jax.Array) -> jax.Array:
    """Population error of the flow at every time: (T,) → (T,) (or (T, k) for k label sets)."""
    t = jnp.reshape(times, times.shape + (1,) * problem.label_coef.ndim)
    return finite_loss_from_gain(problem, flow_gain(problem.eigenvalues, t))


def inverse_kept(eigenvalues: jax.Array) -> jax.Array:
    """1/λ on kept eigenvalues, 0 elsewhere (the gain of the flow at t = ∞: least squares / min-norm fit)."""
    pos = eigenvalues > 0
    return jnp.where(pos, 1 / jnp.where(pos, eigenvalues, 1), 0)


@jax.jit
def finite_loss_at_infinity(problem: FiniteProblem) -> jax.Array:
    """Error of the flow's limit Ĝ⁺b̂ (least squares; the minimum-norm interpolant when M ≥ n)."""
    return finite_loss_from_gain(problem, inverse_kept(problem.eigenvalues))


@jax.jit
def finite_flow_weights(spectrum: Spectrum, label_coef: jax.Array, t) -> jax.Array:
    """w(t) = Q (g(λ, t) ∘ b̃), shape (M,); t = ∞ gives Ĝ⁺b̂."""
    lam = spectrum.eigenvalues
    return spectrum.eigenvectors @ (jnp.where(lam > 0, flow_gain(lam, t), 0) * label_coef)


def finite_loss_slope(problem: FiniteProblem, gain: jax.Array, gain_slope: jax.Array) -> jax.Array:
    """dL/du = 2 (C (gain ∘ b̃) − a*)ᵀ C (dgain/du ∘ b̃) for one label set and gain (r,) depending on u."""
    kept = problem.eigenvalues > 0
    resid = (jnp.where(kept, gain, 0) * problem.label_coef) @ problem.mixing.T - problem.target_coef
    return 2 * jnp.sum(resid * ((jnp.where(kept, gain_slope, 0) * problem.label_coef) @ problem.mixing.T))


@jax.jit
def finite_best_time(problem: FiniteProblem, times: jax.Array, losses: jax.Array | None = None):
    """(t*, L(t*)) for one label set, refined past the grid, with ``spectral.best_time``'s convention: t* = ∞
    when the error still falls e^20 past the grid's last time, or when L(∞) is within 64 ε s* of the best
    finite candidate (or lower); the loss is then the lower of the two."""
    if losses is None:
        losses = finite_loss(problem, times)
    lam = problem.eigenvalues

    def loss_at_log(u):
        return finite_loss_from_gain(problem, flow_gain(lam, jnp.exp(u)))

    def slope_at_log(u):  # dg/d log t = t e^{−tλ}
        t = jnp.exp(u)
        return finite_loss_slope(problem, flow_gain(lam, t), t * jnp.exp(-t * lam))

    t_best, loss_best, never_rises, _ = refine_log_minimum(loss_at_log, slope_at_log, jnp.log(times), losses)
    loss_inf = finite_loss_at_infinity(problem)
    at_infinity = never_rises | (loss_inf <= loss_best + tie_tolerance(problem))
    return jnp.where(at_infinity, jnp.inf, t_best), jnp.where(at_infinity, jnp.minimum(loss_inf, loss_best), loss_best)


# --------------------------------------------------------------------------------------------------
# Teachers
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class FiniteTeacher:
    """A teacher and what the student needs from it.

    Attributes:
      weights: (M_TE,) top-layer weights w_T.
      loss: L_TE, its population error.
      sample_labels: (n,) f_T(x_i) on the training samples (the student's labels).
    """

    weights: jax.Array
    loss: jax.Array
    sample_labels: jax.Array


def fit_teacher_on_samples(
    teacher: RandomFeatures, x: jax.Array, labels: jax.Array, moments: Moments, *,
    time: float = math.inf, route: str = "auto", rcond=None,
) -> FiniteTeacher:
    """Teacher trained by gradient flow on (x, labels (n,)) up to ``time`` (∞: least squares / min-norm fit)."""
    resolved = choose_route(x.shape[0], teacher.weights.shape[0], route)
    spectrum, problem = _sample_problem(teacher, x, jnp.asarray(labels, x.dtype)[:, None], moments, resolved, rcond)
    weights, loss = _teacher_at_time(spectrum, problem, time)
    return FiniteTeacher(weights, loss, predict(teacher, weights, x))


@jax.jit
def _teacher_at_time(spectrum, problem, time):
    gain = jnp.where(spectrum.eigenvalues > 0, flow_gain(spectrum.eigenvalues, time), 0)
    return spectrum.eigenvectors @ (gain * problem.label_coef[0]), finite_loss_from_gain(problem, gain)[0]


def fit_teacher_on_population(teacher: RandomFeatures, x: jax.Array, moments: ExactMoments, rcond=None) -> FiniteTeacher:
    """Teacher fitted on the population (w_T = G_T⁺c_T, L_TE = s* − c_TᵀG_T⁺c_T), any target kind; its
    values on the samples x are the student's labels."""
    weights, loss = population_teacher(teacher, moments, rcond)
    return FiniteTeacher(weights, loss, predict(teacher, weights, x))


@partial(jax.jit, static_argnames=("rcond",))
def population_teacher(teacher: RandomFeatures, moments: ExactMoments, rcond=None):
    """(w_T, L_TE) = (G_T⁺c_T, s* − c_TᵀG_T⁺c_T) for any target kind."""
    spectrum = decompose(population_gram(teacher, teacher, moments), rcond)
    c_t = population_target_moment(teacher, moments)
    return least_squares_weights(spectrum, c_t), residual_loss(spectrum, c_t, population_second_moment(moments))


# --------------------------------------------------------------------------------------------------
# The finite-sample weak-to-strong pipeline
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FiniteW2SResult:
    """Population figures of merit of a teacher and student trained on samples.

    Attributes:
      times: (T,) stopping times of the student.
      student_loss: (T,) L_ST(t), population error.
      teacher_loss: L_TE, population error of the teacher.
      best_time, best_student_loss: t* and L_ST(t*) (refined past the grid; t* = ∞ when L_ST(∞) is lowest).
      student_loss_at_infinity: L_ST(∞).
      ceiling_loss: L_ceil, the student trained on the TRUE labels of the same samples, at its best stopping
        time (with n samples, training to convergence can be arbitrarily bad near M_ST = n); R_S when
        ``student_data="population"`` (where the flow on true labels decreases to R_S, so both are the best).
      ratio: L_ST*/L_TE.   pgr: (L_TE − L_ST*)/(L_TE − L_ceil).
      teacher_weights: (M_TE,) w_T.
      n: the number of training samples.
      teacher_route, student_route: ``"kernel"``, ``"covariance"`` or ``"population"``.
      problem: the student's FiniteProblem (or SpectralProblem when trained on the population), for
        ``finite_loss``/``ridge.ridge_loss`` at other times or ridge strengths.
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
    teacher_weights: jax.Array
    n: int
    teacher_route: str
    student_route: str
    problem: Union[FiniteProblem, SpectralProblem]

    def to_dict(self) -> dict:
        """JSON-ready numbers and lists; leaves out ``problem`` and ``teacher_weights``."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("problem", "teacher_weights"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, (str, int)):
                out[f.name] = value
                continue
            value = np.asarray(value)
            out[f.name] = [json_safe(v) for v in value.tolist()] if value.ndim else json_safe(float(value))
        return out


@jax.jit
def _summarize_finite(problems: FiniteProblem, times, teacher_loss):
    """Figures of merit for label_coef (2, r) = [teacher's labels, true labels] (the latter for L_ceil)."""

    def one(label_coef):
        problem = dataclasses.replace(problems, label_coef=label_coef)
        losses = finite_loss(problem, times)
        return (losses,) + finite_best_time(problem, times, losses) + (finite_loss_at_infinity(problem),)

    losses, t_best, loss_best, loss_inf = jax.vmap(one)(problems.label_coef)
    ceiling = loss_best[1]
    return dict(
        student_loss=losses[0], best_time=t_best[0], best_student_loss=loss_best[0],
        student_loss_at_infinity=loss_inf[0], ceiling_loss=ceiling, ratio=loss_best[0] / teacher_loss,
        pgr=(teacher_loss - loss_best[0]) / (teacher_loss - ceiling),
    )


@partial(jax.jit, static_argnames=("rcond",))
def population_student_problem(
    student: RandomFeatures, teacher: RandomFeatures, teacher_weights: jax.Array, moments: ExactMoments, rcond=None
) -> SpectralProblem:
    """The student trained on the population with the teacher's labels (any target kind): G_S decomposed
    (``w2s.student_spectrum``), labels b = G_ST w_T, target c_S = E[φ_S f*]."""
    spectrum = student_spectrum(student, moments.inputs, rcond)
    labels = population_gram(student, teacher, moments) @ teacher_weights
    c_s = population_target_moment(student, moments)
    return spectral_problem(spectrum, labels, c_s, population_second_moment(moments))


_summarize_population = jax.jit(summarize)


_target_values = jax.jit(target_values)


def resolve_samples(samples, inputs: InputDistribution | None, seed: int, dtype) -> jax.Array:
    """An (n, d) array from ``samples``: an int n (drawn from ``inputs`` with ``seed``) or an array."""
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if inputs is None:
            raise ValueError("samples given as a count n need an input distribution to draw from (inputs=...)")
        return draw_samples(inputs, int(samples), seed)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"samples must be a count n or a non-empty (n, d) array; got shape {x.shape}")
    check_finite(x, "samples")
    return jnp.asarray(x, dtype)


def resolve_moments(target, inputs, heldout) -> Moments:
    """ExactMoments(inputs, target), or the held-out moments; exactly one source."""
    if heldout is not None:
        if inputs is not None:
            raise ValueError("give inputs (exact moments) or heldout (empirical moments), not both")
        if not isinstance(heldout, HeldOutMoments):
            heldout = held_out_moments(heldout, target=target)
        return heldout
    if inputs is None:
        raise ValueError("give inputs (an InputDistribution, for exact moments) or heldout (a held-out array)")
    if target is None:
        raise ValueError("exact moments need a target (e.g. linear_target(beta) or relu_network_target(...))")
    check_target_inputs(target, inputs)
    return ExactMoments(inputs, target)


def finite_weak_to_strong(
    student: RandomFeatures,
    teacher: RandomFeatures,
    target,
    inputs: InputDistribution | None,
    times,
    *,
    samples,
    seed: int = 0,
    labels=None,
    heldout=None,
    teacher_data: str = "samples",
    student_data: str = "samples",
    teacher_time: float = math.inf,
    route: str = "auto",
    rcond: float | None = None,
) -> FiniteW2SResult:
    """Teacher and/or student trained on n samples; every error is a population error.

    Args:
      student, teacher: features (M_ST, d), (M_TE, d).
      target: f* (core target or ``ReLUNetworkTarget``); may be None when ``labels`` and held-out values
        are given.
      inputs: the input distribution (exact moments), or None with ``heldout``.
      times: (T,) strictly increasing positive stopping times of the student.
      samples: n (drawn from ``inputs`` with ``seed``) or an (n, d) array. The teacher learns f* on them and
        the student learns the teacher's values f_T(x_i) on the same points.
      labels: (n,) the target's values on the samples (default f*(x_i)).
      heldout: an (m, d) array (values from ``target``) or ``HeldOutMoments``: moments become held-out means.
      teacher_data, student_data: ``"samples"`` (finite-sample flow) or ``"population"`` (exact moments).
      teacher_time: the teacher's flow time (∞: least squares).
      route: ``"auto"`` (decompose the smaller of n×n and M×M), ``"kernel"`` or ``"covariance"``.
      rcond: relative eigenvalue cutoff (default size·ε).
    """
    check_choice(teacher_data, TRAINING_DATA, "teacher_data")
    check_choice(student_data, TRAINING_DATA, "student_data")
    check_choice(route, ROUTES, "route")
    if not (teacher_time > 0):
        raise ValueError(f"teacher_time must be > 0 (math.inf for least squares); got {teacher_time}")
    moments = resolve_moments(target, inputs, heldout)
    exact = isinstance(moments, ExactMoments)
    if not exact and "population" in (teacher_data, student_data):
        raise ValueError("training on the population needs exact moments (inputs); with held-out data use 'samples'")
    dtype = student.weights.dtype
    x = resolve_samples(samples, inputs, seed, dtype)
    d = x.shape[1]
    for f, name in ((student, "student features"), (teacher, "teacher features")):
        if f.dim != d:
            raise ValueError(f"{name} have input dimension {f.dim} but the samples have dimension {d}")
        check_finite(np.asarray(f.weights), name)
    if not exact and moments.dim != d:
        raise ValueError(f"held-out inputs have dimension {moments.dim} but the samples have dimension {d}")
    n = x.shape[0]
    if labels is None:
        if target is None:
            raise ValueError("give the training labels (labels=...) or a target to evaluate on the samples")
        y = _target_values(target, x)
    else:
        y = np.asarray(labels, dtype=np.float64)
        check_shape(y, (n,), "labels")
        check_finite(y, "labels")
        y = jnp.asarray(y, dtype)
    t = jnp.asarray(check_increasing_times(times), dtype)

    if teacher_data == "samples":
        fit = fit_teacher_on_samples(teacher, x, y, moments, time=teacher_time, route=route, rcond=rcond)
        teacher_route = choose_route(n, teacher.weights.shape[0], route)
    else:
        fit = fit_teacher_on_population(teacher, x, moments, rcond)
        teacher_route = "population"

    if student_data == "samples":
        _, both = sample_problem(student, x, jnp.stack([fit.sample_labels, y], axis=1), moments, route, rcond)
        problem = dataclasses.replace(both, label_coef=both.label_coef[0])
        out = _summarize_finite(both, t, fit.loss)
        student_route = choose_route(n, student.weights.shape[0], route)
    else:
        problem = population_student_problem(student, teacher, fit.weights, moments, rcond)
        res = _summarize_population(problem, t, fit.loss)
        out = {k: getattr(res, k) for k in (
            "student_loss", "best_time", "best_student_loss", "student_loss_at_infinity", "ceiling_loss", "ratio", "pgr")}
        student_route = "population"
    return FiniteW2SResult(
        times=t, teacher_loss=fit.loss, teacher_weights=fit.weights, n=n, teacher_route=teacher_route,
        student_route=student_route, problem=problem, **out,
    )
