"""The weak-to-strong pipeline: teachers fitted, students trained on their labels, scored against f*.

Teacher (features φ_T): gradient flow on f* to ``teacher_time`` (∞: least squares, w_T = G_T⁺c_T,
                        L_TE = s* − c_TᵀG_T⁺c_T), on the law or on samples.
Student (features φ_S): gradient flow on the teacher's function f_T, on the law or on the same samples;
                        L_ST(t) from one decomposition of G_train, for every teacher at once.
Ceiling L_ceil: the student on the true labels — an extra label set of the same decomposition (population:
                trained to convergence, = R_S; samples: at its own best time).

``weak_to_strong`` is the one entry point; sweeps, studies and every command use it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, is_traced
from w2sjax.autodiff import teacher_solution
from w2sjax.curves import (W2SResult, checked_grid, flow_response, gain_ratio, loss_from_response, route_free,
                           summarize_compiled)
from w2sjax.engine import solve_objective
from w2sjax.features import InfiniteFeatures, RandomFeatures, check_features, model_function
from w2sjax.inputs import components, input_dim
from w2sjax.objectives import Law, Objective, Samples, check_objective
from w2sjax.precision import precision_warning
from w2sjax.routes import mixed
from w2sjax.routes.dense import eigh_decomposition
from w2sjax.spectral import Decomposition, inverse_sqrt
from w2sjax.targets import Target, check_target_inputs, target_values
# shifted laws (teacher, student and test on different input laws)
from w2sjax.inputs import check_law
from w2sjax.scoring import law_problem_jit, stack_results
from w2sjax.targets import GroupTarget, group_target_values


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TeacherFit:
    """Teachers trained on f*.

    Attributes:
      weights: (n, M_TE) top-layer weights (zero on padded rows).
      loss: (n,) L_TE, the population error (or the error on the evaluation law).
    """

    weights: jax.Array
    loss: jax.Array


def as_batch(features) -> RandomFeatures:
    """A RandomFeatures with weights (n, M, d) from one model (M, d), a batch, or a sequence of models of any
    widths (zero-padded: a zero row is a feature that is identically zero)."""
    if isinstance(features, RandomFeatures):
        if features.weights.ndim == 2:
            return RandomFeatures(features.weights[None], jnp.reshape(features.width, (1,)), features.activation)
        if features.weights.ndim == 3:
            return features
        raise ValueError(f"feature weights must have shape (M, d) or (n, M, d); got {features.weights.shape}")
    models = list(features)
    if not models or not all(isinstance(t, RandomFeatures) and t.weights.ndim == 2 for t in models):
        raise ValueError("teachers must be RandomFeatures, or a non-empty sequence of single RandomFeatures")
    acts = {t.activation for t in models}
    if len(acts) != 1:
        raise ValueError(f"all teachers must share one activation; got {sorted(acts)}")
    m = max(t.rows for t in models)
    xp = jnp if is_traced(models) else np  # concrete models: padded and stacked on the host
    weights = xp.stack([xp.pad(t.weights, ((0, m - t.rows), (0, 0))) for t in models])
    widths = xp.stack([xp.asarray(t.width, weights.dtype) for t in models])
    return RandomFeatures(*jax.device_put((weights, widths)), acts.pop())


def one_label(target: Target) -> Target:
    """A target as a batch of one label function."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], target)


def weights_at(decomposition: Decomposition, time) -> jax.Array:
    """w(t) = basis (ρ(λ, t) ∘ a/√λ) for every label set, (..., M); t = ∞ gives G⁺b."""
    problem = decomposition.problem
    lam = problem.eigenvalues
    rho = jnp.where(jnp.isinf(time), (lam > 0).astype(lam.dtype), flow_response(lam, jnp.where(jnp.isinf(time), 1.0, time)))
    return (rho * problem.label_coef * inverse_sqrt(lam)) @ decomposition.basis.T


