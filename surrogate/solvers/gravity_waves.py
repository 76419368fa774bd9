"""Non-orographic gravity-wave drag: a spectral scheme after Alexander & Dunkerton (1999).

Alexander, M. J. and T. J. Dunkerton (1999), "A spectral parameterization of mean-flow
forcing due to breaking gravity waves", J. Atmos. Sci. 56, 4167-4182 (AD99).

Grid: a column of `level` layers (centres z_k, thicknesses dz_k, bottom first) and the
`level + 1` interfaces between them; waves are launched at the bottom interface. Profiles
u (m/s), N (1/s) and ρ (kg/m³) are given at the layer centres.

**Source** (AD99 eq. 17): a spectrum of phase speeds c_i with launched momentum fluxes

    B(c) = B_m sgn(c − c₀) exp[−ln 2 ((c − c₀)/c_w)²],

c₀ the launch-level wind (or zero, or any centre), c_w the half width at half maximum,
B_m set so that Σ|B(c_i)| is the total launched flux (Pa). Waves faster than c₀ carry
eastward (positive) flux, slower ones westward.

**Propagation**: each wave keeps its flux ρ u'w' (no dissipation) upward until the first
layer where it breaks, and deposits ALL of it there (AD99's assumption, unlike
Lindzen's saturation that keeps the wave at its saturated amplitude: breaking is followed
by complete dissipation). A wave breaks where its flux reaches the saturation flux of a
hydrostatic, non-rotating wave of horizontal wavenumber k (AD99's breaking condition,
their intermittency factor folded into B_m; derived below):

    F_sat = ρ k ĉ³ / (2N),   ĉ = s (c − u),  s = sgn(c − c₀) its direction at launch.

Derivation: continuity k u' + m w' = 0 and the hydrostatic dispersion relation
m = N/|ĉ| give ρ⟨u'w'⟩ = ρ |u'|² k/(2m) = ρ |u'|² k |ĉ|/(2N) for a wave of amplitude |u'|;
the wave overturns (convective instability) when |u'| reaches |ĉ|, so its flux can be at
most ρ k |ĉ|³/(2N). A critical level (u − c changes sign, ĉ ≤ 0) makes F_sat = 0: the
wave is absorbed there, which is the same criterion.

**Drag**: F(z) = Σ_i F_i(z) at the interfaces, and per layer

    drag_k = −(1/ρ_k) (F_{k+½} − F_{k−½}) / dz_k      (m s⁻²),

so Σ_k ρ_k dz_k drag_k = F_launch − F_top exactly (the sum telescopes): the column takes
all the momentum launched, except what leaves through the top.

**Smooth switch**: with `smoothness = δ > 0` the hard test |F_i| < F_sat is replaced by a
survival fraction σ((F_sat/|F_i| − 1)/δ) per layer (σ the logistic function), so the
fluxes are differentiable in u, N, ρ and the source; the flux is still deposited where it
is lost, so the conservation above holds for every δ. δ = 0 is AD99's switch.

**Oblique propagation across a ring of columns** (`ring_gravity_wave_drag`): a
hydrostatic, non-rotating wave moves horizontally, relative to the ground, at its phase
speed c (c_gx = u + ∂ω̂/∂k = u + ĉ = c) and vertically at c_gz = k ĉ²/N, so its ray climbs
with slope dx/dz = c N / (k ĉ²). Launched at one column, a wave deposits its flux at the
columns its ray reaches; the wind it sees is interpolated at its position.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..coupling import AbstractParameterization

G = 9.80665  # m/s²
RD = 287.04  # J/kg/K
CP = 1004.64  # J/kg/K
P_REF = 101325.0  # Pa, surface pressure of the isothermal reference atmosphere


def isothermal_atmosphere(
    z: Float[Array, " level"], temperature: float | Array = 204.0
) -> tuple[Float[Array, " level"], Float[Array, " level"]]:
    """(ρ kg/m³, N 1/s) of an isothermal atmosphere at heights z (m): ρ = p₀/(R T)
    exp(−z/H) with H = R T/g, and N² = g²/(c_p T)."""
    t = jnp.asarray(temperature, jnp.result_type(z))
    rho = P_REF / (RD * t) * jnp.exp(-z * G / (RD * t))
    return rho, jnp.full_like(z, G / jnp.sqrt(CP * t))


def phase_speeds(c_max: float = 100.0, n_waves: int = 40, dtype=jnp.float32) -> Array:
    """`n_waves` phase speeds (m/s) spaced evenly in [−c_max, c_max], symmetric about 0
    and never 0 itself when `n_waves` is even (a wave at c₀ carries no flux anyway)."""
    if n_waves < 2 or not c_max > 0:
        raise ValueError(f"need n_waves >= 2 and c_max > 0, got {n_waves}, {c_max}")
    dc = 2 * c_max / n_waves
    return (-c_max + dc * (jnp.arange(n_waves) + 0.5)).astype(dtype)


def source_spectrum(
    c: Float[Array, " wave"],
    *,
    flux: Float[Array, ""] | float,
    width: Float[Array, ""] | float,
    centre: Float[Array, ""] | float = 0.0,
) -> Float[Array, " wave"]:
    """Launched flux of each wave (Pa), AD99 eq. 17: B_m sgn(c − c₀) exp[−ln2 ((c − c₀)/c_w)²]
    with `centre` c₀ and half width `width` c_w, scaled so that Σ|B| = `flux`."""
    shape = jnp.exp(-math.log(2.0) * ((c - centre) / width) ** 2)
    tiny = jnp.finfo(shape.dtype).tiny
    return flux * jnp.sign(c - centre) * shape / jnp.maximum(jnp.sum(shape), tiny)


def saturation_flux(u, n, rho, c, direction, wavenumber):
    """F_sat = ρ k [s (c − u)]₊³ / (2N) (Pa, module docstring), broadcast over waves."""
    intrinsic = jnp.maximum(direction * (c - u), 0.0)
    return rho * wavenumber * intrinsic**3 / (2.0 * n)


def _survival(flux0, f_sat, smoothness):
    """Fraction of a wave's flux that passes a layer: 1 below saturation, 0 above."""
    ratio = f_sat / jnp.maximum(jnp.abs(flux0), jnp.finfo(f_sat.dtype).tiny)
    if smoothness == 0:
        return (ratio > 1.0).astype(f_sat.dtype)
    return jax.nn.sigmoid((ratio - 1.0) / smoothness)


