"""Trajectory losses, time windows and ensemble (distribution) losses of `surrogate.nde`."""

import itertools

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from surrogate.nde import (
    NeuralODE,
    energy_distance,
    energy_score,
    gaussian_mmd,
    moment_loss,
    sliding_windows,
    time_windows,
    trajectory_loss,
)


def naive_mean_norm(a, b):
    return np.mean([np.linalg.norm(u - v) for u, v in itertools.product(a, b)])


def test_energy_distance_against_naive_sums_and_cdf_identity(x64):
    """Against a double loop; and in 1-D, D² = 2 ∫ (F_x − F_y)² dz (Székely & Rizzo 2013,
    eq. 3), the integral of the empirical CDFs' gap done exactly on their breakpoints."""
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (30, 3), jnp.float64)
    y = 0.5 + 1.3 * jax.random.normal(ky, (20, 3), jnp.float64)
    xn, yn = np.asarray(x), np.asarray(y)
    naive = 2 * naive_mean_norm(xn, yn) - naive_mean_norm(xn, xn) - naive_mean_norm(yn, yn)
    assert np.isclose(jax.jit(energy_distance)(x, y), naive, rtol=1e-12)
    x1, y1 = xn[:, 0], yn[:, 0]
    z = np.sort(np.concatenate([x1, y1]))
    fx = np.searchsorted(np.sort(x1), z[:-1], side="right") / x1.size
    fy = np.searchsorted(np.sort(y1), z[:-1], side="right") / y1.size
    assert np.isclose(
        energy_distance(x[:, :1], y[:, :1]), 2 * np.sum((fx - fy) ** 2 * np.diff(z)), rtol=1e-12
    )


def test_energy_score_against_naive_sum(x64):
    x = jax.random.normal(jax.random.PRNGKey(1), (25, 2, 3), jnp.float64)  # event (2, 3)
    obs = jnp.arange(6.0).reshape(2, 3) / 6
    xn = np.asarray(x).reshape(25, 6)
    naive = naive_mean_norm(xn, np.asarray(obs).reshape(1, 6)) - 0.5 * naive_mean_norm(xn, xn)
    assert np.isclose(jax.jit(energy_score)(x, obs), naive, rtol=1e-12)
    assert energy_score(jnp.broadcast_to(obs, (4, 2, 3)), obs) == 0.0


def test_mmd_against_naive_sum(x64):
    kx, ky = jax.random.split(jax.random.PRNGKey(2))
    x, y = jax.random.normal(kx, (15, 2), jnp.float64), jax.random.normal(ky, (12, 2), jnp.float64)
    xn, yn = np.asarray(x), np.asarray(y)
    h = (0.7, 2.0)

    def k(a, b):
        return np.mean(
            [
                sum(np.exp(-np.sum((u - v) ** 2) / (2 * s**2)) for s in h)
                for u, v in itertools.product(a, b)
            ]
        )

    naive = k(xn, xn) + k(yn, yn) - 2 * k(xn, yn)
    assert np.isclose(gaussian_mmd(x, y, bandwidths=h), naive, rtol=1e-12)


@pytest.mark.parametrize("loss", [energy_distance, gaussian_mmd, moment_loss])
def test_distribution_losses_zero_for_identical_and_growing_with_shift(x64, loss):
    """Zero (with a zero, finite gradient) for identical ensembles; grows with a shift."""
    x = jax.random.normal(jax.random.PRNGKey(3), (200, 4), jnp.float64)
    value = jax.jit(loss)
    assert abs(value(x, x)) < 1e-14
    values = [value(x, x + delta) for delta in (0.1, 0.3, 1.0, 3.0)]
    assert all(b > a > 0 for a, b in itertools.pairwise(values)), values
    grad = jax.jit(jax.grad(loss))(x, x)
    assert jnp.all(jnp.isfinite(grad)) and jnp.max(jnp.abs(grad)) < 1e-12


def test_moment_loss_values(x64):
    """A shift δ of all d components adds d δ² (variances unchanged); a scale s multiplies
    the variances by s²."""
    x = jax.random.normal(jax.random.PRNGKey(4), (100, 3), jnp.float64)
    assert jnp.isclose(moment_loss(x, x + 0.5), 3 * 0.25, rtol=1e-12)
    var = jnp.var(x, 0, ddof=1)
    assert jnp.isclose(
        moment_loss(x, 2 * x), jnp.sum(jnp.mean(x, 0) ** 2) + jnp.sum((3 * var) ** 2), rtol=1e-12
    )


class Linear(eqx.Module):
    a: jax.Array

    def __call__(self, t, y, args):
        return self.a @ y


