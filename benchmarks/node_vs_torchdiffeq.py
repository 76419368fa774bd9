"""Neural ODE solve + backpropagation: surrogate.nde (diffrax) against torchdiffeq.

Same ODE in both: an MLP vector field 2 → 64 → 64 → 2 (tanh) with the same weights (the
JAX initial weights are exported as numpy to the peer), Dopri5 with rtol = atol = 1e-5, a
batch of 256 states, 10 output times on [0, 1], loss = mean(y²) over the outputs, gradient
with respect to the weights, float32. Like is compared with like:

- "batch as one ODE": the field applied to the (256, 2) state as one system with one
  adaptive step size (torchdiffeq's way); gradients through the solver's operations
  (diffrax `RecursiveCheckpointAdjoint` / `torchdiffeq.odeint`) and through the continuous
  adjoint (`BacksolveAdjoint` / `odeint_adjoint`);
- "per sample": `jax.vmap` over the 256 states, each with its own adaptive steps (no
  torchdiffeq counterpart; reported on its own).

The peer runs in its own interpreter (`.venv-peers`, `make bench-peers`) as a subprocess
that takes timing requests on stdin, so that JAX and torch blocks alternate and both see
the same machine load (the machine is shared), with a short idle pause between blocks.
Both run single-threaded by default (torch is also timed with 2 threads; `--xla-threads`
lets XLA use all cores). Times are warm, the median of all repeats; process CPU times are
reported beside them. Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# XLA's CPU runtime splits ops across cores; these ops are small (a 256 × 64 state) and the
# 2 cores are shared, so by default JAX runs single-threaded like the torch peer it is
# compared with. XLA reads the flag when jax starts, hence before the imports below.
if "--xla-threads" not in sys.argv:
    os.environ["XLA_FLAGS"] = " ".join(
        [
            os.environ.get("XLA_FLAGS", ""),
            "--xla_cpu_multi_thread_eigen=false",
            "intra_op_parallelism_threads=1",
        ]
    ).strip()

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from surrogate.nde import MLPField, NeuralODE

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "state": 2,
    "width": 64,
    "depth": 2,
    "activation": "tanh",
    "solver": "dopri5",
    "rtol": 1e-5,
    "atol": 1e-5,
    "batch": 256,
    "times": 10,
    "t1": 1.0,
    "loss": "mean(y**2)",
    "dtype": "float32",
    "seed": 0,
}

PEER = r"""
import json, sys, time
import numpy as np
import torch
import torchdiffeq

cfg = json.loads(sys.argv[1])
data = np.load(cfg["data"])
torch.set_num_threads(cfg["threads"])


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["depth"] + 1):
            w = torch.from_numpy(data[f"w{i}"])
            layer = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(torch.from_numpy(data[f"b{i}"]))
            self.layers.append(layer)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        for layer in self.layers[:-1]:
            y = torch.tanh(layer(y))
        return self.layers[-1](y)


field = Field()
y0, ts = torch.from_numpy(data["y0"]), torch.from_numpy(data["ts"])
opts = dict(method="dopri5", rtol=cfg["rtol"], atol=cfg["atol"])


def run(variant):
    field.zero_grad(set_to_none=True)
    if variant == "forward":
        with torch.no_grad():
            return torch.mean(torchdiffeq.odeint(field, y0, ts, **opts) ** 2)
    solve = torchdiffeq.odeint_adjoint if variant == "backsolve" else torchdiffeq.odeint
    extra = {"adjoint_params": tuple(field.parameters())} if variant == "backsolve" else {}
    loss = torch.mean(solve(field, y0, ts, **opts, **extra) ** 2)
    loss.backward()
    return loss.detach()


info = {"torch": torch.__version__, "nfe": {}}
for variant in ("forward", "direct", "backsolve"):
    field.nfe = 0
    loss = run(variant)
    info["nfe"][variant] = field.nfe
    if variant == "direct":
        info["loss"] = float(loss)
        info["grads"] = [p.grad.numpy().tolist() for p in field.parameters()]
