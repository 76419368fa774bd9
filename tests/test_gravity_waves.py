"""The AD99 spectral gravity-wave scheme (single column and oblique rays on a ring), the
`gravity_waves` problem and its emulators (constraints for any weights, coupling)."""

import inspect
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surrogate import problems
from surrogate.applications.gravity_waves import (
    GravityWaveMLP,
    GravityWaveSSM,
    NonlocalGravityWaveSSM,
    features,
    fit_emulator,
    launch_fluxes,
    online_run,
    training_arrays,
)
from surrogate.cli import main
from surrogate.data import read_dataset
from surrogate.problems.gravity_waves import RANGES
from surrogate.solvers.gravity_waves import (
    AD99,
    flux_drag,
    gravity_wave_fluxes,
    isothermal_atmosphere,
    phase_speeds,
    ring_gravity_wave_fluxes,
    saturation_flux,
    source_spectrum,
    wave_fluxes,
)

L = 24  # layers of the test column, 500 m thick from 17 km
K300 = 2 * math.pi / 300e3

# compiled once per dtype and switch: eager dispatch of the schemes is slow (the ring's
# spacing and slope cap are traced, so that its tests share one compilation)
_STATIC = ("wavenumber", "centre", "smoothness")


def _jit(f):
    names = inspect.signature(f).parameters
    return jax.jit(f, static_argnames=[n for n in _STATIC if n in names])


gravity_wave_fluxes = _jit(gravity_wave_fluxes)
ring_gravity_wave_fluxes = _jit(ring_gravity_wave_fluxes)
wave_fluxes = _jit(wave_fluxes)


@_jit
def gravity_wave_drag(u, n, rho, dz, *, flux, width, c, wavenumber, centre="launch",
                      smoothness=0.0):  # fmt: skip
    east, west = gravity_wave_fluxes(u, n, rho, dz, flux=flux, width=width, c=c,
                                     wavenumber=wavenumber, centre=centre,
                                     smoothness=smoothness)  # fmt: skip
    return flux_drag(east + west, rho, dz)


def _column(dtype=jnp.float64, n_levels=L, temperature=204.0):
    z = 17e3 + 500.0 * (jnp.arange(n_levels, dtype=dtype) + 0.5)
    rho, n = isothermal_atmosphere(z, temperature)
    return z, rho, n, jnp.full_like(z, 500.0)


# ---- source spectrum ------------------------------------------------------------------------


def test_source_spectrum_is_ad99_eq17_normalised_to_the_total_flux(x64):
    c = phase_speeds(100.0, 400, jnp.float64)
    b = source_spectrum(c, flux=2e-3, width=20.0, centre=5.0)
    np.testing.assert_allclose(jnp.sum(jnp.abs(b)), 2e-3, rtol=1e-12)
    assert bool(jnp.all(jnp.sign(b) == jnp.sign(c - 5.0)))
    # half maximum at c0 ± c_w, antisymmetric about c0 (Gaussian shape in c − c0)
    ref = jnp.max(jnp.abs(b))
    shape = jnp.exp(-math.log(2.0) * ((c - 5.0) / 20.0) ** 2)
    np.testing.assert_allclose(jnp.abs(b) / ref, shape / jnp.max(shape), rtol=1e-12)
    assert phase_speeds(100.0, 40).shape == (40,) and float(phase_speeds(100.0, 40)[20]) > 0


# ---- one wave: analytic cases ------------------------------------------------------------------


def test_one_wave_keeps_its_flux_up_to_its_critical_level_and_deposits_it_all_there(x64):
    z, rho, n, dz = _column()
    # u grows 2 m/s per layer: u = c = 15 m/s between layers 7 (u = 15.0 - 1) and 8
    u = 2.0 * jnp.arange(L, dtype=jnp.float64) + 1.0
    f0 = jnp.array([1e-4])
    # a huge wavenumber: no saturation, only the critical level stops the wave
    flux = wave_fluxes(u, n, rho, jnp.array([15.0]), f0, wavenumber=1.0)[0]
    np.testing.assert_array_equal(flux[:8], 1e-4)  # conserved through layers 0..6
    np.testing.assert_array_equal(flux[8:], 0.0)  # absorbed in layer 7 (u − c changes sign)
    drag = flux_drag(flux, rho, dz)
    expected = jnp.zeros(L).at[7].set(1e-4 / (rho[7] * 500.0))
    np.testing.assert_allclose(drag, expected, rtol=1e-13, atol=0)
    # a westward wave (negative flux) with c = -15 passes all of this eastward shear
    west = wave_fluxes(u, n, rho, jnp.array([-15.0]), -f0, wavenumber=1.0)[0]
    np.testing.assert_array_equal(west, -1e-4)