@partial(jax.jit, static_argnames=("rcond",))
def fit_teachers(teachers: RandomFeatures, target: Target, train, evaluation=None, time=math.inf, rcond=None) -> TeacherFit:
    """Teachers (a padded batch of n) trained by gradient flow on f* to ``time`` (∞: least squares), each by the
    dense route (teachers are small): weights and errors. ``time``: one for all, or (n,) one per teacher."""

    def one(weights, width, time):
        model = RandomFeatures(weights, width, teachers.activation)
        objective = Objective(model, (one_label(target),), target, train, evaluation)
        if objective.population and mixed.is_float32(objective):  # float32: teachers are small, fit in float64
            objective = mixed.as_float64(objective)
        if objective.population:  # exact derivatives (autodiff): same forward values
            return teacher_solution(objective, time, rcond)
        decomposition = eigh_decomposition(objective, rcond)
        problem = decomposition.problem
        lam = problem.eigenvalues
        rho = jnp.where(jnp.isinf(time), (lam > 0).astype(lam.dtype), flow_response(lam, jnp.where(jnp.isinf(time), 1.0, time)))
        loss = loss_from_response(problem, rho)[0]
        return weights_at(decomposition, time)[0], loss

    if is_traced(time):
        times = jnp.broadcast_to(time, teachers.width.shape)
    else:  # concrete times: a host array, no compiled program
        times = jax.device_put(np.full(teachers.width.shape, time, teachers.weights.dtype))
    w, loss = jax.vmap(one)(teachers.weights, teachers.width, times)
    return TeacherFit(w, loss)


@jax.jit
def teacher_functions(teachers: RandomFeatures, fit: TeacherFit) -> Target:
    """The teachers' functions f_T = Σ_j (w_j/√M_TE) σ(v_jᵀx) as a batch of network targets."""
    return jax.vmap(lambda w, width, a: model_function(RandomFeatures(w, width, teachers.activation), a))(
        teachers.weights, teachers.width, fit.weights
    )


# --------------------------------------------------------------------------------------------------
# Validation and scale normalisation (concrete inputs only: under jit/vmap/grad they are skipped)
# --------------------------------------------------------------------------------------------------

TRAINING_DATA = ("samples", "population")
SAMPLE_STREAM = 2  # samples of seed s come from fold_in(key(s), 2); weights use streams 0 and 1


def check_increasing_times(times, name: str = "times") -> np.ndarray:
    """A non-empty 1-D array of finite, positive, strictly increasing times."""
    return np.asarray(checked_grid(times, name), dtype=np.float64)


def _power_of_two(value: float) -> float:
    """2^round(log2 value): scaling by it is exact in floating point."""
    return float(2.0 ** round(math.log2(value))) if value > 0 and math.isfinite(value) else 1.0


def _traced_power_of_two(value, even: bool = False):
    """2^round(log2 value) of a traced value (a power of four when ``even``), held constant for derivatives."""
    v = jax.lax.stop_gradient(jnp.asarray(value))
    ok = (v > 0) & jnp.isfinite(v)
    k = jnp.round(jnp.log2(jnp.where(ok, v, 1.0))).astype(jnp.int32)
    if even:
        k = k + (k % 2)
    return jnp.where(ok, jnp.ldexp(jnp.ones_like(v), k), 1.0)


def draw_samples(inputs, n: int, seed: int) -> jax.Array:
    """n samples (n, d) of seed ``seed``, from the key fold_in(key(seed), 2)."""
    from w2sjax._checks import check_positive_int, check_seed

    check_positive_int(n, "n (number of samples)")
    seed = check_seed(seed, "sample seed")
    law = components(inputs)[0][1] if len(components(inputs)) == 1 else inputs
    key = jax.random.fold_in(jax.random.key(int(seed)), SAMPLE_STREAM)
    if len(components(inputs)) > 1:  # a mixture: the points of draw_groups' draw
        return _draw_mixture(law, key, int(n))[0]
    return _draw(law, key, int(n))


@partial(jax.jit, static_argnames=("n",))
def _draw(law, key, n):
    from w2sjax.inputs import sample_inputs

    return sample_inputs(law, key, n)