print(json.dumps(info), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    times = []
    for _ in range(req["repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        run(req["variant"])
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    print(json.dumps(times), flush=True)
"""


class Peer:
    """torchdiffeq in its own interpreter with a fixed number of threads (set before torch
    starts: OpenMP's pool cannot be resized cleanly), answering timing requests."""

    def __init__(self, python: str, data: str, threads: int):
        cfg = dict(CONFIG, data=data, threads=threads)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(
            [python, "-c", PEER, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.threads = threads
        self.info = json.loads(self.proc.stdout.readline())

    def time(self, variant: str, repeats: int) -> list[tuple[float, float]]:
        self.proc.stdin.write(json.dumps({"variant": variant, "repeats": repeats}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def build(key):
    field = MLPField(CONFIG["state"], CONFIG["width"], CONFIG["depth"], key=key)
    ky = jax.random.fold_in(key, 1)
    y0 = jax.random.normal(ky, (CONFIG["batch"], CONFIG["state"]), jnp.float32)
    ts = jnp.linspace(0.0, CONFIG["t1"], CONFIG["times"], dtype=jnp.float32)
    return field, y0, ts


def jax_variants(field, y0, ts, max_steps: int):
    """name -> (jitted function of the field's parameters, adjoint) for each variant."""
    params, static = eqx.partition(field, eqx.is_inexact_array)

    def model(p, adjoint=diffrax.RecursiveCheckpointAdjoint()):
        return NeuralODE(
            eqx.combine(p, static),
            solver=diffrax.Dopri5(),
            rtol=CONFIG["rtol"],
            atol=CONFIG["atol"],
            adjoint=adjoint,
            max_steps=max_steps,
        )

    def as_one(p, adjoint=diffrax.RecursiveCheckpointAdjoint()):
        return jnp.mean(model(p, adjoint)(ts, y0) ** 2)

    def per_sample(p):
        return jnp.mean(jax.vmap(model(p), in_axes=(None, 0))(ts, y0) ** 2)

    fns = {
        "forward": jax.jit(as_one),
        "direct": jax.jit(jax.value_and_grad(as_one)),
        "backsolve": jax.jit(jax.value_and_grad(lambda p: as_one(p, diffrax.BacksolveAdjoint()))),
        "per_sample_forward": jax.jit(per_sample),
        "per_sample_direct": jax.jit(jax.value_and_grad(per_sample)),
    }
    stats = {}
    m = model(params)
    sol = m.solve(ts, y0)
    stats["as_one"] = {
        k: int(sol.stats[k]) for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")
    }
    per = jax.vmap(m.solve, in_axes=(None, 0))(ts, y0).stats
    stats["per_sample"] = {
        "mean_num_steps": float(jnp.mean(per["num_steps"])),
        "max_num_steps": int(jnp.max(per["num_steps"])),
    }
    return params, fns, stats


def time_jax(fn, params, repeats: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of each call. CPU time, all threads of the process, is
    what a call costs whatever else runs on the machine; wall time is what a user waits."""
    out = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(params))
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


# torch variants timed at each thread count; odeint_adjoint (slow) only single-threaded
TORCH_RUNS = {1: ("forward", "direct", "backsolve"), 2: ("forward", "direct")}
SETTLE_S = 0.2  # idle time between blocks, so that neither side's spinning threads linger


def median_ms(pairs: list, which: int) -> float:
    return 1e3 * float(np.median([p[which] for p in pairs]))


def export(field, y0, ts, path: str) -> None:
    """The JAX initial weights and inputs as numpy, for the peer to solve the same ODE."""
    arrays = {"y0": np.asarray(y0), "ts": np.asarray(ts)}
    for i, (w, b) in enumerate(zip(field.weights, field.biases, strict=True)):
        arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
    np.savez(path, **arrays)


def grad_difference(grads, torch_grads) -> float:
    """Largest relative difference, layer by layer, between our and torch's gradients."""
    ours = jax.tree_util.tree_leaves(grads)  # all weights then all biases
    half = len(ours) // 2
    ours = [x for pair in zip(ours[:half], ours[half:], strict=True) for x in pair]
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
        for a, b in zip(ours, torch_grads, strict=True)
    )


def start_peers(python: str, data: str) -> tuple[dict[int, Peer], str | None]:
    if not Path(python).exists():
        return {}, f"no peer interpreter at {python} (run `make bench-peers`)"
    peers = {}
    try:
        for threads, variants in TORCH_RUNS.items():
            peers[threads] = Peer(python, data, threads)
            for variant in variants:
                peers[threads].time(variant, 2)  # warm-up
    except Exception as e:  # the peer is optional: its failure is reported, not fatal
        for peer in peers.values():
            peer.proc.kill()
        return {}, f"{type(e).__name__}: {e}"
    return peers, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--max-steps", type=int, default=4096)
    parser.add_argument("--xla-threads", action="store_true", help="let XLA use all cores")
    args = parser.parse_args()
    blocks, repeats = (3, 5) if args.quick else (8, 15)
    load_before = os.getloadavg()

    field, y0, ts = build(jax.random.PRNGKey(CONFIG["seed"]))
    params, fns, stats = jax_variants(field, y0, ts, args.max_steps)
    times = {name: [] for name in fns}
    for fn in fns.values():  # compile and warm up
        time_jax(fn, params, 3)
    peer_times = {(v, t): [] for t, variants in TORCH_RUNS.items() for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "weights.npz")
        export(field, y0, ts, data)
        peers, peer_error = start_peers(args.peer_python, data)
        for _ in range(blocks):  # alternate JAX and torch blocks under the same load
            for name, fn in fns.items():
                time.sleep(SETTLE_S)
                times[name] += time_jax(fn, params, repeats)
            for (variant, threads), out in peer_times.items():
                if peers:
                    time.sleep(SETTLE_S)
                    out += peers[threads].time(variant, repeats)
        for peer in peers.values():
            peer.close()

    ms = {name: median_ms(t, 0) for name, t in times.items()}
    cpu_ms = {name: median_ms(t, 1) for name, t in times.items()}
    result = {
        "name": "node_vs_torchdiffeq",
        "config": dict(
            CONFIG,
            max_steps=args.max_steps,
            adjoint="RecursiveCheckpointAdjoint",
            xla_flags=os.environ.get("XLA_FLAGS", ""),
        ),
        "repeats": blocks * repeats,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "jax_ms": ms,
        "jax_cpu_ms": cpu_ms,
        "jax_steps": stats,
    }
    if not peers:
        result["torchdiffeq"] = {"error": peer_error}
        print(json.dumps(result))
        return
    info = peers[1].info
    loss, grads = fns["direct"](params)
    torch_ms = {f"{v}_threads{t}": median_ms(x, 0) for (v, t), x in peer_times.items()}
    torch_cpu = {f"{v}_threads{t}": median_ms(x, 1) for (v, t), x in peer_times.items()}
    best = {  # torch's faster thread setting, variant by variant
        v: min(x for k, x in torch_ms.items() if k.startswith(v + "_"))
        for v in ("forward", "direct", "backsolve")
    }
    result["torchdiffeq"] = {
        "ms": torch_ms,
        "cpu_ms": torch_cpu,
        "torch": info["torch"],
        "nfe": info["nfe"],
        "steps": (info["nfe"]["forward"] - 2) / 6,  # 2 evaluations pick h0, then 6 a step
    }
    result["agreement"] = {
        "loss_jax": float(loss),
        "loss_torch": info["loss"],
        "grad_max_rel_diff": grad_difference(grads, info["grads"]),
    }
    result["speedup_vs_torchdiffeq"] = {
        "solve": best["forward"] / ms["forward"],
        "solve_and_grad": best["direct"] / ms["direct"],
        "solve_and_grad_backsolve": best["backsolve"] / ms["backsolve"],
        # process CPU time, single-threaded torch against JAX (all its threads)
        "solve_and_grad_cpu": torch_cpu["direct_threads1"] / cpu_ms["direct"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
