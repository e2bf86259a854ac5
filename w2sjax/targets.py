"""Targets f*: functions of x with exact moments. Every target is a sum of single-index units (``kernels``).

  ``LinearTarget(beta)``:                    f*(x) = ⟨β, x⟩
  ``HermiteTarget(beta, scale, degree)``:    f*(x) = scale · h_k(⟨β, x⟩), h_k = He_k/√k!
  ``NetworkTarget(inner, outer, activation)``: f*(x) = Σ_j a_j σ(v_jᵀx) (a ReLU or linear network; a trained
                                              teacher's function is one, with a = w_T/√M_TE)
  ``SumTarget(terms)``:                      the sum of its terms
  ``GroupTarget(terms)``:                    f*(x) = f_g(x) for x drawn from group g of a ``Mixture`` (labels
                                              that differ between groups; see below)

A Hermite target with ‖β‖_Σ = 1 has E[h_k²] = 1 (the paper's convention: ‖β‖ = 1, Σ = I); any other β and Σ
are allowed and their moments are exact. Targets are frozen dataclasses registered as PyTrees: a batch of
targets of one structure (e.g. teachers padded to one width) is the same class with a leading axis.

A group target is a function of (x, g), not of x alone: under a mixture Σ_g π_g P_g its moments are
E[u(x) f*] = Σ_g π_g E_g[u(x) f_g(x)] and E[f*²] = Σ_g π_g E_g[f_g(x)²], each an exact single-law moment of
an ordinary target; its values need the groups (``group_target_values``). Its g-th function pairs with the
g-th component of whatever mixture it is scored under (the teacher's, the student's or the test law), so
every such law must have exactly G components (one-hot mixtures for one group: ``inputs.group_laws``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from w2sjax._checks import check_choice, check_finite, check_positive_int, is_traced
from w2sjax.inputs import components, default_float, input_dim, pytree, static_field
from w2sjax.kernels import check_sphere_units, unit_mean, unit_moment, unit_values

NETWORK_ACTIVATIONS = ("relu", "linear")


@pytree
@dataclasses.dataclass(frozen=True)
class LinearTarget:
    """f*(x) = ⟨β, x⟩; β of shape (d,)."""

    beta: jax.Array


@pytree
@dataclasses.dataclass(frozen=True)
class HermiteTarget:
    """f*(x) = scale · h_k(⟨β, x⟩), h_k = He_k/√k!."""

    beta: jax.Array
    scale: jax.Array
    degree: int = static_field(default=1)


@pytree
@dataclasses.dataclass(frozen=True)
class NetworkTarget:
    """f*(x) = Σ_j a_j σ(v_jᵀx).

    Attributes:
      inner: (k, d) the rows v_j (zero rows are padding: they add nothing).
      outer: (k,) the coefficients a_j.
      activation: ``"relu"`` or ``"linear"`` (static).
    """

    inner: jax.Array
    outer: jax.Array
    activation: str = static_field(default="relu")

    @property
    def units(self) -> int:
        return int(self.inner.shape[-2])


@pytree
@dataclasses.dataclass(frozen=True)
class SumTarget:
    """f*(x) = Σ_j f_j(x) over linear, Hermite and network terms."""

    terms: tuple


@pytree
@dataclasses.dataclass(frozen=True)
class GroupTarget:
    """f*(x, g) = f_g(x): one ordinary target per group (component) of a mixture law.

    Attributes:
      terms: (f_1, …, f_G), linear, Hermite, network or sum targets of one input dimension.
    """

    terms: tuple

    @property
    def groups(self) -> int:
        return len(self.terms)


Target = Union[LinearTarget, HermiteTarget, NetworkTarget, SumTarget, GroupTarget]
TARGET_TYPES = (LinearTarget, HermiteTarget, NetworkTarget, SumTarget)


# --------------------------------------------------------------------------------------------------
# Constructors (validate concrete values; the classes themselves take arrays as they are)
# --------------------------------------------------------------------------------------------------


def _vector(beta, name: str):
    """A checked float64 vector; a traced one (jit/vmap/grad) is checked for shape only."""
    if is_traced(beta):
        if jnp.ndim(beta) != 1 or jnp.size(beta) == 0:
            raise ValueError(f"{name} must be a non-empty vector of shape (d,); got shape {jnp.shape(beta)}")
        return beta
    b = np.asarray(beta)
    if np.iscomplexobj(b):
        raise ValueError(f"{name} must be real; got complex values")
    b = np.asarray(b, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"{name} must be a non-empty vector of shape (d,); got shape {b.shape}")
    check_finite(b, name)
    return b


def linear_target(beta, dtype=None) -> LinearTarget:
    """f*(x) = ⟨β, x⟩."""
    return LinearTarget(jnp.asarray(_vector(beta, "beta"), dtype or default_float()))


def hermite_target(beta, degree: int, scale: float = 1.0, dtype=None) -> HermiteTarget:
    """scale · h_degree(⟨β, x⟩). The paper's convention is ‖β‖ = 1 with Σ = I (then E[h_k²] = 1)."""
    b = _vector(beta, "beta")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"Hermite degree must be an integer >= 0; got {degree!r}")
    if not is_traced(scale) and (not np.isfinite(scale) or np.iscomplexobj(scale)):
        raise ValueError(f"Hermite target scale must be a finite real number; got {scale!r}")
    dtype = dtype or default_float()
    scale = jnp.asarray(scale if is_traced(scale) else float(scale), dtype)
    return HermiteTarget(jnp.asarray(b, dtype), scale, int(degree))


