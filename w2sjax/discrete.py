"""Discrete-step training of a top layer with optax, scored by the exact population error.

The top layer w of a random-feature model is trained from w = 0 on ½E[(f_w(x) − y(x))²] in one of two ways:
  population:  full-batch steps on ½wᵀGw − wᵀb with the exact moments G = E[φφᵀ], b = E[φy]
               (gradient G w − b); ``optax.sgd(η)`` is then gradient descent w_{k+1} = w_k − η(G w_k − b);
  online:      each step draws a fresh minibatch x_1..x_B from the input law, labels y_j = y(x_j) from a label
               function (a teacher's function, a ``NetworkTarget``, or f* itself), and steps on
               ½·mean_j (f_w(x_j) − y_j)².
Both loops are one ``jax.lax.scan`` under ``jit`` and record, at chosen steps, the exact population error
    L(w) = E[(f_w − f*)²] = wᵀGw − 2wᵀc + s* = Σ_i (√λ_i q_iᵀw − a*_i)² + R,   a* = Qᵀc/√λ,  R = s* − ‖a*‖²,
in its sum-of-squares form (no cancellation where L ≪ s*).

The objective is an ``objectives.Objective`` trained and scored on one law (population); ``population_training``
holds what the loops need: G and b (``objectives.train_gram`` / ``train_labels``) and the spectral form
(``routes.dense``). Plain gradient descent has the closed form ρ_k = 1 − (1 − ηλ)^k (``curves.gd_response``,
error ``curves.gd_loss``); as η → 0 at fixed t = kη it tends to gradient flow, with
|L_GD(k) − L_GF(kη)| ≤ ``gd_flow_bound(problem, η)`` = O(η) for ηλ_max < 1.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from w2sjax._checks import check_positive_int
from w2sjax.curves import gd_response
from w2sjax.features import RandomFeatures, check_features
from w2sjax.inputs import pytree, sample_inputs
from w2sjax.objectives import Law, Objective, check_objective, factor_size, train_gram, train_labels
from w2sjax.routes.dense import eigh_decomposition, factor_decomposition
from w2sjax.spectral import Decomposition, SpectralProblem, inverse_sqrt, select_labels
from w2sjax.targets import Target, check_target_inputs, target_values
from w2sjax.w2s import as_batch, fit_teachers, one_label, teacher_functions

# --------------------------------------------------------------------------------------------------
# Objectives and what the loops need from them
# --------------------------------------------------------------------------------------------------


def teacher_objective(teacher: RandomFeatures, target: Target, inputs) -> Objective:
    """The teacher on the true labels (b = c_T = E[φ_T f*]) on the law; its flow tends to w_T = G_T⁺c_T."""
    return Objective(teacher, (one_label(target),), target, Law(inputs))


def student_objective(
    student: RandomFeatures, teacher: RandomFeatures, target: Target, inputs, rcond: float | None = None
) -> Objective:
    """The student on its fitted teacher's labels (b = E[φ_S f_T], f_T = the least-squares teacher on f*),
    scored against f*. ``label_function(objective)`` is f_T, for online training."""
    _check_models(inputs, target, student, teacher)
    batch = as_batch(teacher)
    fit = fit_teachers(batch, target, Law(inputs), rcond=rcond)
    return Objective(student, (teacher_functions(batch, fit),), target, Law(inputs))


def label_function(objective: Objective, index: int = 0) -> Target:
    """The label function y of label set ``index`` of an objective (unbatched), e.g. a teacher's f_T."""
    sizes = [int(jax.tree_util.tree_leaves(batch)[0].shape[0]) for batch in objective.labels]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < sum(sizes):
        raise ValueError(f"label index must be in [0, {sum(sizes)}); got {index!r}")
    row = int(index)
    for batch, size in zip(objective.labels, sizes):
        if row < size:
            return jax.tree_util.tree_map(lambda x: x[row], batch)
        row -= size


def _check_models(inputs, target, *models) -> None:
    check_target_inputs(target, inputs)
    for f in models:
        check_features(f, inputs)


