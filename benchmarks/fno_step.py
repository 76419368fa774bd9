"""Time one Adam step of an FNO against neuraloperator 2.0's FNO, same config, same run.

    python benchmarks/fno_step.py [--quick] [--repeats 20]

1-D: B = 20, s = 1024, 16 kept modes, width 64, 4 layers (558,017 parameters in both).
2-D: B = 20, s = 64², 12 modes per axis, width 32, 4 layers (2,368,033 parameters in both).
neuraloperator counts modes over both signs: n_modes=(30,) keeps 16 rfft modes and
(24, 22) keeps 12 x 12 per sign. Both use MSE loss, Adam(1e-3), float32, all CPU threads.
The peer runs in `.venv-peers` (make bench-peers) as a subprocess of this script.
"""

from __future__ import annotations

import argparse
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from _common import emit, machine, median_time, run_peer

from surrogate.operators import FNO

CASES = {
    "1d": dict(grid=(1024,), modes=(16,), width=64, peer_modes=[30]),
    "2d": dict(grid=(64, 64), modes=(12, 12), width=32, peer_modes=[24, 22]),
}
BATCH, LAYERS = 20, 4

PEER = r"""
import json, sys, time, statistics, torch
from neuralop.models import FNO
a = json.loads(sys.argv[1])
torch.manual_seed(0)
m = FNO(n_modes=tuple(a["modes"]), hidden_channels=a["width"], in_channels=1, out_channels=1,
        n_layers=a["layers"], use_channel_mlp=False)
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
x = torch.randn(a["batch"], 1, *a["grid"]); y = torch.sin(x)
def step():
    opt.zero_grad(); loss = torch.mean((m(x) - y) ** 2); loss.backward(); opt.step()
    return loss.item()
for _ in range(3): step()
ts = []
for _ in range(a["repeats"]):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
n = sum(p.numel() * (2 if p.is_complex() else 1) for p in m.parameters())
print(json.dumps({"ms": 1e3 * statistics.median(ts), "parameters": n,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""


def jax_step_time(case: dict, transform: str, repeats: int) -> tuple[float, int]:
    model = FNO(
        1, 1, case["modes"], case["width"], LAYERS, transform=transform, key=jax.random.key(0)
    )
    opt = optax.adam(1e-3)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    x = jax.random.normal(jax.random.key(1), (BATCH, 1, *case["grid"]))
    y = jnp.sin(x)

    @eqx.filter_jit(donate="all-except-first")
    def step(model, state, x, y):
        def loss(m):
            return jnp.mean((jax.vmap(m)(x) - y) ** 2)

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, value

    carry = [model, state]

    def run():
        carry[0], carry[1], value = step(carry[0], carry[1], x, y)
        value.block_until_ready()

    return 1e3 * median_time(run, repeats, warmup=3), model.n_parameters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 repeats")
    ap.add_argument("--cases", default="1d,2d")
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    repeats = 5 if args.quick else args.repeats
    results = {}
    for name in args.cases.split(","):
        case = CASES[name]
        row = {}
        for transform in ("dft", "fft"):
            ms, n = jax_step_time(case, transform, repeats)
            row[f"surrogate_{transform}_ms"] = round(ms, 2)
            row["surrogate_parameters"] = n
            print(f"{name} surrogate {transform}: {ms:.1f} ms", file=sys.stderr)
        if not args.no_peer:
            peer = run_peer(
                PEER,
                {
                    "modes": case["peer_modes"],
                    "width": case["width"],
                    "layers": LAYERS,
                    "batch": BATCH,
                    "grid": list(case["grid"]),
                    "repeats": repeats,
                },
            )
            if peer:
                row["neuraloperator_ms"] = round(peer["ms"], 2)
                row["neuraloperator_parameters"] = peer["parameters"]
                best = min(row["surrogate_dft_ms"], row["surrogate_fft_ms"])
                row["speedup_vs_neuraloperator"] = round(peer["ms"] / best, 2)
                row["peer"] = {"torch": peer["torch"], "threads": peer["threads"]}
                print(f"{name} neuraloperator: {peer['ms']:.1f} ms", file=sys.stderr)
        results[name] = row
    emit(
        {
            "name": "fno_step",
            "config": {
                "batch": BATCH,
                "layers": LAYERS,
                "optimizer": "adam",
                "loss": "mse",
                "dtype": "float32",
                "cases": {k: CASES[k] for k in results},
            },
            "repeats": repeats,
            "machine": machine(),
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
