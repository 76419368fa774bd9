"""Sharded generation: shards merged equal the unsharded dataset exactly, re-runs skip
complete shards, a shard killed while writing leaves nothing merge accepts, Dask runs."""

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from surrogate import problems
from surrogate.cli import main
from surrogate.data import read_dataset, write_dataset
from surrogate.hpc import merge_shards, shard_indices, shard_path, shard_status

N = 5
OPTIONS = ["--resolution", "16", "--solve-resolution", "16", "--final-time", "0.25"]


def cli(*argv):
    return main([str(a) for a in argv])


def generate_cli(out, *extra, seed=7):
    return cli(
        "generate", "burgers", "--n", N, "--seed", seed, *OPTIONS, "--out", out, "--quiet", *extra
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The unsharded dataset and the shard files for n = 2 and n = 3, all by the CLI."""
    root = tmp_path_factory.mktemp("shards")
    assert generate_cli(root / "full.nc") == 0
    shards = {}
    for n in (2, 3):
        shards[n] = [shard_path(root / f"n{n}", i, n) for i in range(n)]
        for i, path in enumerate(shards[n]):
            assert generate_cli(path, "--shard", f"{i}/{n}") == 0
    return root, shards


@pytest.mark.parametrize("n", [2, 3])
def test_merged_shards_equal_unsharded(runs, n, capsys):
    root, shards = runs
    out = root / f"merged{n}.nc"
    # given in reverse order: merge sorts by shard
    assert cli("merge", *reversed(shards[n]), "--out", out) == 0, capsys.readouterr().err
    full, merged = read_dataset(root / "full.nc"), read_dataset(out)
    xr.testing.assert_identical(merged, full)  # values bit for bit, coordinates, attributes
    assert merged.attrs == full.attrs and "shard" not in merged.attrs
    for i, path in enumerate(shards[n]):
        part = read_dataset(path)
        np.testing.assert_array_equal(part["sample"].values, shard_indices(N, n, i))
        assert part.attrs["shard"] == f"{i}/{n}" and part.attrs["n_samples_total"] == N


def test_rerun_skips_complete_shard_and_refuses_foreign_file(runs, capsys):
    root, shards = runs
    path = shards[3][1]
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert generate_cli(path, "--shard", "1/3") == 0
    assert "skipped" in capsys.readouterr().out
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert generate_cli(path, "--shard", "1/3", seed=8) == 2
    err = capsys.readouterr().err
    assert err.startswith("surrogate: error:") and "holds a different dataset (seed = 7" in err
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


_SLOW_WRITER = """
import sys, time, pathlib
import xarray.backends.netCDF4_ as backend

real_setitem = backend.BaseNetCDF4Array.__setitem__

def setitem_then_stall(self, key, value):
    real_setitem(self, key, value)
    pathlib.Path(sys.argv[1]).touch()  # some data is in the file: the write is under way
    time.sleep(120)

backend.BaseNetCDF4Array.__setitem__ = setitem_then_stall
from surrogate.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_shard_killed_while_writing_leaves_nothing_merge_accepts(runs, tmp_path, capsys):
    root, shards = runs
    folder = tmp_path / "job"
    folder.mkdir()
    shutil.copy(shards[2][0], folder / shards[2][0].name)
    target, marker = shard_path(folder, 1, 2), tmp_path / "writing"
    script = tmp_path / "slow_writer.py"
    script.write_text(_SLOW_WRITER)
    argv = ["generate", "burgers", "--n", N, "--seed", 7, *OPTIONS, "--out", target]
    proc = subprocess.Popen(
        [sys.executable, script, marker, *map(str, argv), "--shard", "1/2", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the shard never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no handler runs: as a node failure or OOM kill
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert not target.exists()
    partial = [p for p in folder.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and partial[0].name.startswith(f".{target.name}.")
    assert sorted(folder.glob("*.nc")) == [shard_path(folder, 0, 2)]  # `merge job/*.nc`
    out = tmp_path / "merged.nc"
    assert cli("merge", *sorted(folder.glob("*.nc")), "--out", out) == 2
    assert "missing shard(s) 1/2: samples 3-4 of 5" in capsys.readouterr().err
    assert cli("merge", shard_path(folder, 0, 2), partial[0], "--out", out) == 2
    assert "temporary file of an interrupted write" in capsys.readouterr().err
    renamed = folder / "renamed.nc"  # even under a normal name the torso is refused
    shutil.copy(partial[0], renamed)
    assert cli("merge", shard_path(folder, 0, 2), renamed, "--out", out) == 2
    assert ("cannot read" in (err := capsys.readouterr().err)) or "incomplete" in err, err
    assert not out.exists()
    assert generate_cli(target, "--shard", "1/2") == 0  # the re-run completes the job
    assert cli("merge", shard_path(folder, 0, 2), target, "--out", out) == 0
    xr.testing.assert_identical(read_dataset(out), read_dataset(root / "full.nc"))


def _synthetic(n_total, seed=0):
    """A dataset with the real Burgers layout and attributes, without solving anything."""
    problem = problems.get("burgers", resolution=16)
    rng = np.random.default_rng(seed)
    u0, u = (rng.standard_normal((n_total, 16)).astype(np.float32) for _ in range(2))
    ds = problem.to_dataset({"u0": u0}, {"u": u}, seed=seed)
    return ds.assign_coords(sample=np.arange(n_total, dtype=np.int64))


def _write_shards(full, folder, n):
    paths = []
    for i in range(n):
        part = full.isel(sample=shard_indices(full.sizes["sample"], n, i))
        part = part.assign_attrs(shard=f"{i}/{n}", n_samples_total=full.sizes["sample"])
        paths.append(write_dataset(part, shard_path(folder, i, n)))
    return paths


@given(
    n_total=st.integers(1, 9),
    data=st.data(),
)
def test_merge_property(n_total, data):
    n = data.draw(st.integers(1, n_total), label="n_shards")
    order = data.draw(st.permutations(range(n)), label="order")
    dropped = data.draw(st.sets(st.integers(0, n - 1), max_size=n - 1), label="dropped")
    full = _synthetic(n_total)
    with tempfile.TemporaryDirectory() as folder:
        paths = _write_shards(full, Path(folder), n)
        indices = [shard_indices(n_total, n, i) for i in range(n)]
        assert np.array_equal(np.concatenate(indices), np.arange(n_total))
        assert max(map(len, indices)) - min(map(len, indices)) <= 1
        kept = [paths[i] for i in order if i not in dropped]
        if not dropped:
            written = read_dataset(paths[0])  # compare with what netCDF gives back
            expected = full.copy()
            expected.attrs = {k: v for k, v in written.attrs.items() if k != "shard"}
            del expected.attrs["n_samples_total"]
            xr.testing.assert_identical(merge_shards(kept), expected)
        else:
            missing = np.concatenate([indices[i] for i in sorted(dropped)])
            with pytest.raises(ValueError, match="missing shard") as err:
                merge_shards(kept)
            listed = str(err.value).split("samples ")[1].split(" of ")[0]
            got = [
                k
                for part in listed.split(", ")
                for k in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)
            ]
            assert got == missing.tolist()


def _modified(folder, full, change):
    paths = _write_shards(full, folder, 3)
    ds = read_dataset(paths[1])
    ds = change(ds)
    write_dataset(ds, paths[1])
    return paths


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda ds: ds.assign_attrs(seed=1), r"shards of different datasets: seed is 1 vs 0"),
        (
            lambda ds: ds.assign_attrs(
                problem_options=ds.attrs["problem_options"][:-1] + ', "a": 1}'
            ),
            "shards of different datasets: problem_options",
        ),
        (lambda ds: ds.assign_attrs(n_samples_total=9), r"is incomplete: shard 1/3 should hold"),
        (lambda ds: ds.isel(sample=[0]), r"is incomplete: shard 1/3 should hold samples 3-4"),
        (lambda ds: ds.assign_attrs(shard="1/4"), r"should hold samples"),
        (lambda ds: ds.assign_attrs(shard="0/3"), r"should hold samples 0-2"),
    ],
)
def test_merge_refuses_mismatched_shards(tmp_path, change, message):
    paths = _modified(tmp_path, _synthetic(7), change)
    with pytest.raises(ValueError, match=message):
        merge_shards(paths)


