"""Every route against dense eigh on fig2-style problems, the Krylov stopping rule and its estimates, the
operators, sharding over devices, and the planner (auto choice, memory refusals)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.engine import KrylovConvergenceWarning, plan_route
from w2sjax.features import student_weights, teacher_weights
from w2sjax.objectives import Law, Objective
from w2sjax.routes import operators
from w2sjax.w2s import TeacherFit, as_batch, teacher_functions

TIMES = np.geomspace(0.1, 1e7, 120)
TEACHERS = (16, 64, 256)


def fig2_problem(width, activation="relu", d=32, seed=0):
    """ReLU: fig2 (x ~ N(0, I)); linear: fig3's spiked Σ = diag(1, d^(−2/3), …) with teachers narrower than d."""
    if activation == "relu":
        inputs, teacher_widths = w.gaussian_inputs(d), TEACHERS
    else:
        inputs, teacher_widths = w.gaussian_inputs(d, np.r_[1.0, np.full(d - 1, d ** (-2 / 3))]), (4, 8, 16)
    student = w.RandomFeatures(student_weights(seed, width, d, activation), jnp.asarray(float(width)), activation)
    teachers = [w.RandomFeatures(teacher_weights(seed, m, d, activation), jnp.asarray(float(m)), activation)
                for m in teacher_widths]
    return student, teachers, w.linear_target(np.eye(d)[0]), inputs


