"""The infinitely wide student: spherical-harmonic identities, the closed-form route against finite students
(convergence like 1/M_ST), Monte Carlo, mimicry, independent closed forms, and bad input."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special

import w2sjax as w
from w2sjax import harmonics
from w2sjax.features import InfiniteFeatures, infinite_features, random_features, student_features
from w2sjax.kernels import relu_kernel
from w2sjax.objectives import Law
from w2sjax.w2s import as_batch, fit_teachers

# --------------------------------------------------------------------------------------------------
# Spherical harmonics
# --------------------------------------------------------------------------------------------------


def _density(d):
    c = math.exp(harmonics.log_sphere_constant(d))
    return lambda t: c * (1 - t * t) ** ((d - 3) / 2)


@pytest.mark.parametrize("d", [3, 5, 16])
def test_gegenbauer_coefficients_against_quadrature(d):
    """P_l against scipy's Gegenbauer, N(d, l) from E[P_l²] = 1/N, h_l and E[t^i P_l] against quadrature."""
    dens = _density(d)
    for l in range(7):
        p = lambda t: harmonics.gegenbauer_numpy(d, l, t)[l]
        ref = special.eval_gegenbauer(l, (d - 2) / 2, 0.37) / special.eval_gegenbauer(l, (d - 2) / 2, 1.0)
        assert abs(p(0.37) - ref) < 1e-13
        norm = integrate.quad(lambda t: p(t) ** 2 * dens(t), -1, 1, epsabs=1e-13)[0]
        assert abs(norm * harmonics.harmonic_dimension(d, l) - 1) < 1e-8
        h = integrate.quad(lambda t: max(t, 0) * p(t) * dens(t), -1, 1, points=[0], epsabs=1e-14)[0]
        assert abs(h - float(harmonics.relu_coefficient(d, l))) < 1e-10
        for i in range(l, 7):
            m = integrate.quad(lambda t: t**i * p(t) * dens(t), -1, 1, epsabs=1e-14)[0]
            assert abs(m - harmonics.power_moment(d, i, l)) < 1e-10


@pytest.mark.parametrize("d", [2, 3, 8, 32])
def test_series_sums_to_arc_cosine_kernel(d):
    """Σ_{l ≤ L} N(d, l) h_l² P_l(ρ) = J(ρ)/d within the tail Σ_{l > L} N h_l² (= 1/(2d) − the partial sum)."""
    rho = np.array([-1.0, -0.7, -0.2, 0.0, 0.3, 0.8, 0.99, 1.0])
    exact = np.asarray(relu_kernel(jnp.asarray(rho))) / d
    previous_tail = np.inf
    for top in (10, 40, 200):
        series = harmonics.relu_series_weights(d, np.arange(top + 1)) @ harmonics.gegenbauer_numpy(d, top, rho)
        tail = harmonics.relu_series_tail(d, top + 1)
        assert 0 < tail < previous_tail
        assert np.all(np.abs(series - exact) <= tail + 1e-15)
        assert abs(series[-1] + tail - exact[-1]) < 1e-15  # at ρ = 1 the tail is the whole difference
        previous_tail = tail


def test_kernel_and_eigenvalue_against_monte_carlo():
    """E_u[relu(u·a) relu(u·b)] = |a||b| J(ρ)/d over u uniform on the sphere, and T[|x| P_l(e₁·x̂)] =
    μ₂ h_l² |x| P_l(e₁·x̂) for the integral operator of that kernel under N(0, I), by Monte Carlo (5 SE)."""
    d, n = 6, 400_000
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    a, b = rng.normal(size=d), rng.normal(size=d)
    vals = np.maximum(u @ a, 0) * np.maximum(u @ b, 0)
    rho = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    exact = np.linalg.norm(a) * np.linalg.norm(b) * float(relu_kernel(rho)) / d
    assert abs(vals.mean() - exact) < 5 * vals.std() / math.sqrt(n)

    x = rng.normal(size=(n, d))
    x0 = rng.normal(size=d)
    r, r0 = np.linalg.norm(x, axis=1), np.linalg.norm(x0)
    kernel = r * r0 * np.asarray(relu_kernel(jnp.asarray(x @ x0 / (r * r0)))) / d
    for l in (0, 1, 2, 4):
        f = r * harmonics.gegenbauer_numpy(d, l, x[:, 0] / r)[l]
        vals = kernel * f
        eig = d * float(harmonics.relu_coefficient(d, l)) ** 2
        expected = eig * r0 * harmonics.gegenbauer_numpy(d, l, x0[0] / r0)[l]
        assert abs(vals.mean() - expected) < 5 * vals.std() / math.sqrt(n), l


