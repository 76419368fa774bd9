"""A user's own problem: the heat-equation tutorial (examples/own_problem.py), `module:Class`
and entry-point problems through the CLI, datasets that name modules (never imported), and
the errors of an incomplete `Problem` subclass."""

import contextlib
import functools
import io
import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from surrogate.cli import main as cli
from surrogate.data import read_dataset, write_dataset
from surrogate.problems import Problem, generate, problem_of_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
try:
    import own_problem
finally:
    sys.path.remove(str(EXAMPLES))

# a plugin's problem: the heat equation by its exact solution, on a grid of `resolution`
PLUGIN = '''
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from surrogate.fields import grf_1d
from surrogate.problems import Coordinate, Problem, Variable


class Heat(Problem):
    """Heat equation by its exact Fourier solution (a test plugin)."""

    diffusivity: float = 0.01
    resolution: int = 16
    name: ClassVar[str] = "heat"
    model_inputs: ClassVar[tuple[str, ...]] = ("u0",)
    model_targets: ClassVar[tuple[str, ...]] = ("u",)

    def sample_input(self, key):
        return {"u0": grf_1d(key, self.resolution)}

    def solve(self, inputs):
        k = 2 * jnp.pi * jnp.fft.rfftfreq(self.resolution, 1.0 / self.resolution)
        decay = jnp.exp(-self.diffusivity * k**2)
        return {"u": jnp.fft.irfft(jnp.fft.rfft(inputs["u0"]) * decay, n=self.resolution)}

    def coords(self):
        x = np.arange(self.resolution) / self.resolution
        return {"x": Coordinate(x, "1", "position", axis="X")}

    def variables(self):
        return {"u0": Variable(("x",), "1", "u0", role="input"), "u": Variable(("x",), "1", "u")}
'''


@pytest.fixture(autouse=True)
def forget_test_modules():
    """The modules tests write into their tmp_path are forgotten after each test, so that
    the next one imports (or refuses to import) its own."""
    yield
    for name in ("heatpkg", "trap_problem", "boom_problem", "half_problem"):
        sys.modules.pop(name, None)


