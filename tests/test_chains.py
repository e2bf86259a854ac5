"""Chains of students (teacher → S_1 → … → S_K) against an independent composition in numpy, known limits,
the Krylov route, scale normalisation and bad input."""

import json
import math

import jax
import numpy as np
import pytest
from scipy.optimize import brentq

import w2sjax as w
from w2sjax.engine import DEFAULT_TOL
from w2sjax.chains import chain, chain_stage_weights, chain_stages, stage_function
from w2sjax.features import student_weights
from w2sjax.spectral import Decomposition, SpectralProblem

D = 8
TIMES = np.logspace(-1, 5, 40)
WIDTHS = (24, 40, 32)
TEACHER_WIDTH = {"relu": 8, "linear": 5}  # linear: fewer than d, so the teacher misses part of f*'s linear part
EPS = np.finfo(np.float64).eps


def law(variance=1.0):
    return w.gaussian_inputs(D, variances=np.full(D, variance))


def target(scale=1.0):
    beta = np.zeros(D)
    beta[0] = 1.0
    gamma = np.zeros(D)
    gamma[1] = 1.0
    return w.sum_target(w.linear_target(scale * beta), w.hermite_target(gamma, 2, scale=0.5 * scale))


def random_weights(seed, width, dim=D, activation="relu"):
    """ReLU rows uniform on the unit sphere, linear entries N(0, 1/d) (numpy, so tests compile nothing here)."""
    z = np.random.default_rng(seed).normal(size=(width, dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True) if activation == "relu" else z / math.sqrt(dim)


def models(seed, widths, activation="relu", dim=D):
    return tuple(w.random_features(random_weights(seed + 1000 * k, m, dim, activation), activation)
                 for k, m in enumerate(widths))


def teachers(activation="relu", seeds=(0, 1)):
    return [models(100 + s, (TEACHER_WIDTH[activation],), activation)[0] for s in seeds]


# --------------------------------------------------------------------------------------------------
# The independent composition: dense moments, numpy eigh, w(t) = Q diag((1 − e^{−tλ})/λ) Qᵀ b
# --------------------------------------------------------------------------------------------------

MOMENT_ROWS = 128


@jax.jit
def _raw_moments(features, f_star, inputs):
    return w.feature_gram(features, features, inputs), w.feature_target_moment(features, f_star, inputs)


def np_moments(features, f_star, inputs):
    """[E[φ_a φ_bᵀ] for every pair], [E[φ_a f*]] as numpy arrays: one exact-moment call on all units stacked
    (padded to MOMENT_ROWS rows, so every test shares one compiled call), then split and scaled by 1/√(M_a M_b)."""
    rows = [f.rows for f in features]
    stacked = np.concatenate([np.asarray(f.weights) for f in features])
    padded = np.zeros((max(MOMENT_ROWS, len(stacked)), stacked.shape[1]))
    padded[: len(stacked)] = stacked
    unit = w.RandomFeatures(padded, np.float64(1.0), features[0].activation)
    gram, moment = (np.asarray(x, np.float64) for x in _raw_moments(unit, f_star, inputs))
    edges = np.cumsum([0] + rows)
    scale = [math.sqrt(float(f.width)) for f in features]
    grams = {(i, j): gram[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] / (scale[i] * scale[j])
             for i in range(len(rows)) for j in range(len(rows))}
    targets = [moment[edges[i]:edges[i + 1]] / scale[i] for i in range(len(rows))]
    return grams, targets


def np_student(gram, b, c, s_star):
    """(λ (kept, cut to 0), Q, a = Qᵀb/√λ, a* = Qᵀc/√λ, R) with numpy's eigh and the M·ε cutoff."""
    lam, q = np.linalg.eigh(gram)
    lam = np.where(lam > gram.shape[0] * EPS * lam.max(), lam, 0.0)
    kept = lam > 0
    root = np.where(kept, np.sqrt(np.where(kept, lam, 1.0)), np.inf)
    a = (q.T @ b) / root
    a_star = (q.T @ c) / root
    return lam, q, a, a_star, max(s_star - np.sum(a_star**2), 0.0)


def np_response(lam, t):
    """ρ = 1 − e^{−tλ} on kept eigenvalues, (len(t), r) for an array of times; ∞: 1."""
    t = np.asarray(t, np.float64)[..., None]
    finite = np.where(np.isinf(t), 1.0, t)
    return np.where(lam > 0, np.where(np.isinf(t), 1.0, -np.expm1(-finite * lam)), 0.0)


def np_loss(lam, a, a_star, residual, t):
    """L(t) = Σ (ρ_i a_i − a*_i)² + R = Σ λ_i (g_i b̃_i − c̃_i/λ_i)² + R_S, at one time or an array of times."""
    return np.sum((np_response(lam, t) * a - a_star) ** 2, axis=-1) + residual


def np_best_time(lam, a, a_star, residual, s_star):
    """argmin_t L(t): a dense log grid over the whole spectrum, then a root of dL/d(log t) by brentq."""
    kept = lam[lam > 0]
    u = np.linspace(math.log(1e-3 / kept.max()), math.log(1e3 / kept.min()), 4001)
    losses = np_loss(lam, a, a_star, residual, np.exp(u))
    k = int(np.argmin(losses))
    if k == len(u) - 1 or np_loss(lam, a, a_star, residual, math.inf) <= losses[k] + 64 * EPS * s_star:
        return math.inf

    def slope(x):
        t = math.exp(x)
        rho = np_response(lam, t)
        return float(np.sum(2 * (rho * a - a_star) * a * np.where(lam > 0, t * lam * np.exp(-t * lam), 0.0)))

    return math.exp(brentq(slope, u[k - 1], u[k + 1], xtol=1e-15, rtol=4 * EPS, maxiter=500))


def np_chain(stages, teacher_models, f_star, inputs, times, stage_times):
    """Per teacher: L_TE and, per stage, (curve, t*, L*, L(∞), R, τ) composed explicitly stage by stage."""
    s_star = float(w.target_second_moment(f_star, inputs))
    grams, moments = np_moments(list(teacher_models) + list(stages), f_star, inputs)
    first = len(teacher_models)
    out = []
    for i in range(len(teacher_models)):
        lam, q, a, a_star, residual = np_student(grams[i, i], moments[i], moments[i], s_star)
        teacher_loss = float(np_loss(lam, a, a_star, residual, math.inf))
        previous, weights = i, q @ (np.where(lam > 0, 1 / np.where(lam > 0, lam, 1), 0) * (q.T @ moments[i]))
        rows = []
        for k in range(len(stages)):
            j = first + k
            b = grams[j, previous] @ weights  # b_k = G_{k,k−1} w_{k−1}(τ_{k−1})
            lam, q, a, a_star, residual = np_student(grams[j, j], b, moments[j], s_star)
            curve = np_loss(lam, a, a_star, residual, times)
            best = np_best_time(lam, a, a_star, residual, s_star)
            row = dict(curve=curve, best_time=best, best_loss=float(np_loss(lam, a, a_star, residual, best)),
                       at_infinity=float(np_loss(lam, a, a_star, residual, math.inf)), ceiling=residual, tau=None)
            if k < len(stages) - 1:
                tau = best if stage_times == "best" or stage_times[k] == "best" else float(stage_times[k])
                g = np.where(lam > 0, np_response(lam, tau) / np.where(lam > 0, lam, 1), 0.0)
                weights = q @ (g * (q.T @ b))  # w(τ) = Q diag((1 − e^{−τλ})/λ) Qᵀ b
                previous = j
                row["tau"] = tau
            rows.append(row)
        out.append((teacher_loss, rows))
    return out


def assert_matches(result, reference, atol=1e-10):
    for i, (teacher_loss, rows) in enumerate(reference):
        one = result.select(i)
        assert len(one) == len(rows)
        for k, (stage, row) in enumerate(zip(one, rows)):
            where = f"teacher {i}, stage {k + 1}"
            np.testing.assert_allclose(float(stage.teacher_loss), teacher_loss, rtol=0, atol=atol, err_msg=where)
            np.testing.assert_allclose(np.asarray(stage.student_loss), row["curve"], rtol=0, atol=atol, err_msg=where)
            np.testing.assert_allclose(float(stage.best_student_loss), row["best_loss"], rtol=0, atol=atol, err_msg=where)
            np.testing.assert_allclose(float(stage.student_loss_at_infinity), row["at_infinity"], rtol=0, atol=atol,
                                       err_msg=where)
            np.testing.assert_allclose(float(stage.ceiling_loss), row["ceiling"], rtol=0, atol=atol, err_msg=where)
            np.testing.assert_allclose(float(stage.ratio), row["best_loss"] / teacher_loss, rtol=1e-9, err_msg=where)
            if math.isinf(row["best_time"]):
                assert math.isinf(float(stage.best_time)), where
            else:
                np.testing.assert_allclose(float(stage.best_time), row["best_time"], rtol=1e-8, err_msg=where)
            if row["tau"] is not None:
                tau = float(one.label_times[k])
                assert tau == row["tau"] or math.isclose(tau, row["tau"], rel_tol=1e-8), where


CASES = [  # linear features: G has rank d < M (eigh cuts the rest; factor works in R^d)
    ("relu", WIDTHS, "best", "eigh"),
    ("relu", WIDTHS[:2], [30.0], "eigh"),
    ("relu", WIDTHS, ["best", 200.0], "eigh"),
    ("linear", WIDTHS, [5.0, math.inf], "factor"),
    ("linear", WIDTHS[:2], "best", "eigh"),
]


@pytest.mark.parametrize("activation, widths, stage_times, method", CASES)
def test_chain_matches_independent_composition(activation, widths, stage_times, method):
    stages = models(3, widths, activation)
    teacher_models = teachers(activation)
    inputs, f_star = law(), target()
    result = chain(stages, teacher_models, f_star, inputs, TIMES, stage_times=stage_times, method=method)
    reference = np_chain(stages, teacher_models, f_star, inputs, TIMES, stage_times)
    assert_matches(result, reference)
    assert result.label_times.shape == (len(widths) - 1, len(teacher_models))
    # not trivially satisfied: each stage's curve differs from the one before it
    for before, after in zip(result, result.stages[1:]):
        assert np.max(np.abs(before.student_loss - after.student_loss)) > 1e-3


def test_scale_normalisation_against_the_unnormalised_composition():
    """Weights ×3 (not a power of two), input variance 3, f* ×5: the chain in the problem's own units."""
    stages = tuple(w.random_features(3.0 * np.asarray(s.weights), "relu") for s in models(3, WIDTHS))
    teacher_models = [w.random_features(0.3 * np.asarray(t.weights), "relu") for t in teachers()]
    inputs, f_star = law(3.0), target(5.0)
    times = TIMES / 27.0
    result = chain(stages, teacher_models, f_star, inputs, times, stage_times=["best", 10.0], method="eigh")
    reference = np_chain(stages, teacher_models, f_star, inputs, times, ["best", 10.0])
    assert_matches(result, reference, atol=1e-10 * 25 * 1.25)  # s* = 25 · 1.25 here: the same relative accuracy


# --------------------------------------------------------------------------------------------------
# Known limits
# --------------------------------------------------------------------------------------------------


def test_second_student_equal_to_the_first_recovers_its_function():
    """S_2 = S_1 trained to ∞ on f_1(τ) ∈ span(S_1) returns f_1(τ): L_2(∞) = L_1(τ) (τ = t*_1 or given)."""
    stage = models(5, WIDTHS[:1])[0]
    teacher_models, inputs, f_star = teachers(), law(), target()
    best = chain((stage, stage), teacher_models, f_star, inputs, TIMES, method="eigh")
    np.testing.assert_allclose(best[1].student_loss_at_infinity, best[0].best_student_loss, rtol=1e-11, atol=0)
    np.testing.assert_array_equal(best.label_times[0], best[0].best_time)
    given = chain((stage, stage), teacher_models, f_star, inputs, TIMES, stage_times=[7.0], method="eigh")
    at_tau = w.student_loss(given[0].problem, np.array([7.0]))[:, 0]
    np.testing.assert_allclose(given[1].student_loss_at_infinity, at_tau, rtol=1e-11, atol=0)
    assert np.all(np.abs(given[1].student_loss_at_infinity - best[1].student_loss_at_infinity) > 1e-4)


def test_first_stage_with_the_teachers_features_mimics_the_teacher():
    """Stage 1 = teacher 0's features trained to ∞ on f_T is f_T: L_1(∞) = L_TE, and stage 2 is the ordinary
    student of that teacher (``weak_to_strong``); a one-stage chain is ``weak_to_strong`` too."""
    teacher_models = teachers()
    student = models(3, WIDTHS[:1])[0]
    inputs, f_star = law(), target()
    result = chain((teacher_models[0], student), teacher_models, f_star, inputs, TIMES, stage_times=[math.inf],
                   method="eigh").select(0)
    np.testing.assert_allclose(result[0].student_loss_at_infinity, result.teacher_loss, rtol=1e-11)
    direct = w.weak_to_strong(student, teacher_models, f_star, inputs, TIMES, method="eigh")
    for name in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss", "ratio", "pgr",
                 "teacher_loss"):
        np.testing.assert_allclose(getattr(result[1], name), getattr(direct, name)[0], rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(result[1].best_time, direct.best_time[0], rtol=1e-8)
    alone = chain((student,), teacher_models, f_star, inputs, TIMES, method="eigh")
    assert len(alone) == 1 and alone.label_times.shape == (0, 2)
    np.testing.assert_array_equal(alone[0].student_loss, direct.student_loss)
    np.testing.assert_array_equal(alone[0].ratio, direct.ratio)


# --------------------------------------------------------------------------------------------------
# The Krylov route
# --------------------------------------------------------------------------------------------------


def test_krylov_chain_matches_eigh():
    """ReLU, d = 32, stages of 512, 128, 128: stage 1 labels at its t* from the Krylov basis V_k S, stage 2 at ∞
    (conjugate gradients). Every figure agrees with eigh within the two routes' error estimates plus the Krylov
    tolerance; stage 3's estimate carries the error of its labels."""
    d = 32
    inputs = w.gaussian_inputs(d)
    f_star = w.linear_target(np.eye(d)[0])
    teacher = models(0, (16,), dim=d)[0]
    stages = models(1, (512, 128, 128), dim=d)
    times = np.logspace(-1, 4, 24)
    stage_times = ["best", math.inf]
    exact = chain(stages, teacher, f_star, inputs, times, stage_times=stage_times, method="eigh")
    krylov = chain(stages, teacher, f_star, inputs, times, stage_times=stage_times, method="krylov",
                   operator="stored")
    tolerance = DEFAULT_TOL * float(w.target_second_moment(f_star, inputs))
    for k, (a, b) in enumerate(zip(exact, krylov), start=1):
        assert b.route.method == "krylov" and b.route.converged and a.route.method == "eigh"
        for name in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
            err = np.max(np.abs(np.asarray(getattr(a, name)) - np.asarray(getattr(b, name))))
            bound = np.max(np.asarray(getattr(a.error, name)) + np.asarray(getattr(b.error, name))) + tolerance
            assert err <= bound, (k, name, err, bound)
        rtol = 1e-9 + float(a.error.best_time + b.error.best_time)
        np.testing.assert_allclose(float(b.best_time), float(a.best_time), rtol=rtol, err_msg=f"stage {k}")
    np.testing.assert_allclose(krylov.label_times, exact.label_times, rtol=1e-9)
    # labels at a finite t* inherit nothing measurable; labels from conjugate gradients do, and say so
    assert float(krylov[1].error.best_student_loss) < 1e-11
    assert float(krylov[2].error.best_student_loss) > 1e3 * float(exact[2].error.best_student_loss)


# --------------------------------------------------------------------------------------------------
# Bad input, the hook for stages without a basis, output
# --------------------------------------------------------------------------------------------------


def _small():
    return models(3, WIDTHS), teachers()[0], target(), law()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(stage_times=[1.0]), "stage_times has 1 entries but a chain of 3 stages needs 2"),
        (dict(stage_times=[1.0, 2.0, 3.0]), "needs 2"),
        (dict(stage_times=[1.0, -2.0]), r"stage_times\[1\] \(stage 2\) must be 'best' or a time >= 0"),
        (dict(stage_times=[math.nan, 2.0]), r"stage_times\[0\] \(stage 1\)"),
        (dict(stage_times=["bset", 2.0]), "must be 'best' or a time"),
        (dict(stage_times=3.0), "stage_times must be 'best' or a sequence of 2 entries"),
        (dict(method=["eigh", "eigh"]), "one per stage"),
        (dict(method="qr"), "unknown method"),
    ],
)
def test_bad_chain_options(change, message):
    stages, teacher, f_star, inputs = _small()
    with pytest.raises(ValueError, match=message) as info:
        chain(stages, teacher, f_star, inputs, TIMES, **change)
    assert "\n" not in str(info.value)


