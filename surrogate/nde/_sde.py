"""Neural stochastic differential equations dy = μ_θ(t, y) dt + σ_θ(t, y) dW, on diffrax.

Kidger, Foster, Li & Lyons (2021), "Neural SDEs as infinite-dimensional GANs", and Kidger
(2021), "On neural differential equations", ch. 4. The Brownian motion is a diffrax
`VirtualBrownianTree` (Li et al. 2020, "Scalable gradients for SDEs"): it is a deterministic
function of its key, so that the forward and backward passes see the same path and an
ensemble is a `vmap` over keys.

Itô and Stratonovich SDEs with the same coefficients have different solutions when the
diffusion depends on the state (Kloeden & Platen 1992, §4.9): Euler–Maruyama converges to
the Itô solution, Heun's method and the midpoint rule to the Stratonovich one. The
interpretation is therefore declared, and the solver must agree with it; with additive noise
(σ independent of y) the two coincide and any SDE solver of diffrax will do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import lineax as lx
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from ._ode import check_solver_settings, check_state, check_times, raise_on_failure

_INTERPRETATIONS = {
    "ito": diffrax.AbstractItoSolver,
    "stratonovich": diffrax.AbstractStratonovichSolver,
}
_NOISE = ("diagonal", "general")


class _DiagonalDiffusion(eqx.Module):
    """σ(t, y) returned as a vector is the diagonal of the diffusion matrix (lineax operator,
    so diffrax multiplies it by dW elementwise instead of forming the d × d matrix)."""

    diffusion: Callable

    def __call__(self, t, y, args):
        return lx.DiagonalLinearOperator(self.diffusion(t, y, args))


@savable
class NeuralSDE(eqx.Module):
    """dy = drift(t, y, args) dt + diffusion(t, y, args) dW, Itô or Stratonovich.

    - `noise="diagonal"`: `diffusion` returns a vector of the state's shape `(d,)`, one
      independent Brownian motion per component;
    - `noise="general"`: it returns a `(d, noise_size)` matrix driven by `noise_size`
      Brownian motions.

    The default solver is Euler–Maruyama for `interpretation="ito"` and Heun for
    `"stratonovich"`, at a fixed step `dt0` (required then). Adaptive stepping: pass an
    adaptive SDE solver (e.g. `diffrax.SPaRK()`), a `diffrax.PIDController` and
    `brownian_tol`. `__call__(ts, y0, args, key=...)` is one sample path at `ts`;
    `sample(..., n=...)` an ensemble (a `vmap` over keys).
    """

    drift: Callable
    diffusion: Callable
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    interpretation: str = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    noise_size: int | None = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    brownian_tol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    additive: bool = eqx.field(static=True)

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable,
        *,
        interpretation: str = "ito",
        noise: str = "diagonal",
        noise_size: int | None = None,
        additive: bool = False,
        solver: diffrax.AbstractSolver | None = None,
        dt0: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None,
        brownian_tol: float | None = None,
        max_steps: int = 4096,
    ):
        if interpretation not in _INTERPRETATIONS:
            raise ValueError(
                f"interpretation must be one of {sorted(_INTERPRETATIONS)}, got {interpretation!r}"
            )
        if noise not in _NOISE:
            raise ValueError(f"noise must be one of {_NOISE}, got {noise!r}")
        if noise == "general" and (noise_size is None or noise_size < 1):
            raise ValueError(f"noise='general' needs noise_size >= 1, got {noise_size}")
        if noise == "diagonal" and noise_size is not None:
            raise ValueError(
                "noise='diagonal' has one Brownian motion per state component; "
                f"noise_size must not be given, got {noise_size}"
            )
        if solver is None:
            solver = diffrax.Euler() if interpretation == "ito" else diffrax.Heun()
        _check_interpretation(solver, interpretation, additive)
        controller = stepsize_controller
        if controller is None:
            controller = diffrax.ConstantStepSize()
        adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        check_solver_settings(solver, controller, adjoint, dt0, max_steps)
        if brownian_tol is None:
            if not isinstance(controller, diffrax.ConstantStepSize):
                raise ValueError(
                    "adaptive steps need brownian_tol (the Brownian tree's "
                    "resolution, well below the smallest step)"
                )
            # The tree resolves W down to intervals shorter than tol and interpolates inside
            # them by a Brownian bridge; tol = dt0/16 keeps that well inside one step.
            brownian_tol = float(dt0) / 16
        if not brownian_tol > 0:
            raise ValueError(f"brownian_tol must be positive, got {brownian_tol}")
        self.drift, self.diffusion = drift, diffusion
        self.solver, self.stepsize_controller, self.adjoint = solver, controller, adjoint
        self.interpretation, self.noise, self.noise_size = interpretation, noise, noise_size
        self.dt0 = None if dt0 is None else float(dt0)
        self.brownian_tol, self.max_steps = float(brownian_tol), int(max_steps)
        self.additive = bool(additive)

    def __call__(
        self,
        ts: Float[Array, " times"],
        y0: Float[Array, " d"],
        args: Any = None,
        *,
        key: PRNGKeyArray,
    ) -> Float[Array, "times d"]:
        ts, y0 = check_times(ts, "NeuralSDE"), check_state(y0, "NeuralSDE")
        if y0.ndim != 1:
            raise ValueError(f"NeuralSDE: y0 must be a vector (d,), got shape {y0.shape}")
        m = self._check_coefficients(ts, y0, args)
        bm = diffrax.VirtualBrownianTree(
            ts[0],
            ts[-1],
            tol=self.brownian_tol,
            shape=jax.ShapeDtypeStruct((m,), y0.dtype),
            key=key,
            levy_area=_levy_area(self.solver),
        )
        diffusion = (
            _DiagonalDiffusion(self.diffusion) if self.noise == "diagonal" else (self.diffusion)
        )
        terms = diffrax.MultiTerm(diffrax.ODETerm(self.drift), diffrax.ControlTerm(diffusion, bm))
        sol = diffrax.diffeqsolve(
            terms,
            self.solver,
            ts[0],
            ts[-1],
            self.dt0,
            y0,
            args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=False,
        )
        return raise_on_failure(sol, self.max_steps, "NeuralSDE")

    def sample(
        self,
        ts: Float[Array, " times"],
        y0: Float[Array, " d"],
        args: Any = None,
        *,
        n: int,
        key: PRNGKeyArray,
    ) -> Float[Array, "n times d"]:
        """`n` independent paths from the same `y0`: path i uses `split(key, n)[i]`."""
        if n < 1:
            raise ValueError(f"n must be a positive number of paths, got {n}")
        keys = jax.random.split(key, n)
        return jax.vmap(lambda k: self(ts, y0, args, key=k))(keys)

    def _check_coefficients(self, ts: Array, y0: Array, args: Any) -> int:
        """Trace-time shapes of drift and diffusion; returns the Brownian dimension."""
        d = y0.shape[0]
        for name, fn in (("drift", self.drift), ("diffusion", self.diffusion)):
            try:
                out = eqx.filter_eval_shape(fn, ts[0], y0, args)
            except (ValueError, TypeError) as e:
                raise ValueError(f"NeuralSDE {name} fails on a state of shape {y0.shape}: {e}")
            want = (d,) if name == "drift" or self.noise == "diagonal" else (d, self.noise_size)
            if getattr(out, "shape", None) != want:
                raise ValueError(
                    f"NeuralSDE {name} must return shape {want} ({self.noise} noise) for a "
                    f"state of shape {y0.shape}, got {getattr(out, 'shape', type(out).__name__)}"
                )
            if out.dtype != y0.dtype:
                raise ValueError(f"NeuralSDE {name} returns {out.dtype} for a {y0.dtype} state")
        return d if self.noise == "diagonal" else self.noise_size


def _check_interpretation(solver, interpretation: str, additive: bool) -> None:
    sde_solver = isinstance(solver, diffrax.AbstractItoSolver | diffrax.AbstractStratonovichSolver)
    if not sde_solver:
        raise ValueError(
            f"{type(solver).__name__} is not an SDE solver; use e.g. diffrax.Euler() (Itô) or "
            "diffrax.Heun() (Stratonovich)"
        )
    if not additive and not isinstance(solver, _INTERPRETATIONS[interpretation]):
        other = "stratonovich" if interpretation == "ito" else "ito"
        raise ValueError(
            f"{type(solver).__name__} converges to the {other} solution but "
            f"interpretation={interpretation!r}; use "
            f"{'diffrax.Euler() or diffrax.ItoMilstein()' if interpretation == 'ito' else 'diffrax.Heun() or diffrax.StratonovichMilstein()'}"  # noqa: E501
            ", or additive=True if the diffusion does not depend on the state"
        )


def _levy_area(solver) -> type:
    """The cheapest Brownian path information the solver needs (SRK solvers need more)."""
    need = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    for cls in (
        diffrax.BrownianIncrement,
        diffrax.SpaceTimeLevyArea,
        diffrax.SpaceTimeTimeLevyArea,
    ):
        if issubclass(cls, need):
            return cls
    raise ValueError(f"{type(solver).__name__} needs Lévy area {need}, which is not supported")
