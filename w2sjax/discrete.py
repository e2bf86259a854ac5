"""Discrete-step training with optax, scored by the exact population error, and discrete GD in closed form.

The top layer w of a random-feature model is trained from w = 0 on ½E[(f_w(x) − y(x))²] in one of two ways:
  population:  full-batch steps on ½wᵀGw − wᵀb with the exact moments G = E[φφᵀ], b = E[φy]
               (gradient G w − b), e.g. ``optax.sgd(η)`` is gradient descent w_{k+1} = w_k − η(G w_k − b);
  online:      each step draws a fresh minibatch x_1..x_B from the input distribution, labels y = f_T(x)
               (``TeacherLabels``) or y = f*(x) (a target), and steps on ½·mean_j (f_w(x_j) − y_j)².
Both loops are one ``jax.lax.scan`` under ``jit`` and record, at chosen steps, the exact population error
    L(w) = E[(f_w − f*)²] = wᵀGw − 2wᵀc + s* = Σ_i (√λ_i q_iᵀw − a*_i)² + R,   a* = Qᵀc/√λ,  R = s* − Σ a*²,
in its sum-of-squares form (no cancellation where L ≪ s*).

Plain gradient descent with step η from w = 0 has the closed form
    w_k = Q diag((1 − (1 − ηλ)^k)/λ) Qᵀ b      ((1 − (1 − ηλ)^k)/λ = kη at λ = 0),
so its error is ``spectral.student_loss_from_decay`` with decay (1 − ηλ)^k; as η → 0 at fixed t = kη it tends
to gradient flow, with |L_GD(k) − L_GF(kη)| ≤ ``gd_flow_bound(problem, η)`` = O(η) for ηλ_max < 1.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from w2sjax._checks import check_finite, check_positive_int
from w2sjax.features import RandomFeatures, check_features_inputs, feature_factor, feature_gram, feature_target_moment
from w2sjax.inputs import InputDistribution, Target, _pytree, check_target_inputs, sample_inputs, target_values
from w2sjax.spectral import SpectralProblem, Spectrum, decompose, decompose_factor, inverse_sqrt, student_loss_from_decay
from w2sjax.w2s import fit_teacher, student_target_coef, teacher_label_moment, uses_factor


# --------------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------------


@_pytree
@dataclasses.dataclass(frozen=True)
class PopulationObjective:
    """The training objective ½wᵀGw − wᵀb (+ const) of a top layer, and what scores it against f*.

    Attributes:
      gram: (M, M) G = E[φφᵀ].
      label_moment: (M,) b = E[φ y] for the training labels y.
      spectrum: G = Q diag(λ) Qᵀ (kept eigenvalues; Q of shape (M, r)).
      target_coef: (r,) a* = Qᵀc/√λ, c = E[φ f*].
      residual: R = s* − Σ a*², the error of the best predictor in span(φ).
    """

    gram: jax.Array
    label_moment: jax.Array
    spectrum: Spectrum
    target_coef: jax.Array
    residual: jax.Array


@_pytree
@dataclasses.dataclass(frozen=True)
class TeacherLabels:
    """Labels y(x) = f_T(x) = ⟨w_T, φ_T(x)⟩ of a trained teacher."""

    teacher: RandomFeatures
    weights: jax.Array


Labels = Union[TeacherLabels, Target]


@_pytree
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A training run scored at its record steps.

    Attributes:
      steps: (R,) the record steps k (number of optimizer steps taken).
      errors: (R,) the exact population error L(w_k).
      final_weights: (M,) w at the last record step.
      weights: (R, M) w_k at every record step, or None when not recorded.
    """

    steps: jax.Array
    errors: jax.Array
    final_weights: jax.Array
    weights: jax.Array | None = None


def student_objective(
    student: RandomFeatures,
    teacher: RandomFeatures,
    target: Target,
    inputs: InputDistribution,
    rcond: float | None = None,
) -> tuple[PopulationObjective, TeacherLabels]:
    """The student's objective on its teacher's labels (b = G_ST w_T, w_T = G_T⁺c_T), scored against f*.

    Returns:
      (objective, labels): the labels are the fitted teacher, for online training.
    """
    _check_models(inputs, target, student, teacher)
    return _student_objective(student, teacher, target, inputs, rcond=rcond)


