"""Moist convection in a single column: learn the Betts-Miller scheme's tendencies.

One sample is one column (`surrogate.solvers.column.Column`) with its own forcing: SST,
surface wind, large-scale advective cooling and moistening amplitudes, and a perturbed
moist-adiabatic initial profile. It is spun up with the physical scheme for `spin_up`
seconds, then `n_times` states `save_interval` apart are stored with the scheme's output
at each: T(time, level), q(time, level), heating and moistening (time, level), and
precipitation (time). A surrogate maps the column (T, q) to (heating, moistening):
`model_inputs = ("T", "q")`, `model_targets = ("heating", "moistening")`, stacked as
(sample, channel, time, level); reshape to (sample·time, channel, level) for a
per-state emulator.
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
from ..solvers.column import DAY, Column, betts_miller, pressure_levels
from ._base import Coordinate, Problem, Variable, check_option

# Ranges of the per-column forcing parameters, sampled uniformly.
RANGES = {
    "sst": (296.0, 304.0),  # K
    "wind": (2.0, 10.0),  # m/s
    "adv_cooling": (-1.0, 3.0),  # K/day (negative: subsidence warming)
    "adv_moistening": (-1.0, 3.0),  # g/kg/day (negative: drying)
}


def _steps(value: float, dt: float, name: str, minimum: int) -> int:
    n = round(value / dt)
    if n < minimum or not math.isclose(n * dt, value, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"{name} must be a multiple (>= {minimum}) of dt={dt} s, got {value}")
    return n


# Option limits, far beyond any use (a GCM column has 30-100 levels), so that a typo is
# refused here rather than by the allocator or after years of steps.
_MAX_LEVELS, _MAX_TIMES = 1_000, 10_000_000
_MAX_SECONDS = 10 * 365 * 86400.0
_MAX_STEPS = 10**9


class Convection(Problem):
    """Single-column moist convection: (T, q) -> Betts-Miller heating and moistening.

    Options: `n_levels` (30-60), `p_top` (Pa), `dt` (s), `spin_up`, `save_interval` (s,
    multiples of dt), `n_times` states stored, `tau_bm` (s) and `rh_bm` of the scheme.
    """

    n_levels: int = eqx.field(static=True)
    p_top: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    spin_up: float = eqx.field(static=True)
    save_interval: float = eqx.field(static=True)
    n_times: int = eqx.field(static=True)
    tau_bm: float = eqx.field(static=True)
    rh_bm: float = eqx.field(static=True)

    name: ClassVar[str] = "convection"
    model_inputs: ClassVar[tuple[str, ...]] = ("T", "q")
    model_targets: ClassVar[tuple[str, ...]] = ("heating", "moistening")

    def __init__(self, n_levels: int = 40, *, p_top: float = 1e4, dt: float = 900.0,
                 spin_up: float = 86400.0, save_interval: float = 3600.0, n_times: int = 96,
                 tau_bm: float = 7200.0, rh_bm: float = 0.7):  # fmt: skip
        check_option("n_levels", n_levels, 2, _MAX_LEVELS, integer=True, note="30-60 intended")
        check_option("n_times", n_times, 1, _MAX_TIMES, integer=True)
        self.n_levels, self.p_top, self.dt = int(n_levels), float(p_top), float(dt)
        self.spin_up, self.save_interval = float(spin_up), float(save_interval)
        self.n_times, self.tau_bm, self.rh_bm = int(n_times), float(tau_bm), float(rh_bm)

    def __check_init__(self):
        check_option("rh_bm", self.rh_bm, 0, 1, low_open=True)
        check_option("p_top", self.p_top, 0, 1e5, low_open=True, note="Pa, below the surface")
        check_option("tau_bm", self.tau_bm, 0, _MAX_SECONDS, low_open=True)
        check_option("dt", self.dt, 0, _MAX_SECONDS, low_open=True)
        for name in ("spin_up", "save_interval"):
            check_option(name, getattr(self, name), 0, _MAX_STEPS * self.dt,
                         note=f"at most {_MAX_STEPS:.0e} steps of dt={self.dt} s")  # fmt: skip
        self.column()  # checks p_top against the surface, dt against tau_bm
        _steps(self.spin_up, self.dt, "spin_up", 0)
        steps = _steps(self.save_interval, self.dt, "save_interval", 1)
        if steps * self.n_times > _MAX_STEPS:
            raise ValueError(
                f"n_times={self.n_times} states every {steps} steps of dt={self.dt} s make "
                f"{steps * self.n_times:.3g} steps, more than {_MAX_STEPS:.0e}; store fewer"
            )

    def column(self, **forcing: Any) -> Column:
        """The column of this problem with per-column `forcing` (sst, wind, ...)."""
        return Column(self.n_levels, p_top=self.p_top, dt=self.dt, tau_bm=self.tau_bm,
                      rh_bm=self.rh_bm, **forcing)  # fmt: skip

    def times(self) -> np.ndarray:
        return self.save_interval * np.arange(self.n_times)

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        keys = jax.random.split(key, 8)
        out = {
            name: jax.random.uniform(k, (), jnp.float32, lo, hi)
            for k, (name, (lo, hi)) in zip(keys[:4], RANGES.items(), strict=True)
        }
        # initial profile: moist adiabat from near-surface air, shifted and wiggled
        t_surf = out["sst"] - jax.random.uniform(keys[4], (), jnp.float32, 0.5, 3.0)
        rh_surf = jax.random.uniform(keys[5], (), jnp.float32, 0.55, 0.9)
        t, q = self.column().reference_profile(t_surf, rh_surf)
        p, _ = pressure_levels(self.n_levels, 1e5, self.p_top)
        sigma = (1e5 - p) / (1e5 - self.p_top)
        amp = jax.random.normal(keys[6], (3,), jnp.float32)
        modes = jnp.sin(jnp.pi * sigma[:, None] * jnp.arange(1, 4)[None, :])
        t = t + modes @ amp
        q = q * jnp.exp(0.2 * modes @ jax.random.normal(keys[7], (3,), jnp.float32))
        return {**out, "T_init": t, "q_init": q}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        t0, q0 = inputs["T_init"], inputs["q_init"]
        if t0.shape != (self.n_levels,) or q0.shape != (self.n_levels,):
            raise ValueError(
                f"T_init and q_init should have shape ({self.n_levels},), got "
                f"{t0.shape}, {q0.shape}"
            )
        column = self.column(**{name: inputs[name] for name in RANGES})
        state = (t0, q0)
        n_spin = _steps(self.spin_up, self.dt, "spin_up", 0)
        state = jax.lax.fori_loop(0, n_spin, lambda _, s: column.step(s), state)
        stride = _steps(self.save_interval, self.dt, "save_interval", 1)
        states = column.integrate(state, stride * (self.n_times - 1), save_every=stride)
        p, dp = column.levels

        def scheme(t, q):
            return betts_miller(t, q, p, dp, tau=self.tau_bm, rh=self.rh_bm)

        heating, moistening, precip = jax.vmap(scheme)(*states)
        return {
            "T": states[0],
            "q": states[1],
            "heating": heating * DAY,
            "moistening": moistening * DAY * 1e3,
            "precip": precip * DAY,
        }

    def coords(self) -> dict[str, Coordinate]:
        dp = (1e5 - self.p_top) / self.n_levels
        p = 1e5 - dp * (np.arange(self.n_levels) + 0.5)
        return {
            "time": Coordinate.time_axis(self.times(), "time since the end of spin-up"),
            "level": Coordinate(
                p, "Pa", "air pressure at the level centre", axis="Z", standard_name="air_pressure"
            ),
        }

    def variables(self) -> dict[str, Variable]:
        def forcing(units, what, standard_name=None):
            return Variable((), units, what, role="input", standard_name=standard_name)

        def profile(dims, units, what, standard_name, role="output"):
            return Variable(dims, units, what, role=role, standard_name=standard_name)

        return {
            "sst": forcing("K", "sea surface temperature under the column",
                           "sea_surface_temperature"),  # fmt: skip
            "wind": forcing("m s-1", "surface wind speed in the bulk flux formulae", "wind_speed"),
            "adv_cooling": forcing("K day-1", "amplitude of the large-scale advective cooling"),
            "adv_moistening": forcing(
                "g kg-1 day-1", "amplitude of the large-scale advective moistening"
            ),
            "T_init": profile(("level",), "K", "air temperature before spin-up",
                              "air_temperature", role="input"),  # fmt: skip
            "q_init": profile(("level",), "kg kg-1", "specific humidity before spin-up",
                              "specific_humidity", role="input"),  # fmt: skip
            "T": profile(("time", "level"), "K", "air temperature", "air_temperature"),
            "q": profile(("time", "level"), "kg kg-1", "specific humidity", "specific_humidity"),
            "heating": profile(
                ("time", "level"),
                "K day-1",
                "temperature tendency due to convection (simplified Betts-Miller)",
                "tendency_of_air_temperature_due_to_convection",
            ),
            "moistening": profile(
                ("time", "level"),
                "g kg-1 day-1",
                "specific humidity tendency due to convection (simplified Betts-Miller)",
                "tendency_of_specific_humidity_due_to_convection",
            ),
            "precip": profile(
                ("time",),
                "mm day-1",
                "convective precipitation rate (liquid water depth)",
                "lwe_convective_precipitation_rate",
            ),
        }

    def solver_settings(self) -> dict[str, Any]:
        return {
            "method": "single column, forward Euler, q clipped at 0",
            "convection": "simplified Betts-Miller (Frierson 2007) with enthalpy correction",
            "dt": self.dt,
            "p_surface": 1e5,
            "layer_thickness": (1e5 - self.p_top) / self.n_levels,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """R² of heating and moistening (pooled) and of their column integrals."""
        pred, true = jnp.asarray(pred), jnp.asarray(true)
        if pred.shape != true.shape or pred.ndim < 3 or pred.shape[1] != 2:
            raise ValueError(
                f"expected predictions and targets of one shape (sample, 2, ..., level), got "
                f"{pred.shape} and {true.shape}"
            )
        out = {}
        for i, name in enumerate(self.model_targets):
            out[f"r2_{name}"] = float(r2_score(pred[:, i], true[:, i]))
            out[f"r2_{name}_column"] = float(
                r2_score(jnp.sum(pred[:, i], axis=-1), jnp.sum(true[:, i], axis=-1))
            )
        out["rmse_heating"] = float(jnp.sqrt(jnp.mean((pred[:, 0] - true[:, 0]) ** 2)))
        return out
