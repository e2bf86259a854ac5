"""G_train as a linear operator for the Krylov route: stored, matrix-free in tiles, or sharded over devices.

G_S = K(U, U)/M with K(A, B) = E[σ(A x) σ(B x)ᵀ] in closed form (``features.feature_gram``). With row tiles
U_I of ``tile_rows`` rows,

    (G_S V)_I = Σ_J K(U_I, U_J) V_J / M.

- ``StoredGram``: G_S built once and stored (M² numbers; float32 problems: formed tile by tile in float64 and
  rounded to float32); a product is one matrix product.
- ``TiledGram``: never stored; every product recomputes the tiles on and above the diagonal (O(M² d) work,
  O(tile_rows² + M p) memory).
- ``ShardedGram``: the rows split over the mesh axis "tiles"; each device forms the tiles of its own rows
  against every column with ``shard_map`` (see ``routes.sharding``).

Rows past the true width are zero padding: a zero row is a feature that is identically zero, so it adds a zero
row and column to G_S and keeps padded vectors zero there. Every operator has ``size`` (rows, padding
included), ``dtype`` (the precision of its products: V is cast to it, the Krylov route casts G V back to the
basis's), ``op(V)`` for V (size, p), ``place(x, axis)`` (the layout of an array indexed by rows along
``axis``; a no-op on one device) and ``replicate(tree)`` (arrays that every device holds whole).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_positive_int
from w2sjax.features import RandomFeatures, feature_gram, feature_target_moment
from w2sjax.inputs import pytree, static_field

TILE_BYTES = 256 * 2**20
"""Default memory for one kernel tile (with room for the fused temporaries)."""
TILE_TEMPORARIES = 4
"""Arrays of a tile's size alive at once while a ReLU kernel tile is formed (inner products, cosines, …)."""
SQUARE_TILE_ROWS = {"cpu": 512, "gpu": 4096, "tpu": 4096}
"""Rows of the square tiles: cache-sized on CPUs (512 rows ran 1.9× faster than one 4096-row tile at
M = 4096), large enough to fill an accelerator."""


def even_split(width: int, most: int) -> int:
    """As few equal tiles of at most ``most`` rows as cover ``width`` rows (padding < one row per tile)."""
    tiles = math.ceil(width / max(1, most))
    return math.ceil(width / tiles)


