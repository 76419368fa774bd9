"""Laser ignition of H2/air: PNODE against kernel ridge regression and an FC network.

    python benchmarks/ignition.py [--n-train 64] [--pnode-epochs 25] [--quick]

The setting of the PNODE study (Dai et al., parametric neural ODEs for laser ignition in a
rocket combustor): from a limited set of reference cases (0-D reactor, detailed H2/O2
chemistry, Gaussian laser pulse, mixing with cold surroundings; `surrogate.problems.ignition`)
learn the map from the seven laser/mixture parameters to the temperature history T(t).

Models, all trained on the same `n_train` cases (+ `n_valid` for validation/selection):
- PNODE (`surrogate.nde.PNODE`): one-step global chemistry whose ln A, Ea/R, heat source,
  mixing rate and completeness are MLP outputs; trained through the Kvaerno5 solve (float64)
  on the MSE of T / 1000 K, Adam with cosine decay;
- KRR: RBF product kernel on (log-parameters, t), closed form, (l_z, l_t, lambda) chosen on
  the validation cases (`surrogate.applications.ignition`);
- MLP: (log-parameters, t) -> T, 3 x 64 SiLU, Adam on the MSE of (T - 1000 K) / 1000 K.

Test sets: `n_test` in-range cases and `n_test` out-of-range cases (`extrapolation`: one
parameter per case outside its range by up to that fraction of the range's width). Metrics:
MAE of T [K] over all times, ignition accuracy (max T > T0 + 1000 K), mean absolute
ignition-delay error [s] on truly ignited cases, training time, and inference time of a
test set (jitted, median of repeats). Data are cached in benchmarks/data/. One JSON line on
stdout; a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import ROOT, emit, machine, median_time

from surrogate.applications.ignition import PNODE, TrajectoryMLP, log_features, select_kernel_ridge
from surrogate.data import read_dataset, write_dataset
from surrogate.problems import generate
from surrogate.problems.ignition import Ignition, ignited
from surrogate.training import fit


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def dataset(problem: Ignition, n: int, seed: int, tag: str):
    path = ROOT / "benchmarks" / "data" / f"ignition_{tag}_n{n}_seed{seed}.nc"
    if not path.exists():
        t = time.perf_counter()
        write_dataset(generate(problem, n, seed=seed, batch_size=min(n, 64)), path)
        log(f"generated {path.name} in {time.perf_counter() - t:.0f} s")
    data = problem.from_dataset(read_dataset(path))
    x = np.stack([data[n] for n in problem.model_inputs], axis=1)
    return jnp.asarray(x), jnp.asarray(data["T"])


def train_pnode(x, y, xv, yv, times, args):
    model = PNODE(times=times, width=32, depth=2, key=jax.random.key(args.seed))

    def loss(m, batch):
        pred = jax.vmap(m)(batch["x"])[:, 0]
        return jnp.mean(((pred - batch["y"]) / 1000.0) ** 2)

    steps = args.pnode_epochs * -(-x.shape[0] // args.batch_size)
    opt = optax.adam(optax.cosine_decay_schedule(args.pnode_lr, max(steps, 1), alpha=0.05))
    model, history = fit(
        model, loss, {"x": x, "y": y}, {"x": xv, "y": yv}, optimizer=opt,
        epochs=args.pnode_epochs, batch_size=args.batch_size,
        key=jax.random.key(args.seed + 1), progress=False,
        callback=lambda e, h: log(f"  pnode epoch {e}: train {h['train_loss']:.3e} "
                                  f"valid {h['valid_loss']:.3e}"),
    )  # fmt: skip
    return model, history


def train_mlp(x, y, xv, yv, times, args):
    logx = jnp.log(x)
    center, scale = jnp.mean(logx, 0), jnp.std(logx, 0)
    net = TrajectoryMLP(x.shape[1], 1, times=times, width=64, depth=3,
                        key=jax.random.key(args.seed))  # fmt: skip

    def z(a):
        return log_features(a, center, scale)

    def loss(m, batch):
        pred = jax.vmap(m)(batch["z"])[:, 0]
        return jnp.mean((pred - (batch["y"] - 1000.0) / 1000.0) ** 2)

    steps = args.mlp_epochs * -(-x.shape[0] // args.batch_size)
    opt = optax.adam(optax.cosine_decay_schedule(args.mlp_lr, max(steps, 1), alpha=0.01))
    net, history = fit(
        net, loss, {"z": z(x), "y": y}, {"z": z(xv), "y": yv}, optimizer=opt,
        epochs=args.mlp_epochs, batch_size=args.batch_size,
        key=jax.random.key(args.seed + 1), progress=False,
    )  # fmt: skip
    log(f"  mlp: train {history['train_loss'][-1]:.3e} valid {history['valid_loss'][-1]:.3e}")
    return net, lambda m, a: 1000.0 + 1000.0 * jax.vmap(m)(z(a))[:, 0]


def evaluate(problem, model, predict, sets, repeats):
    """Metrics of `predict(model, x)` on each test set; inference time on the first."""
    out = {}
    run = eqx.filter_jit(predict)
    for name, (x, y) in sets.items():
        pred = run(model, x)
        m = problem.metrics(pred, y)
        out[f"mae_T_{name}"] = m["mae_T"]
        out[f"ignition_accuracy_{name}"] = m["ignition_accuracy"]
        out[f"delay_mae_{name}"] = m["delay_mae"]
        if name == "in_range":
            out["inference_s"] = median_time(lambda a=x: run(model, a).block_until_ready(), repeats)
    return out


def _vmapped(model, x):
    return jax.vmap(model)(x)[:, 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-valid", type=int, default=16)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--extrapolation", type=float, default=0.25)
    p.add_argument("--pnode-epochs", type=int, default=25)
    p.add_argument("--pnode-lr", type=float, default=2e-3)
    p.add_argument("--mlp-epochs", type=int, default=3000)
    p.add_argument("--mlp-lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sets, few epochs")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ignition.jsonl")
    args = p.parse_args()
    if args.quick:
        args.n_train, args.n_valid, args.n_test = 16, 8, 16
        args.pnode_epochs, args.mlp_epochs = 2, 50

    problem = Ignition()
    times = problem.times()
    x_all, y_all = dataset(problem, args.n_train + args.n_valid, 100 + args.seed, "train")
    x, y = x_all[: args.n_train], y_all[: args.n_train]
    xv, yv = x_all[args.n_train :], y_all[args.n_train :]
    sets = {
        "in_range": dataset(problem, args.n_test, 200 + args.seed, "test"),
        "out_of_range": dataset(
            Ignition(extrapolation=args.extrapolation), args.n_test, 300 + args.seed,
            f"extra{args.extrapolation:g}",
        ),
    }  # fmt: skip
    reference = jax.jit(jax.vmap(problem.solve))
    inputs = dict(zip(problem.model_inputs, sets["in_range"][0].T, strict=True))
    ref_s = median_time(lambda: jax.block_until_ready(reference(inputs)), 1, warmup=1)
    results = {}

    log("KRR: selecting (l_z, l_t, lambda) on the validation cases")
    t0 = time.perf_counter()
    krr, chosen = select_kernel_ridge(x, y, xv, yv, jnp.asarray(times))
    results["krr"] = {"train_s": time.perf_counter() - t0, **chosen}
    results["krr"].update(evaluate(problem, krr, lambda m, a: m.predict(a), sets, args.repeats))

    log("MLP: training")
    t0 = time.perf_counter()
    mlp, mlp_predict = train_mlp(x, y, xv, yv, times, args)
    results["mlp"] = {"train_s": time.perf_counter() - t0}
    results["mlp"].update(evaluate(problem, mlp, mlp_predict, sets, args.repeats))

    log("PNODE: training through the stiff solve")
    t0 = time.perf_counter()
    pnode, history = train_pnode(x, y, xv, yv, times, args)
    results["pnode"] = {"train_s": time.perf_counter() - t0,
                        "final_valid_loss": history["valid_loss"][-1]}  # fmt: skip
    results["pnode"].update(evaluate(problem, pnode, _vmapped, sets, args.repeats))
    prior = PNODE(times=times, key=jax.random.key(args.seed))  # the untrained model
    results["pnode_prior"] = evaluate(problem, prior, _vmapped, sets, 1)

    settings = {k: v for k, v in vars(args).items() if k != "out"}
    result = {
        "name": "ignition",
        "settings": settings,
        "reference_solve_s": ref_s,
        "ignited_fraction": {
            k: float(jnp.mean(ignited(v[1], problem.ignition_rise))) for k, v in sets.items()
        },
        "results": results,
        "machine": machine(),
    }  # fmt: skip
    emit(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    log(f"{'model':<12}{'MAE in [K]':>12}{'MAE out [K]':>13}{'acc in':>8}{'acc out':>9}"
        f"{'delay in [us]':>15}{'train [s]':>11}{'infer [s]':>11}")  # fmt: skip
    for name, r in results.items():
        log(f"{name:<12}{r['mae_T_in_range']:>12.1f}{r['mae_T_out_of_range']:>13.1f}"
            f"{r['ignition_accuracy_in_range']:>8.2f}{r['ignition_accuracy_out_of_range']:>9.2f}"
            f"{1e6 * r['delay_mae_in_range']:>15.1f}{r.get('train_s', float('nan')):>11.1f}"
            f"{r['inference_s']:>11.3f}")  # fmt: skip


if __name__ == "__main__":
    with jax.enable_x64(True):
        main()
