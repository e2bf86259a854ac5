"""The Krylov route: L_ST(t) on a whole time grid from one block Krylov basis, without decomposing G_S.

The student error is a sum of quadratic forms of matrix functions,

    L_ST(t) = bᵀ h₁(G) b − 2 bᵀ h₂(G) c + s*,   h₁(λ) = λ g(λ, t)²,   h₂(λ) = g(λ, t),

with G = G_S, b = G_ST w_T, c = c_S. Block Lanczos on X = [c, b_1, …, b_n] (one column per teacher), with
full reorthogonalisation (two Gram–Schmidt passes), builds an orthonormal basis V_k of the block Krylov
space K_k(G, X) = span{X, GX, …, G^{k−1}X} and the projection T_k = V_kᵀ G V_k. With T_k = S diag(θ) Sᵀ,
the Ritz values θ and the rows of Sᵀ V_kᵀ X are the nodes and weights of block Gauss quadrature:

    xᵀ h(G) y ≈ (V_kᵀ x)ᵀ h(T_k) (V_kᵀ y),   exact for every polynomial h of degree ≤ 2k − 1.

The quadrature of L_ST is itself a spectral problem — eigenvalues θ, a = b̃/√θ, a* = c̃/√θ (b̃ = Sᵀ V_kᵀ b,
c̃ = Sᵀ V_kᵀ c) and R_k = s* − Σ a*² — so it is evaluated in the stable sum-of-squares form
Σ_j (a_j − a*_j − e^{−tθ_j} a_j)² + R_k (algebraically equal to the quadrature of the expanded form) for
every time at once, and t* is refined by the same bisection as the dense route (``spectral.best_time``).
Ritz values at or below rcond · θ_max are cut as in the dense route (default rcond = M · ε).

Stopping rule: every ``check_every`` blocks the quadrature is evaluated on the grid. The error estimate is
the largest change, since the previous check, of L_ST over the grid and of L_ST* (absolute), and of t*
(relative). The run stops when both are within ``tol`` / ``time_rtol`` at two consecutive checks, or when
the Krylov space is exhausted (an invariant subspace: the quadrature is then exact). Otherwise, at
``max_blocks``, it warns (or raises). Long times on an ill-conditioned G need a polynomial that resolves
e^{−tλ} near the small eigenvalues, hence many blocks: there the dense route wins.

L_ST(∞) and the ceiling R_S involve 1/λ, which Gauss quadrature resolves only as conjugate gradients
would; their changes at the last check are reported (``KrylovInfo.infinity_change``) but do not stop the run.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_positive_int
from w2sjax.features import RandomFeatures, activation_target_moment
from w2sjax.inputs import InputDistribution, Target, _pytree, check_target_inputs, static_field, target_second_moment
from w2sjax.matfree import label_moment
from w2sjax.sharding import to_host
from w2sjax._io import json_safe
from w2sjax.spectral import SpectralProblem, cut_eigenvalues, default_rcond, inverse_sqrt
from w2sjax.sweep import fit_teachers
from w2sjax.w2s import W2SResult, check_increasing_times, summarize

DEFAULT_TOL = 1e-10
"""Absolute tolerance on L_ST over the grid and on L_ST*."""
DEFAULT_TIME_RTOL = 1e-9
"""Relative tolerance on t*."""
DEFAULT_MAX_BLOCKS = 512
DEFAULT_INITIAL_BLOCKS = 64
DEFAULT_CHECK_EVERY = 4
DEFLATION = 1e3
"""A new basis column whose norm after orthogonalisation is ≤ DEFLATION · ε of its norm before is numerically
in the span already: it is set to zero (deflated), and its Krylov chain ends."""
FAILURE_MODES = ("warn", "raise")


class KrylovConvergenceWarning(UserWarning):
    """The Krylov quadrature did not meet the requested tolerance within ``max_blocks`` blocks."""


class KrylovConvergenceError(RuntimeError):
    """Raised instead of the warning with ``on_failure="raise"``."""


@_pytree
@dataclasses.dataclass(frozen=True)
class LanczosState:
    """Block Lanczos with full reorthogonalisation, in fixed-size buffers.

    Attributes:
      basis: (N, p (C + 1)) V; blocks 0..steps are filled (block ``steps`` awaits its product with G),
        the rest are zero.
      projection: (p (C + 1), p (C + 1)) upper block triangle of VᵀGV, filled one block column per step.
      block: the block size p (static).
    """

    basis: jax.Array
    projection: jax.Array
    block: int = static_field(default=1)

    @property
    def capacity(self) -> int:
        """Blocks that can still be given a product with G (one block of the buffer is kept for the last)."""
        return self.basis.shape[1] // self.block - 1


@dataclasses.dataclass(frozen=True)
class KrylovInfo:
    """How the Krylov route ran.

    Attributes:
      blocks: block Lanczos steps (products with G of a block of p vectors).
      block_size: p = 1 + number of teachers.
      dimension: columns of the basis that are not deflated.
      converged: the stopping rule was met (or the space was exhausted).
      exhausted: the Krylov space became invariant (the quadrature is exact).
      error_estimate: the last change of L_ST over the grid and of L_ST* (absolute).
      time_change: the last relative change of t*.
      infinity_change: the last change of L_ST(∞) and of the ceiling (informative; not part of the rule).
      history: (blocks, error estimate, t* change) at each check.
      seconds: wall time of the iterations and checks.
    """

    blocks: int
    block_size: int
    dimension: int
    converged: bool
    exhausted: bool
    error_estimate: float
    time_change: float
    infinity_change: float
    history: tuple
    seconds: float

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["history"] = [list(map(json_safe, h)) for h in self.history]
        for key in ("error_estimate", "time_change", "infinity_change"):
            out[key] = json_safe(out[key])
        return out


@dataclasses.dataclass(frozen=True)
class KrylovSolution:
    """Results of the Krylov route for a batch of teachers.

    Attributes:
      result: W2SResult batched over teachers (leading axis n); ``problem`` holds the Ritz quadrature.
      info: KrylovInfo.
    """

    result: W2SResult
    info: KrylovInfo

    def teacher(self, i: int) -> W2SResult:
        """The W2SResult of teacher i, as numpy arrays."""
        return jax.tree_util.tree_map(lambda x: to_host(x)[i], self.result)


# --------------------------------------------------------------------------------------------------
# Block Lanczos (pure, jit-able)
# --------------------------------------------------------------------------------------------------


def _orthonormalize_block(w, norms_before, threshold):
    """Columns of w (N, p) made orthonormal among themselves (modified Gram–Schmidt, each column twice);
    a column whose norm falls to ≤ threshold · norms_before is numerically dependent and becomes zero."""

    def one_column(q, out):
        col = jax.lax.dynamic_index_in_dim(w, q, axis=1, keepdims=False)
        col = col - out @ (out.T @ col)
        col = col - out @ (out.T @ col)
        norm = jnp.linalg.norm(col)
        keep = norm > threshold * norms_before[q]
        col = jnp.where(keep, col / jnp.where(keep, norm, 1), 0)
        return jax.lax.dynamic_update_slice_in_dim(out, col[:, None], q, axis=1)

    return jax.lax.fori_loop(0, w.shape[1], one_column, jnp.zeros_like(w))


def _orthonormalize_into(basis, block, offset, norms_before, projected=None):
    """Write ``block`` (N, p), orthonormalised against ``basis`` and within itself, at column ``offset``.

    Block classical Gram–Schmidt, twice (each pass reads the basis twice, whatever p): the block minus its
    projection on the basis (``projected`` = basisᵀ block when already known), orthonormalised within the
    block; then the same again. Columns numerically inside the span (norm ≤ DEFLATION · ε of their norm
    before) become zero: deflated."""
    threshold = DEFLATION * jnp.finfo(basis.dtype).eps
    projected = basis.T @ block if projected is None else projected
    first = _orthonormalize_block(block - basis @ projected, norms_before, threshold)
    second = _orthonormalize_block(first - basis @ (basis.T @ first), jnp.ones_like(norms_before), threshold)
    return jax.lax.dynamic_update_slice_in_dim(basis, second.astype(basis.dtype), offset, axis=1)


@partial(jax.jit, static_argnames=("block", "capacity", "dtype"))
def lanczos_empty(operator, block: int, capacity: int, dtype) -> LanczosState:
    """Zero buffers for ``capacity`` steps of blocks of ``block`` vectors on the operator's rows."""
    k = block * (capacity + 1)
    basis = operator.place(jnp.zeros((operator.size, k), dtype))
    return LanczosState(basis, jnp.zeros((k, k), dtype), block)


