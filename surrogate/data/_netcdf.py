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
    # as netCDF gives such a list back: a dataset read back is written again as it was
    if isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.number):
        return value
    return json.dumps(value)


def _drop_default_fill_values(ds: xr.Dataset) -> None:
    """No `_FillValue` where xarray would write its default NaN fill: on every coordinate
    (CF §2.5.1 forbids missing values in coordinate variables) and on data variables, whose
    values are all present (NaN is refused on reading), so that a fill value would only
    claim missing data there is none of. A fill value set on purpose (other than NaN) is
    kept on data variables. Changes the variables' encoding in place: call it on a copy."""
    for name, var in ds.variables.items():
        fill = var.encoding.get("_FillValue", var.attrs.get("_FillValue"))
        is_nan = isinstance(fill, float | np.floating) and np.isnan(fill)
        if name in ds.coords or fill is None or is_nan:
            var.attrs.pop("_FillValue", None)  # as an attribute it would clash
            var.encoding["_FillValue"] = None


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write `ds` to `path` as netCDF4: to a temporary file in the same folder, then
    renamed, so that an interrupted write never leaves a file under the final name."""
    path = Path(path)
    ds = ds.copy()
    ds.attrs = {k: _attr_value(v) for k, v in ds.attrs.items()}
    _drop_default_fill_values(ds)
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
            with xr.open_zarr(path, consolidated=False, decode_times=False) as ds:
                return ds.load()
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot read {path} as Zarr: {e}") from None
    try:
        with xr.open_dataset(path, engine="netcdf4", decode_times=False) as ds:
            return ds.load()
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read {path} as netCDF (truncated or not netCDF): {e}") from None
