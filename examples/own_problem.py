"""Your own problem, end to end: the 1-D heat equation -> data -> FNO, in Python and CLI.

    python examples/own_problem.py --out heat_run      # about a minute on 2 CPU cores

u_t = κ u_xx on [0, 1) periodic; a surrogate learns u0 ↦ u(·, final_time). The command line
finds this problem as module:Class (`own_problem:Heat`): put this folder on the Python path,
    PYTHONPATH=examples surrogate generate own_problem:Heat --n 64 --seed 0 --out heat.nc
"""

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import surrogate
from surrogate.cli import main as cli
from surrogate.metrics import field_metrics, relative_l2_per_sample
from surrogate.problems import Coordinate, Problem, Variable


def crank_nicolson(u0: Float[Array, " n"], kappa: float, t: float, n_steps: int) -> Array:
    """Central differences in x, Crank-Nicolson in t, error O(dx² + dt²): with r = κ dt/dx²,
    (I - r/2 D) u^{m+1} = (I + r/2 D) u^m, D u_j = u_{j-1} - 2 u_j + u_{j+1}. D is circulant,
    its eigenvectors are Fourier modes (eigenvalues -4 sin²(πk/n)): the solve is a division."""
    n = u0.shape[-1]
    r = kappa * (t / n_steps) * n**2
    lhs = 1 + 2 * r * jnp.sin(jnp.pi * jnp.fft.rfftfreq(n, 1.0 / n).astype(u0.dtype) / n) ** 2

    def step(u, _):
        rhs = u + 0.5 * r * (jnp.roll(u, 1) - 2 * u + jnp.roll(u, -1))
        return jnp.fft.irfft(jnp.fft.rfft(rhs) / lhs, n=n), None

    return jax.lax.scan(step, u0, None, length=n_steps)[0]


def exact(u0: Float[Array, " n"], kappa: float, t: float) -> Array:
    """The exact solution for u0's trigonometric interpolant: mode k decays as e^{-κ(2πk)²t}."""
    k = 2 * jnp.pi * jnp.fft.rfftfreq(u0.shape[-1], 1.0 / u0.shape[-1]).astype(u0.dtype)
    return jnp.fft.irfft(jnp.fft.rfft(u0) * jnp.exp(-kappa * k**2 * t), n=u0.shape[-1])


