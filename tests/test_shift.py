"""Teacher, student and test on different input laws (mixtures, full covariances, group targets), checked
against Monte Carlo, plain numpy linear algebra and invariants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.features import feature_gram, feature_target_moment, student_weights, teacher_weights
from w2sjax.inputs import (
    InputDistribution, Mixture, gaussian_mixture, group_laws, mixture_inputs, with_weights,
)
from w2sjax.kernels import unit_mean, unit_moment
from w2sjax.scoring import law_result, losses_at
from w2sjax.shift import SpuriousModel, plot_shift, shift_grid, shift_laws
from w2sjax.targets import (
    group_target, group_target_values, linear_target, network_target, sum_target, target_cross_moment,
    target_mean, target_second_moment, target_values,
)
from w2sjax.w2s import draw_groups, draw_samples

D = 4
TIMES = np.logspace(-2, 4, 30)
RNG = np.random.default_rng(7)


def _covariances():
    full = np.array([[1.0, 0.7, 0.1, 0.0], [0.7, 1.5, 0.0, 0.2], [0.1, 0.0, 0.8, -0.3], [0.0, 0.2, -0.3, 1.2]])
    diagonal = np.array([1.0, 0.5, 2.0, 1.3])
    return full, diagonal


COV_FULL, COV_DIAG = _covariances()
GROUPS = gaussian_mixture([0.5, 0.5], [COV_FULL, COV_DIAG])
P_TEACHER = with_weights(GROUPS, [0.85, 0.15])
P_STUDENT = with_weights(GROUPS, [0.6, 0.4])
P_TEST = GROUPS
V = RNG.normal(size=(3, D)) / math.sqrt(D)
BETA = RNG.normal(size=(2, D)) / math.sqrt(D)
PLAIN = sum_target(linear_target(BETA[0]), network_target(V, [0.8, -0.5, 0.6]))
TARGET = group_target(PLAIN, sum_target(linear_target(BETA[1]), network_target(V, [0.3, 0.9, -0.4])))
STUDENT = w.random_features(student_weights(0, 24, D, "relu"))
TEACHERS = [w.random_features(teacher_weights(s, 6, D, "relu")) for s in (0, 1)]


# --------------------------------------------------------------------------------------------------
# Moments of mixtures and full covariances against Monte Carlo
# --------------------------------------------------------------------------------------------------


def _numpy_draw(n, weights, covs, rng):
    groups = rng.choice(len(covs), size=n, p=weights)
    x = np.empty((n, D))
    for g, cov in enumerate(covs):
        idx = groups == g
        root = np.linalg.cholesky(cov) if cov.ndim == 2 else np.diag(np.sqrt(cov))
        x[idx] = rng.standard_normal((idx.sum(), D)) @ root.T
    return x, groups


def _within(exact, mean, se, name):
    """|exact − mean| ≤ 5 SE elementwise."""
    z = np.abs(np.asarray(exact) - mean) / se
    assert np.all(z < 5), f"{name}: max |exact − MC| / SE = {z.max():.2f}"


def _monte_carlo(statistics, n, draw, chunk=250_000):
    """Means and standard errors of ``statistics(x, groups)`` (a dict of (m, ...) arrays) over n draws, in
    chunks of ``chunk`` (sums of values and of squares)."""
    sums, squares, done = {}, {}, 0
    while done < n:
        x, groups = draw(min(chunk, n - done))
        for name, v in statistics(x, groups).items():
            sums[name] = sums.get(name, 0.0) + v.sum(axis=0)
            squares[name] = squares.get(name, 0.0) + (v**2).sum(axis=0)
        done += x.shape[0]
    mean = {k: sums[k] / n for k in sums}
    se = {k: np.sqrt(np.maximum(squares[k] / n - mean[k] ** 2, 0) / (n - 1)) for k in sums}
    return mean, se


U = np.random.default_rng(2).normal(size=(3, D))
U_OUTER = np.array([0.5, -1.0, 0.7])
U_FEATURES = w.random_features(U)
U_NETWORK = network_target(U, U_OUTER)


@jax.jit
def _exact_moments(law):
    """Every moment the Monte Carlo test checks, exactly, under one law (one compiled function)."""
    A, B, features = jnp.asarray(U), jnp.asarray(V), U_FEATURES
    return {
        "relu x relu": unit_moment("relu", 1, A, "relu", 1, A, law),
        "relu x linear": unit_moment("relu", 1, A, "linear", 1, B, law),
        "linear x linear": unit_moment("linear", 1, B, "linear", 1, B, law),
        "relu mean": unit_mean("relu", 1, A, law),
        "feature x target": feature_target_moment(features, PLAIN, law),
        "target second moment": target_second_moment(PLAIN, law),
        "feature x group target": feature_target_moment(features, TARGET, law),
        "group target second moment": target_second_moment(TARGET, law),
        "group target mean": target_mean(TARGET, law),
        "network x group target": target_cross_moment(U_NETWORK, TARGET, law),
    }


def _sampled_statistics(x, groups):
    relu, lin = np.maximum(x @ U.T, 0), x @ V.T
    f_plain = _plain_values(x)
    f_group = np.where(groups == 0, f_plain, _second_values(x))
    phi = relu / math.sqrt(U.shape[0])
    return {
        "relu x relu": relu[:, :, None] * relu[:, None, :],
        "relu x linear": relu[:, :, None] * lin[:, None, :],
        "linear x linear": lin[:, :, None] * lin[:, None, :],
        "relu mean": relu,
        "feature x target": phi * f_plain[:, None],
        "target second moment": f_plain**2,
        "feature x group target": phi * f_group[:, None],
        "group target second moment": f_group**2,
        "group target mean": f_group,
        "network x group target": (relu @ U_OUTER) * f_group,
    }


def _plain_values(x):
    """PLAIN in numpy: βᵀx + Σ_j a_j relu(v_jᵀx)."""
    return x @ BETA[0] + np.maximum(x @ V.T, 0) @ np.array([0.8, -0.5, 0.6])


def _second_values(x):
    return x @ BETA[1] + np.maximum(x @ V.T, 0) @ np.array([0.3, 0.9, -0.4])


def test_mixture_moments_against_monte_carlo():
    """10⁶ draws (numpy's sampler, independent of the library's) of a mixture of a full-covariance and a
    diagonal Gaussian group: every exact moment within 5 SE."""
    weights, rng = [0.3, 0.7], np.random.default_rng(1)
    exact = _exact_moments(with_weights(GROUPS, weights))
    mean, se = _monte_carlo(_sampled_statistics, 1_000_000, lambda m: _numpy_draw(m, weights, [COV_FULL, COV_DIAG], rng))
    for name in exact:
        _within(exact[name], mean[name], se[name], name)
    # the numpy targets are the library's
    x, groups = _numpy_draw(100, weights, [COV_FULL, COV_DIAG], rng)
    np.testing.assert_allclose(target_values(PLAIN, jnp.asarray(x)), _plain_values(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(group_target_values(TARGET, jnp.asarray(x), jnp.asarray(groups)),
                               np.where(groups == 0, _plain_values(x), _second_values(x)), rtol=1e-13, atol=1e-13)


def test_mixture_sampler():
    """The library's draws (``draw_samples``/``draw_groups``, the finite-sample route's) have the groups'
    frequencies and covariances."""
    law, n = with_weights(GROUPS, [0.3, 0.7]), 200_000
    x, groups = np.asarray(draw_samples(law, n, 3)), np.asarray(draw_groups(law, n, 3))
    is_zero = (groups == 0).astype(float)
    _within(0.3, is_zero.mean(), is_zero.std() / math.sqrt(n), "group 0 frequency")
    for g, cov in enumerate((COV_FULL, np.diag(COV_DIAG))):
        xg = x[groups == g]
        outer = xg[:, :, None] * xg[:, None, :]
        _within(cov, outer.mean(0), outer.std(0) / math.sqrt(xg.shape[0]), f"group {g} covariance")
    assert np.all(np.asarray(draw_groups(group_laws(GROUPS)[1], 200, 4)) == 1)


# --------------------------------------------------------------------------------------------------
# The engine on shifted laws
# --------------------------------------------------------------------------------------------------

FIELDS = ("student_loss", "teacher_loss", "best_time", "best_student_loss", "student_loss_at_infinity",
          "ceiling_loss", "ratio", "pgr")


def test_same_laws_equal_population():
    base = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_TEST, TIMES)
    shifted = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_TEST, TIMES, teacher_inputs=P_TEST, test_inputs=P_TEST)
    for name in FIELDS:
        a, b = np.asarray(getattr(base, name)), np.asarray(getattr(shifted, name))
        scale = 1.0 if name != "best_time" else np.abs(a)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.max(scale), err_msg=name)


def _np(a):
    return np.asarray(a, np.float64)


@jax.jit
def _law_moments(law):
    s, t = STUDENT, TEACHERS
    return {"G": feature_gram(s, s, law), "c": feature_target_moment(s, TARGET, law),
            "s": target_second_moment(TARGET, law), "GT": [feature_gram(m, m, law) for m in t],
            "cT": [feature_target_moment(m, TARGET, law) for m in t], "GST": [feature_gram(s, m, law) for m in t]}


def _moments(law):
    """Student and teacher moments under one law, as numpy arrays (the library's exact kernels; the linear
    algebra on them below is plain numpy)."""
    out = jax.tree_util.tree_map(_np, _law_moments(law))
    out["s"] = float(out["s"])
    return out


def _flow_weights(gram, b, times):
    """w(t) = Σ_i (1 − e^{−tλ_i})/λ_i q_i q_iᵀ b for each t (t = ∞: G⁻¹b), with numpy's eigh."""
    lam, q = np.linalg.eigh(gram)
    assert lam.min() > 1e3 * gram.shape[0] * np.finfo(float).eps * lam.max()  # no eigenvalue is cut
    bt = q.T @ b
    out = []
    for t in np.atleast_1d(times):
        g = 1 / lam if np.isinf(t) else -np.expm1(-t * lam) / lam
        out.append(q @ (g * bt))
    return np.array(out)


