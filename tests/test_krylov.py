"""Krylov quadrature, matrix-free Gram products, sharding and the choice of route, against the dense route."""

import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax  # noqa: F401  (float64)
from w2sjax import cli, krylov, matfree, methods
from w2sjax.features import feature_gram, random_features
from w2sjax.inputs import gaussian_inputs, linear_target
from w2sjax.spectral import decompose
from w2sjax.sweep import fit_teachers, padded_teachers, score_teachers, student_weights, teacher_weights

FIG2_TIMES = np.logspace(-1, 4, 200)
SMALL_TIMES = np.logspace(-1, 4, 50)
LONG_TIMES = np.logspace(-1, 12, 50)


def _relu_weights(rng, width, dim):
    """The default ReLU weight law (rows uniform on the unit sphere), drawn with numpy."""
    z = rng.normal(size=(width, dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _linear_target(dim):
    beta = np.zeros(dim)
    beta[0] = 1.0
    return linear_target(beta)


def _dense_reference(student, teachers, target, inputs, times, spectrum=None):
    """The dense route from the core pieces: one eigh of G_S, every teacher scored against it."""
    batch = padded_teachers([t.weights for t in teachers], student.activation, jnp.float64)
    fits = fit_teachers(batch, target, inputs)
    spectrum = methods._student_spectrum(student, inputs, rcond=None) if spectrum is None else spectrum
    result = score_teachers(spectrum, student, batch, fits, target, inputs, jnp.asarray(times))
    return jax.tree_util.tree_map(np.asarray, result)


def _max_errors(result, reference):
    """max |ΔL_ST| over the grid, max |Δt*|, max |ΔL_ST*| over teachers."""
    return (
        float(np.max(np.abs(np.asarray(result.student_loss) - reference.student_loss))),
        float(np.max(np.abs(np.asarray(result.best_time) - reference.best_time))),
        float(np.max(np.abs(np.asarray(result.best_student_loss) - reference.best_student_loss))),
    )


# --------------------------------------------------------------------------------------------------
# The fig2-style problem at M_ST = 2048
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig2():
    """ReLU, d = 32, M_ST = 2048, linear target ‖β‖ = 1, teachers of 32 and 256; G_S and the dense route."""
    rng = np.random.default_rng(0)
    student = random_features(_relu_weights(rng, 2048, 32))
    teachers = [random_features(_relu_weights(rng, m, 32)) for m in (32, 256)]
    target, inputs = _linear_target(32), gaussian_inputs(32)
    gram = jax.jit(feature_gram)(student, student, inputs)
    reference = _dense_reference(student, teachers, target, inputs, FIG2_TIMES, jax.jit(decompose)(gram))
    return student, teachers, target, inputs, reference, np.asarray(gram)


@pytest.fixture(scope="module")
def fig2_krylov(fig2):
    """Krylov with matrix-free products: 7 kernel tiles of 300 rows (52 padded rows)."""
    student, teachers, target, inputs, *_ = fig2
    op = matfree.tiled_gram(student, inputs, tile_rows=300)
    return krylov.krylov_weak_to_strong(op, teachers, target, inputs, FIG2_TIMES)


def _stored_gram(fig2):
    """The fixture's G_S behind the operator protocol, with the matrix-free operator's padded shapes."""
    student, _, _, inputs, _, gram = fig2
    tiled = matfree.tiled_gram(student, inputs, tile_rows=300)
    padded = np.zeros((tiled.size, tiled.size))
    padded[:2048, :2048] = gram
    return matfree.DenseGram(jnp.asarray(padded), tiled.weights, tiled.width, tiled.variances, "relu", 300)


def _numpy_relu_gram(a, b):
    """E[φ_a φ_bᵀ] for ReLU features on N(0, I): ‖a‖‖b‖(sin θ + (π − θ) cos θ)/(2π) / √(M_a M_b) (DESIGN)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.clip((a @ b.T) / np.outer(na, nb), -1, 1)
    theta = np.arccos(cos)
    kernel = np.outer(na, nb) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    return kernel / np.sqrt(len(a) * len(b))


def test_tiled_products_equal_the_stored_gram_matrix(fig2):
    student, teachers, target, inputs, _, gram = fig2
    op = matfree.tiled_gram(student, inputs, tile_rows=300)
    assert op.size == 2100 and op.size % op.tile_rows == 0
    v = np.random.default_rng(0).normal(size=(2048, 3))
    product = np.asarray(jax.jit(lambda o, x: o(x))(op, matfree.pad_rows(jnp.asarray(v), op.size)))
    np.testing.assert_allclose(product[:2048], gram @ v, rtol=0, atol=1e-13 * np.abs(gram @ v).max())
    assert np.all(product[2048:] == 0)
    # b = G_ST w_T for teachers of different widths side by side, tile by tile
    batch = padded_teachers([t.weights for t in teachers], "relu", jnp.float64)
    w = np.random.default_rng(1).normal(size=batch.weights.shape[:2])
    w[0, 32:] = 0
    labels = np.asarray(krylov._label_moments(op, batch, jnp.asarray(w)))
    for i, t in enumerate(teachers):
        m = t.weights.shape[0]
        expected = _numpy_relu_gram(np.asarray(student.weights), np.asarray(t.weights)) @ w[i, :m]
        np.testing.assert_allclose(labels[i, :2048], expected, rtol=0, atol=1e-13 * np.abs(expected).max())


def test_krylov_matches_eigh_on_fig2_problem(fig2, fig2_krylov):
    reference = fig2[4]
    sol = fig2_krylov
    loss_err, time_err, best_err = _max_errors(sol.result, reference)
    print(f"\nM_ST=2048: {sol.info.blocks} blocks of {sol.info.block_size}, dimension {sol.info.dimension}; "
          f"max |ΔL_ST| {loss_err:.2g}, |Δt*| {time_err:.2g}, |ΔL_ST*| {best_err:.2g}")
    assert sol.info.converged and not sol.info.exhausted
    assert np.all(np.isfinite(reference.best_time)) and np.all(reference.best_time < FIG2_TIMES[-1])
    assert loss_err <= 1e-9 and best_err <= 1e-9
    assert time_err <= 1e-9
    assert sol.info.error_estimate <= krylov.DEFAULT_TOL
    # the point of the route: a basis far smaller than M_ST
    assert sol.info.dimension <= 300


def test_stored_and_matrix_free_operators_agree(fig2, fig2_krylov):
    student, teachers, target, inputs, reference, _ = fig2
    stored = krylov.krylov_weak_to_strong(_stored_gram(fig2), teachers, target, inputs, FIG2_TIMES)
    assert stored.info.converged
    assert max(_max_errors(stored.result, reference)) <= 1e-9
    np.testing.assert_allclose(stored.result.student_loss, fig2_krylov.result.student_loss, rtol=0, atol=1e-12)


def test_stopping_rule_meets_a_looser_tolerance_with_fewer_blocks(fig2, fig2_krylov):
    student, teachers, target, inputs, reference, _ = fig2
    loose = krylov.krylov_weak_to_strong(_stored_gram(fig2), teachers, target, inputs, FIG2_TIMES, tol=1e-5,
                                         time_rtol=1e-3)
    loss_err, _, best_err = _max_errors(loose.result, reference)
    assert loose.info.converged
    assert loss_err <= 1e-5 and best_err <= 1e-5
    assert np.all(np.abs(np.asarray(loose.result.best_time) / reference.best_time - 1) <= 1e-3)
    assert loose.info.blocks < fig2_krylov.info.blocks
    # the estimates shrink as the basis grows
    changes = [h[1] for h in fig2_krylov.info.history]
    assert changes[-1] < 1e-3 * changes[0]


# --------------------------------------------------------------------------------------------------
# A small problem: M_ST = 200, d = 8, one teacher of 16 (the weights ``w2sjax large`` draws)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    inputs = gaussian_inputs(8)
    student = random_features(np.asarray(student_weights(0, 200, 8, "relu")))
    teacher = random_features(np.asarray(teacher_weights(0, 16, 8, "relu")))
    return student, [teacher], _linear_target(8), inputs


@pytest.fixture(scope="module")
def small_solutions(small):
    student, teachers, target, inputs = small
    eigh = methods.solve(student, teachers[0], target, inputs, SMALL_TIMES)
    kry = methods.solve(student, teachers[0], target, inputs, SMALL_TIMES, method="krylov", operator="tiled")
    return eigh, kry


def test_solve_routes_agree_and_reject_bad_input(small, small_solutions):
    student, teachers, target, inputs = small
    eigh, kry = small_solutions
    assert eigh.method == "eigh" and eigh.krylov is None and eigh.plan.method == "eigh"
    assert kry.method == "krylov" and kry.plan.operator == "tiled" and kry.krylov.converged
    np.testing.assert_allclose(kry.result.student_loss, eigh.result.student_loss, rtol=0, atol=1e-12)
    assert abs(float(kry.result.best_time) - float(eigh.result.best_time)) <= 1e-9
    json.dumps(kry.to_dict(), allow_nan=False)
    for bad, match in (
        (dict(method="lanczos"), "unknown method"),
        (dict(operator="sparse"), "unknown operator"),
        (dict(method="krylov", tol=-1.0), "tol must be a positive"),
    ):
        with pytest.raises(ValueError, match=match):
            methods.solve(student, teachers[0], target, inputs, SMALL_TIMES, **bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        methods.solve(student, teachers[0], target, inputs, SMALL_TIMES[::-1], method="krylov")


def test_unreachable_tolerance_warns_raises_and_auto_falls_back(small):
    student, teachers, target, inputs = small
    # very long times on an ill-conditioned G_S: e^{−tλ} must be resolved down to the smallest eigenvalues
    reference = _dense_reference(student, teachers, target, inputs, LONG_TIMES)
    op = matfree.tiled_gram(student, inputs)
    with pytest.warns(krylov.KrylovConvergenceWarning, match="method='eigh'"):
        sol = krylov.krylov_weak_to_strong(op, teachers, target, inputs, LONG_TIMES, max_blocks=8)
    assert not sol.info.converged and sol.info.blocks == 8
    with pytest.raises(krylov.KrylovConvergenceError, match="max_blocks=8"):
        krylov.krylov_weak_to_strong(op, teachers, target, inputs, LONG_TIMES, max_blocks=8, on_failure="raise")
    with pytest.warns(krylov.KrylovConvergenceWarning, match="falling back"):
        auto = methods.solve(student, teachers, target, inputs, LONG_TIMES, krylov_min_width=1, max_blocks=8)
    assert auto.plan.method == "krylov" and auto.fell_back and auto.method == "eigh" and auto.krylov is not None
    np.testing.assert_allclose(auto.result.student_loss, reference.student_loss[0], rtol=0, atol=1e-14)


def test_large_command_writes_results(tmp_path, capsys, small_solutions):
    out = tmp_path / "run"
    args = ["large", "--student-width", "200", "--teacher-width", "16", "--dim", "8", "--times", "-1", "4", "50",
            "--method", "krylov", "--operator", "tiled", "--out", str(out)]
    assert cli.main(args) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["method"] == "krylov" and record["krylov"]["converged"] and record["plan"]["operator"] == "tiled"
    assert record["config"]["student_width"] == 200 and record["environment"]["x64"]
    assert record["results"][0]["teacher_width"] == 16
    eigh = small_solutions[0]  # the same weights, by the dense route
    np.testing.assert_allclose(record["results"][0]["student_loss"], eigh.result.student_loss, rtol=0, atol=1e-12)
    assert not list(out.glob(".*.tmp"))
    assert cli.main(["large", "--student-width", "0", "--teacher-width", "16", "--out", str(out)]) == 2
    assert "--student-width must be a positive integer" in capsys.readouterr().err
    assert cli.main(["large", "--student-width", "10", "--teacher-width", "4", "--tol", "-1", "--out", str(out)]) == 2
    assert "--tol must be a positive number" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Exact cases: a Krylov space that closes
# --------------------------------------------------------------------------------------------------


def _linear_features_reference(u_s, u_t, beta, times):
    """Numpy: linear features on N(0, I), G = UUᵀ/M, L_ST(t) = Σ_i λ_i (g_i b̃_i − c̃_i/λ_i)² + R_S (DESIGN)."""
    m_s, m_t = len(u_s), len(u_t)
    g_s, g_t, g_st = u_s @ u_s.T / m_s, u_t @ u_t.T / m_t, u_s @ u_t.T / np.sqrt(m_s * m_t)
    c_s, c_t = u_s @ beta / np.sqrt(m_s), u_t @ beta / np.sqrt(m_t)
    b = g_st @ np.linalg.pinv(g_t, rcond=1e-10, hermitian=True) @ c_t
    lam, q = np.linalg.eigh(g_s)
    keep = lam > 1e-10 * lam.max()
    lam, b_t, c_t_s = lam[keep], (q.T @ b)[keep], (q.T @ c_s)[keep]
    residual = beta @ beta - np.sum(c_t_s**2 / lam)
    gain = -np.expm1(-np.outer(times, lam)) / lam
    return np.sum(lam * (gain * b_t - c_t_s / lam) ** 2, axis=1) + residual, residual


def test_low_rank_space_closes_and_is_exact_at_any_time():
    # linear features, d = 4 < M = 12: G_S has rank 4. Blocks [c, b, b]: the repeated teacher's column is
    # deflated at once, and the Krylov space closes on range(G_S): the quadrature is exact at any time.
    rng = np.random.default_rng(3)
    u_s, u_t = rng.normal(size=(12, 4)) / 2, rng.normal(size=(5, 4)) / 2
    student, teacher = random_features(u_s, "linear"), random_features(u_t, "linear")
    target, inputs = _linear_target(4), gaussian_inputs(4)
    expected, residual = _linear_features_reference(u_s, u_t, np.eye(4)[0], LONG_TIMES)
    sol = krylov.krylov_weak_to_strong(matfree.tiled_gram(student, inputs), [teacher, teacher], target, inputs,
                                       LONG_TIMES)
    assert sol.info.exhausted and sol.info.converged and sol.info.error_estimate == 0
    assert sol.info.block_size == 3 and sol.info.dimension == 4
    for i in range(2):
        result = sol.teacher(i)
        np.testing.assert_allclose(result.student_loss, expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.ceiling_loss, residual, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Choosing the route
# --------------------------------------------------------------------------------------------------


def test_auto_picks_route_from_size_and_memory():
    gib = 2**30
    assert methods.plan_method(1000, 32, memory_bytes=gib).method == "eigh"
    plan = methods.plan_method(8192, 32, memory_bytes=64 * gib)
    assert (plan.method, plan.operator) == ("krylov", "dense")
    plan = methods.plan_method(100_000, 32, memory_bytes=8 * gib)
    assert (plan.method, plan.operator) == ("krylov", "tiled")
    assert plan.needed_bytes <= 8 * gib < plan.krylov_dense_bytes
    # below the Krylov threshold, but the dense route does not fit: Krylov
    assert methods.plan_method(3000, 32, memory_bytes=200 * 2**20).method == "krylov"
    # linear features factor through d: the dense route stays cheap at any width
    assert methods.plan_method(100_000, 32, memory_bytes=gib, rank=32).method == "eigh"
    # the 80 GB GPU of the issue stops the dense route near M = 40k in float64
    assert 40_000 < methods._largest_width(lambda m: methods.eigh_bytes(m) <= 80e9) < 45_000
    assert methods.device_memory_bytes() > 0


def _largest_in(message, route):
    pattern = {"eigh": r"method='eigh' fits up to M_ST=([\d,]+)", "tiled": r"operator='tiled'\) up to M_ST=([\d,]+)"}
    return int(re.search(pattern[route], message).group(1).replace(",", ""))


def test_cannot_fit_error_names_the_route_and_size_that_would(small):
    gib = 2**30
    with pytest.raises(ValueError, match="method='eigh'.*use method='krylov'") as err:
        methods.plan_method(100_000, 32, method="eigh", memory_bytes=8 * gib)
    largest_eigh = _largest_in(str(err.value), "eigh")
    assert methods.eigh_bytes(largest_eigh) <= 8 * gib < methods.eigh_bytes(largest_eigh + 1)
    with pytest.raises(ValueError, match=r"operator='tiled'\) up to M_ST=") as err:
        methods.plan_method(10**9, 32, memory_bytes=gib)
    message = str(err.value)
    assert "M_ST=1,000,000,000" in message and "more devices" in message
    largest_tiled = _largest_in(message, "tiled")
    assert methods.krylov_bytes(largest_tiled, 32) <= gib < methods.krylov_bytes(largest_tiled + 1, 32)
    with pytest.raises(ValueError, match="use operator='tiled'"):
        methods.plan_method(100_000, 32, method="krylov", operator="dense", memory_bytes=8 * gib)
    student, teachers, target, inputs = small
    with pytest.raises(ValueError, match="needs .* GiB with method='eigh'"):
        methods.solve(student, teachers[0], target, inputs, SMALL_TIMES, method="eigh", memory_bytes=1000)


# --------------------------------------------------------------------------------------------------
# Sharding on 4 forced CPU devices (a fresh process: the device count is fixed when jax starts)
# --------------------------------------------------------------------------------------------------

SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    assert "jax" not in sys.modules
    import jax, numpy as np
    import w2sjax
    from w2sjax import methods, sharding
    from w2sjax.features import random_features
    from w2sjax.inputs import gaussian_inputs, linear_target

    data = np.load(sys.argv[1])
    student = random_features(data["student"])
    teacher = random_features(data["teacher"])
    inputs, target = gaussian_inputs(8), linear_target(np.eye(8)[0])
    times = data["times"]
    out = {"devices": jax.device_count()}

    tiles = sharding.device_mesh()
    op = sharding.sharded_gram(student, inputs, tiles)
    product = jax.jit(lambda o, x: o(x))(op, data["vectors"][: op.size])
    out["size"] = op.size
    out["weights_devices"] = len(op.weights.sharding.device_set)
    out["product_devices"] = len(product.sharding.device_set)
    out["product_spec"] = str(product.sharding.spec)
    kry = methods.solve(student, teacher, target, inputs, times, method="krylov", operator="tiled", mesh=tiles)
    eigh = methods.solve(student, [teacher] * 3, target, inputs, times, method="eigh",
                         mesh=sharding.device_mesh(batch=4))
    np.savez(sys.argv[2], product=np.asarray(product),
             krylov_loss=np.asarray(kry.result.student_loss), krylov_best_time=float(kry.result.best_time),
             eigh_loss=np.stack([np.asarray(r.student_loss) for r in eigh.results]),
             eigh_best_time=np.asarray([float(r.best_time) for r in eigh.results]))
    out["krylov_blocks"] = kry.krylov.blocks
    print(json.dumps(out))
    """
)


def test_sharded_equals_unsharded_on_four_cpu_devices(tmp_path, small, small_solutions):
    student, teachers, target, inputs = small
    eigh, kry = small_solutions
    vectors = np.random.default_rng(2).normal(size=(200, 2))
    np.savez(tmp_path / "problem.npz", student=np.asarray(student.weights), teacher=np.asarray(teachers[0].weights),
             times=SMALL_TIMES, vectors=vectors)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(tmp_path / "problem.npz"),
                           str(tmp_path / "sharded.npz")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    sharded = np.load(tmp_path / "sharded.npz")
    assert out["devices"] == 4 and out["size"] == 200
    # the kernel rows and the product are split over the 4 devices of the "tiles" axis
    assert out["weights_devices"] == 4 and out["product_devices"] == 4 and "tiles" in out["product_spec"]
    op = matfree.tiled_gram(student, inputs)
    np.testing.assert_allclose(sharded["product"], np.asarray(jax.jit(lambda o, x: o(x))(op, vectors)),
                               rtol=0, atol=1e-15)
    # Krylov with tiles over 4 devices, and the dense route with the teacher batch (3, padded to 4) over 4
    assert out["krylov_blocks"] == kry.krylov.blocks
    np.testing.assert_allclose(sharded["krylov_loss"], kry.result.student_loss, rtol=0, atol=1e-13)
    assert abs(float(sharded["krylov_best_time"]) - float(kry.result.best_time)) <= 1e-9
    for loss, best in zip(sharded["eigh_loss"], sharded["eigh_best_time"]):
        np.testing.assert_allclose(loss, eigh.result.student_loss, rtol=0, atol=1e-14)
        assert abs(best - float(eigh.result.best_time)) <= 1e-9


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import sys, jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import numpy as np
    import w2sjax
    from w2sjax import methods, sharding
    from w2sjax.features import random_features
    from w2sjax.inputs import gaussian_inputs, linear_target

    data = np.load(sys.argv[3])
    args = (random_features(data["student"]), [random_features(data["teacher"])] * 3,
            linear_target(np.eye(8)[0]), gaussian_inputs(8), data["times"])
    kry = methods.solve(*args, method="krylov", operator="tiled", mesh=sharding.device_mesh())
    eigh = methods.solve(*args, method="eigh", mesh=sharding.device_mesh(batch=4))
    if jax.process_index() == 0:
        np.savez(sys.argv[4], krylov_loss=np.asarray(kry.result.student_loss),
                 eigh_loss=np.asarray(eigh.result.student_loss), devices=jax.device_count(),
                 processes=jax.process_count())
    """
)


@pytest.mark.skipif(not os.environ.get("W2SJAX_MULTIPROCESS_TEST"),
                    reason="opt-in (W2SJAX_MULTIPROCESS_TEST=1): two jax.distributed processes of 2 CPU devices")
def test_two_processes_of_two_devices_equal_one_process(tmp_path, small, small_solutions):
    import socket

    student, teachers, target, inputs = small
    eigh, kry = small_solutions
    np.savez(tmp_path / "problem.npz", student=np.asarray(student.weights), teacher=np.asarray(teachers[0].weights),
             times=SMALL_TIMES)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", MULTIPROCESS_SCRIPT, address, str(i), str(tmp_path / "problem.npz"),
                               str(tmp_path / "out.npz")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert int(out["devices"]) == 4 and int(out["processes"]) == 2
    np.testing.assert_allclose(out["krylov_loss"], kry.result.student_loss, rtol=0, atol=1e-13)
    np.testing.assert_allclose(out["eigh_loss"], eigh.result.student_loss, rtol=0, atol=1e-14)