def network_target(inner, outer, activation: str = "relu", dtype=None) -> NetworkTarget:
    """Σ_j a_j σ(v_jᵀx) for V = inner (k, d), a = outer (k,)."""
    check_choice(activation, NETWORK_ACTIVATIONS, "network activation")
    dtype = dtype or default_float()
    if is_traced(inner, outer):
        if jnp.ndim(inner) != 2 or jnp.shape(outer) != jnp.shape(inner)[:1]:
            raise ValueError(f"network weights must be inner (units, d) and outer (units,); got shapes "
                             f"{jnp.shape(inner)} and {jnp.shape(outer)}")
        return NetworkTarget(jnp.asarray(inner, dtype), jnp.asarray(outer, dtype), activation)
    v = np.asarray(inner, dtype=np.float64)
    a = np.asarray(outer, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"network inner weights must be a non-empty (units, d) matrix; got shape {v.shape}")
    if a.shape != (v.shape[0],):
        raise ValueError(f"network outer weights must have shape ({v.shape[0]},), one per unit; got {a.shape}")
    check_finite(v, "network inner weights")
    check_finite(a, "network outer weights")
    return NetworkTarget(jnp.asarray(v, dtype), jnp.asarray(a, dtype), activation)


def group_target(*terms) -> GroupTarget:
    """f*(x, g) = terms[g](x): the target of group g of a mixture (one ordinary target per group)."""
    if not terms:
        raise ValueError("a group target needs one target per group; got none")
    for g, t in enumerate(terms):
        if not isinstance(t, TARGET_TYPES):
            raise ValueError(f"group target term {g} must be an ordinary target (linear, Hermite, network or sum); "
                             f"got {type(t).__name__}")
    dims = {target_dim(t) for t in terms}
    if len(dims) != 1:
        raise ValueError(f"group target terms must share one input dimension; got {sorted(dims)}")
    return GroupTarget(tuple(terms))


def sum_target(*terms) -> SumTarget:
    """The sum of linear, Hermite and network targets (sums are flattened)."""
    if not terms:
        raise ValueError("a sum target needs at least one term")
    flat = []
    for t in terms:
        if not isinstance(t, TARGET_TYPES):
            raise ValueError(f"sum target terms must be targets; got {type(t).__name__}")
        flat.extend(target_terms(t))
    return SumTarget(tuple(flat))


def relu_network_target(inner, outer, *, standardize: bool = False, inputs=None, dtype=None) -> NetworkTarget:
    """A ReLU network Σ_j a_j relu(v_jᵀx); ``standardize=True`` rescales a so that Var[f*] = 1 under ``inputs``."""
    target = network_target(inner, outer, "relu", dtype or (None if inputs is None else inputs_dtype(inputs)))
    if not standardize:
        return target
    if inputs is None:
        raise ValueError("standardize=True needs the input distribution: pass inputs=...")
    check_target_inputs(target, inputs)
    variance = float(target_second_moment(target, inputs) - target_mean(target, inputs) ** 2)
    if not variance > 0:
        raise ValueError("cannot standardise a network whose output is constant (variance 0); change its weights")
    return NetworkTarget(target.inner, target.outer / math.sqrt(variance), "relu")


