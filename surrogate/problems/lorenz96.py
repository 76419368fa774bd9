"""The Lorenz '96 closure problem: learn the sub-grid tendency U_k of the slow variables.

Arnold, Moroz & Palmer (2013), "Stochastic parametrizations and model uncertainty in the
Lorenz '96 system", Phil. Trans. R. Soc. A 371, 20110479: the two-scale system
(K = 8, J = 32, h = 1, b = c = 10, F = 20) is the truth, integrated with RK4 at dt = 0.001;
a one-level model of X alone steps at Δt = 0.005 and needs a closure U(X) for the effect of
the fast variables. The target is their tendency difference

    U_k(t) = [X_k(t + Δt) − X̂_k(t + Δt)] / Δt,

X̂ one step of the one-level model with U = 0 from the true X(t)
(`surrogate.solvers.lorenz96.Lorenz96OneLevel.tendency_difference`). A one-level model
coupled with `coupling="once"` and this U reproduces the truth step by step.

One sample is one random initial state, spun up onto the attractor, then `n_times` states
`save_interval` apart (the coarse step Δt): X(model_time, k), optionally
Y(model_time, k, j), and U(model_time, k). A surrogate maps the field X over the ring to U
(`model_inputs = ("X",)`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..metrics import r2_score
from ..solvers.lorenz96 import _CONFIGS, Lorenz96OneLevel, Lorenz96TwoScale
from ._base import Coordinate, Problem, Variable, check_option


def _multiple(value: float, dt: float, name: str, minimum: int) -> int:
    n = round(value / dt)
    if n < minimum or not math.isclose(n * dt, value, rel_tol=1e-9, abs_tol=1e-12):
        least = "a positive" if minimum else "a non-negative"
        raise ValueError(f"{name} must be {least} multiple of dt={dt}, got {value}")
    return n


# Option limits: far beyond any published configuration (K = 8-40, J = 32-128, |F| <= 20),
# low enough that a typo is refused here rather than by the allocator or after days of steps.
_MAX_K, _MAX_J, _MAX_TIMES = 10_000, 1_000, 10_000_000
_MAX_COEFFICIENT = 1e3
_MAX_STEPS = 10**9


class Lorenz96Closure(Problem):
    """Lorenz '96 sub-grid closure data: X -> U from spun-up two-scale truth runs.

    Options: `config` ("arnold2013" or "lorenz1996") sets K, J, h, b, c, F; each may be
    overridden (`k`, `j`, `h`, `b`, `c`, `forcing`). `dt` is the truth's RK4 step (0.001),
    `spin_up` the time discarded first, `save_interval` the coarse step Δt at which X, Y, U
    are stored (a multiple of dt), `n_times` the states stored, `store_y` whether to keep
    the fast variables (K·J values per time; off for long runs).
    """

    config: str = eqx.field(static=True)
    k: int = eqx.field(static=True)
    j: int = eqx.field(static=True)
    h: float
    b: float
    c: float
    forcing: float
    dt: float = eqx.field(static=True)
    spin_up: float = eqx.field(static=True)
    save_interval: float = eqx.field(static=True)
    n_times: int = eqx.field(static=True)
    store_y: bool = eqx.field(static=True)

    name: ClassVar[str] = "lorenz96"
    model_inputs: ClassVar[tuple[str, ...]] = ("X",)
    model_targets: ClassVar[tuple[str, ...]] = ("U",)

    def __init__(
        self,
        config: str = "arnold2013",
        *,
        k: int | None = None,
        j: int | None = None,
        h: float | None = None,
        b: float | None = None,
        c: float | None = None,
        forcing: float | None = None,
        dt: float = 0.001,
        spin_up: float = 10.0,
        save_interval: float = 0.005,
        n_times: int = 1000,
        store_y: bool = True,
    ):
        if config not in _CONFIGS:
            raise ValueError(
                f"unknown Lorenz96 config {config!r}; expected one of {list(_CONFIGS)}"
            )
        preset = _CONFIGS[config]
        given = dict(k=k, j=j, h=h, b=b, c=c, forcing=forcing)
        values = {name: preset[name] if v is None else v for name, v in given.items()}
        check_option("k", values["k"], 4, _MAX_K, integer=True)
        check_option("j", values["j"], 1, _MAX_J, integer=True)
        check_option("n_times", n_times, 1, _MAX_TIMES, integer=True)
        self.config = config
        self.k, self.j = int(values["k"]), int(values["j"])
        self.h, self.b, self.c = float(values["h"]), float(values["b"]), float(values["c"])
        self.forcing = float(values["forcing"])
        self.dt, self.spin_up = float(dt), float(spin_up)
        self.save_interval, self.n_times = float(save_interval), int(n_times)
        self.store_y = bool(store_y)

    def __check_init__(self):
        for name in ("h", "forcing"):
            check_option(name, getattr(self, name), -_MAX_COEFFICIENT, _MAX_COEFFICIENT)
        for name in ("b", "c", "dt", "save_interval"):
            check_option(name, getattr(self, name), 0, _MAX_COEFFICIENT, low_open=True)
        check_option("spin_up", self.spin_up, 0, _MAX_STEPS * self.dt,
                     note=f"at most {_MAX_STEPS:.0e} steps of dt={self.dt}")  # fmt: skip
        check_option("save_interval", self.save_interval, None, _MAX_STEPS * self.dt,
                     note=f"at most {_MAX_STEPS:.0e} steps of dt={self.dt}")  # fmt: skip
        # the two solvers check the stability of dt and save_interval
        _ = (self.system, self.coarse)
        _multiple(self.spin_up, self.dt, "spin_up", 0)
        steps = _multiple(self.save_interval, self.dt, "save_interval", 1)
        if steps * self.n_times > _MAX_STEPS:
            raise ValueError(
                f"n_times={self.n_times} states every {steps} steps of dt={self.dt} make "
                f"{steps * self.n_times:.3g} steps, more than {_MAX_STEPS:.0e}; store fewer"
            )

    @property
    def system(self) -> Lorenz96TwoScale:
        return Lorenz96TwoScale(
            self.k, self.j, h=self.h, b=self.b, c=self.c, forcing=self.forcing, dt=self.dt
        )

    @property
    def coarse(self) -> Lorenz96OneLevel:
        """The one-level model at the coarse step, coupled once per step (module docstring)."""
        return Lorenz96OneLevel(
            self.k, forcing=self.forcing, dt=self.save_interval, coupling="once"
        )

    def times(self) -> np.ndarray:
        return self.save_interval * np.arange(self.n_times)

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        x0, y0 = self.system.initial_state(key=key)
        return {"x0": x0, "y0": y0}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        x0, y0 = inputs["x0"], inputs["y0"]
        if x0.shape != (self.k,) or y0.shape != (self.k, self.j):
            raise ValueError(
                f"inputs x0, y0 should have shapes ({self.k},), ({self.k}, {self.j}); "
                f"got {x0.shape}, {y0.shape}"
            )
        system = self.system
        state = system.spin_up((x0, y0), self.spin_up)
        stride = _multiple(self.save_interval, self.dt, "save_interval", 1)

        def chunk(s, _):
            s = jax.lax.fori_loop(0, stride, lambda _, v: system.step(v), s)
            return s, (s if self.store_y else s[0])

        # n_times + 1 states: U at the last stored time needs the state one Δt later
        _, saved = jax.lax.scan(chunk, state, None, length=self.n_times)
        xs = jnp.concatenate([state[0][None], saved[0] if self.store_y else saved])
        u = jax.vmap(self.coarse.tendency_difference)(xs[:-1], xs[1:])
        out = {"X": xs[:-1], "U": u}
        if self.store_y:
            out["Y"] = jnp.concatenate([state[1][None], saved[1][:-1]])
        return out

    def coords(self) -> dict[str, Coordinate]:
        return {
            # Lorenz's model time unit (MTU) is non-dimensional: not a CF time axis
            "model_time": Coordinate(
                self.times(), "1", "time since the end of spin-up in model time units"
            ),
            "k": Coordinate(np.arange(self.k), "1", "index of the slow variable on its ring"),
            "j": Coordinate(np.arange(self.j), "1", "index of the fast variable in sector k"),
        }

    def variables(self) -> dict[str, Variable]:
        return {
            "x0": Variable(("k",), "1", "slow variables X_k before spin-up", role="input"),
            "y0": Variable(("k", "j"), "1", "fast variables Y_jk before spin-up", role="input"),
            "X": Variable(("model_time", "k"), "1", "slow variables X_k"),
            "Y": Variable(("model_time", "k", "j"), "1", "fast variables Y_jk", optional=True),
            "U": Variable(
                ("model_time", "k"),
                "1",
                "sub-grid tendency of X_k per model time unit (tendency difference over the "
                "coarse step, Arnold et al. 2013)",
            ),
        }

    def solver_settings(self) -> dict[str, Any]:
        return {
            "method": "two-scale Lorenz '96, classical RK4 at fixed step dt",
            "dt": self.dt,
            "subgrid_tendency": "tendency difference over save_interval, coupling 'once'",
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """Offline MSE and R² of U (pooled over samples, times and k)."""
        pred, true = jnp.asarray(pred), jnp.asarray(true)
        if pred.shape != true.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target {true.shape}")
        mse = jnp.mean((pred - true) ** 2)
        return {
            "mse": float(mse),
            "rmse": float(jnp.sqrt(mse)),
            "r2": float(r2_score(pred, true)),
        }