def teacher_objective(
    teacher: RandomFeatures, target: Target, inputs: InputDistribution, rcond: float | None = None
) -> PopulationObjective:
    """The teacher's objective on the true labels (b = c_T = E[φ_T f*]); gradient flow tends to w_T = G_T⁺c_T."""
    _check_models(inputs, target, teacher)
    return _teacher_objective(teacher, target, inputs, rcond=rcond)


@partial(jax.jit, static_argnames=("rcond",))
def _student_objective(student, teacher, target, inputs, rcond=None):
    fit = fit_teacher(teacher, target, inputs, rcond)
    labels = teacher_label_moment(student, teacher, fit.weights, inputs)
    return _objective(student, labels, target, inputs, rcond), TeacherLabels(teacher, fit.weights)


@partial(jax.jit, static_argnames=("rcond",))
def _teacher_objective(teacher, target, inputs, rcond=None):
    return _objective(teacher, feature_target_moment(teacher, target, inputs), target, inputs, rcond)


def _objective(features, label_moment, target, inputs, rcond) -> PopulationObjective:
    gram = feature_gram(features, features, inputs)  # built once: the training steps and eigh share it
    if uses_factor(features):
        spectrum = decompose_factor(feature_factor(features, inputs), rcond)
    else:
        spectrum = decompose(gram, rcond)
    target_coef, residual = student_target_coef(spectrum, features, target, inputs)
    return PopulationObjective(gram, label_moment, spectrum, target_coef, residual)


def _check_models(inputs, target, *models) -> None:
    check_target_inputs(target, inputs)
    for f in models:
        check_features_inputs(f, inputs)
        check_finite(np.asarray(f.weights), "feature weights")


@jax.jit
def population_error(objective: PopulationObjective, weights: jax.Array) -> jax.Array:
    """L(w) = Σ_i (√λ_i q_iᵀw − a*_i)² + R for weights (..., M) → (...)."""
    spectrum = objective.spectrum
    projected = jnp.sqrt(spectrum.eigenvalues) * (weights @ spectrum.eigenvectors)
    return jnp.sum((projected - objective.target_coef) ** 2, axis=-1) + objective.residual


@jax.jit
def objective_problem(objective: PopulationObjective) -> SpectralProblem:
    """The SpectralProblem (λ, a = Qᵀb/√λ, a*, R) of an objective: its gradient flow and GD in closed form."""
    spectrum = objective.spectrum
    label_coef = (spectrum.eigenvectors.T @ objective.label_moment) * inverse_sqrt(spectrum.eigenvalues)
    return SpectralProblem(spectrum.eigenvalues, label_coef, objective.target_coef, objective.residual)


def population_gradient(objective: PopulationObjective, weights: jax.Array) -> jax.Array:
    """∇_w ½E[(f_w − y)²] = G w − b, shape (M,)."""
    return objective.gram @ weights - objective.label_moment


def label_values(labels: Labels, x: jax.Array) -> jax.Array:
    """y(x) for x (..., d): the teacher's predictions, or f*(x) for a target."""
    if isinstance(labels, TeacherLabels):
        return labels.teacher(x) @ labels.weights
    return target_values(labels, x)


# --------------------------------------------------------------------------------------------------
# Training loops (jit + lax.scan)
# --------------------------------------------------------------------------------------------------


def _record(step, carry, record_steps, error, record_weights: bool) -> Trajectory:
    """Advance ``carry = (w, …)`` by ``step`` between consecutive record steps, scoring w at each of them."""
    segments = jnp.diff(record_steps, prepend=jnp.zeros((1,), record_steps.dtype))

    def segment(carry, length):
        carry = jax.lax.fori_loop(0, length, lambda _, c: step(c), carry)
        weights = carry[0]
        return carry, (error(weights), weights if record_weights else None)

    carry, (errors, weights) = jax.lax.scan(segment, carry, segments)
    return Trajectory(record_steps, errors, carry[0], weights)


