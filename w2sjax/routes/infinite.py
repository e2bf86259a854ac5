"""The infinitely wide student (M_ST = ∞): the spectral form of its population objective in closed form.

The student has fixed random bottom weights and trains its top layer by dw/dt = −(G w − b), G = E[φφᵀ],
b = E[φ y], φ = σ(Ux)/√M. Its function f = ⟨w, φ⟩ then follows df/dt = −T_M(f − y), with T_M the integral
operator (under the input law) of the kernel φ(x)ᵀφ(x') = (1/M) Σ_i σ(u_i·x) σ(u_i·x'); the non-zero
eigenvalues of T_M are those of G. As M → ∞, T_M → T, the operator of k(x, x') = E_u[σ(u·x) σ(u·x')], and the
student learns, on each eigenspace of T with eigenvalue λ, the fraction ρ = 1 − e^{−tλ} of the label function's
component there. Error: L(t) = Σ_spaces ‖ρ P_λ y − P_λ f*‖² + ‖f* − P f*‖² (P: projection on the span).

ReLU (rows uniform on S^{d−1}), x ~ N(0, c I) or uniform on the sphere of radius √d, μ₂ = E|x|² (cd or d):
  k(x, x') = |x||x'| J(x̂·x̂')/d = |x||x'| Σ_l N(d, l) h_l² P_l(x̂·x̂')            (``harmonics``)
  eigenfunctions |x| Y_lm(x̂), eigenvalue λ_l = μ₂ h_l² (0 for odd l ≥ 3): the radial factor |x| is common to
  every eigenfunction, since T[|x| Y](x) = |x| E|x'|² E_z[k̂ Y] (|x'| and x̂' are independent under both laws).
  A single-index unit σ(v·x) projects on degree l with the profile φ_l = E_{r,t}[σ(|v| r t) r P_l(t)] (r = |x|,
  t = v̂·x̂ ~ c_d (1 − t²)^{(d−3)/2}, independent): relu μ₂ h_l |v|; linear μ₂|v|/d at l = 1; Hermite h_k a
  polynomial in |v| with the radial moments E r^{i+1} (only l ≤ k, l ≡ k mod 2). A sum of units
  Σ_j a_j σ_j(v_j·x) has degree-l energy (N(d, l)/μ₂) Σ_jk a_j φ_lj a_k φ_lk P_l(v̂_j·v̂_k) (addition theorem),
  so per degree the label energy A_l = ‖P_l y‖², the overlap B_l = ⟨P_l y, P_l f*⟩ and the target energy
  C_l = ‖P_l f*‖² cost O(K²) with K units — no M_ST anywhere, O(M_TE² L) for a teacher and L degrees.
Linear (entries N(0, 1/d)), x ~ N(0, Σ) or the sphere: k(x, x') = x·x'/d; on f = c·x, T f = (Σc/d)·x, so the
  coefficients flow by dc/dt = −(Σ/d)(c − c_y), c_y = Σ⁻¹E[x y]: eigenvalues the eigenvalues of Σ over d,
  coordinates a = Σ^{1/2}c (whitened), E[x σ(v·x)] = Σv E[(v·x)σ(v·x)]/‖v‖²_Σ in O(d) per unit (never a d × d
  matrix for diagonal Σ). Directions of Σ with one variance form one space.
Anisotropic Gaussian inputs with ReLU features have no such closed form and are refused.

One component per space: with A, B, C the label energy, overlap and target energy of a space of eigenvalue λ,
  ‖ρ P y − P f*‖² = ρ²A − 2ρB + C = (ρ√A − B/√A)² + (C − B²/A)      (C − B²/A ≥ 0 by Cauchy–Schwarz)
so the space is one component (λ, label coefficient √A, target coefficient B/√A) and C − B²/A joins the
residual (A = 0: the whole C joins it); the residual also holds the ceiling L_ceil = ‖f* − P f*‖², computed as
E[f_p²] − ‖P f_p‖² over the target's non-ReLU part f_p only (the ReLU part lies in the span).

Truncation (ReLU): degrees 0, 1, 2, 4, …, L' − 2 are exact components; every degree ≥ L' is lumped into one tail
component with the totals A_t, B_t, C_t — known exactly as closed-form moments (E[y_r²] from the arc-cosine
kernel, …) minus the computed degrees (only ReLU units reach degrees ≥ L' > the largest Hermite degree) — and
eigenvalue λ_* = λ_{L'}, the largest eigenvalue past the cut (|h_l| decreases over even l ≥ 2). With
0 ≤ ρ_l ≤ ρ_* = 1 − e^{−tλ_*} on the tail, the error of the lumped curve is at most
  δ(t) = ρ_*² A_t + 2ρ_* √(A_t C_t)          (0 at t = ∞: L(∞) is exact, so L_ST(∞) = L_TE exactly),
and L' is the first even degree with δ(t_max) ≤ tol·s* for the a-priori totals (A_t ≤ E[y_r²], C_t ≤ E[f_r²]).

``infinite_decomposition(objective, cover_time, tol)`` → (Decomposition with basis None, Truncation). It plans
on the host (concrete values: the degrees to keep) and computes in jitted kernels.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax import harmonics
from w2sjax.features import InfiniteFeatures
from w2sjax.inputs import InputDistribution, components, pytree, static_field
from w2sjax.kernels import unit_moment
from w2sjax.objectives import Objective
from w2sjax.spectral import Decomposition, SpectralProblem
from w2sjax.targets import target_second_moment, target_units

DEFAULT_TOL = 1e-12
"""Truncation: the lumped tail moves every loss on the grid by at most DEFAULT_TOL · s*."""
MAX_DEGREE = 4096
"""Largest first tail degree L' the ReLU route will plan (small d and huge times need many degrees)."""
TILE_ROWS = 1024
"""Rows of a cosine matrix alive at once in the degree recurrence."""
ISOTROPY_RTOL = 1e-12


