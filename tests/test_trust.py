"""A file is data: outputs never overwrite inputs, temporary files never stay behind, every
number has a range, resume is refused for another run, and nothing the user types or a file
holds turns into a traceback (hypothesis drives the parser, problems and model loading)."""

import json
import math
import os
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import surrogate
from surrogate import problems
from surrogate._config import parse_config
from surrogate._models import build_model
from surrogate._serialization import FORMAT, read_header
from surrogate.cli import main
from surrogate.data import NormalizedModel, Normalizer, read_dataset, write_dataset
from surrogate.hpc import merge_shards, shard_path
from surrogate.operators import FNO
from surrogate.training import fit

BURGERS = ["--resolution", "16", "--solve-resolution", "16", "--final-time", "0.25"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, pattern, *argv):
    """The command exits 2 with one line `surrogate: error: ...` matching `pattern`."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("surrogate: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, err), err
    return err


def leftovers(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if ".partial" in p.name]


def config(tmp_path, data, name="c.toml", out="run", **training):
    t = {"epochs": 2, "batch_size": 4, "learning_rate": 3e-3, **training}
    lines = [
        f'[data]\npath = "{data}"\nn_train = 8\nn_valid = 2\nn_test = 2\n',
        '[model]\ntype = "fno"\nmodes = [4]\nwidth = 8\nn_layers = 1\n',
        "[training]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in t.items()),
        f'[output]\ndir = "{tmp_path / out}"\n',
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines))
    return path


def split_into_shards(path: Path, folder: Path, n: int = 2) -> list[Path]:
    """The shard files `generate --shard i/n` writes, cut from the whole dataset (sample k
    is the same in both: tests/test_hpc_shards.py), without solving again."""
    ds = read_dataset(path)
    out = []
    for i, part in enumerate(np.array_split(np.arange(ds.sizes["sample"]), n)):
        shard = ds.isel(sample=part)
        shard.attrs.update(shard=f"{i}/{n}", n_samples_total=ds.sizes["sample"])
        out.append(write_dataset(shard, shard_path(folder, i, n)))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 12-sample Burgers dataset, its two shards, another dataset, a model file."""
    root = tmp_path_factory.mktemp("trust")
    gen = ["generate", "burgers", "--n", "12", *BURGERS, "--quiet"]
    assert main([*gen, "--out", str(root / "d.nc")]) == 0
    other = read_dataset(root / "d.nc")
    other["u0"] = other["u0"][::-1].assign_coords(sample=other["sample"])
    write_dataset(other, root / "other.nc")
    shards = split_into_shards(root / "d.nc", root / "shards")
    net = FNO(1, 1, 4, width=4, n_layers=1, key=jax.random.key(0))
    model = surrogate.save(root / "model.eqx", NormalizedModel(net, Normalizer(1), Normalizer(1)))
    return {"root": root, "data": root / "d.nc", "other": root / "other.nc",
            "shards": shards, "model": model}  # fmt: skip


# ---- outputs that are inputs ---------------------------------------------------------


def test_merge_refuses_to_overwrite_a_shard(files, capsys):
    s0, s1 = files["shards"]
    before = s0.read_bytes()
    for out in (s0, s0.parent / ".." / "shards" / s0.name):  # also spelled otherwise
        refused(capsys, r"--out .* is the input shard .*destroy the data", "merge", s0, s1,
                "--out", out)  # fmt: skip
    link = files["root"] / "link.nc"
    os.link(s1, link)  # a hard link: another name for the same file
    refused(capsys, "is the input shard", "merge", s0, s1, "--out", link)
    assert s0.read_bytes() == before and not leftovers(files["root"])
    with pytest.raises(ValueError, match="is the input shard"):
        merge_shards([s0, s1], s1)


def test_merge_refuses_a_shard_holding_nan(files, tmp_path, capsys):
    s0, s1 = files["shards"]
    ds = read_dataset(s1)
    ds["u"].values[1, 3] = np.nan
    bad = tmp_path / s1.name
    write_dataset(ds, bad)
    refused(capsys, r"variable 'u' holds NaN/inf in sample\(s\) 7; regenerate that shard",
            "merge", s0, bad, "--out", tmp_path / "m.nc")  # fmt: skip
    assert not (tmp_path / "m.nc").exists() and not leftovers(tmp_path)


