"""The one name -> problem table (used by the CLI), plugins, and `module:Class` problems.

A problem is found by
- its name among the built-in problems (`_BUILTIN`, the package's one string registry);
- its name among installed plugins: entry points of the group `surrogate.problems`
  (`heat = "my_pkg.heat:Heat"` in the plugin's pyproject), shown by `surrogate list`;
- `"module:Class"`, which imports `module`. Only a user's own command or config may name
  one: a dataset that records a `module:Class` problem is resolved only when that module is
  already imported (`problem_of_dataset(..., trusted=False)`), so reading a file never
  imports what the file names.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing
from importlib.metadata import entry_points
from typing import Any

from ._base import Problem

ENTRY_POINT_GROUP = "surrogate.problems"

_BUILTIN: dict[str, str] = {
    "burgers": "surrogate.problems.burgers:Burgers",
    "darcy": "surrogate.problems.darcy:Darcy",
    "navier_stokes": "surrogate.problems.navier_stokes:NavierStokes",
    "lorenz96": "surrogate.problems.lorenz96:Lorenz96Closure",
    "convection": "surrogate.problems.convection:Convection",
    "room_acoustics": "surrogate.problems.room_acoustics:RoomAcoustics",
    "ignition": "surrogate.problems.ignition:Ignition",
    "gravity_waves": "surrogate.problems.gravity_waves:GravityWaves",
}


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of the built-in and installed (entry-point) problems."""
    return sorted(set(_BUILTIN) | set(_plugins()))


def _class_of(path: str, *, trusted: bool) -> type[Problem]:
    module, _, cls_name = path.partition(":")
    if not module or not cls_name or ":" in cls_name:
        raise ValueError(f"a problem path looks like package.module:Class, got {path!r}")
    if module not in sys.modules:
        if not trusted:
            raise ValueError(
                f"the dataset names problem {path!r}, which is neither built in nor an "
                "installed plugin; import its module first, or name it yourself "
                f"([data] problem = {path!r})"
            )
        try:
            importlib.import_module(module)
        except Exception as e:  # missing, or failing on import (as a broken plugin is said)
            why = str(e) if isinstance(e, ImportError) else f"{type(e).__name__}: {e}"
            raise ValueError(f"cannot import problem module {module!r}: {why}") from None
    cls = getattr(sys.modules[module], cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Problem)):
        raise ValueError(f"{path!r} is not a surrogate.problems.Problem subclass")
    return cls


def problem_class(name: str, *, trusted: bool = True) -> type[Problem]:
    """The class of problem `name`: built-in, plugin, or "module:Class"."""
    if name in _BUILTIN:
        return _class_of(_BUILTIN[name], trusted=True)
    plugins = _plugins()
    if name in plugins:
        try:
            cls = plugins[name].load()
        except Exception as e:  # a broken plugin: say which one
            raise ValueError(f"problem plugin {name!r} failed to load: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Problem)):
            raise ValueError(f"plugin {name!r} is not a surrogate.problems.Problem subclass")
        return cls
    if ":" in name:
        return _class_of(name, trusted=trusted)
    raise ValueError(
        f"unknown problem {name!r}; available: {', '.join(available())} "
        "(or package.module:Class)"
    )


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


def get(name: str, *, trusted: bool = True, **options: Any) -> Problem:
    """The problem `name` with `options` (strings from the command line are converted)."""
    cls = problem_class(name, trusted=trusted)
    types = option_types(cls)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for problem {name!r}; options: {sorted(types)}"
        )
    kwargs = {k: _coerce(k, v, types[k]) for k, v in options.items()}
    return cls(**kwargs)