def draw_groups(inputs, n: int, seed: int) -> jax.Array:
    """(n,) the groups of the points ``draw_samples(inputs, n, seed)`` (zeros for a one-component law)."""
    if len(components(inputs)) == 1:
        return jnp.zeros((int(n),), jnp.int32)
    key = jax.random.fold_in(jax.random.key(int(seed)), SAMPLE_STREAM)
    return _draw_mixture(inputs, key, int(n))[1]


@partial(jax.jit, static_argnames=("n",))
def _draw_mixture(law, key, n):
    from w2sjax.inputs import sample_mixture

    return sample_mixture(law, key, n)


@dataclasses.dataclass(frozen=True)
class Scales:
    """Exact (power-of-two) rescalings that bring a problem to unit scale: weights, inputs and the target.

    With student weights U = s_U Ũ, inputs x = √s_x x̃ and f* = s_f f̃*: L = s_f² L̃ and t = t̃ / (s_U² s_x)
    (φ is positively homogeneous of degree 1, so G scales by s_U² s_x; a teacher's fit is invariant to its own
    weight scale)."""

    student: float = 1.0
    inputs: float = 1.0
    target: float = 1.0

    @property
    def time(self) -> float:
        return self.student**2 * self.inputs

    @property
    def loss(self) -> float:
        return self.target**2


def _scale_directions(target: Target, factor: float) -> Target:
    """f(x) → f(factor · x): every unit direction times ``factor``."""
    from w2sjax.targets import GroupTarget, HermiteTarget, LinearTarget, NetworkTarget, SumTarget, target_terms

    if isinstance(target, GroupTarget):
        return GroupTarget(tuple(_scale_directions(f, factor) for f in target.terms))
    out = []
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            out.append(LinearTarget(term.beta * factor))
        elif isinstance(term, HermiteTarget):
            out.append(HermiteTarget(term.beta * factor, term.scale, term.degree))
        else:
            out.append(NetworkTarget(term.inner * factor, term.outer, term.activation))
    return SumTarget(tuple(out)) if isinstance(target, SumTarget) else out[0]


def _target_magnitude(target: Target, traced: bool = False):
    """max over units of |coefficient| · ‖direction‖ (Hermite: |scale|): in float64 on the host, or traced."""
    from w2sjax.targets import GroupTarget, target_units

    if isinstance(target, GroupTarget):
        parts = [_target_magnitude(f, traced) for f in target.terms]
        return jnp.max(jnp.stack(parts)) if traced else max(parts)
    if traced:
        parts = []
        for kind, _, directions, coef in target_units(target):
            size = jnp.abs(coef) if kind == "hermite" else jnp.abs(coef) * jnp.linalg.norm(directions, axis=-1)
            parts.append(jnp.max(size))
        return jnp.max(jnp.stack(parts))
    largest = 0.0
    for kind, _, directions, coef in target_units(target):
        coef = np.abs(np.asarray(coef, np.float64))
        if kind == "hermite":
            largest = max(largest, float(np.max(coef)))
        else:
            norms = np.linalg.norm(np.asarray(directions, np.float64), axis=-1)
            largest = max(largest, float(np.max(coef * norms)))
    return largest


def unit_features(features: RandomFeatures):
    """(features with weights / s_U, s_U): s_U the power of two nearest max |U| (exact rescaling).

    An infinitely wide student (no weights) keeps its scale: s_U = 1."""
    if not isinstance(features, RandomFeatures):
        return features, 1.0
    if is_traced(features):
        s_u = _traced_power_of_two(jnp.max(jnp.abs(features.weights)))
        return RandomFeatures(features.weights / s_u, features.width, features.activation), s_u
    weights = np.asarray(features.weights)  # concrete: scaled on the host (no compiled program per shape)
    s_u = _power_of_two(float(np.max(np.abs(weights.astype(np.float64)))))
    scaled = jax.device_put(weights / np.asarray(s_u, weights.dtype))
    return RandomFeatures(scaled, features.width, features.activation), s_u