def _score(weights, gram, c, s):
    return np.einsum("ti,ij,tj->t", weights, gram, weights) - 2 * weights @ c + s


def _best(loss_of_log_t, lo=-6.0, hi=12.0):
    from scipy.optimize import minimize_scalar

    grid = np.linspace(lo, hi, 400)
    values = np.array([loss_of_log_t(u) for u in grid])
    k = int(np.argmin(values))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = minimize_scalar(loss_of_log_t, bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    return math.exp(res.x), float(res.fun)


def _dense_reference(train, teacher_law, tests, student_train=None):
    """Plain numpy: teachers least squares on teacher_law; the student's flow on ``student_train`` =
    (G, b per teacher, b for f*) or on ``train``'s moments; every score under each test law."""
    mt = _moments(teacher_law)
    m_tests = [_moments(t) for t in tests]
    wt = [np.linalg.solve(G, c) for G, c in zip(mt["GT"], mt["cT"])]
    if student_train is None:
        mu = _moments(train)
        gram = mu["G"]
        labels = [GST @ v for GST, v in zip(mu["GST"], wt)] + [mu["c"]]
    else:
        gram, labels = student_train(wt)
    out = []
    for m in m_tests:
        teacher = [v @ GT @ v - 2 * v @ cT + m["s"] for v, GT, cT in zip(wt, m["GT"], m["cT"])]
        curves, at_inf, best = [], [], []
        for b in labels:
            curves.append(_score(_flow_weights(gram, b, TIMES), m["G"], m["c"], m["s"]))
            at_inf.append(_score(_flow_weights(gram, b, [np.inf]), m["G"], m["c"], m["s"])[0])
            found = _best(lambda u: _score(_flow_weights(gram, b, [math.exp(u)]), m["G"], m["c"], m["s"])[0])
            best.append(found if found[1] < at_inf[-1] else (math.inf, at_inf[-1]))
        out.append(dict(teacher=np.array(teacher), curves=np.array(curves), at_inf=np.array(at_inf), best=best,
                        gram=gram, labels=labels, m=m))
    return out


def _check_against(result, ref, k):
    """Law k of a stacked result against the dense reference ``ref[k]``."""
    r, n = law_result(result, k), len(TEACHERS)
    np.testing.assert_allclose(r.teacher_loss, ref["teacher"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.student_loss, ref["curves"][:n], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.student_loss_at_infinity, ref["at_inf"][:n], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.best_student_loss, [b[1] for b in ref["best"][:n]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.best_time, [b[0] for b in ref["best"][:n]], rtol=1e-3)
    np.testing.assert_allclose(r.ceiling_loss, ref["best"][n][1], rtol=0, atol=1e-9)
    # the engine's t*: the numpy loss there equals the engine's L*
    for i, t in enumerate(np.asarray(r.best_time)):
        at = _score(_flow_weights(ref["gram"], ref["labels"][i], [t]), ref["m"]["G"], ref["m"]["c"], ref["m"]["s"])
        np.testing.assert_allclose(at[0], r.best_student_loss[i], rtol=0, atol=1e-9)


def test_shifted_laws_against_dense_numpy():
    tests = (P_TEST, *group_laws(P_TEST))
    result = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES, teacher_inputs=P_TEACHER,
                              test_inputs=tests)
    assert result.student_loss.shape == (3, len(TEACHERS), TIMES.size)
    reference = _dense_reference(P_STUDENT, P_TEACHER, tests)
    for k in range(3):
        _check_against(result, reference[k], k)
    # the balanced test law is the mean of its groups, at every time and at the test law's t*
    np.testing.assert_allclose(result.student_loss[0], result.student_loss[1:].mean(0), rtol=0, atol=1e-12)
    at_best = np.asarray(losses_at(result, result.best_time[0]))
    np.testing.assert_allclose(at_best[0], result.best_student_loss[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(at_best[1:].mean(0), result.best_student_loss[0], rtol=0, atol=1e-12)
    assert np.all(at_best[1:].max(0) >= result.best_student_loss[1:].max(0) - 1e-12)  # worst group at t* ≥ own best
    # law 0 of the stacked run is the single-law run
    single = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES, teacher_inputs=P_TEACHER,
                              test_inputs=P_TEST)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(law_result(result, 0), name), getattr(single, name), rtol=1e-13, atol=0)


def test_normalisation_of_mixtures_is_exact():
    """Σ_g → cΣ_g in every law and f*(x) → f*(x/√c): the same problem with time t/c."""
    c = 3.0
    scaled = lambda law: Mixture(law.weights, tuple(InputDistribution(p.covariance * c) for p in law.components))
    shrink = lambda f: sum_target(linear_target(f.terms[0].beta / math.sqrt(c)),
                                  network_target(f.terms[1].inner / math.sqrt(c), f.terms[1].outer))
    target = group_target(*(shrink(f) for f in TARGET.terms))
    tests = (P_TEST, *group_laws(P_TEST))
    base = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES, teacher_inputs=P_TEACHER, test_inputs=tests)
    moved = w.weak_to_strong(STUDENT, TEACHERS, target, scaled(P_STUDENT), TIMES / c,
                             teacher_inputs=scaled(P_TEACHER), test_inputs=tuple(scaled(t) for t in tests))
    for name in ("student_loss", "teacher_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        np.testing.assert_allclose(getattr(moved, name), getattr(base, name), rtol=1e-10, atol=0, err_msg=name)
    np.testing.assert_allclose(moved.best_time, base.best_time / c, rtol=1e-8)


def test_finite_samples_against_numpy():
    n, seed = 200, 5
    tests = (P_TEST, *group_laws(P_TEST))
    result = w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES, teacher_inputs=P_TEACHER,
                              test_inputs=tests, samples=n, sample_seed=seed)
    x = _np(draw_samples(P_STUDENT, n, seed))
    groups = np.asarray(draw_groups(P_STUDENT, n, seed))
    assert 0 < groups.mean() < 1
    truth = np.where(groups == 0, np.asarray(target_values(TARGET.terms[0], jnp.asarray(x))),
                     np.asarray(target_values(TARGET.terms[1], jnp.asarray(x))))

    def on_samples(teacher_weights_):
        phi = np.maximum(x @ _np(STUDENT.weights).T, 0) / math.sqrt(STUDENT.rows)
        labels = []
        for m, v in zip(TEACHERS, teacher_weights_):
            labels.append(phi.T @ (np.maximum(x @ _np(m.weights).T, 0) / math.sqrt(m.rows) @ v) / n)
        return phi.T @ phi / n, labels + [phi.T @ truth / n]

    reference = _dense_reference(None, P_TEACHER, tests, student_train=on_samples)
    for k in range(3):
        _check_against(result, reference[k], k)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def _one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


def test_bad_input():
    bad_cov = np.array([[1.0, 2.0], [2.0, 1.0]])
    _one_line_error(lambda: gaussian_mixture([0.5, 0.6], [np.ones(2), np.ones(2)]), "sum to 1")
    _one_line_error(lambda: gaussian_mixture([1.5, -0.5], [np.ones(2), np.ones(2)]), ">= 0")
    _one_line_error(lambda: gaussian_mixture([0.5, 0.5], [np.ones(2), bad_cov]), "positive definite")
    _one_line_error(lambda: gaussian_mixture([0.5, 0.5], [np.ones(2), np.ones(3)]), "one dimension")
    _one_line_error(lambda: gaussian_mixture([1.0], [np.ones(2), np.ones(2)]), "one per component")
    raw = Mixture(jnp.array([0.5, 0.5]), (InputDistribution(jnp.ones(D)), InputDistribution(jnp.asarray(-np.eye(D)))))
    _one_line_error(lambda: w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES, teacher_inputs=raw),
                    "positive definite")
    _one_line_error(lambda: w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES,
                                             test_inputs=gaussian_mixture([0.5, 0.5], [np.ones(3)] * 2)), "dimension")
    _one_line_error(lambda: w.weak_to_strong(STUDENT, TEACHERS, TARGET, P_STUDENT, TIMES,
                                             test_inputs=w.gaussian_inputs(D)), "2 components")
    _one_line_error(lambda: w.weak_to_strong(STUDENT, TEACHERS, PLAIN, P_STUDENT, TIMES, test_inputs=P_TEST,
                                             heldout=np.ones((5, D))), "not both")
    _one_line_error(lambda: w.weak_to_strong(STUDENT, TEACHERS, PLAIN, P_STUDENT, TIMES, teacher_inputs=P_TEACHER,
                                             samples=50, teacher_data="samples"), "teacher_inputs")
    _one_line_error(lambda: target_values(TARGET, jnp.ones((2, D))), "group")
    _one_line_error(lambda: group_target(PLAIN, linear_target(np.ones(3))), "dimension")
    _one_line_error(lambda: mixture_inputs([1.0], [GROUPS]), "InputDistribution")
    _one_line_error(lambda: shift_laws(SpuriousModel(dim=4), 1.2, 0.1), r"\[0, 1\]")
    _one_line_error(lambda: SpuriousModel(majority_correlation=1.0), "between -1 and 1")


