"""The config -> model table: names usable as `[model] type` in a training config.

This table is the edge of the package (it names models of every family and of the
applications); nothing below the CLI and the config runner imports it. A config may also
name any `@savable` class as "package.module:Class" (the user's own model).
"""

from __future__ import annotations

import importlib
import inspect

import equinox as eqx

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
    return cls(in_channels, out_channels, **spec, key=key)
