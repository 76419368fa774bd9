"""Export for C/Fortran: the jax.export artifact, libsurrogate.so, and the Fortran 2008 and C
example programs, whose outputs must equal Python's; bad paths and sizes are error codes."""

import json
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import surrogate
from surrogate.cli import main
from surrogate.data import NormalizedModel, Normalizer
from surrogate.export import export_model, load_export
from surrogate.operators import FNO

EXAMPLES = Path(__file__).parents[1] / "examples" / "hpc"
N = 32  # grid points of the exported one-channel field


def _sine(n: int) -> np.ndarray:
    """The input the example programs build: sin(2 pi i / n) in double, stored as float."""
    return np.sin(2 * np.pi * np.arange(n) / n).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A saved FNO with non-trivial normalizers, exported and built by the CLI."""
    root = tmp_path_factory.mktemp("export")
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    net = FNO(1, 1, modes=(6,), width=8, n_layers=2, key=k1)
    model = NormalizedModel(
        net,
        Normalizer(1, jax.random.normal(k2, (1,)), [0.7]),
        Normalizer(1, jax.random.normal(k3, (1,)), [2.5]),
    )
    surrogate.save(root / "model.eqx", model)
    argv = ["export", root / "model.eqx", "--input-shape", f"1,{N}", "--out", root / "exp"]
    assert main([str(a) for a in [*argv, "--build-c"]]) == 0
    loaded = surrogate.load(root / "model.eqx")
    expected = np.asarray(loaded(jnp.asarray(_sine(N)).reshape(1, N))).reshape(-1)
    return root / "exp", loaded, expected


def _compile(cmd: list, cwd: Path) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr


def _run(program: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(program), *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def fortran_demo(exported, tmp_path_factory):
    if shutil.which("gfortran") is None:
        pytest.skip("gfortran is not installed (apt-get install -y gfortran)")
    folder = exported[0]
    build = tmp_path_factory.mktemp("fortran")
    sources = [EXAMPLES / "fortran" / "surrogate_mod.f90", EXAMPLES / "fortran" / "demo.f90"]
    _compile(
        ["gfortran", "-std=f2008", "-Wall", "-Werror", "-ffpe-summary=none", "-J", build,
         *sources, "-L", folder, "-lsurrogate", f"-Wl,-rpath,{folder}", "-o", build / "demo"],
        build,
    )  # fmt: skip
    return build / "demo"


def test_metadata_and_python_roundtrip(exported):
    folder, model, expected = exported
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["input_shape"] == [1, N] and meta["output_shape"] == [1, N]
    assert meta["input_dtype"] == meta["output_dtype"] == "float32"
    assert meta["platforms"] == ["cpu"] and meta["normalization"].startswith("included")
    assert meta["model"]["class"].endswith("NormalizedModel")
    x = jnp.asarray(_sine(N)).reshape(1, N)
    got = np.asarray(load_export(folder)(x)).reshape(-1)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)
    # normalization travels inside: the bare network gives something else
    bare = np.asarray(model.model(x)).reshape(-1)
    assert np.max(np.abs(bare - expected)) > 1e-2
    with pytest.raises(ValueError, match=r"takes inputs of shape \(1, 32\), got \(1, 31\)"):
        load_export(folder)(jnp.zeros((1, 31)))


def test_fortran_program_matches_python(exported, fortran_demo):
    folder, _, expected = exported
    r = _run(fortran_demo, folder, N, N)
    assert r.returncode == 0, r.stderr
    got = np.array([float(v) for v in r.stdout.split()], dtype=np.float64)
    assert got.shape == (N,)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "args,code,message",
    [
        ((N + 1, N), 2, f"the input has {N + 1} values; the model's input has {N}"),
        ((N, N - 2), 2, f"the output has {N - 2} values; the model's output has {N}"),
        (("missing", N, N), 3, "no such export folder: '.*missing'"),
    ],
)
def test_fortran_errors_are_codes_and_messages(exported, fortran_demo, args, code, message):
    folder = exported[0]
    if args[0] == "missing":
        args = (folder.parent / "missing", *args[1:])
    else:
        args = (folder, *args)
    r = _run(fortran_demo, *args)
    assert r.returncode == 1, (r.returncode, r.stderr)  # the program's own stop, no signal
    assert f"failed (code {code})" in r.stderr and r.stdout == ""
    assert __import__("re").search(message, r.stderr), r.stderr


def test_c_program_matches_python_and_reports_errors(exported, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    folder, _, expected = exported
    program = tmp_path / "demo"
    _compile(
        [cc, "-std=c99", "-Wall", "-Werror", EXAMPLES / "c" / "demo.c", "-I", folder,
         "-L", folder, "-lsurrogate", f"-Wl,-rpath,{folder}", "-lm", "-o", program],
        tmp_path,
    )  # fmt: skip
    r = _run(program, folder, N, N)
    assert r.returncode == 0, r.stderr
    got = np.array([float(v) for v in r.stdout.split()])
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.json").write_text("{}")
    (tmp_path / "broken" / "model.jaxexport").write_bytes(b"not flatbuffers")
    r = _run(program, tmp_path / "broken", N, N)
    assert r.returncode == 1 and "surrogate_init failed (code 3)" in r.stderr
    assert "is not a surrogate export" in r.stderr


def test_c_abi_codes_in_process(exported, tmp_path):
    """The four C functions through ctypes, in this interpreter (which the library then
    uses): the codes of surrogate.h, messages, and output written even when it is NaN."""
    import ctypes

    folder, _, expected = exported
    lib = ctypes.CDLL(str(folder / "libsurrogate.so"))
    lib.surrogate_last_error.restype = ctypes.c_char_p
    lib.surrogate_eval.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
    x, y = _sine(N), np.zeros(N, np.float32)

    def evaluate(x, y):
        code = lib.surrogate_eval(x.ctypes.data, x.size, y.ctypes.data, y.size)
        return code, lib.surrogate_last_error().decode()

    lib.surrogate_finalize()
    code, message = evaluate(x, y)
    assert code == 1 and "no model loaded" in message
    assert lib.surrogate_init(None) == 3
    assert "NULL pointer" in lib.surrogate_last_error().decode()
    assert lib.surrogate_init(str(folder).encode()) == 0 and lib.surrogate_last_error() == b""
    assert evaluate(x, y) == (0, "")
    np.testing.assert_allclose(y, expected, atol=1e-6, rtol=1e-6)
    bad = x.copy()
    bad[5] = np.nan
    assert evaluate(bad, y) == (4, "surrogate_eval: the input holds NaN or inf")
    # a model that yields NaN: the output is written, and the call says so
    export_model(lambda v: jnp.log(v), (4,), tmp_path / "log")
    assert lib.surrogate_init(str(tmp_path / "log").encode()) == 0
    v, w = np.array([-1, 1, 2, 3], np.float32), np.zeros(4, np.float32)
    assert evaluate(v, w) == (4, "surrogate_eval: the model produced 1 NaN/inf")
    np.testing.assert_allclose(w[1:], np.log(v[1:]), rtol=1e-6)
    assert evaluate(x, y)[0] == 2  # the 32-point input does not fit the log model
    lib.surrogate_finalize()
    assert evaluate(v, w)[0] == 1


def test_batched_export(tmp_path):
    """`batch` exports the vmapped function; checked against numpy on a plain function."""
    export_model(lambda x: jnp.cumsum(x**2, axis=-1), (2, 5), tmp_path, batch=3)
    x = np.asarray(jax.random.normal(jax.random.key(0), (3, 2, 5)), dtype=np.float32)
    got = np.asarray(load_export(tmp_path)(x))
    np.testing.assert_allclose(got, np.cumsum(x.astype(np.float64) ** 2, axis=-1), rtol=1e-6)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["input_shape"] == meta["output_shape"] == [3, 2, 5] and meta["batch"] == 3
    assert meta["normalization"].startswith("none") and "model" not in meta


def test_export_errors(tmp_path, exported, capsys):
    model = exported[1]
    with pytest.raises(ValueError, match=r"does not take inputs of shape \(2, 32\)"):
        export_model(model, (2, N), tmp_path)  # two channels into a one-channel model
    with pytest.raises(ValueError, match="the C API passes float32; the model returns int32"):
        export_model(lambda v: (v > 0).astype(jnp.int32), (3,), tmp_path)
    with pytest.raises(ValueError, match="returns one array; the model returns 2"):
        export_model(lambda v: (v, v), (3,), tmp_path)
    with pytest.raises(ValueError, match="all >= 1"):
        export_model(model, (1, 0), tmp_path)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        export_model(model, (1, N), tmp_path, batch=0)
    with pytest.raises(FileNotFoundError, match="holds no surrogate export"):
        load_export(tmp_path / "nothing")
    code = main(["export", "m.eqx", "--input-shape", "1x32", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.startswith("surrogate: error: --input-shape expects")
        and (err.count("\n") == 1)
    )
