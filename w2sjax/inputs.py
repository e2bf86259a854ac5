"""Input laws: the distributions of x ∈ R^d that moments are taken under.

``gaussian``: x ~ N(0, Σ), Σ given by its diagonal (d,) or in full (d, d) (symmetric positive definite);
``sphere``:   x uniform on the sphere of radius √d (isotropic).

Every law is a frozen dataclass registered as a PyTree (arrays are leaves, kinds are static), so laws pass
through ``jax.jit`` and ``jax.vmap``. ``components(law)`` lists (weight, law) pairs: a plain law is its own
single component, and mixtures (``mixtures``) list theirs, so a moment of a mixture is the weighted sum of the
moments of its components.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, check_positive_int, is_traced

INPUT_KINDS = ("gaussian", "sphere")


def pytree(cls):
    """Register a frozen dataclass as a PyTree; fields with metadata static=True are static."""
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def static_field(**kwargs):
    return dataclasses.field(metadata={"static": True}, **kwargs)


def default_float():
    """float64 under JAX's 64-bit mode (on once w2sjax is imported), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


@pytree
@dataclasses.dataclass(frozen=True)
class InputDistribution:
    """Distribution of x ∈ R^d.

    Attributes:
      covariance: Σ as its diagonal (d,) or in full (d, d); all ones for the sphere.
      kind: ``"gaussian"`` or ``"sphere"`` (radius √d, isotropic).
    """

    covariance: jax.Array
    kind: str = static_field(default="gaussian")

    @property
    def dim(self) -> int:
        return int(self.covariance.shape[-1])

    @property
    def dtype(self):
        return self.covariance.dtype

    @property
    def is_diagonal(self) -> bool:
        return self.covariance.ndim == 1

    @property
    def variances(self) -> jax.Array:
        """(d,) the diagonal of Σ."""
        return self.covariance if self.is_diagonal else jnp.diagonal(self.covariance)

    def is_isotropic(self) -> bool:
        """Σ = I (concrete laws only)."""
        cov = np.asarray(self.covariance)
        identity = np.ones(self.dim) if self.is_diagonal else np.eye(self.dim)
        return bool(np.allclose(cov, identity, rtol=0, atol=1e-12))

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples, shape (n, d)."""
        return sample_inputs(self, key, n)


def gaussian_inputs(dim: int, variances=None, dtype=None, covariance=None) -> InputDistribution:
    """x ~ N(0, Σ): identity by default, diagonal ``variances`` (d,), or a full ``covariance`` (d, d).
    Traced values (under jit/vmap/grad) are checked for shape only."""
    check_positive_int(dim, "dim")
    dtype = dtype or default_float()
    if variances is not None and covariance is not None:
        raise ValueError("give the diagonal `variances` or the full `covariance`, not both")
    if is_traced(variances, covariance):
        given = covariance if covariance is not None else variances
        shape = (dim, dim) if covariance is not None else (dim,)
        if tuple(jnp.shape(given)) != shape:
            raise ValueError(f"{'covariance' if covariance is not None else 'input variances'} must have shape "
                             f"{shape}; got {tuple(jnp.shape(given))}")
        return InputDistribution(jnp.asarray(given, dtype), "gaussian")
    if covariance is not None:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.shape != (dim, dim):
            raise ValueError(f"covariance must have shape ({dim}, {dim}); got {cov.shape}")
        check_finite(cov, "covariance")
        if not np.allclose(cov, cov.T, rtol=1e-12, atol=1e-300):
            raise ValueError("covariance must be symmetric; pass (C + C.T) / 2")
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("covariance must be positive definite (all eigenvalues > 0)")
        return InputDistribution(jnp.asarray(cov, dtype), "gaussian")
    if variances is None:
        return InputDistribution(jnp.ones((dim,), dtype), "gaussian")
    var = np.asarray(variances, dtype=np.float64)
    if var.shape != (dim,):
        raise ValueError(f"input variances must have shape ({dim},); got {var.shape}")
    check_finite(var, "input variances")
    if np.any(var <= 0):
        raise ValueError("input variances must be > 0 (the diagonal of Σ); got a value <= 0")
    return InputDistribution(jnp.asarray(var, dtype), "gaussian")


def sphere_inputs(dim: int, dtype=None) -> InputDistribution:
    """x uniform on the sphere of radius √d."""
    check_positive_int(dim, "dim")
    return InputDistribution(jnp.ones((dim,), dtype or default_float()), "sphere")


def make_inputs(kind: str, dim: int, variances=None, dtype=None) -> InputDistribution:
    """Input law by name: ``"gaussian"`` (optionally diagonal ``variances``) or ``"sphere"``."""
    if kind == "gaussian":
        return gaussian_inputs(dim, variances, dtype)
    if kind == "sphere":
        if variances is not None:
            raise ValueError("sphere inputs are isotropic: drop `variances`, or use kind='gaussian'")
        return sphere_inputs(dim, dtype)
    raise ValueError(f"unknown input distribution {kind!r}; choose one of {INPUT_KINDS}")


def covariance_product(inputs: InputDistribution, A: jax.Array) -> jax.Array:
    """A Σ for A of shape (..., d)."""
    if inputs.is_diagonal:
        return A * inputs.covariance
    return A @ inputs.covariance


def sample_inputs(inputs: InputDistribution, key: jax.Array, n: int) -> jax.Array:
    """n i.i.d. samples of x, shape (n, d)."""
    z = jax.random.normal(key, (n, inputs.dim), inputs.dtype)
    if inputs.kind == "sphere":
        return z * (math.sqrt(inputs.dim) / jnp.linalg.norm(z, axis=-1, keepdims=True))
    if inputs.is_diagonal:
        return z * jnp.sqrt(inputs.covariance)
    return z @ jnp.linalg.cholesky(inputs.covariance).T


def components(inputs) -> tuple:
    """((weight, law), …): the Gaussian or spherical components of a law (a plain law is one component)."""
    parts = getattr(inputs, "components", None)
    if parts is None or isinstance(inputs, InputDistribution):
        return ((1.0, inputs),)
    return tuple(zip(inputs.weights, parts))


def input_dim(inputs) -> int:
    return components(inputs)[0][1].dim


def input_dtype(inputs):
    return components(inputs)[0][1].dtype