@pytree
@dataclasses.dataclass(frozen=True)
class Truncation:
    """What the infinite route kept, and what it needs to bound its error.

    Attributes:
      ceiling: (n,) L_ceil = ‖f* − P f*‖² (the same for every label set).
      tail_eigenvalue: () λ_* (0: no tail, the route is exact).
      tail_label_energy: (n,) A_t.
      tail_target_energy: (n,) C_t.
      degrees: static, the label of each component (ints for degrees, "tail", or "Σ=s" for linear spaces).
      first_tail_degree: static, L' (0 for linear features).
    """

    ceiling: jax.Array
    tail_eigenvalue: jax.Array
    tail_label_energy: jax.Array
    tail_target_energy: jax.Array
    degrees: tuple = static_field(default=())
    first_tail_degree: int = static_field(default=0)


def truncation_bound(truncation: Truncation, time) -> jax.Array:
    """δ(t) = ρ_*² A_t + 2ρ_*√(A_t C_t), ρ_* = 1 − e^{−tλ_*}: the largest error of the lumped tail at time t
    (t = ∞: 0). Shape (n,)."""
    lam = truncation.tail_eigenvalue
    infinite = jnp.isinf(time)
    rho = jnp.where(infinite, 0.0, -jnp.expm1(-jnp.where(infinite, 0.0, time) * lam))
    a, c = truncation.tail_label_energy, truncation.tail_target_energy
    return rho * rho * a + 2 * rho * jnp.sqrt(a * c)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def single_law(objective: Objective) -> InputDistribution:
    """The one input law of a population objective the infinite route accepts (ValueError otherwise)."""
    if not isinstance(objective.features, InfiniteFeatures):
        raise ValueError("the infinite route needs an infinitely wide student (InfiniteFeatures, width 'inf')")
    if not objective.population:
        raise ValueError("an infinitely wide student is solved for population training scored on the same law "
                         "only; drop samples, held-out points and the evaluation law")
    if objective.labels is None:
        raise ValueError("the infinite route needs label functions (e.g. the teachers' functions)")
    parts = components(objective.train.inputs)
    if len(parts) != 1:
        raise ValueError("an infinitely wide student needs one input law, not a mixture; use a finite student")
    law = parts[0][1]
    if law.dim != objective.features.dim:
        raise ValueError(f"the student has input dimension {objective.features.dim} but the inputs have "
                         f"dimension {law.dim}")
    return law


