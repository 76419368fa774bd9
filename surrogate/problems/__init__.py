"""Problem definitions and the one name -> problem table (used by the CLI)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any

from ._base import Coordinate as Coordinate
from ._base import Problem as Problem
from ._base import Variable as Variable

# The one string registry of the package (STYLE.md): CLI names -> "module:Class".
_REGISTRY: dict[str, str] = {
    "burgers": "surrogate.problems.burgers:Burgers",
    "darcy": "surrogate.problems.darcy:Darcy",
    "navier_stokes": "surrogate.problems.navier_stokes:NavierStokes",
    "lorenz96": "surrogate.problems.lorenz96:Lorenz96Closure",
    "convection": "surrogate.problems.convection:Convection",
    "room_acoustics": "surrogate.problems.room_acoustics:RoomAcoustics",
    "ignition": "surrogate.problems.ignition:Ignition",
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def problem_class(name: str) -> type[Problem]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; available: {', '.join(available())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def option_types(cls: type[Problem]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(cls) if f.init}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    if not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise ValueError(f"option {name!r} expects {kind.__name__}, got {value!r}") from None
    return value


def get(name: str, **options: Any) -> Problem:
    """The problem `name` with `options` (strings from the command line are converted)."""
    cls = problem_class(name)
    types = option_types(cls)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for problem {name!r}; options: {sorted(types)}"
        )
    kwargs = {k: _coerce(k, v, types[k]) for k, v in options.items()}
    return cls(**kwargs)
