"""Gravity-wave drag in a QBO: learn the spectral scheme's drag from the wind profile.

One sample is one integration of the 1-D QBO model (`surrogate.solvers.qbo.QBO`) on a ring
of `n_columns` columns `spacing` metres apart, driven by the AD99 spectral gravity-wave
scheme with oblique rays (`surrogate.solvers.gravity_waves.ring_gravity_wave_fluxes`).
Each sample has its own source (ring-mean launched flux `source_flux`, spectral half
width `source_width`), its own isothermal `temperature` (hence ρ and N) and its own
initial wind; the launched flux of each column is modulated by an envelope travelling
eastward around the ring, so neighbouring columns differ and the drag at one column
depends on its neighbours' sources and winds (the nonlocal context). The run is spun up
for `spin_up` seconds, then `n_times` states `save_interval` apart are stored with the
scheme's drag, its eastward and westward fluxes at the layer interfaces and each column's
launched flux at that time.

`model_inputs = ("u",)`, `model_targets = ("drag",)`, stacked as (sample, channel, time,
column, level). The emulators of `surrogate.applications.gravity_waves` also read
`launch_flux`, `source_width`, `rho` and `n`.
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
from ..solvers.gravity_waves import AD99, isothermal_atmosphere
from ..solvers.qbo import DAY, QBO, YEAR
from ._base import Coordinate, Problem, Variable, check_option

# Per-sample parameters, drawn uniformly.
RANGES = {
    "source_flux": (0.7e-3, 1.3e-3),  # Pa, ring-mean total launched momentum flux
    "source_width": (16.0, 24.0),  # m/s, half width at half maximum of the spectrum
    "temperature": (196.0, 212.0),  # K, isothermal stratosphere
}
INITIAL_WIND = 20.0  # m/s: the initial parabola's amplitude is uniform in ±this
Z_BOTTOM, Z_TOP = 17e3, 35e3  # m: the tropical stratosphere of the QBO model
C_MAX = 100.0  # m/s, fastest phase speed of the spectrum
KAPPA = 0.3  # m²/s, the QBO model's diffusivity (as in qbo1d)
SPONGE_TIME, SPONGE_DEPTH = 5 * DAY, 5e3  # Rayleigh sponge under the top

# Option limits, far beyond any use, so that a typo is refused here rather than by the
# allocator or after years of steps.
_MAX_COLUMNS, _MAX_WAVES, _MAX_TIMES = 256, 1000, 10_000_000
_MAX_LENGTH = 1e8  # m
_MAX_SECONDS = 100 * YEAR
_MAX_STEPS = 10**9


def _steps(value: float, dt: float, name: str, minimum: int) -> int:
    n = round(value / dt)
    if n < minimum or not math.isclose(n * dt, value, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"{name} must be a multiple (>= {minimum}) of dt={dt} s, got {value}")
    return n


class GravityWaves(Problem):
    """Spectral gravity-wave drag on a ring of QBO columns: u -> AD99 drag, with oblique rays.

    Options: `n_columns` on the ring, `spacing` (m) between them, layer thickness `dz`
    (m, dividing the 18 km from 17 to 35 km), the scheme's horizontal `wavelength` (m),
    `n_waves` phase speeds in ±100 m/s and its `smoothness` (0: AD99's hard switch), `dt`,
    `spin_up`, `save_interval` (s, multiples of dt), `n_times` states stored, the source
    envelope's amplitude `envelope` and period `envelope_period` (s), and the ring's zonal
    `mixing_time` (s).
    """

    n_columns: int = eqx.field(static=True)
    spacing: float = eqx.field(static=True)
    dz: float = eqx.field(static=True)
    wavelength: float = eqx.field(static=True)
    n_waves: int = eqx.field(static=True)
    smoothness: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    spin_up: float = eqx.field(static=True)
    save_interval: float = eqx.field(static=True)
    n_times: int = eqx.field(static=True)
    envelope: float = eqx.field(static=True)
    envelope_period: float = eqx.field(static=True)
    mixing_time: float = eqx.field(static=True)

    name: ClassVar[str] = "gravity_waves"
    model_inputs: ClassVar[tuple[str, ...]] = ("u",)
    model_targets: ClassVar[tuple[str, ...]] = ("drag",)

    def __init__(self, n_columns: int = 8, *, spacing: float = 150e3, dz: float = 500.0,
                 wavelength: float = 300e3, n_waves: int = 80, smoothness: float = 0.2,
                 dt: float = DAY, spin_up: float = 3 * YEAR, save_interval: float = 10 * DAY,
                 n_times: int = 110, envelope: float = 0.5, envelope_period: float = 40 * DAY,
                 mixing_time: float = 10 * DAY):  # fmt: skip
        check_option("n_columns", n_columns, 1, _MAX_COLUMNS, integer=True)
        check_option("n_waves", n_waves, 2, _MAX_WAVES, integer=True)
        check_option("n_times", n_times, 1, _MAX_TIMES, integer=True)
        self.n_columns, self.n_waves, self.n_times = int(n_columns), int(n_waves), int(n_times)
        self.spacing, self.dz, self.wavelength = float(spacing), float(dz), float(wavelength)
        self.smoothness, self.dt = float(smoothness), float(dt)
        self.spin_up, self.save_interval = float(spin_up), float(save_interval)
        self.envelope, self.envelope_period = float(envelope), float(envelope_period)
        self.mixing_time = float(mixing_time)

    def __check_init__(self):
        check_option("spacing", self.spacing, 0, _MAX_LENGTH, low_open=True, note="m")
        check_option("dz", self.dz, 10.0, (Z_TOP - Z_BOTTOM) / 2, note="m, dividing 18 km")
        check_option("wavelength", self.wavelength, 0, _MAX_LENGTH, low_open=True, note="m")
        check_option("smoothness", self.smoothness, 0, 10)
        check_option("dt", self.dt, 0, 30 * DAY, low_open=True, note="s")
        check_option("envelope", self.envelope, 0, 1)
        for name in ("envelope_period", "mixing_time"):
            check_option(name, getattr(self, name), 0, _MAX_SECONDS, low_open=True, note="s")
        for name in ("spin_up", "save_interval"):
            check_option(name, getattr(self, name), 0, _MAX_STEPS * self.dt,
                         note=f"at most {_MAX_STEPS:.0e} steps of dt={self.dt} s")  # fmt: skip
        self.model()  # checks that dz divides the domain
        _steps(self.spin_up, self.dt, "spin_up", 0)
        steps = _steps(self.save_interval, self.dt, "save_interval", 1)
        if steps * self.n_times > _MAX_STEPS:
            raise ValueError(
                f"n_times={self.n_times} states every {steps} steps of dt={self.dt} s make "
                f"{steps * self.n_times:.3g} steps, more than {_MAX_STEPS:.0e}; store fewer"
            )

    # ---- the model and the scheme --------------------------------------------------------
    def model(self, **source: Any) -> QBO:
        """The ring of QBO columns of this problem, with a sample's `source_flux`,
        `source_width` and `temperature` (defaults: the middle of their ranges)."""
        source = {k: source.get(k, sum(RANGES[k]) / 2) for k in RANGES}
        return QBO(z_bottom=Z_BOTTOM, z_top=Z_TOP, dz=self.dz, dt=self.dt, kappa=KAPPA,
                   sponge_time=SPONGE_TIME, sponge_depth=SPONGE_DEPTH,
                   n_columns=self.n_columns, mixing_time=self.mixing_time,
                   envelope=self.envelope, envelope_period=self.envelope_period,
                   **source)  # fmt: skip

    def scheme(self) -> AD99:
        """The reference AD99 scheme with oblique rays on the ring (spectrum centred on the
        zero wind at the launch level, the QBO model's lower boundary)."""
        return AD99(c_max=C_MAX, n_waves=self.n_waves, wavenumber=2 * math.pi / self.wavelength,
                    centre=0.0, smoothness=self.smoothness, spacing=self.spacing)  # fmt: skip

    @property
    def n_levels(self) -> int:
        return round((Z_TOP - Z_BOTTOM) / self.dz)

    def heights(self) -> np.ndarray:
        return Z_BOTTOM + self.dz * (np.arange(self.n_levels) + 0.5)

    def times(self) -> np.ndarray:
        return self.save_interval * np.arange(self.n_times)

    # ---- the Problem contract ------------------------------------------------------------
    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        keys = jax.random.split(key, len(RANGES) + 1)
        out = {
            name: jax.random.uniform(k, (), jnp.float32, lo, hi)
            for k, (name, (lo, hi)) in zip(keys[:-1], RANGES.items(), strict=True)
        }
        amplitude = jax.random.uniform(keys[-1], (), jnp.float32, -INITIAL_WIND, INITIAL_WIND)
        s = (jnp.asarray(self.heights(), jnp.float32) - Z_BOTTOM) / (Z_TOP - Z_BOTTOM)
        return {**out, "u_init": 4 * amplitude * s * (1 - s)}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        u0 = jnp.asarray(inputs["u_init"])
        if u0.shape != (self.n_levels,):
            raise ValueError(f"u_init should have shape ({self.n_levels},), got {u0.shape}")
        model = self.model(**{k: inputs[k] for k in RANGES})
        scheme = self.scheme()
        state = (jnp.broadcast_to(u0, model.state_shape), jnp.zeros((), u0.dtype))
        n_spin = _steps(self.spin_up, self.dt, "spin_up", 0)
        if n_spin:  # (a loop of no steps would still be compiled)
            state = jax.lax.fori_loop(0, n_spin, lambda _, s: model.step(s, scheme), state)
        stride = _steps(self.save_interval, self.dt, "save_interval", 1)
        u, t = model.integrate(state, stride * (self.n_times - 1), scheme, save_every=stride)

        def diagnose(ui, ti):
            params = model.params(ti)
            drag, (east, west) = scheme.drag_and_fluxes(ui, params)
            return drag, east, west, params["source_flux"]

        drag, east, west, launched = jax.vmap(diagnose)(u, t)
        if self.n_columns == 1:  # the model's single column (level,): a ring of one
            u, drag, east, west = (a[:, None] for a in (u, drag, east, west))
            launched = launched.reshape(-1, 1)
        params = model.params(0.0)
        return {"u": u, "drag": drag, "flux_east": east, "flux_west": west,
                "launch_flux": launched, "rho": params["rho"], "n": params["n"]}  # fmt: skip

    def coords(self) -> dict[str, Coordinate]:
        z = self.heights()
        return {
            "time": Coordinate.time_axis(self.times(), "time since the end of spin-up"),
            "column": Coordinate(
                self.spacing * np.arange(self.n_columns),
                "m",
                "distance eastward along the ring of columns",
            ),  # fmt: skip
            "level": Coordinate(
                z,
                "m",
                "altitude of the layer centre",
                axis="Z",
                standard_name="altitude",
                positive="up",
            ),  # fmt: skip
            "interface": Coordinate(
                np.append(z - self.dz / 2, Z_TOP),
                "m",
                "altitude of the layer interface",
                standard_name="altitude",
                positive="up",
            ),  # fmt: skip
        }

    def variables(self) -> dict[str, Variable]:
        def scalar(units, what):
            return Variable((), units, what, role="input")

        fields = ("time", "column", "level")
        half = ("time", "column", "interface")
        wave = "nonorographic_{}_gravity_waves"
        return {
            "source_flux": scalar("Pa", "ring-mean total launched gravity-wave momentum flux"),
            "source_width": scalar(
                "m s-1", "half width at half maximum of the phase-speed spectrum"
            ),  # fmt: skip
            "temperature": Variable(
                (),
                "K",
                "temperature of the isothermal stratosphere",
                role="input",
                standard_name="air_temperature",
            ),  # fmt: skip
            "u_init": Variable(
                ("level",),
                "m s-1",
                "eastward wind before spin-up",
                role="input",
                standard_name="eastward_wind",
            ),  # fmt: skip
            "u": Variable(fields, "m s-1", "eastward wind", standard_name="eastward_wind"),
            "drag": Variable(
                fields,
                "m s-2",
                "eastward wind tendency due to gravity-wave drag (AD99)",
                standard_name="tendency_of_eastward_wind_due_to_nonorographic_gravity_wave_drag",
            ),
            "flux_east": Variable(
                half,
                "Pa",
                "upward flux of eastward momentum of the eastward gravity waves",
                standard_name=f"upward_eastward_momentum_flux_in_air_due_to_{wave.format('eastward')}",
            ),
            "flux_west": Variable(
                half,
                "Pa",
                "upward flux of eastward momentum of the westward gravity waves",
                standard_name=f"upward_eastward_momentum_flux_in_air_due_to_{wave.format('westward')}",
            ),
            "launch_flux": Variable(
                ("time", "column"), "Pa", "total gravity-wave momentum flux launched at the column"
            ),
            "rho": Variable(("level",), "kg m-3", "air density", standard_name="air_density"),
            "n": Variable(
                ("level",),
                "s-1",
                "buoyancy frequency",
                standard_name="brunt_vaisala_frequency_in_air",
            ),  # fmt: skip
        }

    def solver_settings(self) -> dict[str, Any]:
        return {
            "method": "1-D QBO ring, Crank-Nicolson diffusion and sponge, Heun drag",
            "scheme": "AD99 spectral gravity-wave drag with oblique rays",
            "z_bottom": Z_BOTTOM,
            "z_top": Z_TOP,
            "kappa": KAPPA,
            "c_max": C_MAX,
            "sponge_time": SPONGE_TIME,
            "sponge_depth": SPONGE_DEPTH,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """R² of the drag: pooled, mean over the levels where it varies (standard deviation
        above 5% of the largest level's: the top of the sponge layer hardly ever sees any),
        and of its column integral Σ ρ dz drag, with ρ of the 204 K atmosphere (the
        samples' own ρ differ by < 10%)."""
        pred, true = jnp.asarray(pred), jnp.asarray(true)
        if pred.shape != true.shape or pred.ndim < 3 or pred.shape[-1] != self.n_levels:
            raise ValueError(
                f"expected predictions and targets of one shape (sample, ..., "
                f"{self.n_levels} levels), got {pred.shape} and {true.shape}"
            )
        rho, _ = isothermal_atmosphere(jnp.asarray(self.heights(), pred.dtype), 204.0)
        p, t = pred.reshape(-1, self.n_levels), true.reshape(-1, self.n_levels)
        std = np.asarray(jnp.std(t, axis=0))
        active = np.nonzero(std > 0.05 * std.max())[0] if std.max() > 0 else range(self.n_levels)
        per_level = [float(r2_score(p[:, k], t[:, k])) for k in active]
        return {
            "r2_drag": float(r2_score(p, t)),
            "r2_drag_level_mean": float(np.mean(per_level)),
            "r2_drag_column": float(r2_score(p @ rho * self.dz, t @ rho * self.dz)),
            "rmse_drag_m_s_day": float(jnp.sqrt(jnp.mean((p - t) ** 2)) * DAY),
        }