# --------------------------------------------------------------------------------------------------
# The route: exact statements (one problem per input law and target structure, shared by the tests)
# --------------------------------------------------------------------------------------------------

TIMES = np.logspace(-1, 5, 60)


def _weights(seed, m, d, activation="relu"):
    """Weights by the default laws (rows uniform on the unit sphere; linear: N(0, 1/d) entries), drawn with
    numpy (no compilation per width)."""
    z = np.random.default_rng([seed, m, d]).normal(size=(m, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True) if activation == "relu" else z / math.sqrt(d)


def _relu_teachers(d, widths, seed=0):
    return [random_features(_weights(seed, m, d)) for m in widths]


MIXED_D = 8
MIXED_BETA = np.random.default_rng(3).normal(size=MIXED_D)
MIXED_BETA /= np.linalg.norm(MIXED_BETA)
MIXED_HERMITE = ((2, 0.8), (3, 0.5), (4, 0.3))


def _network_part(d):
    return w.network_target(_weights(7, 5, d) * np.arange(1, 6)[:, None] / 3, np.array([0.5, -0.3, 0.4, 0.2, -0.6]))


def _polynomial_part(d, beta):
    return w.sum_target(w.linear_target(0.6 * beta), *(w.hermite_target(beta, k, c) for k, c in MIXED_HERMITE))


_CACHE = {}


def _mixed():
    """d = 8, N(0, I), f* = 0.6 β·x + 0.8 h₂ + 0.5 h₃ + 0.3 h₄ (along β) + a 5-unit ReLU network; teachers of 12
    and 40 units: (result, teachers, target)."""
    if "mixed" not in _CACHE:
        d = MIXED_D
        target = w.sum_target(_polynomial_part(d, MIXED_BETA), _network_part(d))
        teachers = _relu_teachers(d, (12, 40))
        result = w.weak_to_strong(student_features(0, "inf", d), teachers, target, w.gaussian_inputs(d), TIMES)
        _CACHE["mixed"] = (result, teachers, target)
    return _CACHE["mixed"]


def test_mimicry_and_figures_of_merit():
    """L_ST(∞) = L_TE exactly (the student mimics its teacher), every figure carries an error estimate below
    1e-12, and the route says how it was computed (ReLU, Hermite, linear and network parts in one target)."""
    result, _, _ = _mixed()
    assert result.route.method == "infinite" and result.route.converged
    np.testing.assert_allclose(result.student_loss_at_infinity, result.teacher_loss, rtol=0, atol=1e-13)
    assert np.all(np.asarray(result.best_student_loss) < np.asarray(result.teacher_loss))
    for name in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        assert np.all(np.asarray(getattr(result.error, name)) < 1e-12)
        assert np.all(np.asarray(getattr(result.error, name)) >= 0)
    np.testing.assert_allclose(result.pgr, (np.asarray(result.teacher_loss) - np.asarray(result.best_student_loss))
                               / (np.asarray(result.teacher_loss) - np.asarray(result.ceiling_loss)), rtol=1e-12)
    out = result.to_dict()
    assert out["route"]["method"] == "infinite" and "L(∞)" in out["route"]["how"]
    assert np.all(np.diff(np.asarray(result.student_loss)[:, :5], axis=-1) < 0)  # it learns from t = 0


def test_ceiling_against_radial_quadrature():
    """The ceiling without spherical harmonics: the best |x| g(x̂) for a function of s = β·x̂ and |x| is
    g(s) = E_r[r f(r s)]/E r²; the ReLU span keeps g's even part and the linear part of its odd part, so
    L_ceil = E[f_p²] − μ₂ (E_s[g_e²] + d E_s[g_o s]²) for the polynomial part f_p (Gauss quadrature in s). The
    network part lies in the span and must not change it."""
    result, _, _ = _mixed()
    d = MIXED_D
    poly = np.zeros(5)  # f_p(z) = Σ_j a_j z^j along β
    poly[1] = 0.6
    for k, c in MIXED_HERMITE:
        he = np.zeros(k + 1)
        he[k] = c / math.sqrt(math.factorial(k))
        poly[: k + 1] += np.polynomial.hermite_e.herme2poly(he)
    chi_moment = lambda p: 2 ** (p / 2) * math.gamma((d + p) / 2) / math.gamma(d / 2)  # E r^p, r ~ chi_d
    g = np.array([a * chi_moment(j + 1) / d for j, a in enumerate(poly)])  # g(s) = Σ_j g_j s^j
    s, ws = special.roots_jacobi(40, (d - 3) / 2, (d - 3) / 2)  # s ~ (1 − s²)^{(d−3)/2}
    ws = ws / ws.sum()
    powers = s[None, :] ** np.arange(5)[:, None]
    g_even, g_odd = g[0::2] @ powers[0::2], g[1::2] @ powers[1::2]
    energy = float(w.target_second_moment(_polynomial_part(d, MIXED_BETA), w.gaussian_inputs(d)))
    ceiling = energy - d * (np.sum(ws * g_even**2) + d * np.sum(ws * g_odd * s) ** 2)
    assert ceiling > 0.1
    np.testing.assert_allclose(np.asarray(result.ceiling_loss), ceiling, rtol=1e-12)


def test_curve_against_monte_carlo():
    """f_t(x) = |x| Σ_j α_j Σ_l ρ_l(t) N(d, l) h_l P_l(v̂_j·x̂) (the teacher's series, degree l learnt to
    ρ_l = 1 − e^{−t μ₂ h_l²}, α_j = w_j|v_j|/√M_TE), f* evaluated point by point: the mean square over samples
    against the route at a few times, within 5 standard errors."""
    result, teachers, target = _mixed()
    d, n, top = MIXED_D, 100_000, 40
    inputs = w.gaussian_inputs(d)
    fit = fit_teachers(as_batch(teachers), target, Law(inputs))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, d))
    r = np.linalg.norm(x, axis=1)
    degrees = np.arange(top + 1)
    coef = harmonics.harmonic_dimension(d, degrees) * harmonics.relu_coefficient(d, degrees)
    lam = d * harmonics.relu_coefficient(d, degrees) ** 2
    f_star = np.asarray(w.target_values(target, jnp.asarray(x)))
    picks = (5, 20, 30, 40, 50)
    for i, teacher in enumerate(teachers):
        v = np.asarray(teacher.weights)
        alpha = np.asarray(fit.weights[i, : v.shape[0]]) * np.linalg.norm(v, axis=1) / math.sqrt(v.shape[0])
        cosines = (x / r[:, None]) @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T  # (n, M)
        previous, current = np.zeros_like(cosines), np.ones_like(cosines)
        per_degree = np.empty((top + 1, n))  # |x| Σ_j α_j N h_l P_l(v̂_j·x̂), degree by degree
        for l in range(top + 1):
            per_degree[l] = r * (current @ alpha) * coef[l]
            step = 1.0 if l == 0 else (2 * l + d - 2) / (l + d - 2)
            previous, current = current, step * cosines * current - (l / (l + d - 2)) * previous
        for k in picks:
            sq = ((-np.expm1(-TIMES[k] * lam)) @ per_degree - f_star) ** 2
            assert abs(sq.mean() - float(result.student_loss[i, k])) < 5 * sq.std() / math.sqrt(n), (i, k)


