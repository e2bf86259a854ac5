"""The spectral solver against independent computations and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.w2s import fit_teacher, student_spectrum, student_target_coef, teacher_label_moment, w2s_problem

D = 6


def small_problem(m_student=48, m_teacher=7, activation="relu", variances=None, seed=0):
    inputs = w.gaussian_inputs(D, variances)
    k1, k2 = jax.random.split(jax.random.key(seed))
    student = w.random_features(w.sample_weights(k1, m_student, D, activation), activation)
    teacher = w.random_features(w.sample_weights(k2, m_teacher, D, activation), activation)
    target = w.linear_target(np.linspace(1.0, -0.5, D) / 1.3)
    return student, teacher, target, inputs


def population_matrices(student, teacher, target, inputs):
    """G_S, b = G_ST w_T, c_S, s* from the moments, as numpy (independent of the spectral route)."""
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
    G, b = jnp.asarray(G), jnp.asarray(b)
    h = t_end / steps
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

    _, ws = jax.jit(lambda: jax.lax.scan(block, jnp.zeros_like(b), None, length=steps // record_every))()
    times = h * record_every * np.arange(1, steps // record_every + 1)
    return times, direct_loss(G, c, s_star, np.asarray(ws))


@pytest.mark.parametrize("activation,variances", [("relu", None), ("relu", [0.5, 2, 1, 1.5, 0.8, 1]), ("linear", None)])
def test_closed_form_matches_rk4_integration(activation, variances):
    student, teacher, target, inputs = small_problem(activation=activation, variances=variances)
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    times, rk4 = rk4_flow_losses(G, b, c, s_star, t_end=400.0, steps=40_000, record_every=400)
    result = w.weak_to_strong(student, teacher, target, inputs, times)
    np.testing.assert_allclose(np.asarray(result.student_loss), rk4, rtol=0, atol=1e-8)
    # The curve is not flat: the comparison sees the dynamics.
    assert np.ptp(rk4) > 1e-2


def test_invariants_at_zero_and_infinity():
    student, teacher, target, inputs = small_problem()
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-2, 3, 50))
    problem = result.problem
    s_star = float(w.target_second_moment(target, inputs))
    assert float(w.student_loss(problem, jnp.zeros(1))[0]) == pytest.approx(s_star, abs=1e-12)
    late = np.asarray(w.student_loss(problem, jnp.asarray([1e8, 1e10, 1e12])))
    np.testing.assert_allclose(late, float(result.student_loss_at_infinity), atol=1e-10)
    # L(∞) from the spectral route equals the error of the least-squares limit G⁺b, computed directly.
    G, b, c, s_star, teacher_loss = population_matrices(student, teacher, target, inputs)
    w_inf = np.linalg.lstsq(G, b, rcond=1e-12)[0]
    assert float(result.student_loss_at_infinity) == pytest.approx(direct_loss(G, c, s_star, w_inf), abs=1e-9)
    assert float(result.teacher_loss) == pytest.approx(teacher_loss, abs=1e-10)


def test_student_with_teacher_features_ends_at_teacher_loss():
    _, teacher, target, inputs = small_problem(m_teacher=12)
    result = w.weak_to_strong(teacher, teacher, target, inputs, np.logspace(-1, 4, 30))
    assert float(result.student_loss_at_infinity) == pytest.approx(float(result.teacher_loss), abs=1e-10)
    # Before convergence the student is still worse than the teacher it imitates: no W2S gain here.
    assert float(result.best_student_loss) == pytest.approx(float(result.teacher_loss), abs=1e-8)
    assert np.isinf(float(result.best_time))
    # Its ceiling is the teacher's own error, so PGR = 0/0 is undefined and reported as NaN.
    assert float(result.ceiling_loss) == pytest.approx(float(result.teacher_loss), abs=1e-10)
    assert np.isnan(float(result.pgr))


def test_true_labels_are_monotone_and_reach_the_ceiling():
    student, teacher, target, inputs = small_problem()
    spectrum = student_spectrum(student, inputs)
    target_coef, residual = student_target_coef(spectrum, student, target, inputs)
    c = w.feature_target_moment(student, target, inputs)
    problem = w2s_problem(spectrum, c, target_coef, residual)
    times = jnp.logspace(-2, 8, 400)
    losses = np.asarray(w.student_loss(problem, times))
    assert np.all(np.diff(losses) <= 1e-14)
    assert losses[-1] == pytest.approx(float(residual), abs=1e-10)
    t_best, l_best = w.best_time(problem, times)
    assert np.isinf(float(t_best)) and float(l_best) == pytest.approx(float(residual), abs=1e-12)
    # The ceiling is the best error in the student's span: the direct least-squares residual.
    G = np.asarray(w.feature_gram(student, student, inputs))
    w_ls = np.linalg.lstsq(G, np.asarray(c), rcond=1e-12)[0]
    s_star = float(w.target_second_moment(target, inputs))
    assert float(residual) == pytest.approx(direct_loss(G, np.asarray(c), s_star, w_ls), abs=1e-10)


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_time_matches_brute_force_search(seed):
    student, teacher, target, inputs = small_problem(m_student=80, m_teacher=5, seed=seed)
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 5, 25))
    t_star = float(result.best_time)
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    t_brute, l_brute = brute_force_best_time(G, b, c, s_star, 1e-2, 1e7)
    assert np.isfinite(t_star)
    assert abs(t_star / t_brute - 1) <= 1e-6
    assert float(result.best_student_loss) <= l_brute + 1e-13
    # Refinement goes past the coarse grid: the grid minimum alone is far off.
    grid_best = float(result.times[np.argmin(result.student_loss)])
    assert abs(grid_best / t_brute - 1) > 1e-3


def test_best_time_at_the_edge_of_the_grid_is_searched_beyond_it():
    student, teacher, target, inputs = small_problem(m_student=80, m_teacher=5)
    full = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 5, 61))
    t_star = float(full.best_time)
    early = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-3, np.log10(t_star) - 0.5, 20))
    late = w.weak_to_strong(student, teacher, target, inputs, np.logspace(np.log10(t_star) + 0.5, 6, 20))
    assert float(early.best_time) == pytest.approx(t_star, rel=1e-9)
    assert float(late.best_time) == pytest.approx(t_star, rel=1e-9)


def test_rank_deficient_linear_features_use_the_small_side():
    d = 10
    inputs = w.gaussian_inputs(d, np.linspace(0.5, 2.0, d))
    student = w.random_features(w.sample_weights(jax.random.key(3), 200, d, "linear"), "linear")
    teacher = w.random_features(w.sample_weights(jax.random.key(4), 4, d, "linear"), "linear")
    target = w.linear_target(np.eye(d)[0])
    spectrum = student_spectrum(student, inputs)
    assert spectrum.eigenvectors.shape == (200, d)  # decomposed through the d-dimensional factor
    times = np.logspace(-2, 4, 60)
    result = w.weak_to_strong(student, teacher, target, inputs, times)
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    assert np.linalg.matrix_rank(G) == d
    # Independent: the flow solved with numpy's eigh of the full (rank-d) 200×200 matrix.
    lam, Q = np.linalg.eigh(G)
    g = np.where(lam > 1e-10, -np.expm1(-np.outer(times, lam)) / np.where(lam > 1e-10, lam, 1), 0)
    ws = (g * (Q.T @ b)) @ Q.T
    np.testing.assert_allclose(np.asarray(result.student_loss), direct_loss(G, c, s_star, ws), atol=1e-10)
    assert np.all(np.isfinite(np.asarray(result.student_loss)))
    # With d ≤ M_ST the student spans every linear function: the ceiling is 0.
    assert float(result.ceiling_loss) == pytest.approx(0.0, abs=1e-12)


def test_duplicated_features_are_finite_and_match_integration():
    student, teacher, target, inputs = small_problem(m_student=30)
    U = np.asarray(student.weights)
    dup = w.random_features(np.concatenate([U, U[:10], U[:5]]), "relu")
    G, b, c, s_star, _ = population_matrices(dup, teacher, target, inputs)
    assert np.linalg.matrix_rank(G) == 30
    times, rk4 = rk4_flow_losses(G, b, c, s_star, t_end=300.0, steps=30_000, record_every=500)
    result = w.weak_to_strong(dup, teacher, target, inputs, times)
    np.testing.assert_allclose(np.asarray(result.student_loss), rk4, atol=1e-8)
    # Duplicates change the dynamics but not the span: same limit as the student without them.
    plain = w.weak_to_strong(student, teacher, target, inputs, times)
    assert float(result.student_loss_at_infinity) == pytest.approx(float(plain.student_loss_at_infinity), abs=1e-9)


def test_float32_on_request_with_measured_error():
    import jax.numpy as jnp

    student, teacher, target, _ = small_problem(m_student=64)
    times = np.logspace(-1, 4, 50)
    r64 = w.weak_to_strong(student, teacher, target, w.gaussian_inputs(D), times)
    s32 = w.random_features(np.asarray(student.weights), "relu", jnp.float32)
    t32 = w.random_features(np.asarray(teacher.weights), "relu", jnp.float32)
    target32 = w.linear_target(np.asarray(target.beta), jnp.float32)
    r32 = w.weak_to_strong(s32, t32, target32, w.gaussian_inputs(D, dtype=jnp.float32), times)
    assert r32.student_loss.dtype == jnp.float32 and r64.student_loss.dtype == jnp.float64
    err = np.max(np.abs(np.asarray(r32.student_loss, np.float64) - np.asarray(r64.student_loss)))
    assert 0 < err < 1e-4
    assert float(r32.best_student_loss) == pytest.approx(float(r64.best_student_loss), rel=1e-3)


def test_discrete_decay_form_equals_direct_weights():
    student, teacher, target, inputs = small_problem()
    G, b, c, s_star, _ = population_matrices(student, teacher, target, inputs)
    result = w.weak_to_strong(student, teacher, target, inputs, np.logspace(-1, 3, 5))
    problem = result.problem
    eta, k = 0.5, 37
    decay = (1 - eta * problem.eigenvalues) ** k
    v = np.zeros_like(b)
    for _ in range(k):
        v = v - eta * (G @ v - b)
    assert float(w.student_loss_from_decay(problem, decay)) == pytest.approx(direct_loss(G, c, s_star, v), abs=1e-12)


def test_flow_weights_match_integration_endpoint():
    student, teacher, target, inputs = small_problem()
    spectrum = student_spectrum(student, inputs)
    fit = fit_teacher(teacher, target, inputs)
    b = teacher_label_moment(student, teacher, fit.weights, inputs)
    G = np.asarray(w.feature_gram(student, student, inputs))
    expected = jax.scipy.linalg.expm(-5.0 * G)  # w(t) = G⁺(I − e^{−tG}) b on the span of G
    w_t = np.asarray(w.flow_weights(spectrum, b, 5.0))
    np.testing.assert_allclose(G @ w_t, np.asarray(b) - np.asarray(expected @ b), atol=1e-12)
