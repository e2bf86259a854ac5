"""float32 problems (``routes.mixed``: eigh in float32, moments, projections and figures in float64) against
float64 on a fig2-like problem: L_ST*, t*, L_TE to 1e-4 relative, error estimates that cover the differences,
and a PrecisionWarning for the figures that cannot be bounded to 1e-4 (L_ceil, L_ST(∞))."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.features import student_weights, teacher_weights
from w2sjax.precision import PrecisionWarning

D, WIDTH, TEACHERS = 32, 1024, (16, 64, 256)
TIMES = np.geomspace(0.1, 1e7, 200)


def solve(dtype):
    student = w.RandomFeatures(student_weights(0, WIDTH, D, "relu").astype(dtype), jnp.asarray(WIDTH, dtype), "relu")
    teachers = [w.RandomFeatures(teacher_weights(0, m, D, "relu").astype(dtype), jnp.asarray(m, dtype), "relu")
                for m in TEACHERS]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = w.weak_to_strong(student, teachers, w.linear_target(np.eye(D)[0], dtype),
                                  w.gaussian_inputs(D, dtype=dtype), TIMES, method="eigh")
    return result, [c for c in caught if issubclass(c.category, PrecisionWarning)]


@pytest.fixture(scope="module")
def pair():
    return solve(jnp.float64), solve(jnp.float32)


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