@pytest.mark.parametrize("f0", [1.5e-3, 3e-3, 5e-3])
def test_one_wave_breaks_where_the_saturation_flux_of_a_calm_isothermal_column_falls_to_it(x64, f0):
    """u = 0, N const, ρ = ρ₀ exp(−z/H): F_sat = ρ k c³/(2N) falls below |F₀| above
    z_b = H ln(ρ₀ k c³ / (2 N |F₀|)); the wave deposits everything in the first layer whose
    centre lies above z_b."""
    z, rho, n, dz = _column()
    c, u = 5.0, jnp.zeros(L)
    h = 287.04 * 204.0 / 9.80665
    rho0 = rho[0] * jnp.exp(z[0] / h)
    z_b = h * jnp.log(rho0 * K300 * c**3 / (2 * n[0] * f0))
    k_b = int(jnp.argmax(z > z_b))
    assert 0 < k_b < L - 1
    drag = gravity_wave_drag(u, n, rho, dz, flux=2 * f0, width=c, c=jnp.array([-c, c]),
                             wavenumber=K300, centre=0.0)  # fmt: skip
    # both waves (±c, ±f0) break in the same layer; their drags cancel; the eastward one:
    east, west = gravity_wave_fluxes(u, n, rho, dz, flux=2 * f0, width=c,
                                     c=jnp.array([-c, c]), wavenumber=K300, centre=0.0)  # fmt: skip
    np.testing.assert_allclose(east[: k_b + 1], f0, rtol=1e-12)
    np.testing.assert_array_equal(east[k_b + 1 :], 0.0)
    np.testing.assert_allclose(west, -east, rtol=1e-12)
    np.testing.assert_allclose(drag, 0.0, atol=1e-18)
    # and the saturation flux is the formula's at the breaking layer
    f_sat = saturation_flux(u, n, rho, c, 1.0, K300)
    assert float(f_sat[k_b]) <= f0 < float(f_sat[k_b - 1])


# ---- properties ------------------------------------------------------------------------------


def _profile(a, b, shift):
    z = 17e3 + 500.0 * (jnp.arange(L, dtype=jnp.float64) + 0.5)
    s = (z - 17e3) / 12e3
    return a * jnp.sin(jnp.pi * s) + b * jnp.sin(2.5 * jnp.pi * s + shift)


