"""The `Problem` contract: a sampler, a reference solver, a dataset layout and metrics.

A problem is an `eqx.Module` whose fields are its options (viscosity, resolution, ...).
Subclasses declare their coordinates and variables; the netCDF layout, the per-sample keys
and the checks on data read back are shared here, so that every problem writes and reads
datasets the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._version import __version__
from ..metrics import field_metrics


def check_option(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    integer: bool = False,
    note: str = "",
) -> None:
    """Refuse a problem option outside [low, high] ((low, high] with `low_open`), NaN and
    non-numbers included, in one line naming the option, the value and the range.

    For a problem's `__check_init__`: `check_option("viscosity", self.viscosity, 0, 1,
    low_open=True)`. `integer` also refuses a non-integral value; `note` says why the
    range is what it is.
    """
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (not integer or float(value).is_integer())
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}]"
        span = f" in {lo or '(-inf'}, {hi or 'inf)'}" if low is not None or high is not None else ""
        why = f" ({note})" if note else ""
        raise ValueError(f"{name} must be {kind}{span}{why}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Variable:
    """How one dataset variable looks on disk: its dimensions after `sample`, units, name.

    `role` is "input" (sampled: parameters, initial conditions, forcing) or "output"
    (produced by the reference solver). `optional` outputs are written only when present.
    `standard_name` is the CF standard name, where the CF standard-name table has one.
    """

    dims: tuple[str, ...]
    units: str
    long_name: str
    role: str = "output"
    optional: bool = False
    standard_name: str | None = None


@dataclasses.dataclass(frozen=True)
class Coordinate:
    """A grid dimension's values and CF attributes.

    A dimension named `time` is a CF time axis (CF §4.4): `Coordinate.time_axis`. A
    non-dimensional model time is not one: give it another name and no `axis`. A vertical
    coordinate other than pressure says which way is `positive` ("up" or "down", §4.3).
    """

    values: Any  # numpy array, kept off the traced path
    units: str
    long_name: str
    axis: str | None = None
    standard_name: str | None = None
    positive: str | None = None

    #: CF time units need a reference date; a model's clock starts at an arbitrary one
    MODEL_TIME_UNITS: ClassVar[str] = "seconds since 2000-01-01"

    @classmethod
    def time_axis(cls, seconds: Any, long_name: str) -> Coordinate:
        """The CF time axis of a model clock: `seconds` from the start of the stored run
        (what `long_name` says it is), counted from the arbitrary date of
        `MODEL_TIME_UNITS`."""
        return cls(seconds, cls.MODEL_TIME_UNITS, long_name, axis="T", standard_name="time")


class Problem(eqx.Module):
    """Abstract base of every problem. Fields of a subclass are its options.

    A subclass implements `sample_input`, `solve`, `coords` and `variables` (instantiating
    one that misses any says which), and declares as class variables its `name` and which
    variables a surrogate maps from and to (`model_inputs`, `model_targets`). `metrics`
    defaults to relative L2, RMSE and max error; `needs_x64 = True` makes `generate` solve
    in float64 (stiff solvers).

        class Heat(Problem):
            diffusivity: float = 0.01
            name: ClassVar[str] = "heat"
            model_inputs: ClassVar[tuple[str, ...]] = ("u0",)
            model_targets: ClassVar[tuple[str, ...]] = ("u",)
            def sample_input(self, key): ...
            def solve(self, inputs): ...
            def coords(self): ...
            def variables(self): ...
    """

    name: ClassVar[str]
    model_inputs: ClassVar[tuple[str, ...]]
    model_targets: ClassVar[tuple[str, ...]]
    needs_x64: ClassVar[bool] = False

    def __check_init__(self):
        cls = type(self)
        missing = [n for n in ("name", "model_inputs", "model_targets") if not hasattr(cls, n)]
        if missing:
            raise TypeError(
                f"problem {cls.__name__} does not declare {', '.join(missing)} "
                "(class variables: a name, and the variables a surrogate maps from and to)"
            )

    # ---- to implement -------------------------------------------------------------
    @abc.abstractmethod
    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        """One sample's inputs (parameters, initial condition, forcing)."""

    @abc.abstractmethod
    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """The reference solution for ONE sample; jittable and vmappable."""

    @abc.abstractmethod
    def coords(self) -> dict[str, Coordinate]:
        """Coordinates of the dataset's grid dimensions, with units."""

    @abc.abstractmethod
    def variables(self) -> dict[str, Variable]:
        """Every dataset variable: dimensions after `sample`, units, long name, role."""

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """The field's metrics for a batch of predictions of `model_targets`."""
        return field_metrics(pred, true)

    def store_inputs(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Inputs as the dataset stores them (e.g. a fine initial condition subsampled to
        the stored grid); by default unchanged."""
        return dict(inputs)

    def solver_settings(self) -> dict[str, Any]:
        """Numerical settings of the reference solver, recorded in the dataset."""
        return {}

    # ---- shared ---------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The problem's options (its dataclass fields) as plain Python values."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, jax.Array | np.ndarray):
                value = np.asarray(value).tolist()
            out[f.name] = value
        return out

    def sample_keys(self, key: PRNGKeyArray, indices: Array) -> PRNGKeyArray:
        """Per-sample keys derived from (key, sample index) only, so that a shard of a
        dataset draws exactly the samples the whole dataset would."""
        return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))

    def sample_inputs(self, key: PRNGKeyArray, n: int) -> dict[str, Array]:
        """Inputs of `n` samples: sample `i` uses `fold_in(key, i)`."""
        return jax.vmap(self.sample_input)(self.sample_keys(key, jnp.arange(n)))

    def model_input(self, data: Mapping[str, Array]) -> Array:
        """Stack this problem's `model_inputs` of a batch into `(sample, channel, *grid)`."""
        return _stack(data, self.model_inputs, self.variables())

    def model_target(self, data: Mapping[str, Array]) -> Array:
        return _stack(data, self.model_targets, self.variables())

    def to_dataset(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any], *, seed=None):
        from ._dataset import problem_to_dataset

        return problem_to_dataset(self, inputs, outputs, seed=seed)

    def from_dataset(self, ds) -> dict[str, Array]:
        from ._dataset import problem_from_dataset

        return problem_from_dataset(self, ds)

    def attributes(self) -> dict[str, Any]:
        """Global attributes a dataset of this problem carries."""
        attrs: dict[str, Any] = {
            "Conventions": "CF-1.10",
            "problem": self.name,
            "problem_class": f"{type(self).__module__}:{type(self).__qualname__}",
            "surrogate_version": __version__,
        }
        for k, v in self.options().items():
            attrs[f"option_{k}"] = v
        for k, v in self.solver_settings().items():
            attrs[f"solver_{k}"] = v
        return attrs


def _stack(data: Mapping[str, Array], names: tuple[str, ...], variables) -> Array:
    """Variables with the same grid become channels: (sample, *grid) -> (sample, c, *grid)."""
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"missing variable(s) {missing}; have {sorted(data)}")
    arrays = []
    for n in names:
        a = jnp.asarray(data[n])
        ndim = 1 + len(variables[n].dims)
        if a.ndim != ndim:
            raise ValueError(
                f"variable {n!r} should have {ndim} dimensions (sample, "
                f"{', '.join(variables[n].dims)}), got shape {a.shape}"
            )
        arrays.append(a)
    return jnp.stack(arrays, axis=1)
