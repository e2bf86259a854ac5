"""Discrete-step training with optax against the closed forms (issue 3)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import w2sjax
from w2sjax import cli, discrete
from w2sjax.crosscheck import GD, CrosscheckConfig, crosscheck_models, fitted_order, online_statistics
from w2sjax.features import feature_target_moment
from w2sjax.inputs import target_second_moment
from w2sjax.spectral import (
    best_time,
    flow_weights,
    least_squares_weights,
    student_loss,
    student_loss_at_infinity,
)


def make_problem(dim, teacher_width, student_width, seed=0):
    config = CrosscheckConfig(dim=dim, teacher_width=teacher_width, student_width=student_width, seed=seed)
    student, teacher, target, inputs = crosscheck_models(config)
    objective, labels = discrete.student_objective(student, teacher, target, inputs)
    return dict(
        student=student, teacher=teacher, target=target, inputs=inputs, objective=objective, labels=labels,
        problem=discrete.objective_problem(objective),
    )


@pytest.fixture(scope="module")
def medium():
    """ReLU, d = 8, M_TE = 16, M_ST = 64: t* ≈ 178, L_ST* ≈ 0.33, λ in [7.7e-5, 0.17]."""
    return make_problem(8, 16, 64)


flow_error = jax.jit(student_loss)


def flow_best(problem):
    t_star, l_star = jax.jit(best_time)(problem, np.logspace(-2, 7, 451))
    return float(t_star), float(l_star)


def test_population_error_is_the_mean_square_error(medium):
    """Σ(√λ qᵀw − a*)² + R equals the direct wᵀGw − 2wᵀc + s* (c = E[φ f*]) for arbitrary weights; it is s* at
    w = 0 and L_ST(∞) at G⁺b."""

    @jax.jit
    def both(obj, student, target, inputs, problem, w):
        c = feature_target_moment(student, target, inputs)
        s_star = target_second_moment(target, inputs)
        w = jnp.concatenate([w, jnp.zeros_like(w[:1]), least_squares_weights(obj.spectrum, obj.label_moment)[None]])
        direct = jnp.einsum("bi,ij,bj->b", w, obj.gram, w) - 2 * w @ c + s_star
        return discrete.population_error(obj, w), direct, s_star, student_loss_at_infinity(problem)

    w = np.random.default_rng(3).normal(size=(5, medium["objective"].gram.shape[0])) * 0.3
    careful, direct, s_star, l_inf = both(
        medium["objective"], medium["student"], medium["target"], medium["inputs"], medium["problem"], w
    )
    np.testing.assert_allclose(careful, direct, rtol=1e-10, atol=1e-13)
    assert float(careful[5]) == pytest.approx(float(s_star), rel=1e-12)
    assert float(careful[6]) == pytest.approx(float(l_inf), rel=1e-9)


@pytest.mark.parametrize("step_size", [1.0, 8.0])  # 8: ηλ_max ≈ 1.4 > 1, the decay 1 − ηλ is negative
def test_optax_sgd_matches_discrete_closed_form(medium, step_size):
    """1000 steps of optax sgd on the population objective = Q diag((1 − (1 − ηλ)^k)/λ) Qᵀ b, to 1e-10."""
    obj, problem = medium["objective"], medium["problem"]
    assert float(step_size * problem.eigenvalues.max()) > 1 or step_size == 1.0
    steps = np.arange(1001)
    run = discrete.train_population(obj, GD, steps, record_weights=True, hyperparams={"learning_rate": step_size})
    closed = discrete.discrete_gd_error(problem, step_size, steps)
    assert np.max(np.abs(np.asarray(run.errors) - np.asarray(closed))) <= 1e-10
    np.testing.assert_array_equal(run.steps, steps)
    # the weights too, at a few steps
    some = np.array([0, 1, 7, 100, 1000])
    closed_w = np.asarray(discrete.discrete_gd_weights(obj.spectrum, obj.label_moment, step_size, some))
    run_w = np.asarray(run.weights)[some]
    assert np.max(np.abs(run_w - closed_w)) <= 1e-10 * np.max(np.abs(closed_w))
    np.testing.assert_array_equal(run.final_weights, run_w[-1])


def test_teacher_gd_matches_closed_form_and_tends_to_teacher_fit(medium):
    """The teacher on true labels: GD = closed form (b = c_T), and it tends to ``fit_teacher``'s w_T = G_T⁺c_T
    with error L_TE = s* − c_Tᵀw_T."""
    obj = discrete.teacher_objective(medium["teacher"], medium["target"], medium["inputs"])
    problem = discrete.objective_problem(obj)
    steps = np.arange(0, 20001, 20)
    run = discrete.train_population(obj, GD, steps, hyperparams={"learning_rate": 4.0})
    closed = discrete.discrete_gd_error(problem, 4.0, steps)
    assert np.max(np.abs(np.asarray(run.errors) - np.asarray(closed))) <= 1e-10
    w_teacher = np.asarray(medium["labels"].weights)  # from w2s.fit_teacher
    teacher_loss = 1.0 - np.asarray(obj.label_moment) @ w_teacher  # s* = E[x_1²] = 1
    assert float(run.errors[-1]) == pytest.approx(teacher_loss, rel=1e-8)
    np.testing.assert_allclose(run.final_weights, w_teacher, rtol=1e-6, atol=1e-8)


def test_closed_form_gain_edge_cases():
    """λ = 0 gives kη; tiny ηλ keeps its accuracy (expm1); ηλ > 1 alternates in sign."""
    lam = jnp.array([0.0, 1e-14, 0.1, 1.5])
    k = jnp.asarray(3)
    gain = discrete.discrete_gd_gain(lam, 1.0, k)
    exact = np.array([3.0, 3.0 - 3e-14, (1 - 0.9**3) / 0.1, (1 - (-0.5) ** 3) / 1.5])
    np.testing.assert_allclose(gain, exact, rtol=1e-13)
    decay = discrete.discrete_gd_decay(lam, 1.0, k)
    np.testing.assert_allclose(decay, [1.0, 1 - 3e-14, 0.9**3, (-0.5) ** 3], rtol=1e-13)


def test_gd_tends_to_flow_at_first_order(medium):
    """max_k |L_GD(k) − L_GF(kη)| is O(η) (fitted order in [0.8, 1.2]) and below the a-priori bound.

    All step sizes run in one compiled call (optax.inject_hyperparams); L_GD is the optax run's error."""
    obj, problem = medium["objective"], medium["problem"]
    etas = np.array([4.0, 2.0, 1.0, 0.5])
    n_steps = np.ceil(1000 / etas).astype(int)  # to t = 1000 ≈ 5.6 t*
    record = np.minimum(np.arange(n_steps.max() + 1)[None, :], n_steps[:, None])
    runs = discrete.population_runs(obj, GD, record, {"learning_rate": jnp.asarray(etas)})
    deviations = []
    for i, eta in enumerate(etas):
        k = record[i]
        err = np.asarray(runs.errors[i])
        assert np.max(np.abs(err - np.asarray(discrete.discrete_gd_error(problem, eta, k)))) <= 1e-10
        deviations.append(np.max(np.abs(err - np.asarray(flow_error(problem, k * eta)))))
        assert deviations[-1] <= float(discrete.gd_flow_bound(problem, eta))
    order = fitted_order(etas, deviations)
    assert 0.8 <= order <= 1.2, (order, deviations)
    # the closed-form weights tend to the flow's at t = kη = 50, at first order in η
    gaps = []
    for eta in (0.1, 0.05, 0.025, 0.0125, 0.00625):
        k = np.array([round(50 / eta)])
        w_gd = np.asarray(discrete.discrete_gd_weights(obj.spectrum, obj.label_moment, eta, k))[0]
        w_gf = np.asarray(flow_weights(obj.spectrum, obj.label_moment, 50.0))
        gaps.append(np.linalg.norm(w_gd - w_gf) / np.linalg.norm(w_gf))
    assert gaps[-1] < 1e-3 and 0.9 <= fitted_order((0.1, 0.05, 0.025, 0.0125, 0.00625), gaps) <= 1.1


