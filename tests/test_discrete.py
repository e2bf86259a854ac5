"""Discrete-step training with optax against the closed forms, and the cross-check's verdicts."""

import argparse
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from w2sjax import discrete
from w2sjax.commands import crosscheck as crosscheck_command
from w2sjax.crosscheck import (
    GD,
    CrosscheckConfig,
    crosscheck_models,
    diverged_rows,
    fitted_order,
    flow_optimum,
    online_statistics,
    order_uncertainty,
)
from w2sjax.curves import gd_decay, gd_loss, gd_response, loss_at_infinity, student_loss
from w2sjax.features import feature_target_moment, random_features
from w2sjax.inputs import gaussian_inputs
from w2sjax.objectives import Law, Objective, Samples
from w2sjax.targets import linear_target, target_second_moment
from w2sjax.w2s import as_batch, fit_teachers, weights_at


def make_problem(dim, teacher_width, student_width, seed=0):
    config = CrosscheckConfig(dim=dim, teacher_width=teacher_width, student_width=student_width, seed=seed)
    student, teacher, target, inputs = crosscheck_models(config)
    objective = discrete.student_objective(student, teacher, target, inputs)
    training = discrete.population_training(objective)
    return dict(
        student=student, teacher=teacher, target=target, inputs=inputs, objective=objective, training=training,
        labels=discrete.label_function(objective), problem=training.problem,
    )


@pytest.fixture(scope="module")
def medium():
    """ReLU, d = 8, M_TE = 16, M_ST = 64: t* ≈ 178, L_ST* ≈ 0.33, λ in [7.7e-5, 0.17]."""
    return make_problem(8, 16, 64)


@pytest.fixture(scope="module")
def teacher_training(medium):
    objective = discrete.teacher_objective(medium["teacher"], medium["target"], medium["inputs"])
    return discrete.population_training(objective)


@pytest.fixture(scope="module")
def medium_online(medium):
    """Online SGD on the medium student: batches of 1024 with teacher labels, η = 1 (ηλ_max = 0.17), 4 seeds,
    up to 2.5 t*."""
    t_star, _ = flow_optimum(medium["problem"])
    steps = np.arange(int(np.ceil(2.5 * t_star)) + 1)
    runs = discrete.online_runs(
        medium["training"], medium["student"], medium["labels"], medium["inputs"], GD, steps,
        batch_size=1024, seeds=range(4), hyperparams={"learning_rate": 1.0},
    )
    return steps, np.asarray(runs.errors)


flow_error = jax.jit(student_loss)


def test_population_error_is_the_mean_square_error(medium):
    """Σ(√λ qᵀw − a*)² + R equals the direct wᵀGw − 2wᵀc + s* (c = E[φ f*]) for arbitrary weights; it is s* at
    w = 0 and L_ST(∞) at G⁺b."""
    training = medium["training"]
    c = np.asarray(feature_target_moment(medium["student"], medium["target"], medium["inputs"]))
    s_star = float(target_second_moment(medium["target"], medium["inputs"]))
    w = np.random.default_rng(3).normal(size=(5, training.width)) * 0.3
    w_inf = np.asarray(weights_at(training.decomposition, np.inf))
    w = np.concatenate([w, np.zeros_like(w[:1]), w_inf[None]])
    gram = np.asarray(training.gram)
    direct = np.einsum("bi,ij,bj->b", w, gram, w) - 2 * w @ c + s_star
    careful = np.asarray(discrete.population_error(training, jnp.asarray(w)))
    np.testing.assert_allclose(careful, direct, rtol=1e-10, atol=1e-13)
    assert float(careful[5]) == pytest.approx(s_star, rel=1e-12)
    assert float(careful[6]) == pytest.approx(float(loss_at_infinity(medium["problem"])), rel=1e-9)


