"""Two-scale Lorenz '96 system and its one-level (parameterized) counterpart, RK4.

Two-scale model (Lorenz 1996, "Predictability: a problem partly solved", ECMWF Seminar on
Predictability; written as in Arnold, Moroz & Palmer 2013, Phil. Trans. R. Soc. A 371,
20110479, §2):

    dX_k/dt     = −X_{k−1}(X_{k−2} − X_{k+1}) − X_k + F − (hc/b) Σ_j Y_{j,k}
    dY_{j,k}/dt = −cb Y_{j+1,k}(Y_{j+2,k} − Y_{j−1,k}) − c Y_{j,k} + (hc/b) X_k

k = 1..K cyclic; the J·K fast variables form ONE ring, Y_{J+1,k} = Y_{1,k+1}. Here the
state is the pair `(x, y)` with `x` of shape `(K,)` and `y` of shape `(K, J)`,
`y[k, j] = Y_{j+1,k+1}`, so the ring is `y.reshape(K * J)` (row-major, k outer).

Energy. With E = ½ΣX² + ½ΣY², both advection terms are energy-conserving (Σ X·adv = 0)
and the two coupling terms exchange energy exactly (Σ_k X_k·(−hc/b)Σ_j Y_{j,k} +
Σ_{j,k} Y_{j,k}·(hc/b)X_k = 0), so dE/dt = −ΣX² + FΣX − cΣY².

Sub-grid tendency. The instantaneous one is U_k = −(hc/b) Σ_j Y_{j,k}
(`Lorenz96TwoScale.subgrid_tendency`). Arnold et al. (2013) instead fit closures to the
tendency difference U_k(t) = [X_k(t+Δt) − X̂_k(t+Δt)] / Δt, X̂ the one-level model with
U = 0 stepped once (Δt = 0.005) from the true X(t) (`Lorenz96OneLevel.tendency_difference`).
Datasets of this package store the tendency difference: it is what a coarse RK4 model
coupled with `coupling="once"` needs to reproduce the truth step by step, and it tends to
the instantaneous U as Δt → 0 (first order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..coupling import Parameterization, check_tendencies

TwoScaleState = tuple[Float[Array, " k"], Float[Array, "k j"]]

_CONFIGS = {
    # Arnold, Moroz & Palmer (2013)
    "arnold2013": dict(k=8, j=32, h=1.0, b=10.0, c=10.0, forcing=20.0),
    # Lorenz (1996)
    "lorenz1996": dict(k=36, j=10, h=1.0, b=10.0, c=10.0, forcing=10.0),
}


def slow_advection(x: Float[Array, " k"]) -> Float[Array, " k"]:
    """−X_{k−1}(X_{k−2} − X_{k+1}), cyclic; Σ_k X_k·adv_k = 0 for every X."""
    # jnp.roll(x, s)[k] = x[k − s]
    return -jnp.roll(x, 1) * (jnp.roll(x, 2) - jnp.roll(x, -1))


def fast_advection(y: Float[Array, " n"]) -> Float[Array, " n"]:
    """−Y_{j+1}(Y_{j+2} − Y_{j−1}) on a ring (without the factor cb); energy-conserving."""
    return -jnp.roll(y, -1) * (jnp.roll(y, -2) - jnp.roll(y, 1))


def coupling_terms(
    x: Float[Array, " k"], y: Float[Array, "k j"], h: float, b: float, c: float
) -> TwoScaleState:
    """The exchange terms (−(hc/b)Σ_j Y_{j,k}, (hc/b)X_k); they conserve ½ΣX² + ½ΣY²."""
    scale = h * c / b
    return -scale * jnp.sum(y, axis=1), scale * jnp.broadcast_to(x[:, None], y.shape)


def _rk4(f: Callable[[PyTree], PyTree], state: PyTree, dt: float) -> PyTree:
    """One classical Runge-Kutta step of dstate/dt = f(state) for a pytree state."""

    def axpy(a, u, v):
        return jax.tree.map(lambda ui, vi: ui + a * vi, u, v)

    k1 = f(state)
    k2 = f(axpy(dt / 2, state, k1))
    k3 = f(axpy(dt / 2, state, k2))
    k4 = f(axpy(dt, state, k3))
    incr = jax.tree.map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
    return axpy(dt, state, incr)


def _integrate(step, state0: PyTree, n_steps: int, save_every: int) -> PyTree:
    """States after 0, s, 2s, ..., n_steps steps (leading axis), by nested `lax.scan`."""
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
    if not isinstance(save_every, int) or save_every < 1 or n_steps % save_every:
        raise ValueError(
            f"save_every must be a positive int dividing n_steps={n_steps}, got {save_every!r}"
        )

    def chunk(state, _):
        state = jax.lax.fori_loop(0, save_every, lambda _, s: step(s), state)
        return state, state

    _, saved = jax.lax.scan(chunk, state0, None, length=n_steps // save_every)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state0, saved)


def _check_finite(state: PyTree, what: str) -> None:
    leaves = jax.tree.leaves(state)
    if any(isinstance(a, jax.core.Tracer) for a in leaves):
        return
    if not all(bool(jnp.all(jnp.isfinite(a))) for a in leaves):
        raise ValueError(f"{what} has NaN or inf values")


def _n_steps(duration: float, dt: float) -> int:
    n = round(duration / dt)
    if duration < 0 or not math.isclose(n * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"duration must be a non-negative multiple of dt={dt}, got {duration}")
    return n


class Lorenz96TwoScale(eqx.Module):
    """The two-scale Lorenz '96 system integrated with RK4 at a fixed step `dt`.

    Presets: `Lorenz96TwoScale.arnold2013()` (K=8, J=32, h=1, b=c=10, F=20) and
    `.lorenz1996()` (K=36, J=10, h=1, b=c=10, F=10), or `from_config(name)`. The default
    dt = 0.001 is Arnold et al.'s; the fast advection has rate ~ bc|Y|, so RK4 needs
    dt·b·c ≲ 1 and larger steps are refused.
    """

    k: int = eqx.field(static=True)
    j: int = eqx.field(static=True)
    h: float
    b: float
    c: float
    forcing: float
    dt: float = eqx.field(static=True)

    def __init__(self, k: int = 8, j: int = 32, *, h: float = 1.0, b: float = 10.0,
                 c: float = 10.0, forcing: float = 20.0, dt: float = 0.001):  # fmt: skip
        if k < 4 or j < 1:
            raise ValueError(f"need K >= 4 slow and J >= 1 fast variables, got K={k}, J={j}")
        if not (b > 0 and c > 0):
            raise ValueError(f"time/amplitude ratios b, c must be positive, got b={b}, c={c}")
        if not dt > 0 or dt * b * c > 1.0:
            raise ValueError(
                f"dt={dt} is not a stable RK4 step for the fast variables: need 0 < dt and "
                f"dt·b·c <= 1 (dt <= {1.0 / (b * c):g} for b={b}, c={c})"
            )
        self.k, self.j = int(k), int(j)
        self.h, self.b, self.c = float(h), float(b), float(c)
        self.forcing, self.dt = float(forcing), float(dt)

    @classmethod
    def from_config(cls, name: str, **overrides: Any) -> Lorenz96TwoScale:
        """A standard configuration by name ("arnold2013", "lorenz1996"), options overridden."""
        if name not in _CONFIGS:
            raise ValueError(f"unknown Lorenz96 config {name!r}; expected one of {list(_CONFIGS)}")
        return cls(**{**_CONFIGS[name], **overrides})

    @classmethod
    def arnold2013(cls, **overrides: Any) -> Lorenz96TwoScale:
        return cls.from_config("arnold2013", **overrides)

    @classmethod
    def lorenz1996(cls, **overrides: Any) -> Lorenz96TwoScale:
        return cls.from_config("lorenz1996", **overrides)

    def _check(self, state: TwoScaleState) -> None:
        shapes = (self.k,), (self.k, self.j)
        if (
            not isinstance(state, tuple | list)
            or len(state) != 2
            or tuple(jnp.shape(a) for a in state) != shapes
        ):
            got = [jnp.shape(a) for a in state] if isinstance(state, tuple | list) else state
            raise ValueError(f"state should be a pair (x, y) of shapes {shapes}, got {got}")

    def tendencies(self, state: TwoScaleState) -> TwoScaleState:
        """(dX/dt, dY/dt) of the two-scale system (module docstring)."""
        x, y = state
        cx, cy = coupling_terms(x, y, self.h, self.b, self.c)
        ring = fast_advection(y.reshape(-1)).reshape(y.shape)
        dx = slow_advection(x) - x + self.forcing + cx
        dy = self.c * self.b * ring - self.c * y + cy
        return dx, dy

    def subgrid_tendency(self, state: TwoScaleState) -> Float[Array, " k"]:
        """Instantaneous U_k = −(hc/b) Σ_j Y_{j,k}: the fast variables' pull on X_k."""
        self._check(state)
        return coupling_terms(*state, self.h, self.b, self.c)[0]

    def step(self, state: TwoScaleState) -> TwoScaleState:
        """One RK4 step of length `dt`."""
        self._check(state)
        return _rk4(self.tendencies, tuple(state), self.dt)

    def trajectory(
        self, state0: TwoScaleState, n_steps: int, *, save_every: int = 1
    ) -> TwoScaleState:
        """`(xs, ys)` after 0, s, ..., n_steps steps (`s = save_every`), time axis first."""
        self._check(state0)
        _check_finite(state0, "initial state")
        return _integrate(self.step, tuple(state0), n_steps, save_every)

    def spin_up(self, state0: TwoScaleState, duration: float) -> TwoScaleState:
        """The state after `duration` time units (a multiple of dt), e.g. onto the attractor."""
        self._check(state0)
        _check_finite(state0, "initial state")
        n = _n_steps(duration, self.dt)
        return jax.lax.fori_loop(0, n, lambda _, s: self.step(s), tuple(state0))

    def initial_state(self, *, key: PRNGKeyArray, dtype=jnp.float32) -> TwoScaleState:
        """X ~ N(0, 1), Y ~ N(0, 0.1²): a fixed function of `key`; spin up before use."""
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (self.k,), dtype=dtype)
        y = 0.1 * jax.random.normal(ky, (self.k, self.j), dtype=dtype)
        return x, y

    def one_level(self, **options: Any) -> Lorenz96OneLevel:
        """The one-level model with this system's K and F (dt etc. as `options`)."""
        return Lorenz96OneLevel(self.k, **{"forcing": self.forcing, **options})


