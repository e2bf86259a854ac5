"""Spreading the Krylov route over every device with ``jax.sharding``: the rows of G_train.

A ``Mesh`` with the axis ``"tiles"`` holds the rows of the student (the row tiles of G_S, the Krylov basis and
every vector indexed by student features). ``ShardedGram`` computes G_S V with ``shard_map``: each device
forms the kernel tiles of its own rows against every column, so G_S is never stored and a product costs 1/n of
the work per device; the basis (M, K) is split by rows and its inner products are all-reduces that XLA inserts.

Multi-host: call ``jax.distributed.initialize()`` (or ``initialize_distributed``) on every process before any
other JAX call; ``jax.devices()`` then lists every process's devices, ``device_mesh`` spans them, arrays are
global arrays (``global_array``: every process holds the same host copy, the weights come from the same
seeds), and results are gathered to every process by ``to_host``. On CPU,
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before importing jax) gives N devices for testing.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from w2sjax._checks import check_positive_int
from w2sjax.features import RandomFeatures, feature_gram
from w2sjax.inputs import pytree, static_field

TILES = "tiles"


def initialize_distributed(**kwargs) -> None:
    """``jax.distributed.initialize(**kwargs)``: call it on every process before any other JAX call."""
    jax.distributed.initialize(**kwargs)


def device_mesh(tiles: int | None = None, devices=None) -> Mesh:
    """A Mesh with the axis "tiles" over ``tiles`` of ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    tiles = len(devices) if tiles is None else check_positive_int(tiles, "tiles")
    if tiles > len(devices):
        raise ValueError(f"a mesh of {tiles} devices needs {tiles}; there are {len(devices)}")
    return Mesh(np.asarray(devices[:tiles], dtype=object), (TILES,))


def global_array(host, sharding: NamedSharding) -> jax.Array:
    """A global jax.Array from a host array that every process holds whole (one host or many)."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate_tree(tree, mesh: Mesh):
    return jax.tree_util.tree_map(lambda x: global_array(x, NamedSharding(mesh, P())), tree)


def to_host(x) -> np.ndarray:
    """A numpy copy of a (possibly multi-host) array on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _row_spec(ndim: int, axis: int) -> P:
    spec = [None] * ndim
    spec[axis] = TILES
    return P(*spec)


def _row_tiles_matvec(features: RandomFeatures, inputs, vectors, tile_rows: int, cols: RandomFeatures):
    """K(U_rows, U_cols) V over row tiles of the local rows: (n_local, …)."""
    n, d = features.weights.shape
    tiles = features.weights.reshape(n // tile_rows, tile_rows, d)

    def one(w):
        return feature_gram(RandomFeatures(w, features.width, features.activation), cols, inputs) @ vectors

    return jax.lax.map(one, tiles).reshape((n,) + vectors.shape[1:])


@pytree
@dataclasses.dataclass(frozen=True)
class ShardedGram:
    """G_S matrix-free with its rows split over the mesh axis "tiles".

    Attributes:
      features: the model, rows zero-padded to a multiple of tile_rows × (devices on "tiles"), rows sharded.
      inputs: the law (replicated).
      tile_rows, mesh: static.
    """

    features: RandomFeatures
    inputs: object
    tile_rows: int = static_field(default=256)
    mesh: Mesh = static_field(default=None)

    @property
    def size(self) -> int:
        return int(self.features.weights.shape[0])

    @property
    def dtype(self):
        return self.features.weights.dtype

    def __call__(self, vectors: jax.Array) -> jax.Array:
        """G_S V: V (size, p) in, (size, p) split by rows out."""
        cols = self.features
        local = partial(_row_tiles_matvec, tile_rows=self.tile_rows)
        run = jax.shard_map(
            lambda w, width, inputs, cols_w, vec: local(
                RandomFeatures(w, width, cols.activation), inputs, vec, cols=RandomFeatures(cols_w, width, cols.activation)
            ),
            mesh=self.mesh,
            in_specs=(P(TILES, None), P(), P(), P(), P()),
            out_specs=P(TILES, *(None,) * (vectors.ndim - 1)),
        )
        return run(self.features.weights, self.features.width, self.inputs, self.features.weights, vectors)

    def place(self, x, axis: int = 0):
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, _row_spec(x.ndim, axis)))

    def replicate(self, tree):
        return replicate_tree(tree, self.mesh)


def sharded_gram(features: RandomFeatures, inputs, mesh: Mesh, tile_rows: int) -> ShardedGram:
    """The matrix-free G of padded ``features`` (rows a multiple of tile_rows × mesh.shape["tiles"])."""
    weights = global_array(np.asarray(features.weights), NamedSharding(mesh, P(TILES, None)))
    width, inputs = replicate_tree((features.width, inputs), mesh)
    return ShardedGram(RandomFeatures(weights, width, features.activation), inputs, int(tile_rows), mesh)
