"""FNO, MgNO and DeepONet on the FNO paper's Darcy and Navier-Stokes benchmarks.

    python benchmarks/operators.py --problem darcy [--models fno,mgno,deeponet]
        [--n-train 1000] [--n-test 100] [--epochs 500] [--resolution 85] [--eval-resolution 141]
    python benchmarks/operators.py --problem navier_stokes [--final-time 50] [--epochs 500]

Darcy (Li et al. 2021 §5.2): a ↦ u on the unit square, 1000 train / 100 test at s = 85 (the
421² solution subsampled). FNO-2D as the paper: 12 modes per axis, width 32, 4 layers, the
grid zero-padded by ~10% (their 9 points at s = 85). MgNO (He et al. 2024): width 32, 5
layers, 4-level V-cycles, zero (Dirichlet) padding. DeepONet: the branch sees the whole
coefficient field at the training resolution, p = 64. All use the FNO paper's training:
batch 20, AdamW lr 1e-3 (weight decay 1e-4) halved every epochs/5 epochs (100 of their
500), relative L2 loss on decoded outputs. The paper reports FNO-2D 0.0108 at s = 85.

Zero-shot resolution: the same weights evaluated on the same test coefficient fields stored
at `--eval-resolution` (141 by default: both are subsamplings of the 421² solve, so the
coefficient fields are the same draws).

Navier-Stokes (§5.3), ν = 1e-3: vorticity on the 64² torus; the first 10 snapshots (t = 1..10)
map to the remaining ones (t = 11..T) in one shot, as channels (the package's
`navier_stokes` problem layout; the paper's FNO-2D is recurrent, one step at a time, and
reports 0.0128 at T = 50, FNO-3D 0.0086). FNO-2D with 12 modes, width 20 as the paper's 2-D
model, no padding (periodic).

One JSON line per (model, run) with its settings. Time per epoch is the median over epochs
after the first (which compiles); the first is reported separately. Data are generated once
into benchmarks/data/ (ignored by git): training samples are indices 0..n_train−1 of the seed,
test samples the indices from 100000 on, so the test set does not depend on n_train.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import ROOT, emit, machine

from surrogate import problems
from surrogate.data import Normalizer, read_dataset, write_dataset
from surrogate.evaluation import predict
from surrogate.operators import FNO, DeepONetOperator, MgNO
from surrogate.problems import generate
from surrogate.training import fit, relative_h1_per_sample, relative_l2, relative_l2_per_sample

TEST_OFFSET = 100_000
PAPER = {"darcy": {"fno": 0.0108}, "navier_stokes": {"fno": 0.0128}}
PAPER_EPOCHS = 500
BATCH = 20


def dataset(name: str, options: dict, start: int, n: int, seed: int) -> Path:
    """Samples `start .. start + n − 1` of `problem(**options)` with `seed`, cached; a cached
    file with the same options and more samples from the same start is reused."""
    tag = "_".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in options.items())
    stem = f"{name}_{tag}_seed{seed}_from{start}_n"
    data = ROOT / "benchmarks" / "data"
    for cached in sorted(data.glob(stem + "*.nc")):
        if int(cached.stem[len(stem) :]) >= n:
            return cached
    path = data / f"{stem}{n}.nc"
    t = time.perf_counter()
    p = problems.get(name, **options)
    ds = generate(p, seed=seed, indices=np.arange(start, start + n), batch_size=25, progress=True)
    write_dataset(ds, path)
    print(f"generated {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def arrays(name: str, options: dict, start: int, n: int, seed: int):
    p = problems.get(name, **options)
    ds = read_dataset(dataset(name, options, start, n, seed)).isel(sample=slice(0, n))
    data = p.from_dataset(ds)
    x = np.asarray(p.model_input(data), dtype=np.float32)
    y = np.asarray(p.model_target(data), dtype=np.float32)
    return x, y


def build(model: str, problem: str, c_in: int, c_out: int, resolution: int, key):
    periodic = problem == "navier_stokes"
    if model == "fno":
        width = 20 if periodic else 32
        return FNO(c_in, c_out, (12, 12), width, 4, padding=0.0 if periodic else 0.1, key=key)
    if model == "mgno":
        pad = "periodic" if periodic else "zero"
        return MgNO(c_in, c_out, ndim=2, width=32, depth=5, levels=4, padding=pad, key=key)
    if model == "deeponet":
        return DeepONetOperator(
            c_in, c_out, (resolution, resolution), periodic=periodic, p=64, key=key
        )
    raise ValueError(f"unknown model {model!r}; use fno, mgno, deeponet")


def train(net, x, y, epochs: int, key, quiet: bool):
    xn, yn = Normalizer.fit(x), Normalizer.fit(y)

    def loss_fn(m, b):
        return relative_l2(jax.vmap(lambda a: yn.decode(m(a)))(b["x"]), b["y"])

    batch = min(BATCH, x.shape[0])
    steps = x.shape[0] // batch
    lr = optax.exponential_decay(1e-3, max(1, epochs // 5) * steps, 0.5, staircase=True)
    data = {"x": jax.vmap(xn.encode)(jnp.asarray(x)), "y": jnp.asarray(y)}
    net, hist = fit(
        net,
        loss_fn,
        data,
        None,
        optimizer=optax.adamw(lr, weight_decay=1e-4),
        epochs=epochs,
        batch_size=batch,
        key=key,
        progress=not quiet,
    )
    return (lambda a: yn.decode(net(xn.encode(a)))), hist


def errors(f, x, y, periodic: bool) -> dict[str, float]:
    pred = jnp.asarray(predict(f, x, batch_size=25))
    true = jnp.asarray(y)
    return {
        "relative_l2": float(jnp.mean(relative_l2_per_sample(pred, true))),
        "relative_h1": float(jnp.mean(relative_h1_per_sample(pred, true, periodic=periodic))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", choices=("darcy", "navier_stokes"), default="darcy")
    ap.add_argument("--models", default=None, help="comma list of fno,mgno,deeponet")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=None, help="100 (Darcy), 200 (NS)")
    ap.add_argument("--epochs", type=int, default=PAPER_EPOCHS)
    ap.add_argument("--resolution", type=int, default=None, help="85 (Darcy), 64 (NS)")
    ap.add_argument("--eval-resolution", type=int, default=None, help="141 (Darcy); 0: none")
    ap.add_argument("--solve-resolution", type=int, default=None, help="421 (Darcy), 256 (NS)")
    ap.add_argument("--final-time", type=float, default=50.0, help="NS: T (10 in, T-10 out)")
    ap.add_argument("--viscosity", type=float, default=1e-3, help="NS viscosity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    darcy = args.problem == "darcy"
    models = (args.models or ("fno,mgno,deeponet" if darcy else "fno")).split(",")
    n_test = args.n_test or (100 if darcy else 200)
    res = args.resolution or (85 if darcy else 64)
    eval_res = args.eval_resolution if args.eval_resolution is not None else (141 if darcy else 0)
    solve_res = args.solve_resolution or (421 if darcy else 256)
    if darcy:
        options = {"resolution": res, "solve_resolution": solve_res}
        fine_options = {"resolution": eval_res, "solve_resolution": solve_res}
    else:
        common = {"viscosity": args.viscosity, "final_time": args.final_time}
        options = {**common, "resolution": res, "solve_resolution": solve_res}
        fine_options = {**common, "resolution": eval_res, "solve_resolution": solve_res}
    x_tr, y_tr = arrays(args.problem, options, 0, args.n_train, args.seed)
    x_te, y_te = arrays(args.problem, options, TEST_OFFSET, n_test, args.seed)
    fine = arrays(args.problem, fine_options, TEST_OFFSET, n_test, args.seed) if eval_res else None

    for name in models:
        key = jax.random.key(args.seed)
        net = build(name, args.problem, x_tr.shape[1], y_tr.shape[1], res, key)
        n_params = sum(
            a.size for a in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array))
        )
        t = time.perf_counter()
        f, hist = train(net, x_tr, y_tr, args.epochs, jax.random.fold_in(key, 1), args.quiet)
        seconds = time.perf_counter() - t
        times = hist["time"]
        per_epoch = statistics.median(times[1:]) if len(times) > 1 else times[0]
        test = errors(f, x_te, y_te, periodic=not darcy)
        results = {
            f"test_relative_l2_s{res}": round(test["relative_l2"], 5),
            f"test_relative_h1_s{res}": round(test["relative_h1"], 5),
            "final_train_loss": round(hist["train_loss"][-1], 5),
            "seconds_per_epoch": round(per_epoch, 3),
            "first_epoch_seconds": round(times[0], 2),
            "train_seconds": round(seconds, 1),
            "estimated_hours_paper_budget": round(
                per_epoch * (1000 / args.n_train) * PAPER_EPOCHS / 3600, 2
            ),
            "n_parameters": int(n_params),
        }
        if fine is not None:
            zs = errors(f, *fine, periodic=not darcy)
            results[f"test_relative_l2_s{res}_model_at_s{eval_res}"] = round(zs["relative_l2"], 5)
            results[f"test_relative_h1_s{res}_model_at_s{eval_res}"] = round(zs["relative_h1"], 5)
            results["zero_shot_ratio"] = round(zs["relative_l2"] / test["relative_l2"], 3)
        if name in PAPER.get(args.problem, {}) and (darcy or args.final_time == 50):
            results["paper_relative_l2"] = PAPER[args.problem][name]
        print(
            f"{args.problem} {name}: test relative L2 {test['relative_l2']:.4f} at s={res} "
            f"after {args.epochs} epochs, {per_epoch:.2f} s/epoch"
            + (f"; at s={eval_res}: {zs['relative_l2']:.4f}" if fine is not None else ""),
            file=sys.stderr,
        )
        emit(
            {
                "name": "operators",
                "problem": args.problem,
                "model": name,
                "config": {
                    "problem_options": options,
                    "eval_resolution": eval_res,
                    "n_train": args.n_train,
                    "n_test": n_test,
                    "epochs": args.epochs,
                    "paper_epochs": PAPER_EPOCHS,
                    "batch": min(BATCH, args.n_train),
                    "optimizer": "adamw(1e-3, wd 1e-4)",
                    "schedule": "x0.5 every epochs/5",
                    "loss": "relative_l2",
                    "model": model_settings(name, args.problem),
                    "seed": args.seed,
                },
                "machine": machine(),
                "results": results,
            }
        )


def model_settings(name: str, problem: str) -> dict:
    periodic = problem == "navier_stokes"
    if name == "fno":
        return {
            "modes": [12, 12],
            "width": 20 if periodic else 32,
            "layers": 4,
            "padding": 0.0 if periodic else 0.1,
        }
    if name == "mgno":
        return {"width": 32, "depth": 5, "levels": 4, "padding": "periodic" if periodic else "zero"}
    return {"p": 64, "branch": "3x128 tanh", "trunk": "3x128 tanh", "sensors": "training grid"}


if __name__ == "__main__":
    main()