def lanczos_start(operator, state: LanczosState, start: jax.Array) -> LanczosState:
    """V_0 = ``start`` (N, p) orthonormalised (deflated where its columns are dependent)."""
    basis = _orthonormalize_into(state.basis, start, 0, jnp.linalg.norm(start, axis=0))
    return LanczosState(operator.place(basis), state.projection, state.block)


def lanczos_step(operator, state: LanczosState, i) -> LanczosState:
    """Step i: W = G V_i, column block i of VᵀGV, and V_{i+1} from W orthonormalised against all of V."""
    p = state.block
    basis = state.basis
    v = jax.lax.dynamic_slice_in_dim(basis, i * p, p, axis=1)
    w = operator.place(operator(v))
    h = basis.T @ w
    projection = jax.lax.dynamic_update_slice(state.projection, h, (i * 0, i * p))
    basis = _orthonormalize_into(basis, w, (i + 1) * p, jnp.linalg.norm(w, axis=0), projected=h)
    return LanczosState(operator.place(basis), projection, p)


@jax.jit
def lanczos_advance(operator, state: LanczosState, target_moment, label_moments, first, stop) -> LanczosState:
    """Steps first, …, stop − 1, after writing V_0 = orthonormalised [c, b_1, …, b_n] when first = 0
    (traced bounds: one compiled program serves every call)."""
    start = operator.place(jnp.concatenate([target_moment[:, None], label_moments.T], axis=1))
    state = jax.lax.cond(first == 0, lambda s: lanczos_start(operator, s, start), lambda s: s, state)
    return jax.lax.fori_loop(first, stop, lambda i, s: lanczos_step(operator, s, i), state)


