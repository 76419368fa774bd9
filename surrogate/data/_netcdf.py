"""CF-style netCDF (and Zarr) datasets: atomic writes and checked reads.

xarray and numpy live here, at the edge; nothing in this file is traced by JAX.
"""

from __future__ import annotations

import json
import os
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
    """Read a whole netCDF file (or a Zarr store: a `.zarr` folder) into memory, with an
    error that names the file when it is missing, truncated or not netCDF/Zarr."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such dataset: {path}")
    if path.is_dir():
        if not (path.suffix == ".zarr" or (path / ".zgroup").exists() or
                (path / "zarr.json").exists()):  # fmt: skip
            raise ValueError(f"{path} is a directory, not a netCDF file or Zarr store")
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ValueError(
                f"{path} is a Zarr store; reading it needs zarr (pip install "
                "'surrogate-jax[zarr]')"
            ) from None
        try:
            with xr.open_zarr(path, consolidated=False) as ds:
                return ds.load()
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot read {path} as Zarr: {e}") from None
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return ds.load()
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read {path} as netCDF (truncated or not netCDF): {e}") from None
