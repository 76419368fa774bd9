"""FNO, MgNO and DeepONet beside neuraloperator's FNO on the FNO paper's Darcy and Navier-Stokes.

    python benchmarks/operators.py --problem darcy [--budgets 10,25,50,100]
        [--models fno,mgno,deeponet,neuralop] [--n-train 1000] [--n-test 100]
        [--resolution 85] [--eval-resolution 141]
    python benchmarks/operators.py --problem navier_stokes [--final-time 20] [--budgets ...]

For each budget (epochs), every model is trained from scratch with the same data, optimiser,
schedule, batch size and epochs, in the same run: this package's FNO, MgNO and DeepONet, and
neuraloperator 2.0's FNO (`neuralop`: `_peer_neuralop_fno.py` in the peers' venv from
`make bench-peers`, on the same arrays, normalized the same way). One JSON line per (model,
budget): test relative L2 and H1, the zero-shot error at `--eval-resolution`, wall time, time
per epoch, parameters, and for this package's models the ratios of error and time to
neuraloperator's at that budget. The lines are also appended to
benchmarks/results/operators_<problem>.jsonl, and the plot of error against training time
(benchmarks/results/operators_<problem>.png) shows every model and budget in that file run
with the same data and training settings: budgets run separately (`--budgets 100
--models fno` in the background, say) add to it.

Darcy (Li et al. 2021 §5.2): a ↦ u on the unit square, 1000 train / 100 test at s = 85 (the
421² solution subsampled). FNO-2D as the paper: 12 modes per axis, width 32, 4 layers, the
grid zero-padded by ~10% (their 9 points at s = 85). MgNO (He et al. 2024): width 32, 5
layers, 4-level V-cycles, zero (Dirichlet) padding. DeepONet: POD-DeepONet (Lu et al. 2022)
with a CNN branch over the whole input field at the training resolution and the 64 leading
POD modes of the training targets as its trunk. All use the FNO paper's training:
batch 20, AdamW lr 1e-3 (weight decay 1e-4) halved every epochs/5 epochs (100 of their
500), relative L2 loss on decoded outputs. The paper reports FNO-2D 0.0108 at s = 85 after
500 epochs.

Zero-shot resolution: the same weights evaluated on the same test coefficient fields stored
at `--eval-resolution` (141 by default: both are subsamplings of the 421² solve, so the
coefficient fields are the same draws).

Navier-Stokes (§5.3), ν = 1e-3: vorticity on the 64² torus; the first 10 snapshots (t = 1..10)
map to the next 10 (t = 11..20, `--final-time 20`) in one shot, as channels (the package's
`navier_stokes` problem layout; the paper's FNO-2D is recurrent, one step at a time, and
reports 0.0128 at T = 50, FNO-3D 0.0086). FNO-2D with 12 modes, width 20 as the paper's 2-D
model, no padding (periodic).

Time per epoch is the median over epochs
after the first (which compiles); the first is reported separately. Data are generated once
into benchmarks/data/ (ignored by git): training samples are indices 0..n_train−1 of the seed,
test samples the indices from 100000 on, so the test set does not depend on n_train.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import ROOT, emit, machine, peer_threads, run_peer

from surrogate import problems
from surrogate.data import Normalizer, read_dataset, write_dataset
from surrogate.evaluation import predict
from surrogate.operators import FNO, MgNO, PODDeepONet, pod_basis
from surrogate.problems import generate
from surrogate.training import fit, relative_h1_per_sample, relative_l2, relative_l2_per_sample

TEST_OFFSET = 100_000
PAPER = {"darcy": {"fno": 0.0108}, "navier_stokes": {"fno": 0.0128}}
PAPER_EPOCHS = 500
RESULTS = ROOT / "benchmarks" / "results"
PEER_SCRIPT = Path(__file__).with_name("_peer_neuralop_fno.py")
BATCH = 20
POD_MODES = 64


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


def build(model: str, problem: str, c_in: int, c_out: int, key, y_train=None):
    periodic = problem == "navier_stokes"
    if model == "fno":
        width = 20 if periodic else 32
        return FNO(c_in, c_out, (12, 12), width, 4, padding=0.0 if periodic else 0.1, key=key)
    if model == "mgno":
        pad = "periodic" if periodic else "zero"
        return MgNO(c_in, c_out, ndim=2, width=32, depth=5, levels=4, padding=pad, key=key)
    if model == "deeponet":
        # POD-DeepONet with a CNN branch (Lu et al. 2022's Darcy model): the trunk is the
        # POD of the training targets as `train` normalizes them
        yn = Normalizer.fit(y_train)
        targets = jax.vmap(yn.encode)(jnp.asarray(y_train))
        mean, modes, _ = pod_basis(targets, n_modes=min(POD_MODES, len(y_train)))
        return PODDeepONet(c_in, mean, modes, branch="cnn", periodic=periodic, key=key)
    raise ValueError(f"unknown model {model!r}; use fno, mgno, deeponet")


def train(net, x, y, epochs: int, key, quiet: bool):
    xn, yn = Normalizer.fit(x), Normalizer.fit(y)

    def loss_fn(m, b):
        return relative_l2(jax.vmap(lambda a: yn.decode(m(a)))(b["x"]), b["y"])

    batch = min(BATCH, x.shape[0])
    steps = x.shape[0] // batch
    lr = optax.exponential_decay(1e-3, max(1, epochs // 5) * steps, 0.5, staircase=True)
    # AdamW's decay shrinks every array it sees: not POD-DeepONet's fitted mean and modes
    mask = None
    if isinstance(net, PODDeepONet):
        mask = lambda p: eqx.tree_at(  # noqa: E731
            lambda m: (m.mean, m.modes), jax.tree.map(lambda _: True, p), (False, False)
        )
    data = {"x": jax.vmap(xn.encode)(jnp.asarray(x)), "y": jnp.asarray(y)}
    net, hist = fit(
        net,
        loss_fn,
        data,
        None,
        optimizer=optax.adamw(lr, weight_decay=1e-4, mask=mask),
        epochs=epochs,
        batch_size=batch,
        key=key,
        progress=not quiet,
    )
    return (lambda a: yn.decode(net(xn.encode(a)))), hist


def errors(f, x, y, periodic: bool) -> dict[str, float]:
    return errors_of(np.asarray(predict(f, x, batch_size=25)), y, periodic)


def peer_fno(problem: str, arrays: dict, epochs: int, seed: int, threads: int | None):
    """neuraloperator's FNO with this benchmark's settings for `problem` (the peers' venv)."""
    npz, out = RESULTS / "peer_arrays.npz", RESULTS / "peer_predictions.npz"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not npz.exists() or arrays.get("_key") != getattr(peer_fno, "key", None):
        np.savez(npz, **{k: v for k, v in arrays.items() if not k.startswith("_")})
        peer_fno.key = arrays.get("_key")
    fno = model_settings("fno", problem)
    args = {
        # neuraloperator counts the modes kept along an axis in total (negative frequencies
        # too; m // 2 + 1 along the last, real-FFT axis): the paper's 12 per axis are its 24
        "arrays": str(npz), "out": str(out), "modes": [2 * m for m in fno["modes"]],
        "width": fno["width"],
        "layers": fno["layers"], "padding": fno["padding"], "lr": 1e-3, "weight_decay": 1e-4,
        "step_epochs": max(1, epochs // 5), "gamma": 0.5, "epochs": epochs,
        "batch": min(BATCH, len(arrays["x_train"])), "seed": seed,
    }  # fmt: skip
    if threads:
        args["threads"] = threads
    result = run_peer(PEER_SCRIPT.read_text(), args, timeout=24 * 3600)
    if result is None:
        return None
    with np.load(out) as f:
        result["predictions"] = {k: f[k] for k in f.files}
    return result


def budget_row(res, eval_res, test, fine, seconds, epoch_times, params, paper=None):
    per_epoch = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
    row = {
        f"test_relative_l2_s{res}": round(test["relative_l2"], 5),
        f"test_relative_h1_s{res}": round(test["relative_h1"], 5),
        "train_seconds": round(seconds, 1),
        "seconds_per_epoch": round(per_epoch, 3),
        "first_epoch_seconds": round(epoch_times[0], 2),
        "n_parameters": int(params),
    }
    if fine is not None:
        row[f"zero_shot_relative_l2_s{eval_res}"] = round(fine["relative_l2"], 5)
        row[f"zero_shot_relative_h1_s{eval_res}"] = round(fine["relative_h1"], 5)
    if paper is not None:
        row["paper_relative_l2"] = paper
    return row


def history(path: Path, settings: dict) -> list[dict]:
    """The rows of earlier runs in `path` with the same data and training settings, the
    newest per (model, epochs): runs of different budgets or models add up in the plot."""
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interrupted run
        config = row.get("config", {})
        if all(config.get(k) == v for k, v in settings.items()):
            rows[row["model"], row["epochs"]] = row
    return list(rows.values())


def plot(rows: list[dict], problem: str, res: int, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib missing: no plot (pip install -e .[plot])", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["epochs"])
        t = [r["results"]["train_seconds"] for r in mine]
        e = [r["results"][f"test_relative_l2_s{res}"] for r in mine]
        ax.plot(t, e, "o-", label=model)
        for r, ti, ei in zip(mine, t, e, strict=True):
            ax.annotate(str(r["epochs"]), (ti, ei), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    if problem in PAPER:
        label = ("FNO paper (500 epochs)" if problem == "darcy" else
                 "FNO-2D paper (recurrent, T = 50, 500 epochs)")  # fmt: skip
        ax.axhline(PAPER[problem]["fno"], color="grey", ls=":", label=label)
    ax.set(xscale="log", yscale="log", xlabel="training time [s]",
           ylabel=f"test relative L2 (s = {res})",
           title=f"{problem}: error against training time (labels: epochs)")  # fmt: skip
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # overlapping labels
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".partial.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", choices=("darcy", "navier_stokes"), default="darcy")
    ap.add_argument("--models", default=None, help="comma list of fno,mgno,deeponet,neuralop")
    ap.add_argument("--budgets", default="10,25,50,100", help="epochs, comma list")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=None, help="100 (Darcy), 200 (NS)")
    ap.add_argument("--resolution", type=int, default=None, help="85 (Darcy), 64 (NS)")
    ap.add_argument("--eval-resolution", type=int, default=None, help="141 (Darcy); 0: none")
    ap.add_argument("--solve-resolution", type=int, default=None, help="421 (Darcy), 256 (NS)")
    ap.add_argument("--final-time", type=float, default=20.0, help="NS: T (10 in, T-10 out)")
    ap.add_argument("--viscosity", type=float, default=1e-3, help="NS viscosity")
    ap.add_argument("--peer-threads", default="auto", help="torch threads (auto: 1 if busy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    darcy = args.problem == "darcy"
    models = (args.models or "fno,mgno,deeponet,neuralop").split(",")
    budgets = sorted(int(b) for b in args.budgets.split(","))
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
    settings = {
        "problem_options": options, "eval_resolution": eval_res, "n_train": args.n_train,
        "n_test": n_test, "batch": min(BATCH, args.n_train), "optimizer": "adamw(1e-3, wd 1e-4)",
        "schedule": "x0.5 every epochs/5 epochs", "loss": "relative_l2", "seed": args.seed,
    }  # fmt: skip
    log_path = RESULTS / f"operators_{args.problem}.jsonl"
    rows = history(log_path, json.loads(json.dumps(settings)))
    # the paper's figures are for 500 epochs (and Navier-Stokes at T = 50)
    paper = PAPER[args.problem] if darcy or args.final_time == 50 else {}

    def report(model, budget, results, extra=None):
        config = {**settings, "model": model_settings(model, args.problem), **(extra or {})}
        row = {"name": "operators", "problem": args.problem, "model": model, "epochs": budget,
               "config": config, "machine": machine(), "results": results}  # fmt: skip
        rows[:] = [r for r in rows if (r["model"], r["epochs"]) != (model, budget)] + [row]
        emit(row)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{args.problem} {model} {budget} epochs: test relative L2 "
              f"{results[f'test_relative_l2_s{res}']:.4f}, {results['train_seconds']:.0f} s",
              file=sys.stderr)  # fmt: skip

    for budget in budgets:
        peer_row = None
        if "neuralop" in models:
            threads = peer_threads(args.peer_threads)
            split = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te,
                     "_key": (args.problem, res, args.n_train, n_test, eval_res)}  # fmt: skip
            if fine is not None:
                split["x_fine"], split["y_fine"] = fine
            p = peer_fno(args.problem, split, budget, args.seed, threads)
            if p is None:
                print(f"neuraloperator FNO not run at {budget} epochs (no peer venv or it "
                      "failed): run `make bench-peers`", file=sys.stderr)  # fmt: skip
            else:
                preds = p.pop("predictions")
                test = errors_of(preds["test"], y_te, not darcy)
                zs = errors_of(preds["fine"], fine[1], not darcy) if fine is not None else None
                peer_row = budget_row(
                    res, eval_res, test, zs, p["train_seconds"], p["epoch_seconds"],
                    p["parameters"], paper.get("fno"),
                )  # fmt: skip
                report(
                    "neuralop",
                    budget,
                    peer_row,
                    {"peer": {k: p[k] for k in ("torch", "neuraloperator", "threads", "python")}},
                )
        for name in (m for m in models if m != "neuralop"):
            key = jax.random.key(args.seed)
            net = build(name, args.problem, x_tr.shape[1], y_tr.shape[1], key, y_tr)
            n_params = sum(
                a.size for a in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array))
            )
            if isinstance(net, PODDeepONet):  # the fitted POD arrays are data, not trained
                n_params -= net.mean.size + net.modes.size
            t = time.perf_counter()
            f, hist = train(net, x_tr, y_tr, budget, jax.random.fold_in(key, 1), args.quiet)
            seconds = time.perf_counter() - t
            test = errors(f, x_te, y_te, periodic=not darcy)
            zs = errors(f, *fine, periodic=not darcy) if fine is not None else None
            row = budget_row(res, eval_res, test, zs, seconds, hist["time"], n_params,
                             paper.get(name))  # fmt: skip
            if peer_row is not None:
                key_l2 = f"test_relative_l2_s{res}"
                row["error_ratio_to_neuralop"] = round(row[key_l2] / peer_row[key_l2], 3)
                row["time_ratio_to_neuralop"] = round(seconds / peer_row["train_seconds"], 3)
            report(name, budget, row)
    out = RESULTS / f"operators_{args.problem}.png"
    plot(rows, args.problem, res, out)
    print(f"plot: {out}", file=sys.stderr)