@pytest.fixture(scope="module", params=[("relu", 2048), ("linear", 1024)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def solved(request):
    activation, width = request.param
    problem = fig2_problem(width, activation)
    routes = {"eigh": w.weak_to_strong(*problem, TIMES, method="eigh")}
    routes["krylov/stored"] = w.weak_to_strong(*problem, TIMES, method="krylov", operator="stored")
    if activation == "relu":
        routes["krylov/tiled"] = w.weak_to_strong(*problem, TIMES, method="krylov", operator="tiled")
    if activation == "linear":
        routes["factor"] = w.weak_to_strong(*problem, TIMES, method="factor")
    return activation, width, routes


def test_every_route_agrees_with_eigh(solved):
    """Curve, t*, L_ST* to 1e-9 (relative on t*); L_ST(∞), L_ceil and PGR to 1e-8; the reported error
    estimates cover the differences."""
    activation, width, routes = solved
    ref = routes["eigh"]
    assert ref.route.method == "eigh"
    assert np.all(np.asarray(ref.ratio) < 1)  # the W2S effect is there to be reproduced
    for name, r in routes.items():
        if name == "eigh":
            continue
        assert r.route.converged, name
        scale = 1.0  # s* = E[x₁²] = 1 sets the scale of every error
        for field, tol in (("student_loss", 1e-9), ("best_student_loss", 1e-9), ("student_loss_at_infinity", 1e-8),
                           ("ceiling_loss", 1e-8), ("pgr", 1e-8), ("teacher_loss", 1e-12)):
            diff = np.max(np.abs(np.asarray(getattr(r, field)) - np.asarray(getattr(ref, field))))
            assert diff <= tol * scale, f"{name} {field}: {diff:.3g}"
        t, t_ref = np.asarray(r.best_time), np.asarray(ref.best_time)
        finite = np.isfinite(t_ref)
        assert np.array_equal(np.isfinite(t), finite), name
        assert np.max(np.abs(t[finite] / t_ref[finite] - 1), initial=0) <= 1e-9, name
        # estimates: the error reported for each loss is at least the difference to eigh (up to eigh's rounding)
        err = r.error
        for field in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
            diff = np.abs(np.asarray(getattr(r, field)) - np.asarray(getattr(ref, field)))
            if field == "student_loss":
                diff = diff.max(axis=-1)
            estimate = np.asarray(getattr(err, field)) + np.asarray(getattr(ref.error, field))
            assert np.all(diff <= 10 * estimate + 1e-15), f"{name} {field}: diff {diff.max():.3g} > estimate"
    if activation == "linear":  # G_S has rank d = 32: the Krylov space closes after a few blocks and is exact
        assert routes["krylov/stored"].route.blocks <= 16


def test_auto_picks_krylov_for_wide_relu_students_and_factor_for_linear():
    student, teachers, target, inputs = fig2_problem(4096)
    batch = as_batch(teachers)
    functions = teacher_functions(batch, TeacherFit(jnp.zeros(batch.weights.shape[:2]), None))
    wide = Objective(student, (functions,), target, Law(inputs))
    assert plan_route(wide, 400).method == "krylov"
    narrow = Objective(w.RandomFeatures(student.weights[:256], jnp.asarray(256.0)), (functions,), target, Law(inputs))
    assert plan_route(narrow, 400).method == "eigh"
    lin, lin_teachers, _, _ = fig2_problem(2048, "linear")
    lin_batch = as_batch(lin_teachers)
    lin_functions = teacher_functions(lin_batch, TeacherFit(jnp.zeros(lin_batch.weights.shape[:2]), None))
    assert plan_route(Objective(lin, (lin_functions,), target, Law(inputs)), 400).method == "factor"
    plan = plan_route(wide, 400)
    assert "predicted" in plan.reason and set(plan.seconds) >= {"eigh", "krylov/stored", "krylov/tiled"}


def test_memory_planning_refuses_what_cannot_fit_and_names_what_would():
    student, teachers, target, inputs = fig2_problem(4096)
    functions = teacher_functions(as_batch(teachers), TeacherFit(jnp.zeros((3, 256)), None))
    objective = Objective(student, (functions,), target, Law(inputs))
    with pytest.raises(ValueError, match="eigh needs .* GiB.*krylov"):
        plan_route(objective, 400, method="eigh", memory_bytes=200 * 2**20)
    assert plan_route(objective, 400, memory_bytes=120 * 2**20).operator == "tiled"  # only matrix-free fits
    with pytest.raises(ValueError, match="fit no route"):
        plan_route(objective, 400, memory_bytes=2**20)
    with pytest.raises(ValueError, match="method='factor' needs"):
        plan_route(objective, 400, method="factor")


def test_krylov_warns_when_it_cannot_converge_in_max_blocks():
    problem = fig2_problem(1024)
    with pytest.warns(KrylovConvergenceWarning, match="did not reach"):
        r = w.weak_to_strong(*problem, TIMES, method="krylov", max_blocks=8)
    assert not r.route.converged and np.all(np.asarray(r.error.student_loss) > 1e-9)


def test_tiled_and_stored_products_equal_the_gram_matrix():
    student, _, _, inputs = fig2_problem(300)
    features = operators.padded_features(student, 128)
    G = np.asarray(w.feature_gram(student, student, inputs))
    V = np.random.default_rng(0).normal(size=(features.rows, 3))
    tiled = operators.TiledGram(features, inputs, 128)
    out = np.asarray(jax.jit(lambda op, v: op(v))(tiled, jnp.asarray(V)))
    np.testing.assert_allclose(out[:300], G @ V[:300], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(out[300:], 0.0)  # padded rows stay zero


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import w2sjax as w
    from w2sjax.routes.sharding import device_mesh
    from w2sjax.features import student_weights, teacher_weights

    d = 16
    inputs, target = w.gaussian_inputs(d), w.linear_target(np.eye(d)[0])
    student = w.random_features(np.asarray(student_weights(0, 500, d, "relu")))
    teachers = [w.random_features(np.asarray(teacher_weights(0, m, d, "relu"))) for m in (8, 32)]
    times = np.geomspace(0.1, 1e6, 60)
    r = w.weak_to_strong(student, teachers, target, inputs, times, method="krylov", mesh=device_mesh(),
                         operator="sharded")
    np.savez(sys.argv[1], loss=np.asarray(r.student_loss), best=np.asarray(r.best_time))
    print(json.dumps({"devices": jax.device_count(), "operator": r.route.operator, "blocks": r.route.blocks}))
    """
)


def test_sharded_krylov_on_four_cpu_devices_equals_one_device(tmp_path):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"  # and conftest's
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(tmp_path / "out.npz")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["devices"] == 4 and info["operator"] == "sharded"
    d = 16
    student = w.random_features(np.asarray(student_weights(0, 500, d, "relu")))
    teachers = [w.random_features(np.asarray(teacher_weights(0, m, d, "relu"))) for m in (8, 32)]
    ref = w.weak_to_strong(student, teachers, w.linear_target(np.eye(d)[0]), w.gaussian_inputs(d),
                           np.geomspace(0.1, 1e6, 60), method="eigh")
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["loss"], np.asarray(ref.student_loss), rtol=0, atol=1e-11)
    np.testing.assert_allclose(out["best"], np.asarray(ref.best_time), rtol=1e-9)


def test_large_command_writes_results(tmp_path, capsys):
    from w2sjax.cli import main

    code = main(["large", "--student-width", "512", "--teacher-width", "16", "64", "--dim", "16", "--method",
                 "krylov", "--times", "0.1", "1e6", "50", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["route"]["method"] == "krylov" and len(record["best_time"]) == 2
    assert "krylov" in capsys.readouterr().out
    student, _, target, inputs = fig2_problem(512, d=16)
    teachers = [w.RandomFeatures(teacher_weights(0, m, 16, "relu"), jnp.asarray(float(m))) for m in (16, 64)]
    ref = w.weak_to_strong(student, teachers, target, inputs, np.geomspace(0.1, 1e6, 50), method="eigh")
    np.testing.assert_allclose(record["best_student_loss"], np.asarray(ref.best_student_loss), atol=1e-10)
