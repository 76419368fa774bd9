"""Metrics of a trained surrogate on a dataset, and plots (matplotlib, at the edge)."""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array

from .data import Layout, Pairs, pairs
from .metrics import field_metrics
from .metrics import r2_score as r2_score  # re-exported for code written against 0.1


@eqx.filter_jit
def _apply(model, batch: Array) -> Array:
    # one compiled function for all calls: a repeat call with the same model structure and
    # batch shape reuses the compilation
    return jax.vmap(model)(batch)


def predict(model, inputs: Array, batch_size: int = 64) -> np.ndarray:
    """`model` applied to every sample of `inputs` (vmapped, in compiled batches)."""
    inputs = jnp.asarray(inputs)
    n = inputs.shape[0]
    batch_size = max(1, min(batch_size, n))
    run = _apply
    out = []
    for s in range(0, n, batch_size):
        chunk = inputs[s : s + batch_size]
        pad = batch_size - chunk.shape[0]
        if pad:
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], pad, axis=0)])
        out.append(np.asarray(run(model, chunk))[: batch_size - pad])
    return np.concatenate(out)


def evaluate(model, problem, ds) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics of `model` on dataset `ds` of `problem`; also the predictions and targets."""
    data = problem.from_dataset(ds)
    x = problem.model_input(data)
    y = np.asarray(problem.model_target(data))
    model_in = getattr(model, "input_norm", None)
    if model_in is not None and x.shape[1] != model_in.channels:
        raise ValueError(
            f"model takes {model_in.channels} input channel(s); dataset gives {x.shape[1]}"
        )
    pred = predict(model, x)
    if pred.shape != y.shape:
        raise ValueError(
            f"model output shape {pred.shape[1:]} differs from the targets' {y.shape[1:]}"
        )
    return problem.metrics(jnp.asarray(pred), jnp.asarray(y)), pred, y


def dataset_problem(ds: xr.Dataset, name: str = ""):
    """The problem of `ds` when one can be found without importing what the file names
    (built-in, plugin, imported module, or named by the user), else None."""
    from .problems import problem_of_dataset

    if not name and "problem" not in ds.attrs:
        return None
    try:
        return problem_of_dataset(ds, name=name or None)
    except ValueError:
        if name:
            raise
        return None


def score(problem, pred: np.ndarray, data: Pairs) -> dict[str, float]:
    """The problem's metrics, or for own data relative L2, RMSE, max error and (regular
    grids) relative H1."""
    if problem is not None and tuple(data.layout.targets) == tuple(problem.model_targets):
        return problem.metrics(jnp.asarray(pred), jnp.asarray(data.y))
    return field_metrics(jnp.asarray(pred), jnp.asarray(data.y), h1=data.regular_grid())


def model_layout(header: dict, ds: xr.Dataset) -> Layout:
    """The layout a model file records; files of 0.1 record only their problem."""
    if "data" in header and isinstance(header["data"], dict) and "inputs" in header["data"]:
        return Layout.from_json(header["data"])
    problem = dataset_problem(ds)
    if problem is None:
        raise ValueError(
            "the model file records neither its variables nor a problem, and the dataset "
            "names no problem"
        )
    p = pairs(ds, problem.model_inputs, problem.model_targets)
    return p.layout


def evaluate_dataset(model, ds: xr.Dataset, layout: Layout) -> tuple[dict, np.ndarray, Pairs]:
    """Metrics of `model` on `ds`, whose variables must be those of `layout` (the model's);
    also the predictions and the pairs."""
    data = pairs(ds, layout=layout)
    model_in = getattr(model, "input_norm", None)
    if model_in is not None and data.x.shape[1] != model_in.channels:
        raise ValueError(
            f"model takes {model_in.channels} input channel(s); dataset gives {data.x.shape[1]}"
        )
    pred = predict(model, data.x)
    if pred.shape != data.y.shape:
        raise ValueError(
            f"model output shape {pred.shape[1:]} differs from the targets' {data.y.shape[1:]}"
        )
    return score(dataset_problem(ds), pred, data), pred, data


def write_metrics(path: str | Path, metrics: dict) -> Path:
    from ._atomic import write_text

    return write_text(path, json.dumps(metrics, indent=2) + "\n")


def plot_predictions(
    path: str | Path,
    x: np.ndarray,
    inputs: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray,
    n: int = 4,
    title: str = "",
) -> Path:
    """Prediction vs truth for the first `n` samples of a 1-D problem (or 2-D images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._atomic import atomic_path

    n = min(n, pred.shape[0])
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the PNG file to write")
    if pred.ndim not in (3, 4):
        raise ValueError(f"can plot 1-D or 2-D fields, got predictions of shape {pred.shape}")
    if pred.ndim == 3:  # (sample, channel, x): input on top, truth and surrogate below
        fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 4.6), squeeze=False, sharex=True)
        for i in range(n):
            axes[0][i].plot(x, inputs[i, 0], color="0.4", lw=1)
            axes[0][i].set_title(f"input {i}", fontsize=9)
            ax = axes[1][i]
            ax.plot(x, true[i, 0], color="k", lw=1.5, label="truth")
            ax.plot(x, pred[i, 0], "--", color="tab:red", lw=1.5, label="surrogate")
            err = np.linalg.norm(pred[i] - true[i]) / np.linalg.norm(true[i])
            ax.set_title(f"output {i}: rel. L2 {err:.3g}", fontsize=9)
            ax.set_xlabel("x")
        axes[1][0].legend(fontsize=8)
    elif pred.ndim == 4:  # (sample, channel, x, y)
        fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 7.5), squeeze=False)
        for i in range(n):
            for row, (img, label) in enumerate(
                [
                    (true[i, 0], "truth"),
                    (pred[i, 0], "surrogate"),
                    (pred[i, 0] - true[i, 0], "error"),
                ]
            ):
                im = axes[row][i].imshow(img, origin="lower", cmap="RdBu_r" if row == 2 else None)
                axes[row][i].set_title(f"{label} {i}", fontsize=9)
                axes[row][i].axis("off")
                fig.colorbar(im, ax=axes[row][i], fraction=0.046)
    try:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        # the temporary file's name does not end in .png: say the format
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
