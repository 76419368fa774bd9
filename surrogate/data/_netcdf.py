"""CF-style netCDF datasets: atomic writes, checked reads, problem <-> xarray.

xarray and numpy live here, at the edge; nothing in this file is traced by JAX.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._atomic import atomic_path

SAMPLE = "sample"


def _attr_value(value: Any) -> Any:
    """netCDF attributes hold numbers, strings and 1-D numeric arrays only."""
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return "none"
    if isinstance(value, int | float | str | np.integer | np.floating):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
        return np.asarray(value)
    return json.dumps(value)


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write `ds` to `path` as netCDF4: to a temporary file in the same folder, then
    renamed, so that an interrupted write never leaves a file under the final name."""
    path = Path(path)
    ds = ds.copy()
    ds.attrs = {k: _attr_value(v) for k, v in ds.attrs.items()}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
    return path


def read_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Read a whole netCDF file into memory, with an error that names the file when it is
    missing, truncated or not netCDF."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such dataset: {path}")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return ds.load()
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read {path} as netCDF (truncated or not netCDF): {e}") from None


def problem_to_dataset(
    problem, inputs: Mapping[str, Any], outputs: Mapping[str, Any], *, seed: int | None = None
) -> xr.Dataset:
    """Build the CF dataset of `problem` from batched inputs and outputs."""
    variables = problem.variables()
    coords = problem.coords()
    data = {**inputs, **outputs}
    data_vars = {}
    for name, var in variables.items():
        if name not in data:
            if var.optional:
                continue
            raise ValueError(f"{problem.name}: missing variable {name!r} for the dataset")
        values = np.asarray(data[name])
        dims = (SAMPLE, *var.dims)
        if values.ndim != len(dims):
            raise ValueError(
                f"{problem.name}: variable {name!r} has shape {values.shape}, "
                f"expected dimensions {dims}"
            )
        data_vars[name] = xr.Variable(
            dims, values, attrs={"units": var.units, "long_name": var.long_name, "role": var.role}
        )
    n = next(iter(data_vars.values())).shape[0]
    xr_coords: dict[str, Any] = {
        SAMPLE: (SAMPLE, np.arange(n, dtype=np.int64), {"long_name": "sample index"})
    }
    for cname, c in coords.items():
        attrs = {"units": c.units, "long_name": c.long_name}
        if c.axis:
            attrs["axis"] = c.axis
        xr_coords[cname] = (cname, np.asarray(c.values), attrs)
    ds = xr.Dataset(data_vars, coords=xr_coords)
    ds.attrs.update(problem.attributes())
    ds.attrs["problem_options"] = json.dumps(problem.options())
    if seed is not None:
        ds.attrs["seed"] = int(seed)
    return ds


def problem_from_dataset(problem, ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The arrays of `problem`'s variables in `ds`, checked for presence, dims and NaN."""
    out = {}
    for name, var in problem.variables().items():
        if name not in ds:
            if var.optional:
                continue
            raise ValueError(
                f"dataset has no variable {name!r} (problem {problem.name!r} "
                f"needs {sorted(problem.variables())})"
            )
        da = ds[name]
        dims = (SAMPLE, *var.dims)
        if tuple(da.dims) != dims:
            raise ValueError(f"variable {name!r} has dimensions {tuple(da.dims)}, expected {dims}")
        values = da.values
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            bad = int(np.sum(~np.isfinite(values)))
            raise ValueError(f"variable {name!r} holds {bad} NaN or infinite value(s)")
        out[name] = values
    return out


def problem_of_dataset(ds: xr.Dataset):
    """Rebuild the problem that generated `ds` from its global attributes."""
    from ..problems import get

    if "problem" not in ds.attrs:
        raise ValueError("dataset has no 'problem' attribute: not written by surrogate")
    options = json.loads(ds.attrs.get("problem_options", "{}"))
    return get(ds.attrs["problem"], **options)
