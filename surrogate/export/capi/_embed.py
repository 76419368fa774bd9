"""Python half of libsurrogate (see surrogate.h), run by cffi inside the host program.

It needs only jax and numpy, not the `surrogate` package: an export holds the model's whole
computation (weights and normalization included) as serialized StableHLO, which
`jax.export.deserialize` reads back. Every entry point catches its own errors and returns a
code with a message, so a bad path or a wrong size never takes the host program down.
"""

import json
import os

from _surrogate_capi import ffi, lib

_model: dict = {}
_error = [ffi.new("char[]", b"")]


def _fail(code: int, message: str) -> int:
    _error[0] = ffi.new("char[]", message.encode("utf-8", "replace"))
    return code


def _clear() -> None:
    if len(_error[0]) > 1:
        _error[0] = ffi.new("char[]", b"")


def _load(folder: str) -> dict:
    meta_path = os.path.join(folder, "metadata.json")
    blob_path = os.path.join(folder, "model.jaxexport")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such export folder: {folder!r}")
    for path in (meta_path, blob_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} is missing; write the folder with surrogate export")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != "surrogate-export-1":
        raise ValueError(f"{meta_path!r} is not a surrogate export (format {meta.get('format')!r})")
    if meta["input_dtype"] != "float32" or meta["output_dtype"] != "float32":
        raise ValueError(f"the C API passes float32; the export takes {meta['input_dtype']}")
    import jax
    import numpy as np

    with open(blob_path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    in_shape, out_shape = tuple(meta["input_shape"]), tuple(meta["output_shape"])
    if tuple(exported.in_avals[0].shape) != in_shape:
        raise ValueError(f"model.jaxexport takes {exported.in_avals[0].shape}, not {in_shape}")
    return {
        "call": jax.jit(exported.call),  # compiled once, on the first evaluation
        "np": np,
        "in_shape": in_shape,
        "out_shape": out_shape,
        "n_in": int(np.prod(in_shape)),
        "n_out": int(np.prod(out_shape)),
    }


@ffi.def_extern(error=lib.SURROGATE_ERR_PYTHON)
def surrogate_init(folder):
    _clear()
    _model.clear()
    if folder == ffi.NULL:
        return _fail(lib.SURROGATE_ERR_LOAD, "surrogate_init: the folder is a NULL pointer")
    folder = ffi.string(folder).decode("utf-8", "replace")
    try:
        loaded = _load(folder)
    except ImportError as e:
        return _fail(lib.SURROGATE_ERR_PYTHON, f"surrogate_init: cannot import jax: {e}")
    except Exception as e:
        return _fail(lib.SURROGATE_ERR_LOAD, f"surrogate_init: {type(e).__name__}: {e}")
    _model.update(loaded)
    return lib.SURROGATE_OK


@ffi.def_extern(error=lib.SURROGATE_ERR_EVAL)
def surrogate_eval(x, n_in, y, n_out):
    _clear()
    if not _model:
        return _fail(
            lib.SURROGATE_ERR_NOT_INITIALIZED,
            "surrogate_eval: no model loaded (call surrogate_init first and check its result)",
        )
    for what, n, want, shape in (
        ("input", n_in, _model["n_in"], _model["in_shape"]),
        ("output", n_out, _model["n_out"], _model["out_shape"]),
    ):
        if n != want:
            return _fail(
                lib.SURROGATE_ERR_SIZE,
                f"surrogate_eval: the {what} has {n} values; the model's {what} has {want} "
                f"(shape {list(shape)})",
            )
    if x == ffi.NULL or y == ffi.NULL:
        return _fail(lib.SURROGATE_ERR_SIZE, "surrogate_eval: NULL input or output buffer")
    np = _model["np"]
    a = np.frombuffer(ffi.buffer(x, 4 * n_in), dtype=np.float32).reshape(_model["in_shape"])
    if not np.all(np.isfinite(a)):
        return _fail(lib.SURROGATE_ERR_EVAL, "surrogate_eval: the input holds NaN or inf")
    try:
        r = np.asarray(_model["call"](a.copy()), dtype=np.float32).reshape(-1)
    except Exception as e:
        return _fail(lib.SURROGATE_ERR_EVAL, f"surrogate_eval: {type(e).__name__}: {e}")
    np.frombuffer(ffi.buffer(y, 4 * n_out), dtype=np.float32)[:] = r
    bad = int(np.sum(~np.isfinite(r)))
    if bad:
        return _fail(lib.SURROGATE_ERR_EVAL, f"surrogate_eval: the model produced {bad} NaN/inf")
    return lib.SURROGATE_OK


@ffi.def_extern()
def surrogate_finalize():
    _clear()
    _model.clear()


@ffi.def_extern()
def surrogate_last_error():
    return _error[0]