@settings(max_examples=15, deadline=None)
@given(
    a=st.floats(-40, 40),
    b=st.floats(-20, 20),
    shift=st.floats(0, 6.3),
    flux=st.floats(1e-4, 1e-2),
    width=st.floats(5, 40),
    smoothness=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_column_momentum_budget_holds_for_any_profile_and_switch(
    a, b, shift, flux, width, smoothness
):
    with jax.enable_x64(True):
        z, rho, n, dz = _column()
        u = _profile(a, b, shift)
        east, west = gravity_wave_fluxes(u, n, rho, dz, flux=flux, width=width,
                                         c=phase_speeds(100.0, 40, jnp.float64),
                                         wavenumber=K300, smoothness=smoothness)  # fmt: skip
        drag = flux_drag(east + west, rho, dz)
        budget = jnp.sum(rho * dz * drag)
        np.testing.assert_allclose(budget, (east + west)[0] - (east + west)[-1], atol=1e-16)
        np.testing.assert_allclose(east[0] - west[0], flux, rtol=1e-12)  # all launched
        # eastward waves only lose flux on their way up (never negative), westward alike
        assert bool(jnp.all(jnp.diff(east) <= 1e-18) and jnp.all(east >= 0))
        assert bool(jnp.all(jnp.diff(west) >= -1e-18) and jnp.all(west <= 0))


def test_smooth_switch_tends_to_the_hard_one_and_has_finite_difference_gradients(x64):
    z, rho, n, dz = _column()
    u = _profile(25.0, 8.0, 1.0)
    kw = dict(flux=3e-3, width=20.0, c=phase_speeds(100.0, 40, jnp.float64), wavenumber=K300)

    def drag(v, smoothness):
        east, west = gravity_wave_fluxes(v, n, rho, dz, smoothness=smoothness, **kw)
        return flux_drag(east + west, rho, dz)

    hard = drag(u, 0.0)
    errors = [float(jnp.abs(drag(u, d) - hard).sum()) for d in (0.3, 0.05)]
    assert 0 < errors[1] < 0.5 * errors[0]

    @jax.jit
    def functional(v):
        return jnp.sum(jnp.sin(z / 3e3) * drag(v, 0.3)) * 1e5

    grad = jax.jit(jax.grad(functional))(u)
    direction = jnp.cos(z / 2e3)
    eps = 1e-5
    fd = (functional(u + eps * direction) - functional(u - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jnp.dot(grad, direction), fd, rtol=1e-6)


# ---- ring of columns --------------------------------------------------------------------


def _ring(n_col=6, dtype=jnp.float64):
    z, rho, n, dz = _column(dtype)
    phase = 2 * jnp.pi * jnp.arange(n_col, dtype=dtype)[:, None] / n_col
    u = _profile(20.0, 6.0, 0.5)[None, :] + 5.0 * jnp.cos(phase + z[None, :] / 4e3)
    return u, rho, n, dz


def test_ring_conserves_momentum_over_the_ring_and_its_budget_is_not_local(x64):
    u, rho, n, dz = _ring()
    flux = 1e-3 * (1.0 + 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(6) / 6))
    drag, fluxes = ring_gravity_wave_fluxes(
        u, n, rho, dz, flux=flux, width=20.0, c=phase_speeds(100.0, 40, jnp.float64),
        wavenumber=K300, spacing=150e3, smoothness=0.1,
    )  # fmt: skip
    total = fluxes[0] + fluxes[1]
    ring_budget = jnp.sum(rho[None] * dz[None] * drag)
    np.testing.assert_allclose(ring_budget, jnp.sum(total[:, 0] - total[:, -1]), atol=1e-16)
    np.testing.assert_allclose(fluxes[0, :, 0] - fluxes[1, :, 0], flux, rtol=1e-12)
    # per column, momentum travels: the local budget does not hold
    local = jnp.sum(rho[None] * dz[None] * drag, axis=1) - (total[:, 0] - total[:, -1])
    assert float(jnp.max(jnp.abs(local))) > 1e-2 * float(jnp.max(jnp.abs(flux)))


def test_ring_with_uniform_columns_or_far_apart_columns_is_the_column_scheme(x64):
    u, rho, n, dz = _ring()
    kw = dict(width=20.0, c=phase_speeds(100.0, 40, jnp.float64), wavenumber=K300,
              smoothness=0.1)  # fmt: skip
    # identical columns: what leaves one column arrives from its neighbour
    same = jnp.broadcast_to(u[0], u.shape)
    drag, _ = ring_gravity_wave_fluxes(same, n, rho, dz, flux=jnp.full(6, 2e-3),
                                       spacing=150e3, **kw)  # fmt: skip
    column = gravity_wave_drag(u[0], n, rho, dz, flux=2e-3, **kw)
    np.testing.assert_allclose(drag, jnp.broadcast_to(column, drag.shape), rtol=1e-9, atol=1e-18)
    # columns 10²⁷ km apart: every ray stays home
    flux = jnp.linspace(1e-3, 3e-3, 6)
    far, _ = ring_gravity_wave_fluxes(u, n, rho, dz, flux=flux, spacing=1e30, **kw)
    local = jax.vmap(lambda v, f: gravity_wave_drag(v, n, rho, dz, flux=f, **kw))(u, flux)
    np.testing.assert_allclose(far, local, rtol=1e-9, atol=1e-18)


def test_a_ray_in_calm_air_lands_where_its_analytic_slope_takes_it(x64):
    """u = 0, N constant: dx/dz = c N/(k c²) = N/(k c), so a wave launched at column 0
    deposits its flux, in the layer where it breaks, at x = (N/(k c)) z_mid (capped slope
    s·m/(m + s), m = max_slope), split linearly between the two columns around it."""
    z, rho, n, dz = _column()
    n_col, spacing, c, f0 = 24, 150e3, 10.0, 1e-2
    u = jnp.zeros((n_col, L))
    flux = jnp.zeros(n_col).at[0].set(2 * f0)
    drag, _ = ring_gravity_wave_fluxes(u, n, rho, dz, flux=flux, width=c,
                                       c=jnp.array([-c, c]), wavenumber=K300,
                                       spacing=spacing, max_slope=1e4, centre=0.0)  # fmt: skip
    k_b = int(jnp.argmax(jnp.abs(drag).sum(0) > 0))
    assert 0 < k_b < L - 1
    slope = n[0] / (K300 * c) * 1e4 / (1e4 + n[0] / (K300 * c))
    x = slope * 500.0 * (k_b + 0.5) / spacing  # columns east of the launch
    left, frac = int(np.floor(x)), float(x - np.floor(x))
    deposit = rho[k_b] * 500.0 * drag[:, k_b]
    # (rtol: the scheme's slope has ĉ² + 10⁻⁶ m²/s² in its denominator)
    np.testing.assert_allclose(deposit[left], f0 * (1 - frac), rtol=1e-6)
    np.testing.assert_allclose(deposit[left + 1], f0 * frac, rtol=1e-6)
    # the westward twin travels west by the same distance: a mirror image
    np.testing.assert_allclose(deposit[-left], -f0 * (1 - frac), rtol=1e-6)
    np.testing.assert_allclose(deposit[-left - 1], -f0 * frac, rtol=1e-6)
    others = np.delete(np.asarray(deposit), [left, left + 1, -left % n_col, -left - 1])
    np.testing.assert_array_equal(others, 0.0)


def test_ad99_parameterization_on_columns_and_rings_and_its_errors(x64):
    u, rho, n, dz = _ring()
    params = {"n": n, "rho": rho, "dz": dz, "source_flux": jnp.full(6, 2e-3),
              "source_width": 20.0}  # fmt: skip
    scheme = eqx.filter_jit(AD99(smoothness=0.1, centre=0.0))
    drag = scheme(u, params)
    one = scheme(u[2], {**params, "source_flux": 2e-3})
    np.testing.assert_allclose(drag[2], one, rtol=1e-9, atol=1e-18)
    ring = eqx.filter_jit(AD99(smoothness=0.1, centre=0.0, spacing=150e3))(u, params)
    assert ring.shape == u.shape and not np.allclose(ring, drag)
    with pytest.raises(ValueError, match="1-D over the same levels"):
        gravity_wave_drag(u[0], n[:-1], rho, dz, flux=1e-3, width=20.0, c=phase_speeds(),
                          wavenumber=K300)  # fmt: skip
    with pytest.raises(ValueError, match=r"u should be \(column, level\)"):
        ring_gravity_wave_fluxes(u, n, rho, dz, flux=jnp.ones(5), width=20.0, c=phase_speeds(),
                                 wavenumber=K300, spacing=1e5)  # fmt: skip
    with pytest.raises(ValueError, match="n_waves >= 2"):
        phase_speeds(100.0, 1)


# ---- the gravity_waves problem ---------------------------------------------------------------

DAY = 86400.0
SMALL = dict(n_columns=3, dz=3000.0, n_waves=8, spin_up=0.0, save_interval=5 * DAY,
             n_times=3)  # fmt: skip


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("gravity_waves") / "gw.nc"
    options = [a for k, v in SMALL.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    argv = ["generate", "gravity_waves", "--n", "2", "--seed", "3", "--out", str(path)]
    assert main([*argv, "--quiet", *options]) == 0
    return read_dataset(path)


def test_cli_dataset_holds_the_scheme_drag_of_its_winds_and_the_ring_budget(small_dataset):
    ds = small_dataset
    problem = problems.problem_of_dataset(ds)
    assert problem.name == "gravity_waves" and problem.n_columns == 3
    assert ds["u"].dims == ("sample", "time", "column", "level")
    assert ds["flux_east"].dims == ("sample", "time", "column", "interface")
    scheme = problem.scheme()
    dz = np.diff(ds["interface"].values)
    for s in range(2):
        for t in range(3):
            params = {"rho": jnp.asarray(ds["rho"].values[s]), "n": jnp.asarray(ds["n"].values[s]),
                      "dz": jnp.asarray(dz, jnp.float32),
                      "source_flux": jnp.asarray(ds["launch_flux"].values[s, t]),
                      "source_width": jnp.asarray(ds["source_width"].values[s])}  # fmt: skip
            drag = eqx.filter_jit(scheme)(jnp.asarray(ds["u"].values[s, t]), params)
            np.testing.assert_allclose(drag, ds["drag"].values[s, t], rtol=1e-4, atol=1e-12)
    # the envelope modulates the columns around the ring mean flux
    mean = ds["launch_flux"].values.mean(axis=2)
    np.testing.assert_allclose(mean, np.broadcast_to(ds["source_flux"].values[:, None], mean.shape),
                               rtol=1e-5)  # fmt: skip
    assert np.ptp(ds["launch_flux"].values, axis=2).min() > 0.5 * ds["source_flux"].values.min()
    # momentum: the ring takes what its columns launch, minus what escapes at the top
    total = ds["flux_east"].values + ds["flux_west"].values
    budget = np.einsum("stcl,sl->st", ds["drag"].values, ds["rho"].values * dz)
    np.testing.assert_allclose(budget, (total[..., 0] - total[..., -1]).sum(-1), rtol=1e-4,
                               atol=1e-9)  # fmt: skip
    lo, hi = RANGES["source_flux"]
    assert np.all((ds["source_flux"].values >= lo) & (ds["source_flux"].values <= hi))
    m = problem.metrics(ds["drag"].values[:, None], ds["drag"].values[:, None])
    assert m["r2_drag"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(dz=700.0), "must divide"),
        (dict(envelope=2.0), r"envelope must be a number in \[0, 1\], got 2.0"),
        (dict(n_columns=0), r"n_columns must be an integer in \[1, 256\], got 0"),
        (dict(spacing=-1.0), r"spacing must be a number in \(0, 1e\+08\] \(m\), got -1.0"),
        (dict(save_interval=1.5 * DAY), "save_interval must be a multiple"),
        (dict(smoothness=float("nan")), "smoothness must be a number"),
    ],
)
def test_problem_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message) as err:
        problems.get("gravity_waves", **options)
    assert "\n" not in str(err.value)