TARGET_STREAM = 3  # key stream of random_relu_network_target: fold_in(key(seed), 3)


def random_relu_network_target(seed: int, units: int, inputs, *, standardize: bool = True) -> NetworkTarget:
    """A random ReLU network: rows uniform on the unit sphere, a_j ~ N(0, 1/units), from ``fold_in(key(seed), 3)``;
    standardised to unit variance under ``inputs`` by default."""
    check_positive_int(units, "target units")
    d = input_dim(inputs)
    key_v, key_a = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), TARGET_STREAM))
    z = jax.random.normal(key_v, (units, d), jnp.float64)
    v = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    a = jax.random.normal(key_a, (units,), jnp.float64) / math.sqrt(units)
    return relu_network_target(np.asarray(v), np.asarray(a), standardize=standardize, inputs=inputs,
                               dtype=inputs_dtype(inputs))


def inputs_dtype(inputs):
    return components(inputs)[0][1].dtype


# --------------------------------------------------------------------------------------------------
# Units, values and moments
# --------------------------------------------------------------------------------------------------


def target_terms(target: Target) -> tuple:
    if isinstance(target, GroupTarget):
        raise ValueError("a group target has one target per group, not one set of terms: use its .terms[g] "
                         "(or a mixture-aware function: moments, group_target_values)")
    if isinstance(target, SumTarget):
        return target.terms
    if isinstance(target, TARGET_TYPES):
        return (target,)
    raise ValueError(
        f"unknown target type {type(target).__name__}; use LinearTarget, HermiteTarget, NetworkTarget or SumTarget"
    )


def target_units(target: Target) -> list:
    """[(kind, degree, directions (k, d), coefficients (k,)), …] with f* = Σ coefficientsᵀ σ(directions x)."""
    units = []
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            units.append(("linear", 1, term.beta[..., None, :], np.ones(term.beta.shape[:-1] + (1,), term.beta.dtype)))
        elif isinstance(term, HermiteTarget):
            units.append(("hermite", term.degree, term.beta[..., None, :], term.scale[..., None]))
        else:
            units.append((term.activation, 1, term.inner, term.outer))
    return units


def target_dim(target: Target) -> int:
    if isinstance(target, GroupTarget):
        dims = {target_dim(t) for t in target.terms}
        if len(dims) != 1:
            raise ValueError(f"group target terms must share one input dimension; got {sorted(dims)}")
        return dims.pop()
    dims = {int(u[2].shape[-1]) for u in target_units(target)}
    if len(dims) != 1:
        raise ValueError(f"all target terms must have the same input dimension; got {sorted(dims)}")
    return dims.pop()


def target_values(target: Target, x: jax.Array) -> jax.Array:
    """f*(x) for x of shape (..., d); returns shape (...)."""
    if isinstance(target, GroupTarget):
        raise ValueError("a group target's value depends on the group of x: use group_target_values(target, x, "
                         "groups), or give the labels at the samples")
    total = 0.0
    for kind, degree, directions, coef in target_units(target):
        total = total + unit_values(kind, degree, x @ directions.T) @ coef
    return total


# --------------------------------------------------------------------------------------------------
# Group targets: moments pair group g's function with the law's g-th component
# --------------------------------------------------------------------------------------------------


def group_pairs(target: GroupTarget, inputs) -> tuple:
    """((π_g, P_g, f_g), …) pairing the g-th target with the g-th component of ``inputs``."""
    parts = components(inputs)
    if len(parts) != target.groups:
        raise ValueError(f"a group target of {target.groups} groups needs a mixture of {target.groups} components; "
                         f"this law has {len(parts)} (use inputs.group_laws for one group's law)")
    return tuple((w, law, f) for (w, law), f in zip(parts, target.terms))


