"""Zero-dimensional ideal-gas reactors with detailed chemistry, integrated by diffrax.

State (T, Y_1..Y_K). Constant pressure (Kee, Coltrin & Glarborg 2003, sec. 9.3):

    dY_k/dt = w_k W_k / rho + k_mix (Y_amb,k - Y_k)
    cp dT/dt = -sum_k h_k w_k / rho + q(t) + k_mix sum_k Y_amb,k (h_k(T_amb) - h_k(T)) / W_k

with molar enthalpies h_k, mass-specific cp and density rho = p W / (R T). Constant volume
(rigid, closed) uses internal energies u_k = h_k - R T, cv, and the initial density; the
pressure follows from p = rho R T / W. The mixing term relaxes the reactor's specific
enthalpy (internal energy) and composition towards cold surroundings at rate k_mix [1/s], a
proxy for entrainment and heat loss, so that weak pulses fail to ignite. q(t) [W/kg] is an
external heat source per unit mass, e.g. a laser pulse (`GaussianPulse`).

Units: SI with kmol (see `_mechanism`); time in s. Needs float64 (`jax.enable_x64`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._mechanism import (
    GAS_CONSTANT,
    Mechanism,
    mean_molecular_weight,
    mole_to_mass_fractions,
    net_production_rates,
    species_cp,
    species_enthalpy,
)

KINDS = ("const_pressure", "const_volume")
# The solver state is (T / _T_SCALE, Y): all entries O(1), so that one absolute tolerance fits.
_T_SCALE = 1000.0


class GaussianPulse(eqx.Module):
    """Heat release rate q(t) = E / (sigma sqrt(2 pi)) exp(-(t - t_p)^2 / (2 sigma^2)), W/kg.

    `energy` E [J/kg] is deposited around `time` t_p [s] with standard deviation `width`
    sigma [s]; all of it lands in t > 0 when t_p > 4 sigma.
    """

    energy: Float[ArrayLike, ""]
    time: Float[ArrayLike, ""]
    width: Float[ArrayLike, ""]

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, ""]:
        z = (t - self.time) / self.width
        return self.energy / (self.width * jnp.sqrt(2 * jnp.pi)) * jnp.exp(-0.5 * z**2)

    def breakpoints(self) -> Float[Array, "3"]:
        """Times the step-size controller must step to, so that no step jumps the pulse."""
        t, w = jnp.asarray(self.time), jnp.asarray(self.width)
        return jnp.stack([t - 4 * w, t, t + 4 * w])


class IdealGasReactor(eqx.Module):
    """A closed or entraining 0-D reactor; `solve` integrates one initial state.

    Args:
        mechanism: species, thermodynamics and reactions.
        kind: "const_pressure" or "const_volume".
        heat_source: callable t -> q [W/kg] (an `eqx.Module` such as `GaussianPulse` keeps its
            parameters differentiable); a `breakpoints()` method, if any, gives times to step to.
        mixing_rate: k_mix [1/s] of relaxation towards the surroundings (0: adiabatic).
        ambient_temperature: T of the surroundings [K]; None means the initial temperature.
            Their composition is the initial one.
        rtol, atol: tolerances of the step-size controller on (T / 1000 K, Y).
        newton_rtol, newton_atol: tolerances of the chord-Newton iteration of each stage.
        max_steps: limit of solver steps (also sizes the checkpoints of reverse-mode autodiff).
        throw: raise if the solver fails; otherwise failed solves return NaN.
        adjoint: how to differentiate through the solve: diffrax's RecursiveCheckpointAdjoint
            (reverse mode, the default) or `diffrax.ForwardMode()` for `jax.jvp`/`jacfwd`.

    The solver is Kvaerno5, an L-stable ESDIRK of order 5 (Kvaerno 2004, BIT 44), suited to
    stiff chemistry, with a PI step-size controller. Example::

        mech = load_mechanism("h2o2")
        reactor = IdealGasReactor(mech, heat_source=GaussianPulse(5e5, 1e-4, 1e-5),
                                  mixing_rate=500.0)
        ts = jnp.linspace(0.0, 2e-3, 2000)
        X0 = mole_fractions_from_equivalence_ratio(mech, 1.0)
        out = jax.jit(lambda T0: reactor.solve(T0, 101325.0, ts, X0=X0))(300.0)
        tau = ignition_delay(ts, out["T"])
    """

    mechanism: Mechanism
    adjoint: diffrax.AbstractAdjoint
    heat_source: Callable | None
    mixing_rate: Float[ArrayLike, ""]
    ambient_temperature: Float[ArrayLike, ""] | None
    kind: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    newton_rtol: float = eqx.field(static=True)
    newton_atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        mechanism: Mechanism,
        kind: str = "const_pressure",
        *,
        heat_source: Callable | None = None,
        mixing_rate: Float[ArrayLike, ""] = 0.0,
        ambient_temperature: Float[ArrayLike, ""] | None = None,
        rtol: float = 1e-8,
        atol: float = 1e-12,
        newton_rtol: float = 1e-4,
        newton_atol: float = 1e-6,
        max_steps: int = 50_000,
        throw: bool = True,
        adjoint: diffrax.AbstractAdjoint | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        tols = dict(rtol=rtol, atol=atol, newton_rtol=newton_rtol, newton_atol=newton_atol)
        if not all(v > 0 for v in tols.values()):
            raise ValueError(f"tolerances must be positive, got {tols}")
        if heat_source is not None and not callable(heat_source):
            raise ValueError(f"heat_source must be callable t -> W/kg, got {heat_source!r}")
        _check_positive("mixing_rate", mixing_rate, allow_zero=True)
        if ambient_temperature is not None:
            _check_positive("ambient_temperature", ambient_temperature)
        self.mechanism = mechanism
        self.kind = kind
        self.heat_source = heat_source
        self.mixing_rate = mixing_rate
        self.ambient_temperature = ambient_temperature
        self.rtol, self.atol = float(rtol), float(atol)
        self.newton_rtol, self.newton_atol = float(newton_rtol), float(newton_atol)
        self.max_steps, self.throw = int(max_steps), bool(throw)
        self.adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def solve(
        self,
        T0: Float[ArrayLike, ""],
        p0: Float[ArrayLike, ""],
        ts: Float[ArrayLike, " time"],
        *,
        Y0: Float[ArrayLike, " species"] | Mapping[str, float] | None = None,
        X0: Float[ArrayLike, " species"] | Mapping[str, float] | None = None,
    ) -> dict[str, Array]:
        """Integrate ONE initial state from t = 0 at (T0 [K], p0 [Pa], Y0 or X0) and return
        the state at `ts` [s]: {"T": (time,) K, "p": (time,) Pa, "Y": (time, species)}.

        Compositions are normalized; mappings name species (others are zero). Jittable and
        vmappable over T0, p0, Y0/X0 (array form) and the reactor's array fields.
        """
        if not jax.config.jax_enable_x64:
            raise ValueError(
                "IdealGasReactor needs float64: run under `with jax.enable_x64(True):` or set "
                "jax.config.update('jax_enable_x64', True)"
            )
        mech = self.mechanism
        if (Y0 is None) == (X0 is None):
            raise ValueError("give exactly one of Y0 (mass fractions) or X0 (mole fractions)")
        if X0 is not None:
            Y0 = mole_to_mass_fractions(mech, composition_vector(mech, X0, "X0"))
        Y0 = composition_vector(mech, Y0, "Y0")
        T0 = _check_positive("T0", T0)
        p0 = _check_positive("p0", p0)
        ts = jnp.asarray(ts, dtype=jnp.float64)
        if ts.ndim != 1 or ts.shape[0] < 1:
            raise ValueError(f"ts must be a 1-D array of output times, got shape {ts.shape}")
        ts_np = _concrete(ts)
        if ts_np is not None and (ts_np[0] < 0 or np.any(np.diff(ts_np) < 0) or ts_np[-1] <= 0):
            raise ValueError("ts must be non-decreasing, start at t >= 0 and end at t > 0")

        rho0 = p0 * mean_molecular_weight(mech, Y0) / (GAS_CONSTANT * T0)
        T_amb = T0 if self.ambient_temperature is None else jnp.asarray(self.ambient_temperature)
        fixed = p0 if self.kind == "const_pressure" else rho0
        # PI coefficients for stiff problems as recommended by diffrax (Hairer & Wanner II,
        # IV.2); the Newton tolerances are on stage derivatives [1/s], looser than the step
        # tolerances: at equilibrium the derivatives vanish and round-off in the cancelling
        # forward and reverse rates would otherwise read as a diverging iteration.
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol, pcoeff=0.3, icoeff=0.4)
        breakpoints = getattr(self.heat_source, "breakpoints", None)
        if breakpoints is not None:
            controller = diffrax.ClipStepSizeController(controller, step_ts=breakpoints())
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_vector_field),
            diffrax.Kvaerno5(
                root_finder=diffrax.VeryChord(rtol=self.newton_rtol, atol=self.newton_atol)
            ),
            t0=0.0,
            t1=ts[-1],
            dt0=None,
            y0=jnp.concatenate([T0[None] / _T_SCALE, Y0]),
            args=(self, fixed, Y0, T_amb),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=self.max_steps,
            throw=self.throw,
            adjoint=self.adjoint,
        )
        ys = jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)
        T, Y = ys[:, 0] * _T_SCALE, ys[:, 1:]
        if self.kind == "const_pressure":
            p = jnp.full_like(T, p0)
        else:
            p = rho0 * GAS_CONSTANT * T / jax.vmap(lambda y: mean_molecular_weight(mech, y))(Y)
        return {"T": T, "p": p, "Y": Y}


def _vector_field(t, y, args):
    reactor, fixed, Y_amb, T_amb = args
    mech = reactor.mechanism
    T, Y = y[0] * _T_SCALE, y[1:]
    W_k = jnp.asarray(mech.molecular_weights)
    if reactor.kind == "const_pressure":
        rho = fixed * mean_molecular_weight(mech, Y) / (GAS_CONSTANT * T)
    else:
        rho = fixed
    w = net_production_rates(mech, T, rho * Y / W_k)
    cp_molar = species_cp(mech, T)
    h, h_amb = species_enthalpy(mech, T), species_enthalpy(mech, T_amb)
    if reactor.kind == "const_pressure":
        energy, energy_amb, c_molar = h, h_amb, cp_molar
    else:  # u = h - R T and cv = cp - R per kmol of each ideal-gas species
        energy, energy_amb = h - GAS_CONSTANT * T, h_amb - GAS_CONSTANT * T_amb
        c_molar = cp_molar - GAS_CONSTANT
    c_mass = jnp.sum(Y * c_molar / W_k)
    k = reactor.mixing_rate
    heat = -jnp.sum(energy * w) / rho + k * jnp.sum(Y_amb * (energy_amb - energy) / W_k)
    if reactor.heat_source is not None:
        heat = heat + reactor.heat_source(t)
    dY = w * W_k / rho + k * (Y_amb - Y)
    return jnp.concatenate([(heat / c_mass / _T_SCALE)[None], dY])


def ignition_delay(ts: Float[ArrayLike, " time"], T: Float[ArrayLike, " time"]) -> Float[Array, ""]:
    """Time of the maximum of dT/dt on a saved trajectory.

    Slopes of T between neighbouring outputs are second-order estimates of dT/dt at the
    interval midpoints; the maximum is refined by the vertex of the parabola through the
    largest slope and its two neighbours. Use a save grid fine enough to resolve the rise.
    """
    ts, T = jnp.asarray(ts), jnp.asarray(T)
    if ts.ndim != 1 or ts.shape != T.shape or ts.shape[0] < 4:
        raise ValueError(f"ts and T must be 1-D of the same length >= 4, got {ts.shape}, {T.shape}")
    mid = 0.5 * (ts[1:] + ts[:-1])
    slope = jnp.diff(T) / jnp.diff(ts)
    i = jnp.clip(jnp.argmax(slope), 1, slope.shape[0] - 2)
    x0, x1, x2 = mid[i - 1], mid[i], mid[i + 1]
    y0, y1, y2 = slope[i - 1], slope[i], slope[i + 1]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    safe = jnp.where(den == 0, 1.0, den)
    return jnp.where(den == 0, x1, jnp.clip(x1 - 0.5 * num / safe, x0, x2))


def composition_vector(
    mech: Mechanism, value: Float[ArrayLike, " species"] | Mapping[str, float], name: str = "X"
) -> Float[Array, " species"]:
    """Mass or mole fractions as a normalized vector, from an array or a {species: value} map."""
    if isinstance(value, Mapping):
        return jnp.asarray(_mapping_vector(mech, value, name), dtype=jnp.result_type(float))
    value = jnp.asarray(value, dtype=jnp.result_type(float))
    if value.shape != (mech.n_species,):
        raise ValueError(f"{name} must have shape ({mech.n_species},), got {value.shape}")
    concrete = _concrete(value)
    if concrete is not None and (np.any(concrete < 0) or concrete.sum() <= 0):
        raise ValueError(f"{name} must be non-negative with a positive sum, got {concrete}")
    return value / jnp.sum(value)


def mole_fractions_from_equivalence_ratio(
    mech: Mechanism,
    phi: Float[ArrayLike, ""],
    fuel: str | Mapping[str, float] = "H2",
    oxidizer: str | Mapping[str, float] | None = None,
) -> Float[Array, " species"]:
    """Mole fractions of a fuel/oxidizer mixture of equivalence ratio `phi`.

    phi = (n_fuel / n_ox) / (n_fuel / n_ox)_stoich, where stoichiometric means enough O
    atoms to turn all C into CO2 and all H into H2O: a fuel mixture needs 2C + H/2 - O oxygen
    atoms per mole and the oxidizer mixture offers O - 2C - H/2. Default oxidizer: air
    {"O2": 1, "N2": 3.76}.
    """
    phi = _check_positive("phi", phi)
    oxidizer = {"O2": 1.0, "N2": 3.76} if oxidizer is None else oxidizer
    xf = _mapping_vector(mech, {fuel: 1.0} if isinstance(fuel, str) else fuel, "fuel")
    xo = _mapping_vector(
        mech, {oxidizer: 1.0} if isinstance(oxidizer, str) else oxidizer, "oxidizer"
    )
    upper = [e.upper() for e in mech.elements]
    comp = np.asarray(mech.composition)
    c, h, o = (comp[:, upper.index(e)] if e in upper else 0.0 for e in ("C", "H", "O"))
    demand = 2 * c + 0.5 * h - o  # O atoms a molecule needs for complete combustion
    need, offer = xf @ demand, -(xo @ demand)
    if not (need > 0 and offer > 0):
        raise ValueError(f"fuel {fuel!r} must need oxygen and oxidizer {oxidizer!r} offer it")
    x = phi * jnp.asarray(xf) + need / offer * jnp.asarray(xo)
    return x / jnp.sum(x)


def _mapping_vector(mech: Mechanism, mapping: Mapping[str, float], name: str) -> np.ndarray:
    vec = np.zeros(mech.n_species)
    for species, v in mapping.items():
        vec[mech.species_index(species)] = v
    if np.any(vec < 0) or vec.sum() <= 0:
        raise ValueError(f"{name} must be non-negative with a positive sum, got {dict(mapping)}")
    return vec / vec.sum()


def _concrete(x) -> np.ndarray | None:
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def _check_positive(name: str, x, allow_zero: bool = False) -> Array:
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    if x.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {x.shape}")
    c = _concrete(x)
    sign = "non-negative" if allow_zero else "positive"
    if c is not None and ((c < 0 if allow_zero else c <= 0) or not np.isfinite(c)):
        raise ValueError(f"{name} must be finite and {sign}, got {float(c)}")
    if c is None:
        bad = (x < 0 if allow_zero else x <= 0) | ~jnp.isfinite(x)
        x = eqx.error_if(x, bad, f"{name} must be finite and {sign}")
    return x
