"""A moist single column with simplified Betts-Miller convection (Frierson 2007).

State: temperature T (K) and specific humidity q (kg/kg) on N pressure levels, index 0 at
the bottom (next to the surface), uniformly spaced in pressure between `p_surface` and
`p_top`: level k is the centre of a layer of thickness dp = (p_surface − p_top)/N.

Physics (all tendencies per second):
- convection: the simplified Betts-Miller scheme (`betts_miller`) of Frierson (2007), "The
  dynamical core of a simplified moist general circulation model", J. Atmos. Sci. 64,
  1959-1976, §2b: a parcel lifted from the lowest level defines T_ref (dry adiabat below the
  lifting condensation level, pseudo-adiabat above) and q_ref = RH_SBM · q_sat(T_ref); T and
  q relax towards them over τ_BM below the level of zero buoyancy when there is CAPE;
- radiation: Newtonian cooling towards a uniform `t_rad` over `tau_rad`;
- surface: bulk sensible and latent heat fluxes from a fixed SST into the lowest layer,
  ρ C U (SST − T₀) and ρ C U (q_sat(SST, p_s) − q₀);
- large-scale forcing per column: advective cooling −A sin(π (p_s − p)/(p_s − p_top)) K/day
  (first baroclinic mode; A < 0 is subsidence warming) and moistening
  B exp(−(p_s − p)/150 hPa) g/kg/day (bottom heavy; B < 0 dries).

Time stepping: forward Euler at `dt` (default 15 min, stable: the fastest process is the
2 h convective relaxation). Forward Euler is linear in the tendencies, so a convection
tendency that conserves the column enthalpy ∫(c_p T + L q) dp/g keeps it conserved over
the step. After each step q is clipped at 0 (a drying forcing can empty the lowest
layer); the clip is the only non-conservative part and `enthalpy_budget_residual` measures
it.

The convection scheme is a `surrogate.coupling` parameterization: `Column.step(state, p)`
calls `p((T, q), {"p": p_levels, "dp": dp})` and expects (dT/dt, dq/dt) in K/s and
kg/kg/s; `None` uses the built-in `BettsMiller`.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..coupling import AbstractParameterization, Parameterization, check_tendencies

CP = 1004.64  # J/kg/K, dry air
RD = 287.04  # J/kg/K
RV = 461.50  # J/kg/K
LV = 2.5e6  # J/kg, latent heat of vaporisation (constant)
G = 9.80665  # m/s²
EPS = RD / RV
KAPPA = RD / CP
DAY = 86400.0

ColumnState = tuple[Float[Array, " level"], Float[Array, " level"]]


# ---- thermodynamics ---------------------------------------------------------------------


def saturation_vapor_pressure(t: Float[Array, "..."]) -> Float[Array, "..."]:
    """e_s(T) over liquid water in Pa: Bolton (1980), Mon. Wea. Rev. 108, eq. 10,
    e_s = 611.2 exp(17.67 (T − 273.15) / (T − 29.65)); within 0.1% for −35..35 °C."""
    return 611.2 * jnp.exp(17.67 * (t - 273.15) / (t - 29.65))


def saturation_specific_humidity(
    t: Float[Array, "..."], p: Float[Array, "..."]
) -> Float[Array, "..."]:
    """q_s = ε e_s / (p − (1 − ε) e_s) in kg/kg."""
    es = saturation_vapor_pressure(t)
    return EPS * es / (p - (1.0 - EPS) * es)


def _dqs(t, p):
    """(q_s, ∂q_s/∂T, ∂q_s/∂p) in closed form."""
    es = saturation_vapor_pressure(t)
    des_dt = es * 17.67 * (273.15 - 29.65) / (t - 29.65) ** 2
    denom = p - (1.0 - EPS) * es
    qs = EPS * es / denom
    return qs, EPS * p * des_dt / denom**2, -qs / denom


def moist_lapse_rate(t: Float[Array, "..."], p: Float[Array, "..."]) -> Float[Array, "..."]:
    """dT/dp (K/Pa) along the saturated pseudo-adiabat.

    From conservation of moist static energy h = c_p T + Φ + L q_s with hydrostatic
    dΦ = −R_d T dp/p: c_p dT + L (∂q_s/∂T dT + ∂q_s/∂p dp) − R_d T dp/p = 0, so
    dT/dp = (R_d T/p − L ∂q_s/∂p) / (c_p + L ∂q_s/∂T).
    """
    _, dqs_dt, dqs_dp = _dqs(t, p)
    return (RD * t / p - LV * dqs_dp) / (CP + LV * dqs_dt)


def moist_adiabat(t0, p0, p1, n_sub: int = 4):
    """T at p1 on the pseudo-adiabat through (p0, t0): `n_sub` classical RK4 steps in p."""
    h = (p1 - p0) / n_sub

    def rk4(t, i):
        p = p0 + i * h
        k1 = moist_lapse_rate(t, p)
        k2 = moist_lapse_rate(t + 0.5 * h * k1, p + 0.5 * h)
        k3 = moist_lapse_rate(t + 0.5 * h * k2, p + 0.5 * h)
        k4 = moist_lapse_rate(t + h * k3, p + h)
        return t + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6, None

    return jax.lax.scan(rk4, t0, jnp.arange(n_sub, dtype=jnp.result_type(p0)))[0]


def lifting_condensation_level(t0, q0, p0):
    """(T_LCL, p_LCL) of air (t0, q0, p0): Bolton (1980) eq. 21 with the vapour pressure
    e = q p / (ε + (1 − ε) q) (floored at 1 mPa), then p_LCL on the dry adiabat. Saturated
    air condenses where it is (T_LCL = t0, p_LCL = p0)."""
    e = jnp.maximum(q0 * p0 / (EPS + (1.0 - EPS) * q0), 1e-3) / 100.0  # hPa
    t_lcl = 2840.0 / (3.5 * jnp.log(t0) - jnp.log(e) - 4.805) + 55.0
    t_lcl = jnp.minimum(t_lcl, t0)
    return t_lcl, p0 * (t_lcl / t0) ** (1.0 / KAPPA)


def parcel_temperature(t0, q0, p0, p: Float[Array, " level"]) -> Float[Array, " level"]:
    """Temperature of a parcel lifted from (t0, q0, p0) to each level p (decreasing): dry
    adiabat down to the LCL, then the pseudo-adiabat from the LCL up (RK4 between levels)."""
    t_lcl, p_lcl = lifting_condensation_level(t0, q0, p0)

    def up(carry, pk):
        p_from, t_from = carry
        dry = pk >= p_lcl
        t_moist = moist_adiabat(t_from, p_from, jnp.where(dry, p_from, pk))
        t = jnp.where(dry, t0 * (pk / p0) ** KAPPA, t_moist)
        # the moist integration starts at the LCL and then goes level by level
        carry = (jnp.where(dry, p_from, pk), jnp.where(dry, t_from, t_moist))
        return carry, t

    return jax.lax.scan(up, (p_lcl, t_lcl), p)[1]


# ---- the simplified Betts-Miller scheme -----------------------------------------------


def _check_column(t, q, p, dp) -> None:
    shapes = {jnp.shape(a) for a in (t, q, p, dp)}
    if len(shapes) != 1 or len(jnp.shape(t)) != 1 or jnp.shape(t)[0] < 2:
        raise ValueError(
            "T, q, p and dp should be 1-D arrays over the same levels (at least 2), got "
            f"shapes {[jnp.shape(a) for a in (t, q, p, dp)]}"
        )


def betts_miller(
    t: Float[Array, " level"],
    q: Float[Array, " level"],
    p: Float[Array, " level"],
    dp: Float[Array, " level"],
    *,
    tau: float = 7200.0,
    rh: float = 0.7,
) -> tuple[Float[Array, " level"], Float[Array, " level"], Float[Array, ""]]:
    """Simplified Betts-Miller convection (Frierson 2007, §2b): (dT/dt K/s, dq/dt kg/kg/s,
    precipitation kg m⁻² s⁻¹ = mm/s). Levels bottom (index 0, highest p) to top.

    1. A parcel from the lowest level gives T_p (`parcel_temperature`); q_ref = rh·q_s(T_p).
    2. The level of zero buoyancy is the first level above the LCL where T_p ≤ T; levels
       below it convect. CAPE = Σ R_d (T_p − T) Δln p over convecting levels above the
       LCL; no CAPE, no convection.
    3. δT = −(T − T_ref)/τ, δq = −(q − q_ref)/τ there. P_q = −Σ δq dp/g.
    4. Deep convection (P_q > 0): T_ref is shifted by one uniform ΔT so that
       c_p Σ δT dp + L Σ δq dp = 0 (Frierson's enthalpy correction), i.e. P_T = P_q.
       Shallow (P_q ≤ 0): Frierson's non-precipitating option: q_ref and T_ref are both
       shifted uniformly so that Σ δq dp = 0 and Σ δT dp = 0 (P = 0).
    So by construction c_p Σ dT dp + L Σ dq dp = 0, P = −Σ dq dp/g and P ≥ 0.
    """
    _check_column(t, q, p, dp)
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    t_ref = parcel_temperature(t[0], q[0], p[0], p)
    q_ref = rh * saturation_specific_humidity(t_ref, p)
    _, p_lcl = lifting_condensation_level(t[0], q[0], p[0])
    above = p < p_lcl
    stop = above & (t_ref <= t)
    n = t.shape[0]
    k_top = jnp.where(jnp.any(stop), jnp.argmax(stop), n)
    conv = jnp.arange(n) < k_top
    dlnp = dp / p
    cape = jnp.sum(jnp.where(conv & above, RD * (t_ref - t) * dlnp, 0.0))
    active = conv & (cape > 0)
    w = jnp.where(active, dp, 0.0)
    depth = jnp.maximum(jnp.sum(w), jnp.finfo(w.dtype).tiny)
    dq = (q_ref - q) / tau
    dt = (t_ref - t) / tau
    sum_dq = jnp.sum(w * dq)
    deep = sum_dq < 0
    # shallow: remove the mean of δq; deep: δT shifted so that c_p Σ δT dp = −L Σ δq dp
    dq = jnp.where(deep, dq, dq - sum_dq / depth)
    target = jnp.where(deep, -LV / CP * jnp.sum(w * dq), 0.0)
    dt = dt + (target - jnp.sum(w * dt)) / depth
    dt = jnp.where(active, dt, 0.0)
    dq = jnp.where(active, dq, 0.0)
    return dt, dq, jnp.where(deep, column_precipitation(dq, dp), 0.0)


def column_precipitation(dq: Float[Array, " level"], dp: Float[Array, " level"]) -> Array:
    """P = −Σ dq/dt dp/g (kg m⁻² s⁻¹) of a moistening profile."""
    return -jnp.sum(dq * dp) / G


class BettsMiller(AbstractParameterization):
    """`betts_miller` as a parameterization: ((T, q), {"p", "dp"}) -> (dT/dt, dq/dt)."""

    tau: float = 7200.0
    rh: float = 0.7

    def __call__(self, state: ColumnState, params: Any = None) -> ColumnState:
        t, q = state
        dt, dq, _ = betts_miller(t, q, params["p"], params["dp"], tau=self.tau, rh=self.rh)
        return dt.astype(t.dtype), dq.astype(q.dtype)


# ---- the column ----------------------------------------------------------------------------


def pressure_levels(n: int, p_surface: float = 1e5, p_top: float = 1e4, dtype=jnp.float32):
    """(p, dp): centres and thicknesses (Pa) of n equal layers, bottom first."""
    dp = (p_surface - p_top) / n
    p = p_surface - dp * (jnp.arange(n, dtype=dtype) + 0.5)
    return p.astype(dtype), jnp.full((n,), dp, dtype)


class Column(eqx.Module):
    """One moist column (module docstring): grid, forcing parameters and the time step.

    Per-column parameters (`sst` K, `wind` m/s, `adv_cooling` K/day, `adv_moistening`
    g/kg/day) are array leaves, so columns are batched with `jax.vmap` of a function that
    builds the `Column` from them. `n_levels` 30-60 is the intended range (any >= 2 works).
    """

    sst: Float[Array, ""]
    wind: Float[Array, ""]
    adv_cooling: Float[Array, ""]
    adv_moistening: Float[Array, ""]
    n_levels: int = eqx.field(static=True)
    p_surface: float = eqx.field(static=True)
    p_top: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    tau_bm: float = eqx.field(static=True)
    rh_bm: float = eqx.field(static=True)
    tau_rad: float = eqx.field(static=True)
    t_rad: float = eqx.field(static=True)
    exchange: float = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, n_levels: int = 40, *, sst=300.0, wind=5.0, adv_cooling=0.0,
                 adv_moistening=0.0, p_surface: float = 1e5, p_top: float = 1e4,
                 dt: float = 900.0, tau_bm: float = 7200.0, rh_bm: float = 0.7,
                 tau_rad: float = 40 * DAY, t_rad: float = 200.0, exchange: float = 1.2e-3,
                 dtype=jnp.float32):  # fmt: skip
        if n_levels < 2:
            raise ValueError(f"need at least 2 levels, got n_levels={n_levels}")
        if not 0 < p_top < p_surface:
            raise ValueError(f"need 0 < p_top < p_surface, got {p_top}, {p_surface}")
        if not 0 < dt <= 0.5 * tau_bm:
            raise ValueError(f"dt={dt} s must be positive and at most tau_bm/2={tau_bm / 2} s")
        self.sst, self.wind = jnp.asarray(sst, dtype), jnp.asarray(wind, dtype)
        self.adv_cooling = jnp.asarray(adv_cooling, dtype)
        self.adv_moistening = jnp.asarray(adv_moistening, dtype)
        self.n_levels, self.p_surface, self.p_top = int(n_levels), float(p_surface), float(p_top)
        self.dt, self.tau_bm, self.rh_bm = float(dt), float(tau_bm), float(rh_bm)
        self.tau_rad, self.t_rad, self.exchange = float(tau_rad), float(t_rad), float(exchange)
        self.dtype = dtype

    @property
    def levels(self) -> tuple[Float[Array, " level"], Float[Array, " level"]]:
        """(p, dp) in Pa."""
        return pressure_levels(self.n_levels, self.p_surface, self.p_top, self.dtype)

    def grid(self) -> dict[str, Array]:
        """What the column passes to its convection parameterization as `params`."""
        p, dp = self.levels
        return {"p": p, "dp": dp}

    def _check(self, state, parameterization) -> None:
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise ValueError(f"a column state is a pair (T, q), got {type(state).__name__}")
        shapes = [jnp.shape(a) for a in state]
        if any(s != (self.n_levels,) for s in shapes):
            raise ValueError(f"T and q should have shape ({self.n_levels},), got {shapes}")
        if parameterization is not None:
            check_tendencies(parameterization, tuple(state), self.grid())

    def surface_fluxes(self, state: ColumnState) -> tuple[Array, Array]:
        """(sensible heat W/m², evaporation kg m⁻² s⁻¹), bulk formulae at the lowest level."""
        t, q = state
        p, _ = self.levels
        rho = p[0] / (RD * t[0])
        coef = rho * self.exchange * self.wind
        qs = saturation_specific_humidity(self.sst, jnp.asarray(self.p_surface, t.dtype))
        return coef * CP * (self.sst - t[0]), coef * (qs - q[0])

    def forcing(self, state: ColumnState) -> ColumnState:
        """Everything but convection: radiation, surface fluxes, large-scale forcing."""
        t, q = state
        p, dp = self.levels
        sigma = (self.p_surface - p) / (self.p_surface - self.p_top)
        dt = -(t - self.t_rad) / self.tau_rad - self.adv_cooling / DAY * jnp.sin(math.pi * sigma)
        dq = self.adv_moistening * 1e-3 / DAY * jnp.exp(-(self.p_surface - p) / 15000.0)
        sh, evap = self.surface_fluxes(state)
        bottom = jnp.arange(self.n_levels) == 0
        dt = dt + jnp.where(bottom, G * sh / (CP * dp[0]), 0.0)
        dq = dq + jnp.where(bottom, G * evap / dp[0], 0.0)
        return dt.astype(t.dtype), dq.astype(q.dtype)

    def convection(
        self, state: ColumnState, parameterization: Parameterization | None = None
    ) -> ColumnState:
        """(dT/dt, dq/dt) of the convection scheme, or of `parameterization` in its place."""
        if parameterization is None:
            parameterization = BettsMiller(self.tau_bm, self.rh_bm)
        return parameterization(tuple(state), self.grid())

    def step(
        self, state: ColumnState, parameterization: Parameterization | None = None
    ) -> ColumnState:
        """One forward-Euler step of length `dt`; q clipped at 0 afterwards."""
        self._check(state, parameterization)
        t, q = state
        ct, cq = self.convection(state, parameterization)
        ft, fq = self.forcing(state)
        t_new = t + self.dt * (ct + ft)
        q_new = jnp.maximum(q + self.dt * (cq + fq), 0.0)
        return t_new.astype(t.dtype), q_new.astype(q.dtype)

    def integrate(
        self,
        state0: ColumnState,
        n_steps: int,
        *,
        parameterization: Parameterization | None = None,
        save_every: int = 1,
    ) -> ColumnState:
        """(T, q) after 0, s, ..., n_steps steps (time axis first), by `lax.scan`. No
        stability watch: `surrogate.coupling.rollout(column.step, ...)` adds one."""
        self._check(state0, parameterization)
        if not isinstance(n_steps, int) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
        if not isinstance(save_every, int) or save_every < 1 or n_steps % save_every:
            raise ValueError(
                f"save_every must be a positive int dividing n_steps={n_steps}, got {save_every}"
            )

        def chunk(s, _):
            s = jax.lax.fori_loop(0, save_every, lambda _, v: self.step(v, parameterization), s)
            return s, s

        state0 = tuple(jnp.asarray(a, self.dtype) for a in state0)
        _, saved = jax.lax.scan(chunk, state0, None, length=n_steps // save_every)
        return tuple(jnp.concatenate([a[None], b]) for a, b in zip(state0, saved, strict=True))

    def enthalpy(self, state: ColumnState) -> Float[Array, ""]:
        """Column moist enthalpy ∫(c_p T + L q) dp/g in J/m² (what convection conserves)."""
        _, dp = self.levels
        return jnp.sum((CP * state[0] + LV * state[1]) * dp) / G

    def enthalpy_budget_residual(
        self, state: ColumnState, parameterization: Parameterization | None = None
    ) -> Float[Array, ""]:
        """[H(step(x)) − H(x)]/dt minus the non-convective sources (radiation, surface
        fluxes, large-scale forcing) at x, in W/m²: zero for a conserving scheme, up to
        round-off and the q ≥ 0 clip."""
        _, dp = self.levels
        ft, fq = self.forcing(state)
        sources = jnp.sum((CP * ft + LV * fq) * dp) / G
        t1, q1 = self.step(state, parameterization)
        # the difference of the states, not of two large enthalpies (float32 round-off)
        change = jnp.sum((CP * (t1 - state[0]) + LV * (q1 - state[1])) * dp) / G
        return change / self.dt - sources

    def precipitation(
        self, state: ColumnState, parameterization: Parameterization | None = None
    ) -> Float[Array, ""]:
        """Surface precipitation (kg m⁻² s⁻¹) of the convection at `state`: −∫dq dp/g."""
        _, dp = self.levels
        return column_precipitation(self.convection(state, parameterization)[1], dp)

    def reference_profile(self, t_surface, rh_surface) -> ColumnState:
        """A moist-adiabatic (T, q) through surface air (t_surface, RH), isothermal at
        `t_rad` + 5 K where the adiabat gets colder; RH falls off with height."""
        p, _ = self.levels
        q0 = rh_surface * saturation_specific_humidity(t_surface, p[0])
        t = jnp.maximum(parcel_temperature(t_surface, q0, p[0], p), self.t_rad + 5.0)
        sigma = (p - self.p_top) / (self.p_surface - self.p_top)
        rh = rh_surface * jnp.sqrt(jnp.clip(sigma, 0.0, 1.0)) + 0.02
        return t.astype(self.dtype), (rh * saturation_specific_humidity(t, p)).astype(self.dtype)