@pytree
@dataclasses.dataclass(frozen=True)
class PopulationTraining:
    """One label set of a population objective, ready for discrete steps and exact scoring.

    Attributes:
      gram: (M, M) G = E[φφᵀ] (the full-batch gradient is G w − b).
      label_moment: (M,) b = E[φ y].
      decomposition: Q (M, r) and the unbatched SpectralProblem (λ, a = Qᵀb/√λ, a* = Qᵀc/√λ, R).
    """

    gram: jax.Array
    label_moment: jax.Array
    decomposition: Decomposition

    @property
    def problem(self) -> SpectralProblem:
        return self.decomposition.problem

    @property
    def basis(self) -> jax.Array:
        return self.decomposition.basis

    @property
    def width(self) -> int:
        return int(self.label_moment.shape[-1])


def population_training(objective: Objective, label: int = 0, rcond: float | None = None) -> PopulationTraining:
    """G, b of label set ``label`` and the spectral form of a population objective (trained and scored on one law).

    The spectral form is the dense ``eigh`` route, or the ``factor`` route where G = F Fᵀ factors through a
    smaller space (linear features, k = d < M): its basis spans the range of G exactly.
    """
    if not objective.population:
        raise ValueError("discrete training runs on a population objective: train=Law(inputs) and evaluation=None")
    check_objective(objective)
    count = sum(int(jax.tree_util.tree_leaves(b)[0].shape[0]) for b in objective.labels)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < count:
        raise ValueError(f"label must be an index in [0, {count}); got {label!r}")
    return _population_training(objective, int(label), rcond)


@partial(jax.jit, static_argnums=(1, 2))
def _population_training(objective, label, rcond):
    k = factor_size(objective)
    if k is not None and k < objective.features.rows:
        decomposition = factor_decomposition(objective, rcond, with_basis=True)
    else:
        decomposition = eigh_decomposition(objective, rcond)
    problem = select_labels(decomposition.problem, label)
    return PopulationTraining(
        train_gram(objective), train_labels(objective)[label], Decomposition(problem, decomposition.basis)
    )


@jax.jit
def population_error(training: PopulationTraining, weights: jax.Array) -> jax.Array:
    """L(w) = Σ_i (√λ_i q_iᵀw − a*_i)² + R for weights (..., M) → (...)."""
    problem = training.problem
    projected = jnp.sqrt(problem.eigenvalues) * (weights @ training.basis)
    return jnp.sum((projected - problem.target_coef) ** 2, axis=-1) + problem.residual


def population_gradient(training: PopulationTraining, weights: jax.Array) -> jax.Array:
    """∇_w ½E[(f_w − y)²] = G w − b, shape (M,)."""
    return training.gram @ weights - training.label_moment


@pytree
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


def _population_run(training, record_steps, hyperparams, optimizer, record_weights=False) -> Trajectory:
    w0 = jnp.zeros_like(training.label_moment)

    def step(carry):
        w, state = carry
        updates, state = optimizer.update(population_gradient(training, w), state, w)
        return optax.apply_updates(w, updates), state

    error = partial(population_error, training)
    return _record(step, (w0, _initial_state(optimizer, w0, hyperparams)), record_steps, error, record_weights)


_train_population = jax.jit(_population_run, static_argnames=("optimizer", "record_weights"))


@partial(jax.jit, static_argnames=("optimizer",))
def _population_runs(training, record_steps, hyperparams, optimizer) -> Trajectory:
    steps_axis = 0 if record_steps.ndim == 2 else None
    one = lambda steps, hp: _population_run(training, steps, hp, optimizer)
    return jax.vmap(one, in_axes=(steps_axis, 0))(record_steps, hyperparams)


@partial(jax.jit, static_argnames=("optimizer", "batch_size", "record_weights"))
def _train_online(
    training, features, labels, inputs, key, record_steps, hyperparams, optimizer, batch_size, record_weights=False
) -> Trajectory:
    w0 = jnp.zeros_like(training.label_moment)

    def batch_loss(w, x, y):
        return 0.5 * jnp.mean((features(x) @ w - y) ** 2)

    def step(carry):
        w, state, k = carry
        x = sample_inputs(inputs, jax.random.fold_in(key, k), batch_size)
        grads = jax.grad(batch_loss)(w, x, target_values(labels, x))
        updates, state = optimizer.update(grads, state, w)
        return optax.apply_updates(w, updates), state, k + 1

    error = partial(population_error, training)
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


