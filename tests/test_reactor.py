"""0-D reactor with detailed H2/O2 chemistry: thermodynamics, kinetics, conservation laws,
analytic heat-source and mixing solutions, gradients, and agreement with Cantera."""

import importlib.resources
from functools import partial
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import ndtr  # scipy comes with jax

from surrogate.solvers._mechanism import (
    GAS_CONSTANT,
    Mechanism,
    concentrations,
    cp_mass,
    enthalpy_mass,
    int_energy_mass,
    load_mechanism,
    mass_to_mole_fractions,
    mole_to_mass_fractions,
    net_production_rates,
    rates_of_progress,
    species_cp,
    species_enthalpy,
    species_entropy,
)
from surrogate.solvers.reactor import (
    GaussianPulse,
    IdealGasReactor,
    ignition_delay,
    mole_fractions_from_equivalence_ratio,
)

MECH = load_mechanism("h2o2")
H2O2_TEXT = (
    importlib.resources.files("surrogate.solvers") / "mechanisms" / "h2o2.yaml"
).read_text()
ATM = 101325.0
N_SAVE = 1500


def _reactor(kind, energy=0.0, mixing=0.0, t_amb=300.0, mech=MECH):
    # Every reactor of a kind has the same structure (pulse and mixing present, possibly
    # zero, as float64 arrays), so that all tests share one compiled solve per kind.
    pulse = GaussianPulse(*(jnp.asarray(v, jnp.float64) for v in (energy, 5e-5, 1e-5)))
    return IdealGasReactor(
        mech,
        kind,
        heat_source=pulse,
        mixing_rate=jnp.asarray(mixing, jnp.float64),
        ambient_temperature=jnp.asarray(t_amb, jnp.float64),
    )


_tau = jax.jit(ignition_delay)


@eqx.filter_jit
def _solve(reactor, T0, p0, X0, t_end):
    ts = t_end * jnp.linspace(0.0, 1.0, N_SAVE)
    out = reactor.solve(T0, p0, ts, X0=X0)
    return ts, {**out, "tau": ignition_delay(ts, out["T"])}


def _trajectory(reactor, T0, p0, X0, t_end):
    """(ts, {T, p, Y, tau}) as numpy: checks on the results then compile nothing more."""
    # Python floats would be static arguments of filter_jit, and recompile for every value.
    args = (jnp.asarray(v, jnp.float64) for v in (T0, p0, X0, t_end))
    return jax.tree.map(np.asarray, _solve(reactor, *args))


@jax.jit
def _mixture(T, Y):
    """h, u [J/kg] and cp [J/(kg K)] of one state; jitted, as eager jnp compiles every op."""
    return enthalpy_mass(MECH, T, Y), int_energy_mass(MECH, T, Y), cp_mass(MECH, T, Y)


_mixture_batch = jax.jit(jax.vmap(_mixture))


def _along(out):
    return [np.asarray(a) for a in _mixture_batch(out["T"], out["Y"])]


# ---- thermodynamics and kinetics without Cantera ------------------------------------------
def test_si_units_of_rate_parameters(x64):
    """cm^3/mol -> m^3/kmol is a factor 1e-3 per order above one; cal/mol -> K is 4184/R."""
    eq = MECH.equations
    j = eq.index("O + H2 <=> H + OH")  # bimolecular, A = 3.87e4 cm^3/(mol s), Ea = 6260 cal/mol
    assert MECH.A[j] == pytest.approx(3.87e4 * 1e-3, rel=1e-14)
    assert MECH.Ta[j] == pytest.approx(6260.0 * 4184.0 / GAS_CONSTANT, rel=1e-14)
    j = eq.index("2 O + M <=> O2 + M")  # three-body: third order
    assert MECH.A[j] == pytest.approx(1.2e17 * 1e-6, rel=1e-14)
    f = list(MECH.falloff_index).index(eq.index("2 OH (+M) <=> H2O2 (+M)"))
    assert MECH.A[MECH.falloff_index[f]] == pytest.approx(7.4e13 * 1e-3, rel=1e-14)
    assert MECH.A_low[f] == pytest.approx(2.3e18 * 1e-6, rel=1e-14)