# --------------------------------------------------------------------------------------------------
# The shift scenario
# --------------------------------------------------------------------------------------------------


def test_shift_grid_finding_and_plot():
    """The spurious-correlation grid (d = 8, M_ST = 128, M_TE = 12, two teacher seeds), exact.

    Finding: at a fixed teacher law η_ℓ, the W2S gain L_TE − L_ST* rises and the worst-group error at t*
    falls as the student's minority fraction η_u grows (past the balanced test law's 1/2 too); so the gain
    is not a function of η_u − η_ℓ: above the diagonal (η_u > η_ℓ) it beats the mirror point below it."""
    grid = shift_grid([0.1, 0.5], [0.1, 0.5, 0.9], model=SpuriousModel(), student_width=128, teacher_width=12,
                      teacher_seeds=(0, 1), times=TIMES)
    assert grid.gain.shape == (2, 3, 2) and grid.group_loss.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(grid.gain, grid.teacher_loss - grid.best_student_loss, rtol=0, atol=0)
    # balanced test law: the test error at t* is the mean of the groups' errors there
    np.testing.assert_allclose(grid.group_loss.mean(-1), grid.best_student_loss, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grid.teacher_group_loss.mean(-1), grid.teacher_loss, rtol=0, atol=1e-12)
    assert np.all(grid.worst_group_loss >= grid.best_student_loss - 1e-12)
    assert np.all(grid.group_best_loss <= grid.group_loss + 1e-12)
    # the teacher's law matters to the teacher only, and a balanced one does better on the balanced test law
    assert np.all(grid.teacher_loss == grid.teacher_loss[:, :1])
    assert np.all(grid.teacher_loss[1] < grid.teacher_loss[0])
    # the finding, for every teacher seed
    assert np.all(np.diff(grid.gain, axis=1) > 0), grid.gain
    assert np.all(np.diff(grid.worst_group_loss, axis=1) < 0), grid.worst_group_loss
    assert np.all(grid.gain[0, 1] > grid.gain[1, 0])  # (η_ℓ, η_u) = (0.1, 0.5) against (0.5, 0.1)
    assert np.all(grid.gain > 0)
    fig = plot_shift(grid)
    assert len(fig.axes) == 4  # two heatmaps and their colour bars
    assert grid.to_dict()["model"]["dim"] == 8