def test_sphere_and_scaled_gaussian():
    """Degree-1 homogeneous f* (linear plus ReLU network): the sphere of radius √d gives the N(0, I) answer;
    N(0, cI) gives L_c(t) = c L_1(ct)."""
    d = MIXED_D
    target = w.sum_target(w.linear_target(np.eye(d)[0]), _network_part(d))
    teachers = _relu_teachers(d, (12, 40))
    student = student_features(0, "inf", d)
    gauss = w.weak_to_strong(student, teachers, target, w.gaussian_inputs(d), TIMES)
    sphere = w.weak_to_strong(student, teachers, target, w.sphere_inputs(d), TIMES)
    np.testing.assert_allclose(sphere.student_loss, gauss.student_loss, rtol=1e-12)
    np.testing.assert_allclose(sphere.ceiling_loss, 0.0, atol=1e-14)  # f* lies in the span
    c = 4.0
    scaled = w.weak_to_strong(student, teachers, target, w.gaussian_inputs(d, variances=np.full(d, c)), TIMES / c)
    np.testing.assert_allclose(scaled.student_loss, c * np.asarray(gauss.student_loss), rtol=1e-11)


# --------------------------------------------------------------------------------------------------
# Convergence: finite students → the infinite one, like 1/M_ST (seed-averaged, finite students in numpy)
# --------------------------------------------------------------------------------------------------