def _check_online(training, features, labels, inputs, batch_size) -> int:
    check_features(features, inputs)
    check_target_inputs(labels, inputs)
    if features.rows != training.width:
        raise ValueError(f"features have {features.rows} rows but the objective has {training.width} weights; pass "
                         "the objective built from these features")
    return check_positive_int(batch_size, "batch_size")


def _check_training(training) -> None:
    if not isinstance(training, PopulationTraining):
        raise ValueError(f"pass a PopulationTraining (discrete.population_training(objective)); got "
                         f"{type(training).__name__}")


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"optimizer must be an optax GradientTransformation (e.g. optax.sgd(0.5)); got {optimizer!r}")


def train_population(
    training: PopulationTraining,
    optimizer: optax.GradientTransformation,
    record_steps,
    record_weights: bool = False,
    hyperparams: dict | None = None,
) -> Trajectory:
    """Full-batch training from w = 0 on the exact population objective, scored by L(w) at ``record_steps``.

    Args:
      training: from ``population_training(objective)``.
      optimizer: any optax GradientTransformation (``optax.sgd(η)`` is gradient descent with step η).
        The optimizer is a static argument: each new optimizer object compiles anew; to reuse one compilation,
        build it with ``optax.inject_hyperparams`` and pass the values in ``hyperparams``.
      record_steps: (R,) non-decreasing step counts at which to record L(w_k) (0 records w = 0).
      record_weights: also return every recorded w_k (R, M).
      hyperparams: values for the hyperparameters of an ``optax.inject_hyperparams`` optimizer.
    """
    _check_training(training)
    _check_optimizer(optimizer)
    steps = jnp.asarray(check_record_steps(record_steps))
    return _train_population(training, steps, hyperparams or {}, optimizer=optimizer, record_weights=record_weights)


def population_runs(
    training: PopulationTraining, optimizer: optax.GradientTransformation, record_steps, hyperparams: dict
) -> Trajectory:
    """``train_population`` for a batch of hyperparameters in one compiled call (leading axis = run).

    Args:
      optimizer: built with ``optax.inject_hyperparams``, e.g.
        ``optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)``.
      record_steps: (R,) shared by every run, or (n, R) one row per run (repeat the last step to pad a shorter run).
      hyperparams: dict of (n,) arrays, e.g. ``{"learning_rate": jnp.array([2., 1., .5])}``.
    """
    _check_training(training)
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
    return _population_runs(training, jnp.asarray(steps), values, optimizer=optimizer)


