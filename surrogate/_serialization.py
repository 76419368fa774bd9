"""One-file model and checkpoint format, and the table of savable classes.

A file is one JSON header line (format tag, class, constructor arguments, package version,
anything else the writer adds) followed by the array leaves written by
`equinox.tree_serialise_leaves`. Loading rebuilds the module from its class and arguments
(with a fixed key: the values are overwritten) and reads the leaves into it.

**A file is data.** The class a file names is looked up in a table of classes declared
savable with `@savable`: the library's own (their packages are imported from a fixed
list below, never from what the file says) and those of installed plugins (entry-point
group `surrogate.models`) or of the running program. A name outside the table is refused
before anything is imported or constructed, and the arguments are checked against the
class's constructor first. Files record a class by its public path
(`surrogate.operators:FNO`); the paths that files of earlier versions recorded are mapped
to the new ones by `_RENAMED`, so those files still load.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import json
import os
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._atomic import write_bytes
from ._version import __version__

FORMAT = "surrogate-eqx-1"
PLUGIN_GROUP = "surrogate.models"

# Packages of the library whose import declares its savable classes. A file's class path
# makes the loader import one of these only, and only when the path names it.
_LIBRARY_MODULES = (
    "surrogate.data",
    "surrogate.operators",
    "surrogate.ssm",
    "surrogate.nde",
    "surrogate.applications.lorenz96",
    "surrogate.applications.convection",
    "surrogate.applications.ignition",
    "surrogate.applications.room_acoustics",
    "surrogate.applications.gravity_waves",
)

# Class paths written by surrogate 0.1.0 (private module paths) -> public paths.
_RENAMED = {
    "surrogate.data._normalize:Normalizer": "surrogate.data:Normalizer",
    "surrogate.data._normalize:NormalizedModel": "surrogate.data:NormalizedModel",
    "surrogate.operators.fno:FNO": "surrogate.operators:FNO",
    "surrogate.operators.mgno:MgNO": "surrogate.operators:MgNO",
    "surrogate.operators.deeponet:DeepONetOperator": "surrogate.operators:DeepONetOperator",
    "surrogate.nde._pnode:PNODE": "surrogate.applications.ignition:PNODE",
    "surrogate.problems._ignition_baselines:TrajectoryMLP": (
        "surrogate.applications.ignition:TrajectoryMLP"
    ),
    "surrogate.problems.room_acoustics:SourceDeepONet": (
        "surrogate.applications.room_acoustics:SourceDeepONet"
    ),
    "surrogate.closures._polynomial:PolynomialClosure": (
        "surrogate.applications.lorenz96:PolynomialClosure"
    ),
    "surrogate.closures._neural:LocalMLPClosure": "surrogate.applications.lorenz96:LocalMLPClosure",
    "surrogate.closures._neural:FNOClosure": "surrogate.applications.lorenz96:FNOClosure",
    "surrogate.closures._stochastic:AR1Closure": "surrogate.applications.lorenz96:AR1Closure",
    "surrogate.closures._convection:ConvectionSSM": (
        "surrogate.applications.convection:ConvectionSSM"
    ),
    "surrogate.closures._convection:ConvectionMLP": (
        "surrogate.applications.convection:ConvectionMLP"
    ),
}

# Arrays of at most this many elements are recorded by value in the header.
_SMALL = 64

# Activation functions a constructor argument may hold, by name.
_FUNCTIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
}


@dataclasses.dataclass(frozen=True)
class Traits:
    """What a savable class declares besides its arguments.

    `x64`: it must run in float64 (a stiff solve inside); training, evaluation and loading
    switch float64 on for it. `physical_units`: it takes and returns physical values, so the
    training runner gives it identity normalizers.
    """

    x64: bool = False
    physical_units: bool = False


@dataclasses.dataclass(frozen=True)
class _Entry:
    traits: Traits
    arguments: tuple[str, ...]  # constructor parameters recorded in a file
    var_keyword: str | None  # name of a `**options` parameter (and of the field holding it)
    takes_key: bool


_SAVABLE: dict[type, _Entry] = {}
_OLD_PATHS: dict[str, type] = {}


def savable(
    cls: type | None = None,
    *,
    x64: bool = False,
    physical_units: bool = False,
    old_paths: tuple[str, ...] = (),
):
    """Declare an `eqx.Module` class savable with `surrogate.save` / `surrogate.load`.

    Its constructor arguments are what a file records: every parameter of `__init__`
    (except the PRNG `key`) must be a field or attribute of the same name, and a
    `**options` parameter must be kept as a field of that name. A `dtype` parameter with no
    attribute is recorded as the dtype of the module's first floating-point array. Values
    are JSON numbers, strings, lists, savable modules, diffrax solvers and controllers,
    dtypes, activation functions of `jax.nn` by name, or arrays (recorded by shape and dtype:
    their values are leaves). `x64` and `physical_units` are the class's `Traits`;
    `old_paths` are "module:Class" names that earlier files used for it.

        @surrogate.savable
        class Heat(eqx.Module):
            width: int = eqx.field(static=True)
            ...
    """

    def register(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, eqx.Module)):
            raise TypeError(f"@savable takes an equinox Module class, got {cls!r}")
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        names = {f.name for f in dataclasses.fields(cls)}
        arguments, var_keyword, takes_key = [], None, False
        for p in params:
            if p.name == "key":
                takes_key = True
            elif p.kind is p.VAR_POSITIONAL:
                raise TypeError(f"@savable {cls.__name__}: *{p.name} cannot be recorded")
            elif p.kind is p.VAR_KEYWORD:
                if p.name not in names:
                    raise TypeError(
                        f"@savable {cls.__name__}: keep **{p.name} as a field {p.name!r}"
                    )
                var_keyword = p.name
            elif p.name in names or hasattr(cls, p.name) or p.name == "dtype":
                arguments.append(p.name)
            else:
                raise TypeError(
                    f"@savable {cls.__name__}: constructor argument {p.name!r} is neither a "
                    "field nor an attribute, so a file cannot record it"
                )
        _SAVABLE[cls] = _Entry(Traits(x64, physical_units), tuple(arguments), var_keyword,
                               takes_key)  # fmt: skip
        for path in old_paths:
            _OLD_PATHS[path] = cls
        return cls

    return register if cls is None else register(cls)


def is_savable(cls: type) -> bool:
    return cls in _SAVABLE


def traits(model: Any) -> Traits:
    """`Traits` of a savable class or module; for a module, `x64` holds if any savable
    module inside it needs float64 (a normalized PNODE does)."""
    if isinstance(model, type):
        return _SAVABLE[model].traits if model in _SAVABLE else Traits()
    x64 = any(traits(type(m)).x64 for m in _modules(model))
    return Traits(x64=x64, physical_units=traits(type(model)).physical_units)


def _modules(value: Any):
    if isinstance(value, eqx.Module):
        yield value
        for f in dataclasses.fields(value):
            yield from _modules(getattr(value, f.name, None))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _modules(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _modules(v)


def public_path(cls: type) -> str:
    """"package:Name" for the shortest package that exposes `cls` (its public import)."""
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None and getattr(mod, cls.__qualname__, None) is cls:
            return f"{'.'.join(parts[:i])}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


# ---- arguments <-> JSON ----------------------------------------------------------------


def _foreign(path: str) -> type | None:
    """diffrax solvers, step-size controllers and adjoints, which models take as arguments."""
    module, _, name = path.partition(":")
    if module != "diffrax":
        return None
    import diffrax

    cls = getattr(diffrax, name, None)
    bases = (diffrax.AbstractSolver, diffrax.AbstractStepSizeController, diffrax.AbstractAdjoint)
    return cls if isinstance(cls, type) and issubclass(cls, bases) else None


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, list | tuple):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}.{k}") for k, v in value.items()}}
    if isinstance(value, jax.Array | np.ndarray):
        spec = {"shape": list(value.shape), "dtype": str(value.dtype)}
        if value.size <= _SMALL and jnp.issubdtype(value.dtype, jnp.floating):
            # small arrays (a rate, a normalizer's statistics) are kept by value, so that the
            # skeleton passes the constructor's checks; the leaves restore them anyway
            spec["values"] = np.asarray(value, np.float64).ravel().tolist()
        return {"__array__": spec}
    if isinstance(value, type) and issubclass(value, np.generic) or isinstance(value, np.dtype):
        return {"__dtype__": str(np.dtype(value))}
    if isinstance(value, eqx.Module):
        if type(value) in _SAVABLE:
            return describe(value)
        path = f"{type(value).__module__.split('.')[0]}:{type(value).__qualname__}"
        if _foreign(path) is type(value):
            return {"class": path, "config": _foreign_config(value, where)}
    for name, fn in _FUNCTIONS.items():
        if value is fn:
            return {"__function__": name}
    raise TypeError(
        f"cannot save {where}: a {type(value).__name__} is not a number, string, list, "
        "array, dtype, activation function or savable module (declare its class "
        "with @surrogate.savable)"
    )


def _foreign_config(module: eqx.Module, where: str) -> dict:
    out = {}
    for f in dataclasses.fields(module):
        if not f.init:
            continue
        value = getattr(module, f.name)
        if f.default is not dataclasses.MISSING:
            try:
                unchanged = bool(value == f.default)
            except (TypeError, ValueError):  # arrays and modules do not compare to a bool
                unchanged = False
            if unchanged:
                continue
        out[f.name] = _encode(value, f"{where}.{f.name}")
    return out


def describe(module: eqx.Module) -> dict[str, Any]:
    """{"class": "package:Name", "config": {argument: value}} of a savable module."""
    cls = type(module)
    if cls not in _SAVABLE:
        raise TypeError(
            f"{cls.__name__} cannot be saved: declare its class with @surrogate.savable "
            "(its constructor arguments must be fields or attributes of the same name)"
        )
    entry = _SAVABLE[cls]
    config = {}
    for name in entry.arguments:
        if name == "dtype" and not hasattr(module, "dtype"):
            value = _first_float_dtype(module)
        else:
            value = getattr(module, name)
        config[name] = _encode(value, f"{cls.__name__}.{name}")
    if entry.var_keyword:
        options = getattr(module, entry.var_keyword)
        for k, v in dict(options).items():
            config[k] = _encode(v, f"{cls.__name__}.{k}")
    return {"class": public_path(cls), "config": config}


def _first_float_dtype(module: eqx.Module) -> Any:
    for leaf in jax.tree_util.tree_leaves(module):
        if isinstance(leaf, jax.Array | np.ndarray) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return np.dtype(leaf.dtype).type
    return np.float32


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"class", "config"}:
        return build(value)
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "__dict__" and isinstance(body, dict):
            return {k: _decode(v) for k, v in body.items()}
        if tag == "__array__" and isinstance(body, dict):
            shape = body.get("shape")
            if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
                raise ValueError(f"model file holds a bad array shape {shape!r}")
            values = body.get("values")
            if values is not None:
                if not (isinstance(values, list) and len(values) == int(np.prod(shape))
                        and all(isinstance(v, int | float) for v in values)):  # fmt: skip
                    raise ValueError("model file holds bad array values")
                return jnp.asarray(values, _dtype(body.get("dtype"))).reshape(shape)
            # ones, not zeros: a constructor may check positivity; the leaves replace them
            return jnp.ones(tuple(shape), _dtype(body.get("dtype")))
        if tag == "__dtype__":
            return _dtype(body)
        if tag == "__function__" and body in _FUNCTIONS:
            return _FUNCTIONS[body]
    raise ValueError(f"model file holds an argument it cannot read: {json.dumps(value)[:80]}")


def _dtype(name: Any) -> Any:
    allowed = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool",
               "complex64", "complex128", "uint8", "int8")  # fmt: skip
    if name not in allowed:
        raise ValueError(f"model file names an unknown dtype {name!r}")
    return jnp.dtype(name).type


def resolve(path: Any) -> type:
    """The savable class a file's "package:Name" stands for; a name outside the table is
    refused without importing anything it names."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"model file names no class (got {path!r})")
    path = _RENAMED.get(path, path)
    if path in _OLD_PATHS:
        return _OLD_PATHS[path]
    for cls in _SAVABLE:  # registered in this process (a class defined in a function, say)
        if f"{cls.__module__}:{cls.__qualname__}" == path:
            return cls
    module, name = path.split(":")
    if module not in sys.modules and module in _LIBRARY_MODULES:
        importlib.import_module(module)
    cls = getattr(sys.modules.get(module), name, None) if module in sys.modules else None
    if not (isinstance(cls, type) and cls in _SAVABLE):
        _load_plugins()
        cls = getattr(sys.modules.get(module), name, None) if module in sys.modules else None
        cls = cls if isinstance(cls, type) and cls in _SAVABLE else _OLD_PATHS.get(path)
    if cls is None:
        foreign = _foreign(path)
        if foreign is not None:
            return foreign
        raise ValueError(
            f"model file names class {path!r}, which is not a savable class of surrogate "
            "or of an installed plugin; refusing to load it"
        )
    return cls