def _check_profiles(u, n, rho, dz) -> None:
    shapes = [jnp.shape(a) for a in (u, n, rho, dz)]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1 or shapes[0][0] < 1:
        raise ValueError(f"u, N, rho and dz should be 1-D over the same levels, got {shapes}")


def wave_fluxes(
    u: Float[Array, " level"],
    n: Float[Array, " level"],
    rho: Float[Array, " level"],
    c: Float[Array, " wave"],
    flux0: Float[Array, " wave"],
    *,
    wavenumber: float,
    smoothness: float = 0.0,
) -> Float[Array, "wave interface"]:
    """Momentum flux (Pa) of each wave at the `level + 1` interfaces, bottom first: the
    launched `flux0` up to the layer where it breaks, zero above (module docstring)."""
    direction = jnp.sign(flux0)[:, None]
    f_sat = saturation_flux(u[None, :], n[None, :], rho[None, :], c[:, None], direction,
                            wavenumber)  # fmt: skip
    passed = jnp.cumprod(_survival(flux0[:, None], f_sat, smoothness), axis=1)
    ones = jnp.ones_like(passed[:, :1])
    return flux0[:, None] * jnp.concatenate([ones, passed], axis=1)


def flux_drag(
    flux: Float[Array, "... interface"], rho: Float[Array, " level"], dz: Float[Array, " level"]
) -> Float[Array, "... level"]:
    """drag_k = −(F_{k+½} − F_{k−½}) / (ρ_k dz_k) in m s⁻² from interface fluxes (Pa)."""
    mass = jnp.broadcast_to(rho * dz, flux[..., 1:].shape)
    return -(flux[..., 1:] - flux[..., :-1]) / mass