@pytest.mark.parametrize("step_size", [1.0, 8.0])  # 8: ηλ_max ≈ 1.4 > 1, the decay 1 − ηλ is negative
def test_optax_sgd_matches_discrete_closed_form(medium, step_size):
    """1000 steps of optax sgd on the population objective = Q diag((1 − (1 − ηλ)^k)/λ) Qᵀ b, to 1e-10."""
    training, problem = medium["training"], medium["problem"]
    assert float(step_size * problem.eigenvalues.max()) > 1 or step_size == 1.0
    steps = np.arange(1001)
    run = discrete.train_population(training, GD, steps, record_weights=True, hyperparams={"learning_rate": step_size})
    closed = gd_loss(problem, step_size, jnp.asarray(steps))
    assert np.max(np.abs(np.asarray(run.errors) - np.asarray(closed))) <= 1e-10
    np.testing.assert_array_equal(run.steps, steps)
    # the weights too, at a few steps
    some = np.array([0, 1, 7, 100, 1000])
    closed_w = np.asarray(discrete.gd_weights(training, step_size, jnp.asarray(some)))
    run_w = np.asarray(run.weights)[some]
    assert np.max(np.abs(run_w - closed_w)) <= 1e-10 * np.max(np.abs(closed_w))
    np.testing.assert_array_equal(run.final_weights, run_w[-1])
    # a stable run (ηλ_max < 2) stays below the stable-GD bound
    assert not diverged_rows(np.asarray(run.errors)[None], float(discrete.stable_gd_error_bound(problem)))[0]


def test_teacher_gd_matches_closed_form_and_tends_to_teacher_fit(medium, teacher_training):
    """The teacher on true labels: GD = closed form (b = c_T), and it tends to ``fit_teachers``' w_T = G_T⁺c_T
    with error L_TE = s* − c_Tᵀw_T."""
    problem = teacher_training.problem
    steps = np.arange(0, 20001, 20)
    run = discrete.train_population(teacher_training, GD, steps, hyperparams={"learning_rate": 4.0})
    closed = gd_loss(problem, 4.0, jnp.asarray(steps))
    assert np.max(np.abs(np.asarray(run.errors) - np.asarray(closed))) <= 1e-10
    fit = fit_teachers(as_batch(medium["teacher"]), medium["target"], Law(medium["inputs"]))
    w_teacher = np.asarray(fit.weights[0])
    teacher_loss = 1.0 - np.asarray(teacher_training.label_moment) @ w_teacher  # s* = E[x_1²] = 1
    assert float(run.errors[-1]) == pytest.approx(teacher_loss, rel=1e-8)
    np.testing.assert_allclose(run.final_weights, w_teacher, rtol=1e-6, atol=1e-8)


def test_closed_form_response_edge_cases():
    """A cut eigenvalue (λ = 0) does not move; tiny ηλ keeps its accuracy (expm1); ηλ > 1 alternates in sign."""
    lam = jnp.array([0.0, 1e-14, 0.1, 1.5])
    k = jnp.asarray(3)
    response = gd_response(lam, 1.0, k)
    exact = np.array([0.0, 3e-14 - 3e-28, 1 - 0.9**3, 1 - (-0.5) ** 3])
    np.testing.assert_allclose(response, exact, rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(response)[1:] / np.asarray(lam)[1:],
                               [3.0 - 3e-14, (1 - 0.9**3) / 0.1, (1 - (-0.5) ** 3) / 1.5], rtol=1e-13)
    decay = gd_decay(lam, 1.0, k)
    np.testing.assert_allclose(decay, [1.0, 1 - 3e-14, 0.9**3, (-0.5) ** 3], rtol=1e-13)


def test_gd_tends_to_flow_at_first_order(medium):
    """max_k |L_GD(k) − L_GF(kη)| is O(η) (fitted order in [0.8, 1.2]) and below the a-priori bound.

    All step sizes run in one compiled call (optax.inject_hyperparams); L_GD is the optax run's error."""
    training, problem = medium["training"], medium["problem"]
    etas = np.array([4.0, 2.0, 1.0, 0.5])
    n_steps = np.ceil(1000 / etas).astype(int)  # to t = 1000 ≈ 5.6 t*
    record = np.minimum(np.arange(n_steps.max() + 1)[None, :], n_steps[:, None])
    runs = discrete.population_runs(training, GD, record, {"learning_rate": jnp.asarray(etas)})
    deviations = []
    for i, eta in enumerate(etas):
        k = record[i]
        err = np.asarray(runs.errors[i])
        assert np.max(np.abs(err - np.asarray(gd_loss(problem, eta, jnp.asarray(k))))) <= 1e-10
        deviations.append(np.max(np.abs(err - np.asarray(flow_error(problem, k * eta)))))
        assert deviations[-1] <= float(discrete.gd_flow_bound(problem, eta))
    order = fitted_order(etas, deviations)
    assert 0.8 <= order <= 1.2, (order, deviations)
    assert order_uncertainty(etas, deviations, np.full(4, 1e-10)) < 1e-6  # the fit is informative
    # the closed-form weights tend to the flow's at t = kη = 50, at first order in η
    gaps = []
    w_gf = np.asarray(weights_at(training.decomposition, 50.0))
    for eta in (0.1, 0.05, 0.025, 0.0125, 0.00625):
        k = jnp.array([round(50 / eta)])
        w_gd = np.asarray(discrete.gd_weights(training, eta, k))[0]
        gaps.append(np.linalg.norm(w_gd - w_gf) / np.linalg.norm(w_gf))
    assert gaps[-1] < 1e-3 and 0.9 <= fitted_order((0.1, 0.05, 0.025, 0.0125, 0.00625), gaps) <= 1.1


