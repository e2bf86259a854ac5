"""The dense routes and the curve engine against independent computations (RK4, numpy, brute force) and
invariants; the best time beyond the grid; bad input to the building blocks."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.objectives import Law, Objective
from w2sjax.routes.dense import eigh_decomposition, factor_decomposition
from w2sjax.w2s import as_batch, fit_teachers, one_label, weights_at

D = 6


def small_problem(m_student=48, m_teacher=7, activation="relu", variances=None, seed=0):
    inputs = w.gaussian_inputs(D, variances)
    k1, k2 = jax.random.split(jax.random.key(seed))
    student = w.random_features(w.sample_weights(k1, m_student, D, activation), activation)
    teacher = w.random_features(w.sample_weights(k2, m_teacher, D, activation), activation)
    target = w.linear_target(np.linspace(1.0, -0.5, D) / 1.3)
    return student, teacher, target, inputs


def population_matrices(student, teacher, target, inputs):
    """G_S, b = G_ST w_T, c_S, s*, L_TE from the moments, in numpy (independent of the spectral route)."""
    G = np.asarray(w.feature_gram(student, student, inputs))
    G_st = np.asarray(w.feature_gram(student, teacher, inputs))
    G_t = np.asarray(w.feature_gram(teacher, teacher, inputs))
    c_t = np.asarray(w.feature_target_moment(teacher, target, inputs))
    w_t = np.linalg.lstsq(G_t, c_t, rcond=None)[0]
    c = np.asarray(w.feature_target_moment(student, target, inputs))
    s_star = float(w.target_second_moment(target, inputs))
    return G, G_st @ w_t, c, s_star, s_star - c_t @ w_t


def direct_loss(G, c, s_star, weights):
    """L(w) = wᵀGw − 2wᵀc + s* for weights (..., M)."""
    return np.einsum("...i,ij,...j->...", weights, G, weights) - 2 * weights @ c + s_star


def rk4_flow_losses(G, b, c, s_star, t_end, steps, record_every):
    """Integrate dw/dt = −(Gw − b) from 0 by classical RK4 in JAX; losses at every `record_every` step."""
    h = t_end / steps
    ws = _rk4_path(jnp.asarray(G), jnp.asarray(b), jnp.asarray(h), steps // record_every, record_every)
    times = h * record_every * np.arange(1, steps // record_every + 1)
    return times, direct_loss(G, c, s_star, np.asarray(ws))


@partial(jax.jit, static_argnums=(3, 4))
def _rk4_path(G, b, h, records, record_every):
    """RK4 states after every ``record_every`` steps of size h, ``records`` of them: (records, M)."""
    f = lambda v: -(G @ v - b)

    def step(v, _):
        k1 = f(v)
        k2 = f(v + h / 2 * k1)
        k3 = f(v + h / 2 * k2)
        k4 = f(v + h * k3)
        return v + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    def block(v, _):
        v, _ = jax.lax.scan(step, v, None, length=record_every)
        return v, v

    return jax.lax.scan(block, jnp.zeros_like(b), None, length=records)[1]


def true_label_decomposition(student, target, inputs):
    return eigh_decomposition(Objective(student, (one_label(target),), target, Law(inputs)))


@pytest.mark.parametrize("activation,variances", [("relu", None), ("relu", [0.5, 2, 1, 1.5, 0.8, 1]), ("linear", None)])
def test_closed_form_matches_rk4_integration(activation, variances):
    student, teacher, target, inputs = small_problem(activation=activation, variances=variances)
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    times, rk4 = rk4_flow_losses(G, b, c, s_star, t_end=400.0, steps=40_000, record_every=400)
    result = w.weak_to_strong(student, teacher, target, inputs, times, method="eigh")
    np.testing.assert_allclose(np.asarray(result.student_loss), rk4, rtol=0, atol=1e-8)
    assert np.ptp(rk4) > 1e-2  # the curve is not flat: the comparison sees the dynamics


def test_invariants_at_zero_and_infinity():
    student, teacher, target, inputs = small_problem()
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-2, 3, 50))
    problem = result.problem
    s_star = float(w.target_second_moment(target, inputs))
    assert float(w.student_loss(problem, jnp.zeros(1))[0]) == pytest.approx(s_star, abs=1e-12)
    late = np.asarray(w.student_loss(problem, jnp.asarray([1e8, 1e10, 1e12])))
    np.testing.assert_allclose(late, float(result.student_loss_at_infinity), atol=1e-10)
    G, b, c, s_star, teacher_loss = population_matrices(student, teacher, target, inputs)
    w_inf = np.linalg.lstsq(G, b, rcond=1e-12)[0]
    assert float(result.student_loss_at_infinity) == pytest.approx(direct_loss(G, c, s_star, w_inf), abs=1e-9)
    assert float(result.teacher_loss) == pytest.approx(teacher_loss, abs=1e-10)


def test_student_with_teacher_features_ends_at_teacher_loss():
    _, teacher, target, inputs = small_problem(m_teacher=12)
    with pytest.warns(w.NarrowStudentWarning, match="not wider than its teacher"):
        result = w.weak_to_strong(teacher, teacher, target, inputs, np.logspace(-1, 4, 30))
    assert float(result.student_loss_at_infinity) == pytest.approx(float(result.teacher_loss), abs=1e-10)
    assert float(result.best_student_loss) == pytest.approx(float(result.teacher_loss), abs=1e-8)
    assert np.isinf(float(result.best_time)) and int(result.best_time_location) == 2
    # Its ceiling is the teacher's own error: PGR is undefined (NaN), and said so in the record.
    assert float(result.ceiling_loss) == pytest.approx(float(result.teacher_loss), abs=1e-10)
    assert np.isnan(float(result.pgr))
    assert "pgr_note" in result.to_dict()


def test_true_labels_are_monotone_and_reach_the_ceiling():
    student, _, target, inputs = small_problem()
    problem = true_label_decomposition(student, target, inputs).problem
    one = w.SpectralProblem(problem.eigenvalues, problem.label_coef[0], problem.target_coef[0], problem.residual[0])
    times = jnp.logspace(-2, 8, 400)
    losses = np.asarray(w.student_loss(one, times))
    assert np.all(np.diff(losses) <= 1e-14)
    residual = float(one.residual)
    assert losses[-1] == pytest.approx(residual, abs=1e-10)
    t_best, l_best, where = w.best_time(one, times)
    assert np.isinf(float(t_best)) and float(l_best) == pytest.approx(residual, abs=1e-12) and int(where) == 2
    G = np.asarray(w.feature_gram(student, student, inputs))
    c = np.asarray(w.feature_target_moment(student, target, inputs))
    w_ls = np.linalg.lstsq(G, c, rcond=1e-12)[0]
    s_star = float(w.target_second_moment(target, inputs))
    assert residual == pytest.approx(direct_loss(G, c, s_star, w_ls), abs=1e-10)


def test_gaussian_and_sphere_inputs_agree():
    student, teacher, target, _ = small_problem()
    times = np.logspace(-1, 4, 40)
    gauss = w.weak_to_strong(student, teacher, target, w.gaussian_inputs(D), times)
    sphere = w.weak_to_strong(student, teacher, target, w.sphere_inputs(D), times)
    np.testing.assert_allclose(np.asarray(gauss.student_loss), np.asarray(sphere.student_loss), atol=1e-13)
    with pytest.raises(ValueError, match="sphere"):
        w.weak_to_strong(student, teacher, w.hermite_target(np.eye(D)[0], 2), w.sphere_inputs(D), times)


def brute_force_best_time(G, b, c, s_star, t_lo, t_hi, levels=5, points=4001):
    """Nested dense grids in log t, each spanning ±2 cells of the previous one; numpy eigh of G."""
    lam, Q = np.linalg.eigh(G)
    keep = lam > lam.max() * G.shape[0] * np.finfo(float).eps
    lam, Q = lam[keep], Q[:, keep]
    bt, ct = Q.T @ b, Q.T @ c

    def losses(ts):
        g = -np.expm1(-np.outer(ts, lam)) / lam
        return (g * g * lam) @ (bt * bt) - 2 * g @ (bt * ct) + s_star

    lo, hi = np.log(t_lo), np.log(t_hi)
    for _ in range(levels):
        grid = np.linspace(lo, hi, points)
        k = int(np.argmin(losses(np.exp(grid))))
        cell = grid[1] - grid[0]
        lo, hi = grid[k] - 2 * cell, grid[k] + 2 * cell
    return float(np.exp(grid[k])), float(losses(np.exp(grid[k:k + 1]))[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_best_time_matches_brute_force_search(seed):
    student, teacher, target, inputs = small_problem(m_student=80, m_teacher=5, seed=seed)
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 5, 25))
    t_star = float(result.best_time)
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    t_brute, l_brute = brute_force_best_time(G, b, c, s_star, 1e-2, 1e7)
    assert np.isfinite(t_star) and int(result.best_time_location) == 0
    assert abs(t_star / t_brute - 1) <= 1e-6
    assert float(result.best_student_loss) <= l_brute + 1e-13
    grid_best = float(result.times[np.argmin(result.student_loss)])
    assert abs(grid_best / t_brute - 1) > 1e-3  # refinement goes past the coarse grid
    # the error estimate of t* is honest: far below the actual precision needed here
    assert float(result.error.best_time) < 1e-5


@pytest.mark.parametrize("grid", [(1e-3, None, 20), (None, 6, 20), (-12, -10, 15), (12, 14, 15)],
                         ids=["below", "above", "far-below", "far-above"])
def test_best_time_outside_the_grid_is_found_beyond_it(grid):
    """A grid that misses t* (even by many decades, far past e^20) still gives the true t*, marked as found
    beyond the grid."""
    student, teacher, target, inputs = small_problem(m_student=80, m_teacher=5)
    full = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 5, 61))
    t_star = float(full.best_time)
    lo, hi, n = grid
    if lo == 1e-3:  # the grid ends half a decade below t*
        lo, hi = -3, np.log10(t_star) - 0.5
    elif lo is None:  # the grid starts half a decade above t*
        lo = np.log10(t_star) + 0.5
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(lo, hi, n))
    assert float(result.best_time) == pytest.approx(t_star, rel=1e-9)
    assert float(result.best_student_loss) == pytest.approx(float(full.best_student_loss), abs=1e-13)
    assert int(result.best_time_location) == (1 if hi < np.log10(t_star) else -1)
    assert result.to_dict()["best_time_location"] in ("above the grid", "below the grid")


def test_labels_that_only_hurt_give_best_time_zero():
    """Labels anti-correlated with f*: the error rises from t = 0, so t* = 0 and L* = s*."""
    student, _, target, inputs = small_problem()
    flipped = w.linear_target(-np.asarray(target.beta))
    decomposition = eigh_decomposition(Objective(student, (one_label(flipped),), target, Law(inputs)))
    p = decomposition.problem
    one = w.SpectralProblem(p.eigenvalues, p.label_coef[0], p.target_coef[0], p.residual[0])
    t, loss, where = w.best_time(one, jnp.logspace(-2, 4, 30))
    assert float(t) == 0.0 and int(where) == -2
    assert float(loss) == pytest.approx(float(w.target_second_moment(target, inputs)), abs=1e-12)


def test_rank_deficient_linear_features_use_the_factor_route():
    d = 10
    inputs = w.gaussian_inputs(d, np.linspace(0.5, 2.0, d))
    student = w.random_features(w.sample_weights(jax.random.key(3), 200, d, "linear"), "linear")
    teacher = w.random_features(w.sample_weights(jax.random.key(4), 4, d, "linear"), "linear")
    target = w.linear_target(np.eye(d)[0])
    times = np.logspace(-2, 4, 60)
    result = w.weak_to_strong(student, teacher, target, inputs, times)
    assert result.route.method == "factor"  # auto decomposes the d × d side
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    assert np.linalg.matrix_rank(G) == d
    lam, Q = np.linalg.eigh(G)  # independent: numpy's eigh of the full (rank-d) 200 × 200 matrix
    g = np.where(lam > 1e-10, -np.expm1(-np.outer(times, lam)) / np.where(lam > 1e-10, lam, 1), 0)
    ws = (g * (Q.T @ b)) @ Q.T
    np.testing.assert_allclose(np.asarray(result.student_loss), direct_loss(G, c, s_star, ws), atol=1e-10)
    dense = w.weak_to_strong(student, teacher, target, inputs, times, method="eigh")
    np.testing.assert_allclose(np.asarray(result.student_loss), np.asarray(dense.student_loss), atol=1e-11)
    assert float(result.ceiling_loss) == pytest.approx(0.0, abs=1e-12)  # every linear function is in the span
    # the factor route's basis maps back to the flow's weights
    objective = Objective(student, (one_label(target),), target, Law(inputs))
    weights = np.asarray(weights_at(factor_decomposition(objective), 3.0))[0]
    expected = np.asarray(jax.scipy.linalg.expm(-3.0 * jnp.asarray(G)))
    np.testing.assert_allclose(G @ weights, c - expected @ c, atol=1e-10)


def test_duplicated_features_are_finite_and_match_integration():
    student, teacher, target, inputs = small_problem(m_student=30)
    U = np.asarray(student.weights)
    dup = w.random_features(np.concatenate([U, U[:10], U[:5]]), "relu")
    G, b, c, s_star, _ = population_matrices(dup, teacher, target, inputs)
    assert np.linalg.matrix_rank(G) == 30
    times, rk4 = rk4_flow_losses(G, b, c, s_star, t_end=300.0, steps=30_000, record_every=500)
    result = w.weak_to_strong(dup, teacher, target, inputs, times)
    np.testing.assert_allclose(np.asarray(result.student_loss), rk4, atol=1e-8)
    plain = w.weak_to_strong(student, teacher, target, inputs, times)
    assert float(result.student_loss_at_infinity) == pytest.approx(float(plain.student_loss_at_infinity), abs=1e-9)


def test_discrete_gd_response_equals_direct_weights():
    student, teacher, target, inputs = small_problem()
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 3, 5))
    eta, k = 0.5, 37
    v = np.zeros_like(b)
    for _ in range(k):
        v = v - eta * (G @ v - b)
    assert float(w.gd_loss(result.problem, eta, [k])[0]) == pytest.approx(direct_loss(G, c, s_star, v), abs=1e-12)


def test_flow_weights_match_the_matrix_exponential():
    student, teacher, target, inputs = small_problem()
    fit = fit_teachers(as_batch(teacher), target, Law(inputs))
    labels = w.model_function(teacher, fit.weights[0])
    decomposition = eigh_decomposition(Objective(student, (one_label(labels),), target, Law(inputs)))
    G = np.asarray(w.feature_gram(student, student, inputs))
    b = np.asarray(w.feature_target_moment(student, labels, inputs))
    expected = np.asarray(jax.scipy.linalg.expm(-5.0 * jnp.asarray(G)))  # w(t) = G⁺(I − e^{−tG}) b on span G
    w_t = np.asarray(weights_at(decomposition, 5.0))[0]
    np.testing.assert_allclose(G @ w_t, b - expected @ b, atol=1e-12)


def test_ridge_is_exact_against_a_linear_solve():
    student, teacher, target, inputs = small_problem()
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 3, 5))
    mus = np.array([1e-4, 1e-2, 0.3])
    direct = [direct_loss(G, c, s_star, np.linalg.solve(G + mu * np.eye(len(b)), b)) for mu in mus]
    np.testing.assert_allclose(np.asarray(w.ridge_loss(result.problem, mus)), direct, atol=1e-9)
    mu, loss, _ = w.best_strength(result.problem, np.logspace(-6, 1, 40))
    assert float(loss) <= min(direct) + 1e-12 and float(mu) > 0


@pytest.mark.parametrize("times,message", [
    ([1.0, np.nan], "non-finite"), ([-1.0, 2.0], "> 0"), ([2.0, 1.0], "increasing"), ([[1.0, 2.0]], "1-D"),
    ([], "non-empty"), ([1 + 1j, 2.0], "real"),
])
def test_building_blocks_refuse_bad_times(times, message):
    student, teacher, target, inputs = small_problem()
    problem = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 3, 5)).problem
    with pytest.raises(ValueError, match=message):
        w.best_time(problem, times)
    with pytest.raises(ValueError, match=message):
        w.weak_to_strong(student, teacher, target, inputs, times)
    if message in ("non-finite", "1-D", "non-empty", "real"):
        with pytest.raises(ValueError, match=message):
            w.student_loss(problem, times)


@pytest.mark.parametrize("weight_scale,variance_scale,target_scale", [
    (1e-140, 1.0, 1.0), (1e150, 1.0, 1.0), (1.0, 1e-120, 1.0), (1.0, 1e100, 1.0), (1.0, 1.0, 1e-150),
    (1.0, 1.0, 1e140), (1e-100, 1e80, 1e-100),
])
def test_scales_near_the_limits_of_float64_give_the_unit_scale_answer(weight_scale, variance_scale, target_scale):
    """The problem is scale-covariant: U → aU, Σ → vΣ, f* → s f* give L → s² L and t → t/(a² v). The engine
    normalises internally (exactly, by powers of two), so extreme scales give the same digits."""
    student, teacher, target, _ = small_problem()
    variances = np.linspace(0.5, 1.5, D)
    times = np.logspace(-1, 4, 30)
    base = w.weak_to_strong(student, teacher, target, w.gaussian_inputs(D, variances), times)
    a, v, s = weight_scale, variance_scale, target_scale
    scaled_student = w.random_features(np.asarray(student.weights) * a)
    scaled_teacher = w.random_features(np.asarray(teacher.weights) * 3.7e-11)  # a teacher's own scale is irrelevant
    scaled_target = w.linear_target(np.asarray(target.beta) * s / np.sqrt(v))
    scaled = w.weak_to_strong(scaled_student, scaled_teacher, scaled_target, w.gaussian_inputs(D, variances * v),
                              times / (a * a * v))
    np.testing.assert_allclose(np.asarray(scaled.student_loss) / s**2, np.asarray(base.student_loss), rtol=1e-12)
    assert float(scaled.best_time) * a * a * v == pytest.approx(float(base.best_time), rel=1e-10)
    for name in ("teacher_loss", "ceiling_loss", "student_loss_at_infinity", "best_student_loss"):
        assert float(getattr(scaled, name)) / s**2 == pytest.approx(float(getattr(base, name)), rel=1e-11), name
    assert float(scaled.pgr) == pytest.approx(float(base.pgr), rel=1e-10)


def test_a_time_scale_beyond_float64_is_refused_clearly():
    """Weights × 1e-200 put t* near 1e400: no float64 time can say it, so the result is refused, not ∞."""
    student, teacher, target, inputs = small_problem()
    tiny = w.random_features(np.asarray(student.weights) * 1e-200)
    with pytest.raises(ValueError, match="t\\* .*float64"):
        w.weak_to_strong(tiny, teacher, target, inputs, np.logspace(-1, 300, 30))


@pytest.mark.parametrize("teacher_scale, variance", [(1.0, 1.0), (3.0, 1.0), (0.3, 5.0)])
def test_a_teacher_stopped_early_follows_its_own_flow_at_any_scale(teacher_scale, variance):
    """teacher_time = τ: w_T(τ) = Q diag((1 − e^{−τλ})/λ) Qᵀ c_T in the problem's own units (numpy, from the
    moments), whatever the weight and input scales the solver normalises away internally."""
    student, teacher, target, _ = small_problem(m_student=24)
    inputs = w.gaussian_inputs(D, np.full(D, variance))
    teacher = w.random_features(np.asarray(teacher.weights) * teacher_scale)
    G_t = np.asarray(w.feature_gram(teacher, teacher, inputs))
    c_t = np.asarray(w.feature_target_moment(teacher, target, inputs))
    s_star = float(w.target_second_moment(target, inputs))
    lam, Q = np.linalg.eigh(G_t)
    for tau in (0.5, 20.0):
        w_t = Q @ (-np.expm1(-tau * lam) / lam * (Q.T @ c_t))
        expected = direct_loss(G_t, c_t, s_star, w_t)
        result = w.weak_to_strong(student, teacher, target, inputs, np.geomspace(0.1, 10, 8), teacher_time=tau)
        np.testing.assert_allclose(float(result.teacher_loss), expected, rtol=1e-10)
