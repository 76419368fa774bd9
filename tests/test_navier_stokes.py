"""Navier-Stokes vorticity solver: exact solutions, conservation, order in time, errors."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.solvers.navier_stokes import (
    NavierStokesSolver,
    advection,
    fno_forcing,
    initial_vorticity,
    velocity,
)
from surrogate.solvers.spectral import derivative


def _grid(n):
    x = jnp.arange(n, dtype=jnp.float64) / n
    return jnp.meshgrid(x, x, indexing="ij")


# one compilation per solver configuration, shared between tests
_run = eqx.filter_jit(lambda solver, w0: solver(w0))


def test_velocity_is_divergence_free_with_curl_equal_to_vorticity(x64):
    w = initial_vorticity(jax.random.key(0), 32, dtype=jnp.float64)
    # drop the Nyquist modes, which have no first derivative on the grid
    w = jnp.fft.irfft2(jnp.fft.rfft2(w).at[16].set(0).at[:, 16].set(0), s=(32, 32))
    u, v = velocity(w)
    div = derivative(u, axis=0) + derivative(v, axis=1)
    curl = derivative(v, axis=0) - derivative(u, axis=1)
    scale = float(jnp.max(jnp.abs(w)))
    assert jnp.max(jnp.abs(div)) < 1e-12 * scale
    assert jnp.max(jnp.abs(curl - w)) < 1e-12 * scale


def test_advection_matches_hand_computed_term(x64):
    # ω = sin 2πx + cos 4πy: ψ = sin 2πx / 4π² + cos 4πy / 16π², u = ψ_y = −sin 4πy / 4π,
    # v = −ψ_x = −cos 2πx / 2π, so u·∇ω = −½ cos 2πx sin 4πy + 2 cos 2πx sin 4πy
    X, Y = _grid(16)
    w = jnp.sin(2 * jnp.pi * X) + jnp.cos(4 * jnp.pi * Y)
    expected = 1.5 * jnp.cos(2 * jnp.pi * X) * jnp.sin(4 * jnp.pi * Y)
    assert jnp.max(jnp.abs(advection(w) - expected)) < 1e-12


def test_eigenmode_decays_exactly_exponentially(x64):
    # modes with the same |m|² = 5: ψ = ω / (20π²) exactly, so u·∇ω = 0 and
    # ω(t) = ω(0) exp(−20π² ν t) (a Taylor-Green-type solution of the full equation)
    n, nu, dt = 32, 0.01, 1e-3
    X, Y = _grid(n)
    w0 = (
        jnp.sin(2 * jnp.pi * (X + 2 * Y))
        + 0.5 * jnp.cos(2 * jnp.pi * (2 * X - Y))
        + 0.3 * jnp.sin(2 * jnp.pi * (2 * X + Y))
    )
    solver = NavierStokesSolver(
        n, nu, t_final=1.0, dt=dt, n_out=n, record_interval=0.5, forcing="none", dtype=jnp.float64
    )
    w_initial, ws = _run(solver, w0)
    assert jnp.array_equal(w_initial, w0)
    lam = 20 * math.pi**2 * nu
    # Crank-Nicolson's amplification factor, applied per step: exact for the discrete scheme
    factor = (1 - 0.5 * lam * dt) / (1 + 0.5 * lam * dt)
    for i, t in enumerate((0.5, 1.0)):
        steps = round(t / dt)
        assert jnp.max(jnp.abs(ws[i] - w0 * factor**steps)) < 1e-12
        # and the continuous decay within CN's error, ≈ (λ dt)² λ t / 12
        exact = w0 * math.exp(-lam * t)
        rel = float(jnp.max(jnp.abs(ws[i] - exact)) / jnp.max(jnp.abs(exact)))
        assert rel < 2 * (lam * dt) ** 2 * lam * t / 12


def test_float32_keeps_the_decay_rate_over_many_small_steps():
    # with z = hν|k|² = 2e-5 the ratio (1 − z/2) / (1 + z/2) rounded to float32 is off by
    # ~3e-8, a 0.2 % error in the decay rate that 2000 steps turn into ~1e-4; the increment
    # form of the update keeps the error at rounding level
    n, nu, dt, t = 16, 1e-3, 1e-4, 0.2
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    w0 = np.sin(2 * np.pi * (X + 2 * Y)) + 0.5 * np.cos(2 * np.pi * (2 * X - Y))
    solver = NavierStokesSolver(n, nu, t_final=t, dt=dt, n_out=n, record_interval=t, forcing="none")
    w = _run(solver, jnp.asarray(w0, jnp.float32))[1][-1]
    assert w.dtype == jnp.float32
    exact = w0 * math.exp(-20 * math.pi**2 * nu * t)
    assert np.max(np.abs(np.asarray(w, np.float64) - exact)) < 1e-5 * np.max(np.abs(exact))


def test_mean_vorticity_is_conserved_with_zero_mean_forcing(x64):
    n = 32
    w0 = initial_vorticity(jax.random.key(3), n, dtype=jnp.float64) * 20 + 0.37
    solver = NavierStokesSolver(
        n, 1e-3, t_final=2.0, dt=5e-3, n_out=n, forcing=fno_forcing(n, dtype=jnp.float64)
    )
    _, ws = _run(solver, w0)
    # the field itself changes a lot, its mean only by rounding
    assert float(jnp.max(jnp.abs(ws[-1] - w0))) > 0.1
    np.testing.assert_allclose(jnp.mean(ws, axis=(1, 2)), 0.37, rtol=0, atol=1e-13)


def test_blow_up_beyond_the_advective_limit_is_reported(x64):
    # the settings of the conservation test, with a velocity 1e5 times larger
    n = 32
    w0 = initial_vorticity(jax.random.key(3), n, dtype=jnp.float64) * 2e6
    solver = NavierStokesSolver(
        n, 1e-3, t_final=2.0, dt=5e-3, n_out=n, forcing=fno_forcing(n, dtype=jnp.float64)
    )
    with pytest.raises(RuntimeError, match="non-finite"):
        jax.block_until_ready(_run(solver, w0))


def test_time_convergence_is_second_order(x64):
    n, t = 32, 0.5
    X, Y = _grid(n)
    w0 = (
        4 * jnp.sin(2 * jnp.pi * X) * jnp.cos(4 * jnp.pi * Y)
        + 3 * jnp.cos(2 * jnp.pi * (X + 3 * Y))
        - 2 * jnp.sin(2 * jnp.pi * (2 * X - Y))
    )
    forcing = fno_forcing(n, dtype=jnp.float64)

    def final(dt):
        solver = NavierStokesSolver(
            n, 0.01, t_final=t, dt=dt, n_out=n, record_interval=t, forcing=forcing
        )
        return _run(solver, w0)[1][-1]

    reference = final(t / 1280)
    assert float(jnp.max(jnp.abs(reference - w0))) > 1.0  # a nonlinear, not a trivial, case
    dts = np.array([t / 20, t / 40, t / 80])
    errors = np.array([float(jnp.max(jnp.abs(final(dt) - reference))) for dt in dts])
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 1.9 < slope < 2.1, (errors, slope)


def test_jit_vmap_and_subsampled_records(x64):
    n, n_out = 32, 8
    keys = jax.random.split(jax.random.key(7), 2)
    w0s = jax.vmap(lambda k: initial_vorticity(k, n, dtype=jnp.float64))(keys)
    kwargs = dict(t_final=0.5, dt=0.05, record_interval=0.25, dtype=jnp.float64)
    coarse = NavierStokesSolver(n, 1e-3, n_out=n_out, **kwargs)
    fine = NavierStokesSolver(n, 1e-3, n_out=n, **kwargs)
    w_init, ws = jax.jit(jax.vmap(coarse))(w0s)
    assert ws.shape == (2, 2, n_out, n_out) and w_init.shape == (2, n_out, n_out)
    for i in range(2):
        full_init, full = _run(fine, w0s[i])
        np.testing.assert_allclose(ws[i], full[:, ::4, ::4], rtol=0, atol=1e-13)
        np.testing.assert_array_equal(w_init[i], full_init[::4, ::4])


def test_default_solver_is_the_papers_setting():
    solver = NavierStokesSolver()
    assert (solver.n, solver.n_out, solver.dt, solver.n_records) == (256, 64, 1e-4, 50)
    assert solver.steps_per_record == 10_000 and solver.forcing.dtype == jnp.float32
    X, Y = np.meshgrid(np.arange(256) / 256, np.arange(256) / 256, indexing="ij")
    paper = 0.1 * (np.sin(2 * np.pi * (X + Y)) + np.cos(2 * np.pi * (X + Y)))
    np.testing.assert_allclose(solver.forcing, paper, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="viscosity must be non-negative"):
        NavierStokesSolver(16, -1e-3, n_out=16)
    with pytest.raises(ValueError, match="at least 8 points"):
        NavierStokesSolver(4, 1e-3, n_out=4)
    with pytest.raises(ValueError, match="n_out must divide n"):
        NavierStokesSolver(256, 1e-3, n_out=60)
    with pytest.raises(ValueError, match="dt must be in"):
        NavierStokesSolver(16, 1e-3, n_out=16, dt=2.0)
    with pytest.raises(ValueError, match="multiple of record_interval"):
        NavierStokesSolver(16, 1e-3, n_out=16, t_final=2.5)
    with pytest.raises(ValueError, match="forcing must be 'fno', 'none'"):
        NavierStokesSolver(16, 1e-3, n_out=16, forcing="kolmogorov")
    with pytest.raises(ValueError, match="zero mean"):
        NavierStokesSolver(16, 1e-3, n_out=16, forcing=jnp.ones((16, 16)))
    solver = NavierStokesSolver(16, 1e-3, n_out=16, t_final=1.0, dt=0.5)
    with pytest.raises(ValueError, match="square n x n"):
        solver(jnp.zeros((16, 8)))
    with pytest.raises(ValueError, match=r"shape \(16, 16\)"):
        solver(jnp.zeros((32, 32)))
    with pytest.raises(ValueError, match="NaN or inf"):
        solver(jnp.full((16, 16), jnp.nan))
    with pytest.raises(ValueError, match="at least 8 points"):
        velocity(jnp.zeros((4, 4)))
