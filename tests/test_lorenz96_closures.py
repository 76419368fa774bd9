"""Lorenz '96 closure problem, closures, their training, coupling and climate metrics."""

import math

import equinox as eqx
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import surrogate
from surrogate import problems
from surrogate.applications.lorenz96 import (
    AR1Closure,
    FNOClosure,
    LocalMLPClosure,
    PolynomialClosure,
    autocorrelation,
    blowup_time,
    coupled_rollout,
    ensemble_forecast,
    fit_ar1,
    fit_ar1_closure,
    fit_closure,
    fit_polynomial,
    forecast_rmse,
    hellinger,
    hellinger_distance,
    offline_mse,
    offline_r2,
    with_normalizers,
)
from surrogate.cli import main
from surrogate.coupling import rollout
from surrogate.data import read_dataset
from surrogate.problems import problem_of_dataset
from surrogate.solvers.lorenz96 import Lorenz96OneLevel, Lorenz96TwoScale


def _ar1_series(rng, phi, sigma, shape):
    """AR(1) series along axis 0, started in the stationary law N(0, σ²)."""
    e = np.empty(shape)
    e[0] = sigma * rng.normal(size=shape[1:])
    innovation = sigma * math.sqrt(1 - phi**2)
    for t in range(1, shape[0]):
        e[t] = phi * e[t - 1] + innovation * rng.normal(size=shape[1:])
    return e


# ---- the problem and its dataset -------------------------------------------------------


def test_cli_generates_a_dataset_whose_u_reproduces_the_truth(tmp_path, capsys, x64):
    path = tmp_path / "l96.nc"
    argv = ["generate", "lorenz96", "--n", "2", "--seed", "3", "--out", str(path), "--quiet"]
    options = ["--j", "3", "--spin-up", "0.02", "--save-interval", "0.003", "--n-times", "6"]
    code = main(argv + options)
    out, err = capsys.readouterr()
    assert code == 0, err
    ds = read_dataset(path)
    problem = problem_of_dataset(ds)
    assert (
        problem.options()
        == problems.get("lorenz96", j=3, spin_up=0.02, save_interval=0.003, n_times=6).options()
    )
    data = problem.from_dataset(ds)
    assert data["X"].shape == (2, 6, 8) and data["Y"].shape == (2, 6, 8, 3)
    assert data["U"].shape == (2, 6, 8) and ds["model_time"].values[1] == pytest.approx(0.003)
    for name in ("X", "Y", "U", "x0", "y0"):
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    x, y, u = (jnp.asarray(data[n][0]) for n in ("X", "Y", "U"))
    # X and Y at time t, stepped 3 fine steps by the two-scale truth, give X at t + Δt ...
    system = Lorenz96TwoScale(8, 3, forcing=20.0, dt=0.001)
    x_next = jax.jit(jax.vmap(lambda a, b: system.spin_up((a, b), 0.003)[0]))(x, y)
    np.testing.assert_allclose(x_next[:-1], x[1:], rtol=1e-5, atol=1e-5)
    # ... and the stored U, coupled once into the coarse one-level step, reproduces it
    coarse = Lorenz96OneLevel(8, forcing=20.0, dt=0.003, coupling="once")
    x_u = jax.jit(jax.vmap(lambda a, b: coarse.step(a, lambda s, p: b)))(x, u)
    np.testing.assert_allclose(x_u[:-1], x[1:], rtol=1e-5, atol=1e-5)
    m = problem.metrics(data["U"][:, None], data["U"][:, None])
    assert m["mse"] == 0.0 and m["r2"] == 1.0