def test_other_unit_systems_give_the_same_mechanism(tmp_path):
    """Rewriting activation energies in kcal/mol and K, and writing 5e+17 without a dot
    (a string in YAML 1.1, a number in Cantera's YAML 1.2), reads back identically."""
    assert H2O2_TEXT.count("A: 5.0e+17") == 1
    text = H2O2_TEXT.replace("A: 5.0e+17", "A: 5e+17")
    header = "units: {length: cm, time: s, quantity: mol, activation-energy: cal/mol}"
    factors = {"kcal/mol": 1e-3, "K": 4.184 / 8.31446261815324}
    for unit, factor in factors.items():
        lines = []
        for line in text.replace(header, header.replace("cal/mol}", unit + "}")).splitlines():
            if "Ea:" in line:
                head, tail = line.split("Ea:")
                value, rest = tail.split("}", 1)
                line = f"{head}Ea: {float(value) * factor!r}}}{rest}"
            lines.append(line)
        path = tmp_path / f"h2o2_{unit.replace('/', '_')}.yaml"
        path.write_text("\n".join(lines))
        other = Mechanism.from_yaml(path)
        for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(MECH), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)


def test_heat_capacity_is_the_derivative_of_enthalpy_and_entropy(x64):
    """cp = dh/dT and cp / T = ds/dT by central differences, in both NASA ranges."""
    h = jax.jit(lambda T: species_enthalpy(MECH, T))
    s = jax.jit(lambda T: species_entropy(MECH, T))
    cp_of = jax.jit(lambda T: species_cp(MECH, T))
    for T in (350.0, 700.0, 1500.0, 2900.0):
        d = 1e-3
        cp = cp_of(T)
        np.testing.assert_allclose((h(T + d) - h(T - d)) / (2 * d), cp, rtol=1e-8)
        np.testing.assert_allclose((s(T + d) - s(T - d)) / (2 * d), cp / T, rtol=1e-8)


def test_ignition_delay_of_a_logistic_curve(x64):
    """dT/dt of T0 + dT / (1 + exp(-(t - tau)/w)) peaks at tau; non-uniform grid."""
    tau, w = 3.1e-4, 4e-6
    ts = np.sort(np.random.default_rng(0).uniform(0, 1e-3, 3000))
    T = 1000.0 + 1500.0 / (1.0 + np.exp(-(ts - tau) / w))
    assert abs(float(_tau(ts, T)) - tau) < 0.05 * np.max(np.diff(ts))


@given(phi=st.floats(0.2, 5.0))
def test_equivalence_ratio_mixture(phi):
    """H2/air: X_H2 / X_O2 = 2 phi, X_N2 / X_O2 = 3.76; mass <-> mole round trip."""
    with jax.enable_x64(True):
        X = mole_fractions_from_equivalence_ratio(MECH, phi)
        i = {s: MECH.species_index(s) for s in ("H2", "O2", "N2")}
        assert float(X[i["H2"]] / X[i["O2"]]) == pytest.approx(2 * phi, rel=1e-12)
        assert float(X[i["N2"]] / X[i["O2"]]) == pytest.approx(3.76, rel=1e-12)
        assert float(jnp.sum(X)) == pytest.approx(1.0, rel=1e-14)
        Y = mole_to_mass_fractions(MECH, X)
        np.testing.assert_allclose(mass_to_mole_fractions(MECH, Y), X, rtol=1e-13, atol=1e-16)


# ---- reactor without Cantera ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["const_pressure", "const_volume"])
def test_conservation_through_ignition(x64, kind):
    """Mass, elements and h (constant p) or u (constant V) are conserved through ignition."""
    X0 = mole_fractions_from_equivalence_ratio(MECH, 1.0)
    _, out = _trajectory(_reactor(kind), 1100.0, ATM, X0, 1e-3)
    assert float(out["T"][-1]) > 2500.0  # it did ignite
    np.testing.assert_allclose(np.sum(out["Y"], axis=1), 1.0, atol=1e-13)
    moles = out["Y"] / MECH.molecular_weights[None, :] @ MECH.composition  # kmol of atoms per kg
    np.testing.assert_allclose(moles, np.broadcast_to(moles[0], moles.shape), rtol=1e-12)
    h, u, cp = _along(out)
    energy = h if kind == "const_pressure" else u
    assert np.max(np.abs(energy - energy[0])) / cp[0] < 1e-4  # in kelvin
    if kind == "const_volume":
        W = 1.0 / np.sum(out["Y"] / MECH.molecular_weights, axis=1)
        rho = out["p"] * W / (GAS_CONSTANT * out["T"])
        np.testing.assert_allclose(rho, np.broadcast_to(rho[0], rho.shape), rtol=1e-12)


