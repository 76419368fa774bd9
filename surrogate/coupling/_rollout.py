"""Online rollout: a parameterization coupled into a JAX simulator's time step.

The host provides one time step `step(state, parameterization) -> state`; inside it the host
calls `parameterization(state_or_stage, params)` wherever its right-hand side needs the
missing physics (at every Runge-Kutta stage, or once per step: the host decides and
documents). `rollout` iterates that step with `jax.lax.scan` and watches every new state.

Stability convention. Step `m` produces the state `x_m` (`x_0` is `state0`). The rollout is
unstable at the first `m >= 1` where `x_m` has a NaN/inf or leaves its physical `bounds`;
`first_unstable_step = m`, and the trajectory FREEZES there: every later saved state equals
`x_{m-1}`, the last good state, so the output stays finite and plots and metrics can still
be computed up to the failure. A rollout that never fails has `first_unstable_step = -1`.
An initial state that is non-finite or out of bounds is a `ValueError` when `state0` is a
concrete array; under `jit`/`vmap` (a traced `state0`) it is reported as step 0 instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PyTree

from ._parameterization import Parameterization, _describe, _same_layout

Bounds = Callable[[PyTree], Any] | tuple[Any, Any] | None


class RolloutResult(eqx.Module):
    """What `rollout` returns.

    `states`: the state pytree with a leading `save` axis; `states[i]` is `x_{i·save_every}`
    for `i = 0 .. n_steps // save_every` (so `states[0]` is `state0`), frozen at the last
    good state after a failure. `first_unstable_step`: the first step whose state was
    non-finite or out of bounds, or -1. Under `ensemble_rollout` both gain a leading `member`
    axis and `stable` is per member.
    """

    states: PyTree
    first_unstable_step: Int[Array, ""]
    n_steps: int = eqx.field(static=True)
    save_every: int = eqx.field(static=True)

    @property
    def stable(self) -> Bool[Array, ""]:
        return self.first_unstable_step < 0


def _is_traced(tree: PyTree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _finite(state: PyTree) -> Bool[Array, ""]:
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(state)]
    return functools.reduce(jnp.logical_and, flags, jnp.asarray(True))


def _within(state: PyTree, bounds_fn, lo, hi) -> Bool[Array, ""]:
    flags = [jnp.asarray(True)]
    if bounds_fn is not None:
        flags.append(jnp.asarray(bounds_fn(state), dtype=bool))
    for bound, inside in ((lo, jnp.greater_equal), (hi, jnp.less_equal)):
        if bound is None:
            continue
        if jax.tree_util.treedef_is_leaf(jax.tree.structure(bound)):
            # one bound (a scalar, or an array broadcastable to each leaf) for every leaf
            flags.extend(jnp.all(inside(leaf, bound)) for leaf in jax.tree.leaves(state))
            continue
        # a pytree of bounds shaped like the state; a `None` leaf leaves that part unbounded
        checks = jax.tree.map(
            lambda b, s: True if b is None else jnp.all(inside(s, b)),
            bound,
            state,
            is_leaf=lambda b: b is None,
        )
        flags.extend(jnp.asarray(f) for f in jax.tree.leaves(checks))
    return functools.reduce(jnp.logical_and, flags)


def _check_bounds(bounds: Bounds, state0: PyTree):
    """Split `bounds` into (callable or None, lo, hi) and check them against the state."""
    if bounds is None:
        return None, None, None
    if callable(bounds):
        out = eqx.filter_eval_shape(bounds, state0)
        if not (isinstance(out, bool) or getattr(out, "shape", None) == ()):
            raise ValueError(
                f"bounds callable must return one boolean (state is ok), got {_describe(out)}"
            )
        return bounds, None, None
    if isinstance(bounds, tuple) and len(bounds) == 2:
        lo, hi = bounds
        try:
            eqx.filter_eval_shape(lambda s: _within(s, None, lo, hi), state0)
        except (ValueError, TypeError) as err:
            raise ValueError(
                "bounds (lo, hi) must each be None, a scalar, or a pytree shaped like the "
                f"state {_describe(state0)}: {err}"
            ) from err
        return None, lo, hi
    raise ValueError(
        "bounds must be None, a callable state -> bool, or a pair (lo, hi); "
        f"got {type(bounds).__name__}"
    )


def _check_step(step, parameterization, state0: PyTree) -> None:
    if not callable(step):
        raise ValueError(f"step must be callable as step(state, parameterization), got {step!r}")
    state_shape = eqx.filter_eval_shape(lambda s: s, state0)
    out = eqx.filter_eval_shape(step, state0, parameterization)
    if not _same_layout(out, state_shape):
        raise ValueError(
            "step(state, parameterization) must return a state like its input: expected "
            f"{_describe(state_shape)}, got {_describe(out)}"
        )


def _check_counts(n_steps: int, save_every: int) -> None:
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if not isinstance(save_every, int) or save_every < 1 or n_steps % save_every:
        raise ValueError(
            f"save_every must be a positive int dividing n_steps={n_steps}, got {save_every!r}"
        )


def _check_initial(state0: PyTree, bounds_fn, lo, hi) -> None:
    if _is_traced(state0):
        return  # reported as first_unstable_step == 0 instead
    if not bool(_finite(state0)):
        raise ValueError("initial state has NaN or inf values")
    if not bool(_within(state0, bounds_fn, lo, hi)):
        raise ValueError("initial state is outside the bounds")


@eqx.filter_jit
def _scan(step, parameterization, state0, n_steps, save_every, bounds_fn, lo, hi):
    def ok(state):
        return _finite(state) & _within(state, bounds_fn, lo, hi)

    def advance(carry, index):
        state, first = carry

        def take_step(s):
            new = step(s, parameterization)
            return new, ok(new)

        # once failed, stop stepping: the carried state stays the last good one
        new, good = jax.lax.cond(first >= 0, lambda s: (s, jnp.asarray(True)), take_step, state)
        first = jnp.where((first < 0) & ~good, index + 1, first)
        state = jax.tree.map(lambda a, b: jnp.where(first >= 0, a, b), state, new)
        return (state, first), None

    def chunk(carry, start):
        carry, _ = jax.lax.scan(advance, carry, start + jnp.arange(save_every, dtype=jnp.int32))
        return carry, carry[0]

    first0 = jnp.where(ok(state0), -1, 0).astype(jnp.int32)
    starts = jnp.arange(0, n_steps, save_every, dtype=jnp.int32)
    (_, first), saved = jax.lax.scan(chunk, (state0, first0), starts)
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state0, saved)
    return RolloutResult(states, first, n_steps, save_every)


def rollout(
    step: Callable[[PyTree, Parameterization], PyTree],
    parameterization: Parameterization | None,
    state0: PyTree,
    n_steps: int,
    *,
    save_every: int = 1,
    bounds: Bounds = None,
) -> RolloutResult:
    """Run `n_steps` of `step(state, parameterization)` from one state, watching stability.

    **Arguments:**
    - `step`: the host's time step, `step(state, parameterization) -> state` (same pytree,
      shapes and dtypes). It calls `parameterization(state, params)` itself, with the
      `params` it documents; `parameterization` is passed through untouched (it may be
      `None` if the host accepts that).
    - `state0`: one unbatched state (any pytree of arrays).
    - `n_steps`: steps to take; `save_every`: keep every k-th state (must divide `n_steps`).
    - `bounds`: physical bounds: a callable `state -> bool` (True = ok), or `(lo, hi)` where
      each is `None`, a scalar for every leaf, or a pytree like the state (per-leaf bounds,
      broadcastable arrays, `None` for an unbounded leaf). NaN/inf always count as failure.

    **Returns:** a `RolloutResult`; see the module docstring for the freeze convention.
    Ensembles: `ensemble_rollout`, or `jax.vmap(lambda s: rollout(step, p, s, n))(states0)`.
    """
    state0 = jax.tree.map(jnp.asarray, state0)
    _check_counts(n_steps, save_every)
    bounds_fn, lo, hi = _check_bounds(bounds, state0)
    _check_step(step, parameterization, state0)
    _check_initial(state0, bounds_fn, lo, hi)
    return _scan(step, parameterization, state0, n_steps, save_every, bounds_fn, lo, hi)


def ensemble_rollout(
    step: Callable[[PyTree, Parameterization], PyTree],
    parameterization: Parameterization | None,
    states0: PyTree,
    n_steps: int,
    *,
    save_every: int = 1,
    bounds: Bounds = None,
) -> RolloutResult:
    """`rollout` of every member of `states0` (leading `member` axis), by `jax.vmap`.

    The parameterization and bounds are shared by all members. Each member fails (and
    freezes) on its own; `result.first_unstable_step` has shape `(member,)`.
    """
    states0 = jax.tree.map(jnp.asarray, states0)
    leaves = jax.tree.leaves(states0)
    sizes = {leaf.shape[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        raise ValueError(
            "states0 must have a leading member axis of one size on every leaf, got "
            f"{_describe(states0)}"
        )
    member0 = jax.tree.map(lambda a: a[0], states0)
    _check_counts(n_steps, save_every)
    bounds_fn, lo, hi = _check_bounds(bounds, member0)
    _check_step(step, parameterization, member0)
    if not _is_traced(states0):
        finite = jax.vmap(_finite)(states0)
        within = jax.vmap(lambda s: _within(s, bounds_fn, lo, hi))(states0)
        for flags, what in ((finite, "has NaN or inf values"), (within, "is outside the bounds")):
            if not bool(jnp.all(flags)):
                bad = int(jnp.argmin(flags))
                raise ValueError(f"initial state of member {bad} {what}")

    def one(state0):
        return _scan(step, parameterization, state0, n_steps, save_every, bounds_fn, lo, hi)

    return jax.vmap(one)(states0)