_PLUGINS_LOADED: list[bool] = []


def _load_plugins() -> None:
    """Import the packages that installed plugins declare in `surrogate.models` (an
    installation is trusted; a file is not)."""
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED.append(True)
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not stop loading the library's models
            print(f"surrogate: plugin {ep.name!r} failed to load: {e}", file=sys.stderr)


def build(desc: Any) -> eqx.Module:
    """The module skeleton `desc` describes (leaves initialised with a fixed key)."""
    if not isinstance(desc, dict) or "class" not in desc:
        raise ValueError("model file holds no model description ('class' missing)")
    if not isinstance(desc.get("config"), dict):
        raise ValueError(f"model file gives no arguments ('config') for {desc['class']!r}")
    cls = resolve(desc["class"])
    config = desc["config"]
    if cls in _SAVABLE:
        entry = _SAVABLE[cls]
        unknown = sorted(set(config) - set(entry.arguments)) if not entry.var_keyword else []
        if unknown:
            raise ValueError(
                f"model file gives {cls.__name__} unknown argument(s) {unknown}; "
                f"it takes {sorted(entry.arguments)}"
            )
        takes_key = entry.takes_key
    else:  # a diffrax object
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"model file gives {cls.__name__} unknown argument(s) {unknown}")
        takes_key = False
    kwargs = {k: _decode(v) for k, v in config.items()}
    if takes_key:
        kwargs["key"] = jax.random.key(0)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model file's arguments for {cls.__name__} are invalid: {e}") from None


