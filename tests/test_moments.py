"""Closed-form population moments against Monte Carlo estimates (≥ 1e6 samples, 5 standard errors)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.kernels import arccos, relu_hermite_coefficient, unit_moment
from w2sjax.targets import units_target_moment

N_SAMPLES = 2_000_000
N_SIGMA = 5.0


def mc_mean_and_se(products: jax.Array):
    """Mean over axis 0 and its standard error."""
    n = products.shape[0]
    return np.asarray(products.mean(0)), np.asarray(products.std(0) / math.sqrt(n))


def assert_within_se(exact, mean, se, what, power=0.005):
    exact, mean, se = map(np.asarray, (exact, mean, se))
    z = np.abs(exact - mean) / np.maximum(se, 1e-300)
    assert np.all(z < N_SIGMA), f"{what}: max |exact - MC|/SE = {z.max():.2f} (exact {exact}, MC {mean})"
    # The check has power: an error of 5·power of the block's largest moment would fail it.
    assert np.max(se) < power * np.max(np.abs(exact)), f"{what}: Monte Carlo too noisy to test"


def weights(key, m, d):
    return jax.random.normal(key, (m, d)) * jnp.linspace(0.5, 1.5, d)


LAWS = {
    "identity": lambda d: w.gaussian_inputs(d),
    "diagonal": lambda d: w.gaussian_inputs(d, [0.3, 1.0, 2.5, 0.7, 1.6][:d]),
    "full": lambda d: w.gaussian_inputs(d, covariance=np.eye(d) + 0.4 * np.diag(np.ones(d - 1), 1)
                                        + 0.4 * np.diag(np.ones(d - 1), -1)),
}


@pytest.mark.parametrize("law", sorted(LAWS))
def test_feature_moments_match_monte_carlo(law):
    d = 5
    inputs = LAWS[law](d)
    A = weights(jax.random.key(0), 4, d)
    B = weights(jax.random.key(1), 3, d)
    beta = np.linspace(-1, 1, d)
    x = inputs.sample(jax.random.key(2), N_SAMPLES)
    ra, rb = jnp.maximum(x @ A.T, 0), jnp.maximum(x @ B.T, 0)
    la, lb, y = x @ A.T, x @ B.T, x @ beta
    cases = {
        "relu x relu": (("relu", A, "relu", B), ra[:, :, None] * rb[:, None, :]),
        "relu x linear": (("relu", A, "linear", B), ra[:, :, None] * lb[:, None, :]),
        "linear x linear": (("linear", A, "linear", B), la[:, :, None] * lb[:, None, :]),
    }
    for what, ((ka, a, kb, b), products) in cases.items():
        exact = unit_moment(ka, 1, a, kb, 1, b, inputs)
        assert_within_se(exact, *mc_mean_and_se(products), f"{law} {what}")
    target = w.linear_target(beta)
    for act, feats in (("relu", ra), ("linear", la)):
        exact = units_target_moment(act, 1, A, target, inputs)
        assert_within_se(exact, *mc_mean_and_se(feats * y[:, None]), f"{law} {act} x linear target")
    assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), f"{law} s*")


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_hermite_moments_match_monte_carlo(degree):
    d = 4
    inputs = w.gaussian_inputs(d)
    beta = np.array([0.5, -0.5, 0.5, 0.5])
    target = w.hermite_target(beta, degree)
    A = weights(jax.random.key(4), 5, d)
    # Rows strongly aligned with beta so that high-degree moments (cos^k) are not vanishingly small.
    A = A.at[:3].set(jnp.asarray(beta) * jnp.asarray([[1.3], [-0.8], [2.0]]) + 0.3 * A[:3])
    x = inputs.sample(jax.random.key(5 + degree), N_SAMPLES)
    y = w.target_values(target, x)
    for act in ("relu", "linear"):
        feats = jnp.maximum(x @ A.T, 0) if act == "relu" else x @ A.T
        exact = units_target_moment(act, 1, A, target, inputs)
        mean, se = mc_mean_and_se(feats * y[:, None])
        if act == "linear" and degree != 1:  # linear features see only the degree-1 part
            np.testing.assert_array_equal(exact, 0.0)
            assert np.all(np.abs(mean) < N_SIGMA * se)
        else:
            nonzero = np.abs(np.asarray(exact)) > 1e-12
            assert nonzero.any() == (act == "linear" or degree != 3)  # c_3 = 0: relu has no degree-3 part
            if not nonzero.any():
                assert np.all(np.abs(mean) < N_SIGMA * se)
                continue
            power = 0.005 if degree <= 2 else 0.02  # h_3, h_4 are heavy-tailed
            assert_within_se(np.asarray(exact)[nonzero], mean[nonzero], se[nonzero], f"{act} x h_{degree}", power)
            assert np.all(np.abs(mean[~nonzero]) < N_SIGMA * se[~nonzero])
    assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), f"E[h_{degree}^2]", 0.02)


@pytest.mark.parametrize("degree", [0, 2, 3])
def test_hermite_moments_under_any_covariance(degree):
    """h_k(βᵀx) with Var(βᵀx) ≠ 1 (a diagonal Σ): the scaling formula He_k(s z) = Σ_i C_ki(s) He_i(z)."""
    d = 4
    inputs = w.gaussian_inputs(d, [2.0, 1.0, 0.5, 1.0])
    target = w.sum_target(w.hermite_target([1.0, 0, 0, 0], degree, 0.8), w.hermite_target([0.6, 0.8, 0, 0], 2, -0.5),
                          w.linear_target([0.2, 0.0, 0.3, -0.4]))
    A = weights(jax.random.key(7), 5, d)
    x = inputs.sample(jax.random.key(8 + degree), N_SAMPLES)
    y = w.target_values(target, x)
    assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), f"s* (h_{degree}, diag Σ)", 0.01)
    for act in ("relu", "linear"):
        feats = jnp.maximum(x @ A.T, 0) if act == "relu" else x @ A.T
        exact = units_target_moment(act, 1, A, target, inputs)
        assert_within_se(exact, *mc_mean_and_se(feats * y[:, None]), f"{act} x target (h_{degree}, diag Σ)", 0.01)


def test_hermite_second_moment_known_value():
    # h_2(x₁) with Var(x₁) = 2: E[(x₁² − 1)²]/2 = (3·4 − 2·2 + 1)/2 = 4.5
    inputs = w.gaussian_inputs(4, [2.0, 1.0, 1.0, 1.0])
    assert abs(float(w.target_second_moment(w.hermite_target([1.0, 0, 0, 0], 2), inputs)) - 4.5) < 1e-12


def test_relu_network_target_moments_match_monte_carlo():
    d = 6
    for inputs in (w.gaussian_inputs(d, np.linspace(0.5, 1.5, d)), w.sphere_inputs(d)):
        target = w.random_relu_network_target(3, 16, inputs)
        x = inputs.sample(jax.random.key(21), N_SAMPLES)
        y = w.target_values(target, x)
        assert abs(float(jnp.var(y)) - 1.0) < 5 * float(jnp.std((y - y.mean()) ** 2)) / math.sqrt(N_SAMPLES)
        assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), f"{inputs.kind} s*")
        assert_within_se(w.target_mean(target, inputs), *mc_mean_and_se(y), f"{inputs.kind} mean", 0.01)
        A = weights(jax.random.key(22), 5, d)
        for act in ("relu", "linear"):
            feats = jnp.maximum(x @ A.T, 0) if act == "relu" else x @ A.T
            exact = units_target_moment(act, 1, A, target, inputs)
            assert_within_se(exact, *mc_mean_and_se(feats * y[:, None]), f"{inputs.kind} {act} x network")


def test_relu_hermite_coefficients_known_values():
    # c_2 = 1/(2√π), c_3 = 0, c_4 = −1/(√(2π)√24): E[relu(z) h_k(z)] by quadrature.
    z = np.linspace(0, 12, 400_001)
    density = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    for k in range(6):
        he = np.polynomial.hermite_e.hermeval(z, [0] * k + [1]) / math.sqrt(math.factorial(k))
        quad = np.trapezoid(z * he * density, z)
        assert abs(quad - relu_hermite_coefficient(k)) < 1e-9, k


def test_arccos_is_accurate_to_one_ulp_in_float64():
    x = np.concatenate([np.linspace(-1, 1, 200_001), 1 - np.logspace(-17, 0, 2000), -1 + np.logspace(-17, 0, 2000)])
    ours = np.asarray(jax.jit(arccos)(jnp.asarray(x)))
    np.testing.assert_allclose(ours, np.arccos(x), rtol=0, atol=4.5e-16)


def test_sphere_moments_equal_gaussian_for_degree_one_homogeneous():
    d = 6
    sphere, gauss = w.sphere_inputs(d), w.gaussian_inputs(d)
    A = weights(jax.random.key(11), 4, d)
    beta = np.linspace(-1, 1, d)
    x = sphere.sample(jax.random.key(12), N_SAMPLES)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x[:10]), axis=1), math.sqrt(d), rtol=1e-12)
    r = jnp.maximum(x @ A.T, 0)
    exact = unit_moment("relu", 1, A, "relu", 1, A, gauss)
    np.testing.assert_array_equal(exact, unit_moment("relu", 1, A, "relu", 1, A, sphere))
    assert_within_se(exact, *mc_mean_and_se(r[:, :, None] * r[:, None, :]), "sphere relu x relu")
    exact_t = units_target_moment("relu", 1, A, w.linear_target(beta), sphere)
    assert_within_se(exact_t, *mc_mean_and_se(r * (x @ beta)[:, None]), "sphere relu x linear")
    with pytest.raises(ValueError, match="sphere"):
        w.target_second_moment(w.hermite_target(np.eye(d)[0], 2), sphere)