def test_generate_refuses_an_output_in_its_shard_folder(tmp_path, capsys):
    folder = tmp_path / "parts"
    out = shard_path(folder, 0, 2)
    refused(capsys, "is a shard file of --shard-dir", "generate", "burgers", "--n", 4, *BURGERS,
            "--dask", "--shards", 2, "--shard-dir", folder, "--out", out)  # fmt: skip
    refused(capsys, "is a directory", "generate", "burgers", "--n", 1, "--out", tmp_path)
    assert not leftovers(tmp_path)


def test_train_refuses_to_write_over_its_data(files, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = run_dir / "model.eqx"  # a dataset where the model would go
    data.write_bytes(files["data"].read_bytes())
    refused(capsys, r"\[output\] dir's model\.eqx .* is the input \[data\] path", "train",
            config(tmp_path, data))  # fmt: skip
    refused(capsys, r"\[output\] dir .* is the input \[data\] path", "train",
            config(tmp_path, files["data"], out=files["data"]))  # fmt: skip
    assert data.read_bytes() == files["data"].read_bytes()
    with pytest.raises(ValueError, match="is the input"):
        surrogate.train(data, {"model": {"type": "fno", "modes": [4]},
                               "output": {"dir": str(run_dir)}})  # fmt: skip
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.eqx"]


def test_export_refuses_to_write_over_its_model(files, tmp_path, capsys):
    folder = tmp_path / "exp"
    folder.mkdir()
    model = folder / "metadata.json"  # a model file where the export's metadata would go
    model.write_bytes(files["model"].read_bytes())
    refused(capsys, r"--out metadata\.json .* is the input model", "export", model,
            "--input-shape", "1,16", "--out", folder)  # fmt: skip
    refused(capsys, "is a file", "export", files["model"], "--input-shape", "1,16", "--out",
            files["model"])  # fmt: skip
    refused(capsys, r"--input-shape size must be >= 1 and <= \d+, got 0", "export",
            files["model"], "--input-shape", "1,0", "--out", folder)  # fmt: skip
    refused(capsys, r"--batch must be >= 1 and <= \d+, got 0", "export", files["model"],
            "--input-shape", "1,16", "--batch", 0, "--out", folder)  # fmt: skip
    assert model.read_bytes() == files["model"].read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json"]


def test_evaluate_outputs_leave_no_temporary_file(files, tmp_path, capsys):
    model, data = files["model"], files["data"]
    refused(capsys, "--json .* is the input data", "evaluate", model, data, "--json", data)
    refused(capsys, "--plot .* is the input model", "evaluate", model, data, "--plot", model)
    folder = tmp_path / "plots"
    folder.mkdir()
    refused(capsys, "is a directory; give the PNG file", "evaluate", model, data, "--plot",
            folder)  # fmt: skip
    assert not leftovers(tmp_path)


def test_plot_that_fails_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import matplotlib.figure

    from surrogate.evaluation import plot_predictions

    def broken(self, fname, **kw):
        Path(fname).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    x = np.linspace(0, 1, 8)
    a = np.ones((2, 1, 8))
    with pytest.raises(OSError, match="disk full"):
        plot_predictions(tmp_path / "p.png", x, a, a, a)
    assert list(tmp_path.iterdir()) == []


# ---- one line instead of a traceback; every number has a range -------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["burgers", "--n", "100000000000"], r"need 745 TiB in memory, more than"),
        (["burgers", "--n", "1", "--seed", str(2**64)], r"--seed must be >= 0 and <= 4294967295"),
        (["burgers", "--n", "1", "--seed", "-1"], r"--seed must be >= 0 .*got -1"),
        (
            ["burgers", "--n", "3000000000", "--resolution", "4", "--shard", "0/100000"],
            r"--n must be >= 1 and <= 2147483648 \(sample indices",
        ),
        (["burgers", "--n", "1", "--batch-size", "0"], r"--batch-size must be >= 1 and <="),
        (["navier_stokes", "--n", "1", "--resolution", "2"], r"resolution must be in \[8, "),
        (
            ["burgers", "--n", "1", "--viscosity", "0.1", "--viscosity", "0.2"],
            r"option --viscosity given twice \('0.1' and '0.2'\)",
        ),
        (["burgers", "--n", "1", "--viscosity", "0.1", "--viscosity=0.1"], "given twice"),
        (
            ["burgers", "--n", "1", "--dt", "0.5", "--resolution", "64"],
            r"dt 0.5 is beyond what the ETDRK4 stepper resolves on 256 points .*the largest "
            r"acceptable dt is 0.00126",
        ),
        (["burgers", "--n", "1", "--viscosity", "inf"], r"viscosity must be positive and <= 100"),
        (["darcy", "--n", "1", "--rtol", "-1"], r"rtol must be in \[0, 1\)"),
        (["burgers", "--n", "x"], r"argument --n: invalid int value: 'x'"),
        (
            ["burgers", "--n", "1", "--seed", "1", "--seed=2"],
            r"option --seed given twice \(1 and 2\)",
        ),
        (["burgers", "--n", "1", "--n", "1"], r"option --n given twice \(1 and 1\)"),
        (
            ["room_acoustics", "--n", "1", "--f_max", "1e12"],
            r"f_max must be a number in \(0, 1e\+06\]",
        ),
        (
            ["lorenz96", "--n", "1", "--spin_up", "inf"],
            r"spin_up must be a number in \[0, 1e\+06\]",
        ),
    ],
)
def test_generate_errors_are_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "x.nc"
    refused(capsys, message, "generate", *argv, "--out", out)
    assert list(tmp_path.iterdir()) == []


