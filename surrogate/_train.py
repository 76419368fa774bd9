"""Train a surrogate from a config: read data, fit normalizers, build, fit, save, report.

This is what `surrogate train CONFIG.toml` runs; from Python it is `surrogate.train(data,
config)`. The data are any dataset: one that names its problem (written by `surrogate
generate`), or one whose variables the config names (`[data] inputs`, `targets`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ._atomic import refuse_overwriting_inputs, write_text
from ._config import Config, load_config, parse_config
from ._models import build_model, model_class
from ._serialization import save, traits
from .data import NormalizedModel, Normalizer, pairs, read_dataset
from .evaluation import dataset_problem, predict, score
from .training import fit
from .training._fit import resume_differences
from .training._losses import LOSSES

#: the files a run writes into its [output] dir
OUTPUTS = ("model.eqx", "checkpoint.eqx", "history.json", "metrics.json")


def split(n: int, n_train: int, n_valid: int, n_test: int) -> tuple[slice, slice, slice]:
    """Consecutive train / validation / test slices; 0 means 80% / 10% / the rest."""
    n_train = n_train or int(0.8 * n)
    if not n_valid and n_train < n:
        n_valid = max(1, int(0.1 * n))
    n_test = n_test or n - n_train - n_valid
    if n_train < 1 or n_train + n_valid + n_test > n:
        raise ValueError(
            f"the dataset has {n} samples; cannot take n_train={n_train}, "
            f"n_valid={n_valid}, n_test={n_test}"
        )
    a, b = n_train, n_train + n_valid
    return slice(0, a), slice(a, b), slice(b, b + n_test)


def split_with_test_file(n: int, n_train: int, n_valid: int) -> tuple[slice, slice]:
    """Train / validation slices of a file whose test set is another file."""
    n_train = n_train or (n if n_valid else max(1, n - max(1, int(0.1 * n))))
    if n_valid == 0 and n_train < n:
        n_valid = n - n_train
    if n_train < 1 or n_train + n_valid > n:
        raise ValueError(
            f"the dataset has {n} samples; cannot take n_train={n_train}, n_valid={n_valid}"
        )
    return slice(0, n_train), slice(n_train, n_train + n_valid)


def make_optimizer(cfg: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    t = cfg.training
    if t.schedule == "step":
        lr = optax.exponential_decay(
            t.learning_rate, t.step_epochs * steps_per_epoch, t.gamma, staircase=True
        )
    elif t.schedule == "cosine":
        lr = optax.cosine_decay_schedule(t.learning_rate, max(1, t.epochs * steps_per_epoch))
    else:
        lr = t.learning_rate
    return optax.adamw(lr, weight_decay=t.weight_decay)


def variables_of(ds: xr.Dataset, cfg_inputs, cfg_targets, problem) -> tuple[list, list]:
    """The variables to map: the config's, else the dataset's own record, else its problem's."""
    if cfg_inputs:
        return list(cfg_inputs), list(cfg_targets)
    if "model_inputs" in ds.attrs and "model_targets" in ds.attrs:
        return str(ds.attrs["model_inputs"]).split(), str(ds.attrs["model_targets"]).split()
    if problem is not None:
        return list(problem.model_inputs), list(problem.model_targets)
    raise ValueError(
        "the dataset names no problem and the config no variables: set [data] inputs = "
        "[...] and targets = [...]"
    )


def _open(data: str | os.PathLike | xr.Dataset) -> tuple[xr.Dataset, str]:
    if isinstance(data, xr.Dataset):
        return data, "<in-memory dataset>"
    return read_dataset(data), str(data)


