"""Single-column moist convection: thermodynamics, the Betts-Miller scheme, the column,
the convection problem and the learned emulators (constraints, coupling, gradients)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import surrogate
from surrogate import problems
from surrogate.applications.convection import (
    ConvectionMLP,
    ConvectionSSM,
    constrain_tendencies,
    fit_emulator,
    precipitation_mm_day,
)
from surrogate.coupling import rollout
from surrogate.solvers.column import (
    CP,
    DAY,
    LV,
    RD,
    BettsMiller,
    Column,
    G,
    betts_miller,
    moist_adiabat,
    parcel_temperature,
    pressure_levels,
    saturation_specific_humidity,
    saturation_vapor_pressure,
)

N = 30


def _profile(t_surface, rh_surface, wiggle, dry_top, dtype):
    """A moist-adiabatic column through surface air, perturbed (hypothesis inputs)."""
    column = Column(N, dtype=dtype)
    t, q = column.reference_profile(t_surface, rh_surface)
    p, dp = column.levels
    sigma = (1e5 - p) / 9e4
    t = t + wiggle * jnp.sin(3 * jnp.pi * sigma)
    q = q * jnp.where(sigma > 0.5, dry_top, 1.0)
    return t, q, p, dp


_bm64 = jax.jit(lambda t, q, p, dp: betts_miller(t, q, p, dp, tau=7200.0, rh=0.7))


# ---- thermodynamics --------------------------------------------------------------------


def test_saturation_vapor_pressure_known_values(x64):
    # 611.2 Pa at 0 °C (Bolton's constant), 1228 Pa at 10 °C, 3169 Pa at 25 °C, 4246 Pa at
    # 30 °C (Wagner & Pruss / WMO tables)
    es = saturation_vapor_pressure(jnp.asarray([273.15, 283.15, 298.15, 303.15]))
    np.testing.assert_allclose(es[0], 611.2, rtol=1e-12)
    np.testing.assert_allclose(es[1:], [1228.1, 3169.9, 4246.0], rtol=0.01)
    # q_s = ε e / (p − (1 − ε) e): 0.0201 kg/kg at 25 °C and 1000 hPa
    np.testing.assert_allclose(saturation_specific_humidity(298.15, 1e5), 0.0201, rtol=0.01)


@pytest.mark.parametrize("t_start", [300.0, 290.0, 275.0])
def test_moist_adiabat_conserves_moist_static_energy(x64, t_start):
    # h = c_p T + Φ + L q_s along the pseudo-adiabat, Φ by the hydrostatic equation;
    # a wrong ∂q_s/∂T or ∂q_s/∂p in the lapse rate breaks this (q_s is computed directly)
    p = jnp.linspace(95000.0, 20000.0, 751)
    step = jax.jit(lambda t, a, b: moist_adiabat(t, a, b, 2))

    def advance(t, pair):
        t_new = step(t, pair[0], pair[1])
        return t_new, t_new

    _, ts = jax.lax.scan(advance, jnp.asarray(t_start), (p[:-1], p[1:]))
    t = jnp.concatenate([jnp.asarray([t_start]), ts])
    phi = jnp.concatenate(
        [jnp.zeros(1), jnp.cumsum(RD * 0.5 * (t[1:] + t[:-1]) * jnp.log(p[:-1] / p[1:]))]
    )
    h = CP * t + phi + LV * saturation_specific_humidity(t, p)
    assert float(t[-1]) < t_start - 30  # it did cool
    assert float(jnp.max(jnp.abs(h - h[0]))) / CP < 0.02  # K


def test_parcel_is_dry_adiabatic_below_the_lcl(x64):
    p, _ = pressure_levels(N, dtype=jnp.float64)
    tp = parcel_temperature(300.0, 0.005, p[0], p)  # dry air: LCL far up
    below = p > 75000.0
    np.testing.assert_allclose(tp[below], 300.0 * (p[below] / p[0]) ** (RD / CP), rtol=1e-12)


# ---- the Betts-Miller scheme -------------------------------------------------------------


@given(
    t_surface=st.floats(285.0, 305.0),
    rh_surface=st.floats(0.3, 1.0),
    wiggle=st.floats(-4.0, 4.0),
    dry_top=st.floats(0.2, 1.5),
)
def test_betts_miller_conserves_column_enthalpy(t_surface, rh_surface, wiggle, dry_top):
    with jax.enable_x64(True):
        t, q, p, dp = _profile(t_surface, rh_surface, wiggle, dry_top, jnp.float64)
        dt, dq, precip = _bm64(t, q, p, dp)
        enthalpy = CP * jnp.sum(dt * dp) + LV * jnp.sum(dq * dp)
        scale = CP * jnp.sum(jnp.abs(dt) * dp) + LV * jnp.sum(jnp.abs(dq) * dp) + 1e-30
        assert abs(float(enthalpy)) <= 1e-12 * float(scale)
        assert float(precip) >= 0.0
        np.testing.assert_allclose(precip, -jnp.sum(dq * dp) / G, atol=1e-14 * float(scale))


def test_betts_miller_convects_a_moist_unstable_column_and_rains(x64):
    t, q, p, dp = _profile(300.0, 0.9, 0.0, 1.0, jnp.float64)
    t = t.at[N // 2 :].add(-3.0)  # cool free troposphere: lots of CAPE
    dt, dq, precip = _bm64(t, q, p, dp)
    assert float(precip) * DAY > 1.0  # mm/day
    assert float(jnp.max(dt)) > 0  # latent heating aloft
    np.testing.assert_allclose(precip, CP / LV * jnp.sum(dt * dp) / G, rtol=1e-12)  # P_T = P_q


def test_no_convection_in_a_stable_column(x64):
    p, dp = pressure_levels(N, dtype=jnp.float64)
    t = jnp.full((N,), 290.0)  # isothermal: every lifted parcel is colder than its environment
    q = 0.8 * saturation_specific_humidity(t, p)
    dt, dq, precip = _bm64(t, q, p, dp)
    assert float(jnp.max(jnp.abs(dt))) == 0.0 and float(jnp.max(jnp.abs(dq))) == 0.0
    assert float(precip) == 0.0


def test_betts_miller_rejects_mismatched_levels():
    p, dp = pressure_levels(N)
    with pytest.raises(ValueError, match="same levels"):
        betts_miller(jnp.ones(N), jnp.ones(N - 1), p, dp)


# ---- the column -------------------------------------------------------------------------


def test_column_enthalpy_budget_closes_with_the_scheme(x64):
    column = Column(N, sst=301.0, wind=6.0, adv_cooling=1.5, adv_moistening=1.0,
                    dtype=jnp.float64)  # fmt: skip
    state = column.reference_profile(299.0, 0.85)
    states = jax.jit(lambda s: column.integrate(s, 96, save_every=12))(state)
    last = (states[0][-1], states[1][-1])
    assert float(column.precipitation(last)) > 0
    residual = jax.vmap(lambda a, b: column.enthalpy_budget_residual((a, b)))(*states)
    flux = float(jnp.abs(LV * column.precipitation(last)))
    assert float(jnp.max(jnp.abs(residual))) < 1e-9 * flux  # W/m², round-off


def test_column_rejects_a_wrong_state():
    column = Column(N)
    with pytest.raises(ValueError, match=r"shape \(30,\)"):
        column.step((jnp.ones(N + 1), jnp.ones(N + 1)))
    with pytest.raises(ValueError, match="at least 2 levels"):
        Column(1)


# ---- the problem ------------------------------------------------------------------------


def test_problem_dataset_round_trip_and_targets(tmp_path):
    from surrogate.data import read_dataset, write_dataset
    from surrogate.problems import generate

    problem = problems.get(
        "convection", n_levels="30", spin_up="3600", save_interval="1800", n_times="3"
    )
    ds = generate(problem, 3, seed=0)
    path = write_dataset(ds, tmp_path / "c.nc")
    data = problem.from_dataset(read_dataset(path))
    for name, var in ds.data_vars.items():
        np.testing.assert_array_equal(data[name], var.values)
    assert problem.model_input(data).shape == (3, 2, 3, N)
    assert problem.model_target(data).shape == (3, 2, 3, N)
    # the stored targets are the scheme's output at the stored states, in the stored units
    p, dp = pressure_levels(N)
    dt, dq, precip = jax.vmap(lambda a, b: betts_miller(a, b, p, dp))(
        data["T"].reshape(-1, N), data["q"].reshape(-1, N)
    )
    np.testing.assert_allclose(data["heating"].reshape(-1, N), dt * DAY, atol=1e-4)
    np.testing.assert_allclose(data["moistening"].reshape(-1, N), dq * DAY * 1e3, atol=1e-4)
    np.testing.assert_allclose(
        data["precip"], precipitation_mm_day(data["moistening"], dp), rtol=1e-4, atol=1e-4
    )
    assert ds["level"].attrs["units"] == "Pa" and float(ds["level"][0]) == pytest.approx(98500)


# ---- emulators --------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**16),
    bias=st.floats(-3.0, 3.0),
)
def test_constraint_head_derives_precip_and_conserves_enthalpy(seed, bias):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(seed))
        _, dp = pressure_levels(N, dtype=jnp.float64)
        h = jax.random.normal(k1, (N,), jnp.float64) * 3
        m = jax.random.normal(k2, (N,), jnp.float64) * 3 + bias
        hc, mc = constrain_tendencies(h, m, dp)
        precip = precipitation_mm_day(mc, dp)
        raw = precipitation_mm_day(m, dp)
        tol = 1e-12 * float(jnp.sum(jnp.abs(m) * dp) * 1e-3 / G)  # round-off of the sum
        expected = 0.1 * jnp.logaddexp(0.0, raw / 0.1)
        np.testing.assert_allclose(precip, expected, rtol=1e-12, atol=tol)
        assert float(precip) > -tol
        enthalpy = CP * jnp.sum(hc * dp) + LV * 1e-3 * jnp.sum(mc * dp)
        assert abs(float(enthalpy)) <= 1e-12 * float(CP * jnp.sum(jnp.abs(h) * dp))
        # tendencies that satisfy the constraints (and rain) pass unchanged
        hb = hc - jnp.sum(hc * dp) / jnp.sum(dp)
        mb = mc - jnp.sum(mc * dp) / jnp.sum(dp) - 2e3 * G / jnp.sum(dp)  # P = 2 mm/day
        hb = hb - LV * 1e-3 / CP * jnp.sum(mb * dp) / jnp.sum(dp)
        hd, md = constrain_tendencies(hb, mb, dp)
        np.testing.assert_allclose(md, mb, atol=1e-9)
        np.testing.assert_allclose(hd, hb, atol=1e-9)


@given(
    seed=st.integers(0, 2**16),
    precip=st.floats(0.0, 50.0),
    top=st.integers(1, N),
)
def test_constraint_with_given_precip_and_profile(seed, precip, top):
    """P comes out as given, enthalpy is conserved, and levels where the profile is zero
    are left exactly as they were."""
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        _, dp = pressure_levels(N, dtype=jnp.float64)
        h = jax.random.normal(k1, (N,), jnp.float64) * 3
        m = jax.random.normal(k2, (N,), jnp.float64) * 3
        profile = jnp.where(jnp.arange(N) < top, jax.random.uniform(k3, (N,), jnp.float64), 0.0)
        profile = profile.at[0].set(1.0)
        hc, mc = constrain_tendencies(h, m, dp, precip=jnp.float64(precip), profile=profile)
        scale = float(jnp.sum(jnp.abs(m) * dp) * 1e-3 / G) + precip
        assert abs(float(precipitation_mm_day(mc, dp)) - precip) <= 1e-12 * scale
        enthalpy = CP * jnp.sum(hc * dp) + LV * 1e-3 * jnp.sum(mc * dp)
        assert abs(float(enthalpy)) <= 1e-12 * float(CP * jnp.sum(jnp.abs(hc) * dp))
        np.testing.assert_array_equal(hc[top:], h[top:])
        np.testing.assert_array_equal(mc[top:], m[top:])
        # the corrections are proportional to the profile
        dh, dm = hc - h, mc - m
        np.testing.assert_allclose(dh * profile[0], dh[0] * profile, atol=1e-12 * abs(float(dh[0])))
        np.testing.assert_allclose(dm * profile[0], dm[0] * profile, atol=1e-12 * abs(float(dm[0])))


def test_constraint_refuses_a_misshapen_profile_or_precip():
    _, dp = pressure_levels(N)
    h = m = jnp.zeros(N)
    with pytest.raises(ValueError, match="profile should have the levels' shape"):
        constrain_tendencies(h, m, dp, profile=jnp.ones(N - 1))
    with pytest.raises(ValueError, match="precip should be one column's value"):
        constrain_tendencies(h, m, dp, precip=jnp.ones(2))


@pytest.mark.parametrize(
    "cls", [ConvectionSSM, ConvectionMLP, functools.partial(ConvectionSSM, budget=True)]
)
def test_emulator_constraints_hold_for_any_weights(x64, cls):
    model = cls(**({"n_levels": N} if cls is ConvectionMLP else {}), width=16, depth=2,
                dtype=jnp.float64, key=jax.random.key(1))  # fmt: skip
    t, q, p, dp = _profile(300.0, 0.8, 1.0, 0.8, jnp.float64)
    h, m = eqx.filter_jit(model.predict)(t, q, p, dp)
    assert float(jnp.max(jnp.abs(h))) > 0
    enthalpy = CP * jnp.sum(h * dp) + LV * 1e-3 * jnp.sum(m * dp)
    assert abs(float(enthalpy)) <= 1e-12 * float(CP * jnp.sum(jnp.abs(h) * dp))
    precip = precipitation_mm_day(m, dp)  # what model.precipitation derives
    np.testing.assert_allclose(precip, eqx.filter_jit(model.precipitation)(t, q, p, dp))
    assert float(precip) > 0
    np.testing.assert_allclose(precip, -jnp.sum(m * dp) * 1e-3 / G, rtol=1e-12)
    # as a parameterization: SI units, dtype kept
    dt, dq = eqx.filter_jit(model)((t, q), {"p": p, "dp": dp})
    np.testing.assert_allclose(dt * DAY, h, rtol=1e-12)
    assert dt.dtype == t.dtype


@pytest.mark.parametrize("budget", [False, True])
def test_ssm_emulator_gradient_matches_finite_differences(x64, budget):
    model = ConvectionSSM(16, 2, 8, budget=budget, dtype=jnp.float64, key=jax.random.key(2))
    t, q, p, dp = _profile(299.0, 0.8, 1.0, 0.8, jnp.float64)
    weights = jnp.linspace(-1.0, 1.0, N)

    def f(eps, w):
        # a decoder weight: uniform shifts (the biases) are projected out by the constraint
        m = eqx.tree_at(lambda m: m.stack.decoder.weight, model, w)
        h, mo = m.predict(t.at[3].add(eps), q, p, dp)
        return jnp.sum(weights * h) + jnp.sum(mo**2)

    w = model.stack.decoder.weight
    g_eps, g_w = jax.jit(jax.grad(f, argnums=(0, 1)))(0.0, w)
    f = jax.jit(f)
    h = 1e-6
    fd_eps = (f(h, w) - f(-h, w)) / (2 * h)
    # central differences carry ~1e-16 |f| / h of round-off
    atol = 1e-9 * float(abs(f(0.0, w)))
    np.testing.assert_allclose(g_eps, fd_eps, rtol=1e-5, atol=atol)
    for row in range(w.shape[0]):
        fd_w = (f(0.0, w.at[row, 3].add(h)) - f(0.0, w.at[row, 3].add(-h))) / (2 * h)
        assert abs(fd_w) > 100 * atol  # the output channel matters
        np.testing.assert_allclose(g_w[row, 3], fd_w, rtol=1e-5, atol=atol)


def test_emulator_saves_trains_and_couples(tmp_path):
    column = Column(N, sst=300.0, wind=6.0, adv_cooling=1.5, adv_moistening=1.0)
    states = jax.jit(lambda s: column.integrate(s, 192, save_every=2))(
        column.reference_profile(298.0, 0.85)
    )
    p, dp = column.levels
    t, q = states
    out = jax.vmap(lambda a, b: BettsMiller()((a, b), column.grid()))(t, q)
    model, hist = fit_emulator(
        ConvectionSSM(16, 2, 8, key=jax.random.key(0)), t, q, out[0] * DAY, out[1] * DAY * 1e3,
        p, dp, epochs=3, batch_size=32, key=jax.random.key(1),
    )  # fmt: skip
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    with pytest.raises(ValueError, match="level_floor must be positive"):
        fit_emulator(model, t, q, out[0], out[1], p, dp, epochs=1, level_floor=0.0,
                     key=jax.random.key(1))  # fmt: skip
    surrogate.save(tmp_path / "ssm.eqx", model)
    loaded = surrogate.load(tmp_path / "ssm.eqx")
    np.testing.assert_array_equal(
        loaded.predict(t[-1], q[-1], p, dp)[0], model.predict(t[-1], q[-1], p, dp)[0]
    )
    result = rollout(column.step, loaded, (t[-1], q[-1]), 96, save_every=8, bounds=(0.0, None))
    assert int(result.first_unstable_step) == -1
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in result.states)
    # the emulator conserves the column enthalpy as the scheme does: the budget residual is
    # the clip of q at 0 alone (up to float32 round-off)
    for i in (-1, -5):
        state = (result.states[0][i], result.states[1][i])
        residual = column.enthalpy_budget_residual(state, loaded)
        dq = loaded(state, column.grid())[1] + column.forcing(state)[1]
        q_next = state[1] + column.dt * dq
        clip = LV * jnp.sum((jnp.maximum(q_next, 0.0) - q_next) * dp) / G / column.dt
        assert abs(float(residual - clip)) < 0.1  # W/m², against fluxes of ~100 W/m²


def test_parcel_input_channels_follow_the_scheme_trigger(x64):
    """The parcel channels of the emulators' inputs: buoyancy T_p − T is 0 on a column
    that is the parcel's own profile and shifts by −ΔT where T is warmed by ΔT, the
    saturation deficit is q_s(T_p) − q, and the above-LCL flag switches at the LCL."""
    from surrogate.applications.convection._emulators import N_INPUTS, _inputs
    from surrogate.solvers.column import lifting_condensation_level

    _, q, p, _ = _profile(300.0, 0.8, 0.0, 1.0, jnp.float64)
    t = parcel_temperature(300.0, q[0], p[0], p)  # the column is its own parcel profile
    z = _inputs(t, q, p)
    assert z.shape == (N_INPUTS, N)
    np.testing.assert_allclose(z[5], 0.0, atol=1e-9)
    warm = jnp.where(jnp.arange(N) > 0, 0.5 * jnp.sin(jnp.arange(N)), 0.0)
    np.testing.assert_allclose(_inputs(t + warm, q, p)[5], -warm, atol=1e-9)
    np.testing.assert_allclose(z[6], saturation_specific_humidity(t, p) - q, rtol=1e-12)
    _, p_lcl = lifting_condensation_level(t[0], q[0], p[0])
    assert 0 < int(jnp.sum(z[7])) < N
    np.testing.assert_array_equal(z[7], (p < p_lcl).astype(jnp.float64))