def test_trajectory_loss_is_the_mse_to_the_exact_solution(x64):
    """The model is vmapped over samples, each with its own irregular times: against the
    exact trajectories the loss is ~0 (states to ~1e-9); against them offset by c it is c²;
    the relative loss is Σ c² / Σ |y|² per sample."""
    model = NeuralODE(Linear(jnp.array([[-0.5, 0.0], [0.0, -2.0]])), rtol=1e-11, atol=1e-11)
    ts = jnp.array([[0.0, 0.1, 0.5, 1.0], [0.0, 0.2, 0.3, 2.0]])
    y0 = jnp.array([[1.0, 2.0], [-1.0, 0.5]])
    exact = y0[:, None, :] * jnp.exp(ts[:, :, None] * jnp.array([-0.5, -2.0])[None, None, :])
    assert trajectory_loss(model, {"ts": ts, "ys": exact}) < 1e-18
    c = 0.3
    batch = {"ts": ts, "ys": exact + c, "y0": y0}
    assert jnp.isclose(trajectory_loss(model, batch), c**2, rtol=1e-8)
    rel = jnp.mean(8 * c**2 / jnp.sum((exact + c) ** 2, axis=(1, 2)))
    assert jnp.isclose(trajectory_loss(model, batch, relative=True), rel, rtol=1e-8)


def coded(n, t):
    """Trajectories whose values name their sample and time step: ys[i, j] = (1000 i + j, −j)."""
    i, j = jnp.meshgrid(jnp.arange(n), jnp.arange(t), indexing="ij")
    ys = jnp.stack([1000.0 * i + j, -1.0 * j], axis=-1)
    return {"ts": 0.1 * j, "ys": ys, "args": 10.0 * jnp.arange(n)}


@settings(max_examples=6)
@given(st.integers(1, 4), st.sampled_from([2, 5, 12]), st.integers(0, 2**31 - 1))
def test_time_windows_are_contiguous_slices(n, window, seed):
    """Each window is `window` consecutive steps of one trajectory (ys encode sample and step),
    with that trajectory's times and args. Few distinct shapes: each compiles a few kernels."""
    t = 12
    out = time_windows(coded(n, t), window=window, n_windows=64, key=jax.random.PRNGKey(seed))
    ys = np.asarray(out["ys"])
    sample, start = ys[:, 0, 0] // 1000, ys[:, 0, 0] % 1000
    assert out["ts"].shape == (64, window) and ys.shape == (64, window, 2)
    assert np.all((0 <= sample) & (sample < n)) and np.all((0 <= start) & (start <= t - window))
    steps = start[:, None] + np.arange(window)[None, :]
    assert np.array_equal(ys[..., 0], 1000 * sample[:, None] + steps)
    assert np.array_equal(ys[..., 1], -steps)
    assert np.allclose(out["ts"], 0.1 * steps)
    assert np.array_equal(out["args"], 10.0 * sample)


def test_time_windows_cover_all_starts():
    out = time_windows(coded(3, 12), window=4, n_windows=2000, key=jax.random.PRNGKey(0))
    codes = np.asarray(out["ys"][:, 0, 0]).astype(int)
    assert set(codes) == {1000 * i + s for i in range(3) for s in range(9)}


def test_sliding_windows_enumerate_in_order():
    out = sliding_windows(coded(2, 10), window=4, stride=3)  # starts 0, 3, 6
    expected = [1000 * i + s for i in range(2) for s in (0, 3, 6)]
    assert np.array_equal(np.asarray(out["ys"][:, 0, 0]), expected)
    assert np.array_equal(np.asarray(out["ys"][:, -1, 0]), np.array(expected) + 3)
    assert sliding_windows(coded(2, 10), window=4)["ys"].shape == (6, 4, 2)  # stride 3


def test_loss_bad_inputs():
    batch = coded(2, 10)
    model = NeuralODE(Linear(-jnp.eye(2)))
    with pytest.raises(ValueError, match=r"needs keys 'ts' and 'ys', missing \['ts'\]"):
        trajectory_loss(model, {"ys": batch["ys"]})
    with pytest.raises(ValueError, match=r"ys must be \(sample, time, \*state\)"):
        trajectory_loss(model, {"ts": batch["ts"], "ys": batch["ys"][0]})
    with pytest.raises(ValueError, match=r"ts must have shape \(10,\) or \(2, 10\)"):
        trajectory_loss(model, {"ts": batch["ts"][:, :5], "ys": batch["ys"]})
    with pytest.raises(ValueError, match=r"y0 must have shape \(2, 2\)"):
        trajectory_loss(model, {**batch, "y0": jnp.ones(2)})
    with pytest.raises(ValueError, match="window must be between 2 and the trajectory length 10"):
        time_windows(batch, window=11, n_windows=3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_windows must be >= 1"):
        time_windows(batch, window=3, n_windows=0, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        sliding_windows(batch, window=3, stride=0)
    with pytest.raises(ValueError, match="same event shape"):
        energy_distance(jnp.ones((3, 2)), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="must not be empty"):
        gaussian_mmd(jnp.ones((0, 2)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="at least 2 samples each"):
        moment_loss(jnp.ones((1, 2)), jnp.ones((3, 2)))