def _refuse_overwriting(cfg: Config, data, test) -> None:
    """No file the run writes may be one it reads (the data, the test data, the config)."""
    out = Path(cfg.output.dir)
    inputs = {
        "[data] path": cfg.data.path if data is None else data,
        "[data] test_path": cfg.data.test_path if test is None else test,
        "config": cfg.source,
    }
    inputs = {k: v for k, v in inputs.items() if isinstance(v, str | os.PathLike) and v}
    if data is not None and not isinstance(data, str | os.PathLike):
        inputs.pop("[data] path", None)  # an in-memory dataset: the config's path is a label
    outputs = {"[output] dir": out, **{f"[output] dir's {n}": out / n for n in OUTPUTS}}
    refuse_overwriting_inputs(outputs, inputs)


def _sample_hash(*arrays) -> str:
    """sha256 of the first, middle and last sample of each array (with shape and dtype): a
    cheap fingerprint of which data a run saw, not a proof."""
    h = hashlib.sha256()
    for a in arrays:
        n = a.shape[0]
        h.update(f"{a.shape}{a.dtype}".encode())
        for i in sorted({0, n // 2, n - 1}):
            h.update(np.ascontiguousarray(a[i]).tobytes())
    return h.hexdigest()[:16]


def run_fingerprint(cfg: Config, source: str, full, test_source: str, test_pairs, splits) -> dict:
    """What a checkpoint must agree with to be resumed: the data (path, variables, shapes,
    split, a hash of a few samples), the model and the optimiser settings. `epochs` counts
    only for a cosine schedule (whose decay spans them): more epochs of the other schedules
    continue the same run."""
    training = dataclasses.asdict(cfg.training)
    if training["schedule"] != "cosine":
        training.pop("epochs")
    path = source if source.startswith("<") else str(Path(source).resolve())
    test = test_source if test_source.startswith("<") else str(Path(test_source).resolve())
    return {
        "data": {
            "path": path,
            "variables": {"inputs": list(full.layout.inputs), "targets": list(full.layout.targets)},
            "shape": {"inputs": list(full.x.shape), "targets": list(full.y.shape)},
            "split": {k: [s.start, s.stop] for k, s in zip(("train", "valid"), splits)},
            "samples_sha256": _sample_hash(full.x, full.y),
            "test": {"path": test, "samples": int(test_pairs.x.shape[0])},
        },
        "model": cfg.model,
        "training": training,
    }


def train(
    data: str | os.PathLike | xr.Dataset,
    config: Config | dict | str | os.PathLike,
    *,
    test: str | os.PathLike | xr.Dataset | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Train on `data` (a path or an `xr.Dataset`) with `config` (a `Config`, the dict of a
    TOML file, or its path; its [data] path is replaced by `data`). See `train_from_config`.

        result = surrogate.train(ds, {"data": {"inputs": ["a"], "targets": ["u"]},
                                      "model": {"type": "fno", "modes": [8, 8]}})
    """
    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif isinstance(config, dict):
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
        raw.setdefault("data", {})["path"] = "<in-memory>"
        config = parse_config(raw)
    return train_from_config(
        config, data=data, test=test, resume=resume, force=force, progress=progress
    )


def train_from_config(
    cfg: Config,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    data: str | os.PathLike | xr.Dataset | None = None,
    test: str | os.PathLike | xr.Dataset | None = None,
) -> dict:
    """Run the config; returns the paths written and the test metrics.

    A model class that declares `x64` (stiff solves) trains in float64; one with
    `physical_units` takes and returns physical values (its normalizers are identities).
    `resume=True` continues the checkpoint in [output] dir if it was written by the same
    run (data, model, optimiser settings; see `run_fingerprint`), and refuses otherwise,
    naming the differences; `force=True` continues it anyway.
    """
    cls = model_class(cfg.model.get("type"))
    if traits(cls).x64 and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return train_from_config(
                cfg, resume=resume, force=force, progress=progress, data=data, test=test
            )
    _refuse_overwriting(cfg, data, test)
    d = cfg.data
    ds, source = _open(cfg.data.path if data is None else data)
    problem = dataset_problem(ds, d.problem)
    inputs, targets = variables_of(ds, d.inputs, d.targets, problem)
    full = pairs(ds, inputs, targets, sample_dim=d.sample_dim or None)
    if test is None and d.test_path:
        test = d.test_path
    if test is not None:
        test_ds, test_source = _open(test)
        test_pairs = pairs(test_ds, layout=full.layout)
        tr, va = split_with_test_file(full.x.shape[0], d.n_train, d.n_valid)
        if d.n_test:
            test_pairs = dataclasses.replace(
                test_pairs, x=test_pairs.x[: d.n_test], y=test_pairs.y[: d.n_test]
            )
    else:
        test_source = source
        tr, va, te = split(full.x.shape[0], d.n_train, d.n_valid, d.n_test)
        test_pairs = dataclasses.replace(full, x=full.x[te], y=full.y[te])
    out = Path(cfg.output.dir)
    fingerprint = run_fingerprint(cfg, source, full, test_source, test_pairs, (tr, va))
    if resume and not force:
        differences = resume_differences(out / "checkpoint.eqx", fingerprint)
        if differences:
            raise ValueError(
                f"cannot resume {out / 'checkpoint.eqx'}: it is of another run "
                f"({'; '.join(differences)}); train afresh without --resume, or continue "
                "anyway with --resume --force"
            )
    x, y = full.x, full.y
    t = cfg.training
    key = jax.random.key(t.seed)
    k_model, k_fit = jax.random.split(key)
    in_norm, out_norm = Normalizer.fit(x[tr]), Normalizer.fit(y[tr])
    times = {"times": ds["time"].values.tolist()} if "time" in ds.coords else {}
    net = build_model(cfg.model, x.shape[1], y.shape[1], key=k_model, context=times)
    if traits(net).physical_units:
        in_norm, out_norm = Normalizer(x.shape[1]), Normalizer(y.shape[1])
    base_loss = LOSSES[t.loss]

    def loss_fn(model, batch):
        # the network sees normalized inputs; the loss is in physical units
        pred = jax.vmap(lambda a: out_norm.decode(model(a)))(batch["x"])
        return base_loss(pred, batch["y"])

    train_set = {"x": jax.vmap(in_norm.encode)(jnp.asarray(x[tr])), "y": jnp.asarray(y[tr])}
    valid = None
    if va.stop > va.start:
        valid = {"x": jax.vmap(in_norm.encode)(jnp.asarray(x[va])), "y": jnp.asarray(y[va])}
    batch_size = min(t.batch_size, tr.stop)
    optimizer = make_optimizer(cfg, tr.stop // batch_size)
    out.mkdir(parents=True, exist_ok=True)
    net, history = fit(
        net,
        loss_fn,
        train_set,
        valid,
        optimizer=optimizer,
        epochs=t.epochs,
        batch_size=batch_size,
        key=k_fit,
        checkpoint=out / "checkpoint.eqx",
        resume=resume,
        fingerprint=fingerprint,
        force_resume=True,  # checked above, with the command line's words
        progress=progress,
    )
    model = NormalizedModel(net, in_norm, out_norm)
    header: dict[str, Any] = {
        "data": full.layout.to_json(),
        "config": {
            "data": dataclasses.asdict(cfg.data),
            "model": cfg.model,
            "training": dataclasses.asdict(t),
        },
        "trained_on": source,
    }
    if problem is not None:
        header.update(problem=problem.name, problem_options=problem.options())
    model_path = save(out / "model.eqx", model, **header)
    write_text(out / "history.json", json.dumps(history, indent=1) + "\n")
    result = {
        "model": str(model_path),
        "history": str(out / "history.json"),
        "checkpoint": str(out / "checkpoint.eqx"),
        "n_parameters": _count(net),
    }
    if test_pairs.x.shape[0]:
        test_problem = problem if test is None else dataset_problem(test_ds, d.problem)
        metrics = score(test_problem, predict(model, test_pairs.x), test_pairs)
        write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        result["test_metrics"] = metrics
        result["test_data"] = test_source
        result["metrics"] = str(out / "metrics.json")
    return result


def _count(model) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(a.size for a in leaves))