def test_order_uncertainty_is_the_worst_case_slope_error():
    """The bound equals the largest slope change over every sign pattern of the log-errors (it is attained), and
    deviations at the level of their own uncertainty have no order (∞)."""
    etas = np.array([4.0, 2.0, 1.0, 0.5])
    dev = 1e-3 * etas * np.array([1.0, 1.1, 0.95, 1.02])
    delta = dev * np.array([0.01, 0.03, 0.02, 0.05])
    bound = order_uncertainty(etas, dev, delta)
    base = fitted_order(etas, dev)
    worst = 0.0
    for signs in itertools.product((-1.0, 1.0), repeat=4):
        e = -np.log1p(-delta / dev)  # the larger of the two log-shifts, −log(1 − δ/D) ≥ log(1 + δ/D)
        shifted = dev * np.exp(np.asarray(signs) * e)
        worst = max(worst, abs(fitted_order(etas, shifted) - base))
    assert worst == pytest.approx(bound, rel=1e-9)
    assert order_uncertainty(etas, dev, np.array([0, 0, 0, dev[3]])) == np.inf
    assert order_uncertainty(etas, np.array([1e-3, 0, 1e-3, 1e-3]), np.zeros(4)) == np.inf


def test_online_sgd_reproduces_flow_best_error(medium, medium_online):
    """Online SGD reaches the flow's L_ST* near t*.

    The SGD best error is the minimum of the seed-averaged curve and must lie within 5 standard errors of L_ST*;
    the checks must be tight enough to tell t* from t*/2 and 2t* (else they would be empty)."""
    problem = medium["problem"]
    t_star, l_star = flow_optimum(problem)
    steps, errors = medium_online
    assert np.all(np.isfinite(errors))
    assert errors[:, 0] == pytest.approx(float(target_second_moment(medium["target"], medium["inputs"])))
    stats = online_statistics(errors, steps, 1.0, problem)
    se = stats["sgd_best_error_se"]
    assert 0 < se
    assert abs(stats["best_error_difference"]) <= 5 * se, stats
    assert stats["best_error_status"] == "passed" and stats["best_time_status"] == "passed", stats
    assert stats["best_time_passed"], stats
    assert abs(stats["best_time_difference"]) <= stats["best_time_tolerance"], stats
    excess = np.asarray(flow_error(problem, np.array([t_star / 2, 2 * t_star]))) - l_star
    assert 5 * se < float(excess.min())
    assert t_star / 2 < stats["flow_basin"][0] and stats["flow_basin"][1] < 2 * t_star
    assert stats["best_time_tolerance"] < t_star / 2
    # the informativeness rule, recomputed: (5 + 2) SE below the excess at t*/2 and 2t*
    assert stats["best_error_resolution"] == pytest.approx(float(excess.min()), rel=1e-9)
    assert 7 * se <= float(excess.min())


def test_online_check_is_inconclusive_when_its_noise_hides_a_factor_two(medium, medium_online):
    """The same runs with the seed spread inflated until (5 + 2) SE exceeds the flow's excess at t*/2, 2t*:
    every statistical verdict is "inconclusive" (not passed), although the differences are within 5 SE."""
    problem = medium["problem"]
    steps, errors = medium_online
    stats = online_statistics(errors, steps, 1.0, problem)
    mean = errors.mean(axis=0)
    for scale, verdict in ((1.0, "passed"), (40.0, "inconclusive")):
        noisy = mean + scale * (errors - mean)  # same mean curve, spread × scale
        s = online_statistics(noisy, steps, 1.0, problem)
        assert s["sgd_best_error_se"] == pytest.approx(scale * stats["sgd_best_error_se"], rel=1e-6)
        assert s["best_error_status"] == verdict, s
        assert s["best_error_passed"] is (verdict == "passed")
        if verdict == "inconclusive":
            assert abs(s["best_error_difference"]) <= 5 * s["sgd_best_error_se"]  # the old rule passed it
            assert "uninformative" in s["best_error_note"]
            # a difference beyond 5 SE is a failure even from an uninformative check
            shifted = online_statistics(noisy + 10 * s["sgd_best_error_se"], steps, 1.0, problem)
            assert shifted["best_error_status"] == "failed", shifted
    t_star, _ = flow_optimum(problem)
    # runs that stop before 2t* cannot tell t* from 2t*: the location is inconclusive
    short = steps <= 1.5 * t_star
    assert online_statistics(errors[:, short], steps[short], 1.0, problem)["best_time_status"] == "inconclusive"


