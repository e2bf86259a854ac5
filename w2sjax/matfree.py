"""Matrix-free Gram products: G_S v tile by tile from the weights, never storing the M×M matrix.

G_S = E[φ_S φ_Sᵀ] = K(U, U)/M with K(A, B) = E[σ(A x) σ(B x)ᵀ] in closed form
(``features.activation_cross_moment``). A product with row tiles U_I of ``tile_rows`` rows is

    (G_S V)_I = Σ_J K(U_I, U_J) V_J / M,

one kernel tile at a time (``lax.scan`` over the tiles on and above the diagonal, using K_JI = K_IJᵀ;
``lax.map`` over row tiles for the non-symmetric K(U, B) of other weights), so memory is
O(tile_rows · M + M p), and every product recomputes the kernel (O(M² d) work, no O(M²) storage). Rows past the true width are zero padding:
a zero row is a feature that is identically zero, so it adds a zero row and column to G_S and keeps padded
vectors zero there.

Operators (``TiledGram``, ``DenseGram`` and ``sharding.ShardedGram``) share one protocol used by ``krylov``:

- ``op(V)``: G_S V for V of shape (size, p);
- ``op.cross(act, B, W)``: K(U, B) W, the unnormalised moments of the student rows against other weights;
- ``op.weights`` (size, d) the zero-padded U, ``op.width`` the true M, ``op.variances``, ``op.activation``;
- ``op.place(x, axis)``: the layout of an array indexed by rows along ``axis`` (a no-op on one device);
- ``op.replicate(tree)``: arrays every device holds whole (global arrays on a multi-device mesh).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_positive_int
from w2sjax.features import RandomFeatures, activation_cross_moment, feature_gram
from w2sjax.inputs import InputDistribution, _pytree, static_field

TILE_BYTES = 256 * 2**20
"""Default memory for one kernel tile (with room for the fused temporaries)."""
TILE_TEMPORARIES = 4
"""Arrays of a tile's size alive at once while a ReLU kernel tile is formed (inner products, cosines, …)."""
SQUARE_TILE_ROWS = {"cpu": 512, "gpu": 4096, "tpu": 4096}
"""Default rows of the square (tile_rows, tile_rows) tiles of G_S products: cache-sized on CPUs (measured:
512 rows run 1.9× faster than one 4096-row tile at M = 4096), large enough to fill an accelerator."""


def _even_split(width: int, most: int) -> int:
    """As few equal tiles of at most ``most`` rows as cover ``width`` rows (padding < one row per tile)."""
    tiles = math.ceil(width / max(1, most))
    return math.ceil(width / tiles)


