import diffrax
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.solvers.lorenz96 import (
    Lorenz96OneLevel,
    Lorenz96TwoScale,
    coupling_terms,
    fast_advection,
    slow_advection,
)

values = st.floats(-20.0, 20.0, allow_nan=False, width=64)


def _naive_tendencies(x, y, h, b, c, forcing):
    """The equations of Lorenz (1996) written with explicit 1-based indices and the fast
    ring Y_{J+1,k} = Y_{1,k+1}, as loops: an independent reference for the array code."""
    kk, jj = y.shape

    def X(k):
        return x[(k - 1) % kk]

    def Y(j, k):
        # fold (j, k) onto the ring of J·K fast variables
        n = ((k - 1) * jj + (j - 1)) % (kk * jj)
        return y[n // jj, n % jj]

    dx = np.zeros(kk)
    dy = np.zeros((kk, jj))
    for k in range(1, kk + 1):
        ysum = sum(Y(j, k) for j in range(1, jj + 1))
        dx[k - 1] = -X(k - 1) * (X(k - 2) - X(k + 1)) - X(k) + forcing - h * c / b * ysum
        for j in range(1, jj + 1):
            adv = -c * b * Y(j + 1, k) * (Y(j + 2, k) - Y(j - 1, k))
            dy[k - 1, j - 1] = adv - c * Y(j, k) + h * c / b * X(k)
    return dx, dy


def test_tendencies_match_the_equations_written_as_loops(x64):
    model = Lorenz96TwoScale(5, 3, h=0.7, b=4.0, c=3.0, forcing=6.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=5) * 4, rng.normal(size=(5, 3))
    dx, dy = model.tendencies((jnp.asarray(x), jnp.asarray(y)))
    ref_dx, ref_dy = _naive_tendencies(x, y, 0.7, 4.0, 3.0, 6.0)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(dy, ref_dy, rtol=1e-13, atol=1e-12)


@jax.jit
def _energy_terms(x, y):
    """Σ X·adv(X), Σ Y·adv(Y) on the ring, and the exchange Σ X·U + Σ Y·(hc/b)X."""
    cx, cy = coupling_terms(x, y, 1.3, 4.0, 7.0)
    return (
        jnp.sum(x * slow_advection(x)),
        jnp.sum(y * fast_advection(y.reshape(-1)).reshape(y.shape)),
        jnp.sum(x * cx) + jnp.sum(y * cy),
    )


@given(
    hnp.arrays(np.float64, 9, elements=values),
    hnp.arrays(np.float64, (9, 5), elements=values),
)
def test_advection_and_exchange_conserve_energy(x, y):
    with jax.enable_x64(True):
        slow, fast, exchange = _energy_terms(jnp.asarray(x), jnp.asarray(y))
        # each sum is of products of three values; compare with their magnitudes
        assert abs(float(slow)) <= 1e-13 * (np.sum(np.abs(x) ** 3) + 1.0)
        assert abs(float(fast)) <= 1e-13 * (np.sum(np.abs(y) ** 3) + 1.0)
        scale = 1.3 * 7.0 / 4.0 * np.sum(np.abs(x)[:, None] * np.abs(y))
        assert abs(float(exchange)) <= 1e-13 * (scale + 1.0)


@given(st.integers(0, 2**31 - 1), st.floats(-10.0, 30.0))
def test_energy_budget_of_the_full_system(seed, forcing):
    # dE/dt = −ΣX² + FΣX − cΣY² for E = ½ΣX² + ½ΣY²: advection and exchange cancel
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x, y = 5 * rng.normal(size=6), 10 * rng.normal(size=(6, 4))
        model = Lorenz96TwoScale(6, 4, h=1.3, b=5.0, c=7.0, forcing=forcing)
        dx, dy = _budget_tendencies(model, jnp.asarray(x), jnp.asarray(y))
        de = np.sum(x * np.asarray(dx)) + np.sum(y * np.asarray(dy))
        budget = -np.sum(x**2) + forcing * np.sum(x) - 7.0 * np.sum(y**2)
        np.testing.assert_allclose(de, budget, rtol=1e-11, atol=1e-9)


@jax.jit
def _budget_tendencies(model, x, y):
    return model.tendencies((x, y))


@pytest.fixture(scope="module")
def reference():
    """A spun-up Arnold et al. state and Dopri8 (rtol = atol = 1e-13) at t = 0.05 from it
    (short: the fast variables move on the time scale 1/c = 0.1 and chaos soon amplifies
    any difference)."""
    with jax.enable_x64(True):
        model = Lorenz96TwoScale.arnold2013(dt=0.002)
        state = model.initial_state(key=jax.random.key(3), dtype=jnp.float64)
        state = model.spin_up(state, 2.0)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, s, args: model.tendencies(s)),
            diffrax.Dopri8(),
            t0=0.0,
            t1=0.05,
            dt0=1e-3,
            y0=state,
            stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
            max_steps=100_000,
        )
        return state, jax.tree.map(lambda a: a[-1], sol.ys)


def test_rk4_agrees_with_dopri8_and_converges_at_fourth_order(x64, reference):
    state0, (x_ref, y_ref) = reference
    dts = np.array([0.001, 0.0005, 0.00025])
    errors = []
    for dt in dts:
        model = Lorenz96TwoScale.arnold2013(dt=float(dt))
        n = round(0.05 / dt)
        xs, ys = model.trajectory(state0, n, save_every=n)
        errors.append(
            max(float(jnp.max(jnp.abs(xs[-1] - x_ref))), float(jnp.max(jnp.abs(ys[-1] - y_ref))))
        )
    assert errors[-1] < 1e-6 * float(jnp.max(jnp.abs(x_ref)))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 3.7 < slope < 4.3, (slope, errors)