def test_diverging_runs_are_reported_as_diverged(medium, medium_online):
    """A non-finite error, or one above the largest error of stable GD, makes every online verdict "diverged":
    for NaN, inf and 2× the bound put in a run, and for real SGD with η = 100 (ηλ_max ≈ 17), which overflows.
    Population GD past its stability limit (ηλ_max = 3) explodes while finite and is flagged; ηλ_max ≈ 1.4
    (oscillating but stable) is not."""
    problem = medium["problem"]
    steps, errors = medium_online
    bound = float(discrete.stable_gd_error_bound(problem))
    for bad in (np.nan, np.inf, 2 * bound):
        broken = errors.copy()
        broken[1, -5:] = bad
        s = online_statistics(broken, steps, 1.0, problem)
        assert s["diverged_seeds"] == [1]
        assert s["best_error_status"] == s["best_time_status"] == "diverged"
        assert not s["best_error_passed"] and not s["best_time_passed"]
    runs = discrete.online_runs(medium["training"], medium["student"], medium["labels"], medium["inputs"], GD, steps,
                                batch_size=1024, seeds=range(4), hyperparams={"learning_rate": 100.0})
    assert not np.all(np.isfinite(np.asarray(runs.errors)))  # ηλ_max ≈ 17: SGD overflows
    real = online_statistics(np.asarray(runs.errors), steps, 100.0, problem)
    assert real["diverged_seeds"] == [0, 1, 2, 3] and real["best_error_status"] == "diverged"
    top = float(problem.eigenvalues.max())
    etas = np.array([8.0, 3.0 / top, 1.0, 0.5])
    n_steps = np.ceil(1000 / etas).astype(int)  # the shapes of test_gd_tends_to_flow_at_first_order
    record = np.minimum(np.arange(n_steps.max() + 1)[None, :], n_steps[:, None])
    runs = discrete.population_runs(medium["training"], GD, record, {"learning_rate": jnp.asarray(etas)})
    run_errors = np.asarray(runs.errors)
    assert np.all(np.isfinite(run_errors)) and run_errors[1, -1] > 1e30  # (1 − 3)^k: finite but exploding
    np.testing.assert_array_equal(diverged_rows(run_errors, bound), [False, True, False, False])


def test_teacher_online_sgd_follows_its_closed_form(medium, teacher_training):
    """The teacher trained online on true labels f* tracks its population GD curve within 5 standard errors.

    Minibatch noise raises the expected error by O(η/B) while the standard error is O(√(η/B)/√seeds): a large
    batch keeps that real effect well inside the tolerance."""
    problem = teacher_training.problem
    eta, steps = 1.0, np.array([0, 10, 50])
    runs = discrete.online_runs(
        teacher_training, medium["teacher"], medium["target"], medium["inputs"], optax.sgd(eta), steps,
        batch_size=4096, seeds=range(6),
    )
    errors = np.asarray(runs.errors)
    mean, se = errors.mean(0), errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
    closed = np.asarray(gd_loss(problem, eta, jnp.asarray(steps)))
    assert np.all(np.abs(mean - closed)[1:] <= 5 * se[1:]), (mean, closed, se)
    assert np.all(5 * se[1:] < -np.diff(closed))  # the tolerance tells consecutive records apart


