"""The FNO paper's 1-D Burgers benchmark: initial condition u0 -> solution u(·, T).

Li et al. (2021), "Fourier Neural Operator for Parametric PDEs", §5.1: ν = 0.1, T = 1,
u0 ~ N(0, 625 (−Δ + 25 I)^(−2)) on the periodic unit interval, data at s = 1024 (solved at
8192 there). Here the reference is `surrogate.solvers.burgers.BurgersSolver`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..fields import grf_1d
from ..metrics import field_metrics
from ..solvers.burgers import BurgersSolver
from ._base import Coordinate, Problem, Variable

# A 256-point solve differs from a 2048-point one by a relative 6e-5 (ν = 0.1) to 1e-4
# (ν = 0.01) at T = 1, far below any surrogate's error; coarser grids lose accuracy fast.
_MIN_SOLVE_POINTS = 256


class Burgers(Problem):
    """Viscous Burgers: learn u0 ↦ u(·, final_time).

    Options: `viscosity`, `final_time`, `resolution` (points stored), `solve_resolution`
    (points solved on, a multiple of `resolution`; 0 = automatic), `n_times` (if > 0, also
    store the trajectory `u_t` at that many equally spaced times in (0, final_time]),
    the GRF's `alpha`, `tau`, `sigma`, and the largest time step `dt` (0 = automatic).
    """

    viscosity: float = 0.1
    final_time: float = 1.0
    resolution: int = 1024
    solve_resolution: int = 0
    n_times: int = 0
    alpha: float = 2.0
    tau: float = 5.0
    sigma: float = 25.0
    dt: float = 0.0

    name: ClassVar[str] = "burgers"
    model_inputs: ClassVar[tuple[str, ...]] = ("u0",)
    model_targets: ClassVar[tuple[str, ...]] = ("u",)

    def __check_init__(self):
        if self.resolution < 4 or self.resolution % 2:
            raise ValueError(f"resolution must be even and >= 4, got {self.resolution}")
        if not self.viscosity > 0:
            raise ValueError(f"viscosity must be positive, got {self.viscosity}")
        if not self.final_time > 0:
            raise ValueError(f"final_time must be positive, got {self.final_time}")
        if self.solve_resolution and self.solve_resolution % self.resolution:
            raise ValueError(
                f"solve_resolution {self.solve_resolution} is not a multiple "
                f"of resolution {self.resolution}"
            )
        if self.n_times < 0:
            raise ValueError(f"n_times must be >= 0, got {self.n_times}")

    @property
    def fine(self) -> int:
        if self.solve_resolution:
            return self.solve_resolution
        factor = -(-_MIN_SOLVE_POINTS // self.resolution)
        return self.resolution * max(1, factor)

    @property
    def solver(self) -> BurgersSolver:
        return BurgersSolver(self.fine, self.viscosity, dt=self.dt or None)

    def times(self) -> np.ndarray:
        if self.n_times:
            return self.final_time * np.arange(1, self.n_times + 1) / self.n_times
        return np.array([self.final_time])

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        u0 = grf_1d(key, self.fine, alpha=self.alpha, tau=self.tau, sigma=self.sigma)
        return {"u0": u0}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        u0 = inputs["u0"]
        if u0.shape[-1] != self.fine:
            raise ValueError(f"u0 has {u0.shape[-1]} points; the solver grid has {self.fine}")
        times = self.times()
        if self.final_time not in times:
            times = np.append(times, self.final_time)
        us = self.solver(u0, times)
        step = self.fine // self.resolution
        out = {"u": us[-1, ::step]}
        if self.n_times:
            out["u_t"] = us[: self.n_times, ::step]
        return out

    def store_inputs(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Inputs as stored: the fine initial condition taken at the stored points."""
        step = self.fine // self.resolution
        return {"u0": jnp.asarray(inputs["u0"])[..., ::step]}

    def coords(self) -> dict[str, Coordinate]:
        c = {
            "x": Coordinate(
                np.arange(self.resolution) / self.resolution,
                "1",
                "position on the periodic unit interval",
                axis="X",
            )
        }
        if self.n_times:
            c["time"] = Coordinate(self.times(), "1", "time", axis="T")
        return c

    def variables(self) -> dict[str, Variable]:
        return {
            "u0": Variable(("x",), "1", "initial velocity", role="input"),
            "u": Variable(("x",), "1", f"velocity at t = {self.final_time:g}"),
            "u_t": Variable(("time", "x"), "1", "velocity trajectory", optional=True),
        }

    def solver_settings(self) -> dict:
        s = self.solver
        return {
            "method": "pseudo-spectral Fourier, 2/3 dealiasing, ETDRK4 (Kassam-Trefethen)",
            "points": s.n,
            "max_dt": s.dt,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        return field_metrics(pred, true)