def _initial_state(optimizer, w0, hyperparams):
    """optimizer.init(w0), with the injected hyperparameters replaced by ``hyperparams`` (traced values)."""
    state = optimizer.init(w0)
    if not hyperparams:
        return state
    current = getattr(state, "hyperparams", None)
    if not isinstance(current, dict):
        raise ValueError("hyperparams need an optimizer built with optax.inject_hyperparams, e.g. "
                         "optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)")
    unknown = sorted(set(hyperparams) - set(current))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; this optimizer injects {sorted(current)}")
    merged = {k: jnp.asarray(hyperparams[k], jnp.result_type(v)) if k in hyperparams else v for k, v in current.items()}
    return state._replace(hyperparams=merged)


def _population_run(objective, record_steps, hyperparams, optimizer, record_weights=False) -> Trajectory:
    w0 = jnp.zeros_like(objective.label_moment)

    def step(carry):
        w, state = carry
        updates, state = optimizer.update(population_gradient(objective, w), state, w)
        return optax.apply_updates(w, updates), state

    error = partial(population_error, objective)
    return _record(step, (w0, _initial_state(optimizer, w0, hyperparams)), record_steps, error, record_weights)


_train_population = jax.jit(_population_run, static_argnames=("optimizer", "record_weights"))


@partial(jax.jit, static_argnames=("optimizer",))
def _population_runs(objective, record_steps, hyperparams, optimizer) -> Trajectory:
    steps_axis = 0 if record_steps.ndim == 2 else None
    one = lambda steps, hp: _population_run(objective, steps, hp, optimizer)
    return jax.vmap(one, in_axes=(steps_axis, 0))(record_steps, hyperparams)


@partial(jax.jit, static_argnames=("optimizer", "batch_size", "record_weights"))
def _train_online(
    objective, features, labels, inputs, key, record_steps, hyperparams, optimizer, batch_size, record_weights=False
) -> Trajectory:
    w0 = jnp.zeros_like(objective.label_moment)

    def batch_loss(w, x, y):
        return 0.5 * jnp.mean((features(x) @ w - y) ** 2)

    def step(carry):
        w, state, k = carry
        x = sample_inputs(inputs, jax.random.fold_in(key, k), batch_size)
        grads = jax.grad(batch_loss)(w, x, label_values(labels, x))
        updates, state = optimizer.update(grads, state, w)
        return optax.apply_updates(w, updates), state, k + 1

    error = partial(population_error, objective)
    carry = (w0, _initial_state(optimizer, w0, hyperparams), jnp.zeros((), record_steps.dtype))
    return _record(step, carry, record_steps, error, record_weights)


def check_record_steps(record_steps) -> np.ndarray:
    """Record steps: a non-empty 1-D array of non-decreasing integers ≥ 0."""
    steps = np.asarray(record_steps)
    if steps.ndim == 0:
        steps = steps[None]
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError(
            f"record_steps must be a non-empty 1-D array of step counts; got shape {np.shape(record_steps)}"
        )
    if steps.dtype.kind not in "iu":
        if steps.dtype.kind != "f" or not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)):
            raise ValueError("record_steps must be whole numbers of steps (e.g. np.arange(0, 1001, 10))")
    steps = steps.astype(np.int64)
    if np.any(steps < 0):
        raise ValueError(f"record_steps must be >= 0; got min {steps.min()}")
    if np.any(np.diff(steps) < 0):
        raise ValueError("record_steps must be non-decreasing (e.g. np.arange(0, 1001, 10))")
    return steps


def _check_online(objective, features, inputs, batch_size) -> int:
    check_features_inputs(features, inputs)
    width, size = int(features.weights.shape[0]), int(objective.label_moment.shape[-1])
    if width != size:
        raise ValueError(f"features have {width} rows but the objective has {size} weights; pass the objective "
                         "built from these features")
    return check_positive_int(batch_size, "batch_size")


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"optimizer must be an optax GradientTransformation (e.g. optax.sgd(0.5)); got {optimizer!r}")


