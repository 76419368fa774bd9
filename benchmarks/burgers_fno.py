"""Accuracy of the FNO on the FNO paper's Burgers benchmark, and zero-shot super-resolution.

    python benchmarks/burgers_fno.py [--epochs 500] [--quick]

Li et al. (2021) §5.1 setting: 1000 train / 200 test samples, s = 1024, modes 16, width 64,
4 layers, batch 20, Adam lr 1e-3 halved every epochs/5 epochs (100 of the paper's 500),
weight decay 1e-4, relative L2 loss. The paper reports 0.016 at s = 1024 (Table 1 / Fig. 3).
A second model with the same settings trained at s = 256 (the data subsampled) is evaluated
at s = 256 and at s = 1024 with the same weights (zero-shot super-resolution).
Data are generated once into benchmarks/data/ (ignored by git).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import ROOT, emit, machine

from surrogate import problems
from surrogate.data import Normalizer, read_dataset, write_dataset
from surrogate.evaluation import predict
from surrogate.operators import FNO
from surrogate.problems import generate
from surrogate.training import fit, relative_l2, relative_l2_per_sample

N_TRAIN, N_TEST = 1000, 200


def dataset(n: int, resolution: int, seed: int) -> Path:
    path = ROOT / "benchmarks" / "data" / f"burgers_s{resolution}_n{n}_seed{seed}.nc"
    if not path.exists():
        t = time.perf_counter()
        p = problems.get("burgers", resolution=resolution)
        write_dataset(generate(p, n, seed=seed, batch_size=50, progress=True), path)
        print(f"generated {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def train(x, y, epochs, args, key):
    xn, yn = Normalizer.fit(x[:N_TRAIN]), Normalizer.fit(y[:N_TRAIN])
    model = FNO(1, 1, 16, 64, 4, key=key)

    def loss_fn(m, b):
        return relative_l2(jax.vmap(lambda a: yn.decode(m(a)))(b["x"]), b["y"])

    steps = N_TRAIN // 20
    lr = optax.exponential_decay(1e-3, max(1, epochs // 5) * steps, 0.5, staircase=True)
    data = {"x": jax.vmap(xn.encode)(jnp.asarray(x[:N_TRAIN])), "y": jnp.asarray(y[:N_TRAIN])}
    t = time.perf_counter()
    model, hist = fit(
        model,
        loss_fn,
        data,
        None,
        optimizer=optax.adamw(lr, weight_decay=1e-4),
        epochs=epochs,
        batch_size=20,
        key=jax.random.fold_in(key, 1),
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - t
    return (lambda a: yn.decode(model(xn.encode(a)))), hist, seconds


def test_error(f, x, y) -> float:
    pred = predict(f, x[N_TRAIN:], batch_size=50)
    return float(jnp.mean(relative_l2_per_sample(jnp.asarray(pred), jnp.asarray(y[N_TRAIN:]))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--epochs-256", type=int, default=None, help="default: --epochs")
    ap.add_argument("--quick", action="store_true", help="10 epochs each (a smoke run)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    epochs = 10 if args.quick else args.epochs
    epochs_256 = 10 if args.quick else (args.epochs_256 or args.epochs)
    ds = read_dataset(dataset(N_TRAIN + N_TEST, 1024, args.seed))
    x = ds["u0"].values[:, None].astype(np.float32)
    y = ds["u"].values[:, None].astype(np.float32)
    key = jax.random.key(args.seed)
    f1024, h1024, t1024 = train(x, y, epochs, args, key)
    e1024 = test_error(f1024, x, y)
    print(
        f"s=1024: test relative L2 {e1024:.4f} after {epochs} epochs ({t1024:.0f} s)",
        file=sys.stderr,
    )
    f256, h256, t256 = train(x[..., ::4], y[..., ::4], epochs_256, args, key)
    e256 = test_error(f256, x[..., ::4], y[..., ::4])
    e256_at_1024 = test_error(f256, x, y)
    print(f"s=256: {e256:.4f}; same weights at s=1024: {e256_at_1024:.4f}", file=sys.stderr)
    emit(
        {
            "name": "burgers_fno",
            "config": {
                "n_train": N_TRAIN,
                "n_test": N_TEST,
                "resolution": 1024,
                "modes": 16,
                "width": 64,
                "layers": 4,
                "batch": 20,
                "optimizer": "adamw(1e-3, wd 1e-4)",
                "schedule": "x0.5 every epochs/5",
                "loss": "relative_l2",
                "epochs": epochs,
                "epochs_256": epochs_256,
                "viscosity": 0.1,
                "seed": args.seed,
            },
            "machine": machine(),
            "results": {
                "test_relative_l2_s1024": round(e1024, 5),
                "test_relative_l2_s256": round(e256, 5),
                "test_relative_l2_s256_model_at_s1024": round(e256_at_1024, 5),
                "superresolution_ratio": round(e256_at_1024 / e256, 3),
                "train_seconds_s1024": round(t1024, 1),
                "train_seconds_s256": round(t256, 1),
                "seconds_per_epoch_s1024": round(t1024 / max(epochs, 1), 3),
                "final_train_loss_s1024": h1024["train_loss"][-1] if h1024["train_loss"] else None,
                "paper_relative_l2_s1024": 0.016,
            },
        }
    )


if __name__ == "__main__":
    main()