def unit_teachers(teachers: RandomFeatures):
    """(teachers, s_T): a padded batch of teachers, each divided by its own power of two s_T (n,). A least-squares
    fit is invariant; a teacher trained to a finite time t trains to t·s_T²·s_x in the internal units
    (``teacher_times``)."""
    if is_traced(teachers):
        t_scale = jax.vmap(_traced_power_of_two)(jnp.max(jnp.abs(teachers.weights), axis=(1, 2)))
        t_scale = t_scale.astype(teachers.weights.dtype)
        return RandomFeatures(teachers.weights / t_scale[:, None, None], teachers.width, teachers.activation), t_scale
    weights = np.asarray(teachers.weights)  # concrete: scaled on the host
    t_scale = np.asarray([_power_of_two(float(v)) for v in np.max(np.abs(weights.astype(np.float64)), axis=(1, 2))],
                         weights.dtype)
    return RandomFeatures(jax.device_put(weights / t_scale[:, None, None]), teachers.width, teachers.activation), t_scale


def teacher_times(time, teacher_scales, input_scale):
    """(n,) a teacher flow time in each normalised teacher's units: t·s_T²·s_x (G_T scales by s_T² s_x); numpy
    for concrete scales, jax for traced ones."""
    xp = np if isinstance(teacher_scales, np.ndarray) else jnp
    return time * xp.asarray(teacher_scales, xp.float64 if xp is np else None) ** 2 * input_scale


def input_scale(laws) -> float:
    """s_x: a power of four near the largest variance of every Gaussian component of ``laws`` (mixtures
    included); 1 where any component is spherical (its radius √d is fixed, so it cannot be rescaled)."""
    from w2sjax.inputs import components

    parts = [law for inputs in laws for _, law in components(inputs)]
    if any(law.kind != "gaussian" for law in parts):
        return 1.0
    top = max(float(np.max(np.asarray(law.variances, np.float64))) for law in parts)
    s_x = _power_of_two(top) if top > 0 else 1.0
    if round(math.log2(s_x)) % 2:
        s_x *= 2.0  # a power of four: √s_x is a power of two
    return s_x


def scale_law(inputs, s_x: float):
    """The law of x/√s_x: every Gaussian component's Σ divided by s_x (weights unchanged)."""
    from w2sjax.inputs import InputDistribution, Mixture

    if s_x == 1.0:
        return inputs
    if isinstance(inputs, Mixture):
        return Mixture(inputs.weights, tuple(scale_law(c, s_x) for c in inputs.components))
    return InputDistribution(inputs.covariance / s_x, inputs.kind)


def unit_law(target: Target, inputs, points=(), also=()):
    """(target, inputs, points, s_x, s_f) with the input variances and f* brought to unit scale (exact).

    ``also``: the problem's other input laws (a teacher's or a test law); the input scale is chosen over all
    of them, and the caller rescales them with ``scale_law(law, s_x)``. Concrete values are scaled with
    Python floats; traced ones (jit/vmap/grad) with traced powers of two, held constant for derivatives (the
    rescaling is an exact identity, so derivatives are unchanged)."""
    from w2sjax.inputs import InputDistribution
    from w2sjax.targets import scale_target

    traced = is_traced(target, inputs, points, also)
    if traced:
        s_x = 1.0
        if isinstance(inputs, InputDistribution) and inputs.kind == "gaussian" and not also:
            s_x = _traced_power_of_two(jnp.max(inputs.variances), even=True)
            root = jnp.sqrt(s_x)
            inputs = InputDistribution(inputs.covariance / s_x, inputs.kind)
            target = _scale_directions(target, root)
            points = tuple(None if p is None else p / root for p in points)
    else:
        s_x = input_scale((inputs, *also))
        if s_x != 1.0:
            root = math.sqrt(s_x)
            inputs = scale_law(inputs, s_x)
            target = _scale_directions(target, root)
            points = tuple(None if p is None else p / root for p in points)
    magnitude = _target_magnitude(target, traced)
    s_f = _traced_power_of_two(magnitude) if traced else _power_of_two(magnitude)
    if traced or s_f != 1.0:
        target = scale_target(target, 1.0 / s_f)
    return target, inputs, points, s_x, s_f