@partial(jax.jit, static_argnames=("capacity",))
def grow(operator, state: LanczosState, capacity: int) -> LanczosState:
    """The same state in buffers with room for ``capacity`` steps (zero columns appended)."""
    extra = state.block * (capacity - state.capacity)
    if extra < 0:
        raise ValueError("a Lanczos buffer can only grow")
    basis = operator.place(jnp.pad(state.basis, ((0, 0), (0, extra))))
    projection = jnp.pad(state.projection, ((0, extra), (0, extra)))
    return LanczosState(basis, projection, state.block)


def projected_matrix(state: LanczosState, steps) -> jax.Array:
    """T_k = V_kᵀ G V_k on the first k = ``steps`` blocks (zero outside), symmetric, full buffer size."""
    upper = jnp.triu(state.projection)
    t = upper + jnp.triu(state.projection, 1).T
    active = jnp.arange(t.shape[0]) < steps * state.block
    return jnp.where(active[:, None] & active[None, :], t, 0)


def ritz_problem(
    state: LanczosState,
    steps,
    label_moments: jax.Array,
    target_moment: jax.Array,
    target_energy: jax.Array,
    rcond: float,
) -> SpectralProblem:
    """The Gauss-quadrature problem of k = ``steps`` blocks, batched over teachers.

    Args:
      label_moments: (n, N) b per teacher.
      target_moment: (N,) c.
      target_energy: s*.
      rcond: Ritz values ≤ rcond · θ_max are cut to zero.

    Returns:
      SpectralProblem with leading axis n: θ, a = Sᵀ V_kᵀ b/√θ, a* = Sᵀ V_kᵀ c/√θ, R_k = s* − Σ a*².
    """
    t = projected_matrix(state, steps)
    theta, s = jnp.linalg.eigh(t)
    theta = cut_eigenvalues(theta, rcond)
    scale = inverse_sqrt(theta)
    active = jnp.arange(t.shape[0]) < steps * state.block
    labels = jnp.where(active, label_moments @ state.basis, 0)
    target = jnp.where(active, target_moment @ state.basis, 0)
    label_coef = (labels @ s) * scale
    target_coef = (target @ s) * scale
    residual = jnp.maximum(target_energy - jnp.sum(target_coef**2), 0)
    n = label_moments.shape[0]
    return SpectralProblem(
        jnp.broadcast_to(theta, (n,) + theta.shape),
        label_coef,
        jnp.broadcast_to(target_coef, label_coef.shape),
        jnp.broadcast_to(residual, (n,)),
    )


