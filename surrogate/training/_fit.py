"""The training loop: minibatch optimisation with checkpoints, resume and a NaN stop.

Each minibatch step is one jit-compiled call (a `lax.scan` over an epoch's minibatches
ran convolutions several times slower on the CPU, see `_make_epoch`); between epochs
Python shows progress, validates and writes checkpoints. Epoch e shuffles with
`fold_in(key, e)`, so a run resumed from the checkpoint of epoch e continues exactly as
the uninterrupted run would. A `fingerprint` (any JSON-able description of the run: its
data, model and optimiser settings) is recorded in the checkpoint, and resuming with a
different one is refused, since the continued run would be neither the old nor the new one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from .._serialization import read_header, read_tree, write_tree
from ..data import minibatches


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; `model` is the last good one (also on disk)."""

    def __init__(self, message: str, model: eqx.Module, epoch: int):
        super().__init__(message)
        self.model = model
        self.epoch = epoch


def _n_samples(data: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("training data is empty")
    n = leaves[0].shape[0]
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValueError(
            f"all training arrays need the same number of samples, got "
            f"{[leaf.shape[0] for leaf in leaves]}"
        )
    return n


def _check_finite(name: str, data: PyTree) -> None:
    for leaf in jax.tree_util.tree_leaves(data):
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{name} data hold {int(np.sum(~np.isfinite(a)))} NaN/inf values")


def _make_epoch(loss_fn, optimizer):
    @eqx.filter_jit
    def step(params, static, opt_state, data, idx):
        batch = jax.tree_util.tree_map(lambda a: a[idx], data)

        def loss_of(p):
            return loss_fn(eqx.combine(p, static), batch)

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def epoch(model, opt_state, data, batches):
        # one compiled step per minibatch, not a `lax.scan` over them: XLA on the CPU runs
        # convolutions inside a loop several times slower (an MgNO Adam step: 2.79 s in a
        # scan, 0.33 s called in turn; FNO 1.69 s and 1.44 s, 64², batch 8, 2 cores)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        losses = []
        for idx in np.asarray(batches):
            params, opt_state, loss = step(params, static, opt_state, data, idx)
            losses.append(loss)
        return eqx.combine(params, static), opt_state, jnp.stack(losses)

    return epoch


def _make_eval(loss_fn, batch_size):
    @eqx.filter_jit
    def evaluate(model, data, n):
        nb = n // batch_size
        head = jax.tree_util.tree_map(
            lambda a: a[: nb * batch_size].reshape(nb, batch_size, *a.shape[1:]), data
        )
        losses = jax.lax.map(lambda b: loss_fn(model, b), head)
        total = jnp.sum(losses) * batch_size
        rest = n - nb * batch_size
        if rest:
            tail = jax.tree_util.tree_map(lambda a: a[nb * batch_size :], data)
            total = total + loss_fn(model, tail) * rest
        return total / n

    return evaluate


def fit(
    model: eqx.Module,
    loss_fn: Callable[[eqx.Module, PyTree], Array],
    train: PyTree,
    valid: PyTree | None = None,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: PRNGKeyArray,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    fingerprint: dict | None = None,
    force_resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> tuple[eqx.Module, dict[str, list]]:
    """Train `model` to minimise `loss_fn(model, batch)` over minibatches of `train`.

    `train` and `valid` are pytrees of arrays with the sample axis first. The checkpoint
    (model, optimiser state, epoch, history) is rewritten atomically after every epoch;
    with `resume=True` training continues from it. `fingerprint` is written with it; resuming
    a checkpoint whose fingerprint differs raises `ValueError` naming the differences, unless
    `force_resume=True` (then the run goes on, and the new fingerprint is recorded). If the
    loss becomes NaN or infinite, training stops with `TrainingDiverged` and the checkpoint
    of the last good epoch stays.
    Returns the trained model and the history (per-epoch `train_loss`, `valid_loss`, `time`).
    """
    n, batch_size = check_arguments(train, valid, epochs, batch_size)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    if resume and checkpoint is not None and fingerprint is not None and not force_resume:
        differences = resume_differences(checkpoint, fingerprint)
        if differences:
            raise ValueError(
                f"checkpoint {checkpoint} is of another run: {'; '.join(differences)}; "
                "pass force_resume=True to continue it anyway"
            )
    model, opt_state, start, history = restore(model, opt_state, checkpoint, resume)
    epoch = _make_epoch(loss_fn, optimizer)
    evaluate = _make_eval(loss_fn, batch_size)

    def run_epoch(e, model, opt_state):
        batches = minibatches(jax.random.fold_in(key, e), n, batch_size)
        new_model, new_state, losses = epoch(model, opt_state, train, batches)
        return new_model, new_state, float(jnp.mean(losses))

    def validate(model):
        return float(evaluate(model, valid, _n_samples(valid)))

    model, _, history = epoch_loop(
        model, opt_state, run_epoch, None if valid is None else validate,
        start=start, epochs=epochs, history=history, checkpoint=checkpoint,
        progress=progress, callback=callback,
        header={} if fingerprint is None else {"fingerprint": fingerprint},
    )  # fmt: skip
    return model, history


def check_arguments(train: PyTree, valid: PyTree | None, epochs: int, batch_size: int):
    """Validate `fit`'s data and settings; returns (number of samples, batch size used)."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    n = _n_samples(train)
    _check_finite("training", train)
    if valid is not None:
        _n_samples(valid)
        _check_finite("validation", valid)
    batch_size = min(batch_size, n) if batch_size > 0 else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return n, batch_size


def restore(model, opt_state, checkpoint: str | Path | None, resume: bool):
    """(model, optimiser state, epochs done, history), from `checkpoint` if resuming and
    it exists, else as given with an empty history."""
    history: dict[str, list] = {"epoch": [], "train_loss": [], "valid_loss": [], "time": []}
    if not resume:
        return model, opt_state, 0, history
    if checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if not Path(checkpoint).exists():
        return model, opt_state, 0, history
    header = read_header(checkpoint)
    epoch, saved = header.get("epoch"), header.get("history")
    if not (
        isinstance(epoch, int)
        and epoch >= 0
        and isinstance(saved, dict)
        and all(isinstance(saved.get(k), list) and len(saved[k]) == epoch for k in history)
    ):
        raise ValueError(
            f"{checkpoint} is not a training checkpoint (no epoch count and history of "
            "that many epochs in its header)"
        )
    model, opt_state = read_tree(checkpoint, (model, opt_state))
    return model, opt_state, epoch, {k: saved[k] for k in history}


def _differences(old, new, where: str = "") -> list[str]:
    """'key: OLD in the checkpoint, NEW now' for every leaf of two JSON trees that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            name = f"{where}.{k}" if where else str(k)
            if k not in old:
                out.append(f"{name}: absent in the checkpoint, {new[k]!r} now")
            elif k not in new:
                out.append(f"{name}: {old[k]!r} in the checkpoint, absent now")
            else:
                out += _differences(old[k], new[k], name)
        return out
    if old == new:
        return []
    return [f"{where or 'fingerprint'}: {old!r} in the checkpoint, {new!r} now"]


def resume_differences(checkpoint: str | Path, fingerprint: dict) -> list[str]:
    """How the run `fingerprint` describes differs from the one that wrote `checkpoint`
    (empty when they agree or there is no checkpoint yet)."""
    if not Path(checkpoint).exists():
        return []
    header = read_header(checkpoint)
    if "fingerprint" not in header:
        return ["the checkpoint records no fingerprint of its run (data, model, optimiser)"]
    # through JSON, as the header stores it: tuples become lists, keys strings
    return _differences(header["fingerprint"], json.loads(json.dumps(fingerprint)))


def epoch_loop(
    model,
    opt_state,
    run_epoch: Callable[[int, eqx.Module, PyTree], tuple[eqx.Module, PyTree, float]],
    validate: Callable[[eqx.Module], float] | None,
    *,
    start: int,
    epochs: int,
    history: dict[str, list],
    checkpoint: str | Path | None,
    progress: bool,
    callback: Callable[[int, dict], None] | None,
    lead: bool = True,
    to_host: Callable[[PyTree], PyTree] = lambda tree: tree,
    header: dict | None = None,
):
    """The epochs `start .. epochs` shared by `fit` and `hpc.fit_distributed`.

    `run_epoch(e, model, opt_state)` returns the new model, state and mean training loss;
    a non-finite training or validation loss raises `TrainingDiverged` (carrying the last
    good model, through `to_host`) before anything is overwritten. Only the `lead`
    process shows progress and writes the checkpoint (of `to_host((model, opt_state))`,
    with `header`'s items in its header).
    """
    bar = tqdm(range(start, epochs), initial=start, total=epochs, disable=not (progress and lead),
               desc="training", unit="epoch", leave=False)  # fmt: skip
    for e in bar:
        t0 = time.perf_counter()
        new_model, new_state, train_loss = run_epoch(e, model, opt_state)
        valid_loss = validate(new_model) if validate is not None else math.nan
        for what, value in (("training", train_loss), ("validation", valid_loss)):
            if not math.isfinite(value) and not (what == "validation" and validate is None):
                bar.close()
                where = f"; last good checkpoint kept at {checkpoint}" if checkpoint else ""
                raise TrainingDiverged(
                    f"{what} loss became {value} at epoch {e + 1}: training stopped{where}",
                    to_host(model),
                    e,
                )
        model, opt_state = new_model, new_state
        history["epoch"].append(e + 1)
        history["train_loss"].append(train_loss)
        history["valid_loss"].append(valid_loss)
        history["time"].append(time.perf_counter() - t0)
        if checkpoint is not None and lead:
            meta = {**(header or {}), "epoch": e + 1, "history": history}
            write_tree(checkpoint, meta, to_host((model, opt_state)))
        bar.set_postfix(train=f"{train_loss:.4g}", valid=f"{valid_loss:.4g}")
        if callback is not None:
            callback(e + 1, {k: v[-1] for k, v in history.items()})
    bar.close()
    return model, opt_state, history


def checkpoint_epoch(path: str | Path) -> int:
    """The number of epochs completed in the checkpoint at `path`."""
    return int(read_header(path)["epoch"])