def gravity_wave_fluxes(
    u: Float[Array, " level"],
    n: Float[Array, " level"],
    rho: Float[Array, " level"],
    dz: Float[Array, " level"],
    *,
    flux: Float[Array, ""] | float,
    width: Float[Array, ""] | float,
    c: Float[Array, " wave"],
    wavenumber: float,
    centre: str | float = "launch",
    smoothness: float = 0.0,
) -> tuple[Float[Array, " interface"], Float[Array, " interface"]]:
    """(eastward, westward) momentum flux (Pa) at the interfaces of one column: the sums of
    the waves launched with positive and with negative flux. `centre` is "launch" (c₀ =
    u at the lowest level), or a phase speed in m/s (0.0 for a spectrum centred on zero)."""
    _check_profiles(u, n, rho, dz)
    c0 = u[0] if centre == "launch" else jnp.asarray(centre, u.dtype)
    f0 = source_spectrum(c.astype(u.dtype), flux=flux, width=width, centre=c0)
    per_wave = wave_fluxes(u, n, rho, c.astype(u.dtype), f0, wavenumber=wavenumber,
                           smoothness=smoothness)  # fmt: skip
    east = (f0 > 0)[:, None]
    return jnp.sum(jnp.where(east, per_wave, 0.0), 0), jnp.sum(jnp.where(east, 0.0, per_wave), 0)


def gravity_wave_drag(
    u: Float[Array, " level"],
    n: Float[Array, " level"],
    rho: Float[Array, " level"],
    dz: Float[Array, " level"],
    **kwargs: Any,
) -> Float[Array, " level"]:
    """AD99 drag (m s⁻²) of one column; keyword arguments as `gravity_wave_fluxes`."""
    east, west = gravity_wave_fluxes(u, n, rho, dz, **kwargs)
    return flux_drag(east + west, rho, dz)


# ---- oblique propagation on a ring of columns -------------------------------------------


def _periodic_weights(x, n_columns):
    """Columns (left, right) around position x (in columns, periodic) and their linear
    interpolation weights (which sum to one)."""
    left = jnp.floor(x)
    frac = x - left
    i = jnp.mod(left.astype(jnp.int32), n_columns)
    return i, jnp.mod(i + 1, n_columns), 1.0 - frac, frac


def ring_gravity_wave_fluxes(
    u: Float[Array, "column level"],
    n: Float[Array, " level"],
    rho: Float[Array, " level"],
    dz: Float[Array, " level"],
    *,
    flux: Float[Array, " column"],
    width: Float[Array, ""] | float,
    c: Float[Array, " wave"],
    wavenumber: float,
    spacing: float,
    max_slope: float = 200.0,
    centre: str | float = "launch",
    smoothness: float = 0.0,
) -> tuple[Float[Array, "column level"], Float[Array, "2 column interface"]]:
    """AD99 on a periodic ring of columns `spacing` metres apart, with oblique rays.

    Every column launches its own spectrum (`flux` per column, shared `width`, centred on
    its own launch wind); each wave climbs layer by layer along its ray (slope
    dx/dz = c N/(k ĉ²), capped smoothly at `max_slope`: dx/dz · max/(max + |dx/dz|)), sees
    the wind linearly interpolated at its position, and deposits the flux it loses in a
    layer at the columns around its mid-layer position (linear weights). Returns the
    drag (column, level) in m s⁻² and the (eastward, westward) vertical flux at the
    interfaces of each column (the waves that are there, wherever they came from).
    The ring's total Σ_j Σ_k ρ dz drag equals the launched minus the escaping flux
    exactly; a single column's budget holds only for `spacing` → ∞ (waves stay home).
    """
    if u.ndim != 2 or jnp.shape(flux) != u.shape[:1]:
        raise ValueError(
            f"u should be (column, level) and flux (column,), got {u.shape}, {jnp.shape(flux)}"
        )
    _check_profiles(u[0], n, rho, dz)
    concrete = all(isinstance(v, int | float) for v in (spacing, max_slope))
    if concrete and not (spacing > 0 and max_slope > 0):
        raise ValueError(f"spacing and max_slope must be positive, got {spacing}, {max_slope}")
    n_col, n_lev = u.shape
    dtype = u.dtype
    c = c.astype(dtype)
    c0 = u[:, 0] if centre == "launch" else jnp.full((n_col,), centre, dtype)
    f0 = jax.vmap(lambda f, cc: source_spectrum(c, flux=f, width=width, centre=cc))(flux, c0)
    direction = jnp.sign(f0)  # (column, wave)
    east = f0 > 0
    x0 = jnp.broadcast_to(jnp.arange(n_col, dtype=dtype)[:, None], f0.shape)

    def spread(values, x):
        """Sum of `values` (column, wave) placed at positions x: (2, column) east/west."""
        left, right, wl, wr = _periodic_weights(x, n_col)
        out = []
        for mask in (east, ~east):
            v = jnp.where(mask, values, 0.0)
            acc = jnp.zeros((n_col,), dtype).at[left.ravel()].add((wl * v).ravel())
            out.append(acc.at[right.ravel()].add((wr * v).ravel()))
        return jnp.stack(out)

    def layer(carry, inputs):
        x, f = carry
        nk, rk, dzk, k = inputs
        left, right, wl, wr = _periodic_weights(x, n_col)
        uk = wl * u[left, k] + wr * u[right, k]
        f_sat = saturation_flux(uk, nk, rk, c[None, :], direction, wavenumber)
        f_new = f * _survival(f0, f_sat, smoothness)
        slope = c[None, :] * nk / (wavenumber * ((c[None, :] - uk) ** 2 + 1e-6))
        slope = slope * max_slope / (max_slope + jnp.abs(slope))
        step = slope * dzk / spacing
        deposit = spread(f - f_new, x + 0.5 * step).sum(0)
        x_new = x + step
        return (x_new, f_new), (deposit / (rk * dzk), spread(f_new, x_new))

    levels = jnp.arange(n_lev)
    (_, _), (drag, fluxes) = jax.lax.scan(layer, (x0, f0), (n, rho, dz, levels))
    launched = spread(f0, x0)[:, :, None]
    return drag.T, jnp.concatenate([launched, jnp.moveaxis(fluxes, 0, -1)], axis=-1)


