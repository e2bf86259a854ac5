"""Exact derivatives of the figures of merit through ``weak_to_strong`` against central finite differences
(float64), their finiteness on duplicated ReLU rows and on the Gram diagonal (cos θ = 1), and jit/vmap of
the public solver and its constructors against the eager call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.features import student_weights, teacher_weights

D = 6
TIMES = np.geomspace(0.1, 1e5, 30)
FIGURES = ("L(t3)", "L(t15)", "L*", "t*", "L_TE", "L(inf)", "L_ceil")
STEP = 1e-5
"""Central differences: truncation O(STEP²) ≈ 1e-10 relative, rounding ε/STEP ≈ 1e-11 relative."""
RTOL = 1e-6


def figures(student, teacher, beta, activation="relu", method="eigh"):
    r = w.weak_to_strong(w.random_features(student, activation), w.random_features(teacher, activation),
                         w.linear_target(beta), w.gaussian_inputs(D), TIMES, method=method)
    return jnp.stack([r.student_loss[3], r.student_loss[15], r.best_student_loss, r.best_time, r.teacher_loss,
                      r.student_loss_at_infinity, r.ceiling_loss])


def problem(activation, width, teacher_width, seed=0):
    u = np.asarray(student_weights(seed, width, D, activation))
    v = np.asarray(teacher_weights(seed, teacher_width, D, activation))
    beta = np.random.default_rng(seed).normal(size=D)
    return u, v, beta / np.linalg.norm(beta)


CASES = [("relu", 48, 8, "eigh"), ("linear", 12, 4, "factor")]
"""Linear features with M > d: G has an exact null space (the cut directions); factor is their default route."""


WEIGHTS = np.random.default_rng(7).uniform(0.5, 1.5, len(FIGURES))


def combined(values, scale):
    """Σ_k c_k f_k / |f_k(x0)| with random c_k: every figure weighs about as much in the check."""
    return jnp.sum(WEIGHTS * values / scale)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[3]}")
def gradients(request):
    activation, width, teacher_width, method = request.param
    args = problem(activation, width, teacher_width)
    fn = lambda *a: figures(*a, activation=activation, method=method)
    scale = np.maximum(np.abs(np.asarray(fn(*args))), 1e-3)  # L_ceil = 0 for linear features with M > d
    grads = jax.jit(jax.grad(lambda *a: combined(fn(*a), scale), argnums=(0, 1, 2)))(*(jnp.asarray(a) for a in args))
    return fn, args, scale, grads


@pytest.mark.parametrize("which", [0, 1, 2], ids=["student", "teacher", "target"])
def test_gradients_match_central_differences(gradients, which):
    """jax.grad of Σ_k c_k f_k/|f_k| over f = L(t) at two times, L*, t*, L_TE, L(∞), L_ceil, along a random
    direction v, vs (F(x+hv) − F(x−hv))/2h; and each figure's own difference is non-zero somewhere."""
    fn, args, scale, grads = gradients
    x0 = args[which]
    direction = np.random.default_rng(1 + which).normal(size=x0.shape)
    analytic = float(np.sum(np.asarray(grads[which]) * direction))
    plus, minus = list(args), list(args)
    plus[which], minus[which] = x0 + STEP * direction, x0 - STEP * direction
    each = (np.asarray(fn(*plus)) - np.asarray(fn(*minus))) / (2 * STEP)
    numeric = float(np.sum(WEIGHTS * each / scale))
    assert np.all(np.isfinite(np.asarray(grads[which])))
    assert abs(numeric - analytic) <= RTOL * np.sum(np.abs(WEIGHTS * each / scale)), (analytic, numeric, each)
    if which == 0:  # the teacher does not see the student
        assert each[FIGURES.index("L_TE")] == 0.0
    assert np.sum(np.abs(each / scale) > 1e-3) >= 4  # most figures move: the check has something to check


def test_duplicated_relu_row_and_gram_diagonal_have_finite_gradients():
    """A duplicated ReLU row (cos θ = 1 off the diagonal, an exact null direction of G) and every diagonal
    entry (cos θ = 1): no NaN; along directions that keep the rows equal, the gradient matches differences."""
    u, v, beta = problem("relu", 48, 8)  # the shapes of the ReLU case: compiled pieces are shared
    u = u.copy()
    u[1] = u[0]
    scale = np.maximum(np.abs(np.asarray(figures(u, v, beta))), 1e-3)
    grads = jax.jit(jax.grad(lambda *a: combined(figures(*a), scale), argnums=(0, 1, 2)))(
        jnp.asarray(u), jnp.asarray(v), jnp.asarray(beta))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    direction = np.random.default_rng(5).normal(size=u.shape)
    direction[1] = direction[0]
    analytic = float(np.sum(np.asarray(grads[0]) * direction))
    each = (np.asarray(figures(u + STEP * direction, v, beta)) - np.asarray(figures(u - STEP * direction, v, beta))) / (2 * STEP)
    numeric = float(np.sum(WEIGHTS * each / scale))
    assert abs(numeric - analytic) <= RTOL * np.sum(np.abs(WEIGHTS * each / scale))
    gram_grad = jax.grad(lambda a: jnp.sum(w.feature_gram(w.random_features(a), w.random_features(a), w.gaussian_inputs(D))))(jnp.asarray(u))
    assert np.all(np.isfinite(np.asarray(gram_grad)))


def _result_leaves(r):
    return [r.student_loss, r.best_time, r.best_student_loss, r.teacher_loss, r.student_loss_at_infinity, r.ceiling_loss]


def test_jit_and_vmap_match_the_eager_call():
    """jit of the solver (constructors inside), vmap over teacher weights and over target directions: 1e-12."""
    u, v, beta = problem("relu", 48, 8)
    var = np.linspace(0.5, 2.0, D)

    def solve(u, v, beta, var):
        return w.weak_to_strong(w.random_features(u), w.random_features(v), w.linear_target(beta),
                                w.gaussian_inputs(D, var), TIMES, method="eigh")

    eager = solve(u, v, beta, var)
    jitted = jax.jit(solve)(jnp.asarray(u), jnp.asarray(v), jnp.asarray(beta), jnp.asarray(var))
    for a, b in zip(_result_leaves(eager), _result_leaves(jitted)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=0)

    teachers = np.stack([teacher_weights(s, 8, D, "relu") for s in range(3)])
    batched = jax.vmap(lambda t: solve(u, t, beta, var))(jnp.asarray(teachers))
    directions = np.random.default_rng(3).normal(size=(3, D))
    by_target = jax.vmap(lambda b: solve(u, v, b, var))(jnp.asarray(directions))
    for i in range(3):
        for batch, args in ((batched, (u, teachers[i], beta, var)), (by_target, (u, v, directions[i], var))):
            one = solve(*args)
            for a, b in zip(_result_leaves(one), _result_leaves(jax.tree_util.tree_map(lambda x: x[i], batch))):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=0)
