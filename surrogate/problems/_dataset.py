"""A problem's CF dataset: problem <-> xarray, and the problem a dataset names.

The layout is declared by the problem (`coords()`, `variables()`); this module builds the
`xr.Dataset` from batched inputs and outputs, checks a dataset read back (presence, dims,
NaN), and finds the problem of a dataset from its global attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..data import SAMPLE


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
    # what a surrogate maps, so that the dataset trains without its problem class
    ds.attrs["model_inputs"] = " ".join(problem.model_inputs)
    ds.attrs["model_targets"] = " ".join(problem.model_targets)
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


def problem_of_dataset(ds: xr.Dataset, *, name: str | None = None):
    """Rebuild the problem that generated `ds` from its global attributes.

    A built-in or plugin problem is found by its name. A `module:Class` problem (recorded in
    `problem_class`) is found only when its module is already imported, or when the caller
    names it (`name`, e.g. from the user's config): reading a file never imports what the
    file names.
    """
    from ._registry import available, get

    recorded = ds.attrs.get("problem")
    recorded_class = ds.attrs.get("problem_class")
    if recorded is None and name is None:
        raise ValueError(
            "dataset has no 'problem' attribute: not written by surrogate (name its "
            "variables with [data] inputs = [...] and targets = [...] to train on it)"
        )
    if name is not None and recorded is not None and name not in (recorded, recorded_class):
        raise ValueError(f"the dataset was written by problem {recorded!r}, not {name!r}")
    try:
        options = json.loads(ds.attrs.get("problem_options", "{}"))
    except (json.JSONDecodeError, TypeError):
        raise ValueError("dataset attribute 'problem_options' is not JSON") from None
    if not isinstance(options, dict):
        raise ValueError("dataset attribute 'problem_options' is not a JSON object")
    if name is not None:
        return get(name, trusted=True, **options)
    if str(recorded) in available():
        return get(str(recorded), **options)
    return get(str(recorded_class or recorded), trusted=False, **options)