def test_bad_stages():
    stages, teacher, f_star, inputs = _small()
    wrong_dim = models(0, (24,), dim=D + 1)[0]
    with pytest.raises(ValueError, match="stage 2 features have input dimension 9 but the inputs have dimension 8"):
        chain((stages[0], wrong_dim), teacher, f_star, inputs, TIMES)
    with pytest.raises(ValueError, match="non-empty sequence"):
        chain((), teacher, f_star, inputs, TIMES)
    with pytest.raises(ValueError, match="stage 2 must be RandomFeatures"):
        chain((stages[0], "relu"), teacher, f_star, inputs, TIMES)
    with pytest.raises(ValueError, match="times must be > 0"):
        chain(stages, teacher, f_star, inputs, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="stage must be an integer >= 1"):
        chain_stage_weights(0, 0, 4, D, "relu")


def test_an_infinitely_wide_last_stage_learns_its_labels_exactly():
    """M = ∞ as the last stage: trained to convergence it recovers the previous stage's function at τ, so
    L_∞(∞) = L_{K−1}(τ); stopped early it is an ordinary infinitely wide student of that function. Only the last
    stage may be infinitely wide."""
    stages = (*models(3, WIDTHS[:1]), w.infinite_features(D))
    f_star = w.linear_target(np.eye(D)[0])
    for stage_times in ("best", [30.0]):
        result = chain(stages, teachers(), f_star, law(), TIMES, stage_times=stage_times, method="eigh")
        first, last = result
        assert last.route.method == "infinite"
        if stage_times == "best":
            at_tau = np.asarray(first.best_student_loss)
        else:
            one = w.weak_to_strong(stages[0], teachers(), f_star, law(), np.array([29.0, 30.0, 31.0]), method="eigh")
            at_tau = np.asarray(one.student_loss)[:, 1]
        np.testing.assert_allclose(np.asarray(last.student_loss_at_infinity), at_tau, rtol=1e-10)
        assert np.all(np.asarray(last.best_student_loss) <= np.asarray(last.student_loss_at_infinity))
    with pytest.raises(ValueError, match="stage 1 is infinitely wide: only the last stage may be"):
        chain((w.infinite_features(D), stages[0]), teachers(), f_star, law(), TIMES)