class Heat(Problem):
    """1-D periodic heat equation u_t = κ u_xx: learn u0 ↦ u(·, final_time)."""

    diffusivity: float = 0.01
    final_time: float = 1.0
    resolution: int = 128
    n_steps: int = 100

    name: ClassVar[str] = "heat"
    model_inputs: ClassVar[tuple[str, ...]] = ("u0",)
    model_targets: ClassVar[tuple[str, ...]] = ("u",)

    def __check_init__(self):
        if self.resolution < 4 or self.n_steps < 1 or not self.diffusivity > 0:
            raise ValueError(f"need resolution >= 4, n_steps >= 1, κ > 0: {self.options()}")

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        # a Gaussian random field: by default the FNO paper's Burgers initial conditions
        return {"u0": surrogate.fields.grf_1d(key, self.resolution)}

    def solve(self, inputs: dict[str, Array]) -> dict[str, Array]:
        u0 = inputs["u0"]
        if u0.shape != (self.resolution,):
            raise ValueError(f"u0 should have shape ({self.resolution},), got {u0.shape}")
        return {"u": crank_nicolson(u0, self.diffusivity, self.final_time, self.n_steps)}

    def coords(self) -> dict[str, Coordinate]:
        x = np.arange(self.resolution) / self.resolution
        return {"x": Coordinate(x, "1", "position on the periodic interval", axis="X")}

    def variables(self) -> dict[str, Variable]:
        return {
            "u0": Variable(("x",), "1", "initial temperature", role="input"),
            "u": Variable(("x",), "1", f"temperature at t = {self.final_time:g}"),
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        # heat dissipates the energy ∫u² dx: how well does a surrogate get what is left?
        e_pred, e_true = (jnp.sum(a**2, axis=(1, 2)) for a in (pred, true))
        gap = float(jnp.mean(jnp.abs(e_pred - e_true) / e_true))
        return {**field_metrics(pred, true), "energy_error": gap}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="heat_run")
    ap.add_argument("--n", type=int, default=400, help="samples (train/valid/test 80/10/10%%)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args(argv)
    out, t0 = Path(args.out), time.perf_counter()
    # as the CLI does it: run as a script, a plain `Heat` is "__main__:Heat" to other processes
    problem = surrogate.problems.get("own_problem:Heat", resolution=args.resolution)
    kappa, t, n = problem.diffusivity, problem.final_time, problem.resolution

    print("[1/4] the solver against the exact solution (in float64: float32 rounds at 1e-5)")
    with jax.enable_x64(True):
        u0 = problem.sample_inputs(jax.random.key(42), 4)["u0"].astype(jnp.float64)
        u = jax.jit(jax.vmap(problem.solve))({"u0": u0})["u"]
        errors = relative_l2_per_sample(u, jax.vmap(lambda a: exact(a, kappa, t))(u0))
        # u0 (its spectrum zero-padded) with dx and dt halved: O(dx² + dt²) means error / 4
        u0_fine = 2 * jnp.fft.irfft(jnp.fft.rfft(u0[0]), n=2 * n)
        fine = jax.jit(Heat(resolution=2 * n, n_steps=2 * problem.n_steps).solve)({"u0": u0_fine})
        error_fine = relative_l2_per_sample(fine["u"][None], exact(u0_fine, kappa, t)[None])
        error, order = float(jnp.max(errors)), float(jnp.log2(errors[0] / error_fine[0]))
    print(f"  relative L2 error {error:.2e}; halving dx and dt: observed order {order:.2f}")

    print(f"[2/4] {args.n} samples, an FNO trained {args.epochs} epochs (Python API)")
    ds = surrogate.generate(problem, args.n, seed=0)
    data = surrogate.data.write_dataset(ds, out / "heat.nc")
    config = {
        "data": {"problem": "own_problem:Heat"},  # so that training reports `Heat.metrics`
        "model": {"type": "fno", "modes": [12], "width": 32},
        "training": {"epochs": args.epochs, "learning_rate": 3e-3, "schedule": "cosine"},
        "output": {"dir": str(out / "python")},
    }
    metrics = surrogate.train(data, config, progress=False)["test_metrics"]
    test = ds.isel(sample=slice(int(0.9 * args.n), None))
    baseline = float(jnp.mean(relative_l2_per_sample(test["u0"].values, test["u"].values)))
    print(f"  test relative L2 {metrics['relative_l2']:.4f} (u0 itself: {baseline:.4f})")

    print("[3/4] the same through the command line, tested on new samples (seed 1)")
    config["data"]["path"], config["output"]["dir"] = str(data), str(out / "cli")
    toml = ("".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items()) for d in config.values())
    (out / "cfg.toml").write_text("".join(f"[{name}]\n{body}" for name, body in zip(config, toml)))
    o = shlex.quote(str(out))
    for command in (
        f"generate own_problem:Heat --n {max(4, args.n // 10)} --seed 1 --resolution {n} "
        f"--out {o}/heat_test.nc --quiet",
        f"train {o}/cfg.toml --quiet",
        f"evaluate {o}/cli/model.eqx {o}/heat_test.nc --json {o}/cli_metrics.json",
    ):
        print(f"$ PYTHONPATH=examples surrogate {command}", flush=True)
        if code := cli(shlex.split(command)):
            raise SystemExit(code)
    print(f"[4/4] done in {time.perf_counter() - t0:.1f} s; outputs in {out}/")
    return {"error": error, "order": order, "metrics": metrics, "baseline": baseline}


if __name__ == "__main__":
    main()