def test_model_header_without_config_is_a_clean_error(files, tmp_path, capsys):
    header = read_header(files["model"])
    del header["model"]["config"]
    body = files["model"].read_bytes().split(b"\n", 1)[1]
    bad = tmp_path / "m.eqx"
    bad.write_bytes(json.dumps(header).encode() + b"\n" + body)
    refused(capsys, r"model file gives no arguments \('config'\)", "evaluate", bad, files["data"])
    with pytest.raises(ValueError, match="gives no arguments"):
        surrogate.load(bad)


@pytest.mark.parametrize(
    "training,message",
    [
        ({"step_epochs": 0}, r"\[training\] step_epochs must be >= 1 and <= \d+, got 0"),
        ({"gamma": -0.5}, r"\[training\] gamma must be > 0 and <= 1.0, got -0.5"),
        ({"weight_decay": -1e-4}, r"\[training\] weight_decay must be >= 0 and <= 1.0"),
        ({"learning_rate": 0}, r"\[training\] learning_rate must be > 0 and <= 10.0, got 0.0"),
        ({"epochs": -1}, r"\[training\] epochs must be >= 0"),
        ({"batch_size": 0}, r"\[training\] batch_size must be >= 1"),
        ({"seed": 2**40}, r"\[training\] seed must be >= 0 and <= 4294967295"),
    ],
)
def test_config_numbers_have_ranges(tmp_path, capsys, files, training, message):
    refused(capsys, message, "train", config(tmp_path, files["data"], **training))
    with pytest.raises(ValueError, match=r"\[training\] learning_rate must be > 0"):
        parse_config({"data": {"path": "x"}, "model": {"type": "fno"},
                      "training": {"learning_rate": math.nan}})  # fmt: skip
    with pytest.raises(ValueError, match=r"\[data\] n_train must be >= 0"):
        parse_config({"data": {"path": "x", "n_train": -1}, "model": {"type": "fno"}})


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"type": "fno", "modes": [8], "n_layers": 10**9}, r"n_layers must be <= 65536 in size"),
        ({"type": "fno", "modes": [10**9]}, r"modes must be <= 65536 in size, got 1000000000"),
        ({"type": "fno", "modes": [8], "lifting_ratio": math.nan}, r"lifting_ratio must be finite"),
        ({"type": "fno", "modes": [8], "width": 0}, r"\[model\] fno: .*width .*must be >= 1"),
        ({"type": "fno", "modes": [8], "width": 20000}, r"would take 107 GiB, more than half"),
        ({"type": "mgno", "levels": 0}, r"\[model\] mgno: need .*levels >= 1"),
    ],
)
def test_model_options_are_checked_before_anything_is_allocated(spec, message, monkeypatch):
    monkeypatch.setattr("surrogate._models.memory", lambda: 16 * 2**30)  # a 16 GiB machine
    with pytest.raises(ValueError, match=message) as e:
        build_model(spec, 1, 1, key=jax.random.key(0))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("burgers", {"n_times": -1}, r"n_times must be in \[0, 10000\], got -1"),
        ("burgers", {"alpha": 0.5}, r"alpha must be > 0.5 and <= 10, got 0.5"),
        ("burgers", {"sigma": 0.0}, r"sigma must be positive"),
        ("burgers", {"dt": -1e-3}, r"dt must be in \[0, final_time = 1.0\]"),
        ("burgers", {"dt": 1e-9, "resolution": 16}, r"steps to final_time .*dt must be >= 1e-07"),
        ("burgers", {"alpha": 0.75}, r"the automatic dt .* largest acceptable dt is"),
        ("burgers", {"resolution": 2**17}, r"resolution must be even and in \[4, 65536\]"),
        ("navier_stokes", {"viscosity": -1.0}, r"viscosity must be in \[0, 1\]"),
        ("navier_stokes", {"final_time": 2.5}, r"final_time must be a whole number"),
        ("navier_stokes", {"dt": 2.0}, r"dt must be positive and <= 1"),
        ("navier_stokes", {"solve_resolution": 8192}, r"resolution must be in"),
        ("darcy", {"low": -3.0}, r"low must be positive and <= 1e6, got -3.0"),
        ("darcy", {"alpha": 1.0}, r"alpha must be > 1 and <= 10"),
        ("darcy", {"solve_resolution": 8193}, r"need 4 <= resolution <= solve_resolution <= 4097"),
        ("lorenz96", {"k": 10**9}, r"k must be an integer in \[4, 10000\], got 1000000000"),
        ("lorenz96", {"k": math.inf}, r"k must be an integer in \[4, 10000\], got inf"),
        ("lorenz96", {"h": math.nan}, r"h must be a number in \[-1000, 1000\], got nan"),
        ("lorenz96", {"n_times": 10**6, "dt": 1e-5, "save_interval": 0.05}, r"5e\+09 steps"),
        ("convection", {"n_levels": 10**7}, r"n_levels must be an integer in \[2, 1000\]"),
        ("convection", {"tau_bm": math.inf}, r"tau_bm must be a number in \(0, 3.1536e\+08\]"),
        ("convection", {"spin_up": -1.0}, r"spin_up must be a number in \[0, "),
        ("room_acoustics", {"points_per_wavelength": 1.0}, r"\[2, 100\] \(Nyquist: >= 2\)"),
        ("room_acoustics", {"order": 3}, r"order must be 2 or 4"),
        ("room_acoustics", {"f_max": 1e5, "ndim": 3}, r"the grid would have 3.\d+e\+10 cells"),
        ("room_acoustics", {"duration": 100.0, "f_max": 1e4}, r"takes about 1.\d+e\+07 time"),
        ("ignition", {"T0_min": -1.0}, r"T0_min must be a number in \(0, 1e\+12\]"),
        ("ignition", {"extrapolation": 1e9}, r"extrapolation must be a number in \[0, 10\]"),
        ("ignition", {"rtol": 0.0}, r"rtol must be a number in \(0, 0.1\]"),
    ],
)
def test_problem_options_have_ranges(name, options, message):
    with pytest.raises(ValueError, match=message):
        problems.get(name, **options)