@partial(jax.jit, static_argnames=("rcond",))
def evaluate(state, steps, label_moments, target_moment, target_energy, teacher_loss, times, rcond):
    """Every figure of merit of the k-block quadrature (batched W2SResult), the number of basis columns
    that are not deflated, and the norm of block k (zero when the Krylov space is invariant)."""
    problem = ritz_problem(state, steps, label_moments, target_moment, target_energy, rcond)
    result = jax.vmap(summarize, in_axes=(0, None, 0))(problem, times, teacher_loss)
    p = state.block
    norms = jnp.linalg.norm(state.basis, axis=0)
    dimension = jnp.sum((norms > 0) & (jnp.arange(norms.shape[0]) < steps * p))
    next_block = jax.lax.dynamic_slice_in_dim(norms, steps * p, p)
    return result, dimension, jnp.linalg.norm(next_block)


# --------------------------------------------------------------------------------------------------
# The driver: blocks until the stopping rule is met
# --------------------------------------------------------------------------------------------------


def _relative_change(new: np.ndarray, old: np.ndarray) -> float:
    both_inf = np.isinf(new) & np.isinf(old)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.abs(new - old) / np.maximum(np.abs(new), np.finfo(np.float64).tiny)
    change = np.where(both_inf, 0.0, change)
    change = np.where(np.isnan(change), np.inf, change)
    return float(np.max(change))


