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
_MAX_POINTS = 2**16
# dt · k_max · max|u| of the largest step accepted. Measured (ν = 1e-3 and 1e-2, 64 to 256
# points, α from 0.75 to 2): blow-up between 6 and 12; for α = 2 the error at 8 is that of a
# 4× smaller step, for rough fields (α = 1) it grows 3× from 2 to 4
_MAX_STEP_NUMBER = 2.0
_MAX_STEPS = 1e7


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
        if not 4 <= self.resolution <= _MAX_POINTS or self.resolution % 2:
            raise ValueError(
                f"resolution must be even and in [4, {_MAX_POINTS}], got {self.resolution}"
            )
        if not 0 <= self.solve_resolution <= _MAX_POINTS:
            raise ValueError(
                f"solve_resolution must be in [0, {_MAX_POINTS}] (0 = automatic), "
                f"got {self.solve_resolution}"
            )
        if not 0 < self.viscosity <= 100:
            raise ValueError(f"viscosity must be positive and <= 100, got {self.viscosity}")
        if not 0 < self.final_time <= 1000:
            raise ValueError(f"final_time must be positive and <= 1000, got {self.final_time}")
        if self.solve_resolution and self.solve_resolution % self.resolution:
            raise ValueError(
                f"solve_resolution {self.solve_resolution} is not a multiple "
                f"of resolution {self.resolution}"
            )
        if not 0 <= self.n_times <= 10_000:
            raise ValueError(f"n_times must be in [0, 10000], got {self.n_times}")
        # the GRF's pointwise variance Σ λ_k is finite in 1-D for alpha > 1/2
        if not 0.5 < self.alpha <= 10:
            raise ValueError(f"alpha must be > 0.5 and <= 10, got {self.alpha}")
        if not 0 <= self.tau <= 1000:
            raise ValueError(f"tau must be in [0, 1000], got {self.tau}")
        if not 0 < self.sigma <= 10_000:
            raise ValueError(f"sigma must be positive and <= 10000, got {self.sigma}")
        if not 0 <= self.dt <= self.final_time:
            raise ValueError(
                f"dt must be in [0, final_time = {self.final_time}] (0 = automatic), got {self.dt}"
            )
        self._check_time_step()

    def _check_time_step(self):
        """ETDRK4 integrates the diffusion exactly, but its explicit nonlinear term needs
        dt · k_max · max|u| ≲ 1 (`BurgersSolver`); well past that the solution blows up or,
        worse, stays finite and wrong (ν = 0.1, one step over [0, 1]: 46% off). max|u| is
        bounded by u0's (maximum principle), taken as 5 standard deviations of the GRF on
        the solver grid, sqrt(Σ_k λ_k) (`surrogate.fields`)."""
        m = np.arange(1, self.fine // 2 + 1, dtype=np.float64)
        var = 2 * np.sum(self.sigma**2 * (4 * np.pi**2 * m**2 + self.tau**2) ** -self.alpha)
        u_max = 5 * float(np.sqrt(var))
        k_max = 2 * np.pi * (self.fine // 3)
        dt_max = _MAX_STEP_NUMBER / (k_max * u_max)
        step = self.dt or self.solver.dt
        if step > dt_max:
            what = f"dt {self.dt:g}" if self.dt else f"the automatic dt {step:.3g}"
            raise ValueError(
                f"{what} is beyond what the ETDRK4 stepper resolves on {self.fine} points "
                f"(dt · k_max · max|u| <= {_MAX_STEP_NUMBER}, max|u| ≈ {u_max:.3g} for these "
                f"GRF options): the largest acceptable dt is {dt_max:.3g}"
            )
        if self.final_time / step > _MAX_STEPS:
            raise ValueError(
                f"dt {step:.3g} takes {self.final_time / step:.3g} steps to final_time "
                f"{self.final_time}; at most {_MAX_STEPS:g}: dt must be >= "
                f"{self.final_time / _MAX_STEPS:.3g}"
            )

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
            # non-dimensional, like the equation: not a CF time axis
            c["model_time"] = Coordinate(self.times(), "1", "time in non-dimensional units")
        return c

    def variables(self) -> dict[str, Variable]:
        return {
            "u0": Variable(("x",), "1", "initial velocity", role="input"),
            "u": Variable(("x",), "1", f"velocity at t = {self.final_time:g}"),
            "u_t": Variable(("model_time", "x"), "1", "velocity trajectory", optional=True),
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
