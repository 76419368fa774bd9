"""Atomic file writes: write to a temporary file in the target's folder, then rename.

A reader never sees a half-written file under the final name, and an interrupted write
leaves at most a hidden `.NAME.*.partial` file that no reader accepts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path` with the
    permissions a normally created file would have."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name one file: `os.path.samefile` where both exist (links,
    `./x` vs `x`), else the same resolved path."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_overwriting_inputs(
    outputs: dict[str, str | os.PathLike], inputs: dict[str, str | os.PathLike]
) -> None:
    """`ValueError` if an output path is one of the inputs: writing it would destroy data
    the command is reading. Keys are what the user calls the paths (e.g. "--out")."""
    for out_name, out in outputs.items():
        for in_name, source in inputs.items():
            if same_file(out, source):
                raise ValueError(
                    f"{out_name} {out} is the input {in_name} {source}: writing it would "
                    "destroy the data being read; choose another output path"
                )
