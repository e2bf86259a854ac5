"""Exact moments of single-index units: E[σ_p(pᵀx) σ_q(qᵀx)] for every pair of unit kinds.

A *unit* is a function σ(vᵀx) of one projection of x. Features, targets and teachers are all sums of units:
  ``relu``:       σ(u) = max(u, 0)
  ``linear``:     σ(u) = u
  ``hermite``:    σ(u) = h_k(u) = He_k(u)/√k!  (degree k ≥ 0)

For x ~ N(0, Σ), u = pᵀx and v = qᵀx are jointly Gaussian with standard deviations s_u = ‖p‖_Σ, s_v = ‖q‖_Σ
(‖a‖_Σ = √(aᵀΣa)) and correlation r = pᵀΣq/(s_u s_v). With u = s_u u', v = s_v v' (u', v' standard):
  relu × relu:      s_u s_v J(r),   J(r) = (√(1 − r²) + (π − arccos r) r)/(2π)
  relu × linear:    s_u s_v r/2      linear × linear:  s_u s_v r
  relu × h_k:       s_u Σ_j C_kj(s_v) √j! c_j r^j / √k!,    c_j = E[relu(z) h_j(z)]
  linear × h_k:     s_u r C_k1(s_v) / √k!
  h_j × h_k:        Σ_i C_ji(s_u) C_ki(s_v) i! r^i / √(j! k!)
where He_k(s z) = Σ_i C_ki(s) He_i(z) (the scaling formula C_k,k−2m(s) = s^{k−2m}(s² − 1)^m k!/(m!(k−2m)! 2^m)),
and E[He_i(u') He_j(v')] = δ_ij i! r^i. At s = 1, C_ki = δ_ki and the formulas are the familiar ones
(relu × h_k = s_u c_k r^k, h_j × h_k = δ_jk r^k).

On the sphere of radius √d, the moments of units that are homogeneous of degree 1 (relu, linear, h_1) equal
the N(0, I) ones (the product of two such units is homogeneous of degree 2 and E‖x‖² = d in both laws); other
units on the sphere have no closed form here and are refused (``check_sphere_units``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from w2sjax.inputs import InputDistribution, components, covariance_product

UNIT_KINDS = ("relu", "linear", "hermite")


# arcsin on [0, 0.625] as x + x³ P(x²)/Q(x²) (the Cephes rational approximation, ≤ 1 ulp in float64)
_ASIN_P = (4.253011369004428248960e-3, -6.019598008014123785661e-1, 5.444622390564711410273e0,
           -1.626247967210700244449e1, 1.956261983317594739197e1, -8.198089802484824371615e0)
_ASIN_Q = (1.0, -1.474091372988853791896e1, 7.049610280856842141659e1, -1.471791292232726029859e2,
           1.395105614657485689735e2, -4.918853881490881290097e1)


def _polynomial(x, coefficients):
    y = jnp.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        y = y * x + c
    return y


def arccos(r: jax.Array) -> jax.Array:
    """arccos on [−1, 1] from one rational arcsin on [0, 1/2] (one square root, one division; vectorises,
    unlike the library call). |r| ≤ 1/2: π/2 − asin r; r > 1/2: 2 asin √((1 − r)/2); r < −1/2: π − 2 asin √((1 + r)/2)."""
    a = jnp.abs(r)
    small = a <= 0.5
    x = jnp.where(small, a, jnp.sqrt(jnp.maximum(0.5 * (1 - a), 0)))
    if x.dtype == jnp.float64:
        z = x * x
        s = x + x * (z * _polynomial(z, _ASIN_P) / _polynomial(z, _ASIN_Q))
    else:
        s = jnp.arcsin(x)
    half_pi = jnp.pi / 2
    return jnp.where(small, half_pi - jnp.where(r < 0, -s, s), jnp.where(r > 0, 2 * s, jnp.pi - 2 * s))


@jax.custom_jvp
def relu_kernel(r: jax.Array) -> jax.Array:
    """J(r) = (√(1 − r²) + (π − arccos r) r)/(2π) = E[relu(u) relu(v)] for unit-variance u, v of correlation r.

    Its derivative J'(r) = (π − arccos r)/(2π) is finite on [−1, 1] (the custom JVP uses it: the chain rule
    through √(1 − r²) and arccos r would give ∞ − ∞ at r = ±1, e.g. on the diagonal of a Gram matrix)."""
    c = jnp.clip(r, -1.0, 1.0)
    return (jnp.sqrt(jnp.maximum(1 - c * c, 0)) + (jnp.pi - arccos(c)) * c) / (2 * jnp.pi)


@relu_kernel.defjvp
def _relu_kernel_jvp(primals, tangents):
    (r,), (dr,) = primals, tangents
    c = jnp.clip(r, -1.0, 1.0)
    return relu_kernel(r), (jnp.pi - arccos(c)) / (2 * jnp.pi) * dr


def hermite_at_zero(n: int) -> float:
    """He_n(0): 0 for odd n, (−1)^{n/2} (n−1)!! for even n."""
    if n % 2:
        return 0.0
    return float((-1) ** (n // 2) * math.prod(range(n - 1, 0, -2)))


def relu_hermite_coefficient(k: int) -> float:
    """c_k = E[relu(z) h_k(z)] for z ~ N(0, 1): 1/√(2π), 1/2, then He_{k−2}(0)/(√(2π) √k!)."""
    if k == 0:
        return 1 / math.sqrt(2 * math.pi)
    if k == 1:
        return 0.5
    return hermite_at_zero(k - 2) / (math.sqrt(2 * math.pi) * math.sqrt(math.factorial(k)))


def hermite_scaling(k: int, s: jax.Array) -> list:
    """[C_k0(s), …, C_kk(s)] with He_k(s z) = Σ_i C_ki(s) He_i(z); each entry has the shape of s."""
    coef = [jnp.zeros_like(s) for _ in range(k + 1)]
    for m in range(k // 2 + 1):
        i = k - 2 * m
        factor = math.factorial(k) / (math.factorial(m) * math.factorial(i) * 2**m)
        coef[i] = factor * s**i * (s * s - 1) ** m
    return coef


def hermite_polynomial(k: int, z: jax.Array) -> jax.Array:
    """Probabilists' Hermite polynomial He_k(z) by the three-term recurrence."""
    he_prev, he = jnp.ones_like(z), z
    if k == 0:
        return he_prev
    for n in range(1, k):
        he_prev, he = he, z * he - n * he_prev
    return he