def test_problem_options_and_errors():
    p = problems.get("lorenz96", config="lorenz1996", forcing="8", store_y="false")
    assert (p.k, p.j, p.forcing, p.store_y) == (36, 10, 8.0, False)
    assert "Y" not in jax.eval_shape(lambda k: p.solve(p.sample_input(k)), jax.random.key(0))
    with pytest.raises(ValueError, match="unknown Lorenz96 config 'x'"):
        problems.get("lorenz96", config="x")
    with pytest.raises(ValueError, match="save_interval must be a positive multiple of dt"):
        problems.get("lorenz96", save_interval=0.0025)
    with pytest.raises(ValueError, match=r"spin_up must be a number in \[0, 1e\+06\]"):
        problems.get("lorenz96", spin_up=-1.0)
    with pytest.raises(ValueError, match="spin_up must be a non-negative multiple"):
        problems.get("lorenz96", spin_up=0.0015)
    with pytest.raises(ValueError, match=r"n_times must be an integer in \[1, 1e\+07\]"):
        problems.get("lorenz96", n_times=0)
    with pytest.raises(ValueError, match="not a stable RK4 step"):
        problems.get("lorenz96", dt=0.02)
    p8 = problems.get("lorenz96")
    with pytest.raises(ValueError, match=r"x0, y0 should have shapes \(8,\), \(8, 32\)"):
        p8.solve({"x0": jnp.zeros(7), "y0": jnp.zeros((8, 32))})


# ---- closures --------------------------------------------------------------------------