# ---- resume is honest ----------------------------------------------------------------


class _Scale(eqx.Module):
    w: jax.Array


def test_resume_refuses_another_run(files, tmp_path, capsys):
    cfg = config(tmp_path, files["data"])
    assert run(capsys, "train", cfg, "--quiet")[0] == 0
    checkpoint = tmp_path / "run" / "checkpoint.eqx"
    recorded = read_header(checkpoint)["fingerprint"]
    assert recorded["training"]["learning_rate"] == 3e-3 and "epochs" not in recorded["training"]
    assert recorded["data"]["path"] == str(files["data"].resolve())
    cases = [
        (config(tmp_path, files["data"], "lr.toml", learning_rate=1e-3),
         r"training\.learning_rate: 0\.003 in the checkpoint, 0\.001 now"),
        (config(tmp_path, files["other"], "data.toml"),
         r"data\.path: .*d\.nc' in the checkpoint, .*other\.nc' now;.*data\.samples_sha256"),
        (config(tmp_path, files["data"], "wd.toml", weight_decay=0.0), r"training\.weight_decay"),
        (config(tmp_path, files["data"], "cos.toml", schedule="cosine"),
         r"training\.epochs: absent in the checkpoint, 2 now; training\.schedule"),
    ]  # fmt: skip
    for changed, message in cases:
        err = refused(capsys, message, "train", changed, "--resume", "--quiet")
        assert "--resume --force" in err
    wider = config(tmp_path, files["data"], "wide.toml")
    wider.write_text(wider.read_text().replace("width = 8", "width = 12"))
    refused(capsys, r"model\.width: 8 in the checkpoint, 12 now", "train", wider, "--resume")
    refused(capsys, "--force goes with --resume", "train", cfg, "--force")
    # more epochs of a step schedule are the same run: only the learning rate differs here
    forced = config(tmp_path, files["data"], "forced.toml", epochs=3, learning_rate=1e-3)
    err = refused(capsys, "another run", "train", forced, "--resume")
    assert "learning_rate" in err and "epochs" not in err
    assert read_header(checkpoint)["epoch"] == 2  # nothing was touched
    assert run(capsys, "train", forced, "--resume", "--force", "--quiet")[0] == 0
    header = read_header(checkpoint)
    assert header["history"]["epoch"] == [1, 2, 3]
    assert header["fingerprint"]["training"]["learning_rate"] == 1e-3


