"""Sharded dataset generation: one file per shard, skipped when already complete, merged.

Shard `i` of `n` holds the samples `np.array_split(range(N), n)[i]`, and sample `k` is drawn
with `fold_in(key(seed), k)` (see `Problem.sample_keys`), so the shards of a dataset hold
exactly the samples the unsharded dataset holds at the same indices, bit for bit. A shard is
*complete* when its file reads back as netCDF with the expected attributes and exactly its
samples; writes are atomic (temp file + rename, `write_dataset`), so a killed job leaves at
most a hidden `.NAME.XXXX.partial` temp file, which merging refuses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from .._atomic import refuse_overwriting_inputs
from ..data import read_dataset, write_dataset
from ..data._netcdf import SAMPLE, _attr_value
from ..problems import generate

if TYPE_CHECKING:
    from ..problems import Problem

#: attributes a shard carries on top of those of the unsharded dataset
SHARD_ATTRS = ("shard", "n_samples_total")


def shard_indices(n_total: int, n_shards: int, shard: int) -> np.ndarray:
    """Sample indices of shard `shard` of `n_shards`: `np.array_split(range(N), n)[i]`."""
    if n_total < 1:
        raise ValueError(f"number of samples must be >= 1, got {n_total}")
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard}/{n_shards}: need 0 <= i < n")
    if n_shards > n_total:
        raise ValueError(f"{n_shards} shards of {n_total} samples: some would be empty")
    # array_split's sections (the first N % n one longer) without allocating range(N)
    size, extra = divmod(n_total, n_shards)
    start = shard * size + min(shard, extra)
    return np.arange(start, start + size + (shard < extra), dtype=np.int64)


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` -> `(i, n)`."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard should look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text}: need 0 <= i < n")
    return i, n


def shard_path(directory: str | os.PathLike, shard: int, n_shards: int) -> Path:
    """The file name `generate_sharded` and the SLURM example use for shard `i` of `n`."""
    return Path(directory) / f"shard-{shard:05d}-of-{n_shards:05d}.nc"


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _show(value):
    """An attribute as the user wrote it (netCDF gives numpy scalars and arrays back)."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def _expected_attrs(problem, seed: int, n_total: int, shard: int, n_shards: int) -> dict:
    attrs = dict(problem.attributes())
    attrs["problem_options"] = json.dumps(problem.options())
    attrs.update(seed=int(seed), shard=f"{shard}/{n_shards}", n_samples_total=int(n_total))
    # compared with what netCDF gives back, so converted the way `write_dataset` converts
    return {k: _attr_value(v) for k, v in attrs.items()}


