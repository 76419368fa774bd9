"""Parametric neural ODE (PNODE) of laser ignition: a one-step global chemistry model whose
Arrhenius parameters, heat source and mixing rate are networks of the case's parameters.

Dai, Buchmüller, Bhatt, Yang & Ihme, "Parametric neural ordinary differential equations for
laser ignition in a rocket combustor": small networks of the laser-ignition parameters
predict the heat source, pre-exponential factors and activation energies of a 0-D model; the
model is trained through its ODE solver on reference temperature histories.

Here the 0-D model is a constant-pressure kernel burning 2 H2 + O2 -> 2 H2O in nitrogen with
a progress variable c in [0, 1] and mixing at rate k with the unburnt gas at T0:

    Y(c) = Y_u + c (Y_b - Y_u)                                  (composition)
    dc/dt = omega - k c,    omega = A exp(-Ta / T) (1 - c)
    cp(T, Y) dT/dt = -sum_k h_k(T) (Y_b,k - Y_u,k) / W_k omega + q(t)
                     + k sum_k Y_u,k (h_k(T0) - h_k(T)) / W_k

Y_u is the unburnt mixture of equivalence ratio phi, Y_b its complete-combustion products,
h_k and cp_k the NASA-7 polynomials of the mechanism's species, q a Gaussian laser pulse.
Mass fractions are non-negative and sum to one because Y(c) is a convex combination of two
compositions and c is kept in [0, 1] (omega vanishes at c = 1, mixing pulls towards 0); the
energy is consistent because the temperature equation is the exact enthalpy balance
dh/dt = q + k (h(T0, Y_u) - h) of the same thermodynamics: the chemistry only moves
enthalpy between chemical and sensible forms.

Learned (bounded around physical priors, the network's last layer starts at zero so that
an untrained model is the prior):
    log A  = log A_ref + 5 tanh(g_0)           Ta = Ta_ref exp(0.7 tanh(g_1))
    E_eff  = E exp(0.5 tanh(g_2))              t_p,eff = t_p + sigma tanh(g_3)
    sigma_eff = sigma exp(0.5 tanh(g_4))       k_eff = k exp(0.7 tanh(g_5))
    beta = sigmoid(2 + 2 tanh(g_6)) in (0.5, 0.98): the completeness of combustion, so that
    the burnt state Y_u + beta (Y_b - Y_u) stands for the dissociated equilibrium products
    (complete combustion to H2O would overshoot the flame temperature by ~300-500 K).
The network sees the logarithms of the seven parameters mapped to [-1, 1] on `ranges`.
"""

from __future__ import annotations

from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...solvers._mechanism import (
    Mechanism,
    load_mechanism,
    mole_to_mass_fractions,
    species_cp,
    species_enthalpy,
)
from ...solvers.reactor import GaussianPulse, mole_fractions_from_equivalence_ratio

# The parameter order of `surrogate.problems.ignition` (laser energy [J/kg], pulse time [s],
# pulse width [s], equivalence ratio, T0 [K], p0 [Pa], mixing rate [1/s]) and its ranges.
PARAMETER_NAMES = (
    "laser_energy",
    "pulse_time",
    "pulse_width",
    "equivalence_ratio",
    "T0",
    "p0",
    "mixing_rate",
)
DEFAULT_RANGES = (
    (0.4e6, 1.6e6),
    (2e-4, 4e-4),
    (1e-5, 3e-5),
    (0.5, 2.0),
    (300.0, 500.0),
    (0.5e5, 2e5),
    (200.0, 2000.0),
)
_T_SCALE = 1000.0  # the state is (T / 1000 K, c): both O(1)
_N_OUT = 7


