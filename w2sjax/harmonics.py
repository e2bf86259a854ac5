"""Spherical harmonics in d dimensions: the pieces of the infinitely wide ReLU student.

Notation (d ≥ 2, z uniform on the unit sphere S^{d−1}, t = z₁ with density c_d (1 − t²)^{(d−3)/2} on [−1, 1]):
  P_l          the degree-l Gegenbauer polynomial normalised to P_l(1) = 1 (Legendre for d = 3),
               P_{l+1}(t) = ((2l + d − 2) t P_l(t) − l P_{l−1}(t)) / (l + d − 2),  P_0 = 1, P_1 = t;
               E_t[P_l P_k] = δ_lk / N(d, l).
  N(d, l)      the dimension of the degree-l spherical harmonics, (2l + d − 2) Γ(l + d − 2) / (Γ(l + 1) Γ(d − 1));
               addition theorem: Σ_m Y_lm(a) Y_lm(b) = N(d, l) P_l(a·b) for Y_lm orthonormal under z.
  h_l          E_t[relu(t) P_l(t)], the Gegenbauer coefficients of relu on the sphere:
                 h_1 = 1/(2d);  h_l = 0 for odd l ≥ 3 (relu(t) = (t + |t|)/2 and |t| is even);
                 |h_l| = Γ(d/2) Γ((l − 1)/2) / (4π Γ((l + d + 1)/2)) for even l (l = 0 included, with
                 |Γ(−1/2)| = 2√π), from Rodrigues' formula and two integrations by parts. Consecutive even
                 degrees have h_{l+2}/h_l = (l − 1)/(l + d + 1): |h_l| decreases strictly for even l ≥ 2.
  Funk–Hecke   E_u[f(u·a) g(u·b)] = Σ_l N(d, l) f_l g_l P_l(a·b) for unit a, b and f_l = E_t[f(t) P_l(t)]; so
                 E_u[relu(u·a) relu(u·b)] = Σ_l N(d, l) h_l² P_l(a·b) = J(a·b)/d
               (J the arc-cosine kernel of ``kernels.relu_kernel``: u = g/|g| with g ~ N(0, I) and E|g|² = d),
               and Σ_l N(d, l) h_l² = J(1)/d = 1/(2d) is the total the truncated series is measured against.
  moments      E_t[t^i P_l(t)] = c_d Γ((d−1)/2) i! Γ(p + ½) Γ(ν + 1) / (2^l Γ(l + (d−1)/2) (i − l)! Γ(p + ν + 3/2))
               for i ≥ l, i − l = 2p even (0 otherwise), ν = l + (d − 3)/2;
               radial moments of x ~ N(0, c I): E|x|^p = c^{p/2} 2^{p/2} Γ((d + p)/2)/Γ(d/2); on the sphere of
               radius √d: d^{p/2}.

Host-side functions work in float64 numpy (log-gamma forms, no overflow for large d or l); ``gegenbauer`` is
a jax function for arrays.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def check_sphere_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"spherical harmonics need an input dimension d >= 2; got {dim!r}")
    return int(dim)


def log_harmonic_dimension(dim: int, degree) -> np.ndarray:
    """log N(d, l) for degrees l (array)."""
    d = check_sphere_dim(dim)
    l = np.atleast_1d(np.asarray(degree, dtype=np.float64))
    out = np.zeros_like(l)
    for i, li in enumerate(l.tolist()):
        if li > 0:
            out[i] = math.log(2.0) if d == 2 else (
                math.log(2 * li + d - 2) + math.lgamma(li + d - 2) - math.lgamma(li + 1) - math.lgamma(d - 1))
    return out.reshape(np.shape(degree))


def harmonic_dimension(dim: int, degree) -> np.ndarray:
    """N(d, l): the number of linearly independent degree-l spherical harmonics in d dimensions."""
    return np.exp(log_harmonic_dimension(dim, degree))


def log_relu_coefficient(dim: int, degree) -> np.ndarray:
    """log |h_l| (−inf where h_l = 0: odd l ≥ 3)."""
    d = check_sphere_dim(dim)
    l = np.atleast_1d(np.asarray(degree, dtype=np.int64))
    out = np.full(l.shape, -np.inf)
    for i, li in enumerate(l.tolist()):
        if li < 0:
            raise ValueError(f"degrees must be >= 0; got {li}")
        if li == 1:
            out[i] = -math.log(2 * d)
        elif li % 2 == 0:
            log_gamma_half = math.log(2 * math.sqrt(math.pi)) if li == 0 else math.lgamma((li - 1) / 2)
            out[i] = math.lgamma(d / 2) + log_gamma_half - math.log(4 * math.pi) - math.lgamma((li + d + 1) / 2)
    return out.reshape(np.shape(degree))


def relu_coefficient(dim: int, degree) -> np.ndarray:
    """h_l = E_t[relu(t) P_l(t)], with sign: h_0, h_1 > 0; h_l = (−1)^{l/2 − 1} |h_l| for even l ≥ 2."""
    l = np.asarray(degree, dtype=np.int64)
    sign = np.where((l >= 2) & (l % 2 == 0), np.where((l // 2) % 2 == 1, 1.0, -1.0), 1.0)
    return sign * np.exp(log_relu_coefficient(dim, l))


def relu_series_weights(dim: int, degree) -> np.ndarray:
    """N(d, l) h_l²: the coefficients of J(ρ)/d = Σ_l N(d, l) h_l² P_l(ρ)."""
    return np.exp(log_harmonic_dimension(dim, degree) + 2 * log_relu_coefficient(dim, degree))


def relu_series_tail(dim: int, first_degree: int) -> float:
    """Σ_{l ≥ first_degree} N(d, l) h_l² = 1/(2d) − Σ_{l < first_degree} N(d, l) h_l² (the series sums to
    J(1)/d = 1/(2d)); the partial sum is added exactly (math.fsum), so the result is good to ~1e-17/d."""
    d = check_sphere_dim(dim)
    head = math.fsum(relu_series_weights(d, np.arange(int(first_degree))).tolist()) if first_degree > 0 else 0.0
    return max(math.fsum([1 / (2 * d), -head]), 0.0)


def gegenbauer(dim: int, max_degree: int, t: jax.Array) -> jax.Array:
    """[P_0(t), …, P_L(t)] (L + 1, …) by the three-term recurrence (stable on [−1, 1])."""
    d = check_sphere_dim(dim)
    values = [jnp.ones_like(t), t]
    for l in range(1, max_degree):
        values.append(((2 * l + d - 2) * t * values[l] - l * values[l - 1]) / (l + d - 2))
    return jnp.stack(values[: max_degree + 1])


def gegenbauer_numpy(dim: int, max_degree: int, t) -> np.ndarray:
    """``gegenbauer`` in numpy float64."""
    d = check_sphere_dim(dim)
    t = np.asarray(t, np.float64)
    values = [np.ones_like(t), t]
    for l in range(1, max_degree):
        values.append(((2 * l + d - 2) * t * values[l] - l * values[l - 1]) / (l + d - 2))
    return np.stack(values[: max_degree + 1])


def log_sphere_constant(dim: int) -> float:
    """log c_d, the normaliser of the density c_d (1 − t²)^{(d−3)/2} of t = z₁."""
    d = check_sphere_dim(dim)
    return math.lgamma(d / 2) - 0.5 * math.log(math.pi) - math.lgamma((d - 1) / 2)


def power_moment(dim: int, power: int, degree: int) -> float:
    """E_t[t^i P_l(t)] for i = power, l = degree (closed form; 0 unless i ≥ l and i − l is even)."""
    d = check_sphere_dim(dim)
    i, l = int(power), int(degree)
    if i < l or (i - l) % 2:
        return 0.0
    p = (i - l) // 2
    nu = l + (d - 3) / 2
    log_value = (log_sphere_constant(d) + math.lgamma((d - 1) / 2) - l * math.log(2) - math.lgamma(l + (d - 1) / 2)
                 + math.lgamma(i + 1) - math.lgamma(i - l + 1)
                 + math.lgamma(p + 0.5) + math.lgamma(nu + 1) - math.lgamma(p + nu + 1.5))
    return math.exp(log_value)


def radial_moment(dim: int, power: int, kind: str, variance: float = 1.0) -> float:
    """E|x|^p: x ~ N(0, variance · I) (``"gaussian"``) or uniform on the sphere of radius √d (``"sphere"``)."""
    d = check_sphere_dim(dim)
    if kind == "sphere":
        return float(d) ** (power / 2)
    return math.exp(power / 2 * math.log(2 * variance) + math.lgamma((d + power) / 2) - math.lgamma(d / 2))


def hermite_power_coefficients(degree: int) -> list:
    """[a_0, …, a_k] with h_k(s) = He_k(s)/√k! = Σ_i a_i s^i."""
    k = int(degree)
    coef = [0.0] * (k + 1)
    for m in range(k // 2 + 1):
        coef[k - 2 * m] = (-1) ** m * math.factorial(k) / (math.factorial(m) * math.factorial(k - 2 * m) * 2**m)
    norm = math.sqrt(math.factorial(k))
    return [c / norm for c in coef]
