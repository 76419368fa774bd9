"""End-to-end demo: Burgers data -> FNO -> evaluation, on the CPU in a few minutes.

    python examples/demo_burgers.py --out demo

Writes demo/burgers.nc (dataset), demo/model.eqx (trained FNO with its normalizers),
demo/metrics.json (test metrics), demo/prediction.png (prediction vs truth), plus the
training checkpoint and history.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

import surrogate
from surrogate import train_from_config
from surrogate._config import parse_config
from surrogate.data import read_dataset, write_dataset
from surrogate.evaluation import evaluate, plot_predictions, write_metrics
from surrogate.problems import generate, problem_of_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo")
    ap.add_argument("--n", type=int, default=640, help="samples (train/valid/test 80/10/10%%)")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()

    problem = surrogate.problems.get("burgers", resolution=args.resolution)
    print(f"[1/3] generating {args.n} Burgers samples at s = {args.resolution} ...", flush=True)
    data_path = write_dataset(generate(problem, args.n, seed=0, progress=True), out / "burgers.nc")
    t1 = time.perf_counter()

    print(f"[2/3] training an FNO for {args.epochs} epochs ...", flush=True)
    cfg = parse_config(
        {
            "data": {"path": str(data_path)},
            "model": {"type": "fno", "modes": [16], "width": 32, "n_layers": 4},
            "training": {
                "epochs": args.epochs,
                "batch_size": 16,
                "learning_rate": 3e-3,
                "schedule": "cosine",
                "weight_decay": 1e-4,
            },
            "output": {"dir": str(out)},
        }
    )
    result = train_from_config(cfg, progress=True)
    t2 = time.perf_counter()

    print("[3/3] evaluating on the held-out test samples ...", flush=True)
    model = surrogate.load(result["model"])
    ds = read_dataset(data_path)
    test = ds.isel(sample=slice(int(0.9 * args.n), None))
    metrics, pred, true = evaluate(model, problem_of_dataset(ds), test)
    metrics["n_test"] = int(pred.shape[0])
    metrics["seconds"] = {
        "generate": round(t1 - t0, 1),
        "train": round(t2 - t1, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    metrics["device"] = str(jax.devices()[0])
    write_metrics(out / "metrics.json", metrics)
    plot_predictions(
        out / "prediction.png",
        test["x"].values,
        test["u0"].values[:, None],
        pred,
        true,
        title="Burgers, FNO surrogate vs pseudo-spectral reference",
    )
    print(json.dumps({k: metrics[k] for k in ("relative_l2", "rmse", "max_error")}))
    print(f"\ndone in {metrics['seconds']['total']} s. Outputs:")
    for name in (
        "burgers.nc",
        "model.eqx",
        "metrics.json",
        "prediction.png",
        "history.json",
        "checkpoint.eqx",
    ):
        print(f"  {out / name}")


if __name__ == "__main__":
    main()