@savable(x64=True, physical_units=True)
class PNODE(eqx.Module):
    """Parameters (7,) -> T at `times`, shape (1, time), through a learned one-step model.

    Args:
        in_channels: number of parameters, 7 (see `PARAMETER_NAMES`).
        out_channels: 1 (temperature).
        times: output times [s], starting at 0 (the dataset's time coordinate).
        width, depth: of the MLP g(parameters) -> 6 outputs (module docstring).
        mechanism: packaged mechanism name or Cantera YAML path for the thermodynamics;
            it must hold H2, O2, H2O and N2.
        ranges: (lo, hi) of each parameter for the network's input scaling.
        log_a_ref, ta_ref: prior of ln(A [1/s]) and Ea/R [K].
        rtol, atol, max_steps: of the Kvaerno5 solve on (T / 1000 K, c).
        newton_rtol, newton_atol: of its chord-Newton stages; looser than rtol, atol as in
            `IdealGasReactor` (with the step tolerances, the iteration stalls once the kernel
            has burnt and steps are rejected until max_steps).

    Trained in float64: run under `jax.enable_x64(True)` (`train_from_config` does so for
    models with `needs_x64`). Inputs are physical (`physical_units`): no outside normalizer.
    """

    mlp: eqx.nn.MLP
    times: tuple[float, ...] = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    mechanism: str = eqx.field(static=True)
    ranges: tuple[tuple[float, float], ...] = eqx.field(static=True)
    log_a_ref: float = eqx.field(static=True)
    ta_ref: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    newton_rtol: float = eqx.field(static=True)
    newton_atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)


    def __init__(
        self,
        in_channels: int = 7,
        out_channels: int = 1,
        *,
        times: Sequence[float],
        width: int = 32,
        depth: int = 2,
        mechanism: str = "h2o2",
        ranges: Sequence[Sequence[float]] | None = None,
        log_a_ref: float = float(np.log(3e8)),
        ta_ref: float = 1.5e4,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        newton_rtol: float = 1e-5,
        newton_atol: float = 1e-7,
        max_steps: int = 4096,
        key: PRNGKeyArray,
    ):
        if in_channels != len(PARAMETER_NAMES) or out_channels != 1:
            raise ValueError(
                f"PNODE maps the {len(PARAMETER_NAMES)} ignition parameters {PARAMETER_NAMES} "
                f"to T: need in_channels=7, out_channels=1, got {in_channels}, {out_channels}"
            )
        times = tuple(float(t) for t in np.asarray(times).reshape(-1))
        if len(times) < 2 or times[0] != 0.0 or np.any(np.diff(times) <= 0):
            raise ValueError("times must start at 0 and increase strictly (>= 2 of them)")
        ranges = DEFAULT_RANGES if ranges is None else ranges
        ranges = tuple((float(lo), float(hi)) for lo, hi in ranges)
        if len(ranges) != len(PARAMETER_NAMES) or not all(0 < lo < hi for lo, hi in ranges):
            raise ValueError(f"ranges must be 7 pairs 0 < lo < hi, got {ranges}")
        if width < 1 or depth < 0:
            raise ValueError(f"need width >= 1 and depth >= 0, got {width}, {depth}")
        mech = load_mechanism(mechanism)
        missing = [s for s in ("H2", "O2", "H2O", "N2") if s not in mech.species]
        if missing:
            raise ValueError(f"mechanism {mechanism!r} lacks species {missing}")
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        mlp = eqx.nn.MLP(
            in_channels, _N_OUT, width, depth, activation=jnp.tanh, dtype=dtype, key=key
        )
        # zero last layer: the untrained model is the physical prior
        last = mlp.layers[-1]
        last = eqx.tree_at(lambda lin: (lin.weight, lin.bias), last, (
            jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))  # fmt: skip
        self.mlp = eqx.tree_at(lambda m: m.layers[-1], mlp, last)
        self.times, self.in_channels, self.out_channels = times, in_channels, out_channels
        self.width, self.depth, self.mechanism, self.ranges = width, depth, mechanism, ranges
        self.log_a_ref, self.ta_ref = float(log_a_ref), float(ta_ref)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        self.newton_rtol, self.newton_atol = float(newton_rtol), float(newton_atol)

    def features(self, x: Float[Array, " 7"]) -> Float[Array, " 7"]:
        """log of the parameters mapped to [-1, 1] on `ranges` (beyond it out of range)."""
        lo, hi = (jnp.log(jnp.asarray(r, x.dtype)) for r in zip(*self.ranges, strict=True))
        return (2 * jnp.log(x) - (lo + hi)) / (hi - lo)

    def physical_parameters(self, x: Float[Array, " 7"]) -> dict[str, Array]:
        """ln A [ln 1/s], Ta [K], the effective pulse (E, t_p, sigma), mixing rate k and the
        completeness of combustion."""
        x = self._check(x)
        g = jnp.tanh(self.mlp(self.features(x)))
        E, tp, sigma, _, _, _, k = (x[i] for i in range(7))
        return {
            "log_A": self.log_a_ref + 5.0 * g[0],
            "Ta": self.ta_ref * jnp.exp(0.7 * g[1]),
            "energy": E * jnp.exp(0.5 * g[2]),
            "pulse_time": tp + sigma * g[3],
            "pulse_width": sigma * jnp.exp(0.5 * g[4]),
            "mixing_rate": k * jnp.exp(0.7 * g[5]),
            "completeness": jax.nn.sigmoid(2.0 + 2.0 * g[6]),
        }

    # ---- the model ----------------------------------------------------------------------
    def __call__(self, x: Float[Array, " 7"]) -> Float[Array, "1 time"]:
        return self.trajectory(x)["T"][None]

    def trajectory(self, x: Float[Array, " 7"]) -> dict[str, Array]:
        """{"T": (time,) K, "c": (time,) progress, "Y": (time, species) mass fractions,
        "h": (time,) J/kg mixture enthalpy} at `times`."""
        x = self._check(x)
        mech = load_mechanism(self.mechanism)
        theta = self.physical_parameters(x)
        phi, T0 = x[3], x[4]
        Y_u, Y_b = unburnt_and_burnt(mech, phi)
        Y_b = Y_u + theta["completeness"] * (Y_b - Y_u)
        pulse = GaussianPulse(theta["energy"], theta["pulse_time"], theta["pulse_width"])
        ts = jnp.asarray(self.times, x.dtype)
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=self.rtol, atol=self.atol, pcoeff=0.3, icoeff=0.4),
            step_ts=pulse.breakpoints(),
        )
        args = (mech, Y_u, Y_b, T0, pulse, theta)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_one_step_field),
            diffrax.Kvaerno5(
                root_finder=diffrax.VeryChord(rtol=self.newton_rtol, atol=self.newton_atol)
            ),
            t0=0.0,
            t1=ts[-1],
            dt0=None,
            y0=jnp.stack([T0 / _T_SCALE, jnp.zeros_like(T0)]),
            args=args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=self.max_steps,
            throw=False,
        )
        ys = jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)
        T, c = ys[:, 0] * _T_SCALE, ys[:, 1]
        Y = composition(Y_u, Y_b, c)
        W = jnp.asarray(mech.molecular_weights)
        h = jax.vmap(lambda t, y: jnp.sum(y * species_enthalpy(mech, t) / W))(T, Y)
        return {"T": T, "c": c, "Y": Y, "h": h}

    def _check(self, x) -> Array:
        if not jax.config.jax_enable_x64:
            raise ValueError(
                "PNODE solves a stiff ODE in float64: run under `with jax.enable_x64(True):`"
            )
        x = jnp.asarray(x, jnp.float64)
        if x.shape != (self.in_channels,):
            raise ValueError(
                f"PNODE takes one sample of {self.in_channels} parameters {PARAMETER_NAMES}, "
                f"got shape {x.shape}"
            )
        return x