def test_polynomial_fit_recovers_known_coefficients(x64):
    rng = np.random.default_rng(0)
    b = np.array([0.3, -1.2, 0.05, 0.004])
    x = rng.uniform(-10, 18, size=(40, 8))
    u = b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3
    closure = fit_polynomial(jnp.asarray(x), jnp.asarray(u))
    np.testing.assert_allclose(closure.coefficients, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(closure(jnp.asarray(x[0])), u[0], rtol=1e-12)
    # degree 1 is the ordinary least-squares line
    line = fit_polynomial(jnp.asarray(x), jnp.asarray(u), degree=1)
    np.testing.assert_allclose(line.coefficients[::-1], np.polyfit(x.ravel(), u.ravel(), 1))


@pytest.fixture(scope="module")
def closures():
    """One closure of each kind, with non-trivial normalizers (they must be saved too)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x = 3 + 5 * jax.random.normal(jax.random.key(2), (50, 8))
    u = -x + jax.random.normal(jax.random.key(3), (50, 8))
    poly = PolynomialClosure(3, [0.5, -1.1, 0.01, 0.003])
    mlp = with_normalizers(LocalMLPClosure(1, 8, 2, key=k1), x, u)
    fno = with_normalizers(FNOClosure(3, 8, 2, key=k2), x, u)
    # the FNO closure is tested inside the AR(1) one (a nested module in the saved file)
    return {"poly": poly, "mlp": mlp, "ar1": AR1Closure(fno, 0.9, 0.5)}


@eqx.filter_jit
def _apply(closure, x, e):
    return closure(x, None), jnp.roll(closure(jnp.roll(x, 3), None), -3), closure(x, e)


def test_saved_and_loaded_closures_give_identical_tendencies(tmp_path, closures):
    x = 5 * jax.random.normal(jax.random.key(1), (8,))
    e = jnp.linspace(-1.0, 1.0, 8)
    for name, closure in closures.items():
        surrogate.save(tmp_path / f"{name}.eqx", closure)
        loaded = surrogate.load(tmp_path / f"{name}.eqx")
        assert type(loaded) is type(closure)
        # (a loaded closure whose normalizers were not restored would differ here)
        for a, b in zip(_apply(loaded, x, e), _apply(closure, x, e), strict=True):
            np.testing.assert_array_equal(a, b)
    assert float(loaded.phi) == pytest.approx(0.9) and float(loaded.sigma) == pytest.approx(0.5)
    # the AR(1) closure adds the noise it is given to its deterministic part
    u, _, u_noisy = _apply(loaded, x, e)
    np.testing.assert_allclose(u_noisy - u, e, atol=1e-5)


def test_closures_commute_with_rotations_of_the_ring(closures):
    x = 4 * jax.random.normal(jax.random.key(5), (8,))
    for closure in closures.values():
        u, u_rotated, _ = _apply(closure, x, jnp.zeros(8))
        np.testing.assert_allclose(u_rotated, u, rtol=2e-5, atol=2e-5)
    # the MLP with a stencil of 1 sees only X_{k-1}, X_k, X_{k+1}
    mlp = closures["mlp"]
    bumped = x.at[5].add(3.0)
    diff = _apply(mlp, bumped, jnp.zeros(8))[0] - _apply(mlp, x, jnp.zeros(8))[0]
    changed = np.flatnonzero(np.abs(np.asarray(diff)) > 0)
    assert set(changed) == {4, 5, 6}


def _naive_once(x, coefficients, forcing, dt, n):
    """X_{n+1} = RK4_{U=0}(X_n) + dt·U(X_n), written out in numpy."""

    def f(x):
        return -np.roll(x, 1) * (np.roll(x, 2) - np.roll(x, -1)) - x + forcing

    for _ in range(n):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4) + dt * np.polyval(coefficients[::-1], x)
    return x


def test_closures_plug_into_rollout_with_the_one_level_model(x64):
    host = Lorenz96OneLevel(8, forcing=20.0, dt=0.005, coupling="once")
    b = np.array([-0.6, -1.1, 0.001, 0.003])
    poly = PolynomialClosure(3, b, dtype=jnp.float64)
    x0 = jnp.linspace(-4.0, 10.0, 8, dtype=jnp.float64)
    result = rollout(host.step, poly, x0, 40, save_every=40, bounds=(-100.0, 100.0))
    assert int(result.first_unstable_step) == -1
    np.testing.assert_allclose(
        result.states[-1], _naive_once(np.asarray(x0), b, 20.0, 0.005, 40), rtol=1e-12
    )
    # a closure that pushes X past the bound is reported with its blow-up time
    blow = PolynomialClosure(3, [4000.0, 0, 0, 0], dtype=jnp.float64)
    failed = rollout(host.step, blow, x0, 40, save_every=40, bounds=(-100.0, 100.0))
    assert 0 < float(blowup_time(failed.first_unstable_step, host.dt)) < 0.2
    assert float(blowup_time(result.first_unstable_step, host.dt)) == np.inf
    # the AR(1) closure with σ = 0 is its deterministic part: an unperturbed ensemble
    # forecast repeats the single run in every member ...
    xs, first = ensemble_forecast(
        host,
        AR1Closure(poly, 0.5, 0.0, dtype=jnp.float64),
        x0[None],
        40,
        members=2,
        perturbation=0.0,
        key=jax.random.key(1),
        save_every=40,
    )
    assert xs.shape == (1, 2, 2, 8) and bool(jnp.all(first == -1))
    np.testing.assert_allclose(xs, jnp.broadcast_to(result.states, xs.shape), rtol=1e-12)
    # ... and with σ > 0 the members differ (same shapes: the compiled rollout is reused)
    noisy = coupled_rollout(
        host,
        AR1Closure(poly, 0.5, 1.0, dtype=jnp.float64),
        jnp.stack([x0, x0]),
        40,
        key=jax.random.key(0),
        save_every=40,
    )
    assert bool(jnp.all(noisy.stable))
    assert float(jnp.max(jnp.abs(noisy.states[0, -1] - noisy.states[1, -1]))) > 1e-3


# ---- AR(1) residuals -------------------------------------------------------------------


@jax.jit
def _refit_noise(model):
    def advance(e, key):
        e = model.advance_noise(e, key=key)
        return e, e

    e0 = model.initial_noise(jnp.zeros(64, jnp.float64), key=jax.random.key(0))
    _, es = jax.lax.scan(advance, e0, jax.random.split(jax.random.key(1), 3000))
    return fit_ar1(es.T[:, :, None])


def test_ar1_closure_recovers_residual_statistics(x64):
    rng = np.random.default_rng(1)
    phi, sigma = 0.8, 0.7
    x = rng.uniform(-8, 15, size=(4, 5000, 8))
    b = np.array([0.2, -1.0, 0.02, 0.001])
    e = _ar1_series(rng, phi, sigma, (5000, 4, 8)).transpose(1, 0, 2)
    u = np.polyval(b[::-1], x) + e
    closure = fit_ar1_closure(fit_polynomial(jnp.asarray(x), jnp.asarray(u)), x, u)
    # standard errors: ~(1 − φ²)^{1/2}/√n for φ̂ and a few 1e-3 for σ̂ with n = 160 000
    assert float(closure.phi) == pytest.approx(phi, abs=0.01)
    assert float(closure.sigma) == pytest.approx(sigma, rel=0.02)
    # the closure's own noise has the statistics it was given
    phi_hat, sigma_hat = _refit_noise(AR1Closure(PolynomialClosure(0), 0.6, 1.5, dtype=jnp.float64))
    assert float(phi_hat) == pytest.approx(0.6, abs=0.01)
    assert float(sigma_hat) == pytest.approx(1.5, rel=0.02)


# ---- metrics ---------------------------------------------------------------------------


def test_autocorrelation_of_an_ar1_is_phi_to_the_lag(x64):
    rng = np.random.default_rng(2)
    phi = 0.7
    e = _ar1_series(rng, phi, 2.0, (20000, 10))
    rho = autocorrelation(jnp.asarray(e), 6)
    assert float(rho[0]) == 1.0
    np.testing.assert_allclose(rho, phi ** np.arange(7), atol=0.015)
    # against a naive double loop on a small array, along another axis
    y = rng.normal(size=(3, 9, 2))
    ref = []
    for tau in range(4):
        num = den = 0.0
        for i in range(3):
            for j in range(2):
                s = y[i, :, j] - y[i, :, j].mean()
                num += sum(s[t] * s[t + tau] for t in range(9 - tau))
                den += sum(s**2)
        ref.append(num / den)
    np.testing.assert_allclose(
        autocorrelation(jnp.asarray(y), 3, axis=1), ref, rtol=1e-12, atol=1e-14
    )


@jax.jit
def _hellinger_pair(a, b):
    return hellinger_distance(a, b, bins=20), hellinger_distance(b, a, bins=20)


@given(
    hnp.arrays(np.float64, 64, elements=st.floats(-50, 50)),
    hnp.arrays(np.float64, 64, elements=st.floats(-50, 50)),
)
def test_hellinger_distance_is_symmetric_zero_on_identical_and_one_on_disjoint(a, b):
    with jax.enable_x64(True):
        ab, ba = _hellinger_pair(jnp.asarray(a), jnp.asarray(b))
        assert float(ab) == pytest.approx(float(ba), abs=1e-12)
        assert 0.0 <= float(ab) <= 1.0 + 1e-12
        same, _ = _hellinger_pair(jnp.asarray(a), jnp.asarray(a))
        assert float(same) == 0.0
        apart, _ = _hellinger_pair(jnp.asarray(a), jnp.asarray(a) + 201.0)
        assert float(apart) == pytest.approx(1.0, abs=1e-12)


def test_hellinger_of_known_probabilities(x64):
    p, q = jnp.array([0.5, 0.5, 0.0]), jnp.array([0.0, 0.25, 0.75])
    # H² = 1 − Σ √(p q), the Bhattacharyya form
    assert float(hellinger(p, q)) == pytest.approx(math.sqrt(1 - math.sqrt(0.125)), rel=1e-12)
    a = jnp.array([0.1, 0.2, 1.1, 1.2])  # bins [0, 1), [1, 2]: p = (½, ½)
    b = jnp.array([0.3, 1.5, 1.6, 1.7])  # q = (¼, ¾)
    expected = math.sqrt(1 - math.sqrt(0.125) - math.sqrt(0.375))
    assert float(hellinger_distance(a, b, bins=2, value_range=(0.0, 2.0))) == pytest.approx(
        expected, rel=1e-12
    )


def test_offline_and_forecast_metrics(x64):
    rng = np.random.default_rng(3)
    true = rng.normal(size=(50, 8))
    pred = true + 0.1 * rng.normal(size=(50, 8))
    mse = np.mean((pred - true) ** 2)
    assert float(offline_mse(pred, true)) == pytest.approx(mse, rel=1e-12)
    r2 = 1 - np.sum((pred - true) ** 2) / np.sum((true - true.mean()) ** 2)
    assert float(offline_r2(pred, true)) == pytest.approx(r2, rel=1e-12)
    truth = rng.normal(size=(4, 5, 8))
    offsets = np.array([-1.0, 1.0, 3.0])[None, :, None, None]  # ensemble mean: truth + 1
    rmse = forecast_rmse(truth[:, None] + offsets, truth)
    np.testing.assert_allclose(rmse, np.ones(5), rtol=1e-12)


# ---- training --------------------------------------------------------------------------


def test_fit_closure_learns_a_stencil_tendency():
    x = 3 * jax.random.normal(jax.random.key(0), (256, 8))
    u = jnp.roll(x, -1, axis=1) - jnp.roll(x, 1, axis=1)  # U_k = X_{k+1} − X_{k−1}
    closure = LocalMLPClosure(1, 8, 2, key=jax.random.key(1))
    _, history = fit_closure(
        closure, x, u, epochs=60, batch_size=64, learning_rate=1e-2, key=jax.random.key(2)
    )
    # the last epoch's mean squared error, against the variance of U: R² > 0.98
    assert history["train_loss"][-1] < 0.02 * float(jnp.var(u))
    assert history["train_loss"][-1] < 0.05 * history["train_loss"][0]


# ---- bad input -------------------------------------------------------------------------


def test_bad_input_is_rejected_with_clear_errors(closures):
    key = jax.random.key(0)
    x = jnp.zeros(8)
    with pytest.raises(ValueError, match="degree must be a non-negative int"):
        PolynomialClosure(-1)
    with pytest.raises(ValueError, match="degree-3 polynomial has 4 coefficients"):
        PolynomialClosure(3, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"one unbatched ring of shape \(K,\)"):
        PolynomialClosure(3)(jnp.zeros((2, 8)))
    with pytest.raises(ValueError, match="x and u must have the same shape"):
        fit_polynomial(jnp.zeros(10), jnp.zeros(9))
    with pytest.raises(ValueError, match="needs K >= 3 variables, got K=2"):
        closures["mlp"](jnp.zeros(2))
    with pytest.raises(ValueError, match="holds 2 Fourier modes; this closure keeps 3"):
        closures["ar1"].deterministic(jnp.zeros(3))
    with pytest.raises(ValueError, match="stencil must be a non-negative int"):
        LocalMLPClosure(-1, key=key)
    with pytest.raises(ValueError, match=r"phi must be in \[0, 1\)"):
        AR1Closure(PolynomialClosure(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        AR1Closure(PolynomialClosure(3), 0.5, -1.0)
    with pytest.raises(ValueError, match=r"current noise e of shape \(8,\)"):
        AR1Closure(PolynomialClosure(3), 0.5, 1.0)(x, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"residuals should be series of shape"):
        fit_ar1(jnp.zeros((10, 8)))
    host = Lorenz96OneLevel(8, forcing=20.0, coupling="once")
    with pytest.raises(ValueError, match="needs a key for its noise"):
        coupled_rollout(host, AR1Closure(PolynomialClosure(3)), jnp.zeros((2, 8)), 5)
    with pytest.raises(ValueError, match=r"x0 should be initial states of shape \(member, K=8\)"):
        coupled_rollout(host, None, jnp.zeros(8), 5)
    with pytest.raises(ValueError, match="max_lag must be < the series length 4"):
        autocorrelation(jnp.zeros(4), 4)
    with pytest.raises(ValueError, match="bins must be a positive int"):
        hellinger_distance(x, x, bins=0)
    with pytest.raises(ValueError, match="value_range must be"):
        hellinger_distance(x, x, value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="prediction shape"):
        offline_mse(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"ensemble should be \(case, member, time, k\)"):
        forecast_rmse(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"pairs of states and tendencies of one shape"):
        fit_closure(
            PolynomialClosure(3),
            jnp.zeros((4, 8)),
            jnp.zeros((4, 7)),
            epochs=1,
            batch_size=2,
            key=key,
        )
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        fit_closure(
            PolynomialClosure(3),
            jnp.zeros((4, 8)),
            jnp.zeros((4, 8)),
            epochs=1,
            batch_size=2,
            learning_rate=0.0,
            key=key,
        )