def krylov_curves(
    operator,
    label_moments: jax.Array,
    target_moment: jax.Array,
    target_energy,
    teacher_loss: jax.Array,
    times,
    *,
    width: int,
    tol: float = DEFAULT_TOL,
    time_rtol: float | None = DEFAULT_TIME_RTOL,
    check_every: int = DEFAULT_CHECK_EVERY,
    initial_blocks: int = DEFAULT_INITIAL_BLOCKS,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    rcond: float | None = None,
    on_failure: str = "warn",
) -> KrylovSolution:
    """W2S figures of merit by block Lanczos quadrature, for n teachers at once.

    Args:
      operator: G_S behind the operator protocol (``matfree``), of ``operator.size`` rows.
      label_moments: (n, size) b per teacher (zero on padded rows).
      target_moment: (size,) c.
      target_energy: s*.
      teacher_loss: (n,) L_TE.
      times: (T,) strictly increasing positive times.
      width: the true M_ST (sets the default rcond = M ε, as in the dense route).
      tol, time_rtol: the stopping rule's absolute tolerance on L_ST (grid and L_ST*) and relative one on t*
        (None: t* is not checked).
      check_every: blocks between checks; initial_blocks: first buffer size in blocks (doubled when needed);
        max_blocks: the most block steps before giving up.
      on_failure: ``"warn"`` (KrylovConvergenceWarning, result marked unconverged) or ``"raise"``.
    """
    check_choice(on_failure, FAILURE_MODES, "on_failure")
    for value, name in ((check_every, "check_every"), (initial_blocks, "initial_blocks"), (max_blocks, "max_blocks")):
        check_positive_int(value, name)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    if time_rtol is not None and not (np.isfinite(time_rtol) and time_rtol > 0):
        raise ValueError(f"time_rtol must be a positive number or None; got {time_rtol!r}")
    dtype = target_moment.dtype
    rcond = default_rcond(width, dtype) if rcond is None else float(rcond)
    times = np.asarray(check_increasing_times(times), dtype)
    times, target_energy, teacher_loss = operator.replicate(
        (times, np.asarray(to_host(target_energy), dtype), np.asarray(to_host(teacher_loss), dtype))
    )
    label_moments = operator.place(jnp.asarray(label_moments, dtype), axis=1)
    target_moment = operator.place(jnp.asarray(target_moment, dtype))
    p = 1 + label_moments.shape[0]
    # every block adds a column until the space is invariant (detected), so N blocks reach the whole space
    max_blocks = min(max_blocks, width)

    clock = time.perf_counter()
    state = lanczos_empty(operator, p, min(initial_blocks, width), jnp.dtype(dtype))
    steps, previous, previous_small, history = 0, None, False, []
    converged = exhausted = False
    change = time_change = infinity_change = np.inf
    while steps < max_blocks:
        if steps == state.capacity:
            state = grow(operator, state, min(2 * state.capacity, max_blocks))
        stop = min(steps + check_every, state.capacity, max_blocks)
        state = lanczos_advance(operator, state, target_moment, label_moments, jnp.int32(steps), jnp.int32(stop))
        steps = stop
        result, dimension, next_norm = evaluate(
            state, jnp.int32(steps), label_moments, target_moment, target_energy, teacher_loss, times, rcond
        )
        current = {k: to_host(getattr(result, k)) for k in ("student_loss", "best_student_loss", "best_time")}
        current["infinity"] = np.stack(
            [to_host(result.student_loss_at_infinity), to_host(result.ceiling_loss)]
        )
        dimension = int(to_host(dimension))
        exhausted = float(to_host(next_norm)) == 0.0 or dimension >= width
        if previous is not None:
            change = float(
                max(
                    np.max(np.abs(current["student_loss"] - previous["student_loss"])),
                    np.max(np.abs(current["best_student_loss"] - previous["best_student_loss"])),
                )
            )
            time_change = _relative_change(current["best_time"], previous["best_time"])
            infinity_change = float(np.max(np.abs(current["infinity"] - previous["infinity"])))
            history.append((steps, change, time_change))
        small = previous is not None and change <= tol and (time_rtol is None or time_change <= time_rtol)
        previous = current
        if exhausted or (small and previous_small):
            converged = True
            break
        previous_small = small

    seconds = time.perf_counter() - clock
    info = KrylovInfo(
        blocks=steps,
        block_size=p,
        dimension=dimension,
        converged=converged,
        exhausted=exhausted,
        error_estimate=0.0 if exhausted else change,
        time_change=0.0 if exhausted else time_change,
        infinity_change=0.0 if exhausted else infinity_change,
        history=tuple(history),
        seconds=seconds,
    )
    if not converged:
        message = (
            f"the Krylov quadrature did not reach tol={tol:g} (t* rtol={time_rtol}) within max_blocks={max_blocks} "
            f"blocks of {p} vectors: last change of L_ST {change:.3g}, of t* {time_change:.3g}. Long times on an "
            "ill-conditioned Gram matrix need many blocks: raise max_blocks, shorten the time grid, loosen tol, "
            "or use method='eigh'"
        )
        if on_failure == "raise":
            raise KrylovConvergenceError(message)
        warnings.warn(message, KrylovConvergenceWarning, stacklevel=2)
    return KrylovSolution(result, info)