def run(capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result, pattern):
    code, _, err = result
    assert code == 2, err
    assert err.startswith("surrogate: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err


def config(tmp_path, data, *, epochs, problem="", name="c.toml"):
    text = (
        f'[data]\npath = "{data}"\nn_train = 32\nn_valid = 4\nn_test = 4\n'
        + (f'problem = "{problem}"\n' if problem else "")
        + '[model]\ntype = "fno"\nmodes = [12]\nwidth = 32\n'
        + f'[training]\nepochs = {epochs}\nlearning_rate = 3e-3\nschedule = "cosine"\n'
        + f'[output]\ndir = "{tmp_path / name.removesuffix(".toml")}"\n'
    )
    path = tmp_path / name
    path.write_text(text)
    return path


def slope(h, errors) -> float:
    return float(np.polyfit(np.log(h), np.log(errors), 1)[0])


def rel(a, b) -> jax.Array:
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


def decay(u0, rates):
    """u0 with each Fourier mode k multiplied by `rates[k]`."""
    return jnp.fft.irfft(jnp.fft.rfft(u0) * rates, n=u0.shape[-1])


@functools.partial(jax.jit, static_argnums=(0, 1))
def smooth_errors(n: int, n_steps: int, kappa: float = 0.01, t: float = 1.0):
    """Errors of the solver for a smooth u0 (its trigonometric interpolant exact to ~1e-12
    at n >= 16) against the exact solution, and against the exact solution of the
    semi-discrete system (same central differences, exact in time: mode k decays as
    exp(-κ t 4 n² sin²(πk/n)))."""
    x = jnp.arange(n) / n
    u0 = jnp.exp(jnp.sin(2 * jnp.pi * x)) + 0.5 * jnp.cos(6 * jnp.pi * x)
    u = own_problem.crank_nicolson(u0, kappa, t, n_steps)
    s2 = jnp.sin(jnp.pi * jnp.fft.rfftfreq(n, 1.0 / n) / n) ** 2
    semi = decay(u0, jnp.exp(-kappa * t * 4 * n**2 * s2))
    return rel(u, own_problem.exact(u0, kappa, t)), rel(u, semi)


# ---- the solver ----------------------------------------------------------------------------
def test_solver_is_second_order_in_dx_and_dt(x64):
    ns = [32, 64, 128]  # dx and dt halved together
    errors = [float(smooth_errors(n, n)[0]) for n in ns]
    assert 1.95 < slope([1 / n for n in ns], errors) < 2.05, errors
    steps = [10, 20, 40]  # dt alone
    errors = [float(smooth_errors(64, s)[1]) for s in steps]
    assert 1.98 < slope([1 / s for s in steps], errors) < 2.02, errors


@functools.partial(jax.jit, static_argnums=(2, 3))
def heat_check(key, kappa, n: int, n_steps: int, t: float = 0.5):
    u0 = own_problem.Heat(resolution=n).sample_input(key)["u0"].astype(jnp.float64)
    u = own_problem.crank_nicolson(u0, kappa, t, n_steps)
    k = jnp.fft.rfftfreq(n, 1.0 / n)
    r, s2 = kappa * (t / n_steps) * n**2, jnp.sin(jnp.pi * k / n) ** 2
    closed_form = decay(u0, ((1 - 2 * r * s2) / (1 + 2 * r * s2)) ** n_steps)
    lam = kappa * (2 * jnp.pi * k) ** 2
    weight = jnp.abs(jnp.fft.rfft(u0)) * jnp.exp(-lam * t)
    leading = lam * t * ((jnp.pi * k / n) ** 2 / 3 + (lam * t / n_steps) ** 2 / 12)
    predicted = jnp.linalg.norm(weight * leading) / jnp.linalg.norm(weight)
    return u0, u, closed_form, rel(u, own_problem.exact(u0, kappa, t)), predicted


@given(
    seed=st.integers(0, 2**31 - 1),
    kappa=st.floats(1e-3, 0.02),
    n=st.sampled_from([32, 33]),
    n_steps=st.sampled_from([25, 100]),
)
def test_solver_is_crank_nicolson_and_near_exact(seed, kappa, n, n_steps):
    """Stepping in x-space equals the closed form of CN with central differences, each mode
    times ((1 - 2r s²)/(1 + 2r s²))^steps, s = sin(πk/n), r = κ dt n²; and it is close to the
    exact solution by its leading error terms, κ(2πk)² t ((πk/n)²/3 + (κ(2πk)² dt)²/12) for
    mode k (central differences slow the decay, Crank-Nicolson speeds it), wherever grid and
    step resolve the modes that carry the field (CN is not L-stable: a coarse step leaves the
    stiff modes ringing at (-1)^steps instead of damping them)."""
    with jax.enable_x64(True):
        checked = heat_check(jax.random.key(seed), kappa, n, n_steps)
        u0, u, closed_form, error, predicted = map(np.asarray, checked)
    np.testing.assert_allclose(u, closed_form, atol=1e-12)
    np.testing.assert_allclose(np.mean(u), np.mean(u0), atol=1e-13)  # mean conserved
    assert error < 2 * predicted + 1e-12, (error, predicted)


def test_problem_is_jittable_and_vmappable():
    p = own_problem.Heat(resolution=32, n_steps=20)
    u0 = p.sample_inputs(jax.random.key(0), 3)["u0"]
    batched = jax.jit(jax.vmap(p.solve))({"u0": u0})["u"]
    one = jax.jit(p.solve)
    for i in range(3):
        np.testing.assert_allclose(batched[i], one({"u0": u0[i]})["u"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"u0 should have shape \(32,\), got \(16,\)"):
        p.solve({"u0": jnp.zeros(16)})


# ---- the tutorial ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The tutorial at small sizes (40 samples of 32 points, 60 epochs), run once."""
    out = tmp_path_factory.mktemp("example")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLES))
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            result = own_problem.main(
                ["--n", "40", "--resolution", "32", "--epochs", "60", "--out", str(out)]
            )
    return {**result, "out": out, "printed": printed.getvalue()}