class Lorenz96OneLevel(eqx.Module):
    """dX_k/dt = −X_{k−1}(X_{k−2} − X_{k+1}) − X_k + F + U_k(X), RK4 with step `dt`.

    `U` is a `surrogate.coupling.Parameterization`, called as `U(x, None)` (the host passes
    no `params`) on an `x` of shape `(K,)`; `None` means U = 0. `coupling` says where:
    "stages" (default): U is part of the right-hand side, evaluated at all four RK4 stages;
    "once": X_{n+1} = RK4_{U=0}(X_n) + dt·U(X_n), the update that the tendency-difference
    definition of U reproduces exactly. `step(x, parameterization)` is the host step for
    `surrogate.coupling.rollout`.
    """

    k: int = eqx.field(static=True)
    forcing: float
    dt: float = eqx.field(static=True)
    coupling: str = eqx.field(static=True)

    def __init__(self, k: int = 8, *, forcing: float = 20.0, dt: float = 0.005,
                 coupling: str = "stages"):  # fmt: skip
        if k < 4:
            raise ValueError(f"need K >= 4 variables, got K={k}")
        if coupling not in ("stages", "once"):
            raise ValueError(f"coupling must be 'stages' or 'once', got {coupling!r}")
        # the advection rate scales with |X| ~ F; RK4 is stable for |λ dt| up to ~2.8
        if not dt > 0 or dt * max(abs(forcing), 1.0) > 1.0:
            raise ValueError(
                f"dt={dt} is not a stable RK4 step: need 0 < dt and dt·max(|F|, 1) <= 1 "
                f"(dt <= {1.0 / max(abs(forcing), 1.0):g} for F={forcing})"
            )
        self.k, self.forcing, self.dt, self.coupling = int(k), float(forcing), float(dt), coupling

    def _check(self, x: Float[Array, " k"], parameterization) -> None:
        if jnp.shape(x) != (self.k,):
            raise ValueError(f"state X should have shape ({self.k},), got {jnp.shape(x)}")
        if parameterization is not None:
            check_tendencies(parameterization, x, None)

    def tendency(
        self, x: Float[Array, " k"], parameterization: Parameterization | None = None
    ) -> Float[Array, " k"]:
        """dX/dt, with U = `parameterization(x, None)` (0 if None)."""
        self._check(x, parameterization)
        dx = slow_advection(x) - x + self.forcing
        return dx if parameterization is None else dx + parameterization(x, None)

    def step(
        self, x: Float[Array, " k"], parameterization: Parameterization | None = None
    ) -> Float[Array, " k"]:
        """One RK4 step of length `dt`, U coupled as `self.coupling` says."""
        self._check(x, parameterization)
        if self.coupling == "stages":
            return _rk4(lambda s: self.tendency(s, parameterization), x, self.dt)
        x_next = _rk4(self.tendency, x, self.dt)
        return x_next if parameterization is None else x_next + self.dt * parameterization(x, None)

    def trajectory(
        self,
        x0: Float[Array, " k"],
        n_steps: int,
        *,
        parameterization: Parameterization | None = None,
        save_every: int = 1,
    ) -> Float[Array, "t k"]:
        """X after 0, s, ..., n_steps steps, time axis first (no stability watch: see
        `surrogate.coupling.rollout` for that)."""
        self._check(x0, parameterization)
        _check_finite(x0, "initial state")
        return _integrate(lambda x: self.step(x, parameterization), x0, n_steps, save_every)

    def tendency_difference(
        self, x: Float[Array, " k"], x_next: Float[Array, " k"]
    ) -> Float[Array, " k"]:
        """Arnold et al. (2013) U = [X(t+dt) − RK4_{U=0}(X(t))] / dt from two true states
        `dt` apart (vmap over time for a trajectory)."""
        self._check(x_next, None)
        return (x_next - self.step(x, None)) / self.dt

    def initial_state(self, *, key: PRNGKeyArray, dtype=jnp.float32) -> Float[Array, " k"]:
        """X ~ N(0, 1), a fixed function of `key`."""
        return jax.random.normal(key, (self.k,), dtype=dtype)
