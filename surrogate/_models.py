"""The config -> model table: names usable as `[model] type` in a training config.

This table is the edge of the package (it names models of every family and of the
applications); nothing below the CLI and the config runner imports it. A config may also
name any `@savable` class as "package.module:Class" (the user's own model).
"""

from __future__ import annotations

import importlib
import inspect
import math

import equinox as eqx
import jax

from ._resources import format_bytes, memory
from ._serialization import is_savable

# name -> (module, class); imported when used, so that `surrogate list` stays light
_MODELS: dict[str, tuple[str, str]] = {
    "fno": ("surrogate.operators", "FNO"),
    "mgno": ("surrogate.operators", "MgNO"),
    "deeponet": ("surrogate.operators", "DeepONetOperator"),
    "pnode": ("surrogate.applications.ignition", "PNODE"),
    "mlp": ("surrogate.applications.ignition", "TrajectoryMLP"),
}

# constructor arguments filled from the data, never from the [model] table
_FROM_DATA = ("self", "key", "in_channels", "out_channels", "dtype")


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_class(kind: str) -> type:
    """The class of `[model] type = kind`: a table name or "package.module:Class"."""
    if kind in _MODELS:
        module, name = _MODELS[kind]
        return getattr(importlib.import_module(module), name)
    if ":" not in kind:
        raise ValueError(
            f"unknown model type {kind!r}; available: {model_names()} (or package.module:Class)"
        )
    module, _, name = kind.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError as e:
        raise ValueError(f"cannot import model module {module!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, eqx.Module) and is_savable(cls)):
        raise ValueError(
            f"model type {kind!r} is not an equinox Module declared @surrogate.savable"
        )
    return cls


def build_model(
    spec: dict, in_channels: int, out_channels: int, *, key, context: dict | None = None
) -> eqx.Module:
    """The model of a config's [model] table; constructor arguments named in `context`
    (e.g. the dataset's `times`) and not in the table are taken from it."""
    spec = dict(spec)
    kind = spec.pop("type")
    cls = model_class(kind)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(spec) - set(params) - {"self"}) if not takes_any else []
    if unknown:
        allowed = sorted(p for p in params if p not in _FROM_DATA and p != "kwargs")
        raise ValueError(f"unknown option(s) {unknown} for model {kind!r}; options: {allowed}")
    for name in _FROM_DATA[1:]:
        if name in spec:
            raise ValueError(f"[model] {name} is set from the data; remove it from the config")
    for name, value in (context or {}).items():
        if name in params and name not in spec:
            spec[name] = value
    for name in ("modes", "sensor_shape"):
        if isinstance(spec.get(name), list):
            spec[name] = tuple(spec[name])
    for name, value in spec.items():
        _check_number(kind, name, value)

    def make():
        return cls(in_channels, out_channels, **spec, key=key)

    try:  # sizes first, by tracing the constructor without allocating
        shapes = eqx.filter_eval_shape(make)
    except Exception:  # a bad option, or a constructor that needs concrete values:
        shapes = None  # either way the real construction below says which
    try:
        need = sum(a.size * a.dtype.itemsize for a in _arrays(shapes))
        have = memory()
        if have is not None and need > have / 2:
            raise ValueError(
                f"[model] {kind}: its parameters would take {format_bytes(need)}, more than "
                f"half of this machine's {format_bytes(have)}; make it smaller"
            )
        return make()
    except (TypeError, ValueError) as e:  # the constructor's own checks, said as config
        message = str(e)
        if message.startswith("[model]"):
            raise
        raise ValueError(f"[model] {kind}: {message}") from None


# Integer model options (widths, layers, modes, levels) above this are typos, not models.
MAX_MODEL_INT = 2**16


def _check_number(kind: str, name: str, value) -> None:
    """Refuse a non-finite float or an integer beyond MAX_MODEL_INT in [model] (also
    inside a list such as `modes`), before the constructor loops over it."""
    for v in value if isinstance(value, tuple | list) else (value,):
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"[model] {kind}: {name} must be finite, got {v!r}")
        if isinstance(v, int) and abs(v) > MAX_MODEL_INT:
            raise ValueError(f"[model] {kind}: {name} must be <= {MAX_MODEL_INT} in size, got {v}")


def _arrays(tree) -> list:
    return [a for a in jax.tree_util.tree_leaves(tree) if hasattr(a, "shape")]