def normalise(student: RandomFeatures, teachers: RandomFeatures, target: Target, inputs, points=(), also=()):
    """(student, teachers, target, inputs, points, Scales, s_T) at unit scale (exact rescaling; s_T (n,): the
    teachers' own scales, see ``unit_teachers``; ``also``: see ``unit_law``)."""
    student, s_u = unit_features(student)
    teachers, s_t = unit_teachers(teachers)
    target, inputs, points, s_x, s_f = unit_law(target, inputs, points, also)
    return student, teachers, target, inputs, points, Scales(s_u, s_x, s_f), s_t


def rescale(result: W2SResult, scales: Scales, times) -> W2SResult:
    """A result computed at unit scale, in the problem's own units."""
    concrete = all(isinstance(v, float) for v in (scales.student, scales.inputs, scales.target))
    if concrete and scales == Scales():
        return dataclasses.replace(result, times=jnp.asarray(times, result.times.dtype))
    return _rescaled(result, scales.target, scales.time, times)


@route_free
def _rescaled(result: W2SResult, target_scale, ts, times) -> W2SResult:
    """Losses × s_f², coefficients × s_f, eigenvalues × ts, times t* / ts (``Scales``)."""
    from w2sjax.curves import ErrorEstimate
    from w2sjax.spectral import SpectralProblem

    loss = target_scale**2
    p = result.problem
    problem = SpectralProblem(p.eigenvalues * ts, p.label_coef * target_scale, p.target_coef * target_scale,
                              p.residual * loss, p.readout)
    e = result.error
    return dataclasses.replace(
        result,
        times=jnp.asarray(times, result.times.dtype),
        student_loss=result.student_loss * loss, teacher_loss=result.teacher_loss * loss,
        best_time=result.best_time / ts, best_student_loss=result.best_student_loss * loss,
        student_loss_at_infinity=result.student_loss_at_infinity * loss, ceiling_loss=result.ceiling_loss * loss,
        error=ErrorEstimate(e.student_loss * loss, e.best_student_loss * loss, e.best_time,
                            e.student_loss_at_infinity * loss, e.ceiling_loss * loss),
        problem=problem,
    )


def check_finite_result(result: W2SResult, internal_best_time=None) -> None:
    """ValueError where a figure that must be finite is not (the problem's scales overflow float64)."""
    if internal_best_time is not None:
        overflow = np.isfinite(np.asarray(internal_best_time)) & ~np.isfinite(np.asarray(result.best_time))
        if np.any(overflow):
            raise ValueError("t* is beyond the largest float64 time (the flow's time scale is 1/(|U|² Σ): weights "
                             "or variances near 1e-150 and below); rescale the student weights or the inputs")
    for name in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        value = np.asarray(getattr(result, name))
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"{name} is not finite: the problem's scales exceed what {value.dtype} represents (weights, "
                "variances or target near 1e±150 and beyond); rescale them"
            )


def check_problem(models, teachers: RandomFeatures, target: Target, inputs, times) -> np.ndarray:
    """Validate the pieces every pipeline shares (concrete values): ``models`` ((features, name), …) and the
    teachers fit the inputs, f* fits the inputs; returns the time grid as checked by ``check_increasing_times``."""
    grid = check_increasing_times(times)
    for features, name in models:
        check_features(features, inputs, name)
    first = RandomFeatures(np.asarray(teachers.weights)[0], np.asarray(teachers.width)[0], teachers.activation)
    check_features(first, inputs, "teacher features")
    check_finite(np.asarray(teachers.weights), "teacher weights")
    check_target_inputs(target, inputs)
    return grid


@route_free
def against_teachers(result: W2SResult, teacher_loss, ceiling, ceiling_error) -> W2SResult:
    """A student's result (batched over n teachers) with L_TE, L_ceil and the figures relative to the teacher:
    ratio = L_ST*/L_TE, PGR = (L_TE − L_ST*)/(L_TE − L_ceil)."""
    n = teacher_loss.shape[0]
    ratio, pgr = gain_ratio(teacher_loss, result.best_student_loss, ceiling)
    return dataclasses.replace(
        result, teacher_loss=teacher_loss, ceiling_loss=jnp.broadcast_to(ceiling, (n,)), ratio=ratio, pgr=pgr,
        error=dataclasses.replace(result.error, ceiling_loss=jnp.broadcast_to(ceiling_error, (n,))),
    )