def unit_values(kind: str, degree: int, z: jax.Array) -> jax.Array:
    """σ(z) of a unit kind, elementwise."""
    if kind == "relu":
        return jnp.maximum(z, 0)
    if kind == "linear":
        return z
    if kind == "hermite":
        return hermite_polynomial(degree, z) / math.sqrt(math.factorial(degree))
    raise ValueError(f"unknown unit kind {kind!r}; choose one of {UNIT_KINDS}")


def _safe_sqrt(x):
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def _safe_div(num, den):
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _gaussian_pair(kind_a, deg_a, A, kind_b, deg_b, B, law: InputDistribution):
    """E[σ_a(A x) σ_b(B x)ᵀ] for x ~ N(0, Σ) (one Gaussian component): (Ma, d), (Mb, d) → (Ma, Mb)."""
    a_sigma = covariance_product(law, A)
    inner = a_sigma @ B.T
    s_a = _safe_sqrt(jnp.sum(a_sigma * A, axis=-1))
    s_b = _safe_sqrt(jnp.sum(covariance_product(law, B) * B, axis=-1))
    scale = s_a[:, None] * s_b[None, :]
    if (kind_a, kind_b) == ("linear", "linear"):
        return inner
    if {kind_a, kind_b} == {"relu", "linear"}:
        return inner / 2
    r = _safe_div(inner, scale)
    if (kind_a, kind_b) == ("relu", "relu"):
        return scale * relu_kernel(r)
    if kind_a == "hermite" and kind_b != "hermite":  # put the Hermite unit second
        return _gaussian_pair(kind_b, deg_b, B, kind_a, deg_a, A, law).T
    if kind_b != "hermite":
        raise ValueError(f"unknown unit kinds {kind_a!r}, {kind_b!r}; choose from {UNIT_KINDS}")
    coef_b = hermite_scaling(deg_b, s_b[None, :])
    norm_b = math.sqrt(math.factorial(deg_b))
    if kind_a == "relu":
        total = 0.0
        for j in range(deg_b + 1):
            cj = math.sqrt(math.factorial(j)) * relu_hermite_coefficient(j)
            if cj != 0.0:
                total = total + coef_b[j] * cj * r**j
        return s_a[:, None] * total / norm_b
    if kind_a == "linear":
        return inner * _safe_div(coef_b[1], s_b[None, :]) / norm_b if deg_b >= 1 else jnp.zeros_like(inner)
    coef_a = hermite_scaling(deg_a, s_a[:, None])
    total = 0.0
    for i in range(min(deg_a, deg_b) + 1):
        total = total + coef_a[i] * coef_b[i] * math.factorial(i) * r**i
    return total / (math.sqrt(math.factorial(deg_a)) * norm_b)


