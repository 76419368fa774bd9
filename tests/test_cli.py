"""The command line end to end, and its one-line errors for bad input."""

import json

import numpy as np
import pytest

from surrogate.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _config(tmp_path, data, **training):
    t = {"epochs": 3, "batch_size": 4, "learning_rate": 3e-3, **training}
    lines = [
        f'[data]\npath = "{data}"\nn_train = 8\nn_valid = 2\nn_test = 2\n',
        '[model]\ntype = "fno"\nmodes = [4]\nwidth = 8\nn_layers = 2\n',
        "[training]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in t.items()),
        f'[output]\ndir = "{tmp_path / "run"}"\n',
    ]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines))
    return path


def test_generate_train_evaluate(tmp_path, capsys):
    data = tmp_path / "b.nc"
    code, out, err = run(
        capsys,
        "generate",
        "burgers",
        "--n",
        12,
        "--resolution",
        32,
        "--viscosity",
        0.1,
        "--seed",
        0,
        "--out",
        data,
        "--quiet",
    )
    assert code == 0, err
    assert "wrote" in out and data.exists()
    cfg = _config(tmp_path, data)
    code, out, err = run(capsys, "train", cfg, "--quiet")
    assert code == 0, err
    model = tmp_path / "run" / "model.eqx"
    assert model.exists() and (tmp_path / "run" / "checkpoint.eqx").exists()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    code, out, err = run(capsys, "train", cfg, "--resume", "--quiet")  # nothing left to do
    assert code == 0, err
    metrics_path, plot = tmp_path / "m.json", tmp_path / "p.png"
    code, out, err = run(capsys, "evaluate", model, data, "--json", metrics_path, "--plot", plot)
    assert code == 0, err
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics) == {"relative_l2", "rmse", "max_error"}
    assert 0 < metrics["relative_l2"] < 2 and np.isfinite(metrics["rmse"])
    assert plot.stat().st_size > 10_000
    code, out, _ = run(capsys, "list")
    assert code == 0 and "burgers" in out and "fno" in out


@pytest.fixture
def dataset(tmp_path, capsys):
    data = tmp_path / "d.nc"
    assert (
        run(capsys, "generate", "burgers", "--n", 12, "--resolution", 16, "--out", data, "--quiet")[
            0
        ]
        == 0
    )
    return data


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "heat", "--n", "2", "--out", "x.nc"], "unknown problem 'heat'"),
        (
            ["generate", "burgers", "--n", "2", "--out", "x.nc", "--visc", "1"],
            r"unknown option\(s\) \['visc'\]",
        ),
        (
            ["generate", "burgers", "--n", "2", "--out", "x.nc", "--viscosity", "abc"],
            "option 'viscosity' expects float",
        ),
        (["generate", "burgers", "--n", "0", "--out", "x.nc"], "--n must be >= 1"),
        (
            ["generate", "burgers", "--n", "2", "--out", "x.nc", "--resolution", "7"],
            "resolution must be even",
        ),
        (["generate", "burgers", "--n", "4", "--out", "x.nc", "--shard", "4/4"], "need 0 <= i < n"),
        (["evaluate", "missing.eqx", "missing.nc"], "no such model file"),
        (["train", "missing.toml"], "no such config file"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("surrogate: error:") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err


def test_config_errors(tmp_path, capsys, dataset):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text(f'[data]\npath = "{dataset}"\nsplit = 3\n[model]\ntype = "fno"\n')
    code, _, err = run(capsys, "train", bad_key)
    assert code == 2 and "unknown key(s) ['split'] in [data]" in err
    bad_value = _config(tmp_path, dataset, epochs="many")
    code, _, err = run(capsys, "train", bad_value)
    assert code == 2 and "[training] epochs should be int" in err
    bad_toml = tmp_path / "t.toml"
    bad_toml.write_text("[data\npath=")
    code, _, err = run(capsys, "train", bad_toml)
    assert code == 2 and "not valid TOML" in err
    cfg = _config(tmp_path, dataset)
    cfg.write_text(cfg.read_text().replace("modes = [4]", "modes = [4]\nheads = 2"))
    code, _, err = run(capsys, "train", cfg)
    assert code == 2 and "unknown option(s) ['heads'] for model 'fno'" in err


def test_resolution_too_small_for_modes(tmp_path, capsys, dataset):
    cfg = _config(tmp_path, dataset)
    cfg.write_text(
        cfg.read_text()
        .replace("modes = [4]", "modes = [12]")
        .replace("n_train = 8\nn_valid = 2\nn_test = 2", "n_train = 2\nn_valid = 1\nn_test = 1")
    )
    code, _, err = run(capsys, "train", cfg)
    assert code == 2 and "keeps fewer than the 12 Fourier modes" in err


def test_bad_data_files(tmp_path, capsys, dataset):
    import xarray as xr

    from surrogate.data import write_dataset

    cfg = _config(tmp_path, dataset, epochs=1)
    assert run(capsys, "train", cfg, "--quiet")[0] == 0
    model = tmp_path / "run" / "model.eqx"
    broken = tmp_path / "broken.nc"
    broken.write_bytes(dataset.read_bytes()[:300])
    code, _, err = run(capsys, "evaluate", model, broken)
    assert code == 2 and "truncated or not netCDF" in err
    ds = xr.open_dataset(dataset).load()
    write_dataset(ds.drop_vars("u"), tmp_path / "nou.nc")
    code, _, err = run(capsys, "evaluate", model, tmp_path / "nou.nc")
    assert code == 2 and "no variable(s) ['u']" in err
    ds["u0"].values[0, 0] = np.nan
    write_dataset(ds, tmp_path / "nan.nc")
    code, _, err = run(capsys, "evaluate", model, tmp_path / "nan.nc")
    assert code == 2 and "'u0' holds 1 NaN" in err
    code, _, err = run(capsys, "evaluate", dataset, dataset)
    assert code == 2 and "not a surrogate model file" in err


def test_module_entry_point(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "surrogate",
            "generate",
            "nope",
            "--n",
            "1",
            "--out",
            str(tmp_path / "x.nc"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "surrogate: error: unknown problem 'nope'; available: "
        + r.stderr.split("available: ")[1].strip()
    )
    assert "Traceback" not in r.stderr