def test_example_end_to_end(example):
    out, printed = example["out"], example["printed"]
    assert 1e-4 < example["error"] < 6e-3  # O(dx²) at 32 points; a first-order scheme: ~1e-2
    assert abs(example["order"] - 2) < 0.1
    assert f"relative L2 error {example['error']:.2e}" in printed
    # an untrained FNO is at ~1, predicting u = u0 at `baseline` (~0.8)
    metrics = example["metrics"]
    assert metrics["relative_l2"] < 0.1 < 0.5 < example["baseline"]
    assert set(metrics) == {"relative_l2", "rmse", "max_error", "energy_error"}
    assert metrics["energy_error"] < 0.2  # the energy left after t = 1: ~0.35 of u0's
    ds = read_dataset(out / "heat.nc")
    assert ds.attrs["problem"] == "heat" and ds.attrs["problem_class"] == "own_problem:Heat"
    assert json.loads(ds.attrs["problem_options"])["resolution"] == 32
    assert "$ PYTHONPATH=examples surrogate generate own_problem:Heat --n 4" in printed
    cli_metrics = json.loads((out / "cli_metrics.json").read_text())
    assert cli_metrics["relative_l2"] < 0.1 and "energy_error" in cli_metrics
    held_out = read_dataset(out / "heat_test.nc")
    assert held_out.attrs["seed"] == 1 and held_out.sizes["sample"] == 4
    # what generate stored is the solver's solution of what it sampled
    np.testing.assert_allclose(
        ds["u"].values[:3],
        jax.vmap(own_problem.Heat(resolution=32).solve)({"u0": ds["u0"].values[:3]})["u"],
        rtol=1e-5,
        atol=1e-6,
    )


# ---- module:Class through the command line --------------------------------------------------
def test_generate_imports_module_class_by_name(tmp_path, capsys, monkeypatch):
    """`surrogate generate own_problem:Heat` imports the module from the path (as
    `PYTHONPATH=examples surrogate generate ...` does) and draws the samples Python draws."""
    monkeypatch.delitem(sys.modules, "own_problem")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    data = tmp_path / "heat.nc"
    argv = ["generate", "own_problem:Heat", "--n", 4, "--resolution", 32, "--n-steps", 50]
    code, out, err = run(capsys, *argv, "--out", data, "--quiet")
    assert code == 0, err
    assert out == f"wrote {data}: 4 sample(s) of heat\n"
    assert sys.modules["own_problem"] is not own_problem  # imported afresh, by its name
    ds = read_dataset(data)
    assert ds.attrs["problem"] == "heat" and ds.attrs["problem_class"] == "own_problem:Heat"
    assert (ds.attrs["model_inputs"], ds.attrs["model_targets"]) == ("u0", "u")
    assert ds.attrs["option_n_steps"] == 50 and ds.attrs["seed"] == 0
    again = generate(own_problem.Heat(resolution=32, n_steps=50), 4, seed=0)
    np.testing.assert_array_equal(ds["u0"].values, again["u0"].values)
    np.testing.assert_allclose(ds["u"].values, again["u"].values, rtol=1e-6, atol=1e-7)