def default_tile_rows(width: int, itemsize: int = 8, tile_bytes: int = TILE_BYTES, columns: int | None = None) -> int:
    """Rows per tile when ``width`` rows are split into (tile_rows, columns) row tiles within ``tile_bytes``."""
    check_positive_int(width, "width")
    columns = width if columns is None else columns
    return even_split(width, max(1, tile_bytes // (TILE_TEMPORARIES * itemsize * columns)))


def default_square_tile_rows(width: int, backend: str | None = None, itemsize: int = 8,
                             tile_bytes: int = TILE_BYTES) -> int:
    """Rows per square tile (``SQUARE_TILE_ROWS`` for the backend, within ``tile_bytes``)."""
    check_positive_int(width, "width")
    backend = jax.default_backend() if backend is None else backend
    most = min(SQUARE_TILE_ROWS.get(backend, 4096), math.isqrt(tile_bytes // (TILE_TEMPORARIES * itemsize)))
    return even_split(width, most)


def padded_size(width: int, tile_rows: int, shards: int = 1) -> int:
    """The smallest multiple of tile_rows · shards that holds ``width`` rows."""
    block = tile_rows * shards
    return math.ceil(width / block) * block


def pad_rows(array: jax.Array, size: int) -> jax.Array:
    """Zero rows appended to (n, ...) up to (size, ...)."""
    extra = size - array.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad {array.shape[0]} rows down to {size}")
    if extra == 0:
        return array
    return jnp.pad(array, ((0, extra),) + ((0, 0),) * (array.ndim - 1))


def _tile_pairs(count: int) -> np.ndarray:
    return np.asarray([(i, j) for i in range(count) for j in range(i, count)], dtype=np.int32)


def _rows(x, i, tile_rows):
    return jax.lax.dynamic_slice_in_dim(x, i * tile_rows, tile_rows)


def _tile(features: RandomFeatures, inputs, i, j, tile_rows):
    """G_IJ = E[φ_I φ_Jᵀ] (tile_rows, tile_rows) of a padded model."""
    fi = RandomFeatures(_rows(features.weights, i, tile_rows), features.width, features.activation)
    fj = RandomFeatures(_rows(features.weights, j, tile_rows), features.width, features.activation)
    return feature_gram(fi, fj, inputs)


def symmetric_matvec(features: RandomFeatures, inputs, vectors: jax.Array, tile_rows: int) -> jax.Array:
    """G V over the tiles on and above the diagonal: tile (I, J), I ≤ J, adds G_IJ V_J to rows I and, off the
    diagonal, G_IJᵀ V_I to rows J (T(T+1)/2 tiles instead of T²). V (n, ...) → (n, ...)."""
    n = features.weights.shape[0]
    pairs = _tile_pairs(n // tile_rows)
    flat = vectors.reshape(n, -1)

    def add(out, i, block):
        return jax.lax.dynamic_update_slice_in_dim(out, _rows(out, i, tile_rows) + block, i * tile_rows, axis=0)

    def one_pair(out, ij):
        i, j = ij[0], ij[1]
        tile = _tile(features, inputs, i, j, tile_rows)
        out = add(out, i, tile @ _rows(flat, j, tile_rows))
        off = (i != j).astype(flat.dtype)
        return add(out, j, off * (tile.T @ _rows(flat, i, tile_rows))), None

    out, _ = jax.lax.scan(one_pair, jnp.zeros_like(flat), jnp.asarray(pairs))
    return out.reshape(vectors.shape)


def symmetric_gram(features: RandomFeatures, inputs, tile_rows: int, dtype=None) -> jax.Array:
    """G (n, n) of a padded model from its tiles on and above the diagonal, mirrored; each tile formed in the
    weights' precision and stored in ``dtype`` (default: the weights'), so no (n, n) array of the weights'
    precision is formed."""
    n = features.weights.shape[0]
    pairs = _tile_pairs(n // tile_rows)

    def one_pair(gram, ij):
        i, j = ij[0], ij[1]
        tile = _tile(features, inputs, i, j, tile_rows)
        tile = tile.astype(gram.dtype)
        gram = jax.lax.dynamic_update_slice(gram, tile, (i * tile_rows, j * tile_rows))
        return jax.lax.dynamic_update_slice(gram, tile.T, (j * tile_rows, i * tile_rows)), None

    dtype = features.weights.dtype if dtype is None else dtype
    gram, _ = jax.lax.scan(one_pair, jnp.zeros((n, n), dtype), jnp.asarray(pairs))
    return gram


def row_moments(features: RandomFeatures, fn, tile_rows: int) -> jax.Array:
    """fn(tile features) (..., tile_rows) evaluated tile by tile over a padded model's rows → (..., n)."""
    n, d = features.weights.shape
    tiles = features.weights.reshape(n // tile_rows, tile_rows, d)
    out = jax.lax.map(lambda w: fn(RandomFeatures(w, features.width, features.activation)), tiles)
    return jnp.moveaxis(out, 0, -2).reshape(out.shape[1:-1] + (n,))


def label_moments(features: RandomFeatures, labels: tuple, inputs, tile_rows: int) -> jax.Array:
    """B (k, n): b_i = E[φ y_i] for batches of label functions, tile by tile over the rows."""
    from w2sjax.objectives import map_labels

    moment = lambda f: map_labels(lambda t: feature_target_moment(f, t, inputs), labels)
    return row_moments(features, moment, tile_rows)


def target_moments(features: RandomFeatures, target, inputs, tile_rows: int) -> jax.Array:
    """c (n,) = E[φ f*], tile by tile over the rows."""
    return row_moments(features, lambda f: feature_target_moment(f, target, inputs), tile_rows)


@pytree
@dataclasses.dataclass(frozen=True)
class StoredGram:
    """A stored G (size, size)."""

    matrix: jax.Array

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dtype(self):
        return self.matrix.dtype

    def __call__(self, vectors: jax.Array) -> jax.Array:
        return self.matrix @ vectors

    def place(self, x, axis: int = 0):
        return x

    def replicate(self, tree):
        return jax.tree_util.tree_map(jnp.asarray, tree)


@pytree
@dataclasses.dataclass(frozen=True)
class TiledGram:
    """G = K(U, U)/M as a matrix-free operator over square tiles.

    Attributes:
      features: the model with weights zero-padded to a multiple of ``tile_rows`` (true width kept).
      inputs: the law of the moments.
      tile_rows: rows per tile (static).
    """

    features: RandomFeatures
    inputs: object
    tile_rows: int = static_field(default=512)

    @property
    def size(self) -> int:
        return int(self.features.weights.shape[0])

    @property
    def dtype(self):
        return self.features.weights.dtype

    def __call__(self, vectors: jax.Array) -> jax.Array:
        return symmetric_matvec(self.features, self.inputs, vectors, self.tile_rows)

    def place(self, x, axis: int = 0):
        return x

    def replicate(self, tree):
        return jax.tree_util.tree_map(jnp.asarray, tree)


def padded_features(features: RandomFeatures, tile_rows: int, shards: int = 1) -> RandomFeatures:
    size = padded_size(features.rows, tile_rows, shards)
    return RandomFeatures(pad_rows(features.weights, size), features.width, features.activation)


def tile_rows_for(features: RandomFeatures, tile_rows: int | None) -> int:
    if tile_rows is None:
        return default_square_tile_rows(features.rows, itemsize=features.weights.dtype.itemsize)
    return check_positive_int(tile_rows, "tile_rows")


def stored_bytes(width: int, itemsize: int) -> int:
    """Memory of a stored G (with its padding to whole tiles, bounded by a tenth more)."""
    return int(1.1 * width * width * itemsize)
