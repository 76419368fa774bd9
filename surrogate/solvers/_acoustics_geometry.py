"""Rooms for the acoustic solver: air masks on a cell grid, wall absorption, the source.

A room is a boolean mask on a uniform grid of cubic cells of side `spacing` (True = air),
covering [0, n_0·h] × [0, n_1·h] (× [0, n_2·h]); cell i has its centre at (i + 1/2)·h.
Walls are the faces between an air cell and a solid cell or the edge of the grid.

Wall absorption is a frequency-independent normal-incidence absorption coefficient α, one
for all walls or one per wall orientation (the 2d directions of the outward normal).
A locally reacting wall of specific impedance Z = ρcζ reflects a normally incident plane
wave with R = (ζ − 1)/(ζ + 1) (Kuttruff, *Room Acoustics*, 6th ed., ch. 2), so from
R = sqrt(1 − α):  ζ = (1 + R)/(1 − R).  α = 0 is a rigid wall (ζ = ∞), α = 1 a wall
matched to air at normal incidence (ζ = 1).

The source is the Gaussian pressure pulse p0 = A·exp(−|x − x0|²/σ²) at rest. Its spatial
spectrum is ∝ exp(−k²σ²/4); with σ = 2c/(π f_max) (`pulse_width`) the spectrum at
k = 2π f_max / c has fallen to e^{−4} ≈ 1.8 % (−35 dB) of its peak, so the pulse carries
frequencies up to about f_max. This is the choice of the seed study's solvers
(Borrel-Jensen et al. 2024, PNAS 121, e2312159120: σ = c/(π f_max/2) ≈ 0.22 m at 1 kHz).
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float


class Room(eqx.Module):
    """An air mask on a uniform grid, its walls' absorption and an optional absorbing layer.

    `mask`: boolean array of 2 or 3 dimensions, True where the cell is air.
    `spacing`: cell side h in metres. `absorption`: normal-incidence absorption coefficient
    α ∈ [0, 1] (0 = rigid) of every wall, or per orientation as d pairs
    ((α_x−, α_x+), (α_y−, α_y+), ...): a wall whose normal pointing out of the air is +x
    (the x = L_x wall of a box, the −x side of an obstacle) takes α_x+.
    `pml_width`: cells of perfectly matched layer along the edges of the grid (0 = none),
    which turns the edge of the grid into an absorbing boundary for free-field runs; the
    layer is part of the grid (keep its cells air and the room of interest inside it).
    """

    mask: Bool[Array, " *grid"]
    spacing: float = eqx.field(static=True)
    absorption: tuple[tuple[float, float], ...] = eqx.field(static=True)
    pml_width: int = eqx.field(static=True)

    def __init__(
        self,
        mask: ArrayLike,
        spacing: float,
        *,
        absorption: float | tuple[tuple[float, float], ...] = 0.0,
        pml_width: int = 0,
    ):
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"room mask must be boolean (True = air), got dtype {mask.dtype}")
        if mask.ndim not in (2, 3):
            raise ValueError(f"room mask must be 2-D or 3-D, got shape {mask.shape}")
        if min(mask.shape) < 2:
            raise ValueError(f"room mask needs at least 2 cells per axis, got {mask.shape}")
        if not np.asarray(mask).any():
            raise ValueError(f"room mask of shape {mask.shape} has no air cell (all False)")
        if not (math.isfinite(spacing) and spacing > 0):
            raise ValueError(f"grid spacing must be a positive length in metres, got {spacing}")
        absorption = _absorption_table(absorption, mask.ndim)
        if not 0 <= pml_width < min(mask.shape) // 2:
            raise ValueError(
                f"pml_width must be in [0, {min(mask.shape) // 2}) cells for "
                f"a grid of shape {mask.shape}, got {pml_width}"
            )
        self.mask = mask
        self.spacing = float(spacing)
        self.absorption = absorption
        self.pml_width = int(pml_width)

    @property
    def ndim(self) -> int:
        return self.mask.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def extent(self) -> tuple[float, ...]:
        """Side lengths of the grid in metres."""
        return tuple(n * self.spacing for n in self.mask.shape)

    def reflection(self, axis: int, side: int) -> float:
        """Normal-incidence pressure reflection coefficient R = sqrt(1 − α) of the walls
        whose outward normal is −axis (`side` 0) or +axis (`side` 1)."""
        return math.sqrt(1.0 - self.absorption[axis][side])

    def impedance(self, rho: float, c: float, axis: int = 0, side: int = 1) -> float:
        """Specific wall impedance Z = ρc(1 + R)/(1 − R) in Pa·s/m (inf when rigid)."""
        r = self.reflection(axis, side)
        return math.inf if r == 1.0 else rho * c * (1.0 + r) / (1.0 - r)

    def coords(self, dtype=jnp.float32) -> tuple[Float[Array, " n"], ...]:
        """Cell-centre coordinates along each axis, in metres."""
        return tuple(jnp.asarray(x, dtype) for x in _centres(self.shape, self.spacing))

    def grid_coords(self, dtype=jnp.float32) -> Float[Array, " *grid d"]:
        """Cell-centre positions, shape (*grid, d)."""
        grids = np.meshgrid(*_centres(self.shape, self.spacing), indexing="ij")
        return jnp.asarray(np.stack(grids, axis=-1), dtype)


# Geometry is static: masks and distances are computed with numpy, off the traced path.
def _centres(shape: tuple[int, ...], spacing: float) -> list[np.ndarray]:
    return [(np.arange(n) + 0.5) * spacing for n in shape]


def _absorption_table(absorption, ndim: int) -> tuple[tuple[float, float], ...]:
    if isinstance(absorption, int | float):
        table = ((float(absorption),) * 2,) * ndim
    else:
        try:
            table = tuple((float(lo), float(hi)) for lo, hi in absorption)
        except (TypeError, ValueError):
            table = ()
        if len(table) != ndim:
            raise ValueError(
                f"absorption must be one number or {ndim} pairs (−, +) per axis, got {absorption!r}"
            )
    if not all(0.0 <= a <= 1.0 for pair in table for a in pair):
        raise ValueError(f"absorption coefficients must lie in [0, 1], got {absorption!r}")
    return table


def _cells(size: tuple[float, ...], spacing: float, ndim: int) -> tuple[int, ...]:
    if len(size) != ndim:
        raise ValueError(f"expected {ndim} side lengths, got {len(size)}: {size}")
    if not spacing > 0:
        raise ValueError(f"grid spacing must be positive, got {spacing}")
    shape = tuple(round(s / spacing) for s in size)
    if min(shape) < 2:
        raise ValueError(f"room of size {size} m has fewer than 2 cells of {spacing} m per axis")
    return shape


def _inside(shape: tuple[int, ...], spacing: float, lo, hi) -> np.ndarray:
    """Cells whose centre lies in the box [lo, hi]."""
    inside = np.ones(shape, dtype=bool)
    for x, a, b in zip(np.meshgrid(*_centres(shape, spacing), indexing="ij"), lo, hi, strict=True):
        inside &= (x >= a) & (x <= b)
    return inside


def rectangle_mask(size: tuple[float, float], spacing: float) -> Bool[Array, " nx ny"]:
    """A rectangular 2-D room of `size` = (Lx, Ly) metres: round(L/h) cells per axis."""
    return jnp.ones(_cells(size, spacing, 2), dtype=jnp.bool_)


def shoebox_mask(size: tuple[float, float, float], spacing: float) -> Bool[Array, " nx ny nz"]:
    """A 3-D shoebox room of `size` = (Lx, Ly, Lz) metres."""
    return jnp.ones(_cells(size, spacing, 3), dtype=jnp.bool_)


def l_shape_mask(
    size: tuple[float, float], cutout: tuple[float, float], spacing: float
) -> Bool[Array, " nx ny"]:
    """A 2-D L-shaped room: the rectangle `size` without its (x high, y high) corner of
    `cutout` = (cx, cy) metres."""
    shape = _cells(size, spacing, 2)
    if not all(0 < c < s for c, s in zip(cutout, size, strict=True)):
        raise ValueError(f"cutout {cutout} must be smaller than the room {size} on each axis")
    lo = tuple(s - c for s, c in zip(size, cutout, strict=True))
    return jnp.asarray(~_inside(shape, spacing, lo, size))


def obstacle_mask(
    size: tuple[float, ...],
    obstacle_lo: tuple[float, ...],
    obstacle_hi: tuple[float, ...],
    spacing: float,
) -> Bool[Array, " *grid"]:
    """A box room (2-D or 3-D) with a solid box obstacle [obstacle_lo, obstacle_hi] inside."""
    shape = _cells(size, spacing, len(size))
    if len(obstacle_lo) != len(size) or len(obstacle_hi) != len(size):
        raise ValueError(
            f"obstacle corners need {len(size)} coordinates, got {obstacle_lo} and {obstacle_hi}"
        )
    if not all(0 <= a < b <= s for a, b, s in zip(obstacle_lo, obstacle_hi, size, strict=True)):
        raise ValueError(
            f"obstacle [{obstacle_lo}, {obstacle_hi}] must be a non-empty box "
            f"inside the room {size}"
        )
    solid = _inside(shape, spacing, obstacle_lo, obstacle_hi)
    if not solid.any():
        raise ValueError(
            f"obstacle [{obstacle_lo}, {obstacle_hi}] covers no cell centre at spacing {spacing}"
        )
    return jnp.asarray(~solid)


def pulse_width(f_max: float, c: float = 343.0) -> float:
    """σ = 2c/(π f_max): the pulse's spectrum at f_max is e^{−4} of its peak (module doc)."""
    if not f_max > 0:
        raise ValueError(f"f_max must be a positive frequency in Hz, got {f_max}")
    return 2.0 * c / (math.pi * f_max)