def errors_of(pred: np.ndarray, true: np.ndarray, periodic: bool) -> dict[str, float]:
    p, t = jnp.asarray(pred), jnp.asarray(true)
    return {
        "relative_l2": float(jnp.mean(relative_l2_per_sample(p, t))),
        "relative_h1": float(jnp.mean(relative_h1_per_sample(p, t, periodic=periodic))),
    }


def model_settings(name: str, problem: str) -> dict:
    periodic = problem == "navier_stokes"
    if name == "neuralop":
        fno = model_settings("fno", problem)
        return {**fno, "n_modes": [2 * m for m in fno["modes"]],
                "library": "neuralop.models.FNO, defaults else"}  # fmt: skip
    if name == "fno":
        return {
            "modes": [12, 12],
            "width": 20 if periodic else 32,
            "layers": 4,
            "padding": 0.0 if periodic else 0.1,
        }
    if name == "mgno":
        return {"width": 32, "depth": 5, "levels": 4, "padding": "periodic" if periodic else "zero"}
    return {"kind": "POD-DeepONet", "pod_modes": POD_MODES, "branch": "cnn 16-32-64-128, 5x5",
            "head": "3x128 tanh", "trunk": "POD of the normalized training targets",
            "sensors": "training grid"}  # fmt: skip


if __name__ == "__main__":
    main()
