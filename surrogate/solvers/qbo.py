"""A one-dimensional model of the quasi-biennial oscillation (QBO), Holton-Lindzen / Plumb type.

Holton, J. R. and R. S. Lindzen (1972), "An updated theory for the quasi-biennial cycle of
the tropical stratosphere", J. Atmos. Sci. 29, 1076-1080 (HL72); Plumb, R. A. (1977), "The
interaction of two internal waves with the mean flow: implications for the theory of the
quasi-biennial oscillation", J. Atmos. Sci. 34, 1847-1858.

The zonal-mean zonal wind u(z, t) of the tropical stratosphere obeys

    ∂u/∂t = −(1/ρ) ∂F/∂z − w ∂u/∂z + K ∂²u/∂z² − r(z) u,

F the momentum flux of upward-propagating waves, which a `surrogate.coupling`
parameterization supplies as its drag −(1/ρ) ∂F/∂z: the Plumb two-wave forcing
(`PlumbWaves`), the spectral gravity-wave scheme (`surrogate.solvers.gravity_waves.AD99`),
or a learned emulator of it. w is a constant upwelling, K a diffusivity, r a Rayleigh
sponge near the top (zero by default). The state may be one column (level,) or a ring of
columns (column, level), which can be relaxed towards their ring mean over
`mixing_time` (zonal mixing).

Grid: `n_levels` layers of thickness dz between `z_bottom` and `z_top` (centres
z_k = z_bottom + (k + ½) dz); u = 0 at the bottom boundary, and at the top either zero
gradient (`top="free"`) or u = 0 (`top="fixed"`), both by ghost cells.
Time stepping (`step`, interval dt): Crank-Nicolson for the linear terms (diffusion,
advection, sponge: one constant tridiagonal matrix) and Heun's method for the drag and the
mixing, the IMEX trapezoidal scheme u* = A⁻¹[B uⁿ + dt E(uⁿ)],
uⁿ⁺¹ = A⁻¹[B uⁿ + dt/2 (E(uⁿ) + E(u*))], A = I − dt/2 L, B = I + dt/2 L: second order
in dt and in dz (`tests/test_qbo.py` checks both).

The state is (u, t): the wind (m/s) and the model time (s); the parameterization sees u and
`params` (`QBO.params(t)`): "z", "dz", "rho", "n" (level,), and the source of the
spectral scheme at time t: "source_flux" (Pa, per column) and "source_width" (m/s).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..coupling import AbstractParameterization, Parameterization, check_tendencies
from .gravity_waves import flux_drag, isothermal_atmosphere

DAY = 86400.0
YEAR = 365.0 * DAY
MONTH = YEAR / 12

QBOState = tuple[Float[Array, "*column level"], Float[Array, ""]]


def hl72_damping(z: Float[Array, " level"]) -> Float[Array, " level"]:
    """Radiative (infrared) damping rate α(z) in 1/s of HL72 eq. 9: 1/21 day⁻¹ at 17 km,
    rising linearly to 1/7 day⁻¹ at 30 km, and 1/7 day⁻¹ above (and below 17 km)."""
    ramp = 1 / 21 + (2 / 21) * (z - 17e3) / 13e3
    return jnp.where((z >= 17e3) & (z <= 30e3), ramp, 1 / 7) / DAY


class PlumbWaves(AbstractParameterization):
    """Waves damped radiatively on their way up (Plumb 1977; HL72 with Newtonian cooling):

        F(z) = Σ_i F_i exp(−∫_{z₀}^{z} α N / (k_i (c_i − u)²) dz'),

    `fluxes` F_i (Pa, signed), phase speeds `speeds` c_i (m/s), horizontal wavenumbers
    `wavenumbers` k_i (1/m), α(z) of `hl72_damping`. The integral is summed layer by layer
    (u at the layer centres), F is evaluated at the interfaces and the drag is
    −(1/ρ) ∂F/∂z by the same flux difference as the spectral scheme, so Σ ρ dz drag equals
    the launched minus the escaping flux. Default: HL72's Kelvin and Rossby-gravity pair as
    set up in the qbo1d test bed (DataWaveProject/qbo1d): ±0.6 mPa, ±32 m/s, zonal
    wavenumber 1 (k = 2π/40 000 km).
    """

    fluxes: tuple[float, ...] = (6e-4, -6e-4)
    speeds: tuple[float, ...] = (32.0, -32.0)
    wavenumbers: tuple[float, ...] = (2 * math.pi / 4e7, 2 * math.pi / 4e7)

    def __check_init__(self):
        if not len(self.fluxes) == len(self.speeds) == len(self.wavenumbers) >= 1:
            raise ValueError(
                "fluxes, speeds and wavenumbers need one entry per wave, got "
                f"{len(self.fluxes)}, {len(self.speeds)}, {len(self.wavenumbers)}"
            )

    def flux(self, u: Float[Array, " level"], params: dict) -> Float[Array, " interface"]:
        """Total wave flux (Pa) at the interfaces of one column."""
        alpha = hl72_damping(params["z"]).astype(u.dtype)
        total = jnp.zeros(u.shape[0] + 1, u.dtype)
        for f0, c, k in zip(self.fluxes, self.speeds, self.wavenumbers, strict=True):
            g = alpha * params["n"] / (k * (c - u) ** 2)
            optical = jnp.concatenate([jnp.zeros(1, u.dtype), jnp.cumsum(g * params["dz"])])
            total = total + f0 * jnp.exp(-optical)
        return total

    def __call__(self, u: Array, params: Any = None) -> Array:
        def one(v):
            return flux_drag(self.flux(v, params), params["rho"], params["dz"])

        return (one(u) if u.ndim == 1 else jax.vmap(one)(u)).astype(u.dtype)


class QBO(eqx.Module):
    """The 1-D QBO model (module docstring) and the source its gravity waves see.

    Grid and physics: `z_bottom`, `z_top`, `dz` (m), `dt` (s), `kappa` (K, m²/s), `w`
    (upwelling, m/s), isothermal `temperature` (K, an array leaf like the source, so that
    samples of it can be vmapped) for ρ and N, `top` ("free" or
    "fixed"), a Rayleigh sponge of rate 1/`sponge_time` at the top, falling off
    quadratically over `sponge_depth` (m; none when `sponge_time` is None).
    Columns: `n_columns` (1: the classic model; more: a ring), relaxed to the ring mean
    over `mixing_time` s (None: not at all).
    Source of the spectral scheme: total launched flux `source_flux` (Pa) and half width
    `source_width` (m/s), modulated per column by an envelope travelling eastward around
    the ring, flux_j(t) = source_flux·(1 + a cos 2π(j/n − t/T)), a = `envelope`,
    T = `envelope_period` (s).
    """

    z_bottom: float = eqx.field(static=True)
    z_top: float = eqx.field(static=True)
    dz: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    kappa: float = eqx.field(static=True)
    w: float = eqx.field(static=True)
    temperature: Float[Array, ""]
    top: str = eqx.field(static=True)
    sponge_time: float | None = eqx.field(static=True)
    sponge_depth: float = eqx.field(static=True)
    n_columns: int = eqx.field(static=True)
    mixing_time: float | None = eqx.field(static=True)
    source_flux: Float[Array, ""]
    source_width: Float[Array, ""]
    envelope: float = eqx.field(static=True)
    envelope_period: float = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, *, z_bottom: float = 17e3, z_top: float = 35e3, dz: float = 500.0,
                 dt: float = DAY, kappa: float = 0.3, w: float = 0.0,
                 temperature: float = 204.0, top: str = "free",
                 sponge_time: float | None = None, sponge_depth: float = 5e3,
                 n_columns: int = 1, mixing_time: float | None = None,
                 source_flux=4e-3, source_width=30.0, envelope: float = 0.0,
                 envelope_period: float = 40 * DAY, dtype=jnp.float32):  # fmt: skip
        if not z_top > z_bottom >= 0:
            raise ValueError(f"need z_top > z_bottom >= 0, got {z_bottom}, {z_top}")
        n = (z_top - z_bottom) / dz if dz > 0 else 0
        if not dz > 0 or round(n) < 2 or not math.isclose(n, round(n), rel_tol=1e-9):
            raise ValueError(f"dz={dz} m must divide z_top - z_bottom = {z_top - z_bottom} m "
                             "into at least 2 layers")  # fmt: skip
        if not dt > 0 or not kappa >= 0:
            raise ValueError(f"need dt > 0 and kappa >= 0, got {dt}, {kappa}")
        if isinstance(temperature, int | float) and not temperature > 0:
            raise ValueError(f"temperature must be positive (K), got {temperature}")
        if top not in ("free", "fixed"):
            raise ValueError(f"top must be 'free' or 'fixed', got {top!r}")
        if sponge_time is not None and not (sponge_time > 0 and sponge_depth > 0):
            raise ValueError(f"sponge_time and sponge_depth must be positive, got "
                             f"{sponge_time}, {sponge_depth}")  # fmt: skip
        if n_columns < 1 or (mixing_time is not None and not mixing_time > 0):
            raise ValueError(f"need n_columns >= 1 and mixing_time > 0 (or None), got "
                             f"{n_columns}, {mixing_time}")  # fmt: skip
        if not 0 <= envelope <= 1 or not envelope_period > 0:
            raise ValueError(f"envelope must be in [0, 1] and envelope_period > 0, got "
                             f"{envelope}, {envelope_period}")  # fmt: skip
        self.z_bottom, self.z_top, self.dz = float(z_bottom), float(z_top), float(dz)
        self.dt, self.kappa, self.w = float(dt), float(kappa), float(w)
        self.temperature, self.top = jnp.asarray(temperature, dtype), top
        self.sponge_time = None if sponge_time is None else float(sponge_time)
        self.sponge_depth = float(sponge_depth)
        self.n_columns = int(n_columns)
        self.mixing_time = None if mixing_time is None else float(mixing_time)
        self.source_flux = jnp.asarray(source_flux, dtype)
        self.source_width = jnp.asarray(source_width, dtype)
        self.envelope, self.envelope_period = float(envelope), float(envelope_period)
        self.dtype = dtype

    # ---- grid -------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        return round((self.z_top - self.z_bottom) / self.dz)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n_levels,) if self.n_columns == 1 else (self.n_columns, self.n_levels)

    def heights(self) -> np.ndarray:
        """Layer centres (m), as numpy (coordinates)."""
        return self.z_bottom + self.dz * (np.arange(self.n_levels) + 0.5)

    def params(self, t: Float[Array, ""] | float = 0.0) -> dict[str, Array]:
        """What the model passes to its parameterization at time t (module docstring)."""
        z = jnp.asarray(self.heights(), self.dtype)
        rho, n = isothermal_atmosphere(z, self.temperature)
        phase = jnp.arange(self.n_columns, dtype=self.dtype) / self.n_columns
        phase = phase - jnp.asarray(t, self.dtype) / self.envelope_period
        flux = self.source_flux * (1.0 + self.envelope * jnp.cos(2 * jnp.pi * phase))
        return {"z": z, "dz": jnp.full_like(z, self.dz), "rho": rho, "n": n,
                "source_flux": flux if self.n_columns > 1 else flux[0],
                "source_width": self.source_width}  # fmt: skip

    # ---- linear part ------------------------------------------------------------------
    def linear_operator(self) -> tuple[Array, Array, Array]:
        """(lower, diagonal, upper) of L, the tridiagonal diffusion-advection-sponge
        operator of one column with its boundary conditions (ghost cells)."""
        m, dz, dtype = self.n_levels, self.dz, self.dtype
        dif, adv = self.kappa / dz**2, self.w / (2 * dz)
        lower = np.full(m, dif + adv)
        upper = np.full(m, dif - adv)
        diag = np.full(m, -2 * dif)
        diag[0] -= dif + adv  # u_{-1} = −u_0: u = 0 at the bottom boundary
        diag[-1] += (upper[-1]) * (1.0 if self.top == "free" else -1.0)  # u_m = ±u_{m−1}
        lower[0], upper[-1] = 0.0, 0.0
        if self.sponge_time is not None:
            depth = np.clip((self.heights() - (self.z_top - self.sponge_depth)), 0, None)
            diag -= (depth / self.sponge_depth) ** 2 / self.sponge_time
        return tuple(jnp.asarray(a, dtype) for a in (lower, diag, upper))

    def _apply(self, op, u):
        lower, diag, upper = (jnp.broadcast_to(a, u.shape) for a in op)
        below = jnp.concatenate([jnp.zeros_like(u[..., :1]), u[..., :-1]], axis=-1)
        above = jnp.concatenate([u[..., 1:], jnp.zeros_like(u[..., :1])], axis=-1)
        return lower * below + diag * u + upper * above

    def _solve(self, op, rhs):
        """(I − dt/2 L)⁻¹ rhs for rhs (..., level)."""
        lower, diag, upper = op
        h = 0.5 * self.dt
        b = rhs.reshape(-1, rhs.shape[-1]).T  # (level, columns)
        x = jax.lax.linalg.tridiagonal_solve(-h * lower, 1 - h * diag, -h * upper, b)
        return x.T.reshape(rhs.shape)

    # ---- stepping ---------------------------------------------------------------------
    def _check(self, state, parameterization) -> None:
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise ValueError(f"a QBO state is a pair (u, t), got {type(state).__name__}")
        if jnp.shape(state[0]) != self.state_shape or jnp.ndim(state[1]) != 0:
            raise ValueError(f"u should have shape {self.state_shape} and t be a scalar, got "
                             f"{jnp.shape(state[0])}, {jnp.shape(state[1])}")  # fmt: skip
        if parameterization is None:
            raise ValueError("the QBO model needs a wave forcing (a parameterization)")
        check_tendencies(parameterization, jnp.asarray(state[0], self.dtype), self.params(0.0))

    def tendency(self, u: Array, t: Array, parameterization: Parameterization) -> Array:
        """The explicit part E: the drag, and the relaxation to the ring mean."""
        out = parameterization(u, self.params(t))
        if self.mixing_time is not None and u.ndim == 2:
            out = out - (u - jnp.mean(u, axis=0, keepdims=True)) / self.mixing_time
        return out

    def step(self, state: QBOState, parameterization: Parameterization) -> QBOState:
        """One IMEX trapezoidal step of length dt (module docstring)."""
        self._check(state, parameterization)
        u, t = state
        op = self.linear_operator()
        h = 0.5 * self.dt
        explicit = u + h * self._apply(op, u)
        e0 = self.tendency(u, t, parameterization)
        guess = self._solve(op, explicit + self.dt * e0)
        e1 = self.tendency(guess, t + self.dt, parameterization)
        u_new = self._solve(op, explicit + h * (e0 + e1))
        return u_new.astype(u.dtype), (t + self.dt).astype(t.dtype)

    def initial_state(self, amplitude: float | Array = 14.0) -> QBOState:
        """A parabola of `amplitude` m/s vanishing at both boundaries (qbo1d's start), on
        every column, at t = 0."""
        z = jnp.asarray(self.heights(), self.dtype)
        s = (z - self.z_bottom) / (self.z_top - self.z_bottom)
        u = 4 * amplitude * s * (1 - s)
        return jnp.broadcast_to(u, self.state_shape).astype(self.dtype), jnp.zeros((), self.dtype)

    def integrate(
        self,
        state0: QBOState,
        n_steps: int,
        parameterization: Parameterization,
        *,
        save_every: int = 1,
    ) -> QBOState:
        """(u, t) after 0, s, 2s, ..., n_steps steps (time axis first), by `lax.scan`. No
        stability watch: `surrogate.coupling.rollout(qbo.step, ...)` adds one."""
        state0 = (jnp.asarray(state0[0], self.dtype), jnp.asarray(state0[1], self.dtype))
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

        _, saved = jax.lax.scan(chunk, state0, None, length=n_steps // save_every)
        return tuple(jnp.concatenate([a[None], b]) for a, b in zip(state0, saved, strict=True))


# ---- diagnostics --------------------------------------------------------------------------


def zero_crossings(series: Float[Array, " time"], times: Float[Array, " time"]) -> np.ndarray:
    """Times (linearly interpolated) at which `series` changes sign (numpy, at the edge)."""
    u, t = np.asarray(series, np.float64), np.asarray(times, np.float64)
    i = np.nonzero(np.sign(u[1:]) * np.sign(u[:-1]) < 0)[0]
    return t[i] - u[i] * (t[i + 1] - t[i]) / (u[i + 1] - u[i])


def qbo_period(series: Float[Array, " time"], times: Float[Array, " time"]) -> float:
    """Mean period (in the unit of `times`) of a wind series at one height: twice the mean
    interval between successive sign changes (an east and a west phase per cycle), NaN
    with fewer than three sign changes."""
    crossings = zero_crossings(series, times)
    if crossings.size < 3:
        return float("nan")
    return float(2 * np.mean(np.diff(crossings)))


def qbo_amplitude(series: Float[Array, " time"]) -> float:
    """The standard deviation of the wind series (m/s), qbo1d's QBO amplitude."""
    return float(np.std(np.asarray(series, np.float64)))


def at_height(u: Float[Array, "time level"], z: np.ndarray, height: float) -> np.ndarray:
    """u(t) at `height` (m), linearly interpolated between layer centres."""
    z = np.asarray(z, np.float64)
    if not z[0] <= height <= z[-1]:
        raise ValueError(f"height {height} m is outside the layer centres {z[0]}..{z[-1]} m")
    k = min(int(np.searchsorted(z, height, side="right")) - 1, len(z) - 2)
    w = (height - z[k]) / (z[k + 1] - z[k])
    u = np.asarray(u, np.float64)
    return (1 - w) * u[:, k] + w * u[:, k + 1]