@partial(route_free, static_argnames=("population",))
def _scored(result: W2SResult, teacher_loss, population: bool) -> W2SResult:
    """``against_teachers`` with L_ceil read off the result: population, the ceiling of label set 0 (R_S, shared
    by every label set); samples, the best error of the true-label row n (the student trained on f*, at its own
    best time), which is then dropped."""
    if population:
        return against_teachers(result, teacher_loss, result.ceiling_loss[0], result.error.ceiling_loss[0])
    n = teacher_loss.shape[0]
    return against_teachers(result.select(slice(0, n)), teacher_loss, result.best_student_loss[n],
                            result.error.best_student_loss[n])


# --------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------


class NarrowStudentWarning(UserWarning):
    """A student no wider than one of its teachers: it cannot generalise much beyond that teacher."""


def warn_narrow_student(student, batch) -> None:
    """NarrowStudentWarning where M_ST ≤ M_TE for some teacher (concrete finite widths only)."""
    if isinstance(student, InfiniteFeatures):
        return
    m_st = float(np.asarray(student.width))
    narrow = sorted({int(m) for m in np.atleast_1d(np.asarray(batch.width)) if m >= m_st})
    if narrow:
        warnings.warn(f"the student (M_ST = {m_st:g}) is not wider than its teacher(s) of width "
                      f"{', '.join(map(str, narrow))}: it can at best about match them, and PGR is undefined where "
                      "L_ceil ≥ L_TE; use a wider student", NarrowStudentWarning, stacklevel=3)


def _sample_source(points, values=None) -> Samples:
    return Samples(jnp.asarray(points), None if values is None else jnp.asarray(values))