@pytest.mark.parametrize(
    "name, optimizer, n_steps",
    [
        ("momentum", optax.sgd(2.0, momentum=0.95), 20000),
        ("adam", optax.adam(optax.cosine_decay_schedule(0.02, 20000)), 20000),
    ],
)
def test_momentum_and_adam_reach_the_flow_limit(medium, name, optimizer, n_steps):
    """Other optimizers stay finite and end at the flow's t → ∞ limit: L → L_ST(∞), w → G⁺b."""
    training = medium["training"]
    steps = np.linspace(0, n_steps, 41).astype(int)
    run = discrete.train_population(training, optimizer, steps)
    assert np.all(np.isfinite(np.asarray(run.errors))) and np.all(np.isfinite(np.asarray(run.final_weights)))
    l_inf = float(loss_at_infinity(medium["problem"]))
    assert abs(float(run.errors[-1]) - l_inf) <= 1e-10 * l_inf, (name, float(run.errors[-1]), l_inf)
    gram, b = np.asarray(training.gram), np.asarray(training.label_moment)
    lam, q = np.linalg.eigh(gram)
    assert np.all(np.asarray(medium["problem"].eigenvalues) > 0)  # every eigenvalue is kept here
    w_inf = q @ ((q.T @ b) / lam)  # G⁺b by numpy
    assert np.linalg.norm(np.asarray(run.final_weights) - w_inf) / np.linalg.norm(w_inf) < 1e-7


def test_linear_features_use_the_factor_route():
    """Linear features (rank d < M) train on their d-dimensional range: the basis has d columns, GD matches its
    closed form to 1e-10, the error at w = 0 is s* and the error is the direct wᵀGw − 2wᵀc + s*."""
    rng = np.random.default_rng(5)
    student = random_features(rng.normal(size=(24, 4)) / 2, "linear")
    inputs = gaussian_inputs(4, variances=[1.0, 2.0, 0.5, 1.5])
    target = linear_target([1.0, -0.5, 0.25, 0.0])
    training = discrete.population_training(discrete.teacher_objective(student, target, inputs))
    assert training.basis.shape == (24, 4)
    steps = np.arange(0, 401, 8)
    run = discrete.train_population(training, GD, steps, record_weights=True, hyperparams={"learning_rate": 0.5})
    closed = np.asarray(gd_loss(training.problem, 0.5, jnp.asarray(steps)))
    assert np.max(np.abs(np.asarray(run.errors) - closed)) <= 1e-10
    s_star = float(target_second_moment(target, inputs))
    assert float(run.errors[0]) == pytest.approx(s_star, rel=1e-12)
    w = np.asarray(run.weights)[[1, 10, -1]]
    c = np.asarray(training.label_moment)  # the labels are f*: b = c
    direct = np.einsum("bi,ij,bj->b", w, np.asarray(training.gram), w) - 2 * w @ c + s_star
    np.testing.assert_allclose(np.asarray(run.errors)[[1, 10, -1]], direct, rtol=1e-10, atol=1e-13)


def test_bad_inputs_say_what_to_change(medium):
    training = medium["training"]
    with pytest.raises(ValueError, match="non-decreasing"):
        discrete.train_population(training, optax.sgd(1.0), [0, 10, 5])
    with pytest.raises(ValueError, match=">= 0"):
        discrete.train_population(training, optax.sgd(1.0), [-1, 3])
    with pytest.raises(ValueError, match="whole numbers"):
        discrete.train_population(training, optax.sgd(1.0), [0.5, 3])
    with pytest.raises(ValueError, match="optax GradientTransformation"):
        discrete.train_population(training, lambda g: g, [1])
    with pytest.raises(ValueError, match="inject_hyperparams"):
        discrete.train_population(training, optax.sgd(1.0), [1], hyperparams={"learning_rate": 0.1})
    with pytest.raises(ValueError, match="population_training"):
        discrete.train_population(medium["objective"], optax.sgd(1.0), [1])
    with pytest.raises(ValueError, match="batch_size"):
        discrete.train_online(training, medium["student"], medium["labels"], medium["inputs"], optax.sgd(1.0), [1],
                              batch_size=-3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        discrete.online_runs(training, medium["student"], medium["labels"], medium["inputs"], optax.sgd(1.0), [1],
                             batch_size=0, seeds=[0])
    with pytest.raises(ValueError, match="objective built from these features"):
        discrete.online_runs(training, medium["teacher"], medium["target"], medium["inputs"], optax.sgd(1.0), [1],
                             batch_size=8, seeds=[0])
    with pytest.raises(ValueError, match="population objective"):
        points = np.ones((3, 8))
        discrete.population_training(Objective(medium["student"], medium["objective"].labels, medium["target"],
                                               Samples(jnp.asarray(points))))
    with pytest.raises(ValueError, match="label index"):
        discrete.label_function(medium["objective"], 1)
    with pytest.raises(ValueError, match="step_sizes"):
        CrosscheckConfig(step_sizes=(1.0, 0.5)).validated()
    with pytest.raises(ValueError, match="online horizon must exceed 2"):
        CrosscheckConfig(online_horizon=1.5).validated()


def command(argv) -> int:
    """``w2sjax crosscheck ARGS`` through the command's own parser (as ``cli.main`` runs it)."""
    parser = argparse.ArgumentParser(prog="w2sjax")
    crosscheck_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["crosscheck", *argv])
    return int(args.func(args))