def shard_status(
    path: str | os.PathLike, problem: Problem, *, n_total: int, seed: int, shard: int, n_shards: int
) -> str:
    """The state of the shard file at `path`: "missing", "incomplete" (unreadable, or not
    exactly the shard's samples) or "complete". A readable file of a *different* dataset
    (problem, options, seed, size, shard, version) raises `ValueError`: regenerating over
    it would silently replace someone else's data."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        ds = read_dataset(path)
    except ValueError:
        return "incomplete"
    expected = _expected_attrs(problem, seed, n_total, shard, n_shards)
    for name, value in expected.items():
        if name not in ds.attrs or not _same(ds.attrs[name], value):
            raise ValueError(
                f"{path} exists and holds a different dataset ({name} = "
                f"{_show(ds.attrs.get(name))!r}, expected {_show(value)!r}); "
                "delete it or overwrite it (--overwrite)"
            )
    if SAMPLE not in ds.coords or not np.array_equal(
        ds[SAMPLE].values, shard_indices(n_total, n_shards, shard)
    ):
        return "incomplete"
    return "complete"


def generate_shard(
    problem: Problem,
    n_total: int,
    *,
    seed: int,
    shard: int,
    n_shards: int,
    out: str | os.PathLike,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[Path, bool]:
    """Generate shard `shard` of `n_shards` of an `n_total`-sample dataset into `out`.

    A complete shard file already at `out` is kept (returns `(out, False)`), so re-running a
    job array after a failure only redoes the shards that are missing; `overwrite=True`
    regenerates it. Returns `(path, generated)`.
    """
    indices = shard_indices(n_total, n_shards, shard)
    out = Path(out)
    if not overwrite:
        status = shard_status(
            out, problem, n_total=n_total, seed=seed, shard=shard, n_shards=n_shards
        )
        if status == "complete":
            return out, False
    ds = generate(problem, seed=seed, indices=indices, batch_size=batch_size, progress=progress)
    ds.attrs["shard"] = f"{shard}/{n_shards}"
    ds.attrs["n_samples_total"] = int(n_total)
    return write_dataset(ds, out), True


def _ranges(indices: np.ndarray) -> str:
    """[0 1 2 5 7 8] -> "0-2, 5, 7-8"."""
    parts, start = [], None
    for k, v in enumerate(indices):
        if start is None:
            start = v
        if k + 1 == len(indices) or indices[k + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def merge_shards(paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None):
    """Join shard files into the dataset the unsharded run would have written.

    Checks that every file is a complete shard (readable, holding exactly the samples of its
    `shard` attribute, no NaN or inf), that `out` is none of them, that all share the
    problem, its options, the seed, the total number of samples, the package version and
    the coordinates, that no shard is given twice and that none is missing (the error names
    the missing samples). Samples come out sorted;
    the shard attributes are dropped. Writes `out` atomically if given.
    """
    if not paths:
        raise ValueError("no shard files given")
    for p in paths if out is not None else ():
        refuse_overwriting_inputs({"--out": out}, {"shard": p})
    shards: dict[int, tuple[Path, xr.Dataset]] = {}
    ref = None
    for p in map(Path, paths):
        if p.name.endswith(".partial"):
            raise ValueError(
                f"{p} is the temporary file of an interrupted write, not a shard; re-run that shard"
            )
        ds = read_dataset(p)
        if "shard" not in ds.attrs or "n_samples_total" not in ds.attrs:
            raise ValueError(f"{p} is not a shard file (no 'shard' / 'n_samples_total' attribute)")
        i, n = parse_shard(ds.attrs["shard"])
        n_total = int(ds.attrs["n_samples_total"])
        expected = shard_indices(n_total, n, i)
        if SAMPLE not in ds.coords or not np.array_equal(ds[SAMPLE].values, expected):
            raise ValueError(
                f"{p} is incomplete: shard {i}/{n} should hold samples {_ranges(expected)}"
            )
        _check_finite(p, ds)
        if ref is None:
            ref = (p, ds, n)
        else:
            _check_compatible(ref[0], ref[1], p, ds)
            if n != ref[2]:
                raise ValueError(f"{p} is shard {i}/{n} but {ref[0]} is one of {ref[2]} shards")
        if i in shards:
            raise ValueError(f"shard {i}/{n} given twice: {shards[i][0]} and {p}")
        shards[i] = (p, ds)
    n_shards, n_total = ref[2], int(ref[1].attrs["n_samples_total"])
    missing = [i for i in range(n_shards) if i not in shards]
    if missing:
        samples = np.concatenate([shard_indices(n_total, n_shards, i) for i in missing])
        raise ValueError(
            f"missing shard(s) {', '.join(f'{i}/{n_shards}' for i in missing)}: samples "
            f"{_ranges(samples)} of {n_total}; generate them with --shard i/{n_shards}"
        )
    merged = xr.concat([shards[i][1] for i in range(n_shards)], dim=SAMPLE)
    merged.attrs = {k: v for k, v in ref[1].attrs.items() if k not in SHARD_ATTRS}
    if out is not None:
        write_dataset(merged, out)
    return merged


def _check_finite(path: Path, ds: xr.Dataset) -> None:
    """A shard holding NaN/inf is refused: merged, it would pass for good data."""
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.inexact):
            continue
        values = var.values.reshape(var.shape[0], -1) if var.ndim else var.values.reshape(1, -1)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            where = (
                f"sample(s) {_ranges(ds[SAMPLE].values[bad])}"
                if var.ndim and var.dims[0] == SAMPLE and SAMPLE in ds.coords
                else "its values"
            )
            raise ValueError(
                f"{path}: variable {name!r} holds NaN/inf in {where}; regenerate that shard"
            )


def _check_compatible(path_a: Path, a: xr.Dataset, path_b: Path, b: xr.Dataset) -> None:
    names = (set(a.attrs) | set(b.attrs)) - {"shard"}
    for name in sorted(names):
        if name not in a.attrs or name not in b.attrs or not _same(a.attrs[name], b.attrs[name]):
            raise ValueError(
                f"{path_b} and {path_a} are shards of different datasets: {name} is "
                f"{_show(b.attrs.get(name))!r} vs {_show(a.attrs.get(name))!r}"
            )
    if set(a.data_vars) != set(b.data_vars):
        raise ValueError(
            f"{path_b} and {path_a} hold different variables: "
            f"{sorted(b.data_vars)} vs {sorted(a.data_vars)}"
        )
    for name, coord in a.coords.items():
        if name != SAMPLE and (name not in b.coords or not coord.identical(b.coords[name])):
            raise ValueError(f"{path_b} and {path_a} have different coordinate {name!r}")
