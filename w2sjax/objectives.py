"""Objectives: what a model trains on and what it is scored on.

Every scenario is gradient flow from w = 0 on one quadratic objective, scored by another:
    train:     ½ wᵀ G_train w − wᵀ b_train,     G_train = E_train[φ φᵀ],  b_train = E_train[φ y]
    evaluate:  L(w) = wᵀ G_eval w − 2 wᵀ c + s*,  G_eval = E_eval[φ φᵀ],  c = E_eval[φ f*],  s* = E_eval[f*²]
where E_train and E_eval are exact moments under an input law (``Law``) or means over points (``Samples``).
The scenarios differ only in these moments:
  - population W2S: train and evaluate on one law (``evaluation=None``), labels y = f_T (a teacher's function);
  - finite samples: train on ``Samples``, evaluate on the law (or held-out points);
  - shifted laws: train on one law, evaluate on another;
  - a teacher: labels y = f*; a chain of students: labels = the previous stage's function at its stopping time.

Labels are targets with a leading batch axis (one row per label set, e.g. per teacher); every label set shares
the decomposition of G_train.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite
from w2sjax.features import RandomFeatures, feature_factor, feature_gram, feature_target_moment
from w2sjax.inputs import InputDistribution, components, pytree
from w2sjax.targets import NetworkTarget, Target, target_second_moment, target_values, units_target_moment

CHUNK_ELEMENTS = 1 << 22
"""Feature-matrix entries per chunk when summing over samples (32 MiB in float64)."""


@pytree
@dataclasses.dataclass(frozen=True)
class Law:
    """Exact moments under an input law (an ``InputDistribution`` or a mixture)."""

    inputs: object


@pytree
@dataclasses.dataclass(frozen=True)
class Samples:
    """Moments as means over points: E[u(x)] ≈ (1/n) Σ_i u(x_i).

    Attributes:
      points: (n, d).
      values: (k, n) label values (training) or (n,) target values (evaluation); None: evaluate the label
        functions (or the target) at the points.
    """

    points: jax.Array
    values: jax.Array | None = None

    @property
    def size(self) -> int:
        return int(self.points.shape[0])


@pytree
@dataclasses.dataclass(frozen=True)
class Objective:
    """Gradient flow of ``features``' top layer on ``train`` with ``labels``, scored against ``target``.

    Attributes:
      features: the model being trained.
      labels: the label functions y_i: a tuple of batches (targets with a leading axis, e.g. the teachers'
        functions and f* for the ceiling); row i of B follows the batches in order. None when ``train`` holds
        label values.
      target: f*, the function errors are measured against.
      train: ``Law`` or ``Samples``.
      evaluation: ``Law`` or ``Samples``; None: the training law (population training).
    """

    features: RandomFeatures
    labels: tuple | None
    target: Target
    train: Law | Samples
    evaluation: Law | Samples | None = None

    @property
    def population(self) -> bool:
        """Trained and scored on one law: the readout is the identity."""
        return self.evaluation is None and isinstance(self.train, Law)

    @property
    def evaluation_source(self):
        return self.train if self.evaluation is None else self.evaluation


def batch_targets(targets) -> Target:
    """Stack targets of one structure along a new leading axis; network targets are zero-padded to the
    widest (a zero unit adds nothing)."""
    targets = list(targets)
    if not targets:
        raise ValueError("give at least one label function")
    if all(isinstance(t, NetworkTarget) for t in targets):
        acts = {t.activation for t in targets}
        if len(acts) != 1:
            raise ValueError(f"label networks must share one activation; got {sorted(acts)}")
        k = max(t.units for t in targets)
        inner = jnp.stack([jnp.pad(t.inner, ((0, k - t.units), (0, 0))) for t in targets])
        outer = jnp.stack([jnp.pad(t.outer, (0, k - t.units)) for t in targets])
        return NetworkTarget(inner, outer, acts.pop())
    structures = {jax.tree_util.tree_structure(t) for t in targets}
    if len(structures) != 1:
        raise ValueError("label functions of different kinds cannot share a batch; give one kind (e.g. networks)")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *targets)


def batch_size(batch: Target) -> int:
    return int(jax.tree_util.tree_leaves(batch)[0].shape[0])


def label_count(objective: Objective) -> int:
    if objective.labels is None:
        values = objective.train.values
        return int(values.shape[0]) if values.ndim == 2 else 1
    return sum(batch_size(b) for b in objective.labels)


def map_labels(fn, labels: tuple) -> jax.Array:
    """fn vmapped over every batch of label functions, rows concatenated: (n, ...)."""
    return jnp.concatenate([jax.vmap(fn)(batch) for batch in labels])


# --------------------------------------------------------------------------------------------------
# Moments over samples, in chunks
# --------------------------------------------------------------------------------------------------


def chunk_size(n: int, width: int) -> int:
    """Samples per chunk, so that a chunk's feature matrix holds at most CHUNK_ELEMENTS entries."""
    return max(1, min(n, CHUNK_ELEMENTS // max(width, 1)))


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """(n, ...) → (n_chunks, chunk, ...), zero-padded. Zero inputs have zero ReLU and linear features, so
    padding adds nothing to the sums below (padded values are zero too)."""
    pad = -x.shape[0] % chunk
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((-1, chunk) + x.shape[1:])


def sample_outer(fn, x: jax.Array, y: jax.Array):
    """(Σ_i F_iᵀF_i / n, Σ_i F_iᵀ y_i / n) for F = fn(x) (n, k) and y (n, j), summed over chunks of samples."""
    n = x.shape[0]
    probe = jax.eval_shape(fn, x[:1])
    k, dtype = probe.shape[-1], probe.dtype
    chunk = chunk_size(n, k)

    def body(carry, xy):
        xc, yc = xy
        f = fn(xc)
        return (carry[0] + f.T @ f, carry[1] + f.T @ yc), None

    init = (jnp.zeros((k, k), dtype), jnp.zeros((k, y.shape[-1]), dtype))
    (ff, fy), _ = jax.lax.scan(body, init, (_chunks(x, chunk), _chunks(y, chunk)))
    return ff / n, fy / n


def sample_label_values(objective: Objective) -> jax.Array:
    """(n, k) training labels at the training points."""
    samples = objective.train
    if samples.values is not None:
        values = samples.values
        return (values[None] if values.ndim == 1 else values).T
    return map_labels(lambda t: target_values(t, samples.points), objective.labels).T


def sample_target_values(samples: Samples, target: Target) -> jax.Array:
    """(n,) f* at the points (given values, or the target evaluated)."""
    return samples.values if samples.values is not None else target_values(target, samples.points)


# --------------------------------------------------------------------------------------------------
# Training side
# --------------------------------------------------------------------------------------------------


def train_gram(objective: Objective) -> jax.Array:
    """G_train (M, M)."""
    f, train = objective.features, objective.train
    if isinstance(train, Law):
        return feature_gram(f, f, train.inputs)
    y = jnp.zeros((train.size, 1), train.points.dtype)
    return sample_outer(f, train.points, y)[0]


def train_labels(objective: Objective) -> jax.Array:
    """B = [b_1 … b_n]ᵀ (n, M), b_i = E_train[φ y_i]."""
    f, train = objective.features, objective.train
    if isinstance(train, Law):
        return map_labels(lambda t: feature_target_moment(f, t, train.inputs), objective.labels)
    return sample_outer(f, train.points, sample_label_values(objective))[1].T


def train_gram_and_labels(objective: Objective):
    """(G_train, B) with one pass over the samples."""
    f, train = objective.features, objective.train
    if isinstance(train, Law):
        return train_gram(objective), train_labels(objective)
    gram, labels = sample_outer(f, train.points, sample_label_values(objective))
    return gram, labels.T


def factor_size(objective: Objective) -> int | None:
    """k where G_train = F Fᵀ with F of shape (M, k) and the labels have known preimages (b = F β): d for
    linear features under one Gaussian law, n for samples; None where no such factor is cheap."""
    f, train = objective.features, objective.train
    if isinstance(train, Samples):
        return train.size
    parts = components(train.inputs)
    if f.activation == "linear" and len(parts) == 1 and parts[0][1].kind == "gaussian":
        return f.dim
    return None


def _whitened_linear_moment(target: Target, law: InputDistribution) -> jax.Array:
    """L⁻¹ E[x f] (d,) with Σ = L Lᵀ: the coefficients of f's linear part in whitened coordinates."""
    d = law.dim
    moment = units_target_moment("linear", 1, jnp.eye(d, dtype=law.dtype), target, law)
    if law.is_diagonal:
        return moment / jnp.sqrt(law.covariance)
    return jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(law.covariance), moment, lower=True)


def train_factor(objective: Objective):
    """(F (M, k), label preimages (n, k)) with G_train = F Fᵀ and b_i = F β_i (see ``factor_size``)."""
    f, train = objective.features, objective.train
    if isinstance(train, Samples):
        root_n = math.sqrt(train.size)
        return f(train.points).T / root_n, sample_label_values(objective).T / root_n
    law = components(train.inputs)[0][1]
    preimages = map_labels(lambda t: _whitened_linear_moment(t, law), objective.labels)
    return feature_factor(f, law), preimages


def target_preimage(objective: Objective) -> jax.Array:
    """γ (k,) with c = F γ (population objectives on a factored law)."""
    return _whitened_linear_moment(objective.target, components(objective.train.inputs)[0][1])


# --------------------------------------------------------------------------------------------------
# Evaluation side
# --------------------------------------------------------------------------------------------------


def target_moment(objective: Objective) -> jax.Array:
    """c = E_eval[φ f*] (M,)."""
    f, source = objective.features, objective.evaluation_source
    if isinstance(source, Law):
        return feature_target_moment(f, objective.target, source.inputs)
    y = sample_target_values(source, objective.target)
    return sample_outer(f, source.points, y[:, None])[1][:, 0]


def target_energy(objective: Objective) -> jax.Array:
    """s* = E_eval[f*²]."""
    source = objective.evaluation_source
    if isinstance(source, Law):
        return target_second_moment(objective.target, source.inputs)
    return jnp.mean(sample_target_values(source, objective.target) ** 2)


def projected_evaluation(objective: Objective, basis: jax.Array):
    """(QᵀG_evalQ (r, r), Qᵀc (r,), s*) for a basis Q (M, r); held-out sums run over chunks of points."""
    f, source = objective.features, objective.evaluation_source
    if isinstance(source, Law):
        gq = feature_gram(f, f, source.inputs) @ basis
        return basis.T @ gq, basis.T @ target_moment(objective), target_energy(objective)
    y = sample_target_values(source, objective.target)
    zz, zy = sample_outer(lambda xc: f(xc) @ basis, source.points, y[:, None])
    return zz, zy[:, 0], jnp.mean(y**2)


# --------------------------------------------------------------------------------------------------
# Checks on concrete objectives (outside any trace)
# --------------------------------------------------------------------------------------------------


def check_objective(objective: Objective) -> None:
    """ValueError where the pieces of an objective do not fit together (concrete values only)."""
    from w2sjax.features import check_features
    from w2sjax.targets import check_target_inputs

    train, evaluation = objective.train, objective.evaluation_source
    laws = [s.inputs for s in (train, evaluation) if isinstance(s, Law)]
    d = objective.features.dim
    for law in laws:
        check_features(objective.features, law, "features")
        check_target_inputs(objective.target, law)
        if objective.labels is not None and isinstance(train, Law):
            for batch in objective.labels:  # a batch is checked whole: same dimension, every member finite
                check_target_inputs(batch, train.inputs)
    for source, name in ((train, "training points"), (evaluation, "evaluation points")):
        if isinstance(source, Samples):
            if source.points.ndim != 2 or source.points.shape[1] != d:
                raise ValueError(f"{name} must have shape (n, {d}); got {tuple(source.points.shape)}")
            check_finite(np.asarray(source.points), name)
            if source.values is not None:
                check_finite(np.asarray(source.values), f"{name} values")
    if isinstance(train, Samples) and train.values is None and objective.labels is None:
        raise ValueError("training on samples needs label functions or label values")
    if isinstance(train, Law) and objective.labels is None:
        raise ValueError("training on a law needs label functions (e.g. a teacher's function or the target)")
