"""Random-feature models and their exact population moments.

A width-M model has fixed bottom weights U ∈ R^{M×d}, activation σ and features φ(x) = σ(U x)/√M; only the
top layer w is trained, f_w(x) = ⟨w, φ(x)⟩. Default weight laws: ReLU rows uniform on the unit sphere; linear
entries i.i.d. N(0, 1/d). The moments G_ab = E[φ_a φ_bᵀ] and c = E[φ f*] are sums of the single-index unit
moments of ``kernels`` (closed forms for Gaussian, spherical and mixture laws).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_finite, check_positive_int, check_seed, is_traced
from w2sjax.inputs import default_float, input_dim, pytree, static_field
from w2sjax.kernels import unit_moment, unit_values
from w2sjax.targets import NetworkTarget, Target, units_target_moment

ACTIVATIONS = ("relu", "linear")


@pytree
@dataclasses.dataclass(frozen=True)
class RandomFeatures:
    """φ(x) = σ(U x)/√width.

    Attributes:
      weights: (M, d) bottom-layer weights U (a batch: (n, M, d)); rows past ``width`` may be zero padding.
      width: the M in 1/√M (an array, so padded models of different widths share one shape).
      activation: ``"relu"`` or ``"linear"`` (static).
    """

    weights: jax.Array
    width: jax.Array
    activation: str = static_field(default="relu")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[-1])

    @property
    def rows(self) -> int:
        return int(self.weights.shape[-2])

    def __call__(self, x: jax.Array) -> jax.Array:
        """Features of x (..., d) → (..., M)."""
        return unit_values(self.activation, 1, x @ self.weights.T) / jnp.sqrt(self.width)


def random_features(weights, activation: str = "relu", dtype=None) -> RandomFeatures:
    """Wrap explicit weights (M, d), used exactly as given (traced weights: checked for shape only)."""
    check_choice(activation, ACTIVATIONS, "activation")
    if is_traced(weights):
        if jnp.ndim(weights) != 2 or 0 in jnp.shape(weights):
            raise ValueError(f"weights must be a non-empty (M, d) matrix; got shape {jnp.shape(weights)}")
        dtype = dtype or default_float()
        return RandomFeatures(jnp.asarray(weights, dtype), jnp.asarray(jnp.shape(weights)[0], dtype), activation)
    w = np.asarray(weights)
    if np.iscomplexobj(w):
        raise ValueError(f"{activation} feature weights must be real; got complex values")
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"weights must be a non-empty (M, d) matrix; got shape {w.shape}")
    w = np.asarray(w, dtype=np.float64)
    check_finite(w, f"{activation} feature weights")
    dtype = dtype or default_float()
    return RandomFeatures(jnp.asarray(w, dtype), jnp.asarray(w.shape[0], dtype), activation)


DRAW_ELEMENTS = 1 << 17
"""Weights are drawn in a power-of-two number of rows, at least DRAW_ELEMENTS numbers in all, and cut to the width
(``draw_rows``): with JAX's partitionable threefry (the default) the first rows of a draw are a draw of that
width (the same normals), so one compiled sampler serves many widths (fig2 at d = 32: the teachers 16…256 and the
student 4096 share one), and any width is the prefix of a wider draw of the same key."""


def draw_rows(width: int, dim: int) -> int:
    """Rows actually drawn for ``width`` rows of dimension ``dim``: the next power of two, at least the largest
    power of two of rows within DRAW_ELEMENTS numbers (the width itself where threefry is not partitionable: its
    draws are not nested)."""
    if not jax.config.jax_threefry_partitionable:
        return width
    return 1 << max((width - 1).bit_length(), max(DRAW_ELEMENTS // dim, 1).bit_length() - 1)


def sample_weights(key: jax.Array, width: int, dim: int, activation: str, dtype=None) -> jax.Array:
    """Weights by the default law: ReLU rows uniform on the unit sphere; linear entries N(0, 1/d)."""
    check_choice(activation, ACTIVATIONS, "activation")
    width, dim = check_positive_int(width, "width"), check_positive_int(dim, "dim")
    drawn = _sample_weights(key, draw_rows(width, dim), dim, activation, jnp.dtype(dtype or default_float()))
    return _first_rows(drawn, width)


def _first_rows(drawn: jax.Array, width: int) -> jax.Array:
    """The first ``width`` rows of a draw, cut on the host (no compiled program per width)."""
    return drawn if drawn.shape[0] == width else jax.device_put(np.asarray(drawn)[:width])


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _sample_weights(key, rows, dim, activation, dtype):
    """(rows, d) weights of the default law from ``key``."""
    z = jax.random.normal(key, (rows, dim), dtype)
    if activation == "relu":
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z / math.sqrt(dim)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _seeded_weights(seed, folds, rows, dim, activation):
    """``_sample_weights`` (float64) from the key fold_in(key(seed), folds[0]), folded in again with folds[1]
    where that is ≥ 0: the key derived in the same compiled program, one program for a student's key (one fold)
    and a teacher's (two)."""
    key = jax.random.fold_in(jax.random.key(seed), folds[0])
    key = jax.lax.cond(folds[1] >= 0, lambda k: jax.random.fold_in(k, folds[1]), lambda k: k, key)
    return _sample_weights(key, rows, dim, activation, jnp.dtype(jnp.float64))