# ---- emulators: constraints for any weights ---------------------------------------------------


def _key(seed):
    """A PRNG key of XLA's own generator: compiles in a fraction of threefry's time, which
    dominates building and redrawing these models."""
    return jax.random.key(seed, impl="unsafe_rbg")


@eqx.filter_jit
def _randomized(model, key, scale):
    """Every weight multiplied by a random factor around `scale`, normalizer included (one
    draw for all leaves: a draw per leaf makes the compilation slow)."""
    leaves, tree = jax.tree.flatten(eqx.filter(model, eqx.is_inexact_array))
    sizes = [a.size for a in leaves]
    noise = jax.random.normal(key, (sum(sizes),), leaves[0].dtype)
    parts = jnp.split(noise, np.cumsum(sizes)[:-1])
    leaves = [a * scale * (1 + e.reshape(a.shape)) for a, e in zip(leaves, parts, strict=True)]
    return eqx.combine(jax.tree.unflatten(tree, leaves), model)


def _emulator_params(dtype, n_col=None, flux=2e-3):
    z, rho, n, dz = _column(dtype)
    source = flux if n_col is None else flux * (1 + 0.5 * jnp.cos(jnp.arange(n_col, dtype=dtype)))
    return {"rho": rho, "n": n, "dz": dz, "source_flux": source, "source_width": 20.0}


