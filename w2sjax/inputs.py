"""Input laws: the distributions of x ∈ R^d that moments are taken under.

``gaussian``: x ~ N(0, Σ), Σ given by its diagonal (d,) or in full (d, d) (symmetric positive definite);
``sphere``:   x uniform on the sphere of radius √d (isotropic).

Every law is a frozen dataclass registered as a PyTree (arrays are leaves, kinds are static), so laws pass
through ``jax.jit`` and ``jax.vmap``. ``components(law)`` lists (weight, law) pairs: a plain law is its own
single component, and a ``Mixture`` Σ_g π_g P_g (groups of inputs, each Gaussian with its own Σ_g, or
spherical) lists its own, so a moment of a mixture is the weighted sum of the moments of its components.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_finite, check_positive_int, check_real, is_traced

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
        cov = check_real(covariance, "covariance")
        if cov.shape != (dim, dim):
            raise ValueError(f"covariance must have shape ({dim}, {dim}); got {cov.shape}")
        check_finite(cov, "covariance")
        if not np.allclose(cov, cov.T, rtol=1e-12, atol=1e-300):
            raise ValueError("covariance must be symmetric; pass (C + C.T) / 2")
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("covariance must be positive definite (all eigenvalues > 0)")
        return InputDistribution(jnp.asarray(cov, dtype), "gaussian")
    if variances is None:
        return InputDistribution(jax.device_put(np.ones(dim, dtype)), "gaussian")
    var = check_real(variances, "input variances")
    if var.shape != (dim,):
        raise ValueError(f"input variances must have shape ({dim},); got {var.shape}")
    check_finite(var, "input variances")
    if np.any(var <= 0):
        raise ValueError("input variances must be > 0 (the diagonal of Σ); got a value <= 0")
    return InputDistribution(jnp.asarray(var, dtype), "gaussian")


def sphere_inputs(dim: int, dtype=None) -> InputDistribution:
    """x uniform on the sphere of radius √d."""
    check_positive_int(dim, "dim")
    return InputDistribution(jax.device_put(np.ones(dim, dtype or default_float())), "sphere")


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
    if isinstance(inputs, Mixture):
        return sample_mixture(inputs, key, n)[0]
    z = jax.random.normal(key, (n, inputs.dim), inputs.dtype)
    if inputs.kind == "sphere":
        return z * (math.sqrt(inputs.dim) / jnp.linalg.norm(z, axis=-1, keepdims=True))
    if inputs.is_diagonal:
        return z * jnp.sqrt(inputs.covariance)
    return z @ jnp.linalg.cholesky(inputs.covariance).T


# --------------------------------------------------------------------------------------------------
# Mixtures: groups of inputs, each with its own law
# --------------------------------------------------------------------------------------------------

WEIGHT_SUM_TOL = 1e-10
"""|Σ_g π_g − 1| allowed in a mixture's weights."""


