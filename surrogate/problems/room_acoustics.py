"""Room acoustics: source position x0 -> pressure field p(t, x) of an impulse in a room.

The room is a rectangle (2-D) or a shoebox (3-D) with locally reacting walls of one
normal-incidence absorption coefficient; the source is the Gaussian pulse
p0 = A·exp(−|x − x0|²/σ²) at rest with A = 1 Pa and σ = 2c/(π f_max), so that it carries
frequencies up to about f_max; the reference is the staggered leapfrog of
`surrogate.solvers.acoustics` on cells of h = c/(f_max · points_per_wavelength). This is
the setting of Borrel-Jensen, Goswami, Engsig-Karup, Karniadakis & Jeong (2024), "Sound
propagation in realistic interactive 3D scenes with parameterized sources using deep neural
operators", PNAS 121, e2312159120, who learn it with a DeepONet (`SourceDeepONet` in
`surrogate.applications.room_acoustics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..metrics import field_metrics
from ..solvers.acoustics import (
    Room,
    WaveSolver,
    gaussian_pulse,
    pulse_width,
    rectangle_mask,
    shoebox_mask,
)
from ._base import Coordinate, Problem, Variable, check_option

_AXES = ("x", "y", "z")


# A grid of 2**26 cells holds about 1 GiB of float32 pressure and velocities in 3-D.
_MAX_CELLS = 2**26
_MAX_STEPS = 10**7


class RoomAcoustics(Problem):
    """Learn x0 ↦ p(t, x): the impulse response field of a source at x0.

    Options: `ndim` (2 or 3), room sides `size_x`, `size_y`, `size_z` in metres (`size_z`
    only in 3-D), wall `absorption` α ∈ [0, 1], `f_max` (Hz) of the pulse,
    `points_per_wavelength` at f_max (fixes the cell size), `duration` (s) and `n_times`
    saved frames at t = 0 .. duration, `margin` (m): the least distance of a source from a
    wall, `stride`: every stride-th cell per axis is stored, `order` (2 or 4) of the
    stencil, sound speed `c` (m/s). Sources are uniform in the room shrunk by the margin.
    """

    ndim: int = 2
    size_x: float = 2.0
    size_y: float = 2.0
    size_z: float = 1.5
    absorption: float = 0.2
    f_max: float = 1000.0
    points_per_wavelength: float = 6.0
    duration: float = 0.02
    n_times: int = 21
    margin: float = 0.5
    stride: int = 1
    order: int = 2
    c: float = 343.0

    name: ClassVar[str] = "room_acoustics"
    model_inputs: ClassVar[tuple[str, ...]] = ("x0",)
    model_targets: ClassVar[tuple[str, ...]] = ("p",)

    def __check_init__(self):
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3 (a 2-D room or a 3-D shoebox), got {self.ndim}")
        if self.order not in (2, 4):
            raise ValueError(
                f"order must be 2 or 4 (spatial order of the stencil), got {self.order}"
            )
        check_option("f_max", self.f_max, 0, 1e6, low_open=True, note="Hz")
        check_option(
            "points_per_wavelength", self.points_per_wavelength, 2, 100, note="Nyquist: >= 2"
        )
        check_option("absorption", self.absorption, 0, 1)
        check_option("duration", self.duration, 0, 100, low_open=True, note="s")
        check_option("n_times", self.n_times, 2, 100_000, integer=True)
        check_option("margin", self.margin, 0, 1000, note="m")
        check_option("stride", self.stride, 1, 1000, integer=True)
        check_option("c", self.c, 0, 1e4, low_open=True, note="m/s")
        sides = (self.size_x, self.size_y, self.size_z)[: self.ndim]
        for axis, side in zip(_AXES, sides, strict=False):
            check_option(f"size_{axis}", side, 0, 1000, low_open=True, note="m")
        h = self.spacing
        cells = math.prod(side / h for side in sides)
        if cells > _MAX_CELLS:
            raise ValueError(
                f"the grid would have {cells:.3g} cells of {h:.3g} m, more than {_MAX_CELLS:.3g}; "
                "lower f_max or points_per_wavelength, or use a smaller room"
            )
        # the solver's step is 0.9 of the Courant limit (<= 1/sqrt(d) of h/c)
        steps = self.duration * self.c * math.sqrt(self.ndim) / (0.9 * (6 / 7) * h)
        if steps > _MAX_STEPS:
            raise ValueError(
                f"duration={self.duration} s takes about {steps:.3g} time steps of the solver, "
                f"more than {_MAX_STEPS:.0e}; shorten it or lower f_max"
            )
        for axis, side in zip(_AXES, sides, strict=False):
            if not side > 2 * self.margin + h:
                raise ValueError(
                    f"room too small for the margin: side {axis} of {side} m leaves no room "
                    f"for sources {self.margin} m from both walls (cells of {h:.4g} m)"
                )

    # ---- the room and its solver ---------------------------------------------------
    @property
    def spacing(self) -> float:
        """Cell side h = c/(f_max · points per wavelength), in metres."""
        return self.c / (self.f_max * self.points_per_wavelength)

    @property
    def sigma(self) -> float:
        return pulse_width(self.f_max, self.c)

    @property
    def room(self) -> Room:
        h = self.spacing
        # geometry is static: build it concretely even when called under jit/vmap
        with jax.ensure_compile_time_eval():
            if self.ndim == 2:
                mask = rectangle_mask((self.size_x, self.size_y), h)
            else:
                mask = shoebox_mask((self.size_x, self.size_y, self.size_z), h)
            return Room(mask, h, absorption=self.absorption)

    @property
    def solver(self) -> WaveSolver:
        return WaveSolver(self.room, c=self.c, order=self.order)

    @property
    def extent(self) -> tuple[float, ...]:
        """Side lengths of the simulated grid (round(L/h) cells), in metres."""
        return self.room.extent

    def times(self) -> np.ndarray:
        return np.linspace(0.0, self.duration, self.n_times)

    # ---- the Problem contract ------------------------------------------------------
    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        lo = jnp.full((self.ndim,), self.margin, jnp.float32)
        hi = jnp.asarray(self.extent, jnp.float32) - self.margin
        return {"x0": jax.random.uniform(key, (self.ndim,), jnp.float32, lo, hi)}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        x0 = jnp.asarray(inputs["x0"])
        if x0.shape != (self.ndim,):
            raise ValueError(f"x0 must have shape ({self.ndim},), got {x0.shape}")
        room, s = self.room, self.stride
        p0 = gaussian_pulse(room.grid_coords(), x0, 1.0, self.sigma)
        fields, _ = self.solver.simulate(p0, save_times=self.times())
        return {"p": fields[(slice(None),) + (slice(None, None, s),) * self.ndim]}

    def coords(self) -> dict[str, Coordinate]:
        c = {"time": Coordinate.time_axis(self.times(), "time since the pulse")}
        for axis, x in zip(_AXES, self.room.coords(), strict=False):
            c[axis] = Coordinate(
                np.asarray(x, np.float64)[:: self.stride],
                "m",
                f"{axis} position of the cell centre",
                axis=axis.upper(),
                positive="up" if axis == "z" else None,  # height above the floor
            )
        return c

    def variables(self) -> dict[str, Variable]:
        grid = _AXES[: self.ndim]
        return {
            "x0": Variable(("dim",), "m", "source position (x, y[, z])", role="input"),
            "p": Variable(
                ("time", *grid),
                "Pa",
                "sound pressure of a 1 Pa Gaussian pulse",
                standard_name="sound_pressure_in_air",
            ),
        }

    def solver_settings(self) -> dict:
        s = self.solver
        return {
            "method": "staggered leapfrog FDTD (Yee 1966, Botteldooren 1995), impedance walls",
            "spacing_m": s.room.spacing,
            "grid": list(s.room.shape),
            "dt_s": s.dt,
            "courant": s.courant,
            "order": s.order,
            "pulse_sigma_m": self.sigma,
            "pulse_amplitude_pa": 1.0,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """Relative L2, RMSE (Pa, over the time window and the room) and max error (Pa)."""
        return field_metrics(pred, true)

    def space_time_points(self) -> Float[Array, " n_points dp1"]:
        """The stored grid as (x, y[, z], t) rows, in the order of `p[i].reshape(-1, ...)`
        moved to time-last: row k is point k of `to_points(p[i])`."""
        c = self.coords()
        axes = [c[a].values for a in _AXES[: self.ndim]] + [c["time"].values]
        mesh = np.meshgrid(*axes, indexing="ij")
        return jnp.asarray(np.stack([m.reshape(-1) for m in mesh], -1), jnp.float32)

    def to_points(self, p: Float[Array, " time *grid"]) -> Float[Array, " n_points"]:
        """One sample's field (time, *grid) flattened in the order of `space_time_points`."""
        return jnp.moveaxis(jnp.asarray(p), 0, -1).reshape(-1)

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Box of the space-time inputs (x, y[, z], t) used to scale them to [−1, 1]."""
        return (0.0,) * (self.ndim + 1), (*self.extent, float(self.duration))