@eqx.filter_jit
def _emulate_randomized(model, key, scale, u, params):
    """`_randomized` then `_emulate`, in one compiled function."""
    model = _randomized(model, key, scale)
    return model, model.drag_and_fluxes(u, params)


@pytest.fixture(scope="module")
def small_emulators():
    """One small float64 model of each family (their weights are redrawn in the tests),
    and a float32 MLP for the problem's small dataset."""
    with jax.enable_x64(True):
        # built by one compiled function (eager construction compiles every op)
        @eqx.filter_jit
        def build(key):
            return {
                "ssm": GravityWaveSSM(width=8, depth=1, state_size=4, dtype=jnp.float64,
                                      key=key),
                "mlp": GravityWaveMLP(n_levels=L, width=16, depth=1, dtype=jnp.float64, key=key),
                # deposits wrap 5 columns downstream on the 7-column ring, past the reach
                "nonlocal": NonlocalGravityWaveSSM(reach=2, spread=5, width=8, depth=1,
                                                   state_size=4, dtype=jnp.float64, key=key),
                # for the 6-level columns of `small_dataset`, in float32 like its data
                "mlp6": GravityWaveMLP(n_levels=6, width=16, depth=1, key=key),
            }  # fmt: skip

        return build(_key(0))


def test_the_critical_level_features_are_the_scheme_without_breaking(x64):
    """With no saturation (a huge k) and the hard switch, the scheme's eastward and
    westward fluxes above each level are the fractions the `features` channels 7-8 give."""
    z, rho, n, dz = _column()
    u = _profile(30.0, 12.0, 2.0) - 8.0  # eastward jet aloft, easterlies at the top
    east, west = gravity_wave_fluxes(u, n, rho, dz, flux=2e-3, width=20.0,
                                     c=phase_speeds(100.0, 80, jnp.float64), wavenumber=1e8,
                                     centre=0.0)  # fmt: skip
    x = features(u, rho, n, jnp.asarray(2e-3), jnp.asarray(20.0), n_waves=80)
    np.testing.assert_allclose(x[7], east[1:] / east[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x[8], west[1:] / west[0], rtol=1e-12, atol=1e-15)
    assert 0 < float(x[7, -1]) < 1 and 0 < float(x[8, -1]) < 1  # both are filtered


def test_the_breaking_features_are_the_column_scheme_with_its_hard_switch(x64):
    """At the scheme's own wavenumber (waves break where |B| reaches ρ k ĉ³/(2N)), the
    fractions of the launched flux that the column scheme passes are channels 9-10."""
    z, rho, n, dz = _column()
    u = _profile(30.0, 12.0, 2.0) - 8.0
    k = 2 * np.pi / 300e3
    east, west = gravity_wave_fluxes(u, n, rho, dz, flux=2e-3, width=20.0,
                                     c=phase_speeds(100.0, 80, jnp.float64), wavenumber=k,
                                     centre=0.0)  # fmt: skip
    x = features(u, rho, n, jnp.asarray(2e-3), jnp.asarray(20.0), n_waves=80, wavenumber=k)
    np.testing.assert_allclose(x[9], east[1:] / east[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x[10], west[1:] / west[0], rtol=1e-12, atol=1e-15)
    # breaking removes more than the critical levels alone, at some levels and not at others
    assert bool(jnp.all(x[9] <= x[7] + 1e-15) and jnp.all(x[10] <= x[8] + 1e-15))
    assert float(jnp.max(x[7] - x[9])) > 0.05 and float(jnp.max(x[8] - x[10])) > 0.05
    with pytest.raises(ValueError, match="wavenumber must be positive"):
        GravityWaveSSM(width=4, depth=1, state_size=2, wavenumber=0.0, key=_key(0))


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 5.0), a=st.floats(-40, 40),
       kind=st.sampled_from(["ssm", "mlp"]))  # fmt: skip