def composition(Y_u: Array, Y_b: Array, c: Array) -> Array:
    """Y(c) = Y_u + clip(c, 0, 1) (Y_b - Y_u): a convex combination of two compositions."""
    c = jnp.clip(c, 0.0, 1.0)[..., None]
    lead = (1,) * (c.ndim - 1)  # explicit broadcasting over the leading (time) axes
    return Y_u.reshape(lead + Y_u.shape) + c * (Y_b - Y_u).reshape(lead + Y_u.shape)


def unburnt_and_burnt(mech: Mechanism, phi: Array) -> tuple[Array, Array]:
    """Mass fractions of H2/air at `phi` and of its complete combustion 2 H2 + O2 -> 2 H2O
    (the deficient reactant used up), same mass."""
    X_u = mole_fractions_from_equivalence_ratio(mech, phi)
    i_h2, i_o2, i_h2o = (mech.species_index(s) for s in ("H2", "O2", "H2O"))
    extent = jnp.minimum(0.5 * X_u[i_h2], X_u[i_o2])  # kmol of reaction per kmol of mixture
    nu = jnp.zeros(mech.n_species, X_u.dtype).at[i_h2].set(-2.0).at[i_o2].set(-1.0)
    n_b = jnp.maximum(X_u + extent * nu.at[i_h2o].set(2.0), 0.0)
    return mole_to_mass_fractions(mech, X_u), mole_to_mass_fractions(mech, n_b / jnp.sum(n_b))


def _one_step_field(t, y, args):
    mech, Y_u, Y_b, T0, pulse, theta = args
    T, c = y[0] * _T_SCALE, y[1]
    W = jnp.asarray(mech.molecular_weights)
    # smooth in the state (no clipping here: kinks stall the implicit stages' Newton
    # iteration); the exact solution keeps c in [0, 1] as omega = 0 at c = 1
    Y = Y_u + c * (Y_b - Y_u)
    h = species_enthalpy(mech, T)
    cp = jnp.sum(Y * species_cp(mech, T) / W)
    k = theta["mixing_rate"]
    omega = jnp.exp(theta["log_A"] - theta["Ta"] / jnp.maximum(T, 100.0)) * (1 - c)
    heat_of_reaction = -jnp.sum(h * (Y_b - Y_u) / W)  # J/kg per unit progress
    mixing = k * jnp.sum(Y_u * (species_enthalpy(mech, T0) - h) / W)
    dT = (heat_of_reaction * omega + pulse(t) + mixing) / cp
    return jnp.stack([dT / _T_SCALE, omega - k * c])