def group_target_values(target: Target, x: jax.Array, groups: jax.Array) -> jax.Array:
    """f*(x_i, g_i) for x (n, d) and groups (n,) (a plain target ignores the groups)."""
    if not isinstance(target, GroupTarget):
        return target_values(target, x)
    values = jnp.stack([target_values(f, x) for f in target.terms])
    return jnp.take_along_axis(values, jnp.asarray(groups)[None], axis=0)[0]


def _by_group(moment, target, inputs):
    """Σ_g π_g moment(f_g, P_g)."""
    return sum(w * moment(f, law) for w, law, f in group_pairs(target, inputs))


def target_second_moment(target: Target, inputs) -> jax.Array:
    """s* = E[f*(x)²]."""
    if isinstance(target, GroupTarget):
        return _by_group(target_second_moment, target, inputs)
    units = target_units(target)
    total = 0.0
    for ka, da, A, ca in units:
        for kb, db, B, cb in units:
            total = total + ca @ unit_moment(ka, da, A, kb, db, B, inputs) @ cb
    return total


def target_mean(target: Target, inputs) -> jax.Array:
    """E[f*(x)]."""
    if isinstance(target, GroupTarget):
        return _by_group(target_mean, target, inputs)
    return sum(unit_mean(kind, degree, A, inputs) @ coef for kind, degree, A, coef in target_units(target))


def units_target_moment(kind: str, degree: int, A: jax.Array, target: Target, inputs) -> jax.Array:
    """E[σ(A x) f*(x)] for units σ(A x): (M, d) → (M,)."""
    if isinstance(target, GroupTarget):
        return _by_group(lambda f, law: units_target_moment(kind, degree, A, f, law), target, inputs)
    total = 0.0
    for kb, db, B, cb in target_units(target):
        total = total + unit_moment(kind, degree, A, kb, db, B, inputs) @ cb
    return total


def target_cross_moment(p: Target, q: Target, inputs) -> jax.Array:
    """E[f_p(x) f_q(x)]."""
    if isinstance(p, GroupTarget) or isinstance(q, GroupTarget):
        group = p if isinstance(p, GroupTarget) else q
        pick = lambda t, g: t.terms[g] if isinstance(t, GroupTarget) else t
        return sum(w * target_cross_moment(pick(p, g), pick(q, g), law)
                   for g, (w, law, _) in enumerate(group_pairs(group, inputs)))
    total = 0.0
    for ka, da, A, ca in target_units(p):
        total = total + ca @ units_target_moment(ka, da, A, q, inputs)
    return total


def check_target_inputs(target: Target, inputs) -> None:
    """ValueError where the target does not fit the inputs (dimension, non-finite values, sphere units)."""
    if isinstance(target, GroupTarget):
        if not isinstance(target.terms, tuple) or not target.terms:
            raise ValueError("a group target needs a non-empty tuple of targets, one per group")
        for w, law, f in group_pairs(target, inputs):
            check_target_inputs(f, law)
        return
    target = target if is_traced(target) else jax.device_get(target)  # concrete: checked on the host
    d = target_dim(target)
    if d != input_dim(inputs):
        raise ValueError(f"target dimension {d} does not match the input dimension {input_dim(inputs)}")
    sphere = any(law.kind == "sphere" for _, law in components(inputs))
    for kind, degree, directions, coef in target_units(target):
        if not is_traced(directions, coef):
            check_finite(np.asarray(directions), "target directions")
            check_finite(np.asarray(coef), "target coefficients")
        if sphere:
            check_sphere_units(kind, degree, "target")


def scale_target(target: Target, factor) -> Target:
    """factor · f*."""
    if isinstance(target, GroupTarget):
        return GroupTarget(tuple(scale_target(f, factor) for f in target.terms))
    out = []
    for term in target_terms(target):
        if isinstance(term, LinearTarget):
            out.append(LinearTarget(term.beta * factor))
        elif isinstance(term, HermiteTarget):
            out.append(HermiteTarget(term.beta, term.scale * factor, term.degree))
        else:
            out.append(NetworkTarget(term.inner, term.outer * factor, term.activation))
    return out[0] if not isinstance(target, SumTarget) else SumTarget(tuple(out))


def cast_target(target: Target, dtype) -> Target:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), target)
