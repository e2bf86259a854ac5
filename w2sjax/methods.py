"""Choosing the route: ``solve(..., method="auto" | "eigh" | "krylov")``.

- ``eigh``: the dense route (``w2s``): one eigendecomposition of G_S, exact at every time including ∞;
  O(M³) time and about ``EIGH_MATRICES`` · M² numbers of memory (the Gram matrix, its eigenvectors and the
  solver's workspace).
- ``krylov``: block Lanczos quadrature (``krylov``); O(M² d) work per block step, with G_S either stored
  (``operator="dense"``, M² numbers, fast products) or never formed (``operator="tiled"``, the
  matrix-free kernel tiles of ``matfree``; memory O(M · K + tile_rows · M) for a basis of K columns).

``method="auto"`` picks ``eigh`` below ``KRYLOV_MIN_WIDTH`` student features when it fits in memory, and
``krylov`` otherwise (with the stored Gram matrix when it fits, matrix-free when not). If the Krylov
quadrature cannot meet its tolerance (very long times on an ill-conditioned G_S), auto falls back to eigh
where eigh fits, and warns where it does not. A problem that fits no route raises a ValueError that says
how much memory each route needs and the largest student each would fit.

Memory available: ``memory_bytes`` if given; else the device's ``memory_stats()`` (``bytes_limit`` minus
``bytes_in_use``, as on GPUs); else, where a device reports no statistics (CPU), ``HOST_MEMORY_FRACTION``
of the physical memory; else ``DEFAULT_MEMORY_BYTES``. The estimates are per device: with a mesh, the
Krylov basis and the kernel rows are split over the "tiles" axis, while eigh runs on one device.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import jax
import jax.numpy as jnp

from w2sjax._checks import check_choice
from w2sjax.features import RandomFeatures, check_features_inputs
from w2sjax.inputs import InputDistribution, Target, check_target_inputs
from w2sjax.krylov import (
    DEFAULT_INITIAL_BLOCKS,
    DEFAULT_MAX_BLOCKS,
    DEFAULT_TIME_RTOL,
    DEFAULT_TOL,
    KrylovConvergenceWarning,
    KrylovInfo,
    krylov_weak_to_strong,
    teacher_batch,
)
from w2sjax.matfree import TILE_TEMPORARIES, default_square_tile_rows, default_tile_rows, dense_gram, tiled_gram
from w2sjax.sharding import to_host
from w2sjax.w2s import W2SResult, check_increasing_times, check_problem, student_spectrum, uses_factor

METHODS = ("auto", "eigh", "krylov")
OPERATORS = ("auto", "dense", "tiled")

KRYLOV_MIN_WIDTH = 4096
"""Below this many student features, auto prefers the dense route: it is fast there and exact at all times."""
EIGH_MATRICES = 5
"""M×M arrays alive during the dense route: G_S, its eigenvectors and the eigensolver's workspace."""
DENSE_GRAM_MATRICES = 3
"""M×M arrays alive while a stored Gram matrix is built (the kernel and its fused temporaries)."""
HOST_MEMORY_FRACTION = 0.5
DEFAULT_MEMORY_BYTES = 8 * 2**30
GIB = 2**30


def device_memory_bytes(device=None) -> int:
    """Bytes free on ``device`` (default: the first device); see the module docstring for the fallbacks."""
    device = jax.devices()[0] if device is None else device
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # backends without statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        return int(HOST_MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MEMORY_BYTES


def eigh_bytes(width: int, itemsize: int = 8, rank: int | None = None) -> int:
    """Memory of the dense route for M = width; ``rank`` < width: linear features decomposed through their
    (M, rank) factor (thin SVD) instead of the M×M Gram matrix."""
    if rank is not None and rank < width:
        return 3 * width * rank * itemsize
    return EIGH_MATRICES * width * width * itemsize