def feature_gram(fa: RandomFeatures, fb: RandomFeatures, inputs) -> jax.Array:
    """G_ab = E[φ_a(x) φ_b(x)ᵀ], shape (Ma, Mb)."""
    moment = unit_moment(fa.activation, 1, fa.weights, fb.activation, 1, fb.weights, inputs)
    return moment / jnp.sqrt(fa.width * fb.width)


def feature_target_moment(f: RandomFeatures, target: Target, inputs) -> jax.Array:
    """c = E[φ(x) f*(x)], shape (M,), for any target (a teacher's function included)."""
    return units_target_moment(f.activation, 1, f.weights, target, inputs) / jnp.sqrt(f.width)


def model_function(features: RandomFeatures, weights: jax.Array) -> NetworkTarget:
    """The function f_w(x) = ⟨w, φ(x)⟩ as a target: Σ_j (w_j/√M) σ(u_jᵀx)."""
    return NetworkTarget(features.weights, weights / jnp.sqrt(features.width), features.activation)


def feature_factor(f: RandomFeatures, inputs) -> jax.Array:
    """F with E[φ φᵀ] = F Fᵀ for linear features under one Gaussian law: F = U Σ^{1/2}/√M, shape (M, d)."""
    if f.activation != "linear":
        raise ValueError("only linear features factor through the input space; use feature_gram for ReLU")
    cov = inputs.covariance
    root = jnp.sqrt(cov) if cov.ndim == 1 else jnp.linalg.cholesky(cov)
    u = f.weights * root if cov.ndim == 1 else f.weights @ root
    return u / jnp.sqrt(f.width)


def check_features(f: RandomFeatures, inputs, name: str = "features") -> None:
    """ValueError where features do not fit the inputs, or hold non-finite weights (concrete values only)."""
    if isinstance(f, InfiniteFeatures):
        if f.dim != input_dim(inputs):
            raise ValueError(f"{name} have input dimension {f.dim} but the inputs have dimension {input_dim(inputs)}")
        check_choice(f.activation, ACTIVATIONS, f"{name} activation")
        return
    if f.dim != input_dim(inputs):
        raise ValueError(f"{name} have input dimension {f.dim} but the inputs have dimension {input_dim(inputs)}")
    check_choice(f.activation, ACTIVATIONS, f"{name} activation")
    if not is_traced(f.weights):
        check_finite(np.asarray(f.weights), f"{name} weights")


STUDENT_STREAM, TEACHER_STREAM = 0, 1


