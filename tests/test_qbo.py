"""The 1-D QBO model: its linear part against exact solutions (second order in dz and dt),
the IMEX step's order, the Holton-Lindzen / Plumb two-wave oscillation against the qbo1d
test bed's published period and amplitude, its convergence, and the AD99-driven QBO."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.coupling import ZeroParameterization
from surrogate.solvers.gravity_waves import AD99
from surrogate.solvers.qbo import (
    DAY,
    MONTH,
    QBO,
    PlumbWaves,
    at_height,
    hl72_damping,
    qbo_amplitude,
    qbo_period,
    zero_crossings,
)

QBO1D_MONTH = 30 * DAY  # qbo1d counts 30-day months in 360-day years


@eqx.filter_jit
def _integrate(model, state, n_steps, forcing, save_every):
    return model.integrate(state, n_steps, forcing, save_every=save_every)


def _run(model, forcing, days, state=None, save_every_days=1.0):
    n = round(days * DAY / model.dt)
    every = max(1, round(save_every_days * DAY / model.dt))
    n -= n % every
    return _integrate(model, model.initial_state() if state is None else state, n, forcing, every)


# ---- the linear part: exact decaying modes -----------------------------------------------


# (the fixed top, u = 0, is the two-wave runs' boundary condition below)
@pytest.mark.parametrize("top, varied", [("free", "dz"), ("free", "dt")])
def test_diffusion_decays_like_its_exact_mode_second_order_in_dz_and_dt(x64, top, varied):
    """u_t = K u_zz, u = 0 at the bottom and u_z = 0 (free) or u = 0 (fixed) at the top:
    u = sin(q s) e^{−K q² t / D²}, s = (z − z₀)/D, q = π/2 or π. In dt the reference is
    the exact solution of the semi-discrete system (the discrete Laplacian's eigenvalue)."""
    q = math.pi / 2 if top == "free" else math.pi
    kappa, depth, days = 60.0, 18e3, 40.0

    def error(dz, dt_days, semi_discrete=False):
        model = QBO(dz=dz, dt=dt_days * DAY, kappa=kappa, top=top, dtype=jnp.float64)
        s = (jnp.asarray(model.heights()) - 17e3) / depth
        u, t = _run(model, ZeroParameterization(), days, (jnp.sin(q * s), jnp.zeros(())),
                    save_every_days=days)  # fmt: skip
        rate = kappa * (q / depth) ** 2
        if semi_discrete:  # the eigenvalue of the discrete Laplacian for this mode
            rate = 4 * kappa / dz**2 * math.sin(q * dz / (2 * depth)) ** 2
        exact = jnp.sin(q * s) * jnp.exp(-rate * t[-1])
        return float(jnp.max(jnp.abs(u[-1] - exact)))

    if varied == "dz":
        errors = [error(dz, 0.05) for dz in (1500.0, 750.0)]
    else:
        errors = [error(1000.0, dt, semi_discrete=True) for dt in (1.0, 0.5)]
    np.testing.assert_allclose(np.log2(errors[0] / errors[1]), 2.0, atol=0.1)


def test_the_imex_step_is_second_order_in_dt_with_the_wave_forcing(plumb, x64):
    forcing = PlumbWaves()
    state = (jnp.asarray(plumb[1][-1]), jnp.zeros(()))  # a QBO state of the two-wave run

    def final(dt_days):
        m = QBO(dz=250.0, dt=dt_days * DAY, w=1e-5, top="fixed", dtype=jnp.float64)
        return _run(m, forcing, 64.0, state, save_every_days=64.0)[0][-1]

    ref = final(1 / 16)
    errors = [float(jnp.max(jnp.abs(final(dt) - ref))) for dt in (2.0, 1.0, 0.5)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # second order, approached from below (1.78, 1.81 here)
    assert np.all(orders > 1.7) and orders[1] > orders[0], (errors, orders)


# ---- Holton-Lindzen / Plumb two-wave QBO -------------------------------------------------

# The reference: the qbo1d test bed (github.com/DataWaveProject/qbo1d, its README and the
# figure figures/qbo-example-2waves.png), a 1-D model of the Holton-Lindzen (1972) / Plumb
# (1977) type. Its two-wave setting: HL72's radiative damping (their eq. 9, `hl72_damping`),
# isothermal 204 K, N = 2.16e-2 s⁻¹, K = 0.3 m²/s, w = 1e-5 m/s, two waves of ±32 m/s and
# zonal wavenumber 1 with launched fluxes ±0.6 mPa (the code's As = ±6e-4 Pa / ρ₀; the
# README's text says ±6 mPa), 17-35 km, dz = 250 m, dt = 1 day, u = 0 at both ends. After
# 12 years of spin-up the figure gives a period of 27 months at 25 km and standard
# deviations of 23.5 m/s at 25 km and 20.1 m/s at 20 km. (Not a figure of Plumb 1977,
# whose model is set up non-dimensionally, as in Vallis' Plumb-model script: this is a
# dimensional instance whose numbers are published with the code.)
QBO1D = dict(period_months=27.0, std_25km=23.5, std_20km=20.1)
SPIN_UP, YEARS = 12 * 360.0, 16 * 360.0  # days, as qbo1d's 360-day years


def _plumb(dz=250.0, dt_days=1.0):
    model = QBO(dz=dz, dt=dt_days * DAY, w=1e-5, top="fixed", dtype=jnp.float64)
    u, t = _run(model, PlumbWaves(), SPIN_UP + YEARS)
    keep = np.asarray(t) >= SPIN_UP * DAY
    return model, np.asarray(u)[keep], np.asarray(t)[keep]


@pytest.fixture(scope="module")
def plumb():
    with jax.enable_x64(True):
        return _plumb()


def _stats(model, u, t, height=25e3):
    series = at_height(u, model.heights(), height)
    return qbo_period(series, t), qbo_amplitude(series)


def test_the_two_wave_qbo_has_the_period_and_amplitude_of_the_qbo1d_test_bed(plumb):
    model, u, t = plumb
    period, std25 = _stats(model, u, t)
    _, std20 = _stats(model, u, t, 20e3)
    # the figure rounds to whole months: 27 ± 0.5, and 2% beside it for the schemes
    assert abs(period / QBO1D_MONTH - QBO1D["period_months"]) < 0.5 + 0.02 * 27, period
    np.testing.assert_allclose(std25, QBO1D["std_25km"], rtol=0.03)
    np.testing.assert_allclose(std20, QBO1D["std_20km"], rtol=0.03)


def test_the_two_wave_qbo_has_alternating_jets_that_descend(plumb):
    model, u, t = plumb
    period, _ = _stats(model, u, t)
    z = model.heights()
    hi, lo = at_height(u, z, 30e3), at_height(u, z, 20e3)
    for series in (hi, lo, at_height(u, z, 25e3)):
        assert series.max() > 15 and series.min() < -15  # westerly and easterly jets
    # every phase appears at 30 km first and reaches 20 km later, within half a period
    up, down = zero_crossings(hi, t), zero_crossings(lo, t)
    assert len(up) >= 2 * (t[-1] - t[0]) / period - 2
    for crossing in up[:-2]:
        later = down[down > crossing]
        lag = later[0] - crossing
        assert 0 < lag < 0.5 * period
        # with the same sign of change (the same phase descending)
        k_hi = np.searchsorted(t, crossing)
        k_lo = np.searchsorted(t, later[0])
        assert np.sign(hi[k_hi] - hi[k_hi - 1]) == np.sign(lo[k_lo] - lo[k_lo - 1])


def test_the_two_wave_qbo_converges_in_dz_and_dt(plumb, x64):
    model, u, t = plumb
    base = np.array(_stats(model, u, t))
    finer_dz = np.array(_stats(*_plumb(dz=125.0)))
    finer_dt = np.array(_stats(*_plumb(dt_days=0.5)))
    # period and amplitude change by less than 2% between the two finest settings
    assert np.all(np.abs(finer_dz / base - 1) < 0.02), (base, finer_dz)
    assert np.all(np.abs(finer_dt / base - 1) < 0.02), (base, finer_dt)


def test_hl72_damping_profile():
    z = jnp.array([17e3, 23.5e3, 30e3, 33e3])
    np.testing.assert_allclose(hl72_damping(z) * DAY, [1 / 21, 2 / 21, 1 / 7, 1 / 7], rtol=1e-6)


# ---- the spectral scheme's QBO -------------------------------------------------------------


def test_ad99_drives_a_two_to_three_year_qbo_also_on_a_ring():
    kw = dict(dz=500.0, source_flux=1e-3, source_width=20.0, sponge_time=5 * DAY)
    model = QBO(**kw)
    scheme = AD99(smoothness=0.1, centre=0.0)
    u, t = _run(model, scheme, 12 * 365.0)
    keep = np.asarray(t) >= 3 * 365 * DAY
    series = at_height(np.asarray(u)[keep], model.heights(), 25e3)
    period = qbo_period(series, np.asarray(t)[keep]) / MONTH
    assert 20 < period < 36 and 15 < qbo_amplitude(series) < 40, period
    # a ring of identical columns (uniform source, mixing) is the single column
    ring = QBO(n_columns=3, mixing_time=10 * DAY, **kw)
    u3, _ = _run(ring, scheme, 12 * 365.0)
    np.testing.assert_allclose(u3[-1], jnp.broadcast_to(u[-1], u3[-1].shape), rtol=1e-4,
                               atol=1e-3)  # fmt: skip
    assert ring.params(0.0)["source_flux"].shape == (3,)


def test_bad_settings_and_states_are_refused():
    with pytest.raises(ValueError, match="must divide"):
        QBO(dz=700.0)
    with pytest.raises(ValueError, match="top must be"):
        QBO(top="open")
    with pytest.raises(ValueError, match="envelope must be"):
        QBO(envelope=2.0)
    model = QBO(dz=1000.0)
    with pytest.raises(ValueError, match=r"u should have shape \(18,\)"):
        model.step((jnp.zeros(17), jnp.zeros(())), PlumbWaves())
    with pytest.raises(ValueError, match="needs a wave forcing"):
        model.step(model.initial_state(), None)
    with pytest.raises(ValueError, match="one entry per wave"):
        PlumbWaves(fluxes=(1e-3,))
    with pytest.raises(ValueError, match="outside the layer centres"):
        at_height(np.zeros((3, 18)), model.heights(), 40e3)