# ---- files -----------------------------------------------------------------------------


def write_tree(path: str | os.PathLike, header: dict[str, Any], tree: Any) -> Path:
    """Header line + serialised leaves of `tree`, written atomically."""
    path = Path(path)
    buf = io.BytesIO()
    buf.write((json.dumps({"format": FORMAT, "version": __version__, **header}) + "\n").encode())
    eqx.tree_serialise_leaves(buf, tree)
    write_bytes(path, buf.getvalue())
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a model file")
    with open(path, "rb") as f:
        line = f.readline(1 << 20)
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{path} is not a surrogate model file (no JSON header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a surrogate model file (format "
            f"{header.get('format') if isinstance(header, dict) else None!r})"
        )
    return header


def read_tree(path: str | os.PathLike, like: Any) -> Any:
    """Leaves of the file at `path` read into the structure of `like`."""
    path = Path(path)
    with open(path, "rb") as f:
        f.readline(1 << 20)
        try:
            return eqx.tree_deserialise_leaves(f, like)
        except Exception as e:  # numpy raises several types on truncated/mismatched data
            raise ValueError(
                f"{path}: stored arrays do not match the model "
                f"(truncated file or different architecture): {e}"
            ) from None


def save(path: str | os.PathLike, model: eqx.Module, **extra: Any) -> Path:
    """Write `model` (a module of a `@savable` class) to one `.eqx` file; `extra` items go
    into the JSON header."""
    return write_tree(path, {"model": describe(model), **extra}, model)


def model_description(path: str | os.PathLike) -> dict[str, Any]:
    header = read_header(path)
    if "model" not in header:
        raise ValueError(f"{path} holds no model (is it a training checkpoint?)")
    return header["model"]


def load(path: str | os.PathLike) -> eqx.Module:
    """Read a model written by `save`.

    A model that needs float64 (`Traits.x64`, e.g. a PNODE through a stiff solve) must be
    loaded and run with float64 on: `with jax.enable_x64(True): ...`.
    """
    desc = model_description(path)
    if needs_x64(path) and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{path} holds a float64 model; load and run it under `with "
            "jax.enable_x64(True):` (or set JAX_ENABLE_X64=1)"
        )
    return read_tree(path, build(desc))


def needs_x64(path: str | os.PathLike) -> bool:
    """Whether the model in `path` holds a module whose class needs float64."""

    def walk(value: Any) -> bool:
        if isinstance(value, list):
            return any(walk(v) for v in value)
        if not isinstance(value, dict):
            return False
        if set(value) == {"class", "config"}:
            cls = resolve(value["class"])
            return traits(cls).x64 or walk(value["config"])
        return any(walk(v) for v in value.values())

    return walk(model_description(path))
