"""Finite-sample training, ReLU-network targets and ridge, checked against independent computations:
numpy solves, the matrix exponential of the flow, Monte Carlo, and the population solver as n → ∞."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax  # noqa: F401  (float64)
from w2sjax.cli import main
from w2sjax.features import feature_gram, random_features
from w2sjax.finite import (
    ExactMoments,
    draw_samples,
    finite_flow_weights,
    finite_loss,
    finite_loss_at_infinity,
    finite_weak_to_strong,
    fit_teacher_on_population,
    held_out_moments,
    population_student_problem,
    population_teacher,
    sample_problem,
)
from w2sjax.finite_experiment import relu_samples_experiment
from w2sjax.inputs import gaussian_inputs, sphere_inputs
from w2sjax.relu_net_target import (
    feature_target_moment,
    relu_network_mean,
    relu_network_second_moment,
    relu_network_target,
    relu_network_variance,
    target_second_moment,
)
from w2sjax.ridge import ridge_loss, ridge_summary, ridge_weak_to_strong, ridge_weights
from w2sjax.spectral import decompose, student_loss

D, M_ST, M_TE, N, UNITS, M_HELD = 5, 40, 12, 24, 6, 400
VARIANCES = np.array([1.0, 0.5, 2.0, 1.0, 1.5])
TIMES = np.logspace(-1, 5, 40)
RTOL = 1e-9
# Compiled once and shared: the tests use the same shapes wherever they can, since compiling dominates.
target_moment = jax.jit(feature_target_moment)
gram_of = jax.jit(feature_gram)


def unit_rows(rng, m, d):
    w = rng.standard_normal((m, d))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def setup():
    """A ReLU-network target under x ~ N(0, diag(VARIANCES)), ReLU student (40) and teacher (12), 24 samples."""
    rng = np.random.default_rng(7)
    inputs = gaussian_inputs(D, VARIANCES)
    target = relu_network_target(unit_rows(rng, UNITS, D), rng.standard_normal(UNITS), standardize=True, inputs=inputs)
    student = random_features(unit_rows(rng, M_ST, D))
    teacher = random_features(unit_rows(rng, M_TE, D))
    x = rng.standard_normal((N, D)) * np.sqrt(VARIANCES)
    return dict(inputs=inputs, target=target, student=student, teacher=teacher, x=x, rng=rng)


def features_np(f, x):
    """φ(x) in numpy: relu(x Uᵀ)/√M (or linear)."""
    u = np.asarray(f.weights)
    z = x @ u.T
    return (np.maximum(z, 0) if f.activation == "relu" else z) / math.sqrt(u.shape[0])


def target_np(target, x):
    return np.maximum(x @ np.asarray(target.inner_weights).T, 0) @ np.asarray(target.outer_weights)


def population_loss_np(w, gram, c, s):
    """L(w) = wᵀGw − 2wᵀc + s*, evaluated directly."""
    return w @ gram @ w - 2 * w @ c + s


def exact_moments_np(f, setup):
    gram = np.asarray(gram_of(f, f, setup["inputs"]))
    c = np.asarray(target_moment(f, setup["target"], setup["inputs"]))
    return gram, c, float(target_second_moment(setup["target"], setup["inputs"]))


def flow_by_expm(cov, moment, t):
    """w(t) of dw/dt = −(Ĝw − b̂), w(0) = 0: the last column of exp(t [[−Ĝ, b̂], [0, 0]]), by scaling and
    squaring of the Taylor series (no eigenvectors)."""
    m = cov.shape[0]
    aug = np.zeros((m + 1, m + 1))
    aug[:m, :m], aug[:m, m] = -cov, moment
    a = t * aug
    squarings = max(0, int(np.ceil(np.log2(max(np.abs(a).sum(axis=1).max(), 1e-300) / 0.25))))
    a = a / 2.0**squarings
    term, total = np.eye(m + 1), np.eye(m + 1)
    for k in range(1, 25):
        term = term @ a / k
        total = total + term
    for _ in range(squarings):
        total = total @ total
    return total[:m, m]


# --------------------------------------------------------------------------------------------------
# Finite-sample flow
# --------------------------------------------------------------------------------------------------


def test_kernel_and_covariance_routes_agree(setup):
    """Student n = 24 < M = 40 and teacher n = 24 > M = 12, each forced through both decompositions."""
    args = (setup["student"], setup["teacher"], setup["target"], setup["inputs"], TIMES)
    kern = finite_weak_to_strong(*args, samples=setup["x"], route="kernel")
    cov = finite_weak_to_strong(*args, samples=setup["x"], route="covariance")
    assert (kern.student_route, cov.student_route) == ("kernel", "covariance")
    np.testing.assert_allclose(kern.teacher_loss, cov.teacher_loss, rtol=RTOL)
    np.testing.assert_allclose(kern.teacher_weights, cov.teacher_weights, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(kern.student_loss, cov.student_loss, rtol=RTOL)
    for key in ("best_student_loss", "student_loss_at_infinity", "ceiling_loss", "ratio", "pgr"):
        np.testing.assert_allclose(getattr(kern, key), getattr(cov, key), rtol=RTOL, err_msg=key)
    np.testing.assert_allclose(kern.best_time, cov.best_time, rtol=1e-5)
    # the curve has a real minimum and W2S shape (sanity, not a tolerance)
    assert np.min(kern.student_loss) < kern.student_loss[-1] and 0 < kern.best_time < np.inf


@pytest.mark.parametrize("route", ["kernel", "covariance"])
def test_flow_matches_matrix_exponential_and_least_squares(setup, route):
    """w(t) against exp(tA) of the augmented flow, population error against wᵀGw − 2wᵀc + s*; the teacher
    and t = ∞ against numpy least squares (min-norm)."""
    x, student, teacher = setup["x"], setup["student"], setup["teacher"]
    moments = ExactMoments(setup["inputs"], setup["target"])
    y = target_np(setup["target"], x)

    fit = finite_weak_to_strong(student, teacher, setup["target"], setup["inputs"], TIMES, samples=x, route=route)
    phi_t = features_np(teacher, x)
    w_t = np.linalg.lstsq(phi_t, y, rcond=None)[0]
    np.testing.assert_allclose(fit.teacher_weights, w_t, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.teacher_loss, population_loss_np(w_t, *exact_moments_np(teacher, setup)), rtol=RTOL)

    labels = phi_t @ np.asarray(fit.teacher_weights)
    # two label sets, as the pipeline passes them, so the compiled problem is shared
    spectrum, both = sample_problem(student, jnp.asarray(x), jnp.asarray(np.stack([labels, y], 1)), moments, route)
    problem = dataclasses.replace(both, label_coef=both.label_coef[0])
    phi = features_np(student, x)
    cov, moment = phi.T @ phi / N, phi.T @ labels / N
    gram, c, s = exact_moments_np(student, setup)
    losses = np.asarray(finite_loss(problem, jnp.asarray(TIMES)))
    np.testing.assert_allclose(fit.student_loss, losses, rtol=RTOL)
    for t, loss in zip(TIMES[5::8], losses[5::8]):  # t from 0.6 to 3.5e4
        w = flow_by_expm(cov, moment, t)
        np.testing.assert_allclose(finite_flow_weights(spectrum, problem.label_coef, t), w, rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(loss, population_loss_np(w, gram, c, s), rtol=RTOL)
    w_inf = np.linalg.pinv(phi) @ labels  # n < M: the minimum-norm interpolant
    np.testing.assert_allclose(finite_flow_weights(spectrum, problem.label_coef, np.float64(np.inf)), w_inf, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(finite_loss_at_infinity(problem), population_loss_np(w_inf, gram, c, s), rtol=1e-8)


def test_held_out_moments_give_held_out_mean_squares(setup):
    """User data: the errors are exactly the held-out mean squared errors of the trained predictors."""
    rng = setup["rng"]
    xh = rng.standard_normal((M_HELD, D)) * np.sqrt(VARIANCES)
    yh = target_np(setup["target"], xh)
    x, y = setup["x"], target_np(setup["target"], setup["x"])
    heldout = held_out_moments(xh, y=yh)
    res = finite_weak_to_strong(
        setup["student"], setup["teacher"], None, None, TIMES, samples=x, labels=y, heldout=heldout
    )
    w_t = np.asarray(res.teacher_weights)
    np.testing.assert_allclose(res.teacher_loss, np.mean((features_np(setup["teacher"], xh) @ w_t - yh) ** 2), rtol=RTOL)
    labels = features_np(setup["teacher"], x) @ w_t
    spectrum, both = sample_problem(setup["student"], jnp.asarray(x), jnp.asarray(np.stack([labels, y], 1)), heldout)
    problem = dataclasses.replace(both, label_coef=both.label_coef[0])
    phi_h = features_np(setup["student"], xh)
    for k in (3, 20, 35):
        w = np.asarray(finite_flow_weights(spectrum, problem.label_coef, TIMES[k]))
        np.testing.assert_allclose(res.student_loss[k], np.mean((phi_h @ w - yh) ** 2), rtol=RTOL)


def test_large_n_approaches_population_like_inverse_sqrt_n(setup):
    """Student on n samples of the population teacher's labels against the same student trained on the
    population (checked against numpy in ``test_population_training_matches_numpy``): the RMS gap of the
    curves over 6 seeds shrinks like n^{-1/2} from n = 800 to 204800 (nested samples per seed)."""
    seeds, ns = 6, [800, 6400, 51200, 204800]
    student, teacher = setup["student"], setup["teacher"]
    moments = ExactMoments(setup["inputs"], setup["target"])
    w_t, _ = population_teacher(teacher, moments)
    population = np.asarray(student_loss(population_student_problem(student, teacher, w_t, moments), TIMES))
    rng = np.random.default_rng(100)
    gaps = np.empty((len(ns), seeds))
    for s in range(seeds):
        x = rng.standard_normal((ns[-1], D)) * np.sqrt(VARIANCES)
        labels = np.asarray(fit_teacher_on_population(teacher, x, moments).sample_labels)
        for i, n in enumerate(ns):
            _, problem = sample_problem(student, x[:n], labels[:n], moments)
            gaps[i, s] = np.sqrt(np.mean((np.asarray(finite_loss(problem, jnp.asarray(TIMES))) - population) ** 2))
    rms = np.sqrt(np.mean(gaps**2, axis=1))
    slope = np.polyfit(np.log(ns), np.log(rms), 1)[0]
    scaled = rms * np.sqrt(ns)
    assert abs(slope + 0.5) < 0.15, (slope, rms)
    assert scaled.max() / scaled.min() < 2.5, scaled
    assert rms[-1] < 0.02 * population.min()


def test_draw_samples_is_seeded(setup):
    a = draw_samples(setup["inputs"], N, 3)
    np.testing.assert_array_equal(a, draw_samples(setup["inputs"], N, 3))
    assert not np.allclose(a, draw_samples(setup["inputs"], N, 4)) and a.shape == (N, D)
    np.testing.assert_allclose(np.var(np.asarray(a), axis=0) / VARIANCES, 1, atol=0.8)  # scaled by Σ^{1/2}


# --------------------------------------------------------------------------------------------------
# ReLU-network targets
# --------------------------------------------------------------------------------------------------


def _within_five_se(samples, exact, name):
    """Monte Carlo means of each column of ``samples`` (N, k) against ``exact`` (k,)."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    z = np.abs(mean - np.asarray(exact)) / se
    assert np.all(z < 5), f"{name}: |MC − exact|/SE = {z}"