def student_weights(seed: int, width: int, dim: int, activation: str) -> jax.Array:
    """The (width, d) weights of student seed ``seed``, from ``fold_in(key(seed), 0)``: a narrower student is a
    prefix of a wider one (students are nested). Drawn in float64 whatever the precision, so float32 and
    float64 runs share weights."""
    return _nested_weights(check_seed(seed), (STUDENT_STREAM, -1), width, dim, activation)


def teacher_weights(seed: int, width: int, dim: int, activation: str) -> jax.Array:
    """The (width, d) weights of teacher seed ``seed`` at this width, from ``fold_in(fold_in(key(seed), 1), width)``."""
    width = check_positive_int(width, "width")
    return _nested_weights(check_seed(seed), (TEACHER_STREAM, width), width, dim, activation)


def _nested_weights(seed: int, folds: tuple, width: int, dim: int, activation: str) -> jax.Array:
    """``sample_weights`` (float64) from the key of ``_seeded_weights`` (folds: (stream, −1) or (stream, width))."""
    check_choice(activation, ACTIVATIONS, "activation")
    width, dim = check_positive_int(width, "width"), check_positive_int(dim, "dim")
    drawn = _seeded_weights(seed, np.asarray(folds, np.int64), draw_rows(width, dim), dim, activation)
    return _first_rows(drawn, width)


# --------------------------------------------------------------------------------------------------
# The infinitely wide student
# --------------------------------------------------------------------------------------------------

INFINITE_WIDTH_NAMES = ("inf", "infinite", "∞")


@pytree
@dataclasses.dataclass(frozen=True)
class InfiniteFeatures:
    """The M → ∞ limit of ``RandomFeatures`` drawn from the default weight law (ReLU: rows uniform on the unit
    sphere; linear: entries N(0, 1/d)). It has no weights: only its kernel k(x, x') = E_u[σ(u·x) σ(u·x')]
    (``routes.infinite``).

    Attributes:
      dim: d (static).
      activation: ``"relu"`` or ``"linear"`` (static).
      dtype: the float type of its stopping times, like a finite student's weights (static, a numpy dtype
        name); the moments are computed in the inputs' dtype.
    """

    dim: int = static_field()
    activation: str = static_field(default="relu")
    dtype: str = static_field(default="float64")

    @property
    def width(self) -> float:
        return math.inf


def infinite_features(dim: int, activation: str = "relu", dtype=None) -> InfiniteFeatures:
    """The infinitely wide student of input dimension d (dtype: default float64, or float32 on request)."""
    check_positive_int(dim, "dim")
    check_choice(activation, ACTIVATIONS, "activation")
    name = np.dtype(dtype or default_float()).name
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64; got {name}")
    return InfiniteFeatures(int(dim), activation, name)


def is_infinite_width(width) -> bool:
    """True for math.inf, float("inf") and the names "inf", "infinite", "∞"."""
    if isinstance(width, str):
        return width.strip().lower() in INFINITE_WIDTH_NAMES
    if isinstance(width, (float, np.floating)):
        return bool(np.isposinf(width))
    return False


def student_features(seed: int, width, dim: int, activation: str = "relu", dtype=None):
    """The student of seed ``seed`` at a width: ``RandomFeatures`` with ``student_weights(seed, width, …)``, or
    ``InfiniteFeatures`` when the width is infinite (math.inf or "inf"; the seed is then irrelevant)."""
    if is_infinite_width(width):
        return infinite_features(dim, activation, dtype)
    if isinstance(width, str):
        raise ValueError(f"student width must be a positive integer or 'inf'; got {width!r}")
    return random_features(student_weights(seed, width, dim, activation), activation, dtype)


def teacher_features(seed: int, width: int, dim: int, activation: str = "relu", dtype=None) -> RandomFeatures:
    """The teacher of seed ``seed`` at a width: ``RandomFeatures`` with ``teacher_weights(seed, width, …)``."""
    return random_features(teacher_weights(seed, width, dim, activation), activation, dtype)
