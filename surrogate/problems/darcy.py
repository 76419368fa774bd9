"""The FNO paper's 2-D Darcy benchmark: coefficient a ↦ pressure u.

Li et al. (2021) §5.2: −∇·(a∇u) = 1 on the unit square, u = 0 on the boundary, a = 12 where
a GRF with covariance (−Δ + 9I)^(−2) is ≥ 0 and 3 elsewhere; solved on 421² and subsampled
to 85, 141, 211 (every 5th, 3rd, 2nd vertex). Reference: `surrogate.solvers.darcy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..metrics import field_metrics
from ..solvers.darcy import DarcySolver, darcy_coefficient, subsample_vertex
from ._base import Coordinate, Problem, Variable


class Darcy(Problem):
    """Steady Darcy flow: learn the coefficient-to-solution map a ↦ u.

    Options: `resolution` (stored vertices per axis), `solve_resolution` (solver vertices;
    `solve_resolution − 1` must be a multiple of `resolution − 1`), the coefficient's
    `high`/`low` values and GRF `alpha`/`tau`, and the CG tolerance `rtol` (0 = default).
    """

    resolution: int = 85
    solve_resolution: int = 421
    high: float = 12.0
    low: float = 3.0
    alpha: float = 2.0
    tau: float = 3.0
    rtol: float = 0.0

    name: ClassVar[str] = "darcy"
    model_inputs: ClassVar[tuple[str, ...]] = ("a",)
    model_targets: ClassVar[tuple[str, ...]] = ("u",)

    def __check_init__(self):
        if not 4 <= self.resolution <= self.solve_resolution <= 4097:
            raise ValueError(
                f"need 4 <= resolution <= solve_resolution <= 4097, got {self.resolution}, "
                f"{self.solve_resolution}"
            )
        for name in ("high", "low"):
            if not 0 < getattr(self, name) <= 1e6:
                raise ValueError(f"{name} must be positive and <= 1e6, got {getattr(self, name)}")
        # the GRF's pointwise variance is finite in 2-D for alpha > 1
        if not 1 < self.alpha <= 10:
            raise ValueError(f"alpha must be > 1 and <= 10, got {self.alpha}")
        if not 0 < self.tau <= 1000:
            raise ValueError(f"tau must be positive and <= 1000, got {self.tau}")
        if not 0 <= self.rtol < 1:
            raise ValueError(f"rtol must be in [0, 1) (0 = default), got {self.rtol}")
        if (self.solve_resolution - 1) % (self.resolution - 1):
            raise ValueError(
                f"resolution {self.resolution} is not a subsampling of the "
                f"{self.solve_resolution}-point vertex grid (resolution − 1 must divide "
                f"{self.solve_resolution - 1})"
            )

    @property
    def solver(self) -> DarcySolver:
        return DarcySolver(self.solve_resolution, rtol=self.rtol or None)

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        a = darcy_coefficient(
            key, self.solve_resolution, high=self.high, low=self.low, alpha=self.alpha, tau=self.tau
        )
        return {"a": a}

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        return {"u": subsample_vertex(self.solver(inputs["a"]), self.resolution)}

    def store_inputs(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        step = (self.solve_resolution - 1) // (self.resolution - 1)
        return {"a": inputs["a"][..., ::step, ::step]}

    def coords(self) -> dict[str, Coordinate]:
        v = np.linspace(0.0, 1.0, self.resolution)
        return {
            "x": Coordinate(v, "1", "x position on the unit square", axis="X"),
            "y": Coordinate(v, "1", "y position on the unit square", axis="Y"),
        }

    def variables(self) -> dict[str, Variable]:
        return {
            "a": Variable(("x", "y"), "1", "diffusion coefficient", role="input"),
            "u": Variable(("x", "y"), "1", "solution (pressure)"),
        }

    def solver_settings(self) -> dict:
        s = self.solver
        return {
            "method": "five-point FD, harmonic face coefficients, fast-Poisson-"
            "preconditioned CG (lineax)",
            "points": s.n,
            "rtol": s.rtol if s.rtol is not None else "auto",
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        return field_metrics(pred, true)
