"""The FNO paper's 2-D Navier-Stokes benchmark: vorticity history ↦ its continuation.

Li et al. (2021) §5.3: ∂ω/∂t + u·∇ω = νΔω + f on the unit torus,
f = 0.1 (sin 2π(x+y) + cos 2π(x+y)), ω0 ~ 7^(3/2)(−Δ + 49I)^(−2.5), solved on 256² and
stored on 64² every time unit. Task: the first `n_in` (10) snapshots → all the following
ones at once, as channels (`model_input`/`model_target`); the paper's FNO-2D instead steps
one snapshot at a time, which a user can do by slicing `w` themselves.
Reference: `surrogate.solvers.navier_stokes`.

The default step is 1e-3 instead of the paper's 1e-4: against a dt = 2.5e-4 float64
reference at t = 1 its relative L2 error is 4e-7 in float32, and it is 10× cheaper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..metrics import field_metrics
from ..solvers.navier_stokes import NavierStokesSolver, initial_vorticity
from ._base import Coordinate, Problem, Variable


class NavierStokes(Problem):
    """2-D incompressible vorticity on the torus: learn ω(t ≤ n_in) ↦ ω(t > n_in).

    Options: `viscosity` (1e-3, 1e-4 or 1e-5 in the paper), `final_time` (50, 30, 20 there),
    `resolution` (stored grid), `solve_resolution`, `dt`, `n_in` (input snapshots).
    """

    viscosity: float = 1e-3
    final_time: float = 50.0
    resolution: int = 64
    solve_resolution: int = 256
    dt: float = 1e-3
    n_in: int = 10

    name: ClassVar[str] = "navier_stokes"
    model_inputs: ClassVar[tuple[str, ...]] = ("w",)
    model_targets: ClassVar[tuple[str, ...]] = ("w",)

    def __check_init__(self):
        # a stored grid coarser than 8 points keeps at most 2 dealiased modes per axis
        if not 8 <= self.resolution <= self.solve_resolution:
            raise ValueError(
                f"resolution must be in [8, solve_resolution = {self.solve_resolution}], "
                f"got {self.resolution}"
            )
        if not 8 <= self.solve_resolution <= 4096:
            raise ValueError(f"solve_resolution must be in [8, 4096], got {self.solve_resolution}")
        if self.solve_resolution % self.resolution:
            raise ValueError(
                f"resolution {self.resolution} must divide solve_resolution {self.solve_resolution}"
            )
        if not 0 <= self.viscosity <= 1:
            raise ValueError(f"viscosity must be in [0, 1], got {self.viscosity}")
        # snapshots are stored every time unit
        if not (2 <= self.final_time <= 10_000 and float(self.final_time).is_integer()):
            raise ValueError(
                f"final_time must be a whole number of time units in [2, 10000], "
                f"got {self.final_time}"
            )
        if not 1 <= self.n_in < self.final_time:
            raise ValueError(f"n_in must be in [1, final_time), got {self.n_in}")
        if not 0 < self.dt <= 1:
            raise ValueError(f"dt must be positive and <= 1 (the snapshot interval), got {self.dt}")
        if self.final_time / self.dt > 1e8:
            raise ValueError(
                f"dt {self.dt:g} takes {self.final_time / self.dt:.3g} steps to final_time "
                f"{self.final_time:g}; at most 1e8: dt must be >= {self.final_time / 1e8:.3g}"
            )

    @property
    def solver(self) -> NavierStokesSolver:
        return NavierStokesSolver(
            self.solve_resolution,
            self.viscosity,
            t_final=self.final_time,
            dt=self.dt,
            n_out=self.resolution,
        )

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        return {"w0": initial_vorticity(key, self.solve_resolution)}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        _, snapshots = self.solver(inputs["w0"])
        return {"w": snapshots}

    def store_inputs(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        step = self.solve_resolution // self.resolution
        return {"w0": inputs["w0"][..., ::step, ::step]}

    def model_input(self, data: Mapping[str, Array]) -> Array:
        """The first `n_in` snapshots as channels: (sample, n_in, x, y)."""
        return jnp.asarray(data["w"])[:, : self.n_in]

    def model_target(self, data: Mapping[str, Array]) -> Array:
        """The remaining snapshots as channels: (sample, T − n_in, x, y)."""
        return jnp.asarray(data["w"])[:, self.n_in :]

    def coords(self) -> dict[str, Coordinate]:
        v = np.arange(self.resolution) / self.resolution
        n_t = round(self.final_time)
        return {
            # non-dimensional, like the equation: not a CF time axis
            "model_time": Coordinate(
                np.arange(1, n_t + 1, dtype=np.float64), "1", "time in non-dimensional units"
            ),
            "x": Coordinate(v, "1", "x position on the unit torus", axis="X"),
            "y": Coordinate(v, "1", "y position on the unit torus", axis="Y"),
        }

    def variables(self) -> dict[str, Variable]:
        return {
            "w0": Variable(("x", "y"), "1", "initial vorticity", role="input"),
            "w": Variable(("model_time", "x", "y"), "1", "vorticity"),
        }

    def solver_settings(self) -> dict:
        return {
            "method": "pseudo-spectral, Crank-Nicolson diffusion, Heun advection, 2/3 dealiasing",
            "points": self.solve_resolution,
            "dt": self.dt,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        return field_metrics(pred, true)
