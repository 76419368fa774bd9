"""Own data: a netCDF file written with plain xarray (not by surrogate) trains through
`surrogate train` by naming its variables, and `surrogate evaluate` scores the model on a
second file at a finer grid; each refusal is one line naming the problem."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xarray as xr

import surrogate
from surrogate.cli import main
from surrogate.data import pairs


def smooth(a: np.ndarray, kappa: float = 0.01) -> np.ndarray:
    """The heat semigroup exp(κ ∂²) on the periodic unit interval, mode by mode."""
    k = np.fft.rfftfreq(a.shape[-1], d=1.0 / a.shape[-1])
    return np.fft.irfft(np.fft.rfft(a) * np.exp(-kappa * (2 * np.pi * k) ** 2), n=a.shape[-1])


def write_simulation(path, n: int, nx: int, seed: int, **changes) -> xr.Dataset:
    """What a user's simulator might write: sample axis 'run', grid 'x' in metres, two
    forcing fields and one response, CF-ish attributes, no surrogate attributes."""
    rng = np.random.default_rng(seed)
    x = np.arange(nx) / nx
    k = np.arange(1, 6)
    amp = rng.normal(size=(n, 2, k.size)) / k
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2, k.size))
    waves = np.sin(2 * np.pi * k[None, None, :, None] * x + phase[..., None])
    f = np.sum(amp[..., None] * waves, axis=2)  # (run, 2, x)
    response = smooth(f[:, 0]) + 0.5 * f[:, 1]
    ds = xr.Dataset(
        {
            "heating": (("run", "x"), f[:, 0], {"units": "K s-1", "long_name": "heating"}),
            "drag": (("run", "x"), f[:, 1], {"units": "m s-2", "long_name": "drag"}),
            "temperature": (("run", "x"), response, {"units": "K", "long_name": "response"}),
        },
        coords={"x": ("x", x, {"units": "m", "axis": "X"}), "run": np.arange(n)},
        attrs={"title": "a simulator's output", "Conventions": "CF-1.10"},
    )
    for name, value in changes.items():
        ds[name] = value(ds) if callable(value) else value
    ds.to_netcdf(path)
    return ds


def _config(tmp_path, data, *, epochs=40, test_path=None, **data_keys):
    keys = {"inputs": ["heating", "drag"], "targets": ["temperature"], **data_keys}
    lines = [f'[data]\npath = "{data}"\nn_train = 48\nn_valid = 8\n']
    lines += [f"{k} = {json.dumps(v)}\n" for k, v in keys.items()]
    if test_path:
        lines.append(f'test_path = "{test_path}"\n')
    lines += [
        '[model]\ntype = "fno"\nmodes = [6]\nwidth = 16\nn_layers = 2\n',
        f"[training]\nepochs = {epochs}\nbatch_size = 8\nlearning_rate = 5e-3\n",
        'schedule = "cosine"\n',
        f'[output]\ndir = "{tmp_path / f"run{epochs}"}"\n',
    ]
    path = tmp_path / f"own{epochs}.toml"
    path.write_text("".join(lines))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    write_simulation(d / "train.nc", 56, 32, seed=0)
    write_simulation(d / "test.nc", 16, 32, seed=1)
    write_simulation(d / "fine.nc", 16, 64, seed=2)
    return d


def test_train_on_plain_xarray_file_and_evaluate_at_a_finer_grid(files, tmp_path, capsys):
    assert "problem" not in xr.open_dataset(files / "train.nc").attrs
    scores = {}
    for epochs in (0, 40):
        cfg = _config(tmp_path, files / "train.nc", epochs=epochs, test_path=files / "test.nc")
        code, out, err = run(capsys, "train", cfg, "--quiet")
        assert code == 0, err
        model = tmp_path / f"run{epochs}" / "model.eqx"
        m = tmp_path / f"m{epochs}.json"
        code, out, err = run(capsys, "evaluate", model, files / "fine.nc", "--json", m)
        assert code == 0, err
        assert "64" in out  # it says which grid it scored
        scores[epochs] = json.loads(m.read_text())
        test = json.loads((tmp_path / f"run{epochs}" / "metrics.json").read_text())
        scores[epochs, "test"] = test
    trained, untrained = scores[40], scores[0]
    assert set(trained) == {"relative_l2", "rmse", "max_error", "relative_h1"}
    # the untrained model is far off; the trained one is not, at 32 and zero-shot at 64
    assert untrained["relative_l2"] > 0.5
    assert trained["relative_l2"] < 0.25 * untrained["relative_l2"]
    assert scores[40, "test"]["relative_l2"] < 0.25 * scores[0, "test"]["relative_l2"]
    assert trained["relative_l2"] < 2.0 * scores[40, "test"]["relative_l2"]
    # the model file records what it maps
    header = surrogate._serialization.read_header(tmp_path / "run40" / "model.eqx")
    assert header["data"]["inputs"] == ["heating", "drag"]
    assert header["data"]["sample_dim"] == "run" and header["data"]["target_dims"] == ["x"]
    assert header["data"]["units"]["temperature"] == "K"


def test_python_api_pairs_and_train(files, tmp_path):
    ds = xr.load_dataset(files / "train.nc")
    p = pairs(ds, inputs=["heating", "drag"], targets="temperature")
    assert p.x.shape == (56, 2, 32) and p.y.shape == (56, 1, 32) and p.x.dtype == np.float32
    np.testing.assert_array_equal(p.x[:, 1], ds["drag"].values.astype(np.float32))
    assert p.layout.sample_dim == "run" and p.regular_grid()
    result = surrogate.train(
        ds,
        {
            "data": {"inputs": ["heating", "drag"], "targets": ["temperature"], "n_train": 48},
            "model": {"type": "fno", "modes": [6], "width": 8, "n_layers": 1},
            "training": {"epochs": 2, "batch_size": 8},
            "output": {"dir": str(tmp_path / "api")},
        },
        progress=False,
    )
    assert result["test_data"] == "<in-memory dataset>"
    assert set(result["test_metrics"]) == {"relative_l2", "rmse", "max_error", "relative_h1"}


def test_zarr_store_reads_like_netcdf(files, tmp_path):
    pytest.importorskip("zarr", reason="Zarr support is the optional extra 'zarr'")
    ds = xr.load_dataset(files / "test.nc")
    ds.to_zarr(tmp_path / "sim.zarr", consolidated=False)
    back = surrogate.data.read_dataset(tmp_path / "sim.zarr")
    a = pairs(back, ["heating", "drag"], ["temperature"])
    b = pairs(ds, ["heating", "drag"], ["temperature"])
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize(
    "changes, keys, message",
    [
        ({}, {"targets": ["pressure"]}, r"dataset has no variable\(s\) \['pressure'\]"),
        (
            {"drag": lambda ds: (("run", "y"), ds["drag"].values)},
            {},
            "variables stacked as channels must share their dimensions",
        ),
        (
            {"heating": lambda ds: ds["heating"].where(ds["x"] < 0.9)},
            {},
            r"variable 'heating' holds 168 NaN",
        ),
        (
            {
                "heating": lambda ds: (("x", "run"), ds["heating"].values.T),
                "drag": lambda ds: (("x", "run"), ds["drag"].values.T),
                "temperature": lambda ds: (("x", "run"), ds["temperature"].values.T),
            },
            {},
            "no sample axis",
        ),
        ({}, {"sample_dim": "time"}, "has no sample axis 'time'"),
        ({}, {"inputs": [], "targets": ["temperature"]}, "needs both inputs and targets"),
    ],
)
def test_refusals_are_one_line(tmp_path, capsys, changes, keys, message):
    data = tmp_path / "bad.nc"
    write_simulation(data, 56, 32, seed=0, **changes)
    code, out, err = run(capsys, "train", _config(tmp_path, data, epochs=1, **keys), "--quiet")
    assert code == 2, err
    assert err.startswith("surrogate: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "run1" / "model.eqx").exists()


def test_evaluate_refuses_a_file_without_the_models_variables(files, tmp_path, capsys):
    cfg = _config(tmp_path, files / "train.nc", epochs=1)
    assert run(capsys, "train", cfg, "--quiet")[0] == 0
    model = tmp_path / "run1" / "model.eqx"
    other = tmp_path / "other.nc"
    write_simulation(other, 4, 32, seed=3).drop_vars("drag").to_netcdf(tmp_path / "nodrag.nc")
    code, _, err = run(capsys, "evaluate", model, tmp_path / "nodrag.nc")
    assert code == 2 and "no variable(s) ['drag']" in err and err.count("\n") == 1
    ds = xr.load_dataset(other)
    ds["temperature"].attrs["units"] = "degC"
    ds.to_netcdf(tmp_path / "celsius.nc")
    code, _, err = run(capsys, "evaluate", model, tmp_path / "celsius.nc")
    assert code == 2 and "'temperature' is in 'degC' here" in err
    ds = xr.load_dataset(other).rename({"x": "lon"})
    ds.to_netcdf(tmp_path / "lon.nc")
    code, _, err = run(capsys, "evaluate", model, tmp_path / "lon.nc")
    assert code == 2 and "dimensions ('x',)" in err and "('lon',)" in err