@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_relu_network_moments_match_monte_carlo(setup, kind):
    n_mc, rng = 1_000_000, np.random.default_rng(11)
    if kind == "gaussian":
        inputs, target = setup["inputs"], setup["target"]
        x = rng.standard_normal((n_mc, D)) * np.sqrt(VARIANCES)
    else:
        inputs = sphere_inputs(D)
        target = relu_network_target(setup["target"].inner_weights, setup["target"].outer_weights,
                                     standardize=True, inputs=inputs)
        z = rng.standard_normal((n_mc, D))
        x = math.sqrt(D) * z / np.linalg.norm(z, axis=1, keepdims=True)
    f = target_np(target, x)
    relu_f = random_features(unit_rows(rng, 6, D) * rng.uniform(0.5, 2.0, (6, 1)))
    lin_f = random_features(rng.standard_normal((3, D)), "linear")
    features = ((relu_f, "E[φ_relu f*]"), (lin_f, "E[φ_lin f*]")) if kind == "gaussian" else ((relu_f, "E[φ_relu f*]"),)
    _within_five_se(f[:, None], [relu_network_mean(target, inputs)], "E[f*]")
    _within_five_se((f**2)[:, None], [relu_network_second_moment(target, inputs)], "s*")
    centred = (f - f.mean()) ** 2
    _within_five_se(centred[:, None], [relu_network_variance(target, inputs)], "Var f*")
    np.testing.assert_allclose(relu_network_variance(target, inputs), 1.0, rtol=1e-12)  # standardised
    for feats, name in features:
        _within_five_se(features_np(feats, x) * f[:, None], target_moment(feats, target, inputs), name)