# --------------------------------------------------------------------------------------------------
# Entry point on features
# --------------------------------------------------------------------------------------------------


def teacher_batch(teachers) -> RandomFeatures:
    """A RandomFeatures with weights (n, M_TE, d) from one teacher (M_TE, d), a batch, or a sequence of
    teachers of any widths (zero-padded)."""
    if isinstance(teachers, RandomFeatures):
        if teachers.weights.ndim == 2:
            return RandomFeatures(teachers.weights[None], jnp.reshape(teachers.width, (1,)), teachers.activation)
        if teachers.weights.ndim == 3:
            return teachers
        raise ValueError(f"teacher weights must have shape (M_TE, d) or (n, M_TE, d); got {teachers.weights.shape}")
    teachers = list(teachers)
    if not teachers or not all(isinstance(t, RandomFeatures) and t.weights.ndim == 2 for t in teachers):
        raise ValueError("teachers must be RandomFeatures, or a non-empty sequence of single RandomFeatures")
    activations = {t.activation for t in teachers}
    if len(activations) != 1:
        raise ValueError(f"all teachers must share one activation; got {sorted(activations)}")
    m_max = max(int(t.weights.shape[0]) for t in teachers)
    weights = jnp.stack([jnp.pad(t.weights, ((0, m_max - t.weights.shape[0]), (0, 0))) for t in teachers])
    widths = jnp.stack([jnp.asarray(t.width, weights.dtype) for t in teachers])
    return RandomFeatures(weights, widths, activations.pop())


def target_moment_of(operator, target: Target) -> jax.Array:
    """c = E[φ_S f*] on the operator's rows (zero on padded rows), shape (size,)."""
    c = activation_target_moment(operator.activation, operator.weights, target, operator.variances)
    return operator.place(c / jnp.sqrt(operator.width))


def krylov_weak_to_strong(
    operator,
    teachers,
    target: Target,
    inputs: InputDistribution,
    times,
    *,
    rcond: float | None = None,
    **options,
) -> KrylovSolution:
    """The W2S curves of one student against one or more teachers by the Krylov route.

    Args:
      operator: the student's G_S (``matfree.tiled_gram``, ``matfree.dense_gram`` or
        ``sharding.sharded_gram``).
      teachers: one teacher (M_TE, d), a padded batch (n, M_TE, d), or a sequence of teachers.
      target, inputs: f* and the input distribution.
      times: (T,) strictly increasing positive times.
      rcond: relative cutoff for the teachers' and the Ritz eigenvalues (default M ε).
      **options: passed to ``krylov_curves`` (tol, time_rtol, check_every, max_blocks, on_failure, …).

    Returns:
      KrylovSolution (results batched over teachers; ``.teacher(i)`` for one).
    """
    check_target_inputs(target, inputs)
    batch = teacher_batch(teachers)
    if batch.dim != inputs.dim or operator.weights.shape[-1] != inputs.dim:
        raise ValueError(
            f"student (d={operator.weights.shape[-1]}), teachers (d={batch.dim}) and inputs (d={inputs.dim}) "
            "must share the input dimension"
        )
    dtype = inputs.variances.dtype
    batch = RandomFeatures(batch.weights.astype(dtype), batch.width.astype(dtype), batch.activation)
    batch, target, inputs = operator.replicate((batch, target, inputs))
    fits = fit_teachers(batch, target, inputs, rcond)
    labels = _label_moments(operator, batch, fits.weights)
    c = _target_moment(operator, target)
    s_star = target_second_moment(target, inputs)
    width = int(round(float(to_host(operator.width))))
    return krylov_curves(operator, labels, c, s_star, fits.loss, times, width=width, rcond=rcond, **options)


_label_moments = jax.jit(label_moment)
_target_moment = jax.jit(target_moment_of)