class AD99(AbstractParameterization):
    """The AD99 scheme as a `surrogate.coupling` parameterization of a column or a ring.

    Called as `(u, params)`: u is (level,) or (column, level); `params` holds "n", "rho",
    "dz" (level,), the launched total flux "source_flux" (Pa: a scalar, or per column) and
    the half width "source_width" (m/s). Returns the drag in m s⁻². `spacing = None`
    treats columns independently (vertical rays); a spacing in metres propagates
    obliquely on the ring (`ring_gravity_wave_fluxes`).
    """

    c_max: float = 100.0
    n_waves: int = 40
    wavenumber: float = 2 * math.pi / 300e3
    centre: str | float = "launch"
    smoothness: float = 0.0
    spacing: float | None = None
    max_slope: float = 200.0

    def speeds(self, dtype=jnp.float32) -> Array:
        return phase_speeds(self.c_max, self.n_waves, dtype)

    def _kwargs(self, u, params):
        return dict(width=params["source_width"], c=self.speeds(u.dtype),
                    wavenumber=self.wavenumber, centre=self.centre,
                    smoothness=self.smoothness)  # fmt: skip

    def drag_and_fluxes(self, u: Array, params: dict) -> tuple[Array, tuple[Array, Array]]:
        """The drag (m s⁻², shaped like u) and the (eastward, westward) interface fluxes
        (Pa, one more level)."""
        n, rho, dz = params["n"], params["rho"], params["dz"]
        kw = self._kwargs(u, params)
        if u.ndim == 1:
            east, west = gravity_wave_fluxes(u, n, rho, dz, flux=params["source_flux"], **kw)
            return flux_drag(east + west, rho, dz), (east, west)
        flux = jnp.broadcast_to(params["source_flux"], u.shape[:1])
        if self.spacing is None:
            east, west = jax.vmap(lambda v, f: gravity_wave_fluxes(v, n, rho, dz, flux=f, **kw))(
                u, flux
            )
            return flux_drag(east + west, rho, dz), (east, west)
        drag, f = ring_gravity_wave_fluxes(u, n, rho, dz, flux=flux, spacing=self.spacing,
                                           max_slope=self.max_slope, **kw)  # fmt: skip
        return drag, (f[0], f[1])

    def fluxes(self, u: Array, params: dict) -> tuple[Array, Array]:
        """(eastward, westward) interface fluxes (Pa), shaped like u with one more level."""
        return self.drag_and_fluxes(u, params)[1]

    def __call__(self, u: Array, params: Any = None) -> Array:
        return self.drag_and_fluxes(u, params)[0].astype(u.dtype)