def weak_to_strong(
    student: RandomFeatures,
    teachers,
    target: Target,
    inputs,
    times,
    *,
    method: str = "auto",
    samples=None,
    sample_seed: int = 0,
    labels=None,
    heldout=None,
    teacher_data: str | None = None,
    student_data: str = "samples",
    teacher_time: float = math.inf,
    rcond: float | None = None,
    teacher_inputs=None,
    test_inputs=None,
    **route_options,
) -> W2SResult:
    """The weak-to-strong figures of merit of one student against one or more teachers, exactly.

    Args:
      student: student features (M_ST, d), or ``InfiniteFeatures`` (M_ST = ∞: the closed-form route;
        population only). ``features.student_features(seed, width, d, activation)`` builds either from a width.
      teachers: one teacher (M_TE, d), a padded batch (n, M_TE, d), or a sequence of teachers of any widths.
      target: f*.
      inputs: the input law (its dtype sets the precision).
      times: (T,) strictly increasing positive stopping times of the student.
      method: ``"auto"``, ``"eigh"``, ``"factor"``, ``"krylov"``, ``"infinite"`` (see ``engine``).
      samples: train on n samples instead of the law: a count n (drawn from ``inputs`` with ``sample_seed``)
        or an (n, d) array; the teacher learns f* on them (``teacher_data="samples"``, the default without
        ``teacher_inputs``) and the student learns the teacher's values at the same points
        (``student_data="samples"``). Errors stay population errors.
      labels: (n,) the true labels at the samples (default f*(x_i); for a group target drawn by count, f_g(x_i)
        at the drawn groups).
      heldout: an (m, d) array: errors become mean squares over it (f* evaluated there) instead of the law.
      teacher_time: the teacher's flow time (∞: least squares).
      rcond: relative eigenvalue cutoff (default M·ε).
      teacher_inputs: the law the teacher is fitted on, P_ℓ (population; default ``inputs``). ``inputs`` is
        then the student's training law P_u (or the law its samples are drawn from).
      test_inputs: the law errors are measured on, P_test (default ``inputs``): L_TE, L_ST(t), L_ceil (the
        student trained on the true labels under its own law, at its own best time). A sequence of laws
        (P_test, P_1, …) scores the one training run on each: the result gets a leading evaluation-law axis
        (``scoring``: ``law_result``, ``losses_at``), all from one decomposition of G_train.
      **route_options: ``engine.solve_objective`` options (operator, tol, time_rtol, max_blocks, tile_rows,
        mesh, memory_bytes, progress).

    Returns:
      W2SResult with a leading teacher axis when ``teachers`` is a batch or a sequence (``.select(i)``).
    """
    from w2sjax._checks import check_choice, check_rcond

    check_rcond(rcond)
    single = isinstance(teachers, RandomFeatures) and teachers.weights.ndim == 2
    batch = as_batch(teachers)
    # --- laws: the teacher's P_ℓ and the test laws (P_test, …) beside the student's P_u = inputs
    stacked = isinstance(test_inputs, (list, tuple))
    test_laws = tuple(test_inputs) if stacked else (() if test_inputs is None else (test_inputs,))
    if stacked and not test_laws:
        raise ValueError("test_inputs is an empty sequence; give at least one law (or None for `inputs`)")
    if teacher_data is None:
        teacher_data = "samples" if teacher_inputs is None else "population"
    elif teacher_inputs is not None and teacher_data == "samples":
        raise ValueError("teacher_inputs is the law the teacher is fitted on (population): drop teacher_data, or "
                         "drop teacher_inputs to fit the teacher on the samples")
    if test_laws and heldout is not None:
        raise ValueError("give test_inputs (a law to score on) or heldout (points to score on), not both")
    check_choice(teacher_data, TRAINING_DATA, "teacher_data")
    check_choice(student_data, TRAINING_DATA, "student_data")
    if not teacher_time > 0:
        raise ValueError(f"teacher_time must be > 0 (math.inf for least squares); got {teacher_time!r}")
    if isinstance(student, InfiniteFeatures) and (samples is not None or heldout is not None or labels is not None):
        raise ValueError("an infinitely wide student is solved on the population only; drop samples, labels and "
                         "heldout, or use a finite width")
    traced = is_traced(student, batch, target, inputs, times)
    dtype = components(inputs)[0][1].dtype
    if not traced:
        grid = check_problem(((student, "student features"),), batch, target, inputs, times)
        warn_narrow_student(student, batch)
        for name, other in [("teacher_inputs", teacher_inputs)] + [("test_inputs", t) for t in test_laws]:
            if other is not None:
                check_law(other, name)
                if input_dim(other) != input_dim(inputs):
                    raise ValueError(f"{name} has dimension {input_dim(other)} but inputs have dimension "
                                     f"{input_dim(inputs)}; give laws of one dimension")
                check_target_inputs(target, other)
    else:
        grid = times
    points = None
    if samples is not None:
        if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
            points = draw_samples(inputs, int(samples), sample_seed)
            if labels is None and isinstance(target, GroupTarget):  # f*(x, g) needs the drawn groups
                labels = group_target_values(target, points, draw_groups(inputs, int(samples), sample_seed))
        else:
            arr = np.asarray(samples) if not traced else samples
            if not traced:
                if np.iscomplexobj(arr) or arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != input_dim(inputs):
                    raise ValueError(f"samples must be a count n or a real (n, {input_dim(inputs)}) array; got shape "
                                     f"{np.shape(arr)}")
                check_finite(arr, "samples")
            points = jnp.asarray(arr, dtype)
    elif labels is not None:
        raise ValueError("labels are the true labels at the samples: give samples too")
    held = held_values = None
    if heldout is not None:
        held = jnp.asarray(heldout.points if isinstance(heldout, Samples) else heldout, dtype)
        if isinstance(heldout, Samples) and heldout.values is not None:
            held_values = jnp.asarray(heldout.values, dtype)
        if not traced:
            if held.ndim != 2 or held.shape[1] != input_dim(inputs) or held.shape[0] == 0:
                raise ValueError(f"heldout must be a non-empty (m, {input_dim(inputs)}) array; got {tuple(held.shape)}")
            check_finite(np.asarray(held), "heldout inputs")
            if held_values is not None:
                if held_values.shape != (held.shape[0],):
                    raise ValueError(f"heldout values must have shape ({held.shape[0]},); got {held_values.shape}")
                check_finite(np.asarray(held_values), "heldout values")
    label_values = None
    if labels is not None:
        label_values = jnp.asarray(labels, dtype)
        if not traced:
            if label_values.shape != (points.shape[0],):
                raise ValueError(f"labels must have shape ({points.shape[0]},), one per sample; got {label_values.shape}")
            check_finite(np.asarray(label_values), "labels")

    others = tuple(x for x in (teacher_inputs, *test_laws) if x is not None)
    student, batch, target, inputs, (points, held), scales, s_t = normalise(student, batch, target, inputs,
                                                                             (points, held), also=others)
    teacher_time = teacher_times(teacher_time, s_t, scales.inputs)
    teacher_inputs = None if teacher_inputs is None else scale_law(teacher_inputs, scales.inputs)
    test_laws = tuple(scale_law(t, scales.inputs) for t in test_laws)
    if label_values is not None:
        label_values = label_values / scales.target
    if held_values is not None:
        held_values = held_values / scales.target
    time_dtype = mixed.time_dtype(dtype)  # float32 problems: float64 times
    internal_times = (jnp.asarray(grid, time_dtype) * scales.time if traced
                      else jax.device_put(np.asarray(grid, time_dtype) * scales.time))  # concrete: on the host
    law = Law(inputs)
    teacher_law = law if teacher_inputs is None else Law(teacher_inputs)
    evaluations = tuple(Law(t) for t in test_laws)
    evaluation = (Samples(held, target_values(target, held) if held_values is None else held_values)
                  if held is not None else (evaluations[0] if evaluations else None))
    if points is not None and teacher_data == "samples":
        truth = label_values if label_values is not None else target_values(target, points)
        teacher_train = Samples(points, truth[None])
        fits = [fit_teachers(batch, target, teacher_train, e, teacher_time, rcond)
                for e in (evaluations or (evaluation or law,))]
    else:
        default = evaluation if teacher_inputs is None else (evaluation or law)
        fits = [fit_teachers(batch, target, teacher_law, e, teacher_time, rcond) for e in (evaluations or (default,))]
    fit = fits[0]
    functions = teacher_functions(batch, fit)
    if points is not None and student_data == "samples":
        values = None
        if label_values is not None:
            teacher_values = jax.vmap(lambda t: target_values(t, points))(functions)
            values = jnp.concatenate([teacher_values, label_values[None]])
        objective = Objective(student, None if values is not None else (functions, one_label(target)), target,
                              Samples(points, values), evaluation or law)
    elif evaluation is not None:
        objective = Objective(student, (functions, one_label(target)), target, law, evaluation)
    else:  # population: the ceiling is the residual R_S of the same decomposition
        objective = Objective(student, (functions,), target, law)
    if not traced:
        check_objective(objective)
    result, decomposition, _ = solve_objective(objective, internal_times, method=method, rcond=rcond,
                                               with_basis=len(evaluations) > 1, **route_options)

    def finish(result, fit):
        result = _scored(result, fit.loss, population=objective.population)
        internal_best = result.best_time
        result = rescale(result, scales, grid)
        if not traced:
            check_finite_result(result, internal_best)
            if mixed.is_float32(objective) and result.route.method in ("eigh", "krylov"):  # float32: flag
                precision_warning(result, stacklevel=4)
        return result.select(0) if single else result

    if not stacked:
        return finish(result, fit)
    # further test laws: the same decomposition of G_train, scored on each law (scoring.law_problem)
    results = [finish(result, fit)]
    for other, other_fit in zip(evaluations[1:], fits[1:]):
        problem = law_problem_jit(decomposition, objective, other, rcond=rcond)
        results.append(finish(summarize_compiled(problem, internal_times, route=result.route), other_fit))
    return stack_results(results)