def _spectral_curve(lam, label, target, residual):
    """L(t) = Σ_i (ρ_i a_i − a*_i)² + R, ρ = 1 − e^{−tλ} (vectorised in t)."""
    return lambda t: np.sum(((-np.expm1(-np.multiply.outer(t, lam))) * label - target) ** 2, axis=-1) + residual


def _finite_student(gram, labels_moment, target_moment, energy):
    """The DESIGN sum-of-squares curve of a finite student from G (M, M), b (M,), c (M,), s*."""
    lam, q = np.linalg.eigh(gram)
    keep = lam > gram.shape[0] * np.finfo(float).eps * lam.max()
    lam, bt, ct = lam[keep], (q.T @ labels_moment)[keep], (q.T @ target_moment)[keep]
    return _spectral_curve(lam, bt / np.sqrt(lam), ct / np.sqrt(lam), energy - np.sum(ct**2 / lam))


def _infinite_curve(result):
    p = result.problem  # one label set
    return _spectral_curve(np.asarray(p.eigenvalues), np.asarray(p.label_coef).reshape(-1),
                           np.asarray(p.target_coef).reshape(-1), float(np.asarray(p.residual).reshape(())))


def _convergence(curve, best_time, finite_curves, sizes):
    """Errors of the seed-averaged L(t) (max over t*/2, t*, 2t*), L* and log t*, and their fitted slopes in log M."""
    probe = best_time * np.array([0.5, 1.0, 2.0])
    exact, best = curve(probe), float(curve(np.array([best_time]))[0])
    errors = {"L(t)": [], "L*": [], "log t*": []}
    for curves in finite_curves:  # one list of seeds per size
        values, bests, times = [], [], []
        for f in curves:
            values.append(f(probe))
            opt = optimize.minimize_scalar(lambda z: f(np.exp(z)), bounds=(math.log(best_time) - 5,
                                           math.log(best_time) + 5), method="bounded", options={"xatol": 1e-7})
            bests.append(opt.fun)
            times.append(opt.x)
        errors["L(t)"].append(np.max(np.abs(np.mean(values, 0) - exact)))
        errors["L*"].append(abs(np.mean(bests) - best))
        errors["log t*"].append(abs(np.mean(times) - math.log(best_time)))
    return {k: float(np.polyfit(np.log(sizes), np.log(v), 1)[0]) for k, v in errors.items()}, errors


def _arc_cosine(a, b):
    """E[relu(a·x) relu(b·x)] for unit rows, x ~ N(0, I) (the DESIGN formula)."""
    c = np.clip(a @ b.T, -1, 1)
    theta = np.arccos(c)
    return (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi)


def test_relu_students_converge_like_one_over_width():
    """ReLU, d = 16, f* = x₁, a teacher of 64 units; students of 128, 256, 512 units over 8 seeds (numpy, from
    the arc-cosine Gram matrices): the seed-averaged errors of L_ST(t) at t*/2, t*, 2t*, of L_ST* and of log t*
    fall like M^{-1} (fitted slope in [−1.3, −0.7]). benchmarks/infinite.py runs 512 … 2048 (and up to 8192 with --sizes).
    (At times ~1/λ₁ a mean-zero fluctuation of order 1/√(M · seeds) dominates the seed average instead.)"""
    d, sizes, seeds = 16, (128, 256, 512), 8
    inputs = w.gaussian_inputs(d)
    beta = np.eye(d)[0]
    target = w.linear_target(beta)
    teacher = _relu_teachers(d, (64,))[0]
    result = w.weak_to_strong(student_features(0, "inf", d), teacher, target, inputs, TIMES)
    np.testing.assert_allclose(float(result.student_loss_at_infinity), float(result.teacher_loss), atol=1e-13)
    np.testing.assert_allclose(float(result.ceiling_loss), 0.0, atol=1e-14)
    v = np.asarray(teacher.weights)
    w_t = np.asarray(fit_teachers(as_batch(teacher), target, Law(inputs)).weights[0])
    finite = []
    for m in sizes:
        curves = []
        for seed in range(seeds):
            u = _weights(100 + seed, m, d)
            curves.append(_finite_student(_arc_cosine(u, u) / m, _arc_cosine(u, v) @ w_t / math.sqrt(m * 64),
                                          u @ beta / (2 * math.sqrt(m)), 1.0))
        finite.append(curves)
    curve = _infinite_curve(result)
    np.testing.assert_allclose(curve(TIMES), np.asarray(result.student_loss), rtol=1e-12)
    slopes, errors = _convergence(curve, float(result.best_time), finite, sizes)
    for name, slope in slopes.items():
        assert -1.3 <= slope <= -0.7, (name, slope, errors[name])
        assert np.all(np.diff(errors[name]) < 0), (name, errors[name])


