"""Input/target arrays of any dataset, by variable name: the way own data reaches training.

A dataset is any CF-ish `xr.Dataset` (netCDF or Zarr through xarray, written by any tool)
whose variables share a first dimension, the sample axis, whatever it is called. Inputs
named together become channels and must share their other (grid) dimensions; so must the
targets. The `Layout` (names, dimensions, units) is what a trained model records, so that
another file with those variables, at another resolution, can be checked and scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

# Dimension names that are grid axes, never a sample axis (CF axis attributes say the same).
_GRID_NAMES = {"x", "y", "z", "lat", "lon", "latitude", "longitude", "level", "lev", "depth"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which variables a model maps, along which dimensions, in which units."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    sample_dim: str
    input_dims: tuple[str, ...]
    target_dims: tuple[str, ...]
    units: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "targets": list(self.targets),
            "sample_dim": self.sample_dim,
            "input_dims": list(self.input_dims),
            "target_dims": list(self.target_dims),
            "units": dict(self.units),
        }

    @classmethod
    def from_json(cls, d: Any) -> Layout:
        try:
            return cls(
                tuple(str(v) for v in d["inputs"]),
                tuple(str(v) for v in d["targets"]),
                str(d["sample_dim"]),
                tuple(str(v) for v in d["input_dims"]),
                tuple(str(v) for v in d["target_dims"]),
                {str(k): str(v) for k, v in dict(d["units"]).items()},
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("model file holds an unreadable data layout") from None


@dataclasses.dataclass(frozen=True)
class Pairs:
    """`x (sample, c_in, *grid_in)` and `y (sample, c_out, *grid_out)` as float32 numpy
    arrays, their `layout`, and the coordinates of the target grid (None for an index)."""

    x: np.ndarray
    y: np.ndarray
    layout: Layout
    coords: dict[str, np.ndarray | None]

    def regular_grid(self) -> bool:
        """Whether the targets lie on an evenly spaced grid of 1 to 3 axes of >= 3 points
        (then relative H1 by finite differences applies)."""
        if not 1 <= len(self.layout.target_dims) <= 3 or min(self.y.shape[2:]) < 3:
            return False
        for c in self.coords.values():
            if c is None:
                continue
            step = np.diff(c.astype(np.float64))
            if not (np.all(step > 0) or np.all(step < 0)):
                return False
            if not np.allclose(step, step[0], rtol=1e-5, atol=0.0):
                return False
        return True


def _names(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must name one or more variables, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a variable twice: {list(names)}")
    return names


def _sample_dim(ds: xr.Dataset, names: tuple[str, ...], given: str | None) -> str:
    if given:
        for n in names:
            dims = ds[n].dims
            if given not in dims:
                raise ValueError(f"variable {n!r} has no sample axis {given!r} (dims {dims})")
            if dims[0] != given:
                raise ValueError(
                    f"variable {n!r} has dims {dims}; the sample axis {given!r} must come first"
                )
        return given
    firsts = {n: (ds[n].dims[0] if ds[n].dims else None) for n in names}
    if None in firsts.values():
        scalar = [n for n, d in firsts.items() if d is None]
        raise ValueError(f"variable(s) {scalar} have no dimensions: no sample axis")
    if len(set(firsts.values())) > 1:
        raise ValueError(
            "cannot tell the sample axis: the variables start with different dimensions "
            f"{firsts}; set sample_dim"
        )
    dim = next(iter(firsts.values()))
    axis = str(ds[dim].attrs.get("axis", "")).upper() if dim in ds.coords else ""
    if dim.lower() in _GRID_NAMES or axis in ("X", "Y", "Z"):
        raise ValueError(
            f"no sample axis: the first dimension of {names[0]!r} is {dim!r}, a grid axis; "
            "variables need a sample dimension first (name it with sample_dim)"
        )
    return dim


def _stack(ds: xr.Dataset, names: tuple[str, ...], sample: str, what: str) -> np.ndarray:
    dims = tuple(ds[names[0]].dims[1:])
    arrays = []
    for n in names:
        da = ds[n]
        if tuple(da.dims[1:]) != dims:
            raise ValueError(
                f"{what} {names[0]!r} has dims {ds[names[0]].dims} but {n!r} has {da.dims}; "
                "variables stacked as channels must share their dimensions"
            )
        if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.complexfloating):
            raise ValueError(f"variable {n!r} holds {da.dtype} values, not real numbers")
        values = np.asarray(da.values, dtype=np.float64)
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            raise ValueError(f"variable {n!r} holds {bad} NaN or infinite value(s)")
        arrays.append(values)
    return np.stack(arrays, axis=1).astype(np.float32)


def pairs(
    ds: xr.Dataset,
    inputs: str | Sequence[str] | None = None,
    targets: str | Sequence[str] | None = None,
    *,
    sample_dim: str | None = None,
    layout: Layout | None = None,
) -> Pairs:
    """The input and target arrays of `ds`, checked.

    Name the variables (`inputs`, `targets`) or pass the `layout` a trained model recorded:
    then the file must hold those variables along the same dimensions (any sizes, for
    models that allow another resolution) and in the same units.

        ds = xr.open_dataset("my_simulation.nc")
        p = surrogate.data.pairs(ds, inputs=["a"], targets=["u"])
        p.x.shape, p.y.shape                  # (sample, 1, nx, ny) twice
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"pairs expects an xarray Dataset, got {type(ds).__name__}")
    if layout is not None:
        inputs, targets = layout.inputs, layout.targets
        if sample_dim is None and all(
            layout.sample_dim in ds[n].dims for n in (*inputs, *targets) if n in ds
        ):
            sample_dim = layout.sample_dim
    if inputs is None or targets is None:
        raise ValueError("name the input and target variables (inputs=[...], targets=[...])")
    inputs, targets = _names(inputs, "inputs"), _names(targets, "targets")
    both = (*inputs, *targets)
    missing = [n for n in both if n not in ds.data_vars]
    if missing:
        have = sorted(str(v) for v in ds.data_vars)
        raise ValueError(f"dataset has no variable(s) {missing}; it has {have}")
    sample = _sample_dim(ds, both, sample_dim)
    x = _stack(ds, inputs, sample, "input")
    y = _stack(ds, targets, sample, "target")
    if x.shape[0] == 0:
        raise ValueError(f"dataset has no samples along {sample!r}")
    units = {n: str(ds[n].attrs.get("units", "")) for n in both}
    found = Layout(inputs, targets, sample, tuple(ds[inputs[0]].dims[1:]),
                   tuple(ds[targets[0]].dims[1:]), units)  # fmt: skip
    if layout is not None:
        for what, want, got in (("inputs", layout.input_dims, found.input_dims),
                                ("targets", layout.target_dims, found.target_dims)):  # fmt: skip
            if want != got:
                raise ValueError(
                    f"the model's {what} have dimensions {want} after the sample axis; "
                    f"this dataset's have {got}"
                )
        for n in both:
            if layout.units.get(n, "") != units[n]:
                raise ValueError(
                    f"variable {n!r} is in {units[n]!r} here; the model was trained on "
                    f"{layout.units.get(n, '')!r}"
                )
    coords = {
        d: (np.asarray(ds[d].values) if d in ds.coords and ds[d].ndim == 1 else None)
        for d in found.target_dims
    }
    for d, c in coords.items():
        if c is not None and not np.issubdtype(c.dtype, np.number):
            coords[d] = None
    return Pairs(x, y, found, coords)