def test_column_emulators_conserve_momentum_and_keep_wave_signs_for_any_weights(
    small_emulators, seed, scale, a, kind
):
    with jax.enable_x64(True):
        params = _emulator_params(jnp.float64)
        u = _profile(a, 0.3 * a, 1.0)
        _, (drag, (east, west)) = _emulate_randomized(
            small_emulators[kind], _key(seed), jnp.asarray(scale), u, params
        )
        east0, west0 = launch_fluxes(2e-3, 20.0, c_max=100.0, n_waves=80, centre=0.0)
        np.testing.assert_allclose([east[0], west[0]], [east0, west0], rtol=1e-12)
        budget = jnp.sum(params["rho"] * params["dz"] * drag)
        np.testing.assert_allclose(budget, east[0] + west[0] - east[-1] - west[-1], atol=1e-15)
        assert bool(jnp.all(jnp.diff(east) <= 0) and jnp.all(east >= 0))
        assert bool(jnp.all(jnp.diff(west) >= 0) and jnp.all(west <= 0))


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 5.0), shift=st.integers(1, 6))
def test_nonlocal_emulator_conserves_momentum_over_the_ring_for_any_weights(
    small_emulators, seed, scale, shift
):
    with jax.enable_x64(True):
        u, *_ = _ring(7)
        params = _emulator_params(jnp.float64, n_col=7)
        _, (drag, (east, west)) = _emulate_randomized(
            small_emulators["nonlocal"], _key(seed), jnp.asarray(scale), u, params
        )
        mass = (params["rho"] * params["dz"])[None]
        total = east + west
        np.testing.assert_allclose(jnp.sum(mass * drag), jnp.sum(total[:, 0] - total[:, -1]),
                                   atol=1e-15)  # fmt: skip
        np.testing.assert_allclose(east[:, 0] - west[:, 0], params["source_flux"], rtol=1e-12)
        assert bool(jnp.all(jnp.diff(east, axis=1) <= 0) and jnp.all(jnp.diff(west, axis=1) >= 0))
        # one set of weights for every column: turning the ring turns the drag
        turned = {**params, "source_flux": jnp.roll(params["source_flux"], shift)}
        _, (drag_turned, _) = _emulate_randomized(
            small_emulators["nonlocal"], _key(seed), jnp.asarray(scale),
            jnp.roll(u, shift, axis=0), turned,
        )  # fmt: skip
        np.testing.assert_allclose(drag_turned, jnp.roll(drag, shift, axis=0), rtol=1e-9,
                                   atol=1e-18)  # fmt: skip
        # what one column launches is spread over its neighbours: its own budget need not close
        local = jnp.sum(mass * drag, axis=1) - (total[:, 0] - total[:, -1])
        assert float(jnp.max(jnp.abs(local))) > 1e-12