def test_tendency_difference_tends_to_instantaneous_subgrid_tendency(x64, reference):
    # U_diff − U = (Δt/2)(d²X/dt² − f'(X) f(X)) + O(Δt²): first order in the coarse step
    state0, _ = reference
    truth = Lorenz96TwoScale.arnold2013(dt=1e-4)
    xs, ys = truth.trajectory(state0, 40, save_every=1)
    u = truth.subgrid_tendency(state0)
    steps = np.array([5, 10, 20, 40])
    errors = []
    for n in steps:
        coarse = truth.one_level(dt=float(n * 1e-4), coupling="once")
        u_diff = coarse.tendency_difference(state0[0], xs[n])
        errors.append(float(jnp.max(jnp.abs(u_diff - u))))
        # coupled once per step, the tendency difference reproduces the true X exactly
        np.testing.assert_allclose(coarse.step(state0[0], lambda s, p: u_diff), xs[n],
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert 0.85 < slope < 1.15, (slope, errors)
    # spinning up is stepping without saving
    xe, ye = truth.spin_up(state0, 0.004)
    np.testing.assert_allclose(xe, xs[-1], rtol=1e-12)
    np.testing.assert_allclose(ye, ys[-1], rtol=1e-12)


def _naive_rk4(x, forcing, u, dt, n):
    def f(x):
        return -np.roll(x, 1) * (np.roll(x, 2) - np.roll(x, -1)) - x + forcing + u

    for _ in range(n):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def test_one_level_couples_parameterization_at_stages_or_once(x64):
    x0 = jnp.linspace(-3.0, 9.0, 8, dtype=jnp.float64)

    def shift(x, params):
        assert params is None  # the documented host contract
        return jnp.full_like(x, 1.5)

    staged = Lorenz96OneLevel(8, forcing=10.0).trajectory(x0, 30, parameterization=shift)
    # a constant U inside every RK4 stage is the same ODE with forcing F + U
    np.testing.assert_allclose(staged[-1], _naive_rk4(np.asarray(x0), 11.5, 0.0, 0.005, 30),
                               rtol=1e-12)  # fmt: skip
    once = Lorenz96OneLevel(8, forcing=10.0, coupling="once")
    x1 = once.step(x0, shift)
    np.testing.assert_allclose(x1, _naive_rk4(np.asarray(x0), 10.0, 0.0, 0.005, 1) + 0.0075,
                               rtol=1e-13)  # fmt: skip


def test_presets_are_the_published_configurations():
    a = Lorenz96TwoScale.arnold2013()
    assert (a.k, a.j, a.h, a.b, a.c, a.forcing) == (8, 32, 1.0, 10.0, 10.0, 20.0)
    lz = Lorenz96TwoScale.from_config("lorenz1996")
    assert (lz.k, lz.j, lz.h, lz.b, lz.c, lz.forcing) == (36, 10, 1.0, 10.0, 10.0, 10.0)
    assert Lorenz96TwoScale.lorenz1996(forcing=8.0).forcing == 8.0


def test_initial_state_is_a_function_of_the_key(x64):
    model = Lorenz96TwoScale.arnold2013()
    a = model.initial_state(key=jax.random.key(3), dtype=jnp.float64)
    b = model.initial_state(key=jax.random.key(3), dtype=jnp.float64)
    c = model.initial_state(key=jax.random.key(4), dtype=jnp.float64)
    assert all(bool(jnp.array_equal(p, q)) for p, q in zip(a, b, strict=True))
    assert not bool(jnp.any(a[0] == c[0])) and not bool(jnp.any(a[1] == c[1]))
    assert a[0].dtype == a[1].dtype == jnp.float64


def test_bad_input_is_rejected_with_clear_errors():
    model = Lorenz96TwoScale.arnold2013()
    x, y = jnp.ones(8), jnp.ones((8, 32))
    with pytest.raises(ValueError, match=r"unknown Lorenz96 config 'arnold'"):
        Lorenz96TwoScale.from_config("arnold")
    with pytest.raises(ValueError, match=r"pair \(x, y\) of shapes \(\(8,\), \(8, 32\)\)"):
        model.trajectory((x, y[:, :16]), 10)
    with pytest.raises(ValueError, match=r"pair \(x, y\)"):
        model.step(x)
    with pytest.raises(ValueError, match=r"dt=0.02 is not a stable RK4 step"):
        Lorenz96TwoScale.arnold2013(dt=0.02)
    with pytest.raises(ValueError, match=r"dt=0.2 is not a stable RK4 step"):
        Lorenz96OneLevel(8, forcing=20.0, dt=0.2)
    with pytest.raises(ValueError, match=r"initial state has NaN or inf"):
        model.trajectory((x.at[3].set(jnp.nan), y), 10)
    with pytest.raises(ValueError, match=r"initial state has NaN or inf"):
        model.one_level().trajectory(x.at[0].set(jnp.inf), 10)
    with pytest.raises(ValueError, match=r"save_every must be a positive int dividing"):
        model.trajectory((x, y), 10, save_every=3)
    with pytest.raises(ValueError, match=r"multiple of dt"):
        model.spin_up((x, y), 0.0015)
    with pytest.raises(ValueError, match=r"need K >= 4"):
        Lorenz96OneLevel(3)
    with pytest.raises(ValueError, match=r"coupling must be 'stages' or 'once', got 'twice'"):
        Lorenz96OneLevel(8, coupling="twice")
    one = model.one_level()
    with pytest.raises(ValueError, match=r"state X should have shape \(8,\), got \(9,\)"):
        one.step(jnp.zeros(9))
    with pytest.raises(ValueError, match=r"tendencies shaped like the state"):
        one.step(x, lambda s, p: jnp.zeros(4))