def train_online(
    training: PopulationTraining,
    features: RandomFeatures,
    labels: Target,
    inputs,
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
      training: ``population_training`` of the objective of ``features`` (for the exact error L(w_k) only).
      features: the model being trained (its top layer).
      labels: the label function y: a teacher's function (``label_function(objective)``, a NetworkTarget) or a
        target (a teacher on true labels).
      inputs: the input law the batches are drawn from.
      optimizer: any optax GradientTransformation.
      record_steps: (R,) non-decreasing step counts at which to record L(w_k).
      batch_size: B, the minibatch size.
      key: PRNG key; step k uses ``fold_in(key, k)``. Vmap over keys for seeds (``online_runs``).
      record_weights: also return every recorded w_k (R, M).
      hyperparams: values for the hyperparameters of an ``optax.inject_hyperparams`` optimizer.
    """
    _check_training(training)
    _check_optimizer(optimizer)
    batch_size = _check_online(training, features, labels, inputs, batch_size)
    steps = jnp.asarray(check_record_steps(record_steps))
    return _train_online(
        training, features, labels, inputs, key, steps, hyperparams or {},
        optimizer=optimizer, batch_size=batch_size, record_weights=record_weights,
    )


@partial(jax.jit, static_argnames=("optimizer", "batch_size"))
def _online_runs(training, features, labels, inputs, keys, record_steps, hyperparams, optimizer, batch_size):
    one = lambda key: _train_online(
        training, features, labels, inputs, key, record_steps, hyperparams, optimizer=optimizer, batch_size=batch_size
    )
    if jax.default_backend() == "cpu":  # one seed after another: the same results, half the compile time on CPU
        return jax.lax.map(one, keys)
    return jax.vmap(one)(keys)


def online_runs(
    training: PopulationTraining,
    features: RandomFeatures,
    labels: Target,
    inputs,
    optimizer: optax.GradientTransformation,
    record_steps,
    *,
    batch_size: int,
    seeds,
    hyperparams: dict | None = None,
) -> Trajectory:
    """``train_online`` for every seed in one compiled call (key = ``jax.random.key(seed)``); leading axis = seed.
    Seeds run in sequence on CPU (``lax.map``) and batched on accelerators (``vmap``); the results are the same."""
    _check_training(training)
    _check_optimizer(optimizer)
    batch_size = _check_online(training, features, labels, inputs, batch_size)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    steps = jnp.asarray(check_record_steps(record_steps))
    return _online_runs(
        training, features, labels, inputs, keys, steps, hyperparams or {}, optimizer=optimizer, batch_size=batch_size
    )


# --------------------------------------------------------------------------------------------------
# Closed forms: gradient descent's weights, its distance to the flow, the largest error of a stable run
# --------------------------------------------------------------------------------------------------


@jax.jit
def gd_weights(training: PopulationTraining, step_size, steps: jax.Array) -> jax.Array:
    """w_k = Q (ρ_k ∘ a/√λ) = Q diag((1 − (1 − ηλ)^k)/λ) Qᵀ b for integer steps (K,) → (K, M)."""
    problem = training.problem
    lam = problem.eigenvalues
    coef = problem.label_coef * inverse_sqrt(lam)
    return jax.vmap(lambda k: training.basis @ (gd_response(lam, step_size, k) * coef))(steps)


def _check_identity_readout(problem: SpectralProblem) -> None:
    if problem.readout is not None:
        raise ValueError("this bound is for population problems (identity readout); got a problem with a readout")


@jax.jit
def gd_flow_bound(problem: SpectralProblem, step_size) -> jax.Array:
    """An a-priori bound on max_k |L_GD(k) − L_GF(kη)|, valid for ηλ_max < 1 (∞ otherwise).

    With x = ηλ ∈ [0, 1): 0 ≤ e^{−kx} − (1 − x)^k ≤ e^{−kx} k x²/(2(1 − x)) ≤ x/(2e(1 − x)), and each term
    (a − a* − d a)² of L moves by at most |Δd| |a| (2|a − a*| + 2|a|) when d changes within [0, 1], so
        |L_GD(k) − L_GF(kη)| ≤ Σ_i x_i/(2e(1 − x_i)) · 2|a_i| (|a_i − a*_i| + |a_i|)   = O(η).
    """
    _check_identity_readout(problem)
    x = step_size * problem.eigenvalues
    ok = jnp.all(x < 1)
    shift = x / (2 * math.e * (1 - jnp.where(x < 1, x, 0)))
    a, gap = problem.label_coef, problem.label_coef - problem.target_coef
    bound = jnp.sum(shift * 2 * jnp.abs(a) * (jnp.abs(gap) + jnp.abs(a)), axis=-1)
    return jnp.where(ok, bound, jnp.inf)


@jax.jit
def stable_gd_error_bound(problem: SpectralProblem) -> jax.Array:
    """The largest error a stable gradient descent (ηλ_max ≤ 2) reaches from w = 0: (2‖a‖ + ‖a*‖)² + R.

    For 0 ≤ ηλ ≤ 2, |1 − ηλ| ≤ 1, so ρ_k = 1 − (1 − ηλ)^k ∈ [0, 2] and ‖ρ ∘ a − a*‖ ≤ 2‖a‖ + ‖a*‖. A run whose
    error passes this bound is not stable gradient descent on this objective: it has diverged."""
    _check_identity_readout(problem)
    a = jnp.linalg.norm(problem.label_coef, axis=-1)
    target = jnp.linalg.norm(problem.target_coef, axis=-1)
    return (2 * a + target) ** 2 + problem.residual