def test_online_sgd_reproduces_flow_best_error(medium):
    """Online SGD (fresh batches of 1024 with teacher labels, η = 1, i.e. ηλ_max = 0.17; 4 seeds) reaches the
    flow's L_ST* near t*.

    The SGD best error is the minimum of the seed-averaged curve and must lie within 5 standard errors of L_ST*;
    the checks must be tight enough to tell t* from t*/2 and 2t* (else they would be empty)."""
    obj, problem = medium["objective"], medium["problem"]
    t_star, l_star = flow_best(problem)
    eta = 1.0
    steps = np.arange(int(np.ceil(1.5 * t_star / eta)) + 1)
    runs = discrete.online_runs(
        obj, medium["student"], medium["labels"], medium["inputs"], GD, steps,
        batch_size=1024, seeds=range(4), hyperparams={"learning_rate": eta},
    )
    errors = np.asarray(runs.errors)
    assert np.all(np.isfinite(errors))
    assert errors[:, 0] == pytest.approx(float(target_second_moment(medium["target"], medium["inputs"])))
    flow = np.asarray(flow_error(problem, steps * eta))
    stats = online_statistics(errors, steps, eta, flow, l_star, t_star)
    se = stats["sgd_best_error_se"]
    assert 0 < se
    assert abs(stats["best_error_difference"]) <= 5 * se, stats
    assert stats["best_time_passed"], stats
    assert abs(stats["best_time_difference"]) <= stats["best_time_tolerance"], stats
    excess = np.asarray(flow_error(problem, np.array([t_star / 2, 2 * t_star]))) - l_star
    assert 5 * se < float(excess.min())
    assert t_star / 2 < stats["flow_basin"][0] and stats["flow_basin"][1] < 2 * t_star
    assert stats["best_time_tolerance"] < t_star / 2


