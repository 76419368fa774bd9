"""One-file model and checkpoint format.

A file is one JSON header line (format tag, class, constructor arguments, package version,
anything else the writer adds) followed by the array leaves written by
`equinox.tree_serialise_leaves`. Loading rebuilds the module from its class and arguments
(with a dummy key: the values are overwritten) and reads the leaves into it, so a file is
self-describing and never unpickles code. Writes go to a temporary file that is renamed.
"""

from __future__ import annotations

import importlib
import io
import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from ._atomic import write_bytes
from ._version import __version__

FORMAT = "surrogate-eqx-1"


def describe(module: eqx.Module) -> dict[str, Any]:
    """{"class": "pkg.mod:Name", "config": {...}} for a module with a `config()` method;
    nested modules in the config are described recursively."""
    if not hasattr(module, "config"):
        raise TypeError(
            f"{type(module).__name__} has no config(); cannot be saved by surrogate."
            " Give it a config() returning its constructor arguments."
        )
    config = {
        k: describe(v) if isinstance(v, eqx.Module) else v for k, v in module.config().items()
    }
    cls = type(module)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "config": config}


def build(desc: dict[str, Any]) -> eqx.Module:
    """The module skeleton `desc` describes (leaves initialised with a fixed key)."""
    try:
        module_name, cls_name = desc["class"].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (KeyError, ValueError, ImportError, AttributeError) as e:
        raise ValueError(f"model file names an unknown class {desc.get('class')!r}: {e}") from None
    config = {
        k: build(v) if isinstance(v, dict) and "class" in v and "config" in v else v
        for k, v in desc["config"].items()
    }
    return cls(**config, key=jax.random.key(0))


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
    with open(path, "rb") as f:
        line = f.readline(1 << 20)
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
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
    """Write `model` (any module with `config()`) to one `.eqx` file."""
    return write_tree(path, {"model": describe(model), **extra}, model)


def load(path: str | os.PathLike) -> eqx.Module:
    """Read a model written by `save`.

    A model whose class (or a submodule's) says `needs_x64` (e.g. a PNODE through a stiff
    solve) must be loaded and run with float64 on: `with jax.enable_x64(True): ...`.
    """
    header = read_header(path)
    if "model" not in header:
        raise ValueError(f"{path} holds no model (is it a training checkpoint?)")
    if needs_x64(path) and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{path} holds a float64 model; load and run it under `with "
            "jax.enable_x64(True):` (or set JAX_ENABLE_X64=1)"
        )
    return read_tree(path, build(header["model"]))


def needs_x64(path: str | os.PathLike) -> bool:
    """Whether the model in `path` has a module class with `needs_x64` set."""

    def walk(desc: Any) -> bool:
        if not isinstance(desc, dict):
            return False
        if "class" in desc and "config" in desc:
            module_name, _, cls_name = str(desc["class"]).partition(":")
            try:
                cls = getattr(importlib.import_module(module_name), cls_name)
            except (ImportError, AttributeError, ValueError):
                return False  # `build` reports an unknown class
            if getattr(cls, "needs_x64", False):
                return True
            desc = desc["config"]
        return any(walk(v) for v in desc.values())

    return walk(read_header(path).get("model"))
