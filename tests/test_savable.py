"""Model files: every family round-trips through save/load, files of 0.1.0 still load, and
a file naming anything outside the table of savable classes is refused before import."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import surrogate
from surrogate._serialization import FORMAT, describe, read_header
from surrogate.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
KEY = jax.random.key(0)


def _families():
    from surrogate.applications.convection import ConvectionMLP, ConvectionSSM
    from surrogate.applications.gravity_waves import (
        GravityWaveMLP,
        GravityWaveSSM,
        NonlocalGravityWaveSSM,
    )
    from surrogate.applications.ignition import KernelRidge, TrajectoryMLP
    from surrogate.applications.lorenz96 import (
        AR1Closure,
        FNOClosure,
        LocalMLPClosure,
        PolynomialClosure,
    )
    from surrogate.applications.room_acoustics import SourceDeepONet
    from surrogate.data import NormalizedModel, Normalizer
    from surrogate.nde import (
        ConditionedParameters,
        HybridField,
        LinearCDSSM,
        MLPField,
        NeuralCDSSM,
        NeuralODE,
        NeuralSDE,
    )
    from surrogate.operators import FNO, DeepONet, DeepONetOperator, MgNO, PODDeepONet
    from surrogate.ssm import S4, S5, BidirectionalSSM, DiagonalSSM, SSMBlock, SSMStack

    mlp = MLPField(3, 8, 2, key=KEY)
    return {
        "fno": (FNO(2, 1, modes=(4,), width=8, n_layers=2, key=KEY), jnp.ones((2, 16))),
        "mgno": (MgNO(1, 1, ndim=2, width=4, depth=1, levels=2, key=KEY), jnp.ones((1, 9, 9))),
        "deeponet": (
            DeepONet(5, 1, p=4, branch_width=8, trunk_width=8, fourier_features=3, key=KEY),
            (jnp.ones(5), jnp.linspace(0, 1, 7)[:, None]),
        ),
        "deeponet_operator": (
            DeepONetOperator(1, 2, (8,), p=4, branch_width=8, activation="gelu", key=KEY),
            jnp.ones((1, 12)),
        ),
        "deeponet_cnn": (
            DeepONetOperator(
                1, 1, (6, 6), branch="cnn", conv_channels=[2], p=2, branch_width=4, key=KEY
            ),
            jnp.ones((1, 6, 6)),
        ),
        "pod_deeponet": (
            PODDeepONet(1, jnp.zeros((1, 8)), jnp.eye(8)[:3, None], branch_width=4, key=KEY),
            jnp.ones((1, 12)),
        ),
        "diagonal_ssm": (DiagonalSSM(3, 4, init="s4d_inv", key=KEY), jnp.ones((10, 3))),
        "bidirectional_ssm": (
            BidirectionalSSM(3, 4, merge="concat", dt_min=1e-2, key=KEY),
            jnp.ones((10, 3)),
        ),
        "ssm_block": (SSMBlock(3, 4, mixing="linear", key=KEY), jnp.ones((10, 3))),
        "ssm_stack": (
            SSMStack(2, 1, width=8, depth=2, state_size=4, bidirectional=True, key=KEY),
            jnp.ones((10, 2)),
        ),
        # equal leaves and arguments give equal outputs: no eager call (it compiles op by op)
        "s5": (S5(3, 4, blocks=2, bidirectional=True, merge="concat", key=KEY), None),
        "s4": (S4(3, 4, rank=2, tied=False, key=KEY), None),
        "hydra_stack": (
            SSMStack(2, 1, 4, 1, 3, layer="hydra", bidirectional=True, heads=2, key=KEY),
            None,
        ),
        "neural_ode": (
            NeuralODE(mlp, solver=diffrax.Dopri5(), rtol=1e-4, atol=1e-6),
            (jnp.linspace(0, 1, 4), jnp.ones(3)),
        ),
        "neural_sde": (
            NeuralSDE(mlp, MLPField(3, 4, 1, key=KEY), dt0=0.05),
            (jnp.linspace(0, 1, 4), jnp.ones(3)),
        ),
        # (no call: each would compile a filter; the leaves and arguments are compared)
        "linear_cdssm": (LinearCDSSM(2, 3, propagation="ode", rtol=1e-4, key=KEY), None),
        "neural_cdssm": (
            NeuralCDSSM(2, 3, 4, n_matrices=2, nonlinear_emission=True, key=KEY),
            None,
        ),
        "hybrid": (
            HybridField(
                MLPField(3, 4, 1, key=KEY),
                mlp,
                parameters=ConditionedParameters(
                    MLPField(2, 4, 1, key=KEY), {"a": 1.0, "b": 2.0}, positive=("a",)
                ),
            ),
            None,
        ),
        "normalized": (
            NormalizedModel(
                FNO(1, 1, modes=(3,), width=4, n_layers=1, key=KEY),
                Normalizer(1, [0.5], [2.0]),
                Normalizer(1, [-1.0], [3.0]),
            ),
            jnp.ones((1, 8)),
        ),
        "trajectory_mlp": (
            TrajectoryMLP(7, 2, times=np.linspace(0, 1, 5), width=8, depth=1, key=KEY),
            jnp.ones(7),
        ),
        "kernel_ridge": (
            KernelRidge.fit(
                jnp.exp(jax.random.normal(KEY, (6, 3))),
                jax.random.normal(jax.random.key(1), (6, 5)),
                jnp.linspace(0.1, 1.0, 5),
            ),
            jnp.ones(3),
        ),
        "polynomial_closure": (
            PolynomialClosure(3, jnp.array([0.1, 0.2, 0.3, 0.4]), key=KEY),
            jnp.ones(8),
        ),
        "mlp_closure": (LocalMLPClosure(stencil=1, width=8, depth=1, key=KEY), jnp.ones(8)),
        "fno_closure": (FNOClosure(modes=3, width=4, n_layers=1, key=KEY), jnp.ones(8)),
        "ar1_closure": (
            AR1Closure(PolynomialClosure(1, jnp.array([0.5, -0.2]), key=KEY), 0.7, 0.3),
            jnp.ones(8),
        ),
        "convection_ssm": (ConvectionSSM(width=8, depth=1, state_size=4, key=KEY), None),
        "convection_mlp": (ConvectionMLP(n_levels=6, width=8, depth=1, key=KEY), None),
        "gravity_wave_ssm": (GravityWaveSSM(width=8, depth=1, state_size=4, key=KEY), None),
        "gravity_wave_mlp": (GravityWaveMLP(n_levels=6, width=8, depth=1, key=KEY), None),
        "nonlocal_gravity_wave_ssm": (
            NonlocalGravityWaveSSM(reach=1, width=8, depth=1, state_size=4, key=KEY),
            None,
        ),
        "source_deeponet": (
            SourceDeepONet((0, 0, 0), (1, 1, 1), p=4, branch_width=8, trunk_width=8, key=KEY),
            (jnp.array([0.3, 0.4]), jnp.full((5, 3), 0.5)),
        ),
    }


def _perturbed(model):
    """Every inexact leaf shifted, so that a file restoring defaults would be caught."""
    return jax.tree.map(lambda a: a + 0.01 if eqx.is_inexact_array(a) else a, model)


def _call(model, x):
    if x is None:
        return None
    if type(model).__name__ == "NeuralSDE":
        return model(*x, key=jax.random.key(1))
    return model(*x) if isinstance(x, tuple) else model(x)


@pytest.mark.parametrize("name", sorted(_families()))
def test_every_family_round_trips(name, tmp_path):
    model, x = _families()[name]
    model = _perturbed(model)
    path = surrogate.save(tmp_path / f"{name}.eqx", model)
    header = read_header(path)
    assert ":_" not in header["model"]["class"] and "._" not in header["model"]["class"]
    back = surrogate.load(path)
    assert type(back) is type(model) and describe(back) == describe(model)
    a, b = (jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (back, model))
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)
    if x is not None:
        np.testing.assert_array_equal(_call(back, x), _call(model, x))


def test_files_of_version_0_1_load_and_give_their_outputs():
    out = np.load(FIXTURES / "v0.1.0_outputs.npz")
    fno = surrogate.load(FIXTURES / "v0.1.0_fno.eqx")
    assert read_header(FIXTURES / "v0.1.0_fno.eqx")["model"]["class"] == (
        "surrogate.data._normalize:NormalizedModel"
    )
    np.testing.assert_array_equal(fno(jnp.asarray(out["fno_x"])), out["fno_y"])
    closure = surrogate.load(FIXTURES / "v0.1.0_polynomial_closure.eqx")
    assert type(closure).__module__.startswith("surrogate.applications.lorenz96")
    np.testing.assert_array_equal(closure(jnp.asarray(out["poly_x"])), out["poly_y"])


def test_a_users_own_model_declares_itself_savable(tmp_path):
    @surrogate.savable
    class Scale(eqx.Module):
        weight: jax.Array
        n: int = eqx.field(static=True)

        def __init__(self, n: int, *, key):
            self.weight = jax.random.normal(key, (n,))
            self.n = n

        def __call__(self, x):
            return self.weight * x

    model = Scale(3, key=jax.random.key(4))
    back = surrogate.load(surrogate.save(tmp_path / "scale.eqx", model))
    np.testing.assert_array_equal(back.weight, model.weight)
    with pytest.raises(TypeError, match="keep \\*\\*extra as a field"):

        @surrogate.savable
        class Bad(eqx.Module):
            def __init__(self, **extra):
                pass

    with pytest.raises(TypeError, match="argument 'hidden' is neither a field"):

        @surrogate.savable
        class Hidden(eqx.Module):
            w: jax.Array

            def __init__(self, hidden: int):
                self.w = jnp.zeros(hidden)

    class Plain(eqx.Module):
        w: jax.Array

    with pytest.raises(TypeError, match="declare its class with @surrogate.savable"):
        surrogate.save(tmp_path / "plain.eqx", Plain(jnp.zeros(2)))


def _crafted(tmp_path, model_desc, name="evil.eqx", leaves=b""):
    path = tmp_path / name
    header = {"format": FORMAT, "version": "0.1.0", "model": model_desc}
    path.write_bytes((json.dumps(header) + "\n").encode() + leaves)
    return path


@pytest.mark.parametrize(
    "cls, config",
    [
        ("logging:basicConfig", {"filename": "PWNED", "level": 10}),
        ("subprocess:Popen", {"args": ["touch", "PWNED"]}),
        ("builtins:dict", {"PWNED": 1}),
        ("os:system", {"command": "touch PWNED"}),
        ("surrogate.problems:Problem", {}),
        ("never_imported_module_xyz:Thing", {}),
    ],
)
def test_foreign_classes_are_refused_before_import(tmp_path, monkeypatch, capsys, cls, config):
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    path = _crafted(tmp_path, {"class": cls, "config": config})
    with pytest.raises(ValueError, match="not a savable class"):
        surrogate.load(path)
    code = main(["evaluate", str(path), str(tmp_path / "none.nc")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("surrogate: error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [path]  # nothing was created
    assert "never_imported_module_xyz" not in set(sys.modules) - before


def test_nested_foreign_classes_are_refused(tmp_path):
    inner = {"class": "logging:basicConfig", "config": {"filename": str(tmp_path / "x")}}
    desc = describe(
        surrogate.data.NormalizedModel(
            surrogate.operators.FNO(1, 1, modes=(2,), width=2, n_layers=1, key=KEY),
            surrogate.data.Normalizer(1),
            surrogate.data.Normalizer(1),
        )
    )
    desc["config"]["model"] = inner
    with pytest.raises(ValueError, match="'logging:basicConfig', which is not a savable"):
        surrogate.load(_crafted(tmp_path, desc))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "desc, message",
    [
        ({"class": "surrogate.operators:FNO"}, r"gives no arguments \('config'\)"),
        ({"config": {}}, r"no model description \('class' missing\)"),
        ({"class": 3, "config": {}}, "names no class"),
        (
            {"class": "surrogate.operators:FNO", "config": {"in_channels": 1, "evil": 2}},
            r"unknown argument\(s\) \['evil'\]",
        ),
        (
            {"class": "surrogate.operators:FNO", "config": {"in_channels": "x"}},
            "arguments for FNO are invalid",
        ),
        (
            {
                "class": "surrogate.data:Normalizer",
                "config": {"channels": 1, "dtype": {"__dtype__": "object"}},
            },
            "unknown dtype",
        ),
        (
            {"class": "surrogate.data:Normalizer", "config": {"channels": {"__eval__": "1"}}},
            "cannot read",
        ),
    ],
)
def test_bad_headers_are_clear_errors(tmp_path, desc, message):
    with pytest.raises(ValueError, match=message):
        surrogate.load(_crafted(tmp_path, desc))


def test_truncated_and_garbled_files(tmp_path):
    model = surrogate.operators.FNO(1, 1, modes=(2,), width=2, n_layers=1, key=KEY)
    path = surrogate.save(tmp_path / "m.eqx", model)
    data = path.read_bytes()
    (tmp_path / "cut.eqx").write_bytes(data[: len(data) - 20])
    with pytest.raises(ValueError, match="truncated file or different architecture"):
        surrogate.load(tmp_path / "cut.eqx")
    (tmp_path / "half.eqx").write_bytes(data[:30])
    with pytest.raises(ValueError, match="not a surrogate model file"):
        surrogate.load(tmp_path / "half.eqx")
    with pytest.raises(ValueError, match="is a directory"):
        surrogate.load(tmp_path)
