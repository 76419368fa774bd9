"""The `Parameterization` contract: what a host simulator calls in place of missing physics.

A parameterization (a closure, a sub-grid model) is a callable

    tendencies = parameterization(state, params)

evaluated by the host simulator inside its own time step. `state` is the host's state (or the
part of it the host chooses to expose) in the host's units; `tendencies` is a pytree of the
same structure, shapes and dtypes, in state units per host time unit, which the host adds to
its own right-hand side. `params` is whatever else the host knows and the closure may need
(its physical constants, forcing, time, boundary fluxes); it is `None` when the host has
nothing to add. Each host documents what it passes, e.g. the one-level Lorenz '96 model in
`surrogate.solvers.lorenz96` passes `None` and a state `X` of shape `(K,)`.

The closure sees ONE unbatched state, like every model in this package; ensembles are a
`jax.vmap` outside (see `surrogate.coupling.ensemble_rollout`).
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree


@runtime_checkable
class Parameterization(Protocol):
    """Anything callable as `(state, params) -> tendencies` (a function, an `eqx.Module`)."""

    def __call__(self, state: PyTree, params: Any) -> PyTree: ...


class AbstractParameterization(eqx.Module):
    """Base of parameterizations that are `eqx.Module`s (learned closures carry weights).

    Subclasses implement `__call__(state, params) -> tendencies` for one unbatched state.
    """

    @abc.abstractmethod
    def __call__(self, state: PyTree, params: Any = None) -> PyTree:
        raise NotImplementedError


class ZeroParameterization(AbstractParameterization):
    """No sub-grid physics: zero tendencies. Coupled to a host it gives the plain solver."""

    def __call__(self, state: PyTree, params: Any = None) -> PyTree:
        return jax.tree.map(jnp.zeros_like, state)


def _describe(tree: PyTree) -> str:
    leaves = jax.tree.leaves(tree)
    shapes = ", ".join(
        f"{leaf.dtype}{list(leaf.shape)}" if hasattr(leaf, "dtype") else type(leaf).__name__
        for leaf in leaves
    )
    return f"{jax.tree.structure(tree)} with leaves ({shapes})"


def _same_layout(a: PyTree, b: PyTree) -> bool:
    """Same tree structure and the same (shape, dtype) on every leaf."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        (getattr(u, "shape", None), getattr(u, "dtype", None)) == (v.shape, v.dtype)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def check_tendencies(parameterization: Parameterization, state: PyTree, params: Any = None) -> None:
    """Raise `ValueError` unless `parameterization(state, params)` matches `state`'s layout.

    Only shapes are evaluated (`jax.eval_shape`), so this costs nothing at run time and is
    what a host calls at trace time before coupling a closure into its step. Dtypes must
    match too: a float64 tendency silently promoting a float32 state is a bug in a closure.
    """
    if not callable(parameterization):
        raise ValueError(
            "parameterization must be callable as (state, params) -> tendencies, "
            f"got {type(parameterization).__name__}"
        )
    out = eqx.filter_eval_shape(parameterization, state, params)
    state_shape = eqx.filter_eval_shape(lambda s: s, state)
    if not _same_layout(out, state_shape):
        raise ValueError(
            "parameterization must return tendencies shaped like the state: expected "
            f"{_describe(state_shape)}, got {_describe(out)}"
        )