# --------------------------------------------------------------------------------------------------
# Ridge
# --------------------------------------------------------------------------------------------------

STRENGTHS = np.sort(1 / TIMES)  # μ = 1/t for the grid's times


def test_population_ridge_is_exact_against_solve(setup):
    student, teacher = setup["student"], setup["teacher"]
    res = ridge_weak_to_strong(student, teacher, setup["target"], setup["inputs"], STRENGTHS)
    g_t, c_t, s = exact_moments_np(teacher, setup)
    w_t = np.linalg.lstsq(g_t, c_t, rcond=None)[0]
    np.testing.assert_allclose(res.teacher_loss, population_loss_np(w_t, g_t, c_t, s), rtol=RTOL)
    g_s, c_s, _ = exact_moments_np(student, setup)
    b = np.asarray(gram_of(student, teacher, setup["inputs"])) @ w_t
    spectrum = jax.jit(decompose)(jnp.asarray(g_s))
    for k in (0, 13, 27, 39):
        mu = STRENGTHS[k]
        w = np.linalg.solve(g_s + mu * np.eye(M_ST), b)
        np.testing.assert_allclose(ridge_weights(spectrum, jnp.asarray(b), mu), w, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(res.student_loss[k], population_loss_np(w, g_s, c_s, s), rtol=RTOL)


@pytest.fixture(scope="module")
def trained(setup):
    """The fixture's W2S on its 24 samples and on the population (teacher and student), each with ridge."""
    args = (setup["student"], setup["teacher"], setup["target"], setup["inputs"], TIMES)
    out = {}
    for name, data in (("samples", "samples"), ("population", "population")):
        res = finite_weak_to_strong(*args, samples=setup["x"], teacher_data=data, student_data=data)
        out[name] = (res, ridge_summary(res.problem, STRENGTHS, res.teacher_loss, res.ceiling_loss))
    return out


def test_finite_ridge_is_exact_against_solve(setup, trained):
    x, (res, ridge) = setup["x"], trained["samples"]
    phi = features_np(setup["student"], x)
    labels = features_np(setup["teacher"], x) @ np.asarray(res.teacher_weights)
    gram, c, s = exact_moments_np(setup["student"], setup)
    for k in (0, 13, 27, 39):
        w = np.linalg.solve(phi.T @ phi / N + STRENGTHS[k] * np.eye(M_ST), phi.T @ labels / N)
        np.testing.assert_allclose(ridge.student_loss[k], population_loss_np(w, gram, c, s), rtol=RTOL)


def test_population_training_matches_numpy(setup, trained):
    """teacher_data = student_data = "population": w_T = G_T⁺c_T, w_S(t) = G_S⁺(I − e^{−tG_S}) G_ST w_T."""
    res, _ = trained["population"]
    g_t, c_t, s = exact_moments_np(setup["teacher"], setup)
    w_t = np.linalg.lstsq(g_t, c_t, rcond=None)[0]
    np.testing.assert_allclose(res.teacher_loss, population_loss_np(w_t, g_t, c_t, s), rtol=RTOL)
    g_s, c_s, _ = exact_moments_np(setup["student"], setup)
    b = np.asarray(gram_of(setup["student"], setup["teacher"], setup["inputs"])) @ w_t
    for k in (5, 20, 30):
        w = flow_by_expm(g_s, b, TIMES[k])
        np.testing.assert_allclose(res.student_loss[k], population_loss_np(w, g_s, c_s, s), rtol=1e-8)


def test_ridge_and_flow_are_close_but_not_equal(trained):
    """Ridge at μ and the flow at t = 1/μ: first-order equal (e^{−x} vs 1/(1 + x)), not beyond."""
    for res, ridge in trained.values():
        flow = np.asarray(res.student_loss)
        at_one_over_t = np.asarray(ridge.student_loss)[::-1]
        gap = np.abs(at_one_over_t - flow) / flow
        assert 1e-3 < gap.max() < 0.5, gap.max()  # measured 0.27 (samples), 0.31 (population)
        assert gap[0] < 0.01  # both start from w = 0
        # measured: best errors 4.4% apart on samples (ridge lower), equal on the population (both at t = ∞)
        assert abs(float(ridge.best_student_loss) / float(res.best_student_loss) - 1) < 0.15
        if np.isinf(res.best_time):  # the flow is best at convergence, ridge at μ = 0: both least squares
            assert float(ridge.best_strength) == 0.0
        else:
            assert 0.1 < float(ridge.best_strength) * float(res.best_time) < 10
        np.testing.assert_allclose(ridge.student_loss_at_zero, res.student_loss_at_infinity, rtol=1e-12)


def test_best_time_and_best_ridge_are_refined_minima(trained):
    """L(t*) is below every grid point and every point of a fine grid within 1% of t* (same for ridge);
    the fine grids have the grid's shape, so the curves are compiled once."""
    res, ridge = trained["samples"]
    t_best, loss_best = float(res.best_time), float(res.best_student_loss)
    k = int(np.argmin(res.student_loss))
    assert TIMES[k - 1] < t_best < TIMES[k + 1] and loss_best < float(np.min(res.student_loss))
    near = np.asarray(finite_loss(res.problem, jnp.asarray(np.geomspace(0.99 * t_best, 1.01 * t_best, TIMES.size))))
    assert loss_best <= near.min() * (1 + 1e-12) and near.min() <= loss_best * (1 + 1e-6)
    mu_best, ridge_best = float(ridge.best_strength), float(ridge.best_student_loss)
    j = int(np.argmin(ridge.student_loss))
    assert STRENGTHS[j - 1] < mu_best < STRENGTHS[j + 1] and ridge_best < float(np.min(ridge.student_loss))
    near = np.asarray(ridge_loss(res.problem, jnp.asarray(np.geomspace(0.99 * mu_best, 1.01 * mu_best, TIMES.size))))
    assert ridge_best <= near.min() * (1 + 1e-12) and near.min() <= ridge_best * (1 + 1e-6)


# --------------------------------------------------------------------------------------------------
# Preset, command and bad inputs
# --------------------------------------------------------------------------------------------------


def test_relu_samples_preset_writes_results(tmp_path):
    record = relu_samples_experiment(True, (0,), tmp_path, dim=D, target_units=UNITS, teacher_width=M_TE, n=N,
                                     student_widths=(M_ST,), times=TIMES)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["n"] == N and saved["config"]["student_widths"] == [M_ST]
    assert saved["per_width"][0]["route"] == "kernel" and saved["config"]["target_standardized"]
    curve = np.asarray(saved["ratio_curves"][str(M_ST)][0])
    assert curve.shape == TIMES.shape and np.all(np.isfinite(curve)) and np.all(curve > 0)
    np.testing.assert_allclose(np.min(curve), record["per_width"][0]["ratio"][0], rtol=0.05)
    rows = (tmp_path / "curves.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + TIMES.size
    assert (tmp_path / "relu_samples.png").read_bytes()[:4] == b"\x89PNG"


def test_samples_command_with_your_own_data(tmp_path, setup):
    rng = setup["rng"]
    np.save(tmp_path / "x.npy", setup["x"])
    np.save(tmp_path / "xh.npy", rng.standard_normal((M_HELD, D)))
    common = ["samples", "--teacher-width", str(M_TE), "--student-widths", str(M_ST), "--times", "-1", "5", "40",
              "--target-units", str(UNITS)]
    out = tmp_path / "out"
    assert main(common + ["--inputs", str(tmp_path / "x.npy"), "--heldout", str(tmp_path / "xh.npy"),
                          "--ridge", "--out", str(out)]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["heldout_size"] == M_HELD and "ridge" in saved["per_width"][0]
    assert (out / "samples.png").is_file() and (out / "curves.csv").is_file()
    # bad inputs: exit 2 with a message, nothing written
    np.save(tmp_path / "bad.npy", np.full((4, D), np.nan))
    for extra in (
        ["--inputs", str(tmp_path / "x.npy")],  # no held-out array
        ["--inputs", str(tmp_path / "bad.npy"), "--heldout", str(tmp_path / "xh.npy")],
        ["--inputs", str(tmp_path / "missing.npy"), "--heldout", str(tmp_path / "xh.npy")],
        ["--n", "10"],  # no --dim
        ["--n", "10", "--dim", "3", "--labels", str(tmp_path / "x.npy")],
    ):
        assert main(common + extra + ["--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_bad_inputs_raise_value_errors(setup):
    s, t, tg, inp, x = setup["student"], setup["teacher"], setup["target"], setup["inputs"], setup["x"]
    bad_calls = [
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x, route="svd"),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x[:, :3]),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=np.full((4, D), np.inf)),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=0),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES[::-1], samples=x),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x, teacher_time=0.0),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x, labels=np.ones(N + 1)),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x, heldout=x),
        lambda: finite_weak_to_strong(s, t, tg, None, TIMES, samples=x, heldout=x, student_data="population"),
        lambda: finite_weak_to_strong(s, t, tg, inp, TIMES, samples=x, teacher_data="labels"),
        lambda: finite_weak_to_strong(s, t, None, None, TIMES, samples=x),
        lambda: held_out_moments(x, y=np.ones(3)),
        lambda: held_out_moments(x),
        lambda: relu_network_target(np.ones((3, D)), np.ones(2)),
        lambda: relu_network_target(np.ones((3, D)), np.ones(3), standardize=True),
        lambda: relu_network_target(np.zeros((3, D)), np.ones(3), standardize=True, inputs=inp),
        lambda: relu_network_target(np.ones((3, D + 1)), np.ones(3), standardize=True, inputs=inp),
        lambda: ridge_weak_to_strong(s, t, tg, inp, [1.0, 0.1]),
        lambda: ridge_weak_to_strong(s, t, tg, inp, [0.0, 1.0]),
        lambda: relu_samples_experiment(True, (), None),
        lambda: relu_samples_experiment(True, (0,), None, n=0),
    ]
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"bad call {i} did not raise")


def test_figure_relu_samples_is_wired_to_the_preset(capsys, monkeypatch, tmp_path):
    """``w2sjax figure relu-samples`` runs ``relu_samples_experiment`` with the quick flag, seeds and folder."""
    import w2sjax.finite_experiment as fe
    from w2sjax.cli import main

    assert main(["figure", "relu-samples", "--precision", "float32"]) == 2
    assert "float64 only" in capsys.readouterr().err
    calls = []

    def fake(quick, seeds, out):
        calls.append((quick, seeds, out))
        return {"teacher_loss": [0.5], "per_width": [{"student_width": 8, "best_ratio_mean": 0.25}], "files": []}

    monkeypatch.setattr(fe, "relu_samples_experiment", fake)
    assert main(["figure", "relu-samples", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert calls == [(True, (0, 1), str(tmp_path))]
    assert "M_ST =     8: mean L_ST*/L_TE = 0.25" in capsys.readouterr().out
