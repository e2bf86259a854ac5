"""Chains of students: teacher → S_1 → S_2 → … → S_K, each stage trained on the previous stage's function.

Stage 1 is an ordinary student of the teacher (labels f_0 = f_T, the teacher fitted to f* by least squares).
Stage k ≥ 2 trains by gradient flow from w = 0 on the function of stage k − 1 at its chosen time τ_{k−1}:
    b_k = E[φ_k f_{k−1}],   f_{k−1}(x) = ⟨w_{k−1}(τ_{k−1}), φ_{k−1}(x)⟩,   so b_k = G_{k,k−1} w_{k−1}(τ_{k−1}),
and is scored against f* on the same law (population training): its own curve L_k(t), t*_k, L_k*, L_k(∞) and
ceiling R_k (the part of f* outside its span). Every stage's ratio and PGR are against the teacher's L_TE.
The time τ_k that labels stage k + 1 is that stage's own t*_k (``"best"``) or a given time (∞: least squares).

Each stage is one population objective, solved by ``engine.solve_objective`` on any route that returns a basis
(eigh, factor, Krylov: w(t) = basis (ρ(λ, t) ∘ a/√λ), ``w2s.weights_at``); the previous stage's function is a
``NetworkTarget`` (``features.model_function``) and the next stage's labels are its exact moments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._io import json_safe
from w2sjax._checks import check_choice
from w2sjax.curves import ErrorEstimate, W2SResult, time_error
from w2sjax.engine import METHODS, solve_objective
from w2sjax.features import InfiniteFeatures, RandomFeatures, model_function, sample_weights, student_weights
from w2sjax._checks import is_traced
from w2sjax.inputs import components, pytree
from w2sjax.objectives import Law, Objective, check_objective
from w2sjax.spectral import Decomposition
from w2sjax.targets import Target
from w2sjax.w2s import (
    Scales,
    against_teachers,
    as_batch,
    check_finite_result,
    check_problem,
    fit_teachers,
    rescale,
    teacher_functions,
    teacher_times,
    unit_features,
    unit_law,
    unit_teachers,
    weights_at,
)

BEST = "best"
CHAIN_STREAM = 4
"""Stage k ≥ 2 of chain seed s draws its weights from fold_in(fold_in(key(s), 4), k); stage 1 is the ordinary
student of seed s (stream 0). Streams 1, 2, 3 are teachers, samples and random targets."""


@pytree
@dataclasses.dataclass(frozen=True)
class ChainResult:
    """The stages of a chain, each an ordinary ``W2SResult`` against the teacher, and the times that label.

    Attributes:
      stages: (W2SResult, …) one per stage, each batched over teachers like ``weak_to_strong``'s result;
        stage k's ``teacher_loss`` is the teacher's L_TE, its ``ratio`` = L_k*/L_TE, its ``ceiling_loss`` = R_k.
      label_times: (K − 1, ...) τ_k, the time of stage k whose function labels stage k + 1 (per teacher).

    Indexing and iteration run over the stages (``result[-1]`` is the last student).
    """

    stages: tuple
    label_times: jax.Array

    def __len__(self) -> int:
        return len(self.stages)

    def __getitem__(self, index) -> W2SResult:
        return self.stages[index]

    def __iter__(self):
        return iter(self.stages)

    @property
    def teacher_loss(self) -> jax.Array:
        return self.stages[0].teacher_loss

    def select(self, index) -> "ChainResult":
        """The chain of one teacher of a batched result."""
        return ChainResult(tuple(s.select(index) for s in self.stages), self.label_times[:, index])

    def to_dict(self) -> dict:
        """JSON-ready: one ``W2SResult.to_dict`` per stage, and the label times (∞ as "inf")."""
        return {"stages": [s.to_dict() for s in self.stages],
                "label_times": json_safe(np.asarray(self.label_times).tolist())}


def chain_stage_weights(seed: int, stage: int, width: int, dim: int, activation: str) -> jax.Array:
    """The (width, d) weights of stage ``stage`` (1-based) of chain seed ``seed``: stage 1 is the ordinary
    student of that seed (``features.student_weights``), stage k ≥ 2 comes from fold_in(fold_in(key(seed), 4), k).
    Drawn in float64."""
    if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) or stage < 1:
        raise ValueError(f"stage must be an integer >= 1 (stages count from 1); got {stage!r}")
    if stage == 1:
        return student_weights(seed, width, dim, activation)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(int(seed)), CHAIN_STREAM), int(stage))
    return sample_weights(key, width, dim, activation, jnp.float64)


def chain_stages(seed: int, widths: Sequence[int], dim: int, activations="relu", dtype=None) -> tuple:
    """The stages (RandomFeatures) of chain seed ``seed`` with the given widths and activation(s) (one for all,
    or one per stage), weights from ``chain_stage_weights``."""
    from w2sjax.features import random_features

    widths = list(widths)
    acts = [activations] * len(widths) if isinstance(activations, str) else list(activations)
    if not widths:
        raise ValueError("a chain needs at least one stage width")
    if len(acts) != len(widths):
        raise ValueError(f"give one activation or one per stage ({len(widths)}); got {len(acts)}")
    return tuple(random_features(np.asarray(chain_stage_weights(seed, k + 1, m, dim, a)), a, dtype)
                 for k, (m, a) in enumerate(zip(widths, acts)))


# --------------------------------------------------------------------------------------------------
# From one stage to the next
# --------------------------------------------------------------------------------------------------


def stage_function(features, decomposition: Decomposition, label_times: jax.Array, stage: int = 1) -> Target:
    """The trained function of a stage at per-label-set times τ (n,), as a batch of label functions for the
    next stage: f(x) = Σ_j (w_j/√M) σ(u_jᵀx), w = weights_at(decomposition, τ) (∞: G⁺b).

    A stage whose decomposition has no basis (an infinitely wide student) has no finite weight vector: its
    function must label the next stage another way (e.g. from its coefficients on the kernel's eigenfunctions,
    with the next stage's b computed from their moments against its units). That branch belongs here.
    """
    if decomposition.basis is None:
        raise ValueError(
            f"stage {stage} has no weight basis (an infinitely wide student?): its function cannot label stage "
            f"{stage + 1} yet; make it the last stage, or give it finite width"
        )
    return _network_function(features, decomposition, jnp.asarray(label_times))


@jax.jit
def _network_function(features: RandomFeatures, decomposition: Decomposition, label_times) -> Target:
    weights = weights_at(decomposition, label_times[:, None])[:, : features.rows]  # Krylov pads rows
    return jax.vmap(lambda w: model_function(features, w))(weights)


@jax.jit
def _label_times(result: W2SResult, given, use_best, time_scale):
    """τ (n,) in the stage's internal units: its t* or the given time."""
    return jnp.where(use_best, result.best_time, given * time_scale)


# --------------------------------------------------------------------------------------------------
# Errors carried from one stage to the next
# --------------------------------------------------------------------------------------------------


@jax.jit
def label_error(result: W2SResult, label_times, krylov) -> jax.Array:
    """δ (n,): an estimate of the L² error of a stage's function at the reported τ, f(τ) = Σ_i ρ_i(τ) a_i ψ_i.

    Exact routes: 0 (rounding; τ itself is taken as reported, its own uncertainty is the stage's
    ``error.best_time``). Krylov at τ = ∞: the weights are conjugate gradients, whose energy-norm error squared is
    the error of the quadrature of bᵀG⁺b, estimated by the error of L(∞). Krylov at finite τ: not added
    (g(λ, τ) = (1 − e^{−τλ})/λ is entire and its Lanczos approximation converges far faster than the losses)."""
    return jnp.where(krylov & jnp.isinf(label_times), jnp.sqrt(result.error.student_loss_at_infinity), 0.0)


@jax.jit
def with_inherited_error(result: W2SResult, inherited) -> W2SResult:
    """A stage's error estimates plus what its labels inherit: training is a contraction on L² (ρ ∈ [0, 1]), so
    labels off by δ move √L by at most δ and L by at most 2√L δ + δ² (curve, L*, L(∞); t* through the curvature).
    The ceiling does not depend on the labels."""
    delta = inherited
    bound = lambda loss, d: 2 * jnp.sqrt(jnp.maximum(loss, 0)) * d + d * d
    e = result.error
    curve = e.student_loss[..., None] + bound(result.student_loss, delta[..., None])
    best = e.best_student_loss + bound(result.best_student_loss, delta)
    at_inf = e.student_loss_at_infinity + bound(result.student_loss_at_infinity, delta)
    t_error = jnp.maximum(e.best_time, time_error(result.problem, result.best_time, best))
    error = ErrorEstimate(jnp.max(curve, axis=-1), best, t_error, at_inf, e.ceiling_loss)
    return dataclasses.replace(result, error=error)


_against_teachers = jax.jit(against_teachers)
_rescale = jax.jit(rescale, static_argnames=("scales",))


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def check_stages(stages) -> tuple:
    """A non-empty tuple of single models (M, d); the last may be infinitely wide (``InfiniteFeatures``)."""
    if isinstance(stages, RandomFeatures):
        stages = (stages,)
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or len(stages) == 0:
        raise ValueError("stages must be a non-empty sequence of RandomFeatures (one per student of the chain)")
    for k, s in enumerate(stages, start=1):
        if isinstance(s, InfiniteFeatures):
            if k < len(stages):
                raise ValueError(f"stage {k} is infinitely wide: only the last stage may be (its function is not a "
                                 "finite network that could label the next stage)")
            continue
        if not isinstance(s, RandomFeatures):
            raise ValueError(f"stage {k} must be RandomFeatures (M, d); got {type(s).__name__}")
        if s.weights.ndim != 2:
            raise ValueError(f"stage {k} must be one model with weights (M, d); got shape {tuple(s.weights.shape)}")
    return tuple(stages)


def check_stage_times(stage_times, count: int) -> tuple:
    """One entry per stage that labels another (K − 1 entries): ``"best"`` or a time ≥ 0 (∞ allowed)."""
    if stage_times is None or (isinstance(stage_times, str) and stage_times == BEST):
        return (BEST,) * (count - 1)
    if isinstance(stage_times, str) or not isinstance(stage_times, (Sequence, np.ndarray)) or np.ndim(stage_times) != 1:
        raise ValueError(f"stage_times must be 'best' or a sequence of {count - 1} entries (one per stage but the "
                         f"last), each 'best' or a time >= 0; got {stage_times!r}")
    entries = list(stage_times)
    if len(entries) != count - 1:
        raise ValueError(f"stage_times has {len(entries)} entries but a chain of {count} stages needs {count - 1} "
                         "(the time of each stage that labels the next)")
    out = []
    for k, t in enumerate(entries, start=1):
        if isinstance(t, str):
            if t != BEST:
                raise ValueError(f"stage_times[{k - 1}] (stage {k}) must be 'best' or a time >= 0; got {t!r}")
            out.append(BEST)
            continue
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not t >= 0:
            raise ValueError(f"stage_times[{k - 1}] (stage {k}) must be 'best' or a time >= 0 (math.inf: least "
                             f"squares); got {t!r}")
        out.append(float(t))
    return tuple(out)


def check_methods(method, count: int, infinite_last: bool = False) -> tuple:
    """One route per stage: a name for every finite stage (an infinitely wide last stage has one route and
    takes "auto"), or a sequence of K names."""
    if isinstance(method, str):
        methods = (method,) * (count - 1) + ("auto" if infinite_last else method,)
    else:
        methods = tuple(method)
    if len(methods) != count:
        raise ValueError(f"method must be one name or one per stage ({count}); got {len(methods)}")
    for m in methods:
        check_choice(m, METHODS, "method")
    return methods


# --------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------


def chain(
    stages,
    teachers,
    target: Target,
    inputs,
    times,
    *,
    stage_times="best",
    method="auto",
    rcond: float | None = None,
    teacher_time: float = math.inf,
    **route_options,
) -> ChainResult:
    """A chain teacher → stage 1 → … → stage K on the population, every stage exactly.

    Args:
      stages: K student models, each (M_k, d) (widths and activations may differ); the last may be infinitely
        wide (``features.infinite_features``).
      teachers: one teacher (M_TE, d), a padded batch (n, M_TE, d), or a sequence of teachers of any widths;
        each is fitted to f* by least squares and labels its own chain.
      target: f*.
      inputs: the input law (its dtype sets the precision).
      times: (T,) strictly increasing positive times: every stage's curve L_k(t) is reported on them.
      stage_times: the time τ_k at which stage k labels stage k + 1: ``"best"`` (or None) for every stage's own
        t*_k, or a sequence of K − 1 entries, each ``"best"`` or a time >= 0 (``math.inf``: least squares).
      method: route of every finite stage (``engine.METHODS``), or a sequence of K routes.
      rcond: relative eigenvalue cutoff (default M·ε per stage).
      teacher_time: the teacher's gradient-flow time on f* (∞: least squares).
      **route_options: ``engine.solve_objective`` options, for every stage (tol, operator, max_blocks, …).

    Returns:
      ChainResult: ``stages`` (one W2SResult per stage, leading teacher axis when ``teachers`` is a batch or a
      sequence) and ``label_times`` (K − 1, ...).
    """
    single = isinstance(teachers, RandomFeatures) and teachers.weights.ndim == 2
    stages = check_stages(stages)
    count = len(stages)
    plan = check_stage_times(stage_times, count)
    methods = check_methods(method, count, isinstance(stages[-1], InfiniteFeatures))
    batch = as_batch(teachers)
    traced = is_traced(stages, batch, target, inputs, times)
    dtype = components(inputs)[0][1].dtype
    scales = [Scales()] * count
    if not teacher_time > 0:
        raise ValueError(f"teacher_time must be > 0 (math.inf for least squares); got {teacher_time!r}")
    teacher_scales, s_x = 1.0, 1.0
    if not traced:
        names = tuple((s, f"stage {k} features") for k, s in enumerate(stages, start=1))
        grid = check_problem(names, batch, target, inputs, times)
        # Every stage at its own unit weight scale; the law and f* once for the whole chain.
        units = [unit_features(s) for s in stages]
        stages = tuple(s for s, _ in units)
        batch, teacher_scales = unit_teachers(batch)
        target, inputs, _, s_x, s_f = unit_law(target, inputs)
        scales = [Scales(s_u, s_x, s_f) for _, s_u in units]
    else:
        grid = times
    law = Law(inputs)
    fit = fit_teachers(batch, target, law, None, teacher_times(teacher_time, teacher_scales, s_x), rcond)
    labels = teacher_functions(batch, fit)
    n = batch.weights.shape[0]
    results, label_times = [], []
    inherited = jnp.zeros((n,), dtype)  # δ: the L² error of the current labels, from upstream stages
    upstream_krylov = False
    for k, (features, scale) in enumerate(zip(stages, scales), start=1):
        last = k == count
        objective = Objective(features, (labels,), target, law)
        if not traced:
            check_objective(objective)
        internal = jnp.asarray(grid, dtype) * scale.time
        result, decomposition, _ = solve_objective(objective, internal, method=methods[k - 1], rcond=rcond,
                                                   with_basis=not last, **route_options)
        result = _against_teachers(result, fit.loss, result.ceiling_loss, result.error.ceiling_loss)
        if not last:
            choice = plan[k - 1]
            given = 0.0 if choice == BEST else choice
            tau = _label_times(result, given, choice == BEST, scale.time)
            labels = stage_function(features, decomposition, tau, k)
            label_times.append(tau / scale.time)
            own = label_error(result, tau, result.route.method == "krylov")
        if upstream_krylov:  # otherwise nothing is inherited beyond rounding
            result = with_inherited_error(result, inherited)
        if not last:
            inherited = inherited + own  # f_k(τ) = P_τ f_{k−1} with ‖P_τ‖ ≤ 1: upstream errors do not grow
            upstream_krylov = upstream_krylov or result.route.method == "krylov"
        if not traced:
            result = _rescale(result, scale, jnp.asarray(grid, dtype))
            check_finite_result(result)
        results.append(result)
    label_times = jnp.stack(label_times) if label_times else jnp.zeros((0, n), dtype)
    out = ChainResult(tuple(results), label_times)
    return out.select(0) if single else out