def test_fit_fingerprint_is_optional_and_checked(tmp_path):
    data = {"x": jax.random.normal(jax.random.key(0), (8, 3))}

    def loss(model, batch):
        return jnp.mean((model.w * batch["x"] - 1.0) ** 2)

    def net():
        return _Scale(jnp.array(0.5))

    kw = dict(optimizer=optax.adam(1e-3), batch_size=4, key=jax.random.key(2), progress=False)
    ck = tmp_path / "ck.eqx"
    fit(net(), loss, data, epochs=1, checkpoint=ck, fingerprint={"lr": 1e-3}, **kw)
    with pytest.raises(ValueError, match=r"of another run: lr: 0.001 in the checkpoint, 0.01 now"):
        fit(net(), loss, data, epochs=2, checkpoint=ck, resume=True, fingerprint={"lr": 1e-2}, **kw)
    fit(net(), loss, data, epochs=2, checkpoint=ck, resume=True, **kw)  # none given: generic
    _, hist = fit(net(), loss, data, epochs=3, checkpoint=ck, resume=True,
                  fingerprint={"lr": 1e-2}, force_resume=True, **kw)  # fmt: skip
    assert hist["epoch"] == [1, 2, 3]
    bad = tmp_path / "bad.eqx"
    bad.write_text(json.dumps({"format": FORMAT, "epoch": "two"}) + "\n")
    with pytest.raises(ValueError, match="is not a training checkpoint"):
        fit(net(), loss, data, epochs=3, checkpoint=bad, resume=True, **kw)


# ---- fuzz: whatever is typed or read, success or one line ----------------------------