def isotropic_variance(law: InputDistribution) -> float | None:
    """c where the law is N(0, c I); None for the sphere; ValueError for an anisotropic Gaussian."""
    if law.kind == "sphere":
        return None
    cov = np.asarray(law.covariance, np.float64)
    diag = cov if cov.ndim == 1 else np.diagonal(cov)
    c = float(np.mean(diag))
    off = 0.0 if cov.ndim == 1 else float(np.max(np.abs(cov - np.diag(diag))))
    if not (np.max(np.abs(diag - c)) <= ISOTROPY_RTOL * c and off <= ISOTROPY_RTOL * c):
        raise ValueError("ReLU features on anisotropic Gaussian inputs have no closed-form infinite-width limit; "
                         "use Σ = c·I or the sphere, or a finite student (e.g. width 4096, method='krylov')")
    return c


# --------------------------------------------------------------------------------------------------
# The route
# --------------------------------------------------------------------------------------------------


def infinite_decomposition(objective: Objective, cover_time: float = 1.0, tol: float = DEFAULT_TOL):
    """(Decomposition (basis None), Truncation) of a population objective with an infinitely wide student.

    Args:
      cover_time: the largest time at which the truncation error must stay below ``tol`` · s* (ReLU).
      tol: relative truncation tolerance.
    """
    law = single_law(objective)
    if objective.features.activation == "linear":
        return _linear_route(objective, law)
    return _relu_route(objective, law, float(cover_time), float(tol))


# --------------------------------------------------------------------------------------------------
# Linear features
# --------------------------------------------------------------------------------------------------


def _linear_moment(target, law) -> jax.Array:
    """u with E[x f(x)] = Σ u: Σ_j a_j v_j m_j/‖v_j‖²_Σ, m_j = E[(v_j·x) σ_j(v_j·x)], in O(K d)."""
    total = jnp.zeros((law.dim,), law.dtype)
    for kind, degree, directions, coef in target_units(target):
        pair = lambda v: unit_moment("linear", 1, v[None], kind, degree, v[None], law)[0, 0]
        moments = jax.vmap(pair)(directions)
        norms = jax.vmap(lambda v: unit_moment("linear", 1, v[None], "linear", 1, v[None], law)[0, 0])(directions)
        ok = norms > 0
        ratio = jnp.where(ok, moments / jnp.where(ok, norms, 1), 0)
        total = total + (coef * ratio) @ directions
    return total


@partial(jax.jit, static_argnames=("groups",))
def _linear_problem(labels, target, law, basis, variances, group_ids, eigenvalues, groups: int):
    """(SpectralProblem, ceiling (n,)) from the whitened linear coefficients a = √s ∘ (Qᵀu), one component per
    space of equal variance (``group_ids``)."""
    root = jnp.sqrt(variances)

    def whiten(u):
        return root * (u if basis is None else basis.T @ u)

    label_coef = jnp.concatenate([jax.vmap(lambda t: whiten(_linear_moment(t, law)))(b) for b in labels])
    target_coef = whiten(_linear_moment(target, law))
    seg = lambda v: jax.ops.segment_sum(v, group_ids, num_segments=groups)
    a = jax.vmap(lambda x: seg(x * x))(label_coef)
    b = jax.vmap(lambda x: seg(x * target_coef))(label_coef)
    c = seg(target_coef * target_coef)
    ceiling = jnp.maximum(target_second_moment(target, law) - jnp.sum(c), 0)
    return _grouped_problem(eigenvalues, a, b, c, ceiling)


def _linear_route(objective: Objective, law: InputDistribution):
    d = law.dim
    if law.kind == "sphere":
        variances, basis = np.ones(d), None
    elif law.is_diagonal:
        variances, basis = np.asarray(law.covariance, np.float64), None
    else:
        variances, basis = np.linalg.eigh(np.asarray(law.covariance, np.float64))
    values, group_ids = np.unique(variances, return_inverse=True)
    dtype = law.dtype
    problem, ceiling = _linear_problem(
        objective.labels, objective.target, law, None if basis is None else jnp.asarray(basis, dtype),
        jnp.asarray(variances, dtype), jnp.asarray(group_ids.reshape(-1), jnp.int32),
        jnp.asarray(values / d, dtype), int(values.size))
    zeros = jnp.zeros(ceiling.shape, dtype)
    labels = tuple(f"variance {v:.6g}" for v in values)
    return Decomposition(problem, None), Truncation(ceiling, jnp.zeros((), dtype), zeros, zeros, labels, 0)


