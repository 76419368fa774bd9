"""Closures coupled to the one-level Lorenz '96 model: rollouts, forecasts, long runs.

The host is `surrogate.solvers.lorenz96.Lorenz96OneLevel` at the coarse step Δt of the
training data, normally with `coupling="once"` (the update that the tendency difference
reproduces exactly). A deterministic closure is coupled through the host's own
`step(x, closure)`; an `AR1Closure` carries its noise in the state (X, e, key data):
the host step sees `U(x) = closure(x, e)` (e held over the step), then e takes one AR(1)
step with a fresh key split from the carried one (Arnold et al. 2013).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ...coupling import Parameterization, RolloutResult, ensemble_rollout
from ...solvers.lorenz96 import Lorenz96OneLevel
from ._stochastic import AR1Closure


def stochastic_step(
    host: Lorenz96OneLevel,
    state: tuple[Float[Array, " k"], Float[Array, " k"], Array],
    closure: AR1Closure,
) -> tuple[Float[Array, " k"], Float[Array, " k"], Array]:
    """One host step of the state (X, e, key data) with an `AR1Closure`."""
    x, e, key_data = state
    key, sub = jax.random.split(jax.random.wrap_key_data(key_data))
    x_next = host.step(x, lambda s, _: closure(s, e))
    return x_next, closure.advance_noise(e, key=sub), jax.random.key_data(key)


class _StochasticHostStep(eqx.Module):
    """`stochastic_step` bound to a host, as a module: equal hosts give equal steps, so the
    compiled rollout is reused across calls (a fresh lambda would recompile)."""

    host: Lorenz96OneLevel

    def __call__(self, state, closure):
        return stochastic_step(self.host, state, closure)


class _XWithinBound(eqx.Module):
    """Bounds of a stochastic state (X, e, key data): |X_k| <= bound. A module, not a
    lambda, for the same reason as `_StochasticHostStep`."""

    bound: float

    def __call__(self, state) -> Array:
        return jnp.all(jnp.abs(state[0]) <= self.bound)


def coupled_rollout(
    host: Lorenz96OneLevel,
    closure: Parameterization | None,
    x0: Float[Array, " member k"],
    n_steps: int,
    *,
    key: PRNGKeyArray | None = None,
    save_every: int = 1,
    bound: float = 100.0,
) -> RolloutResult:
    """Run the one-level model with `closure` from every initial state in `x0`.

    `closure` is any parameterization called as `(x, None)`, `None` (no closure), or an
    `AR1Closure` (then `key` is required: it draws each member's initial noise from the
    stationary law and its noise sequence). A member is unstable once some |X_k| exceeds
    `bound` (or is NaN); see `surrogate.coupling.rollout`. The result's `states` are the X
    trajectories `(member, n_steps // save_every + 1, K)`.
    """
    x0 = jnp.asarray(x0)
    if x0.ndim != 2 or x0.shape[1] != host.k:
        raise ValueError(
            f"x0 should be initial states of shape (member, K={host.k}), got {x0.shape}"
        )
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    if not isinstance(closure, AR1Closure):
        return ensemble_rollout(
            host.step, closure, x0, n_steps, save_every=save_every, bounds=(-bound, bound)
        )
    if key is None:
        raise ValueError("a stochastic (AR1) closure needs a key for its noise")
    k_noise, k_run = jax.random.split(key)
    members = x0.shape[0]
    e0 = jax.vmap(lambda x, k: closure.initial_noise(x, key=k))(
        x0, jax.random.split(k_noise, members)
    )
    state0 = (x0, e0, jax.random.key_data(jax.random.split(k_run, members)))
    result = ensemble_rollout(
        _StochasticHostStep(host),
        closure,
        state0,
        n_steps,
        save_every=save_every,
        bounds=_XWithinBound(float(bound)),
    )
    return RolloutResult(result.states[0], result.first_unstable_step, n_steps, save_every)


def ensemble_forecast(
    host: Lorenz96OneLevel,
    closure: Parameterization | None,
    x0: Float[Array, " case k"],
    n_steps: int,
    *,
    members: int,
    perturbation: float,
    key: PRNGKeyArray,
    save_every: int = 1,
    bound: float = 100.0,
) -> tuple[Float[Array, " case member time k"], Array]:
    """Ensemble forecasts from perturbed initial states (Arnold et al. 2013).

    Each case's members start from its true state plus N(0, perturbation²) noise per
    variable; `bound` as in `coupled_rollout`. Returns the X trajectories (case, member,
    time, K) and the first unstable step of every member (case, member).
    """
    x0 = jnp.asarray(x0)
    if x0.ndim != 2:
        raise ValueError(f"x0 should be true states of shape (case, K), got {x0.shape}")
    if members < 1 or perturbation < 0:
        raise ValueError(
            f"need members >= 1 and perturbation >= 0, got {members} and {perturbation}"
        )
    k_init, k_run = jax.random.split(key)
    cases, k = x0.shape
    noise = perturbation * jax.random.normal(k_init, (cases, members, k), x0.dtype)
    starts = (x0[:, None, :] + noise).reshape(cases * members, k)
    result = coupled_rollout(
        host, closure, starts, n_steps, key=k_run, save_every=save_every, bound=bound
    )
    xs = result.states.reshape(cases, members, *result.states.shape[1:])
    return xs, result.first_unstable_step.reshape(cases, members)