def test_module_class_dataset_trains_like_a_builtin(example, tmp_path, capsys, monkeypatch):
    """Where `own_problem` is neither importable nor imported, its datasets train and
    evaluate from the variables they record, and reading them does not import it."""
    monkeypatch.delitem(sys.modules, "own_problem")
    data, model = example["out"] / "heat.nc", example["out"] / "python" / "model.eqx"
    code, out, err = run(capsys, "train", config(tmp_path, data, epochs=0), "--quiet")
    assert code == 0, err
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    # own data's metrics (with relative H1), not Heat.metrics: the problem was not imported
    assert set(metrics) == {"relative_l2", "rmse", "max_error", "relative_h1"}
    code, out, err = run(capsys, "evaluate", model, example["out"] / "heat_test.nc")
    assert code == 0, err
    assert "energy_error" not in out and "own_problem" not in sys.modules
    relative_l2 = float(re.search(r"relative_l2\s+(\S+)", out).group(1))
    assert relative_l2 < 0.1  # the tutorial's model, on samples it never saw


def test_config_names_the_problem_for_its_metrics(example, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    data = example["out"] / "heat.nc"
    code, out, err = run(
        capsys, "train", config(tmp_path, data, epochs=0, problem="own_problem:Heat")
    )
    assert code == 0, err
    assert "energy_error" in json.loads((tmp_path / "c" / "metrics.json").read_text())
    bad = config(tmp_path, data, epochs=0, problem="burgers", name="b.toml")
    one_line_error(run(capsys, "train", bad), r"written by problem 'heat', not 'burgers'")


# ---- an entry-point plugin ------------------------------------------------------------------
def test_entry_point_plugin(example, tmp_path, capsys, monkeypatch):
    (tmp_path / "heatpkg.py").write_text(PLUGIN)
    info = tmp_path / "heatpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: heatpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[surrogate.problems]\nheat = heatpkg:Heat\nbroken = heatpkg:Missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run(capsys, "list")
    assert code == 0, err
    assert re.search(r"\n  heat +Heat equation by its exact Fourier solution", out), out
    assert re.search(r"options: diffusivity, resolution", out), out
    assert "broken" in out and "failed to load" in out  # listed, with its error
    data = tmp_path / "p.nc"
    code, out, err = run(
        capsys, "generate", "heat", "--n", 3, "--diffusivity", 0.05, "--out", data, "--quiet"
    )
    assert code == 0, err
    ds = read_dataset(data)
    assert ds.attrs["problem_class"] == "heatpkg:Heat" and ds.attrs["option_diffusivity"] == 0.05
    k = 2 * np.pi * np.fft.rfftfreq(16, 1 / 16)
    exact = np.fft.irfft(np.fft.rfft(ds["u0"].values) * np.exp(-0.05 * k**2), n=16)
    np.testing.assert_allclose(ds["u"].values, exact, rtol=1e-5, atol=1e-6)
    assert type(problem_of_dataset(ds)).__module__ == "heatpkg"  # a plugin is found by name
    # a dataset of another class of the same name is not taken for the plugin's
    tutorial = read_dataset(example["out"] / "heat.nc")
    assert type(problem_of_dataset(tutorial)) is own_problem.Heat
    one_line_error(
        run(capsys, "generate", "broken", "--n", 1, "--out", tmp_path / "b.nc"),
        r"problem plugin 'broken' failed to load",
    )


# ---- datasets that name a module ------------------------------------------------------------
@pytest.mark.parametrize("attribute", ["problem_class", "problem"])
def test_a_dataset_never_imports_the_module_it_names(
    example, tmp_path, capsys, monkeypatch, attribute
):
    flag = tmp_path / "imported"
    (tmp_path / "trap_problem.py").write_text(
        f"from pathlib import Path\nPath({str(flag)!r}).write_text('imported')\n"
        + PLUGIN.replace("class Heat", "class Trap")
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, but nobody asked for it
    ds = xr.open_dataset(example["out"] / "heat.nc").load()
    options = json.dumps({"diffusivity": 0.01, "resolution": 32})  # Trap's own
    ds.attrs.update(problem="trap", problem_class="trap_problem:Trap", problem_options=options)
    ds.attrs[attribute] = "trap_problem:Trap"
    trap = write_dataset(ds, tmp_path / "trap.nc")
    with pytest.raises(ValueError) as e:
        problem_of_dataset(read_dataset(trap))
    assert str(e.value).count("\n") == 0 and "import its module first" in str(e.value)
    assert "'trap_problem:Trap'" in str(e.value)
    code, out, err = run(capsys, "evaluate", example["out"] / "python" / "model.eqx", trap)
    assert code == 0, err
    code, out, err = run(capsys, "train", config(tmp_path, trap, epochs=0), "--quiet")
    assert code == 0, err
    assert not flag.exists() and "trap_problem" not in sys.modules
    # the user naming it is another matter: then it is imported
    named = problem_of_dataset(read_dataset(trap), name="trap_problem:Trap")
    assert flag.exists() and type(named).__name__ == "Trap"


@pytest.mark.parametrize(
    "problem,message",
    [
        ("no_such_module_zz:Heat", r"cannot import problem module 'no_such_module_zz': No module"),
        ("boom_problem:Heat", r"cannot import problem module 'boom_problem': RuntimeError: boom"),
        ("own_problem:Nope", r"'own_problem:Nope' is not a surrogate.problems.Problem subclass"),
        ("own_problem:exact", r"'own_problem:exact' is not a surrogate.problems.Problem subclass"),
        ("json:JSONDecoder", r"'json:JSONDecoder' is not a surrogate.problems.Problem subclass"),
        ("half_problem:Heat", r"abstract class Heat .*abstract methods? '?variables"),
        ("own_problem:Heat:x", r"looks like package.module:Class, got 'own_problem:Heat:x'"),
        ("own_problem:Heat --viscosity 1", r"unknown option\(s\) \['viscosity'\] for problem"),
        ("own_problem:Heat --resolution 2", r"need resolution >= 4"),
        ("own_problem:Heat --n_steps many", r"option 'n_steps' expects int, got 'many'"),
    ],
)
def test_cli_refuses_bad_problems_in_one_line(tmp_path, capsys, monkeypatch, problem, message):
    (tmp_path / "boom_problem.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "half_problem.py").write_text(
        PLUGIN.replace("    def variables(self):", "    def _variables(self):")
    )
    for path in (tmp_path, EXAMPLES):
        monkeypatch.syspath_prepend(str(path))
    name, *options = problem.split()
    argv = ["generate", name, "--n", "2", "--out", tmp_path / "x.nc", *options]
    one_line_error(run(capsys, *argv), message)
    assert not (tmp_path / "x.nc").exists()


# ---- an incomplete subclass -----------------------------------------------------------------
METHODS = ("sample_input", "solve", "coords", "variables")
CLASS_VARIABLES = {"name": "heat", "model_inputs": ("u0",), "model_targets": ("u",)}


@given(st.sets(st.sampled_from(METHODS + tuple(CLASS_VARIABLES)), min_size=1))
def test_an_incomplete_problem_says_what_is_missing(missing):
    body = {m: (lambda self, *args: {}) for m in METHODS if m not in missing}
    body.update({k: v for k, v in CLASS_VARIABLES.items() if k not in missing})
    cls = type("Half", (Problem,), body)
    with pytest.raises(TypeError) as e:
        cls()
    message = str(e.value)
    methods = [m for m in METHODS if m in missing]
    if methods:  # abstract methods first, every one named (and only those)
        assert "abstract" in message, message
        assert [m for m in METHODS if re.search(rf"\b{m}\b", message)] == methods, message
    else:
        named = re.search(r"problem Half does not declare (.*) \(class variables", message)
        assert named.group(1) == ", ".join(v for v in CLASS_VARIABLES if v in missing), message


def test_a_complete_problem_instantiates():
    body = {m: (lambda self, *args: {}) for m in METHODS}
    p = type("Whole", (Problem,), {**body, **CLASS_VARIABLES})()
    assert p.options() == {} and p.attributes()["problem_class"].endswith(":Whole")