def _grouped_problem(eigenvalues, a, b, c, ceiling):
    """One component per space from its energies A (n, r), overlaps B (n, r), target energies C (r,)."""
    c = jnp.broadcast_to(c, a.shape)
    kept = a > 0
    safe_a = jnp.where(kept, a, 1)
    root = jnp.sqrt(safe_a)
    b = jnp.clip(b, -jnp.sqrt(a * c), jnp.sqrt(a * c))
    label_coef = jnp.where(kept, root, 0)
    target_coef = jnp.where(kept, b / root, 0)
    leftover = jnp.where(kept, jnp.maximum(c - b * b / safe_a, 0), c)
    n = a.shape[0]
    ceiling = jnp.broadcast_to(ceiling, (n,))
    residual = ceiling + jnp.sum(leftover, axis=-1)
    return SpectralProblem(eigenvalues, label_coef, target_coef, residual), ceiling


# --------------------------------------------------------------------------------------------------
# ReLU features
# --------------------------------------------------------------------------------------------------


def _max_polynomial_degree(*targets) -> int:
    top = 0
    for target in targets:
        for kind, degree, _, _ in target_units(target):
            if kind == "hermite":
                top = max(top, int(degree))
            elif kind == "linear":
                top = max(top, 1)
    return top


def _profile_tables(d: int, degrees: int, variance, top_hermite: int) -> dict:
    """√(N(d, l)/μ₂) × the profile of each unit kind, for l < ``degrees`` (host, float64):
    relu (L,): ·|v|; linear (L,): ·|v|; hermite k (L, k + 1): polynomial coefficients in |v|."""
    law_kind = "sphere" if variance is None else "gaussian"
    var = 1.0 if variance is None else variance
    mu2 = harmonics.radial_moment(d, 2, law_kind, var)
    l = np.arange(degrees)
    log_root = 0.5 * (harmonics.log_harmonic_dimension(d, l) - math.log(mu2))
    relu = harmonics.relu_coefficient(d, l)
    tables = {
        "relu": np.where(relu != 0, np.exp(log_root) * mu2 * relu, 0.0),
        "linear": np.where(l == 1, np.exp(log_root) * mu2 / d, 0.0),
    }
    for k in range(top_hermite + 1):
        a = harmonics.hermite_power_coefficients(k)
        table = np.zeros((degrees, k + 1))
        for li in range(min(k, degrees - 1) + 1):
            for i in range(li, k + 1, 2):
                moment = harmonics.power_moment(d, i, li)
                if moment and a[i]:
                    table[li, i] = math.exp(log_root[li]) * a[i] * harmonics.radial_moment(d, i + 1, law_kind, var) * moment
        tables[f"hermite{k}"] = table
    return tables


def _unit_weights(target, tables: dict, dtype):
    """(unit directions (K, d), weights (L, K, 3) for the variants (all units, ReLU units, other units)).
    Weight of unit j at degree l: a_j √(N/μ₂) φ_l(|v_j|)."""
    dirs, weights = [], []
    for kind, degree, directions, coef in target_units(target):
        norms = jnp.linalg.norm(directions, axis=-1)
        if kind == "hermite":
            table = jnp.asarray(tables[f"hermite{degree}"], dtype)
            powers = norms[None, :] ** jnp.arange(table.shape[1], dtype=dtype)[:, None]   # (k + 1, K)
            profile = table @ powers
        else:
            profile = jnp.asarray(tables[kind], dtype)[:, None] * norms[None, :]
        w = profile * coef[None, :]
        relu = kind == "relu"
        weights.append(jnp.stack([w, w if relu else jnp.zeros_like(w), jnp.zeros_like(w) if relu else w], axis=-1))
        ok = norms > 0
        dirs.append(jnp.where(ok[:, None], directions / jnp.where(ok, norms, 1)[:, None], 0))
    return jnp.concatenate(dirs), jnp.concatenate(weights, axis=1)