@jax.jit
def _equilibrium_terms(T, Y):
    qf, qr = rates_of_progress(MECH, T, concentrations(MECH, T, ATM, Y))
    g = species_enthalpy(MECH, T) - T * species_entropy(MECH, T)
    return qf, qr, g, mass_to_mole_fractions(MECH, Y)


def test_equilibrium_is_detailed_balance_and_gibbs_minimum(x64):
    """Long after ignition every reaction balances (q_f = q_r), and the state minimizes the
    Gibbs energy at fixed elements: mu_k = sum_e lambda_e a_ke. The latter holds only if the
    reverse rates (K_c) are consistent with the NASA-7 Gibbs energies."""
    X0 = mole_fractions_from_equivalence_ratio(MECH, 0.8)
    _, out = _trajectory(_reactor("const_pressure"), 1500.0, ATM, X0, 0.2)
    T, Y = out["T"][-1], out["Y"][-1]
    qf, qr, g, X = (np.asarray(a) for a in _equilibrium_terms(T, Y))
    active = np.maximum(qf, qr) > 0  # reactions through AR (absent) have no flux
    imbalance = np.abs(qf - qr) / np.where(active, np.maximum(qf, qr), 1.0)
    assert np.max(imbalance) < 1e-4
    present = np.asarray(X) > 0
    mu = (g + GAS_CONSTANT * T * np.log(np.where(present, X, 1.0)))[present]
    a = np.asarray(MECH.composition)[present]
    lam, *_ = np.linalg.lstsq(a, np.asarray(mu), rcond=None)
    assert np.max(np.abs(a @ lam - mu)) / (GAS_CONSTANT * float(T)) < 1e-4


def test_pulse_and_mixing_match_the_analytic_energy_balance(x64):
    """With heat source q and mixing rate k, dh/dt = q + k (h_amb - h) whatever the chemistry:
    h(t) - h_amb = E exp(-k (t - t_p) + k^2 s^2 / 2) [Phi((t - t_p - k s^2)/s) - Phi(...)]."""
    X0 = mole_fractions_from_equivalence_ratio(MECH, 1.0)
    E, tp, s = 4e5, 5e-5, 1e-5
    for k, T0, T_amb in ((0.0, 300.0, 300.0), (300.0, 300.0, 300.0), (2000.0, 1200.0, 400.0)):
        ts, out = _trajectory(_reactor("const_pressure", E, k, T_amb), T0, ATM, X0, 2e-3)
        h = _along(out)[0]
        h_amb = float(_mixture(T_amb, out["Y"][0])[0])
        h0 = float(_mixture(T0, out["Y"][0])[0])
        lag = k * s**2
        pulse = (
            E
            * np.exp(-k * (ts - tp) + 0.5 * k * lag)
            * (ndtr((ts - tp - lag) / s) - ndtr((-tp - lag) / s))
        )
        expected = h_amb + (h0 - h_amb) * np.exp(-k * ts) + pulse
        assert np.max(np.abs(h - expected)) < 1e-5 * E


def test_weak_pulses_fail_to_ignite_with_mixing(x64):
    """Into H2/air at 300 K with mixing at 1000/s, 0.6 MJ/kg heats and decays; 1.2 MJ/kg ignites."""
    X0 = mole_fractions_from_equivalence_ratio(MECH, 1.0)
    _, weak = _trajectory(_reactor("const_pressure", 6e5, 1000.0), 300.0, ATM, X0, 2e-3)
    _, strong = _trajectory(_reactor("const_pressure", 1.2e6, 1000.0), 300.0, ATM, X0, 2e-3)
    assert np.max(weak["T"]) < 800.0 and weak["T"][-1] < 400.0
    assert np.max(strong["T"]) > 2000.0
    h2o = MECH.species_index("H2O")
    assert weak["Y"][-1, h2o] < 1e-4 < 0.1 < strong["Y"][-1, h2o]