def test_a_teacher_stopped_early_labels_the_chain_as_it_labels_a_student():
    """teacher_time: the chain's teacher is weak_to_strong's teacher at that time, at any weight scale."""
    stages = tuple(w.random_features(3.0 * np.asarray(s.weights), "relu") for s in models(3, WIDTHS[:2]))
    teacher_models = [w.random_features(0.3 * np.asarray(t.weights), "relu") for t in teachers()]
    result = chain(stages, teacher_models, target(), law(), TIMES, teacher_time=5.0)
    single = w.weak_to_strong(stages[0], teacher_models, target(), law(), TIMES, teacher_time=5.0)
    np.testing.assert_allclose(np.asarray(result.teacher_loss), np.asarray(single.teacher_loss), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(result[0].student_loss), np.asarray(single.student_loss), rtol=1e-10)
    least_squares = w.weak_to_strong(stages[0], teacher_models, target(), law(), TIMES)
    assert np.all(np.asarray(single.teacher_loss) > np.asarray(least_squares.teacher_loss) + 1e-3)


def test_stage_without_basis_cannot_label_the_next():
    stage = models(3, WIDTHS[:1])[0]
    problem = SpectralProblem(np.ones(24), np.ones((1, 24)), np.ones((1, 24)), np.zeros(1))
    with pytest.raises(ValueError, match="stage 2 has no weight basis .* cannot label stage 3"):
        stage_function(stage, Decomposition(problem, None), np.ones(1), stage=2)


def test_seeds_and_output():
    """Stage 1 of chain seed s is the student of seed s; later stages are independent draws; to_dict is JSON."""
    stages = chain_stages(7, WIDTHS[:1] * 2, D)
    np.testing.assert_array_equal(stages[0].weights, student_weights(7, WIDTHS[0], D, "relu"))
    assert not np.allclose(stages[1].weights, stages[0].weights)
    np.testing.assert_array_equal(stages[1].weights, chain_stage_weights(7, 2, WIDTHS[0], D, "relu"))
    result = chain(stages, teachers(), target(), law(), TIMES, stage_times=[math.inf])
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert out["label_times"] == [["inf", "inf"]] and len(out["stages"]) == 2
    assert out["stages"][1]["teacher_loss"] == np.asarray(result.teacher_loss).tolist()
    one = result.select(1)
    assert one.label_times.shape == (1,) and float(one[1].best_student_loss) == float(result[1].best_student_loss[1])