@jax.jit
def gaussian_pulse(
    grid_coords: Float[Array, " *grid d"],
    x0: Float[Array, " d"],
    amplitude: float | Array = 1.0,
    sigma: float | Array = 0.2,
) -> Float[Array, " *grid"]:
    """p0 = A·exp(−|x − x0|²/σ²) in pascals for an amplitude A in pascals.

    `x0` may be traced: a dataset over source positions is one `jax.vmap` over x0.
    """
    x0 = jnp.asarray(x0, dtype=grid_coords.dtype)
    if x0.shape != grid_coords.shape[-1:]:
        raise ValueError(
            f"source position must have shape ({grid_coords.shape[-1]},) to "
            f"match the grid, got {x0.shape}"
        )
    r2 = jnp.sum((grid_coords - x0.reshape((1,) * (grid_coords.ndim - 1) + x0.shape)) ** 2, axis=-1)
    return (amplitude * jnp.exp(-r2 / jnp.asarray(sigma, grid_coords.dtype) ** 2)).astype(
        grid_coords.dtype
    )


def wall_distance(room: Room, x: ArrayLike) -> float:
    """Distance in metres from the point `x` (concrete, shape (d,)) to the nearest wall
    (solid cell or edge of the grid); negative inside a solid cell, where it is minus the
    distance to the nearest air cell."""
    x = np.asarray(x, dtype=np.float64)
    mask = np.asarray(room.mask)
    centres = np.stack(np.meshgrid(*_centres(room.shape, room.spacing), indexing="ij"), -1)
    # distance from x to each cell's box: |max(|x − centre| − h/2, 0)|
    gap = np.maximum(np.abs(x - centres) - room.spacing / 2, 0.0)
    to_box = np.sqrt(np.sum(gap**2, axis=-1))
    to_edge = np.min(np.minimum(x, np.asarray(room.extent) - x))
    to_solid = np.min(np.where(mask, np.inf, to_box))
    if to_solid == 0.0:
        return -float(np.min(np.where(mask, to_box, np.inf)))
    return float(min(to_solid, to_edge))