def _recurrence_coefficients(d: int, degrees: int):
    """(α_l, β_l) with P_{l+1} = α_l t P_l − β_l P_{l−1}, l = 0 … degrees − 1."""
    l = np.arange(degrees, dtype=np.float64)
    alpha = np.where(l == 0, 1.0, (2 * l + d - 2) / np.maximum(l + d - 2, 1))
    beta = np.where(l == 0, 0.0, l / np.maximum(l + d - 2, 1))
    return alpha, beta


def degree_forms(left: jax.Array, right: jax.Array, left_weights: jax.Array, right_weights: jax.Array,
                 alpha: jax.Array, beta: jax.Array, tile_rows: int = TILE_ROWS) -> jax.Array:
    """F_l = W_lᵀ P_l(Û V̂ᵀ) W'_l for every degree l: unit directions (K1, d), (K2, d); weights (L, K1, p),
    (L, K2, q) → (L, p, q). The Gegenbauer recurrence runs on row tiles of the cosine matrix (memory O(tile·K2))."""
    k1 = left.shape[0]
    tile = int(min(tile_rows, k1))
    tiles = -(-k1 // tile)
    pad = tiles * tile - k1
    left = jnp.pad(left, ((0, pad), (0, 0))).reshape(tiles, tile, -1)
    lw = jnp.pad(left_weights, ((0, 0), (0, pad), (0, 0)))
    lw = jnp.moveaxis(lw.reshape(lw.shape[0], tiles, tile, -1), 1, 0)

    def one_tile(args):
        rows, w_rows = args
        cos = jnp.clip(rows @ right.T, -1.0, 1.0)

        def step(carry, xs):
            previous, current = carry
            wl, wr, a, b = xs
            form = wl.T @ (current @ wr)
            return (current, a * cos * current - b * previous), form

        init = (jnp.zeros_like(cos), jnp.ones_like(cos))
        _, forms = jax.lax.scan(step, init, (w_rows, right_weights, alpha, beta))
        return forms

    return jnp.sum(jax.lax.map(one_tile, (left, lw)), axis=0)


def _relu_part_moments(p, q, law, relu_p: bool, relu_q: bool):
    """E[p_s q_s'] where p_s is p's ReLU part (relu_p) or non-ReLU part, and likewise for q."""
    total = jnp.zeros((), law.dtype)
    for ka, da, A, ca in target_units(p):
        if (ka == "relu") != relu_p:
            continue
        for kb, db, B, cb in target_units(q):
            if (kb == "relu") != relu_q:
                continue
            total = total + ca @ unit_moment(ka, da, A, kb, db, B, law) @ cb
    return total


def _relu_label_energies(batch, target, law, tables, alpha, beta, tile_rows):
    """Per label set of ``batch``: forms A (L, 2, 2) [all, ReLU] and B (L, 2, 3), and E[y_r f_r]."""
    dtype = law.dtype
    t_dirs, t_weights = _unit_weights(target, tables, dtype)

    def one(label):
        dirs, weights = _unit_weights(label, tables, dtype)
        weights = weights[..., :2]
        aa = degree_forms(dirs, dirs, weights, weights, alpha, beta, tile_rows)
        ab = degree_forms(dirs, t_dirs, weights, t_weights, alpha, beta, tile_rows)
        return aa, ab, _relu_part_moments(label, target, law, True, True)

    return jax.lax.map(one, batch)


@jax.jit
def _relu_totals(batches, target, law):
    """(E[y_r²] per label set (n,), s* = E[f*²], E[f_r²], E[f_p²]): ReLU parts y_r, f_r; f_p = f* − f_r."""
    yy = jnp.concatenate([jax.lax.map(lambda label: _relu_part_moments(label, label, law, True, True), b)
                          for b in batches])
    return (yy, target_second_moment(target, law), _relu_part_moments(target, target, law, True, True),
            _relu_part_moments(target, target, law, False, False))


@partial(jax.jit, static_argnames=("kept", "tile_rows"))
def _relu_problem(batches, target, law, tables, alpha, beta, eigenvalues, yy, ff, pp, kept, tile_rows):
    """(SpectralProblem, ceiling (n,), A_t (n,), C_t (n,)) from the degree forms of labels and target."""
    aa, ab, yf = (jnp.concatenate(x) for x in zip(*[
        _relu_label_energies(b, target, law, tables, alpha, beta, tile_rows) for b in batches]))
    dirs, weights = _unit_weights(target, tables, law.dtype)
    cc = degree_forms(dirs, dirs, weights, weights, alpha, beta, tile_rows)
    idx = jnp.asarray(kept)
    a_tail = jnp.maximum(yy - jnp.sum(aa[:, :, 1, 1], axis=-1), 0)
    c_tail = jnp.maximum(ff - jnp.sum(cc[:, 1, 1]), 0)
    b_tail = yf - jnp.sum(ab[:, :, 1, 1], axis=-1)
    a = jnp.concatenate([jnp.maximum(aa[:, idx, 0, 0], 0), a_tail[:, None]], axis=1)
    b = jnp.concatenate([ab[:, idx, 0, 0], b_tail[:, None]], axis=1)
    c = jnp.concatenate([jnp.maximum(cc[idx, 0, 0], 0), c_tail[None]])
    ceiling = jnp.maximum(pp - jnp.sum(cc[idx, 2, 2]), 0)
    problem, ceiling = _grouped_problem(eigenvalues, a, b, c, ceiling)
    return problem, ceiling, a_tail, jnp.broadcast_to(c_tail, a_tail.shape)


def _relu_degree_plan(d: int, mu2: float, first: int, cover_time: float, budget: float, label_energy: float,
                      target_energy: float) -> int:
    """The first even tail degree L' ≥ first with δ(cover_time) ≤ budget for A_t ≤ label_energy, C_t ≤ target_energy."""
    if label_energy <= 0:
        return first
    root = math.sqrt(label_energy * target_energy)
    rho = budget / (root + math.sqrt(root * root + label_energy * budget))   # solves ρ²A + 2ρ√(AC) = budget
    allowed = -math.log1p(-min(rho, 0.5)) / cover_time
    log_allowed = math.log(allowed) - math.log(mu2)
    degree = first
    while degree < MAX_DEGREE and 2 * harmonics.log_relu_coefficient(d, degree) > log_allowed:
        degree += 2
    return degree


def _relu_route(objective: Objective, law: InputDistribution, cover_time: float, tol: float):
    d = harmonics.check_sphere_dim(law.dim)
    variance = isotropic_variance(law)
    dtype = law.dtype
    target, batches = objective.target, objective.labels

    top = _max_polynomial_degree(target, *batches)
    first = max(2, top + 1 + (top + 1) % 2)  # even, above every polynomial degree
    # a-priori tail totals: the ReLU parts' energies (everything past degree `first` belongs to them)
    yy, energy, ff, pp = _relu_totals(batches, target, law)
    energy, label_relu, target_relu = float(energy), [float(np.max(np.asarray(yy)))], float(ff)
    scale = energy if energy > 0 else max(label_relu + [1.0])
    law_kind = "sphere" if variance is None else "gaussian"
    mu2 = harmonics.radial_moment(d, 2, law_kind, 1.0 if variance is None else variance)
    tail_degree = _relu_degree_plan(d, mu2, first, cover_time, tol * scale, max(label_relu + [0.0]), target_relu)

    tables = {k: jnp.asarray(v, dtype) for k, v in _profile_tables(d, tail_degree, variance, top).items()}
    alpha, beta = (jnp.asarray(x, dtype) for x in _recurrence_coefficients(d, tail_degree))
    kept = (0, 1) + tuple(range(2, tail_degree, 2))
    lam_kept = mu2 * np.exp(2 * harmonics.log_relu_coefficient(d, np.asarray(kept)))
    lam_tail = max(mu2 * math.exp(2 * float(harmonics.log_relu_coefficient(d, tail_degree))), np.finfo(np.float64).tiny)
    eigenvalues = jnp.asarray(np.append(lam_kept, lam_tail), dtype)
    problem, ceiling, a_tail, c_tail = _relu_problem(batches, target, law, tables, alpha, beta, eigenvalues, yy, ff,
                                                     pp, kept, TILE_ROWS)
    truncation = Truncation(ceiling, jnp.asarray(lam_tail, dtype), a_tail, c_tail, kept + ("tail",), tail_degree)
    return Decomposition(problem, None), truncation
