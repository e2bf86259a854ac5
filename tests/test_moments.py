"""Closed-form population moments against Monte Carlo estimates (≥ 1e6 samples, 5 standard errors)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax as w
from w2sjax.features import activation_cross_moment, activation_target_moment, relu_hermite_coefficient

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


@pytest.mark.parametrize("variances", [None, [0.3, 1.0, 2.5, 0.7, 1.6]], ids=["identity", "diagonal"])
def test_feature_moments_match_monte_carlo(variances):
    d = 5
    inputs = w.gaussian_inputs(d, variances)
    A = weights(jax.random.key(1), 4, d)  # ReLU rows, various norms
    B = weights(jax.random.key(2), 3, d)  # linear rows
    beta = jnp.asarray([0.4, -1.0, 0.3, 0.8, -0.2])
    x = inputs.sample(jax.random.key(3), N_SAMPLES)
    ra, lb, y = jnp.maximum(x @ A.T, 0), x @ B.T, x @ beta
    var = inputs.variances

    pairs = {
        "relu x relu": (activation_cross_moment("relu", "relu", A, A, var), ra[:, :, None] * ra[:, None, :]),
        "relu x linear": (activation_cross_moment("relu", "linear", A, B, var), ra[:, :, None] * lb[:, None, :]),
        "linear x relu": (activation_cross_moment("linear", "relu", B, A, var), lb[:, :, None] * ra[:, None, :]),
        "linear x linear": (activation_cross_moment("linear", "linear", B, B, var), lb[:, :, None] * lb[:, None, :]),
        "relu x linear target": (activation_target_moment("relu", A, w.linear_target(beta), var), ra * y[:, None]),
        "linear x linear target": (activation_target_moment("linear", B, w.linear_target(beta), var), lb * y[:, None]),
        "s*": (w.target_second_moment(w.linear_target(beta), inputs), y * y),
    }
    for name, (exact, products) in pairs.items():
        assert_within_se(exact, *mc_mean_and_se(products), name)


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
        exact = activation_target_moment(act, A, target, inputs.variances)
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
            # h_3, h_4 have heavy tails: 5 SE is ~10% of the largest moment, still far below a wrong c_k.
            power = 0.005 if degree <= 2 else 0.02
            assert_within_se(np.asarray(exact)[nonzero], mean[nonzero], se[nonzero], f"{act} x h_{degree}", power)
            assert np.all(np.abs(mean[~nonzero]) < N_SIGMA * se[~nonzero])
    # E[h_k²] = 1
    # h_k² is heavy-tailed; 5 SE stays below 10%, far below a wrong normalisation (He_k² has mean k!).
    assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), f"E[h_{degree}^2]", 0.02)


def test_relu_hermite_coefficients_known_values():
    # c_2 = 1/(2√π) (= He_0(0)/(√(2π)√2)), c_3 = 0, c_4 = −1/(√(2π)√24): E[relu(z) h_k(z)] by quadrature.
    z = np.linspace(0, 12, 400_001)
    density = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    for k in range(6):
        he = np.polynomial.hermite_e.hermeval(z, [0] * k + [1]) / math.sqrt(math.factorial(k))
        quad = np.trapezoid(z * he * density, z)
        assert abs(quad - relu_hermite_coefficient(k)) < 1e-9, k


def test_sum_target_second_moment_and_cross_terms():
    d = 4
    inputs = w.gaussian_inputs(d)
    beta = np.array([0.6, 0.8, 0.0, 0.0])
    gamma = np.array([0.0, 0.6, 0.8, 0.0])
    target = w.sum_target(
        w.linear_target(2 * beta), w.hermite_target(gamma, 1, 0.7), w.hermite_target(beta, 2, 1.5),
        w.hermite_target(gamma, 2, -0.5),
    )
    x = inputs.sample(jax.random.key(9), N_SAMPLES)
    y = w.target_values(target, x)
    assert_within_se(w.target_second_moment(target, inputs), *mc_mean_and_se(y * y), "sum s*")
    A = weights(jax.random.key(10), 6, d)
    r = jnp.maximum(x @ A.T, 0)
    exact = activation_target_moment("relu", A, target, inputs.variances)
    assert_within_se(exact, *mc_mean_and_se(r * y[:, None]), "relu x sum target")


def test_sphere_moments_equal_gaussian_for_degree_one_homogeneous():
    d = 6
    sphere, gauss = w.sphere_inputs(d), w.gaussian_inputs(d)
    A = weights(jax.random.key(11), 4, d)
    beta = np.linspace(-1, 1, d)
    x = sphere.sample(jax.random.key(12), N_SAMPLES)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x[:10]), axis=1), math.sqrt(d), rtol=1e-12)
    r = jnp.maximum(x @ A.T, 0)
    exact = activation_cross_moment("relu", "relu", A, A, gauss.variances)
    assert_within_se(exact, *mc_mean_and_se(r[:, :, None] * r[:, None, :]), "sphere relu x relu")
    exact_t = activation_target_moment("relu", A, w.linear_target(beta), gauss.variances)
    assert_within_se(exact_t, *mc_mean_and_se(r * (x @ beta)[:, None]), "sphere relu x linear")