def train_population(
    objective: PopulationObjective,
    optimizer: optax.GradientTransformation,
    record_steps,
    record_weights: bool = False,
    hyperparams: dict | None = None,
) -> Trajectory:
    """Full-batch training from w = 0 on the exact population objective, scored by L(w) at ``record_steps``.

    Args:
      objective: from ``student_objective`` or ``teacher_objective``.
      optimizer: any optax GradientTransformation (``optax.sgd(η)`` is gradient descent with step η).
        The optimizer is a static argument: each new optimizer object compiles anew; to reuse one compilation,
        build it with ``optax.inject_hyperparams`` and pass the values in ``hyperparams``.
      record_steps: (R,) non-decreasing step counts at which to record L(w_k) (0 records w = 0).
      record_weights: also return every recorded w_k (R, M).
      hyperparams: values for the hyperparameters of an ``optax.inject_hyperparams`` optimizer.
    """
    _check_optimizer(optimizer)
    steps = jnp.asarray(check_record_steps(record_steps))
    return _train_population(objective, steps, hyperparams or {}, optimizer=optimizer, record_weights=record_weights)


def population_runs(
    objective: PopulationObjective, optimizer: optax.GradientTransformation, record_steps, hyperparams: dict
) -> Trajectory:
    """``train_population`` for a batch of hyperparameters in one compiled call (leading axis = run).

    Args:
      optimizer: built with ``optax.inject_hyperparams``, e.g.
        ``optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)``.
      record_steps: (R,) shared by every run, or (n, R) one row per run (repeat the last step to pad a shorter run).
      hyperparams: dict of (n,) arrays, e.g. ``{"learning_rate": jnp.array([2., 1., .5])}``.
    """
    _check_optimizer(optimizer)
    if not hyperparams:
        raise ValueError("population_runs needs hyperparams, e.g. {'learning_rate': [1.0, 0.5, 0.25]}")
    values = {k: jnp.atleast_1d(jnp.asarray(v)) for k, v in hyperparams.items()}
    sizes = {int(v.shape[0]) for v in values.values()}
    if len(sizes) != 1 or any(v.ndim != 1 for v in values.values()):
        shapes = [v.shape for v in values.values()]
        raise ValueError(f"hyperparams must be 1-D arrays of one common length; got shapes {shapes}")
    steps = np.asarray(record_steps)
    if steps.ndim == 2:
        if steps.shape[0] not in sizes:
            raise ValueError(f"record_steps has {steps.shape[0]} rows but there are {sizes.pop()} runs")
        steps = np.stack([check_record_steps(row) for row in steps])
    else:
        steps = check_record_steps(steps)
    return _population_runs(objective, jnp.asarray(steps), values, optimizer=optimizer)


def train_online(
    objective: PopulationObjective,
    features: RandomFeatures,
    labels: Labels,
    inputs: InputDistribution,
    optimizer: optax.GradientTransformation,
    record_steps,
    *,
    batch_size: int,
    key: jax.Array,
    record_weights: bool = False,
    hyperparams: dict | None = None,
) -> Trajectory:
    """Online training from w = 0: every step draws a fresh minibatch x ~ inputs with labels y(x).

    Args:
      objective: the population objective of ``features`` (for the exact error L(w_k) only).
      features: the model being trained (its top layer).
      labels: ``TeacherLabels`` (a student on its teacher's labels) or a target (a teacher on true labels).
      inputs: the input distribution the batches are drawn from.
      optimizer: any optax GradientTransformation.
      record_steps: (R,) non-decreasing step counts at which to record L(w_k).
      batch_size: B, the minibatch size.
      key: PRNG key; step k uses ``fold_in(key, k)``. Vmap over keys for seeds (``online_runs``).
      record_weights: also return every recorded w_k (R, M).
      hyperparams: values for the hyperparameters of an ``optax.inject_hyperparams`` optimizer.
    """
    _check_optimizer(optimizer)
    batch_size = _check_online(objective, features, inputs, batch_size)
    steps = jnp.asarray(check_record_steps(record_steps))
    return _train_online(
        objective, features, labels, inputs, key, steps, hyperparams or {},
        optimizer=optimizer, batch_size=batch_size, record_weights=record_weights,
    )


@partial(jax.jit, static_argnames=("optimizer", "batch_size"))
def _online_runs(objective, features, labels, inputs, keys, record_steps, hyperparams, optimizer, batch_size):
    one = lambda key: _train_online(
        objective, features, labels, inputs, key, record_steps, hyperparams, optimizer=optimizer, batch_size=batch_size
    )
    return jax.vmap(one)(keys)