# 50 examples each in CI; FUZZ_N=2000 for a longer hunt
_FUZZ = settings(max_examples=int(os.environ.get("FUZZ_N", 50)), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
# every built-in problem (a plugin's options are its own business)
_NAMES = [n for n in problems.available() if ":" not in n]
_OPTIONS = sorted({o for n in _NAMES for o in problems.option_types(problems.problem_class(n))})
_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", *"0 1 2 4 8 16 -1 1e-3 0.5 nan inf true abc 1/2 --n".split()]),
    st.text(max_size=6),
)
_NUMBER = st.one_of(st.integers(-(2**66), 2**66), st.sampled_from([1, 2, 3, 0, -1])).map(str)


def _one_line(err: str) -> bool:
    return err.startswith("surrogate: error:") and err.count("\n") == 1 and "Traceback" not in err


@_FUZZ
@given(
    name=st.sampled_from([*_NAMES, "nope", "os:path", "surrogate.problems.burgers:Burgers"]),
    options=st.lists(
        st.tuples(st.one_of(st.sampled_from(_OPTIONS), st.text("abcdez_-", min_size=1,
                                                               max_size=8)), _VALUES),
        max_size=4,
    ),  # fmt: skip
    n=_NUMBER,
    seed=_NUMBER,
    flags=st.lists(st.sampled_from([["--shard", "0/2"], ["--shard", "1/x"], ["--quiet"],
                                    ["--batch-size", "0"], ["--overwrite"]]), max_size=2),
)  # fmt: skip
def test_fuzz_generate_options(tmp_path, capsys, monkeypatch, name, options, n, seed, flags):
    # the parser and every check run for real; the solve is replaced by a tiny dataset
    def tiny(problem, *args, **kw):
        return xr.Dataset({"u": ("sample", np.zeros(1))}, coords={"sample": [0]})

    monkeypatch.setattr("surrogate.problems.generate", tiny)
    monkeypatch.setattr("surrogate.hpc.generate_shard", lambda *a, out, **kw: (out, False))
    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    argv = ["generate", name, "--n", n, "--seed", seed, "--out", str(folder / "x.nc")]
    for option, value in options:
        argv += [f"--{option}", value]
    argv += [a for flag in flags for a in flag]
    code, out, err = run(capsys, *argv)
    assert code == 0 or (code == 2 and _one_line(err)), (argv, err)
    assert not leftovers(folder), argv


@_FUZZ
@given(
    name=st.sampled_from(_NAMES),
    options=st.dictionaries(st.sampled_from(_OPTIONS), st.one_of(
        _VALUES, st.integers(-(2**70), 2**70), st.floats(), st.none(), st.booleans()),
        max_size=3),
)  # fmt: skip
def test_fuzz_problems_get(name, options):
    try:
        problem = problems.get(name, **options)
    except (ValueError, TypeError) as e:
        assert str(e) and "\n" not in str(e), repr(e)
    else:
        assert isinstance(problem, problems.Problem)


@pytest.fixture(scope="module")
def model_bytes(files):
    return files["model"].read_bytes()


def _mutate(value, draw):
    """A random change deep inside a JSON tree."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.booleans()):
            del out[key]
        else:
            out[key] = _mutate(value[key], draw)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate(value[i], draw), *value[i + 1 :]]
    return draw(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                          st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                          st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                          st.just({"class": "os:system", "config": {}})))  # fmt: skip


@_FUZZ
@given(data=st.data())
def test_fuzz_load_headers(tmp_path, model_bytes, data):
    head, body = model_bytes.split(b"\n", 1)
    kind = data.draw(st.sampled_from(["mutate", "truncate", "bytes"]))
    if kind == "mutate":
        text = json.dumps(_mutate(json.loads(head), data.draw)).encode() + b"\n" + body
    elif kind == "truncate":
        text = model_bytes[: data.draw(st.integers(0, len(model_bytes) - 1))]
    else:
        text = data.draw(st.binary(max_size=64))
    path = tmp_path / "m.eqx"
    path.write_bytes(text)
    try:
        surrogate.load(path)
    except (ValueError, TypeError, FileNotFoundError) as e:
        assert str(e) and "\n" not in str(e), repr(e)
