"""A stochastic closure: a deterministic closure plus additive AR(1) noise.

Arnold, Moroz & Palmer (2013), additive AR(1) noise: the residual of the
deterministic fit, r(t) = U(t) − U_det(X(t)), is modelled per k, independently, as

    e(t + Δt) = φ e(t) + σ (1 − φ²)^{1/2} z(t),    z ~ N(0, 1),

whose stationary law is N(0, σ²) with lag-τ autocorrelation φ^{τ/Δt}; φ and σ are the lag-1
autocorrelation and the standard deviation of the residual series, Δt the data's (coarse)
step. U = U_det(X) + e.

State carried. The noise e is part of the coupled model's state: the closure is called as
`closure(x, e)` (the host passes the current noise as `params`; `None` means e = 0) and
`advance_noise(e, key=...)` steps it once per coarse step. `surrogate.closures.
coupled_rollout` carries the state (X, e, key) through `surrogate.coupling.rollout`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...coupling import AbstractParameterization
from ...metrics import autocorrelation
from ._polynomial import check_ring_state


@savable
class AR1Closure(AbstractParameterization):
    """U = deterministic(X) + e with e an AR(1) process per k (module docstring).

    `phi` in [0, 1) is the lag-one (one coarse step) autocorrelation, `sigma` >= 0 the
    stationary standard deviation. Build one from data with `fit_ar1_closure`.
    """

    deterministic: AbstractParameterization
    phi: Float[Array, ""]
    sigma: Float[Array, ""]

    def __init__(
        self,
        deterministic: AbstractParameterization,
        phi: Any = 0.0,
        sigma: Any = 0.0,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray | None = None,
    ):
        del key  # the noise is drawn with keys given to `advance_noise`
        if not callable(deterministic):
            raise ValueError(
                "deterministic must be a closure callable as (x, params) -> U, got "
                f"{type(deterministic).__name__}"
            )
        phi, sigma = jnp.asarray(phi, dtype), jnp.asarray(sigma, dtype)
        if phi.shape != () or sigma.shape != ():
            raise ValueError(f"phi and sigma must be scalars, got {phi.shape}, {sigma.shape}")
        if not isinstance(phi, jax.core.Tracer) and not (0.0 <= float(phi) < 1.0):
            raise ValueError(f"phi must be in [0, 1) for a stationary AR(1), got {float(phi)}")
        if not isinstance(sigma, jax.core.Tracer) and not float(sigma) >= 0.0:
            raise ValueError(f"sigma must be >= 0, got {float(sigma)}")
        self.deterministic, self.phi, self.sigma = deterministic, phi, sigma

    def __call__(self, x: Float[Array, " k"], params: Any = None) -> Float[Array, " k"]:
        check_ring_state(x)
        u = self.deterministic(x, None)
        if params is None:
            return u
        if jnp.shape(params) != x.shape:
            raise ValueError(
                f"the AR(1) closure takes the current noise e of shape {x.shape} as params, "
                f"got shape {jnp.shape(params)}"
            )
        return (u + params).astype(x.dtype)

    def initial_noise(self, x: Float[Array, " k"], *, key: PRNGKeyArray) -> Float[Array, " k"]:
        """A draw from the stationary law N(0, σ²), shaped like the state `x`."""
        return (self.sigma * jax.random.normal(key, jnp.shape(x))).astype(x.dtype)

    def advance_noise(self, e: Float[Array, " k"], *, key: PRNGKeyArray) -> Float[Array, " k"]:
        """One coarse step of e ← φ e + σ (1 − φ²)^{1/2} z."""
        z = jax.random.normal(key, jnp.shape(e))
        innovation = self.sigma * jnp.sqrt(1.0 - self.phi**2)
        return (self.phi * e + innovation * z).astype(e.dtype)


def fit_ar1(
    residuals: Float[Array, " sample time k"],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(φ, σ) of residual series (sample, time, k): the lag-one autocorrelation along time
    and the standard deviation, both pooled over samples and k (every k is alike)."""
    residuals = jnp.asarray(residuals)
    if residuals.ndim != 3 or residuals.shape[1] < 3:
        raise ValueError(
            f"residuals should be series of shape (sample, time >= 3, k), got {residuals.shape}"
        )
    phi = autocorrelation(residuals, 1, axis=1)[1]
    return phi, jnp.std(residuals)


def fit_ar1_closure(
    deterministic: AbstractParameterization,
    x: Float[Array, " sample time k"],
    u: Float[Array, " sample time k"],
) -> AR1Closure:
    """The AR(1) closure around `deterministic`, with (φ, σ) fitted on its residuals
    U − U_det(X) along true trajectories (time steps = the coarse step)."""
    x, u = jnp.asarray(x), jnp.asarray(u)
    if x.shape != u.shape or x.ndim != 3:
        raise ValueError(
            f"x and u should be trajectories of one shape (sample, time, k), got {x.shape} "
            f"and {u.shape}"
        )
    det = eqx.filter_jit(lambda m, a: jax.vmap(jax.vmap(lambda s: m(s, None)))(a))
    phi, sigma = fit_ar1(u - det(deterministic, x))
    # a fit from a short series can give φ slightly below 0; the model needs [0, 1)
    phi = jnp.clip(phi, 0.0, 0.9999)
    return AR1Closure(deterministic, phi, sigma, dtype=x.dtype)