def _spiked(d):
    s = np.full(d, 0.2)
    s[0] = 1.0
    return s


def test_linear_features_closed_form_and_convergence():
    """Linear features, diagonal spiked Σ (two spaces), d = 16: the route against the coordinate-wise closed
    form c(t) = (1 − e^{−tΣ/d}) c_y, c_y = Vᵀw_T/√M_TE; and students of 32 … 256 units over 64 seeds (numpy; their
    1/√M seed noise averages out, the 1/M bias remains; each in whitened coordinates a = Σ^{1/2}c, where
    da/dt = −Σ^{1/2}(UᵀU/M)Σ^{1/2}(a − a_y)) converge with slopes in [−1.3, −0.7]."""
    d, m_te, sizes, seeds = 16, 8, (32, 64, 128, 256), 64
    s = _spiked(d)
    inputs = w.gaussian_inputs(d, variances=s)
    beta = np.eye(d)[0]
    target = w.linear_target(beta)
    teacher = random_features(_weights(0, m_te, d, "linear"), "linear")
    result = w.weak_to_strong(infinite_features(d, "linear"), teacher, target, inputs, TIMES)
    assert result.problem.eigenvalues.shape == (2,)
    v = np.asarray(teacher.weights)
    c_y = v.T @ np.asarray(fit_teachers(as_batch(teacher), target, Law(inputs)).weights[0]) / math.sqrt(m_te)
    expected = [np.sum(s * ((1 - np.exp(-t * s / d)) * c_y - beta) ** 2) for t in TIMES]
    np.testing.assert_allclose(result.student_loss, expected, rtol=1e-10)
    np.testing.assert_allclose(float(result.student_loss_at_infinity), float(result.teacher_loss), atol=1e-13)
    finite = []
    for m in sizes:
        curves = []
        for seed in range(seeds):
            u = _weights(100 + seed, m, d, "linear")  # f = c·x, dc/dt = −(UᵀU/M) Σ (c − c_y): whitened, d × d
            lam, q = np.linalg.eigh(np.sqrt(s)[:, None] * (u.T @ u / m) * np.sqrt(s)[None, :])
            curves.append(_spectral_curve(lam, q.T @ (np.sqrt(s) * c_y), q.T @ (np.sqrt(s) * beta), 0.0))
        finite.append(curves)
    slopes, errors = _convergence(_infinite_curve(result), float(result.best_time), finite, sizes)
    for name, slope in slopes.items():
        assert -1.3 <= slope <= -0.7, (name, slope, errors[name])


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_bad_input():
    d = 8
    target = w.linear_target(np.eye(d)[0])
    teacher = _relu_teachers(d, (4,))[0]
    inputs = w.gaussian_inputs(d)
    student = student_features(0, math.inf, d)
    assert isinstance(student, InfiniteFeatures) and student.width == math.inf
    with pytest.raises(ValueError, match="anisotropic"):
        w.weak_to_strong(student, teacher, target, w.gaussian_inputs(d, variances=np.linspace(1, 2, d)), TIMES)
    with pytest.raises(ValueError, match="dimension"):
        w.weak_to_strong(infinite_features(d + 1), teacher, target, inputs, TIMES)
    with pytest.raises(ValueError, match="non-finite"):
        w.weak_to_strong(student, teacher, target, inputs, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="population only"):
        w.weak_to_strong(student, teacher, target, inputs, TIMES, samples=100)
    with pytest.raises(ValueError, match="needs a finite student"):
        w.weak_to_strong(student, teacher, target, inputs, TIMES, method="eigh")
    with pytest.raises(ValueError, match="infinitely wide student"):
        w.weak_to_strong(student_features(0, 16, d), teacher, target, inputs, TIMES, method="infinite")
    with pytest.raises(ValueError, match="positive integer or 'inf'"):
        student_features(0, "wide", d)
    with pytest.raises(ValueError, match="dim"):
        infinite_features(0)
    with pytest.raises(ValueError, match="d >= 2"):
        w.weak_to_strong(infinite_features(1), random_features(np.ones((2, 1))), w.linear_target([1.0]),
                         w.gaussian_inputs(1), TIMES)
    with pytest.raises(ValueError, match="sphere"):
        w.weak_to_strong(student, teacher, w.hermite_target(np.eye(d)[0], 2), w.sphere_inputs(d), TIMES)
