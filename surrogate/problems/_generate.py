"""Dataset generation: sample inputs, run the reference solver, build the CF dataset.

Sample i always uses `fold_in(key(seed), i)`, so any subset of indices (a shard) holds
exactly the samples the whole dataset would hold at those indices.
"""

from __future__ import annotations

from contextlib import nullcontext

import equinox as eqx
import jax
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..data import SAMPLE


def generate(
    problem,
    n: int | None = None,
    *,
    seed: int,
    indices=None,
    batch_size: int = 32,
    progress: bool = False,
) -> xr.Dataset:
    """Generate samples `indices` (default `range(n)`) of `problem` as an `xr.Dataset`.

    Samples are solved `batch_size` at a time by one compiled, vmapped solve (the last batch
    padded, so that one compilation serves all).
    """
    if indices is None:
        if n is None or n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        indices = np.arange(n)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError("indices must be a non-empty 1-D list of sample numbers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root = jax.random.key(int(seed))
    batch_size = min(batch_size, indices.size)

    @eqx.filter_jit
    def run(idx):
        inputs = jax.vmap(problem.sample_input)(problem.sample_keys(root, idx))
        outputs = jax.vmap(problem.solve)(inputs)
        return problem.store_inputs(inputs), outputs

    chunks = []
    starts = range(0, indices.size, batch_size)
    for s in tqdm(starts, disable=not progress, desc=f"generating {problem.name}", leave=False):
        idx = indices[s : s + batch_size]
        pad = batch_size - idx.size
        padded = np.concatenate([idx, np.repeat(idx[-1:], pad)]) if pad else idx
        # a problem with `needs_x64` (a stiff reference solver) is solved in float64
        with jax.enable_x64(True) if problem.needs_x64 else nullcontext():
            stored, outputs = jax.device_get(run(padded))
        chunks.append(
            jax.tree_util.tree_map(lambda a, m=idx.size: np.asarray(a)[:m], (stored, outputs))
        )
    stored, outputs = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *chunks)
    for name, values in {**stored, **outputs}.items():
        bad = ~np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)
        if bad.any():
            raise ValueError(
                f"the reference solver produced NaN/inf in {name!r} for sample(s) "
                f"{indices[bad][:10].tolist()}; check the problem's options "
                f"(e.g. time step) for {problem.name}"
            )
    ds = problem.to_dataset(stored, outputs, seed=seed)
    return ds.assign_coords({SAMPLE: (SAMPLE, indices, ds[SAMPLE].attrs)})