def krylov_bytes(
    width: int,
    dim: int,
    block: int = 2,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    itemsize: int = 8,
    operator: str = "tiled",
    shards: int = 1,
) -> int:
    """Memory per device of the Krylov route: the basis (M, p (B+1)) and T, plus the stored Gram matrix
    (``dense``) or one kernel tile and the weights (``tiled``, rows split over ``shards`` devices)."""
    blocks = min(max(max_blocks, DEFAULT_INITIAL_BLOCKS), width) + 1
    columns = block * blocks
    basis = width * columns * itemsize // shards + columns * columns * itemsize
    if operator == "dense":
        return basis + DENSE_GRAM_MATRICES * width * width * itemsize
    if shards > 1:  # row tiles of the local rows against every column
        rows = default_tile_rows(-(-width // shards), itemsize, columns=width)
        tile = TILE_TEMPORARIES * itemsize * rows * width
    else:  # square tiles
        rows = default_square_tile_rows(width, itemsize=itemsize)
        tile = TILE_TEMPORARIES * itemsize * rows * rows
    return basis + tile + 2 * width * dim * itemsize


def _largest_width(fits) -> int:
    """The largest M ≥ 1 with fits(M) (0 if none), by doubling then bisection."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi) and hi < 2**40:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


@dataclasses.dataclass(frozen=True)
class MethodPlan:
    """The route for one problem and why.

    Attributes:
      method: ``"eigh"`` or ``"krylov"``.
      operator: ``"dense"`` or ``"tiled"`` for krylov, None for eigh.
      width: M_ST.
      memory_bytes: bytes available per device.
      needed_bytes: the estimate for the chosen route.
      eigh_bytes, krylov_dense_bytes, krylov_tiled_bytes: the estimate of each route.
      reason: one line.
    """

    method: str
    operator: str | None
    width: int
    memory_bytes: int
    needed_bytes: int
    eigh_bytes: int
    krylov_dense_bytes: int
    krylov_tiled_bytes: int
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_method(
    width: int,
    dim: int,
    *,
    method: str = "auto",
    operator: str = "auto",
    teachers: int = 1,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    itemsize: int = 8,
    memory_bytes: int | None = None,
    shards: int = 1,
    krylov_min_width: int = KRYLOV_MIN_WIDTH,
    rank: int | None = None,
) -> MethodPlan:
    """Pick the route for a student of ``width`` features from its size and the memory available.

    ``rank``: the rank of a factored G_S (linear features: d), which makes the dense route cheap.

    Raises:
      ValueError: when the requested (or any) route does not fit, saying which route and size would.
    """
    check_choice(method, METHODS, "method")
    check_choice(operator, OPERATORS, "operator")
    memory = device_memory_bytes() if memory_bytes is None else int(memory_bytes)
    block = teachers + 1
    need = {
        "eigh": eigh_bytes(width, itemsize, rank),
        "dense": krylov_bytes(width, dim, block, max_blocks, itemsize, "dense", shards),
        "tiled": krylov_bytes(width, dim, block, max_blocks, itemsize, "tiled", shards),
    }
    fits = {k: v <= memory for k, v in need.items()}

    def plan(m, op, reason):
        return MethodPlan(
            m, op, width, memory, need["eigh" if m == "eigh" else op], need["eigh"], need["dense"], need["tiled"], reason
        )

    def largest(route):
        if route == "eigh":
            return _largest_width(lambda m: eigh_bytes(m, itemsize, rank) <= memory)
        return _largest_width(lambda m: krylov_bytes(m, dim, block, max_blocks, itemsize, route, shards) <= memory)

    def too_big(route_name, bytes_needed):
        return (
            f"student width M_ST={width:,} needs {bytes_needed / GIB:.3g} GiB with {route_name} but "
            f"{memory / GIB:.3g} GiB is available per device; with this memory method='eigh' fits up to "
            f"M_ST={largest('eigh'):,}, method='krylov' with a stored Gram matrix up to M_ST={largest('dense'):,} "
            f"and matrix-free (operator='tiled') up to M_ST={largest('tiled'):,}"
        )

    if method == "eigh":
        if not fits["eigh"]:
            hint = " — use method='krylov'" if fits["tiled"] else ""
            raise ValueError(too_big("method='eigh'", need["eigh"]) + hint)
        return plan("eigh", None, "requested")
    factored = rank is not None and rank < width
    if method == "krylov" or (width >= krylov_min_width and not factored) or not fits["eigh"]:
        if operator == "auto":
            op = "dense" if fits["dense"] else "tiled"
        else:
            op = operator
        if not fits[op]:
            route = f"method='krylov' (operator='{op}')"
            hint = " — use operator='tiled'" if op == "dense" and fits["tiled"] else (
                ", or spread the tiles over more devices (mesh), or lower max_blocks"
            )
            raise ValueError(too_big(route, need[op]) + hint)
        if method == "krylov":
            reason = "requested"
        elif width >= krylov_min_width:
            reason = f"M_ST={width} ≥ {krylov_min_width}: Krylov quadrature costs O(M² d) per step instead of O(M³)"
        else:
            reason = "the dense eigendecomposition does not fit in memory"
        return plan("krylov", op, reason)
    if factored:
        return plan("eigh", None, f"G_S has rank ≤ {rank} (linear features): the thin SVD of its factor is cheap")
    return plan("eigh", None, f"M_ST={width} < {krylov_min_width} and the dense eigendecomposition fits")


@dataclasses.dataclass(frozen=True)
class Solution:
    """The result of ``solve``.

    Attributes:
      results: one W2SResult per teacher (``result`` for the first), as numpy arrays.
      plan: the MethodPlan that was followed.
      method: the route that produced the results (``"eigh"`` after a fallback).
      krylov: KrylovInfo when the Krylov route ran (also when it was abandoned for eigh), else None.
      fell_back: the Krylov route missed its tolerance and eigh was used instead.
      seconds: wall time.
    """

    results: tuple
    plan: MethodPlan
    method: str
    krylov: KrylovInfo | None
    fell_back: bool
    seconds: float

    @property
    def result(self) -> W2SResult:
        return self.results[0]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "plan": self.plan.to_dict(),
            "krylov": None if self.krylov is None else self.krylov.to_dict(),
            "fell_back": self.fell_back,
            "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
        }


def _unbatch(result: W2SResult, n: int) -> tuple:
    """One W2SResult per teacher, as numpy arrays (slicing on the host: one transfer per field)."""
    host = jax.tree_util.tree_map(to_host, result)
    return tuple(jax.tree_util.tree_map(lambda x, i=i: x[i], host) for i in range(n))


def _eigh_results(student, batch, target, inputs, times, rcond, mesh) -> tuple:
    from w2sjax.sweep import fit_teachers, score_teachers

    fits = fit_teachers(batch, target, inputs, rcond)
    spectrum = _student_spectrum(student, inputs, rcond=rcond)
    if mesh is not None:
        from w2sjax.sharding import sharded_score_teachers

        result = sharded_score_teachers(spectrum, student, batch, fits, target, inputs, times, mesh)
    else:
        result = score_teachers(spectrum, student, batch, fits, target, inputs, times)
    return _unbatch(result, batch.weights.shape[0])


_student_spectrum = jax.jit(student_spectrum, static_argnames=("rcond",))


def solve(
    student: RandomFeatures,
    teachers,
    target: Target,
    inputs: InputDistribution,
    times,
    *,
    method: str = "auto",
    operator: str = "auto",
    tol: float = DEFAULT_TOL,
    time_rtol: float | None = DEFAULT_TIME_RTOL,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    tile_rows: int | None = None,
    mesh=None,
    memory_bytes: int | None = None,
    rcond: float | None = None,
    krylov_min_width: int = KRYLOV_MIN_WIDTH,
    **krylov_options,
) -> Solution:
    """The weak-to-strong curves of one student against one or more teachers, by the route that fits.

    Args:
      student: student features (M_ST, d).
      teachers: one teacher (M_TE, d), or a sequence of teachers (any widths).
      target, inputs: f* and the input distribution (its dtype sets the precision).
      times: (T,) strictly increasing positive times.
      method: ``"auto"``, ``"eigh"`` or ``"krylov"``.
      operator: Krylov's G_S: ``"auto"`` (stored if it fits), ``"dense"`` or ``"tiled"`` (matrix-free).
      tol, time_rtol, max_blocks: the Krylov stopping rule (absolute on L_ST, relative on t*).
      tile_rows: rows per kernel tile (matrix-free).
      mesh: a ``sharding.device_mesh``: Krylov's matrix-free tiles over its "tiles" axis (operator "auto"
        becomes "tiled"), eigh's teacher batch over its "batch" axis.
      memory_bytes: memory per device to plan with (default: measured, see the module docstring).
      rcond: relative eigenvalue cutoff (default M ε).
      krylov_min_width: the auto threshold between eigh and krylov.
      **krylov_options: more ``krylov.krylov_curves`` options (check_every, initial_blocks, on_failure).

    Returns:
      Solution (``.result`` for the first teacher, ``.results`` for all).
    """
    clock = time.perf_counter()
    batch = teacher_batch(teachers)
    n = int(batch.weights.shape[0])
    host_weights = to_host(batch.weights)
    for i in range(n):
        check_problem(student, RandomFeatures(host_weights[i], batch.width, batch.activation), target, inputs)
    check_target_inputs(target, inputs)
    check_features_inputs(student, inputs, "student features")
    t = check_increasing_times(times)
    width, dim = int(student.weights.shape[0]), student.dim
    shards = 1 if mesh is None else int(mesh.shape["tiles"])
    if mesh is not None and operator == "auto":
        operator = "tiled"  # a mesh splits the kernel tiles; a stored Gram matrix would sit on one device
    dtype = inputs.variances.dtype
    itemsize = jnp.dtype(dtype).itemsize
    plan = plan_method(
        width,
        dim,
        method=method,
        operator=operator,
        teachers=n,
        max_blocks=max_blocks,
        itemsize=itemsize,
        memory_bytes=memory_bytes,
        shards=shards,
        krylov_min_width=krylov_min_width,
        rank=dim if uses_factor(student) else None,
    )
    student = RandomFeatures(student.weights.astype(dtype), jnp.asarray(student.width, dtype), student.activation)
    batch = RandomFeatures(batch.weights.astype(dtype), batch.width.astype(dtype), batch.activation)
    times_j = jnp.asarray(t, dtype)
    if plan.method == "eigh":
        results = _eigh_results(student, batch, target, inputs, times_j, rcond, mesh)
        return Solution(results, plan, "eigh", None, False, time.perf_counter() - clock)

    if mesh is not None and plan.operator == "tiled":
        from w2sjax.sharding import sharded_gram

        op = sharded_gram(student, inputs, mesh, tile_rows)
    elif plan.operator == "dense":
        op = dense_gram(student, inputs, tile_rows)
    else:
        op = tiled_gram(student, inputs, tile_rows)
    on_failure = krylov_options.pop("on_failure", "warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KrylovConvergenceWarning)
        sol = krylov_weak_to_strong(
            op,
            batch,
            target,
            inputs,
            times_j,
            rcond=rcond,
            tol=tol,
            time_rtol=time_rtol,
            max_blocks=max_blocks,
            on_failure=on_failure,
            **krylov_options,
        )
    for w in caught:
        if not issubclass(w.category, KrylovConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if sol.info.converged:
        return Solution(_unbatch(sol.result, n), plan, "krylov", sol.info, False, time.perf_counter() - clock)
    if method == "auto" and plan.eigh_bytes <= plan.memory_bytes:
        warnings.warn(
            f"the Krylov quadrature missed tol={tol:g} after {sol.info.blocks} blocks (last change "
            f"{sol.info.error_estimate:.3g}); falling back to method='eigh'",
            KrylovConvergenceWarning,
            stacklevel=2,
        )
        results = _eigh_results(student, batch, target, inputs, times_j, rcond, mesh)
        return Solution(results, plan, "eigh", sol.info, True, time.perf_counter() - clock)
    for w in caught:
        if issubclass(w.category, KrylovConvergenceWarning):
            warnings.warn(str(w.message), KrylovConvergenceWarning, stacklevel=2)
    return Solution(_unbatch(sol.result, n), plan, "krylov", sol.info, False, time.perf_counter() - clock)