def online_runs(
    objective: PopulationObjective,
    features: RandomFeatures,
    labels: Labels,
    inputs: InputDistribution,
    optimizer: optax.GradientTransformation,
    record_steps,
    *,
    batch_size: int,
    seeds,
    hyperparams: dict | None = None,
) -> Trajectory:
    """``train_online`` for every seed in one compiled call (key = ``jax.random.key(seed)``); leading axis = seed."""
    _check_optimizer(optimizer)
    batch_size = _check_online(objective, features, inputs, batch_size)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    steps = jnp.asarray(check_record_steps(record_steps))
    return _online_runs(
        objective, features, labels, inputs, keys, steps, hyperparams or {}, optimizer=optimizer, batch_size=batch_size
    )


# --------------------------------------------------------------------------------------------------
# Discrete gradient descent in closed form
# --------------------------------------------------------------------------------------------------


@jax.jit
def discrete_gd_decay(eigenvalues: jax.Array, step_size, step: jax.Array) -> jax.Array:
    """(1 − ηλ)^k for one integer step count k and eigenvalues (..., r); exp(k log1p(−ηλ)) where 1 − ηλ > 0."""
    x = step_size * eigenvalues
    below_one = x < 1
    log_base = jnp.log1p(-jnp.where(below_one, x, 0))
    return jnp.where(below_one, jnp.exp(step * log_base), jnp.power(1 - x, step))


@jax.jit
def discrete_gd_gain(eigenvalues: jax.Array, step_size, step: jax.Array) -> jax.Array:
    """(1 − (1 − ηλ)^k)/λ, = kη at λ = 0; with expm1 where 1 − ηλ > 0 (no cancellation for small kηλ)."""
    x = step_size * eigenvalues
    pos = eigenvalues > 0
    lam = jnp.where(pos, eigenvalues, 1)
    below_one = x < 1
    log_base = jnp.log1p(-jnp.where(below_one, x, 0))
    one_minus_decay = jnp.where(below_one, -jnp.expm1(step * log_base), 1 - jnp.power(1 - x, step))
    return jnp.where(pos, one_minus_decay / lam, step * step_size)


@jax.jit
def discrete_gd_weights(spectrum: Spectrum, label_moment: jax.Array, step_size, steps: jax.Array) -> jax.Array:
    """w_k = Q diag((1 − (1 − ηλ)^k)/λ) Qᵀ b for integer steps (K,) → (K, M); kept eigenvalues only."""
    q = spectrum.eigenvectors
    projected = q.T @ label_moment
    kept = spectrum.eigenvalues > 0

    def one(k):
        return q @ (jnp.where(kept, discrete_gd_gain(spectrum.eigenvalues, step_size, k), 0) * projected)

    return jax.vmap(one)(steps)


@jax.jit
def discrete_gd_error(problem: SpectralProblem, step_size, steps: jax.Array) -> jax.Array:
    """L(w_k) of gradient descent with step η for integer steps (K,) → (K,): decay (1 − ηλ)^k in the spectral form."""
    one = lambda k: student_loss_from_decay(problem, discrete_gd_decay(problem.eigenvalues, step_size, k))
    return jax.vmap(one)(steps)


@jax.jit
def gd_flow_bound(problem: SpectralProblem, step_size) -> jax.Array:
    """An a-priori bound on max_k |L_GD(k) − L_GF(kη)|, valid for ηλ_max < 1 (∞ otherwise).

    With x = ηλ ∈ [0, 1): 0 ≤ e^{−kx} − (1 − x)^k ≤ e^{−kx} k x²/(2(1 − x)) ≤ x/(2e(1 − x)), and each term
    (a − a* − d a)² of L moves by at most |Δd| |a| (2|a − a*| + 2|a|) when d changes within [0, 1], so
        |L_GD(k) − L_GF(kη)| ≤ Σ_i x_i/(2e(1 − x_i)) · 2|a_i| (|a_i − a*_i| + |a_i|)   = O(η).
    """
    x = step_size * problem.eigenvalues
    ok = jnp.all(x < 1)
    shift = x / (2 * math.e * (1 - jnp.where(x < 1, x, 0)))
    a, gap = problem.label_coef, problem.label_coef - problem.target_coef
    bound = jnp.sum(shift * 2 * jnp.abs(a) * (jnp.abs(gap) + jnp.abs(a)), axis=-1)
    return jnp.where(ok, bound, jnp.inf)

