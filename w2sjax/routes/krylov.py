"""The Krylov route: block Lanczos quadrature of G_train, without decomposing it.

The student error is a sum of quadratic forms of matrix functions,
    L(t) = bᵀ h₁(G) b − 2 bᵀ h₂(G) c + s*,   h₁(λ) = ρ(λ, t)²/λ,   h₂(λ) = ρ(λ, t)/λ.
Block Lanczos on X = [c, b_1, …, b_n] (one column per label set) with full reorthogonalisation (two block
Gram–Schmidt passes) builds an orthonormal basis V_k of span{X, GX, …, G^{k−1}X} and T_k = V_kᵀ G V_k. With
T_k = S diag(θ) Sᵀ, the Ritz values θ and the rows of Sᵀ V_kᵀ X are the nodes and weights of block Gauss
quadrature, xᵀ h(G) y ≈ (V_kᵀ x)ᵀ h(T_k) (V_kᵀ y), exact for polynomials h of degree ≤ 2k − 1. The
quadrature is itself a spectral problem — eigenvalues θ, a = Sᵀ V_kᵀ b/√θ, a* = Sᵀ V_kᵀ c/√θ, R_k = s* − ‖a*‖²,
basis V_k S — so the curve engine evaluates it like any other route, in the stable sum-of-squares form.
Gauss quadrature of 1/λ is a lower bound that rises monotonically to cᵀG⁺c (conjugate gradients), so the
ceiling R_k falls monotonically to R_S.

Each step costs one product of G with p = n + 1 vectors (a stored G: one M × M pass; matrix-free: every
kernel tile recomputed) plus O(M K p) for the reorthogonalisation of a basis of K columns. The engine
(``engine``) runs the steps and stops when the figures of merit stop moving (its stopping rule), or when the
space becomes invariant (then the quadrature is exact). Population objectives only (G_eval = G_train).

Float32 problems (``routes.mixed``): the operator holds or forms G in float32 and each product G V is taken in
float32 (V rounded, G V cast back); the moments b, c, s*, the basis, its reorthogonalisation, T_k, its
eigendecomposition and the quadrature are float64. The products are the O(M² p) work per step; the rest is
O(M K p). A float32 product is the exact one of G + E with ‖E‖ ≈ ε₃₂ λ_max, the error model of
``w2sjax.precision``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from w2sjax.inputs import pytree, static_field
from w2sjax.objectives import Objective, target_energy
from w2sjax.routes.operators import label_moments, target_moments
from w2sjax.spectral import Decomposition, SpectralProblem, cut_eigenvalues, inverse_sqrt

DEFLATION = 1e3
"""A new basis column whose norm after orthogonalisation is ≤ DEFLATION · ε of its norm before is numerically
in the span already: it is set to zero (deflated), and its Krylov chain ends."""
PRODUCT_COLUMNS = 4
"""Products with a block of p vectors (G V, V H) are taken with the block's columns zero-padded to a multiple of
this: XLA's CPU matrix product of a tall matrix with a few columns is 2–3× faster on a multiple of four (G V at
M = 4096: p = 6 19 ms, p = 8 8.8 ms), with the same numbers in the first p columns."""


def _padded_columns(product, block: jax.Array) -> jax.Array:
    """product(block) for a block (n, p), taken on the block with its columns zero-padded to a multiple of
    PRODUCT_COLUMNS (``product`` maps columns to columns)."""
    p = block.shape[1]
    return product(jnp.pad(block, ((0, 0), (0, -p % PRODUCT_COLUMNS))))[:, :p]


@pytree
@dataclasses.dataclass(frozen=True)
class KrylovState:
    """Block Lanczos in fixed-size buffers.

    Attributes:
      operator: G (``routes.operators``).
      basis: (N, p (C + 1)) V; blocks 0..steps filled (block ``steps`` awaits its product with G), rest zero.
      projection: (p (C + 1), p (C + 1)) upper block triangle of VᵀGV, one block column per step.
      labels: (n, N) b per label set; target: (N,) c; energy: s*.
      block: p = n + 1 (static).
    """

    operator: object
    basis: jax.Array
    projection: jax.Array
    labels: jax.Array
    target: jax.Array
    energy: jax.Array
    block: int = static_field(default=2)

    @property
    def capacity(self) -> int:
        """Steps that fit in the buffers (one block is kept for the last step's output)."""
        return self.basis.shape[1] // self.block - 1


def _orthonormalize_block(w, norms_before, threshold):
    """Columns of w (N, p) made orthonormal among themselves (each twice); a column whose norm falls to
    ≤ threshold · its norm before is numerically dependent and becomes zero."""

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
    """Write ``block`` (N, p), orthonormalised against ``basis`` and within itself, at column ``offset``
    (block classical Gram–Schmidt, twice); numerically dependent columns become zero."""
    threshold = DEFLATION * jnp.finfo(basis.dtype).eps
    projected = basis.T @ block if projected is None else projected
    combine = lambda coef: _padded_columns(lambda c: basis @ c, coef)  # V C
    first = _orthonormalize_block(block - combine(projected), norms_before, threshold)
    second = _orthonormalize_block(first - combine(basis.T @ first), jnp.ones_like(norms_before), threshold)
    return jax.lax.dynamic_update_slice_in_dim(basis, second.astype(basis.dtype), offset, axis=1)


def _step(state: KrylovState, i) -> KrylovState:
    """Step i: W = G V_i, block column i of VᵀGV, and V_{i+1} from W orthonormalised against all of V."""
    p, op = state.block, state.operator
    v = jax.lax.dynamic_slice_in_dim(state.basis, i * p, p, axis=1)
    w = op.place(_padded_columns(op, v.astype(op.dtype)).astype(v.dtype))
    h = state.basis.T @ w
    projection = jax.lax.dynamic_update_slice(state.projection, h, (jnp.zeros_like(i), i * p))
    # deflation is judged against ‖G‖ (≥ max |VᵀGV|), not ‖w‖: once the space is invariant, what is left of w
    # is rounding of size ε‖G‖, which can be large against a small ‖w‖
    scale = jnp.maximum(jnp.linalg.norm(w, axis=0), jnp.max(jnp.abs(projection)))
    basis = op.place(_orthonormalize_into(state.basis, w, (i + 1) * p, scale, projected=h))
    return dataclasses.replace(state, basis=basis, projection=projection)


def krylov_start(objective: Objective, operator, capacity: int, tile_rows: int) -> KrylovState:
    """Moments b_i, c, s* (tile by tile over the rows), zero buffers for ``capacity`` steps, and
    V_0 = [c, b_1, …, b_n] orthonormalised. The objective's features must have ``operator.size`` rows (zero
    padding to whole tiles: ``operators.padded_features``)."""
    basis, projection, labels, target, energy = _start(objective, operator, capacity, tile_rows)
    return KrylovState(operator, basis, projection, labels, target, energy, labels.shape[0] + 1)


@partial(jax.jit, static_argnames=("capacity", "tile_rows"))
def _start(objective: Objective, operator, capacity: int, tile_rows: int):
    features = objective.features  # rows padded to operator.size (a multiple of tile_rows)
    inputs = objective.train.inputs
    labels = operator.place(label_moments(features, objective.labels, inputs, tile_rows), axis=1)
    target = operator.place(target_moments(features, objective.target, inputs, tile_rows))
    k = (labels.shape[0] + 1) * (capacity + 1)
    dtype = labels.dtype
    basis = operator.place(jnp.zeros((operator.size, k), dtype))
    start = jnp.concatenate([target[:, None], labels.T], axis=1)
    basis = operator.place(_orthonormalize_into(basis, start, 0, jnp.linalg.norm(start, axis=0)))
    return basis, jnp.zeros((k, k), dtype), labels, target, target_energy(objective)


def krylov_advance(state: KrylovState, first, stop) -> KrylovState:
    """Steps first, …, stop − 1 (traced bounds: one compiled program serves every call). The compiled part
    returns the basis and T only: an operator among a jitted function's outputs is copied (G: M² numbers)."""
    basis, projection = _advance(state, first, stop)
    return dataclasses.replace(state, basis=basis, projection=projection)


@jax.jit
def _advance(state: KrylovState, first, stop):
    def step(i, carry):
        s = _step(dataclasses.replace(state, basis=carry[0], projection=carry[1]), i)
        return s.basis, s.projection

    return jax.lax.fori_loop(first, stop, step, (state.basis, state.projection))


def krylov_grow(state: KrylovState, capacity: int) -> KrylovState:
    """The same state with room for ``capacity`` steps (zero columns appended)."""
    if capacity < state.capacity:
        raise ValueError("Krylov buffers can only grow")
    basis, projection = _grow(state, capacity)
    return dataclasses.replace(state, basis=basis, projection=projection)


@partial(jax.jit, static_argnames=("capacity",))
def _grow(state: KrylovState, capacity: int):
    extra = state.block * (capacity - state.capacity)
    basis = state.operator.place(jnp.pad(state.basis, ((0, 0), (0, extra))))
    return basis, jnp.pad(state.projection, ((0, extra), (0, extra)))


@partial(jax.jit, static_argnames=("rcond", "with_basis"))
def krylov_decomposition(state: KrylovState, steps, rcond: float, with_basis: bool = False):
    """The Gauss quadrature of ``steps`` blocks as a Decomposition (basis V_k S when ``with_basis``), the number
    of basis columns that are not deflated, and the norm of the next block (0: the space is invariant)."""
    p = state.block
    upper = jnp.triu(state.projection)
    t = upper + jnp.triu(state.projection, 1).T
    active = jnp.arange(t.shape[0]) < steps * p
    t = jnp.where(active[:, None] & active[None, :], t, 0)
    theta, s = jnp.linalg.eigh(t)
    theta = cut_eigenvalues(theta, rcond)
    scale = inverse_sqrt(theta)
    labels = jnp.where(active, state.labels @ state.basis, 0)
    target = jnp.where(active, state.target @ state.basis, 0)
    label_coef = (labels @ s) * scale
    target_coef = (target @ s) * scale
    residual = jnp.maximum(state.energy - jnp.sum(target_coef**2), 0)
    n = label_coef.shape[0]
    problem = SpectralProblem(
        theta, label_coef, jnp.broadcast_to(target_coef, label_coef.shape), jnp.broadcast_to(residual, (n,))
    )
    basis = state.basis @ s if with_basis else None
    norms = jnp.linalg.norm(state.basis, axis=0)
    dimension = jnp.sum((norms > 0) & active)
    next_block = jax.lax.dynamic_slice_in_dim(norms, steps * p, p)
    return Decomposition(problem, basis), dimension, jnp.linalg.norm(next_block)


def krylov_bytes(size: int, labels: int, capacity: int, itemsize: int, shards: int = 1) -> int:
    """Memory of the Krylov buffers per device: the basis (size, K) split over ``shards``, T (K, K) and the
    eigendecomposition of T (K = p (capacity + 1))."""
    k = (labels + 1) * (capacity + 1)
    return (size * k // shards + 4 * k * k) * itemsize
