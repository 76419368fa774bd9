"""Relative H1 (Sobolev) loss: analytic norms, finite-difference convergence, invariances."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from surrogate._config import parse_config
from surrogate.training import h1_norm, relative_h1, relative_h1_per_sample, relative_lp

TWO_PI = 2.0 * math.pi


def periodic_grid(n):
    return jnp.arange(n, dtype=jnp.float64) / n


def vertex_grid(n):
    return jnp.linspace(0.0, 1.0, n, dtype=jnp.float64)


def as_batch(u):
    return u[None, None]


@pytest.mark.parametrize("k", [1, 3])
def test_h1_norm_of_sinusoid_1d(x64, k):
    # ‖sin 2πkx‖²_H1 on [0, 1) = ½ + (2πk)²·½; the periodic central difference of sin 2πkx
    # is cos 2πkx · sin(2πkh)/h exactly, so its discrete norm is known in closed form too
    n = 32
    x = periodic_grid(n)
    u = as_batch(jnp.sin(TWO_PI * k * x))
    exact = math.sqrt(0.5 + 0.5 * (TWO_PI * k) ** 2)
    np.testing.assert_allclose(h1_norm(u, derivative="spectral"), [exact], rtol=1e-13)
    h = 1.0 / n
    fd_exact = math.sqrt(0.5 + 0.5 * (math.sin(TWO_PI * k * h) / h) ** 2)
    np.testing.assert_allclose(h1_norm(u), [fd_exact], rtol=1e-13)


def test_h1_norm_of_sinusoid_2d_3d_and_spacing(x64):
    # u = sin 2πx cos 4πy on the unit torus: ∫u² = ¼, ∫|∇u|² = ((2π)² + (4π)²)/4
    n = 24
    x = periodic_grid(n)
    X, Y = jnp.meshgrid(x, x, indexing="ij")
    u = as_batch(jnp.sin(TWO_PI * X) * jnp.cos(2 * TWO_PI * Y))
    exact = math.sqrt(0.25 * (1 + TWO_PI**2 + (2 * TWO_PI) ** 2))
    np.testing.assert_allclose(h1_norm(u, derivative="spectral"), [exact], rtol=1e-13)
    # the same samples read as a box [0, 2) × [0, 3): ∂x scales by 1/2, ∂y by 1/3, area 6
    boxed = h1_norm(u, (2.0 / n, 3.0 / n), derivative="spectral")
    expect = math.sqrt(6 * 0.25 * (1 + (TWO_PI / 2) ** 2 + (2 * TWO_PI / 3) ** 2))
    np.testing.assert_allclose(boxed, [expect], rtol=1e-13)
    # 3-D: sin 2πx sin 2πy sin 2πz, ∫u² = ⅛, each derivative term (2π)²/8
    n = 12
    x = periodic_grid(n)
    X, Y, Z = jnp.meshgrid(x, x, x, indexing="ij")
    u = as_batch(jnp.sin(TWO_PI * X) * jnp.sin(TWO_PI * Y) * jnp.sin(TWO_PI * Z))
    exact = math.sqrt((1 + 3 * TWO_PI**2) / 8)
    np.testing.assert_allclose(h1_norm(u, derivative="spectral"), [exact], rtol=1e-12)


def _order(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def test_fd_h1_norm_converges_at_second_order(x64):
    # periodic central differences and the vertex grid's one-sided ends are both O(h²)
    ns = np.array([16, 32, 64, 128])
    per, ver = [], []
    exact_per = math.sqrt(0.5 + 0.5 * (TWO_PI * 2) ** 2)
    # u = exp(x)·sin(πx) + x² on [0, 1]: ∫(u² + u'²) by high-order quadrature below
    for n in ns:
        x = periodic_grid(n)
        per.append(abs(float(h1_norm(as_batch(jnp.sin(2 * TWO_PI * x)))[0]) - exact_per))
    fine = vertex_grid(20001)
    f = jnp.exp(fine) * jnp.sin(jnp.pi * fine) + fine**2
    df = jnp.exp(fine) * (jnp.sin(jnp.pi * fine) + jnp.pi * jnp.cos(jnp.pi * fine)) + 2 * fine
    exact_ver = math.sqrt(float(jnp.trapezoid(f**2 + df**2, fine)))
    ns_vertex = 4 * ns  # the one-sided ends reach the asymptotic rate later
    for n in ns_vertex + 1:
        x = vertex_grid(n)
        u = as_batch(jnp.exp(x) * jnp.sin(jnp.pi * x) + x**2)
        ver.append(abs(float(h1_norm(u, periodic=False)[0]) - exact_ver))
    assert 1.9 < _order(ns, per) < 2.1
    assert 1.85 < _order(ns_vertex, ver) < 2.15


def test_fd_and_spectral_agree_for_a_smooth_periodic_field(x64):
    n = 256
    x = periodic_grid(n)
    X, Y = jnp.meshgrid(x, x, indexing="ij")
    u = as_batch(jnp.exp(jnp.sin(TWO_PI * X)) * jnp.cos(TWO_PI * Y))
    fd, sp = h1_norm(u), h1_norm(u, derivative="spectral")
    np.testing.assert_allclose(fd, sp, rtol=2e-3)
    assert not np.allclose(fd, sp, rtol=1e-8)  # they are different discretisations


def test_relative_h1_weighs_a_high_frequency_error_by_its_wavenumber(x64):
    # true = sin 2πx, pred = true + ε sin 2πmx: the ratio is ε √(1 + (2πm)²) / √(1 + (2π)²)
    # while the relative L2 error is ε whatever m
    n, eps = 64, 1e-2
    x = periodic_grid(n)
    true = as_batch(jnp.sin(TWO_PI * x))
    for m in (1, 5, 20):
        pred = true + eps * as_batch(jnp.sin(TWO_PI * m * x))
        got = relative_h1(pred, true, derivative="spectral")
        expect = eps * math.sqrt(1 + (TWO_PI * m) ** 2) / math.sqrt(1 + TWO_PI**2)
        np.testing.assert_allclose(got, expect, rtol=1e-10)
        np.testing.assert_allclose(relative_lp(pred, true), eps, rtol=1e-10)


def test_relative_h1_is_zero_for_identical_fields_and_per_sample_over_channels(x64):
    key = jax.random.key(0)
    true = jax.random.normal(key, (3, 2, 10, 12), jnp.float64)
    pred = true + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), true.shape, jnp.float64)
    for options in ({}, {"periodic": False}, {"derivative": "spectral"}):
        assert float(relative_h1(true, true, **options)) == 0.0
        per = relative_h1_per_sample(pred, true, **options)
        one_by_one = [
            relative_h1_per_sample(pred[i : i + 1], true[i : i + 1], **options)[0] for i in range(3)
        ]
        np.testing.assert_allclose(per, one_by_one, rtol=1e-13)
        # both channels count: a sample's norm² is the sum of its channels' norms²
        both = h1_norm(true, **options) ** 2
        each = sum(h1_norm(true[:, c : c + 1], **options) ** 2 for c in range(2))
        np.testing.assert_allclose(both, each, rtol=1e-13)
        np.testing.assert_allclose(relative_h1(pred, true, **options), jnp.mean(per))


@given(
    scale=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
    seed=st.integers(0, 2**16),
    periodic=st.booleans(),
)
def test_relative_h1_is_scale_invariant(scale, seed, periodic):
    with jax.enable_x64(True):
        key = jax.random.key(seed)
        true = jax.random.normal(key, (2, 1, 9, 7), jnp.float64)
        pred = true + jax.random.normal(jax.random.fold_in(key, 1), true.shape, jnp.float64)
        base = relative_h1_per_sample(pred, true, periodic=periodic)
        scaled = relative_h1_per_sample(scale * pred, scale * true, periodic=periodic)
        np.testing.assert_allclose(scaled, base, rtol=1e-9)  # up to eps = 1e-12 / ‖true‖
        # a norm: ‖c u‖ = |c| ‖u‖
        np.testing.assert_allclose(
            h1_norm(scale * true, periodic=periodic),
            abs(scale) * h1_norm(true, periodic=periodic),
            rtol=1e-10,
        )


def test_relative_h1_gradient_matches_finite_differences(x64):
    key = jax.random.key(3)
    true = jax.random.normal(key, (2, 1, 8, 6), jnp.float64)
    pred = true + 0.3 * jax.random.normal(jax.random.fold_in(key, 1), true.shape, jnp.float64)
    for options in ({}, {"periodic": False}, {"derivative": "spectral"}):
        check_grads(lambda p, o=options: relative_h1(p, true, **o), (pred,), order=1, modes="rev")


def test_relative_lp_hand_computed(x64):
    # two samples, two channels on a 2x2 grid: sample 0 error (1, 0, 0, 0 | 0, 0, 0, -2),
    # true all ones -> ‖e‖₂ = √5, ‖t‖₂ = √8; sample 1 error 0
    true = jnp.ones((2, 2, 2, 2), jnp.float64)
    pred = true.at[0, 0, 0, 0].add(1.0).at[0, 1, 1, 1].add(-2.0)
    np.testing.assert_allclose(relative_lp(pred, true), 0.5 * math.sqrt(5 / 8), rtol=1e-11)
    np.testing.assert_allclose(relative_lp(pred, true, p=1), 0.5 * 3 / 8, rtol=1e-11)


def test_h1_bad_input():
    u = jnp.zeros((2, 1, 8, 8))
    with pytest.raises(ValueError, match="differs from target"):
        relative_h1(u, jnp.zeros((2, 1, 8, 9)))
    with pytest.raises(ValueError, match="1 to 3 grid axes"):
        h1_norm(jnp.zeros((2, 8)))
    with pytest.raises(ValueError, match="unknown derivative"):
        h1_norm(u, derivative="fft2")
    with pytest.raises(ValueError, match="needs a periodic grid"):
        h1_norm(u, periodic=False, derivative="spectral")
    with pytest.raises(ValueError, match="one positive grid step per grid axis"):
        h1_norm(u, (0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="one positive grid step per grid axis"):
        h1_norm(u, -0.1)
    with pytest.raises(ValueError, match=">= 3 points"):
        h1_norm(jnp.zeros((2, 1, 2)))


def test_config_accepts_h1_loss():
    raw = {"data": {"path": "x.nc"}, "model": {"type": "fno"}, "training": {"loss": "h1"}}
    assert parse_config(raw).training.loss == "h1"
    raw["training"]["loss"] = "h2"
    with pytest.raises(ValueError, match="loss 'h2' unknown"):
        parse_config(raw)


def test_train_from_config_with_h1_loss_minimises_relative_h1(tmp_path):
    # the validation loss the run records is the relative H1 error of the saved model
    from surrogate import load, problems, train_from_config
    from surrogate._config import Config, DataConfig, OutputConfig, TrainingConfig
    from surrogate.data import write_dataset
    from surrogate.evaluation import predict
    from surrogate.problems import generate
    from surrogate.training import relative_l2

    path = tmp_path / "b.nc"
    p = problems.get("burgers", resolution=32, viscosity=0.1)
    write_dataset(generate(p, 12, seed=0), path)
    cfg = Config(
        DataConfig(str(path), n_train=8, n_valid=2, n_test=2),
        {"type": "fno", "modes": [4], "width": 8, "n_layers": 2},
        TrainingConfig(epochs=20, batch_size=4, learning_rate=1e-2, loss="h1"),
        OutputConfig(str(tmp_path / "run")),
    )
    result = train_from_config(cfg, progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    ds = xr.open_dataset(path)
    x = ds["u0"].values[8:10, None].astype(np.float32)
    y = jnp.asarray(ds["u"].values[8:10, None].astype(np.float32))
    pred = jnp.asarray(predict(load(result["model"]), x))
    np.testing.assert_allclose(history["valid_loss"][-1], relative_h1(pred, y), rtol=1e-4)
    assert float(relative_h1(pred, y)) < 0.5  # it learned something, and not in L2:
    assert abs(float(relative_l2(pred, y)) - history["valid_loss"][-1]) > 0.01
