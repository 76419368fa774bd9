import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.problems import get
from surrogate.solvers.burgers import BurgersSolver


def cole_hopf(x, t, nu, a=2.0, b=1.0):
    """Exact periodic Burgers solution u = −2ν φ_x/φ with φ = a + b e^{−4π²νt} cos 2πx,
    which solves the heat equation φ_t = ν φ_xx (Cole-Hopf)."""
    decay = b * np.exp(-4 * math.pi**2 * nu * t)
    return (
        4 * math.pi * nu * decay * np.sin(2 * math.pi * x) / (a + decay * np.cos(2 * math.pi * x))
    )


def test_matches_cole_hopf_solution(x64):
    nu, n = 0.05, 128
    x = np.arange(n) / n
    u0 = jnp.asarray(cole_hopf(x, 0.0, nu))
    times = [0.1, 0.5, 1.0]
    us = BurgersSolver(n, nu, dt=1e-3)(u0, times)
    for u, t in zip(us, times, strict=True):
        exact = cole_hopf(x, t, nu)
        assert np.max(np.abs(np.asarray(u) - exact)) < 1e-10 * max(1.0, np.abs(exact).max() * 10)


def test_fourth_order_in_time(x64):
    # smooth (band-limited) data; rough data shows ETDRK4's known stiff order reduction
    n, nu = 64, 0.1
    x = np.arange(n) / n
    u0 = jnp.asarray(np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x) + 0.2)
    ref = BurgersSolver(n, nu, dt=1e-4)(u0, [0.5])
    dts = np.array([0.02, 0.01, 0.005, 0.0025])
    errs = [float(jnp.max(jnp.abs(BurgersSolver(n, nu, dt=dt)(u0, [0.5]) - ref))) for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 3.6 < slope < 4.6, (slope, errs)


def test_spectral_convergence_in_space(x64):
    nu, t = 0.05, 0.3
    fine = 256
    xf = np.arange(fine) / fine
    u0f = np.sin(2 * np.pi * xf) + 0.3 * np.sin(6 * np.pi * xf + 1.0)
    ref = np.asarray(BurgersSolver(fine, nu, dt=2e-4)(jnp.asarray(u0f), [t])[0])
    errs = []
    ns = [16, 24, 32, 48]
    for n in ns:
        x = np.arange(n) / n
        u0 = np.sin(2 * np.pi * x) + 0.3 * np.sin(6 * np.pi * x + 1.0)
        u = np.asarray(BurgersSolver(n, nu, dt=2e-4)(jnp.asarray(u0), [t])[0])
        # compare at the coarse points through the reference's trigonometric interpolant
        coeffs = np.fft.rfft(ref) / fine
        k = np.arange(coeffs.size)
        interp = np.real(np.exp(2j * np.pi * np.outer(x, k)) @ (coeffs * np.where(k == 0, 1, 2)))
        errs.append(np.max(np.abs(u - interp)))
    # spectral: each step of +8..16 points wins a large constant factor (not a fixed power)
    assert errs[0] > 1e-4 and errs[-1] < 1e-7, errs
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(ratios > 5), errs
    # an algebraic rate would make log(err) linear in log(n); here the slope steepens
    local = np.diff(np.log(errs)) / np.diff(np.log(ns))
    assert local[-1] < local[0] - 3, local


def test_mean_is_conserved(x64):
    n = 128
    u0 = jnp.asarray(np.random.default_rng(0).standard_normal(n) * 0.5 + 0.7)
    us = BurgersSolver(n, 0.02)(u0, [0.25, 0.5, 1.0])
    for u in us:
        assert float(jnp.mean(u)) == pytest.approx(float(jnp.mean(u0)), abs=1e-13)


def test_float32_close_to_float64():
    n = 128
    x = np.arange(n) / n
    u0 = np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)
    u32 = BurgersSolver(n, 0.1)(jnp.asarray(u0, jnp.float32), [1.0])
    assert u32.dtype == jnp.float32
    with jax.enable_x64(True):
        u64 = BurgersSolver(n, 0.1)(jnp.asarray(u0, jnp.float64), [1.0])
    assert np.max(np.abs(np.asarray(u32, np.float64) - np.asarray(u64))) < 1e-5


def test_problem_solves_fine_and_subsamples(x64):
    p = get("burgers", resolution=64, solve_resolution=256, n_times=4)
    inputs = p.sample_input(jax.random.key(0))
    assert inputs["u0"].shape == (256,)
    out = p.solve(inputs)
    assert out["u"].shape == (64,) and out["u_t"].shape == (4, 64)
    np.testing.assert_allclose(out["u_t"][-1], out["u"])
    direct = BurgersSolver(256, 0.1)(inputs["u0"], [1.0])[0][::4]
    np.testing.assert_allclose(np.asarray(out["u"]), np.asarray(direct), atol=1e-6)
    assert p.store_inputs(inputs)["u0"].shape == (64,)


def test_bad_solver_input():
    with pytest.raises(ValueError, match="even number of points"):
        BurgersSolver(7, 0.1)
    with pytest.raises(ValueError, match="viscosity must be positive"):
        BurgersSolver(16, -0.1)
    s = BurgersSolver(16, 0.1)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        s(jnp.zeros(8), [1.0])
    with pytest.raises(ValueError, match="positive and increasing"):
        s(jnp.zeros(16), [0.5, 0.2])
    with pytest.raises(ValueError, match="not a multiple"):
        get("burgers", resolution=64, solve_resolution=100)