def _degree_one(kind: str, degree: int) -> bool:
    return kind in ("relu", "linear") or (kind == "hermite" and degree == 1)


def check_sphere_units(kind: str, degree: int, what: str = "unit") -> None:
    """ValueError unless the unit is homogeneous of degree 1 (its sphere moments are the N(0, I) ones)."""
    if not _degree_one(kind, degree):
        raise ValueError(
            f"{what}: {kind} units of degree {degree} have no closed-form moments on the sphere (only degree-1 "
            "homogeneous units do: relu, linear, h_1); use gaussian inputs"
        )


def unit_moment(kind_a: str, deg_a: int, A: jax.Array, kind_b: str, deg_b: int, B: jax.Array, inputs) -> jax.Array:
    """E[σ_a(A x) σ_b(B x)ᵀ]: (Ma, d), (Mb, d) → (Ma, Mb), under a Gaussian, spherical or mixture law."""
    total = 0.0
    for weight, law in components(inputs):
        if law.kind == "sphere":
            check_sphere_units(kind_a, deg_a)
            check_sphere_units(kind_b, deg_b)
        total = total + weight * _gaussian_pair(kind_a, deg_a, A, kind_b, deg_b, B, law)
    return total


def relu_mean_ratio(law: InputDistribution) -> float:
    """E[relu(vᵀx)] / (‖v‖_Σ/√(2π)): 1 for Gaussian inputs, √d / E‖z‖ on the sphere of radius √d."""
    if law.kind == "gaussian":
        return 1.0
    d = law.dim
    mean_norm = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    return math.sqrt(d) / mean_norm


def unit_mean(kind: str, degree: int, A: jax.Array, inputs) -> jax.Array:
    """E[σ(A x)]: (M, d) → (M,)."""
    total = 0.0
    for weight, law in components(inputs):
        if kind == "relu":
            s = _safe_sqrt(jnp.sum(covariance_product(law, A) * A, axis=-1))
            total = total + weight * relu_mean_ratio(law) * s / math.sqrt(2 * math.pi)
        elif kind == "linear" or (kind == "hermite" and degree % 2 == 1):
            total = total + jnp.zeros(A.shape[:-1], A.dtype)
        else:  # even Hermite degree: E[h_k(v)] = C_k0(s)/√k!
            if law.kind == "sphere":
                check_sphere_units(kind, degree)
            s = _safe_sqrt(jnp.sum(covariance_product(law, A) * A, axis=-1))
            total = total + weight * hermite_scaling(degree, s)[0] / math.sqrt(math.factorial(degree))
    return total
