"""Train a surrogate from a config: read data, fit normalizers, build, fit, save, report.

This is what `surrogate train CONFIG.toml` runs; it is also usable from Python.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._atomic import write_text
from .._config import Config
from .._serialization import save
from ..data import NormalizedModel, Normalizer, problem_of_dataset, read_dataset
from ._fit import fit
from ._losses import LOSSES


def model_table() -> dict[str, type]:
    """Model names usable in a config's [model] type (the CLI's table)."""
    from ..nde import PNODE
    from ..operators import FNO, DeepONetOperator, MgNO
    from ..problems._ignition_baselines import TrajectoryMLP

    return {
        "fno": FNO, "mgno": MgNO, "deeponet": DeepONetOperator, "pnode": PNODE,
        "mlp": TrajectoryMLP,
    }  # fmt: skip


def build_model(
    spec: dict, in_channels: int, out_channels: int, *, key, context: dict | None = None
) -> eqx.Module:
    """The model of a config's [model] table; constructor arguments named in `context`
    (e.g. the dataset's `times`) and not in the table are taken from it."""
    spec = dict(spec)
    kind = spec.pop("type")
    table = model_table()
    if kind not in table:
        raise ValueError(f"unknown model type {kind!r}; available: {sorted(table)}")
    cls = table[kind]
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(spec) - set(params) - {"self"})
    if unknown:
        allowed = sorted(
            p for p in params if p not in ("self", "key", "in_channels", "out_channels", "dtype")
        )
        raise ValueError(f"unknown option(s) {unknown} for model {kind!r}; options: {allowed}")
    for name, value in (context or {}).items():
        if name in params and name not in spec:
            spec[name] = value
    for name in ("modes", "sensor_shape"):
        if isinstance(spec.get(name), list):
            spec[name] = tuple(spec[name])
    return cls(in_channels, out_channels, **spec, key=key)


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


def make_optimizer(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
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


def train_from_config(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict:
    """Run the config; returns the paths written and the test metrics.

    A model class with `needs_x64` (stiff solves) trains in float64; one with
    `physical_units` takes and returns physical values (its normalizers are identities).
    """
    cls = model_table().get(cfg.model.get("type"))
    if getattr(cls, "needs_x64", False) and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return train_from_config(cfg, resume=resume, progress=progress)
    ds = read_dataset(cfg.data.path)
    problem = problem_of_dataset(ds)
    data = problem.from_dataset(ds)
    x = np.asarray(problem.model_input(data), dtype=np.float32)
    y = np.asarray(problem.model_target(data), dtype=np.float32)
    tr, va, te = split(x.shape[0], cfg.data.n_train, cfg.data.n_valid, cfg.data.n_test)
    t = cfg.training
    key = jax.random.key(t.seed)
    k_model, k_fit = jax.random.split(key)
    in_norm, out_norm = Normalizer.fit(x[tr]), Normalizer.fit(y[tr])
    times = {"times": ds["time"].values.tolist()} if "time" in ds.coords else {}
    net = build_model(cfg.model, x.shape[1], y.shape[1], key=k_model, context=times)
    if getattr(net, "physical_units", False):
        in_norm, out_norm = Normalizer(x.shape[1]), Normalizer(y.shape[1])
    base_loss = LOSSES[t.loss]

    def loss_fn(model, batch):
        # the network sees normalized inputs; the loss is in physical units
        pred = jax.vmap(lambda a: out_norm.decode(model(a)))(batch["x"])
        return base_loss(pred, batch["y"])

    train = {"x": jax.vmap(in_norm.encode)(jnp.asarray(x[tr])), "y": jnp.asarray(y[tr])}
    valid = None
    if va.stop > va.start:
        valid = {"x": jax.vmap(in_norm.encode)(jnp.asarray(x[va])), "y": jnp.asarray(y[va])}
    batch_size = min(t.batch_size, tr.stop)
    optimizer = make_optimizer(cfg, tr.stop // batch_size)
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    net, history = fit(
        net,
        loss_fn,
        train,
        valid,
        optimizer=optimizer,
        epochs=t.epochs,
        batch_size=batch_size,
        key=k_fit,
        checkpoint=out / "checkpoint.eqx",
        resume=resume,
        progress=progress,
    )
    model = NormalizedModel(net, in_norm, out_norm)
    header = {
        "problem": problem.name,
        "problem_options": problem.options(),
        "config": {
            "data": dataclasses.asdict(cfg.data),
            "model": cfg.model,
            "training": dataclasses.asdict(t),
        },
    }
    model_path = save(out / "model.eqx", model, **header)
    write_text(out / "history.json", json.dumps(history, indent=1) + "\n")
    result = {
        "model": str(model_path),
        "history": str(out / "history.json"),
        "checkpoint": str(out / "checkpoint.eqx"),
        "n_parameters": _count(net),
    }
    if te.stop > te.start:
        from ..evaluation import predict

        pred = predict(model, x[te])
        metrics = problem.metrics(jnp.asarray(pred), jnp.asarray(y[te]))
        write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        result["test_metrics"] = metrics
        result["metrics"] = str(out / "metrics.json")
    return result


def _count(model) -> int:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(a.size for a in leaves))