def test_gradients_through_the_stiff_solve_match_finite_differences(x64):
    """d T(t1) / d(T0, pulse energy, log A_j) through the Kvaerno5 solve (forward mode) vs
    central differences, at t1 late in the induction period where T is most sensitive."""
    X0 = mole_fractions_from_equivalence_ratio(MECH, 1.0)
    ts = jnp.array([0.0, 2.5e-4])
    branching = MECH.equations.index("H + O2 <=> O + OH")
    termination = MECH.equations.index("H + O2 + M <=> HO2 + M")

    def temperature(params):
        T0, E, log_a_branching, log_a_termination = params
        scale = jnp.ones(MECH.n_reactions).at[branching].set(jnp.exp(log_a_branching))
        scale = scale.at[termination].set(jnp.exp(log_a_termination))
        mech = eqx.tree_at(lambda m: m.A, MECH, MECH.A * scale)
        reactor = eqx.tree_at(
            lambda r: r.adjoint, _reactor("const_pressure", E, mech=mech), diffrax.ForwardMode()
        )
        return reactor.solve(T0, ATM, ts, X0=X0)["T"][-1]

    # One compiled jvp gives both the values for finite differences and the derivatives.
    jvp = jax.jit(lambda p, v: jax.jvp(temperature, (p,), (v,)))
    base = jnp.array([1000.0, 1e3, 0.0, 0.0])
    steps = jnp.array([1e-2, 10.0, 1e-4, 1e-4])
    derivatives = []
    for i in range(4):
        e = jnp.zeros(4).at[i].set(1.0)
        exact = float(jvp(base, e)[1])
        fd = float(
            (jvp(base + steps[i] * e, e)[0] - jvp(base - steps[i] * e, e)[0]) / (2 * steps[i])
        )
        assert exact == pytest.approx(fd, rel=2e-4)
        derivatives.append(exact)
    # Chain branching speeds ignition (T rises), three-body termination slows it.
    assert derivatives[2] > 10.0 and derivatives[3] < -1.0


# ---- against Cantera -----------------------------------------------------------------------
def _cantera():
    return pytest.importorskip("cantera", reason="comparisons with Cantera need cantera")


def _ct_reactor(ct, cls, gas):
    try:  # Cantera >= 3.2 asks for `clone`; earlier versions do not know it
        return cls(gas, clone=False)
    except TypeError:
        return cls(gas)


def _path():
    with importlib.resources.as_file(
        importlib.resources.files("surrogate.solvers") / "mechanisms" / "h2o2.yaml"
    ) as p:
        return str(p)


def _properties(mech, T, C, Y):
    qf, qr = rates_of_progress(mech, T, C)
    return dict(
        cp=species_cp(mech, T),
        h=species_enthalpy(mech, T),
        s=species_entropy(mech, T),
        qf=qf,
        qr=qr,
        wdot=net_production_rates(mech, T, C),
        cp_mass=cp_mass(mech, T, Y),
        h_mass=enthalpy_mass(mech, T, Y),
    )


_properties_jit = eqx.filter_jit(_properties)  # one compile per mechanism shape


def _variant(tmp_path):
    """H2/O2 with a Lindemann fall-off through AR only, an irreversible reaction and a
    three-body default efficiency: the rate forms the packaged file does not use."""
    troe = "  Troe: {A: 0.7346, T3: 94.0, T1: 1756.0, T2: 5182.0}\n"
    eff = "  efficiencies: {H2: 2.4, H2O: 15.4, AR: 0.83}\n"
    for old in (troe, eff, "2 OH (+M) <=> H2O2 (+M)", "O + H2 <=> H + OH"):
        assert H2O2_TEXT.count(old) == 1, old
    text = H2O2_TEXT.replace(troe + "  efficiencies: {H2: 2.0, H2O: 6.0, AR: 0.7}\n", "")
    text = text.replace("2 OH (+M) <=> H2O2 (+M)", "2 OH (+AR) <=> H2O2 (+AR)")
    text = text.replace("O + H2 <=> H + OH", "O + H2 => H + OH")
    text = text.replace(eff, eff + "  default-efficiency: 0.5\n")
    return _write(tmp_path, text)


