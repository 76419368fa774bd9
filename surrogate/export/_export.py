"""Export a trained surrogate for a host code in C or Fortran.

`export_model` traces the model for one fixed input shape with `jax.export` and writes the
serialized StableHLO (weights and normalization included, since a `NormalizedModel` is one
module) with a `metadata.json` of shapes, dtypes and versions. `build_c_library` builds
`libsurrogate.so`, whose four C functions (`capi/surrogate.h`) load such a folder and
evaluate it: cffi's embedding mode starts the Python interpreter of the build environment
inside the host program on the first call, and that interpreter runs the artifact through
`jax.export.deserialize` (see `capi/_embed.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import sysconfig
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._atomic import atomic_path, refuse_overwriting_inputs, write_bytes, write_text
from .._serialization import describe, is_savable
from .._version import __version__

FORMAT = "surrogate-export-1"
ARTIFACT = "model.jaxexport"
METADATA = "metadata.json"
CAPI = Path(__file__).parent / "capi"


def export_model(
    model: Callable,
    input_shape: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    batch: int | None = None,
    source: str | os.PathLike | None = None,
) -> Path:
    """Write `model` traced for float32 inputs of `input_shape` to `out_dir`.

    `input_shape` is ONE sample's shape (e.g. `(1, 256)` for a one-channel field); with
    `batch` the export is `jax.vmap(model)` over `batch` samples. Writes `model.jaxexport`
    (`jax.export.export(...).serialize()`) and `metadata.json`; returns `out_dir`.
    """
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape should be a sequence of ints, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape needs at least one size, all >= 1; got {shape}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if source is not None:
        outputs = {
            "out_dir": out_dir,
            **{name: Path(out_dir) / name for name in (ARTIFACT, METADATA)},
        }
        refuse_overwriting_inputs(outputs, {"source": source})
    fn = jax.vmap(model) if batch else model
    full = (batch, *shape) if batch else shape
    try:
        exported = jax.export.export(jax.jit(lambda x: fn(x)))(
            jax.ShapeDtypeStruct(full, jnp.float32)
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"the model does not take inputs of shape {full}: {e}") from None
    if len(exported.out_avals) != 1:
        raise ValueError(
            f"the C API returns one array; the model returns {len(exported.out_avals)} arrays"
        )
    out_aval = exported.out_avals[0]
    if out_aval.dtype != jnp.float32:
        raise ValueError(f"the C API passes float32; the model returns {out_aval.dtype}")
    meta = {
        "format": FORMAT,
        "input_shape": list(full),
        "input_dtype": "float32",
        "output_shape": list(out_aval.shape),
        "output_dtype": str(out_aval.dtype),
        "batch": batch,
        "layout": "C order (row-major), flat float32 buffers",
        "normalization": "included (the model maps physical units to physical units)"
        if type(model).__name__ == "NormalizedModel"
        else "none (the model's own inputs and outputs)",
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "surrogate_version": __version__,
        "jax_version": jax.__version__,
        "source": None if source is None else str(source),
    }
    if is_savable(type(model)):
        meta["model"] = describe(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # metadata.json is the commit mark, written last: a folder being re-exported (or whose
    # export was killed half-way) has none, and `load_export` refuses it instead of pairing
    # a new artifact with old metadata
    (out / METADATA).unlink(missing_ok=True)
    write_bytes(out / ARTIFACT, bytes(exported.serialize()))
    write_text(out / METADATA, json.dumps(meta, indent=2) + "\n")
    return out


def load_export(export_dir: str | os.PathLike) -> Callable[[Array], Array]:
    """The function an export folder holds, callable from Python (checks the shape)."""
    folder = Path(export_dir)
    if not (folder / METADATA).is_file() or not (folder / ARTIFACT).is_file():
        raise FileNotFoundError(f"{folder} holds no surrogate export ({METADATA}, {ARTIFACT})")
    meta = json.loads((folder / METADATA).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / METADATA} is not a surrogate export")
    exported = jax.export.deserialize(bytearray((folder / ARTIFACT).read_bytes()))
    shape = tuple(meta["input_shape"])
    call = jax.jit(exported.call)

    def run(x: Float[Array, " *shape"]) -> Array:
        x = jnp.asarray(x, jnp.float32)
        if x.shape != shape:
            raise ValueError(f"the export takes inputs of shape {shape}, got {x.shape}")
        return call(x)

    return run


def _c_string(text: str) -> str:
    """A C string literal of `text` (octal escapes for anything unusual)."""
    body = "".join(
        chr(b) if 32 <= b < 127 and chr(b) not in '"\\?' else f"\\{b:03o}" for b in text.encode()
    )
    return f'"{body}"'


def _cdef(header: str) -> str:
    """The declarations cffi needs, taken from the public header (one source of truth)."""
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    keep = [
        line.strip()
        for line in text.splitlines()
        if re.match(r"#define SURROGATE_[A-Z_]+ \d+$", line.strip()) or line.strip().endswith(");")
    ]
    return "\n".join(keep)


def build_c_library(out_dir: str | os.PathLike, *, verbose: bool = False) -> Path:
    """Build `libsurrogate.so` (and copy `surrogate.h`) into `out_dir`; returns its path.

    Needs cffi, a C compiler and a shared libpython. The library runs the interpreter and
    packages of the environment that built it: rebuild it after moving that environment.
    """
    try:
        import cffi
    except ImportError:
        raise ImportError("building the C library needs cffi: pip install cffi") from None
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ValueError(
            "this Python has no shared libpython (built without --enable-shared); "
            "the C library embeds the interpreter and needs one"
        )
    header = (CAPI / "surrogate.h").read_text()
    dirs = list(dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]))
    ffi = cffi.FFI()
    ffi.embedding_api(_cdef(header))
    libdir = sysconfig.get_config_var("LIBDIR")
    ffi.set_source(
        "_surrogate_capi",
        f"#define SURROGATE_SITE_DIRS {_c_string(os.pathsep.join(dirs))}\n"
        + (CAPI / "surrogate_capi.c").read_text(),
        include_dirs=[str(CAPI)],
        extra_link_args=[f"-Wl,-rpath,{libdir}"] if libdir else [],
    )
    ffi.embedding_init_code((CAPI / "_embed.py").read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="surrogate-capi-") as build:
        try:
            built = ffi.compile(tmpdir=build, target="libsurrogate.*", verbose=verbose)
        except cffi.VerificationError as e:  # no C compiler, no Python headers, ...
            raise OSError(f"building libsurrogate failed: {e}") from None
        target = out / Path(built).name
        with atomic_path(target) as tmp:
            shutil.copyfile(built, tmp)
    with atomic_path(out / "surrogate.h") as tmp:
        shutil.copyfile(CAPI / "surrogate.h", tmp)
    return target
