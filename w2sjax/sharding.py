"""Spreading the work over every device with ``jax.sharding``: kernel tiles and sweep axes.

One ``Mesh`` with two named axes serves both routes:

- ``"tiles"``: the rows of the student (the row tiles of G_S, the Krylov basis and every vector indexed by
  student features). ``ShardedGram`` computes G_S V with ``shard_map``: each device forms the kernel
  tiles of its own rows against all columns, so G_S is never stored and its product costs 1/n of the work
  per device; the Krylov basis (M, K) is split by rows, and its inner products are all-reduces that XLA
  inserts.
- ``"batch"``: the sweep axes of the dense route (teachers × seeds): ``sharded_score_teachers`` places a
  padded teacher batch with its leading axis split over ``"batch"``, so each device scores its teachers
  against one replicated decomposition.

Multi-host: call ``jax.distributed.initialize()`` (or ``initialize_distributed``) on every process before
any other JAX call. ``jax.devices()`` then lists the devices of all processes, ``device_mesh`` spans them
all, arrays are built as global arrays with ``global_array`` (every process holds the same host copy: the
weights come from the same seeds), and results are gathered to every process by ``to_host``. Every process
runs the same program (SPMD). On one host nothing changes; on CPU, ``XLA_FLAGS=--xla_force_host_platform_
device_count=N`` (set before importing jax) gives N devices for testing.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from w2sjax._checks import check_positive_int
from w2sjax.features import RandomFeatures
from w2sjax.inputs import InputDistribution, _pytree, static_field
from w2sjax.matfree import _tile_rows, default_tile_rows, moment_matvec, pad_rows, padded_size

BATCH, TILES = "batch", "tiles"


def initialize_distributed(**kwargs) -> None:
    """``jax.distributed.initialize(**kwargs)`` (coordinator_address, num_processes, process_id; detected
    automatically on SLURM, Open MPI and Cloud TPU): call it on every process before any other JAX call."""
    jax.distributed.initialize(**kwargs)


def device_mesh(batch: int = 1, tiles: int | None = None, devices=None) -> Mesh:
    """A Mesh of shape (batch, tiles) with axes ("batch", "tiles") over ``devices`` (default: every device of
    every process). ``tiles`` defaults to all devices left over by ``batch``."""
    devices = list(jax.devices() if devices is None else devices)
    batch = check_positive_int(batch, "batch")
    if tiles is None:
        if len(devices) % batch:
            raise ValueError(f"batch={batch} does not divide the {len(devices)} devices; pick a divisor")
        tiles = len(devices) // batch
    tiles = check_positive_int(tiles, "tiles")
    if batch * tiles > len(devices):
        raise ValueError(f"a {batch}×{tiles} mesh needs {batch * tiles} devices; there are {len(devices)}")
    grid = np.asarray(devices[: batch * tiles], dtype=object).reshape(batch, tiles)
    return Mesh(grid, (BATCH, TILES))


def global_array(host, sharding: NamedSharding) -> jax.Array:
    """A global jax.Array from a host array that every process holds whole (works on one or many hosts)."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicated(mesh: Mesh, x) -> jax.Array:
    return global_array(x, NamedSharding(mesh, P()))


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


@_pytree
@dataclasses.dataclass(frozen=True)
class ShardedGram:
    """G_S = K(U, U)/M matrix-free, its rows split over the mesh axis "tiles".

    Attributes:
      weights: (size, d) U zero-padded to a multiple of tile_rows × (devices on "tiles"), rows sharded.
      width: the true M.
      variances: (d,) diagonal of Σ.
      activation, tile_rows, mesh: static.
    """

    weights: jax.Array
    width: jax.Array
    variances: jax.Array
    activation: str = static_field(default="relu")
    tile_rows: int = static_field(default=256)
    mesh: Mesh = static_field(default=None)

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def __call__(self, vectors: jax.Array) -> jax.Array:
        """G_S V: V (size, p) replicated in, (size, p) split by rows out."""
        return self.cross(self.activation, self.weights, vectors) / self.width

    def cross(self, act_cols: str, cols: jax.Array, vectors: jax.Array) -> jax.Array:
        """K(U, B) W: each device forms the tiles of its own rows of U against all of B."""
        local = partial(moment_matvec, self.activation, act_cols, tile_rows=self.tile_rows)
        tail = (None,) * (vectors.ndim - 1)
        run = jax.shard_map(
            lambda rows, cols, var, vec: local(rows, cols, var, vec),
            mesh=self.mesh,
            in_specs=(P(TILES, None), P(), P(), P()),
            out_specs=P(TILES, *tail),
        )
        return run(self.weights, cols, self.variances, vectors)

    def place(self, x: jax.Array, axis: int = 0) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, _row_spec(x.ndim, axis)))

    def replicate(self, tree):
        return replicate_tree(tree, self.mesh)


def sharded_gram(
    student: RandomFeatures, inputs: InputDistribution, mesh: Mesh, tile_rows: int | None = None
) -> ShardedGram:
    """The matrix-free G_S of a student with its rows split over ``mesh``'s "tiles" axis."""
    shards = mesh.shape[TILES]
    m = int(student.weights.shape[0])
    if tile_rows is None:  # each device's rows, in row tiles against all M columns
        local = padded_size(m, 1, shards) // shards
        tile_rows = default_tile_rows(local, student.weights.dtype.itemsize, columns=m)
    tile_rows = _tile_rows(student, tile_rows)
    host_weights = np.asarray(pad_rows(jnp.asarray(np.asarray(student.weights)), padded_size(m, tile_rows, shards)))
    weights = global_array(host_weights, NamedSharding(mesh, P(TILES, None)))
    return ShardedGram(
        weights,
        replicated(mesh, student.width),
        replicated(mesh, inputs.variances),
        student.activation,
        int(tile_rows),
        mesh,
    )


def pad_batch(tree, multiple: int):
    """Pad the leading axis of every leaf to a multiple of ``multiple`` by repeating the last entry."""
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    extra = -n % multiple

    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)]) if extra else x

    return jax.tree_util.tree_map(pad, tree), n


def shard_batch(tree, mesh: Mesh):
    """Global arrays with the leading axis of every leaf split over "batch" (padded to a multiple of its size);
    returns (tree, n) with n the unpadded length."""
    padded, n = pad_batch(tree, mesh.shape[BATCH])

    def place(x):
        return global_array(x, NamedSharding(mesh, P(BATCH, *(None,) * (x.ndim - 1))))

    return jax.tree_util.tree_map(place, padded), n


def replicate_tree(tree, mesh: Mesh):
    return jax.tree_util.tree_map(lambda x: replicated(mesh, x), tree)


def sharded_score_teachers(spectrum, student, teachers, fits, target, inputs, times, mesh: Mesh):
    """``sweep.score_teachers`` with the teacher batch split over the "batch" axis of ``mesh``.

    Args are those of ``sweep.score_teachers``; returns the batched W2SResult (n teachers, as numpy)."""
    from w2sjax.sweep import score_teachers

    (teachers, fits), n = shard_batch((teachers, fits), mesh)
    spectrum, student, target, inputs, times = replicate_tree((spectrum, student, target, inputs, times), mesh)
    result = score_teachers(spectrum, student, teachers, fits, target, inputs, times)
    return jax.tree_util.tree_map(lambda x: to_host(x)[:n], result)