@pytree
@dataclasses.dataclass(frozen=True)
class Mixture:
    """x ~ Σ_g π_g P_g: a group g drawn with probability π_g, then x from its component P_g.

    Every moment is the weighted sum of the components' moments, E[u(x)] = Σ_g π_g E_g[u(x)], so the exact
    Gaussian (or spherical) formulas apply component by component. Group g is the g-th component; a group
    target (``targets.GroupTarget``) pairs its g-th function with it.

    Attributes:
      weights: (G,) π_g ≥ 0, Σ_g π_g = 1 (a weight may be 0: that group is absent).
      components: G ``InputDistribution`` laws of one dimension (Gaussian with their own diagonal or full Σ_g,
        or sphere).
    """

    weights: jax.Array
    components: tuple

    @property
    def dim(self) -> int:
        return self.components[0].dim

    @property
    def dtype(self):
        return self.components[0].dtype

    @property
    def groups(self) -> int:
        return len(self.components)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples, shape (n, d)."""
        return sample_mixture(self, key, n)[0]


def check_law(law, name: str = "input law") -> None:
    """ValueError where a law is malformed (concrete values): Σ not finite, not symmetric or not positive
    definite; mixture weights negative or not summing to 1; components of different dimensions."""
    if isinstance(law, Mixture):
        parts = law.components
        if not isinstance(parts, tuple) or not parts or not all(isinstance(c, InputDistribution) for c in parts):
            raise ValueError(f"{name}: mixture components must be a non-empty tuple of InputDistribution laws "
                             "(no nested mixtures)")
        w = np.asarray(law.weights, dtype=np.float64)
        if w.shape != (len(parts),):
            raise ValueError(f"{name}: mixture weights must have shape ({len(parts)},), one per component; "
                             f"got {w.shape}")
        check_finite(w, f"{name} mixture weights")
        if np.any(w < 0):
            raise ValueError(f"{name}: mixture weights must be >= 0; got min {w.min():.3g}")
        if abs(w.sum() - 1) > WEIGHT_SUM_TOL:
            raise ValueError(f"{name}: mixture weights must sum to 1; got sum {w.sum():.12g} (divide by the sum)")
        dims = {c.dim for c in parts}
        if len(dims) != 1:
            raise ValueError(f"{name}: mixture components must share one dimension; got {sorted(dims)}")
        for g, c in enumerate(parts):
            check_law(c, f"{name} component {g}")
        return
    if not isinstance(law, InputDistribution):
        raise ValueError(f"{name} must be an InputDistribution or a Mixture; got {type(law).__name__}")
    if law.kind not in INPUT_KINDS:
        raise ValueError(f"{name}: unknown kind {law.kind!r}; choose one of {INPUT_KINDS}")
    cov = np.asarray(law.covariance, dtype=np.float64)
    if cov.ndim not in (1, 2) or (cov.ndim == 2 and cov.shape[0] != cov.shape[1]) or cov.shape[-1] == 0:
        raise ValueError(f"{name}: covariance must have shape (d,) or (d, d); got {cov.shape}")
    check_finite(cov, f"{name} covariance")
    if cov.ndim == 1:
        if np.any(cov <= 0):
            raise ValueError(f"{name}: variances (the diagonal of Σ) must be > 0; got min {cov.min():.3g}")
        return
    if not np.allclose(cov, cov.T, rtol=1e-12, atol=1e-300):
        raise ValueError(f"{name}: covariance must be symmetric; pass (C + C.T) / 2")
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"{name}: covariance must be positive definite; its smallest eigenvalue is "
                         f"{np.linalg.eigvalsh(cov).min():.3g}")


def mixture_inputs(weights, laws, dtype=None) -> Mixture:
    """The mixture Σ_g π_g P_g of ``laws`` (InputDistribution, one dimension) with ``weights`` π (G,)."""
    laws = tuple(laws)
    dtype = dtype or (laws[0].dtype if laws and isinstance(laws[0], InputDistribution) else default_float())
    w = np.asarray(weights)
    if np.iscomplexobj(w) or w.dtype.kind not in "iuf":
        raise ValueError(f"mixture weights must be real numbers; got dtype {w.dtype}")
    law = Mixture(jnp.asarray(w, dtype), laws)
    check_law(law, "mixture")
    return Mixture(law.weights, tuple(InputDistribution(jnp.asarray(c.covariance, dtype), c.kind) for c in laws))


def gaussian_mixture(weights, covariances, dtype=None) -> Mixture:
    """Σ_g π_g N(0, Σ_g): each Σ_g given by its diagonal (d,) or in full (d, d)."""
    laws = []
    for g, cov in enumerate(covariances):
        c = np.asarray(cov, dtype=np.float64)
        if c.ndim not in (1, 2) or c.size == 0:
            raise ValueError(f"covariance of group {g} must have shape (d,) or (d, d); got {c.shape}")
        try:
            if c.ndim == 1:
                laws.append(gaussian_inputs(c.shape[0], variances=c, dtype=dtype))
            else:
                laws.append(gaussian_inputs(c.shape[0], covariance=c, dtype=dtype))
        except ValueError as err:
            raise ValueError(f"group {g}: {err}") from None
    if not laws:
        raise ValueError("a mixture needs at least one group covariance")
    return mixture_inputs(weights, laws, dtype)


def with_weights(law: Mixture, weights) -> Mixture:
    """The same groups with other weights (e.g. the teacher's, the student's and the test law)."""
    return mixture_inputs(weights, law.components, law.dtype)


def group_laws(law) -> tuple:
    """The law of each group, as a mixture with one-hot weights (so group targets still pair group g with
    component g): a tuple of G mixtures."""
    if not isinstance(law, Mixture):
        raise ValueError(f"group laws need a Mixture; got {type(law).__name__}")
    eye = np.eye(law.groups)
    return tuple(Mixture(jnp.asarray(eye[g], law.weights.dtype), law.components) for g in range(law.groups))


def sample_mixture(law: Mixture, key: jax.Array, n: int):
    """n i.i.d. draws of a mixture: (x (n, d), groups (n,) int)."""
    key_group, key_x = jax.random.split(key)
    logits = jnp.where(law.weights > 0, jnp.log(jnp.where(law.weights > 0, law.weights, 1)), -jnp.inf)
    groups = jax.random.categorical(key_group, logits, shape=(n,))
    keys = jax.random.split(key_x, law.groups)
    draws = jnp.stack([sample_inputs(c, k, n) for c, k in zip(law.components, keys)])
    return draws[groups, jnp.arange(n)], groups


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