CLI_ARGS = ["--dim", "8", "--teacher-width", "16", "--student-width", "64"]  # small sizes for speed


def test_crosscheck_command(tmp_path, capsys):
    """``w2sjax crosscheck --out DIR`` passes, prints the table and writes the report."""
    assert command(["--out", str(tmp_path), *CLI_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "flow_convergence_order" in printed and "PASSED" in printed
    report = json.loads((tmp_path / "crosscheck.json").read_text())
    for key in ("gd_vs_discrete_closed_form_max_abs", "gd_vs_flow_max_abs", "flow_convergence_order",
                "online_sgd_vs_flow", "passed", "status", "checks", "environment", "config"):
        assert key in report
    assert report["passed"] is True and report["status"] == "passed"
    assert all(c["status"] == "passed" for c in report["checks"])
    assert report["gd_vs_discrete_closed_form_max_abs"] <= 1e-10
    assert 0.8 <= report["flow_convergence_order"] <= 1.2
    assert len(report["gd_vs_flow_max_abs"]["max_abs"]) == len(report["gd_vs_flow_max_abs"]["step_sizes"]) >= 3
    online = report["online_sgd_vs_flow"]
    for key in ("best_error_difference", "sgd_best_error_se", "best_time_difference", "sgd_best_time_se", "seeds",
                "best_error_resolution", "best_error_detectable", "best_time_acceptance"):
        assert key in online
    assert online["best_error_detectable"] <= online["best_error_resolution"]
    assert report["config"]["student_width"] == 64


def test_crosscheck_command_fails_on_a_deviation(tmp_path, monkeypatch, capsys):
    """A deviation above its tolerance makes the command exit non-zero (tolerance set below the float64 error)."""
    import w2sjax.crosscheck as crosscheck

    monkeypatch.setattr(crosscheck, "CLOSED_FORM_TOLERANCE", 0.0)
    assert command(["--out", str(tmp_path), *CLI_ARGS]) == 1
    assert "FAILED" in capsys.readouterr().out
    report = json.loads((tmp_path / "crosscheck.json").read_text())
    assert report["passed"] is False and report["status"] == "failed"


def test_crosscheck_command_reports_divergence_not_a_pass(tmp_path, capsys):
    """Online SGD with η = 100 (ηλ_max ≈ 17) blows up: the command reports DIVERGED and exits 1, where it used to
    pass with a best error of 0.8 ± 15 against the flow's 0.33."""
    assert command(["--out", str(tmp_path), *CLI_ARGS, "--online-step", "100"]) == 1
    printed = capsys.readouterr().out
    assert "DIVERGED" in printed and "PASSED" not in printed
    report = json.loads((tmp_path / "crosscheck.json").read_text())
    assert report["status"] == "diverged" and report["passed"] is False
    online = [c for c in report["checks"] if c["name"].startswith("online_sgd")]
    assert [c["status"] for c in online] == ["diverged", "diverged"]
    assert report["online_sgd_vs_flow"]["diverged_seeds"] == [0, 1, 2, 3]


def test_crosscheck_command_reports_inconclusive(tmp_path, monkeypatch, capsys):
    """When the online checks cannot see a factor-2 error in the stopping time (here: a detection margin of 100
    SE that no run meets), the command reports INCONCLUSIVE and exits 3: nothing failed, nothing passed
    vacuously. (A real case, batch 4 with 2 seeds, is in the inconclusive test of online_statistics' rule.)"""
    import w2sjax.crosscheck as crosscheck

    monkeypatch.setattr(crosscheck, "DETECTION_MARGIN_SE", 100.0)
    assert command(["--out", str(tmp_path), *CLI_ARGS]) == 3
    printed = capsys.readouterr().out
    assert "INCONCLUSIVE" in printed and "PASSED" not in printed
    report = json.loads((tmp_path / "crosscheck.json").read_text())
    assert report["status"] == "inconclusive" and report["passed"] is False
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["online_sgd_vs_flow.best_error_difference"] == "inconclusive"
    assert statuses["online_sgd_vs_flow.best_time_difference"] == "inconclusive"
    assert statuses["gd_vs_discrete_closed_form_max_abs"] == "passed"