def default_tile_rows(width: int, itemsize: int = 8, tile_bytes: int = TILE_BYTES, columns: int | None = None) -> int:
    """Rows per tile when ``width`` rows are split into (tile_rows, columns) row tiles within ``tile_bytes``
    (columns defaults to width)."""
    check_positive_int(width, "width")
    columns = width if columns is None else columns
    return _even_split(width, tile_bytes // (TILE_TEMPORARIES * itemsize * columns))


def default_square_tile_rows(width: int, backend: str | None = None, itemsize: int = 8,
                             tile_bytes: int = TILE_BYTES) -> int:
    """Rows per tile for the square tiles of ``symmetric_matvec`` (``SQUARE_TILE_ROWS`` for the backend,
    within ``tile_bytes``)."""
    check_positive_int(width, "width")
    backend = jax.default_backend() if backend is None else backend
    most = min(SQUARE_TILE_ROWS.get(backend, 4096), math.isqrt(tile_bytes // (TILE_TEMPORARIES * itemsize)))
    return _even_split(width, most)


def padded_size(width: int, tile_rows: int, shards: int = 1) -> int:
    """The smallest multiple of tile_rows · shards that holds ``width`` rows."""
    block = tile_rows * shards
    return math.ceil(width / block) * block


def pad_rows(array: jax.Array, size: int) -> jax.Array:
    """Zero rows appended to (n, ...) up to (size, ...)."""
    extra = size - array.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad {array.shape[0]} rows down to {size}")
    return jnp.pad(array, ((0, extra),) + ((0, 0),) * (array.ndim - 1))


def moment_matvec(
    act_rows: str,
    act_cols: str,
    rows: jax.Array,
    cols: jax.Array,
    variances: jax.Array,
    vectors: jax.Array,
    tile_rows: int,
) -> jax.Array:
    """K(A, B) V = E[σ_r(A x) σ_c(B x)ᵀ] V tile by tile: A (n, d), B (m, d), V (m, ...) → (n, ...).

    ``n`` must be a multiple of ``tile_rows``; one (tile_rows, m) kernel block is alive at a time."""
    n = rows.shape[0]
    if n % tile_rows:
        raise ValueError(f"{n} rows do not split into tiles of {tile_rows}; pad them with pad_rows")
    tiles = rows.reshape(n // tile_rows, tile_rows, rows.shape[-1])

    def one_tile(tile):
        return activation_cross_moment(act_rows, act_cols, tile, cols, variances) @ vectors

    out = jax.lax.map(one_tile, tiles)
    return out.reshape((n,) + vectors.shape[1:])


def symmetric_matvec(activation: str, weights: jax.Array, variances: jax.Array, vectors: jax.Array, tile_rows: int):
    """K(U, U) V over the tiles on and above the diagonal only (K is symmetric): U (n, d), V (n, ...) → (n, ...).

    Tile (I, J), I ≤ J, adds K_IJ V_J to rows I and, off the diagonal, K_IJᵀ V_I to rows J: T(T+1)/2 kernel
    tiles of (tile_rows, tile_rows) instead of T², close to half the work for many tiles."""
    n = weights.shape[0]
    if n % tile_rows:
        raise ValueError(f"{n} rows do not split into tiles of {tile_rows}; pad them with pad_rows")
    count = n // tile_rows
    pairs = np.asarray([(i, j) for i in range(count) for j in range(i, count)], dtype=np.int32)
    flat = vectors.reshape(n, -1)

    def rows(x, i):
        return jax.lax.dynamic_slice_in_dim(x, i * tile_rows, tile_rows)

    def add(out, i, block):
        return jax.lax.dynamic_update_slice_in_dim(out, rows(out, i) + block, i * tile_rows, axis=0)

    def one_pair(out, ij):
        i, j = ij[0], ij[1]
        kernel = activation_cross_moment(activation, activation, rows(weights, i), rows(weights, j), variances)
        out = add(out, i, kernel @ rows(flat, j))
        off_diagonal = (i != j).astype(flat.dtype)
        return add(out, j, off_diagonal * (kernel.T @ rows(flat, i))), None

    out, _ = jax.lax.scan(one_pair, jnp.zeros_like(flat), jnp.asarray(pairs))
    return out.reshape(vectors.shape)


@_pytree
@dataclasses.dataclass(frozen=True)
class TiledGram:
    """G_S = K(U, U)/M as a matrix-free operator.

    Attributes:
      weights: (size, d) U, zero-padded to a multiple of ``tile_rows``.
      width: the true M (scalar array).
      variances: (d,) diagonal of Σ.
      activation: ``"relu"`` or ``"linear"`` (static).
      tile_rows: rows per kernel tile (static).
    """

    weights: jax.Array
    width: jax.Array
    variances: jax.Array
    activation: str = static_field(default="relu")
    tile_rows: int = static_field(default=256)

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def __call__(self, vectors: jax.Array) -> jax.Array:
        """G_S V for V (size, ...) → (size, ...), from the kernel tiles on and above the diagonal."""
        return symmetric_matvec(self.activation, self.weights, self.variances, vectors, self.tile_rows) / self.width

    def cross(self, act_cols: str, cols: jax.Array, vectors: jax.Array) -> jax.Array:
        """K(U, B) W for B (m, d), W (m, ...) → (size, ...), over row tiles."""
        return moment_matvec(self.activation, act_cols, self.weights, cols, self.variances, vectors, self.tile_rows)

    def place(self, x: jax.Array, axis: int = 0) -> jax.Array:
        return x

    def replicate(self, tree):
        return jax.tree_util.tree_map(jnp.asarray, tree)


@_pytree
@dataclasses.dataclass(frozen=True)
class DenseGram:
    """A stored Gram matrix (size, size) behind the same protocol as ``TiledGram``."""

    matrix: jax.Array
    weights: jax.Array
    width: jax.Array
    variances: jax.Array
    activation: str = static_field(default="relu")
    tile_rows: int = static_field(default=256)

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    def __call__(self, vectors: jax.Array) -> jax.Array:
        return self.matrix @ vectors

    def cross(self, act_cols: str, cols: jax.Array, vectors: jax.Array) -> jax.Array:
        return moment_matvec(self.activation, act_cols, self.weights, cols, self.variances, vectors, self.tile_rows)

    def place(self, x: jax.Array, axis: int = 0) -> jax.Array:
        return x

    def replicate(self, tree):
        return jax.tree_util.tree_map(jnp.asarray, tree)


def _tile_rows(student: RandomFeatures, tile_rows: int | None, square: bool = True) -> int:
    m = int(student.weights.shape[0])
    if tile_rows is None:
        itemsize = student.weights.dtype.itemsize
        return default_square_tile_rows(m, itemsize=itemsize) if square else default_tile_rows(m, itemsize)
    return check_positive_int(tile_rows, "tile_rows")


def tiled_gram(student: RandomFeatures, inputs: InputDistribution, tile_rows: int | None = None) -> TiledGram:
    """The matrix-free G_S of a student (weights zero-padded to a multiple of ``tile_rows``)."""
    tile_rows = _tile_rows(student, tile_rows)
    weights = pad_rows(student.weights, padded_size(int(student.weights.shape[0]), tile_rows))
    return TiledGram(weights, student.width, inputs.variances, student.activation, tile_rows)


def dense_gram(student: RandomFeatures, inputs: InputDistribution, tile_rows: int | None = None) -> DenseGram:
    """G_S stored (M', M') (M' = M padded to a multiple of ``tile_rows``), for Gram matrices that fit in memory."""
    tile_rows = _tile_rows(student, tile_rows)
    weights = pad_rows(student.weights, padded_size(int(student.weights.shape[0]), tile_rows))
    padded = RandomFeatures(weights, student.width, student.activation)
    matrix = _feature_gram(padded, padded, inputs)
    return DenseGram(matrix, weights, student.width, inputs.variances, student.activation, tile_rows)


_feature_gram = jax.jit(feature_gram)


def label_moment(operator, teachers: RandomFeatures, teacher_weights: jax.Array) -> jax.Array:
    """b = G_ST w_T for a batch of teachers, tile by tile over the student's rows.

    Args:
      operator: the student's Gram operator (its rows, padding included).
      teachers: teacher features with weights (n, M_TE, d) and widths (n,) (zero rows are padding).
      teacher_weights: (n, M_TE) top-layer weights w_T.

    Returns:
      (n, size) label moments b_i = E[φ_S f_{T,i}] (zero on padded rows).
    """
    n, m_te, d = teachers.weights.shape
    # every teacher's columns side by side: one kernel block per tile serves the whole batch
    cols = teachers.weights.reshape(n * m_te, d)
    scaled = (teacher_weights / jnp.sqrt(teachers.width)[:, None]).reshape(n * m_te)
    owner = jnp.repeat(jnp.arange(n), m_te)
    blocks = jnp.zeros((n * m_te, n), scaled.dtype).at[jnp.arange(n * m_te), owner].set(scaled)
    out = operator.cross(teachers.activation, cols, blocks)
    return operator.place(out.T / jnp.sqrt(operator.width), axis=1)