def test_teacher_online_sgd_follows_its_closed_form(medium):
    """The teacher trained online on true labels f* tracks its population GD curve within 5 standard errors.

    Minibatch noise raises the expected error by O(η/B) while the standard error is O(√(η/B)/√seeds): a large
    batch keeps that real effect well inside the tolerance."""
    obj = discrete.teacher_objective(medium["teacher"], medium["target"], medium["inputs"])
    problem = discrete.objective_problem(obj)
    eta, steps = 1.0, np.array([0, 10, 50])
    runs = discrete.online_runs(
        obj, medium["teacher"], medium["target"], medium["inputs"], optax.sgd(eta), steps,
        batch_size=4096, seeds=range(6),
    )
    errors = np.asarray(runs.errors)
    mean, se = errors.mean(0), errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
    closed = np.asarray(discrete.discrete_gd_error(problem, eta, steps))
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
    obj = medium["objective"]
    steps = np.linspace(0, n_steps, 41).astype(int)
    run = discrete.train_population(obj, optimizer, steps)
    assert np.all(np.isfinite(np.asarray(run.errors))) and np.all(np.isfinite(np.asarray(run.final_weights)))
    l_inf = float(student_loss_at_infinity(medium["problem"]))
    assert abs(float(run.errors[-1]) - l_inf) <= 1e-10 * l_inf, (name, float(run.errors[-1]), l_inf)
    q, lam = np.asarray(obj.spectrum.eigenvectors), np.asarray(obj.spectrum.eigenvalues)
    w_inf = q @ ((q.T @ np.asarray(obj.label_moment)) / lam)  # G⁺b; every eigenvalue is kept here
    assert np.all(lam > 0)
    assert np.linalg.norm(np.asarray(run.final_weights) - w_inf) / np.linalg.norm(w_inf) < 1e-7


def test_bad_inputs_say_what_to_change(medium):
    obj = medium["objective"]
    with pytest.raises(ValueError, match="non-decreasing"):
        discrete.train_population(obj, optax.sgd(1.0), [0, 10, 5])
    with pytest.raises(ValueError, match=">= 0"):
        discrete.train_population(obj, optax.sgd(1.0), [-1, 3])
    with pytest.raises(ValueError, match="whole numbers"):
        discrete.train_population(obj, optax.sgd(1.0), [0.5, 3])
    with pytest.raises(ValueError, match="optax GradientTransformation"):
        discrete.train_population(obj, lambda g: g, [1])
    with pytest.raises(ValueError, match="inject_hyperparams"):
        discrete.train_population(obj, optax.sgd(1.0), [1], hyperparams={"learning_rate": 0.1})
    with pytest.raises(ValueError, match="batch_size"):
        discrete.train_online(obj, medium["student"], medium["labels"], medium["inputs"], optax.sgd(1.0), [1],
                              batch_size=-3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        discrete.online_runs(obj, medium["student"], medium["labels"], medium["inputs"], optax.sgd(1.0), [1],
                             batch_size=0, seeds=[0])
    with pytest.raises(ValueError, match="objective built from these features"):
        discrete.online_runs(obj, medium["teacher"], medium["target"], medium["inputs"], optax.sgd(1.0), [1],
                             batch_size=8, seeds=[0])
    with pytest.raises(ValueError, match="step_sizes"):
        CrosscheckConfig(step_sizes=(1.0, 0.5)).validated()


CLI_ARGS = ["--dim", "8", "--teacher-width", "16", "--student-width", "64"]  # small sizes for speed


def test_crosscheck_command(tmp_path, capsys):
    """``w2sjax crosscheck --out DIR`` passes, prints the table and writes the report."""
    assert cli.main(["crosscheck", "--out", str(tmp_path), *CLI_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "flow_convergence_order" in printed and "PASSED" in printed
    report = json.loads((tmp_path / "crosscheck.json").read_text())
    for key in ("gd_vs_discrete_closed_form_max_abs", "gd_vs_flow_max_abs", "flow_convergence_order",
                "online_sgd_vs_flow", "passed", "checks", "environment", "config"):
        assert key in report
    assert report["passed"] is True
    assert report["gd_vs_discrete_closed_form_max_abs"] <= 1e-10
    assert 0.8 <= report["flow_convergence_order"] <= 1.2
    assert len(report["gd_vs_flow_max_abs"]["max_abs"]) == len(report["gd_vs_flow_max_abs"]["step_sizes"]) >= 3
    online = report["online_sgd_vs_flow"]
    for key in ("best_error_difference", "sgd_best_error_se", "best_time_difference", "sgd_best_time_se", "seeds"):
        assert key in online
    assert report["config"]["student_width"] == 64


def test_crosscheck_command_fails_on_a_deviation(tmp_path, monkeypatch, capsys):
    """A deviation above its tolerance makes the command exit non-zero (tolerance set below the float64 error)."""
    import w2sjax.crosscheck as crosscheck

    monkeypatch.setattr(crosscheck, "CLOSED_FORM_TOLERANCE", 0.0)
    assert cli.main(["crosscheck", "--out", str(tmp_path), *CLI_ARGS]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert json.loads((tmp_path / "crosscheck.json").read_text())["passed"] is False