def check_position(
    room: Room, x: ArrayLike, *, margin: float, what: str = "source"
) -> Float[Array, " ... d"]:
    """Refuse positions outside the grid, inside a solid cell or closer than `margin`
    metres to a wall. `x` has shape (d,) or (n, d); returns it as an array.

    A Gaussian source should keep a margin of about 2σ, where its tail is e^{−4} of the
    peak, so that it starts at rest and clear of the walls.
    """
    x = np.asarray(x, dtype=np.float64)
    d = room.ndim
    if x.ndim not in (1, 2) or x.shape[-1] != d:
        raise ValueError(
            f"{what} position(s) must have shape ({d},) or (n, {d}) for a {d}-D room, got {x.shape}"
        )
    points = x.reshape(-1, d)
    for i, point in enumerate(points):
        label = f"{what} {i} at {[round(float(v), 4) for v in point]} m"
        if np.any(point < 0) or np.any(point > np.asarray(room.extent)):
            raise ValueError(f"{label} lies outside the room's grid [0, {room.extent}] m")
        dist = wall_distance(room, point)
        if dist <= 0:
            raise ValueError(f"{label} lies inside a wall or obstacle (solid cell)")
        if dist < margin:
            raise ValueError(
                f"{label} is {dist:.4f} m from the nearest wall, closer than the margin {margin} m"
            )
    return jnp.asarray(x)


def multilinear_weights(
    shape: tuple[int, ...], spacing: float, points: Float[Array, " n d"]
) -> tuple[list, list]:
    """Cell indices and weights of multilinear interpolation between cell centres.

    Points between the outermost centre and the edge of the grid are held at that centre's
    value (clamped). Returns 2^d lists of index tuples and weights, each entry (n,).
    """
    f = points / spacing - 0.5
    lo, frac = [], []
    for a, n in enumerate(shape):
        i0 = jnp.clip(jnp.floor(f[:, a]), 0, n - 2)
        lo.append(i0.astype(jnp.int32))
        frac.append(jnp.clip(f[:, a] - i0, 0.0, 1.0))
    indices, weights = [], []
    for corner in itertools.product((0, 1), repeat=len(shape)):
        indices.append(tuple(i + k for i, k in zip(lo, corner, strict=True)))
        w = jnp.ones_like(frac[0])
        for t, k in zip(frac, corner, strict=True):
            w = w * (t if k else 1.0 - t)
        weights.append(w)
    return indices, weights
