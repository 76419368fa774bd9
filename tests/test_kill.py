"""SIGKILL at the worst moments: a killed `train` resumed ends bit for bit where the
uninterrupted run ends; a killed `generate`, `merge` or `export` leaves every output path
holding either its previous complete file or nothing, never half a file."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import surrogate
from surrogate._serialization import read_header
from surrogate.cli import main
from surrogate.data import read_dataset, write_dataset
from surrogate.export import load_export
from surrogate.hpc import shard_path
from surrogate.operators import FNO

BURGERS = ["--resolution", "16", "--solve-resolution", "16", "--final-time", "0.25"]

# Runs `surrogate ARGV...` and stalls (until killed) at one moment:
#   netcdf   after the first variable of a netCDF file went into its temporary file
#   half     in the COUNT-th atomic write of a file named NAME, half of it written
#   after    right after the COUNT-th atomic write of a file named NAME completed
_HARNESS = """
import pathlib, sys, time
mode, marker, name, count, *argv = sys.argv[1:]

def stall():
    pathlib.Path(marker).touch()
    time.sleep(300)

if mode == "netcdf":
    import xarray.backends.netCDF4_ as backend
    real_setitem = backend.BaseNetCDF4Array.__setitem__
    def setitem(self, key, value):
        real_setitem(self, key, value)
        stall()
    backend.BaseNetCDF4Array.__setitem__ = setitem
else:
    import surrogate._atomic as atomic
    import surrogate._serialization
    import surrogate.export._export
    seen = []
    def write_bytes(path, data):
        if pathlib.Path(path).name == name:
            seen.append(path)
        if len(seen) == int(count) and pathlib.Path(path).name == name and mode == "half":
            with atomic.atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    stall()
        out = atomic.write_bytes(path, data)
        if len(seen) == int(count) and pathlib.Path(path).name == name and mode == "after":
            stall()
        return out
    surrogate._serialization.write_bytes = write_bytes
    surrogate.export._export.write_bytes = write_bytes

from surrogate.cli import main
sys.exit(main(argv))
"""


def _env(tmp_path):
    # the runs of one test share compiled programs (the same executables, the same results)
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip


def surrogate_cli(tmp_path, *argv):
    """`python -m surrogate ARGV` to its end, sharing the compilation cache of the test."""
    cmd = [sys.executable, "-m", "surrogate", *map(str, argv)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr


def kill_when_stalled(tmp_path, mode, argv, name="", count=0):
    """Run the harness, wait until it stalls, SIGKILL it (no handler runs: as an OOM kill
    or a node failure)."""
    script, marker = tmp_path / "harness.py", tmp_path / "stalled"
    script.write_text(_HARNESS)
    marker.unlink(missing_ok=True)
    cmd = [sys.executable, script, mode, marker, name, str(count), *map(str, argv)]
    env = _env(tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the command never reached the moment"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def split_into_shards(path: Path, folder: Path, n: int = 2) -> list[Path]:
    """The shard files `generate --shard i/n` writes, cut from the whole dataset."""
    ds = read_dataset(path)
    out = []
    for i, part in enumerate(np.array_split(np.arange(ds.sizes["sample"]), n)):
        shard = ds.isel(sample=part)
        shard.attrs.update(shard=f"{i}/{n}", n_samples_total=ds.sizes["sample"])
        out.append(write_dataset(shard, shard_path(folder, i, n)))
    return out


def _config(tmp_path, data, out):
    path = tmp_path / f"{out}.toml"
    path.write_text(
        f'[data]\npath = "{data}"\nn_train = 8\nn_valid = 2\nn_test = 2\n'
        '[model]\ntype = "fno"\nmodes = [4]\nwidth = 8\nn_layers = 1\n'
        "[training]\nepochs = 4\nbatch_size = 3\nlearning_rate = 3e-3\nstep_epochs = 2\n"
        f'[output]\ndir = "{tmp_path / out}"\n'
    )
    return path


def _leaves(path):
    model = surrogate.load(path)
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    path = root / "d.nc"
    gen = ["generate", "burgers", "--n", "12", *BURGERS, "--quiet", "--out", str(path)]
    assert main(gen) == 0
    return path


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, data):
    surrogate_cli(tmp_path, "train", _config(tmp_path, data, "whole"), "--quiet")
    cfg, run = _config(tmp_path, data, "killed"), tmp_path / "killed"
    # killed just after epoch 1's checkpoint, then resumed and killed while writing epoch 3's
    kill_when_stalled(tmp_path, "after", ["train", cfg, "--quiet"], "checkpoint.eqx", 1)
    assert read_header(run / "checkpoint.eqx")["epoch"] == 1
    argv = ["train", cfg, "--resume", "--quiet"]
    kill_when_stalled(tmp_path, "half", argv, "checkpoint.eqx", 2)
    assert read_header(run / "checkpoint.eqx")["epoch"] == 2  # the last complete one
    assert not (run / "model.eqx").exists() and len(partials(run)) == 1
    surrogate_cli(tmp_path, *argv)
    for a, b in zip(_leaves(tmp_path / "whole" / "model.eqx"), _leaves(run / "model.eqx"),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    whole = json.loads((tmp_path / "whole" / "history.json").read_text())
    resumed = json.loads((run / "history.json").read_text())
    assert resumed["epoch"] == [1, 2, 3, 4] and resumed["train_loss"] == whole["train_loss"]


def test_killed_generate_and_merge_keep_the_previous_file(tmp_path, data):
    out = tmp_path / "g.nc"
    out.write_bytes(data.read_bytes())  # a previous complete dataset under the name
    argv = ["generate", "burgers", "--n", "12", *BURGERS, "--seed", "3", "--quiet"]
    kill_when_stalled(tmp_path, "netcdf", [*argv, "--out", out])
    assert out.read_bytes() == data.read_bytes() and len(partials(tmp_path)) == 1
    shards = split_into_shards(data, tmp_path / "s")
    merged = tmp_path / "m.nc"
    merged.write_bytes(data.read_bytes())
    kill_when_stalled(tmp_path, "netcdf", ["merge", *shards, "--out", merged])
    assert merged.read_bytes() == data.read_bytes() and len(partials(tmp_path)) == 2
    assert main(["merge", *map(str, shards), "--out", str(merged)]) == 0  # a re-run completes
    parts = [read_dataset(p)["u"].values for p in shards]
    np.testing.assert_array_equal(read_dataset(merged)["u"].values, np.concatenate(parts))


def test_killed_export_leaves_no_half_export(tmp_path):
    model, folder = tmp_path / "model.eqx", tmp_path / "exp"
    surrogate.save(model, FNO(1, 1, 4, width=4, n_layers=1, key=jax.random.key(0)))
    argv = ["export", model, "--input-shape", "1,16", "--out", folder]
    assert main([str(a) for a in argv]) == 0
    old = (folder / "model.jaxexport").read_bytes()
    kill_when_stalled(tmp_path, "half", [*argv, "--batch", 2], "model.jaxexport", 1)
    # the old artifact is whole, and without metadata the folder reads as no export at all
    assert (folder / "model.jaxexport").read_bytes() == old
    assert not (folder / "metadata.json").exists() and len(partials(folder)) == 1
    with pytest.raises(FileNotFoundError, match="holds no surrogate export"):
        load_export(folder)
    assert main([str(a) for a in argv]) == 0
    assert load_export(folder)(np.zeros((1, 16), np.float32)).shape == (1, 16)