def test_an_emulator_fitted_on_problem_data_runs_in_the_qbo_in_place_of_the_scheme(
    small_dataset, small_emulators
):
    data = training_arrays(small_dataset)
    assert data["u"].shape == (6, 3, 6) and data["dz"].shape == (6,)
    fitted, history = fit_emulator(small_emulators["mlp6"], data, epochs=1, batch_size=4,
                                   key=_key(0))  # fmt: skip
    # the input normalizer holds the training features' statistics
    x = jax.vmap(jax.vmap(features, in_axes=(0, None, None, 0, None)))(
        data["u"], data["rho"], data["n"], data["launch_flux"], data["source_width"]
    )
    np.testing.assert_allclose(fitted.in_norm.mean, x.mean(axis=(0, 1, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fitted.in_norm.std, x.std(axis=(0, 1, 3)), rtol=1e-3, atol=1e-6)
    assert len(history["train_loss"]) == 1 and np.all(np.isfinite(history["train_loss"]))
    # in the QBO model (the problem's ring) in place of the scheme, through rollout
    qbo = problems.problem_of_dataset(small_dataset).model()
    result = online_run(qbo, fitted, years=0.2)
    assert bool(result.stable) and result.states[0].shape[1:] == (3, 6)
    assert float(jnp.max(jnp.abs(result.states[0][-1] - result.states[0][0]))) > 0
    with pytest.raises(ValueError, match="shorter than the reach"):
        small_emulators["nonlocal"](data["u"][0], qbo.params(0.0))
    with pytest.raises(ValueError, match="too short to spread a deposit over 5 columns"):
        small_emulators["nonlocal"](jnp.zeros((5, L)), _emulator_params(jnp.float32, n_col=5))
    with pytest.raises(ValueError, match=f"built for {L} levels, got 6"):
        small_emulators["mlp"](data["u"][0], qbo.params(0.0))