def test_thermo_and_rates_match_cantera(x64, tmp_path):
    """Species cp, h, s and forward/reverse/net rates at random states, for the packaged
    H2/O2 mechanism, a variant with other rate forms, and Cantera's GRI-Mech 3.0 (53
    species, Troe with and without T2, Lindemann)."""
    ct = _cantera()
    gri = next(p for d in ct.get_data_directories() if (p := Path(d) / "gri30.yaml").exists())
    rng = np.random.default_rng(1)
    for path in (_path(), _variant(tmp_path), gri):
        mech, gas = Mechanism.from_yaml(path), ct.Solution(str(path))
        assert mech.species == tuple(gas.species_names)
        np.testing.assert_allclose(mech.molecular_weights, gas.molecular_weights, rtol=1e-12)
        ours = partial(_properties_jit, mech)
        for T, p in ((400.0, 0.1), (900.0, 1.0), (1000.0, 20.0), (1500.0, 1.0), (2600.0, 5.0)):
            gas.TPX = T, p * ATM, rng.random(gas.n_species)
            got = ours(jnp.asarray(T), jnp.asarray(gas.concentrations), jnp.asarray(gas.Y))
            R = ct.gas_constant
            np.testing.assert_allclose(got["cp"], gas.standard_cp_R * R, rtol=1e-13)
            np.testing.assert_allclose(got["h"], gas.standard_enthalpies_RT * R * T, rtol=1e-12)
            s_ref = gas.standard_entropies_R + np.log(p)  # Cantera's s0 is at the current p
            np.testing.assert_allclose(got["s"] / R, s_ref, rtol=1e-12)
            np.testing.assert_allclose(got["qf"], gas.forward_rates_of_progress, rtol=1e-11)
            np.testing.assert_allclose(got["qr"], gas.reverse_rates_of_progress, rtol=1e-11)
            scale = np.max(np.abs(gas.net_production_rates))
            np.testing.assert_allclose(got["wdot"], gas.net_production_rates, atol=1e-12 * scale)
            assert float(got["cp_mass"]) == pytest.approx(gas.cp_mass, rel=1e-13)
            assert float(got["h_mass"]) == pytest.approx(gas.enthalpy_mass, rel=1e-11)


@pytest.mark.parametrize(
    "kind, T0, p_atm, phi",
    [
        ("const_pressure", 1000.0, 1.0, 0.5),
        ("const_pressure", 1000.0, 10.0, 2.0),
        ("const_pressure", 1400.0, 1.0, 2.0),
        ("const_pressure", 1400.0, 10.0, 0.5),
        ("const_pressure", 1200.0, 3.0, 1.0),
        ("const_volume", 1000.0, 1.0, 1.0),
        ("const_volume", 1300.0, 5.0, 0.7),
    ],
)
def test_ignition_matches_cantera(x64, kind, T0, p_atm, phi):
    """Ignition delay (max dT/dt) within 2%, final T and p within 0.1%, of Cantera's
    IdealGasConstPressureReactor / IdealGasReactor (CVODES, rtol 1e-10)."""
    ct = _cantera()
    X0 = mole_fractions_from_equivalence_ratio(MECH, phi)
    gas = ct.Solution(_path())
    gas.TPX = T0, p_atm * ATM, np.asarray(X0)
    cls = ct.IdealGasConstPressureReactor if kind == "const_pressure" else ct.IdealGasReactor
    reactor = _ct_reactor(ct, cls, gas)
    net = ct.ReactorNet([reactor])
    net.rtol, net.atol = 1e-10, 1e-18
    times, temps = [0.0], [T0]
    while net.time < 0.05 and reactor.T < T0 + 400.0:  # a first, step-wise look for tau
        net.step()
        times.append(net.time)
        temps.append(reactor.T)
    t_end = 2.0 * times[np.argmax(np.diff(temps) / np.diff(times))]
    ts, out = _trajectory(_reactor(kind), T0, p_atm * ATM, X0, t_end)
    gas.TPX = T0, p_atm * ATM, np.asarray(X0)
    reactor = _ct_reactor(ct, cls, gas)
    net = ct.ReactorNet([reactor])
    net.rtol, net.atol = 1e-10, 1e-18
    T_ref, p_ref = [], []
    for t in np.asarray(ts):
        net.advance(t)
        T_ref.append(reactor.T)
        p_ref.append(gas.P)  # the reactor shares `gas` (clone=False)
    assert float(out["tau"]) == pytest.approx(float(_tau(ts, np.asarray(T_ref))), rel=0.02)
    assert out["T"][-1] == pytest.approx(T_ref[-1], rel=1e-3)
    assert out["p"][-1] == pytest.approx(p_ref[-1], rel=1e-3)


