"""Neural ordinary differential equations dy/dt = f_θ(t, y, args) solved with diffrax.

Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural ordinary differential equations":
the vector field is a network and the solution at the output times is differentiated
either through the solver's operations ("discretise-then-optimise",
`diffrax.RecursiveCheckpointAdjoint`, exact gradients of the discrete solution with
checkpointing) or by solving the continuous adjoint equations backwards in time
("optimise-then-discretise", `diffrax.BacksolveAdjoint`, O(1) memory, gradients accurate to
the solver's tolerance). Kidger (2021), "On neural differential equations", §5, compares
the two; the first is the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._serialization import savable


@savable
class MLPField(eqx.Module):
    """An MLP vector field f(t, y) = W_L σ(… σ(W_1 y + b_1) …) + b_L on the last axis of y.

    Leading axes of `y` are batch axes, so one field serves both one sample (`y` of shape
    `(state,)`) and a batch solved as one ODE (`y` of shape `(batch, state)`), as
    torchdiffeq does. Weights start as `torch.nn.Linear`'s, U(−1/√fan_in, 1/√fan_in);
    `zero_last=True` starts the output at zero, which is what a learned correction beside
    known physics wants (the hybrid model then starts from the physics alone).
    """

    weights: list[Array]
    biases: list[Array]
    state_size: int = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        state_size: int,
        width: int,
        depth: int,
        *,
        activation: Callable[[Array], Array] = jnp.tanh,
        time_dependent: bool = False,
        zero_last: bool = False,
        dtype: Any = None,
        key: PRNGKeyArray,
    ):
        if state_size < 1 or width < 1 or depth < 0:
            raise ValueError(
                f"need state_size >= 1, width >= 1, depth >= 0; got {state_size}, {width}, {depth}"
            )
        dtype = jnp.float32 if dtype is None else dtype
        sizes = [state_size + int(time_dependent)] + [width] * depth + [state_size]
        keys = jax.random.split(key, len(sizes) - 1)
        weights, biases = [], []
        for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            bound = 1.0 / math.sqrt(n_in)
            kw, kb = jax.random.split(k)
            scale = 0.0 if (zero_last and i == len(sizes) - 2) else 1.0
            weights.append(scale * jax.random.uniform(kw, (n_out, n_in), dtype, -bound, bound))
            biases.append(scale * jax.random.uniform(kb, (n_out,), dtype, -bound, bound))
        self.weights, self.biases = weights, biases
        self.state_size = state_size
        self.time_dependent = time_dependent
        self.activation = activation

    # the constructor's sizes, read back from the weights (for `surrogate.save`); zero_last
    # only chose initial values, which a loaded file replaces
    @property
    def width(self) -> int:
        return int(self.weights[0].shape[0]) if len(self.weights) > 1 else 1

    @property
    def depth(self) -> int:
        return len(self.weights) - 1

    @property
    def zero_last(self) -> bool:
        return False

    def __call__(
        self, t: ArrayLike, y: Float[Array, "*batch state"], args: Any = None
    ) -> Float[Array, "*batch state"]:
        if y.ndim < 1 or y.shape[-1] != self.state_size:
            raise ValueError(
                f"MLPField expects a state of shape (..., {self.state_size}), got {y.shape}"
            )
        h = y
        if self.time_dependent:
            tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
            h = jnp.concatenate([tt, y], axis=-1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            # explicit broadcast of the bias over batch axes (strict rank promotion)
            h = h @ w.T + b.reshape((1,) * (h.ndim - 1) + b.shape)
            if i < last:
                h = self.activation(h)
        return h


@savable
class NeuralODE(eqx.Module):
    """Solve dy/dt = field(t, y, args) from `y0` at `ts[0]` and return y at every time in `ts`.

    `field` is any callable `(t, y, args) -> dy/dt` (usually an `eqx.Module`: `MLPField`,
    `HybridField`, ...). The solver, the step-size controller and the adjoint are diffrax
    objects chosen by the user:

    - non-stiff (default): `Tsit5()` with `PIDController(rtol=1e-5, atol=1e-5)`;
    - stiff: `solver=diffrax.Kvaerno5()` with a `PIDController`, in float64 by passing
      float64 `y0` and field parameters under `jax.enable_x64(True)`;
    - memory-light gradients: `adjoint=diffrax.BacksolveAdjoint()`.

    `ts` may be irregular; they are the `SaveAt(ts=...)` output times. `__call__` takes one
    sample (`jax.vmap` over samples); the state may itself be a batch solved as one system.
    When the solver fails (e.g. `max_steps` reached) the call raises an
    `equinox.EquinoxRuntimeError` saying why, also under `jit` and `vmap`.
    """

    field: Callable
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        field: Callable,
        *,
        solver: diffrax.AbstractSolver | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None,
        dt0: float | None = None,
        max_steps: int = 4096,
    ):
        if not callable(field):
            raise ValueError(f"field must be a callable (t, y, args) -> dy/dt, got {field!r}")
        solver = diffrax.Tsit5() if solver is None else solver
        if stepsize_controller is None:
            stepsize_controller = diffrax.PIDController(
                rtol=1e-5 if rtol is None else rtol, atol=1e-5 if atol is None else atol
            )
        elif rtol is not None or atol is not None:
            raise ValueError(
                "give either rtol/atol or a stepsize_controller, not both: the controller "
                "carries its own tolerances"
            )
        self.field = field
        self.solver, self.stepsize_controller = solver, stepsize_controller
        self.adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        self.dt0 = None if dt0 is None else float(dt0)
        self.max_steps = int(max_steps)
        check_solver_settings(self.solver, self.stepsize_controller, self.adjoint, dt0, max_steps)

    @property
    def rtol(self) -> None:  # carried by stepsize_controller
        return None

    @property
    def atol(self) -> None:
        return None

    def solve(
        self, ts: Float[Array, " times"], y0: Float[Array, "*state"], args: Any = None
    ) -> diffrax.Solution:
        """The diffrax `Solution` (ys, stats, result code) without raising on failure."""
        ts, y0 = check_times(ts, "NeuralODE"), check_state(y0, "NeuralODE")
        check_field(self.field, ts, y0, args, "NeuralODE field")
        return diffrax.diffeqsolve(
            diffrax.ODETerm(self.field),
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

    def __call__(
        self, ts: Float[Array, " times"], y0: Float[Array, "*state"], args: Any = None
    ) -> Float[Array, "times ..."]:
        """The states at `ts`, shape `(times, *y0.shape)`."""
        return raise_on_failure(self.solve(ts, y0, args), self.max_steps, "NeuralODE")


# ---- checks shared with the SDE ---------------------------------------------------------


def _concrete(x: Array) -> bool:
    """Whether a value is known at trace time (then bad input is a ValueError right away)."""
    return not isinstance(x, jax.core.Tracer)


def check_solver_settings(solver, controller, adjoint, dt0, max_steps) -> None:
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver (e.g. diffrax.Tsit5()), got {solver!r}")
    if not isinstance(controller, diffrax.AbstractStepSizeController):
        raise ValueError(
            f"stepsize_controller must be a diffrax controller (e.g. diffrax.PIDController), "
            f"got {controller!r}"
        )
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise ValueError(
            f"adjoint must be a diffrax adjoint (RecursiveCheckpointAdjoint, BacksolveAdjoint, "
            f"...), got {adjoint!r}"
        )
    if isinstance(controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("a ConstantStepSize controller needs a step: pass dt0 > 0")
    if dt0 is not None and not dt0 > 0:
        raise ValueError(f"dt0 must be positive (times increase), got {dt0}")
    if isinstance(controller, diffrax.AbstractAdaptiveStepSizeController) and not isinstance(
        solver, diffrax.AbstractAdaptiveSolver
    ):
        raise ValueError(
            f"{type(solver).__name__} has no error estimate, so it cannot be used with the "
            f"adaptive {type(controller).__name__}; pass stepsize_controller="
            "diffrax.ConstantStepSize() and dt0, or an adaptive solver"
        )
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps}")


def check_times(ts: ArrayLike, who: str) -> Array:
    """Output times: 1-D, at least two, finite and strictly increasing."""
    with jax.ensure_compile_time_eval():
        ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"{who}: ts must be a 1-D array of at least 2 times, got shape {ts.shape}")
    msg = f"{who}: ts must be finite and strictly increasing"
    with jax.ensure_compile_time_eval():  # evaluate now when ts is known at trace time
        if not jnp.issubdtype(ts.dtype, jnp.floating):
            ts = ts.astype(jnp.result_type(float))
        bad = jnp.any(~jnp.isfinite(ts)) | jnp.any(jnp.diff(ts) <= 0)
    if _concrete(bad):
        if bool(bad):
            raise ValueError(f"{msg}, got {ts}")
        return ts
    return eqx.error_if(ts, bad, msg)


def check_state(y0: ArrayLike, who: str) -> Array:
    """Initial state: a floating-point array with finite entries."""
    with jax.ensure_compile_time_eval():
        y0 = jnp.asarray(y0)
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise ValueError(f"{who}: y0 must be a floating-point array, got dtype {y0.dtype}")
    with jax.ensure_compile_time_eval():
        bad = jnp.any(~jnp.isfinite(y0))
    if _concrete(bad):
        if bool(bad):
            raise ValueError(f"{who}: y0 must be finite, got {y0}")
        return y0
    return eqx.error_if(y0, bad, f"{who}: y0 must be finite")


def check_field(field: Callable, ts: Array, y0: Array, args: Any, who: str) -> None:
    """Trace-time check that `field(t, y0, args)` has the shape and dtype of `y0`."""
    try:
        out = eqx.filter_eval_shape(field, ts[0], y0, args)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{who} cannot be applied to a state of shape {y0.shape} ({y0.dtype}): {e}"
        ) from e
    if not hasattr(out, "shape") or out.shape != y0.shape:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{who} returns shape {shape} for a state of shape {y0.shape}")
    if out.dtype != y0.dtype:
        raise ValueError(
            f"{who} returns {out.dtype} for a {y0.dtype} state; give the state and the "
            "field's parameters the same dtype"
        )


def raise_on_failure(sol: diffrax.Solution, max_steps: int, who: str) -> Array:
    """`sol.ys`, with a readable runtime error if diffrax's result code is not success."""
    ys = eqx.error_if(
        sol.ys,
        sol.result == diffrax.RESULTS.max_steps_reached,
        f"{who}: the solver took max_steps={max_steps} steps before reaching ts[-1]; raise "
        "max_steps, loosen rtol/atol, or use a stiff solver (diffrax.Kvaerno5()) if the "
        "problem is stiff",
    )
    return eqx.error_if(
        ys,
        sol.result != diffrax.RESULTS.successful,
        f"{who}: the solver failed before ts[-1] (step size below dtmin, or the implicit "
        "solver's nonlinear iteration did not converge); check the state for NaN/inf and "
        "the tolerances",
    )