def test_merge_errors(tmp_path):
    full = _synthetic(6)
    paths = _write_shards(full, tmp_path, 2)
    with pytest.raises(ValueError, match="given twice"):
        merge_shards([paths[0], paths[0], paths[1]])
    write_dataset(full, tmp_path / "plain.nc")
    with pytest.raises(ValueError, match="not a shard file"):
        merge_shards([tmp_path / "plain.nc"])
    with pytest.raises(ValueError, match="no shard files"):
        merge_shards([])
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        merge_shards([tmp_path / "nope.nc"])
    other = _write_shards(_synthetic(6), tmp_path / "four", 3)
    with pytest.raises(ValueError, match=r"is shard 1/3 but .* is one of 2 shards"):
        merge_shards([paths[0], other[1]])
    with pytest.raises(ValueError, match=r"need 0 <= i < n"):
        shard_indices(4, 2, 2)
    with pytest.raises(ValueError, match="some would be empty"):
        shard_indices(2, 3, 0)


def test_shard_status(tmp_path):
    """What a re-run keeps (complete), redoes (missing, incomplete) or refuses to replace."""
    full = _synthetic(7)
    paths = _write_shards(full, tmp_path, 3)
    problem = problems.get("burgers", resolution=16)

    def status(path, **kw):
        args = dict(n_total=7, seed=0, shard=1, n_shards=3) | kw
        return shard_status(path, problem, **args)

    assert status(paths[1]) == "complete"
    assert status(tmp_path / "absent.nc") == "missing"
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(paths[1].read_bytes()[:400])
    assert status(truncated) == "incomplete"
    with pytest.raises(ValueError, match=r"\(shard = '0/3', expected '1/3'\)"):
        status(paths[0])  # another shard's file under this shard's name
    with pytest.raises(ValueError, match=r"holds a different dataset \(seed = 0, expected 3\)"):
        status(paths[1], seed=3)
    with pytest.raises(ValueError, match="option_viscosity = 0.1, expected 0.2"):
        shard_status(paths[1], problems.get("burgers", resolution=16, viscosity=0.2),
                     n_total=7, seed=0, shard=1, n_shards=3)  # fmt: skip


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--dask", "local:0"], "expected local, local:N"),
        (["--dask", "--shard", "0/2"], "--dask runs all shards itself"),
        (["--shards", "2"], "--shards needs --dask"),
        (["--keep-shards"], "--keep-shards needs --dask"),
        (["--dask", "--shards", "9"], r"--shards must be between 1 and --n \(5\)"),
    ],
)
def test_generate_option_errors(tmp_path, capsys, argv, message):
    if "local:0" in argv:
        pytest.importorskip("distributed", reason="dask[distributed] is an optional extra")
    assert generate_cli(tmp_path / "x.nc", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("surrogate: error:") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_dask_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import raises ImportError
    assert generate_cli(tmp_path / "x.nc", "--dask") == 2
    assert "needs dask.distributed" in capsys.readouterr().err


def test_dask_local_cluster_equals_serial(runs, tmp_path):
    pytest.importorskip("distributed", reason="dask[distributed] is an optional extra")
    root, _ = runs
    out = tmp_path / "dask.nc"
    argv = ["generate", "burgers", "--n", N, "--seed", 7, *OPTIONS, "--out", out]
    r = subprocess.run(
        [sys.executable, "-m", "surrogate", *map(str, argv), "--dask", "local:2", "--shards", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("generated") == 3 and f"wrote {out}" in r.stdout
    xr.testing.assert_identical(read_dataset(out), read_dataset(root / "full.nc"))
    assert not (tmp_path / "dask.nc.shards").exists()  # merged, shard files removed
