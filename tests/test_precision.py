"""float32 problems (``routes.mixed``: eigh in float32, moments, projections and figures in float64; the Krylov
route: products G·V in float32, everything else in float64) against float64 eigh on a fig2-like problem: L_ST*,
t*, L_TE to 1e-4 relative, error estimates that cover the differences, and a PrecisionWarning for the figures
that cannot be bounded to 1e-4 (L_ceil, L_ST(∞))."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax import engine
from w2sjax.features import student_weights, teacher_weights
from w2sjax.objectives import Law, Objective
from w2sjax.precision import PrecisionWarning
from w2sjax.routes import krylov, operators
from w2sjax.w2s import one_label

D, WIDTH, TEACHERS = 32, 1024, (16, 64, 256)
TIMES = np.geomspace(0.1, 1e7, 200)


def student(dtype, width=WIDTH):
    return w.RandomFeatures(student_weights(0, width, D, "relu").astype(dtype), jnp.asarray(width, dtype), "relu")


def solve(dtype, method="eigh", **options):
    teachers = [w.RandomFeatures(teacher_weights(0, m, D, "relu").astype(dtype), jnp.asarray(m, dtype), "relu")
                for m in TEACHERS]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = w.weak_to_strong(student(dtype), teachers, w.linear_target(np.eye(D)[0], dtype),
                                  w.gaussian_inputs(D, dtype=dtype), TIMES, method=method, **options)
    return result, [c for c in caught if issubclass(c.category, PrecisionWarning)]


@pytest.fixture(scope="module")
def pair():
    return solve(jnp.float64), solve(jnp.float32)


@pytest.fixture(scope="module", params=["stored", "tiled"])
def krylov_pair(request, pair):
    return pair[0], solve(jnp.float32, "krylov", operator=request.param)


def _relative(r64, r32, name):
    a, b = np.asarray(getattr(r64, name), np.float64), np.asarray(getattr(r32, name), np.float64)
    return np.abs(b - a) / np.abs(a), np.abs(b - a)


def test_float32_figures_within_1e_4(pair):
    (r64, warned64), (r32, _) = pair
    assert not warned64
    assert np.all(np.asarray(r64.ratio) < 1)  # the W2S effect is there
    for name in ("best_student_loss", "best_time", "teacher_loss"):
        rel, _ = _relative(r64, r32, name)
        assert np.all(rel <= 1e-4), (name, rel)
        assert np.any(rel > 0)  # the float32 run really ran in float32 somewhere


def test_error_estimates_cover_the_float32_differences(pair):
    (r64, _), (r32, _) = pair
    for name in ("student_loss", "best_student_loss", "student_loss_at_infinity", "ceiling_loss"):
        _, diff = _relative(r64, r32, name)
        value = np.abs(np.asarray(getattr(r32, name)))
        if name == "student_loss":  # one estimate per curve, covering every time of it
            diff, value = diff.max(axis=-1), value.min(axis=-1)
        est = np.asarray(getattr(r32.error, name))
        assert np.all(diff <= est), (name, diff, est)
        assert np.all(est < 0.1 * value)  # and are not vacuous
    rel_time, _ = _relative(r64, r32, "best_time")
    assert np.all(rel_time <= np.asarray(r32.error.best_time))
    # float64 estimates are rounding levels, far below the float32 ones
    assert np.all(np.asarray(r64.error.best_student_loss) < 1e-3 * np.asarray(r32.error.best_student_loss))


def test_unbounded_figures_are_flagged(pair):
    (_, _), (r32, warned) = pair
    assert warned, "float32 run without a PrecisionWarning"
    message = str(warned[0].message)
    assert "L_ceil" in message
    rel_ceiling = np.asarray(r32.error.ceiling_loss) / np.asarray(r32.ceiling_loss)
    assert np.all(rel_ceiling > 1e-4)  # the estimate itself says L_ceil is not bounded to 1e-4


def test_float32_krylov_figures_within_1e_4(krylov_pair):
    (r64, _), (r32, _) = krylov_pair
    assert r32.route.method == "krylov" and r32.route.converged
    assert "float32" in dict(r32.route.how)
    for name in ("best_student_loss", "best_time", "teacher_loss"):
        rel, _ = _relative(r64, r32, name)
        assert np.all(rel <= 1e-4), (name, rel)


def test_float32_krylov_estimates_cover_the_differences(krylov_pair):
    test_error_estimates_cover_the_float32_differences(krylov_pair)


def test_float32_krylov_flags_what_exceeds_1e_4(krylov_pair):
    (_, _), (r32, warned) = krylov_pair
    assert warned, "float32 Krylov run without a PrecisionWarning"
    message = str(warned[0].message)
    labels = {"best_student_loss": "L_ST*", "student_loss_at_infinity": "L_ST(inf)", "ceiling_loss": "L_ceil"}
    for name, label in labels.items():
        rel = np.asarray(getattr(r32.error, name)) / np.abs(np.asarray(getattr(r32, name)))
        assert (label in message) == bool(np.any(rel > 1e-4)), (label, rel, message)
    assert "L_ceil" in message


def _objective(dtype, width=256):
    target = w.linear_target(np.eye(D)[0], dtype)
    return Objective(student(dtype, width), (one_label(target),), target, Law(w.gaussian_inputs(D, dtype=dtype)))


def test_float32_krylov_multiplies_in_float32_and_keeps_the_rest_in_float64():
    objective = _objective(jnp.float32)
    padded, stored = engine._krylov_operator(objective, "stored", 128, None)
    assert stored.matrix.dtype == jnp.float32 and padded.features.weights.dtype == jnp.float64
    rounded = w.RandomFeatures(objective.features.weights.astype(jnp.float64), jnp.asarray(256.0), "relu")
    exact = np.asarray(w.feature_gram(rounded, rounded, w.gaussian_inputs(D)))  # G of the float32 weights, float64
    np.testing.assert_allclose(np.asarray(stored.matrix, np.float64)[:256, :256], exact, rtol=1e-7, atol=0)
    _, tiled = engine._krylov_operator(objective, "tiled", 128, None)
    assert tiled.dtype == jnp.float32
    step = lambda op: krylov.krylov_advance(krylov.krylov_start(padded, op, 4, 128), jnp.int32(0), jnp.int32(2))
    state, wide_products = step(stored), step(operators.StoredGram(stored.matrix.astype(jnp.float64)))
    assert state.basis.dtype == jnp.float64 and state.projection.dtype == jnp.float64
    assert state.target.dtype == jnp.float64 and state.labels.dtype == jnp.float64
    # the same float32 G multiplied in float64 moves T by ~ε64, in float32 by ~ε32
    t32, t64 = np.asarray(state.projection), np.asarray(wide_products.projection)
    assert 1e-10 < np.max(np.abs(t32 - t64)) / np.max(np.abs(t64)) < 1e-5


def test_planner_counts_a_float32_gram_at_4_bytes_and_the_basis_at_8():
    n32, n64 = engine.route_needs(_objective(jnp.float32), 200), engine.route_needs(_objective(jnp.float64), 200)
    m = 256
    assert n64["krylov/stored"][0] - n32["krylov/stored"][0] == operators.stored_bytes(m, 8) - operators.stored_bytes(m, 4)