# ---- bad input -----------------------------------------------------------------------------
def _write(tmp_path, text):
    path = tmp_path / "mech.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("phases:\n- name", "phases:\n  - name: [", "not valid YAML"),
        ("  type: falloff\n", "  type: chemically-activated\n", "unsupported reaction type"),
        ("O + H2 <=> H + OH", "O + H2 <=> H + OH + O", "does not conserve elements"),
        ("O + H2 <=> H + OH", "O + H2 <=> H + OH2", "unknown species"),
        ("    model: NASA7\n", "    model: NASA9\n", "thermo model 'NASA9' unsupported"),
        ("  duplicate: true\n", "", "undeclared duplicate reactions"),
        ("{A: 3.87e+04,", "{A: 3.87e+04 cm^3/mol/s,", "unit strings are not supported"),
        ("activation-energy: cal/mol", "activation-energy: erg/mol", "unsupported energy unit"),
        ("thermo: ideal-gas", "thermo: Redlich-Kwong", "expected 'ideal-gas'"),
    ],
)
def test_bad_mechanism_files(tmp_path, old, new, message):
    assert old in H2O2_TEXT
    with pytest.raises(ValueError, match=message):
        Mechanism.from_yaml(_write(tmp_path, H2O2_TEXT.replace(old, new, 1)))


def test_bad_reactor_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown mechanism 'ch4'"):
        load_mechanism("ch4")
    with pytest.raises(ValueError, match="not a Cantera mechanism"):
        Mechanism.from_yaml(_write(tmp_path, "a: 1\n"))
    with pytest.raises(ValueError, match="kind must be one of"):
        IdealGasReactor(MECH, "const_enthalpy")
    with pytest.raises(ValueError, match="mixing_rate must be finite and non-negative"):
        IdealGasReactor(MECH, mixing_rate=-1.0)
    with jax.enable_x64(False), pytest.raises(ValueError, match="needs float64"):
        IdealGasReactor(MECH).solve(1000.0, ATM, np.linspace(0, 1e-3, 3), X0={"H2": 1.0})
    reactor = IdealGasReactor(MECH)
    ts = np.linspace(0, 1e-3, 3)
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="unknown species 'CH4'"):
            reactor.solve(1000.0, ATM, ts, X0={"CH4": 1.0, "O2": 2.0})
        with pytest.raises(ValueError, match="T0 must be finite and positive, got -5"):
            reactor.solve(-5.0, ATM, ts, X0={"H2": 2.0, "O2": 1.0})
        with pytest.raises(ValueError, match=r"Y0 must have shape \(10,\), got \(3,\)"):
            reactor.solve(1000.0, ATM, ts, Y0=jnp.ones(3))
        with pytest.raises(ValueError, match="exactly one of Y0"):
            reactor.solve(1000.0, ATM, ts, X0={"H2": 1.0}, Y0={"H2": 1.0})
        with pytest.raises(ValueError, match="ts must be non-decreasing"):
            reactor.solve(1000.0, ATM, ts[::-1], X0={"H2": 1.0})
        with pytest.raises(ValueError, match="X0 must be non-negative"):
            reactor.solve(1000.0, ATM, ts, X0={"H2": -1.0, "O2": 1.0})
