"""Staggered-grid (Yee-type) operators of linear acoustics on a masked grid.

Pressure lives at cell centres, the velocity component along axis a on the faces normal
to a: for a grid of n_a cells there are n_a + 1 faces, face i between cells i − 1 and i
(faces 0 and n_a are the edges of the grid). Cells outside the air mask hold p = 0.

The discrete gradient G maps cell values to faces,
    (Gp)_i = [a_i (p_i − p_{i−1}) + b_i (p_{i+1} − p_{i−2})] / h,
with (a, b) = (1, 0) (second order) or (9/8, −1/24) (fourth order, on faces whose four
cells are air; elsewhere the stencil falls back to second order). The divergence is its
negative transpose, D = −Gᵀ, so that Σ_cells p·Dv = −Σ_faces v·Gp (summation by parts):
this is what makes leapfrog conserve the discrete energy (`acoustic_energy`) exactly in a
rigid room, whatever the mask (the summation-by-parts energy method of Gustafsson, Kreiss &
Oliger, *Time-Dependent Problems and Difference Methods*, 2nd ed.).

Faces are interior (both cells air), walls (one cell air) or dead (no air). On a wall face
a locally reacting impedance Z = ρcζ gives, with a ghost pressure p_g outside and the wall
pressure (p_a + p_g)/2 = Z·(u^{n+1/2} + u^{n−1/2})/2 (Botteldooren 1995, JASA 98(6)
3302; u outward normal velocity), the update
    (1 + λ) v^{n+1/2} = (1 − λ) v^{n−1/2} − (2Δt/ρ)(Gp)^n,    λ = ζ cΔt/h,
which takes energy out at the rate Z ū² per unit wall area, ū the time average of u:
    E^{n+1} = E^n − Δt h^{d−1} Z Σ_walls u^{n+1/2} (u^{n+3/2} + 2u^{n+1/2} + u^{n−1/2}) / 4,
exactly, for the energy of `acoustic_energy` (wall faces count as half cells).

The coefficients follow from the static geometry alone; they are built once with numpy
when a solver is made (no compilation per grid shape), and only the operators are traced.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

# fourth-order staggered first derivative (Fornberg 1988, Math. Comp. 51, 699)
NEAR4, FAR4 = 9.0 / 8.0, -1.0 / 24.0
# PML: quadratic damping profile; a normally incident wave loses this many nepers on its
# way through the layer and back (e^{−8} ≈ 3e-4 in amplitude; measured, a 2-D pulse of
# σ = 8h sends back less than 2e-4 of its amplitude from a 12-cell layer)
PML_DECAY = 8.0


def _shift_pad(x: Array, axis: int, before: int, after: int, value=0) -> Array:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (before, after)
    return (np.pad if isinstance(x, np.ndarray) else jnp.pad)(x, pad, constant_values=value)


def _slice(x: Array, axis: int, start: int, stop: int) -> Array:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def face_kinds(mask: Bool[Array, " *grid"], axis: int) -> tuple[Array, Array, Array, Array]:
    """(interior, air_low, air_high, wide) flags of the faces normal to `axis`: air on both
    sides, walls with air only below or only above, and interior faces with four air cells
    around them, which take the fourth-order stencil."""
    n = mask.shape[axis]
    m1 = _shift_pad(mask, axis, 1, 1, False)
    low, high = _slice(m1, axis, 0, n + 1), _slice(m1, axis, 1, n + 2)
    m2 = _shift_pad(mask, axis, 2, 2, False)
    interior = low & high
    wide = interior & _slice(m2, axis, 0, n + 1) & _slice(m2, axis, 3, n + 4)
    return interior, low & ~high, high & ~low, wide


def gradient(
    p: Float[Array, " *grid"],
    axis: int,
    h: float,
    near: Array | None = None,
    far: Array | None = None,
) -> Float[Array, " *faces"]:
    """(Gp) on the faces normal to `axis`; `near`/`far` are the stencil weights per face
    (None: second order)."""
    n = p.shape[axis]
    if far is None:
        pp = _shift_pad(p, axis, 1, 1)
        return (_slice(pp, axis, 1, n + 2) - _slice(pp, axis, 0, n + 1)) / h
    pp = _shift_pad(p, axis, 2, 2)
    d1 = _slice(pp, axis, 2, n + 3) - _slice(pp, axis, 1, n + 2)
    d3 = _slice(pp, axis, 3, n + 4) - _slice(pp, axis, 0, n + 1)
    return (near * d1 + far * d3) / h


def divergence_1d(
    v: Float[Array, " *faces"],
    axis: int,
    h: float,
    near: Array | None = None,
    far: Array | None = None,
) -> Float[Array, " *grid"]:
    """−Gᵀv for one axis: (a v)_{i+1} − (a v)_i + (b v)_{i+2} − (b v)_{i−1}, over h."""
    n = v.shape[axis] - 1
    if far is None:
        return (_slice(v, axis, 1, n + 1) - _slice(v, axis, 0, n)) / h
    w = near * v
    y = _shift_pad(far * v, axis, 1, 1)
    return (
        _slice(w, axis, 1, n + 1)
        - _slice(w, axis, 0, n)
        + _slice(y, axis, 3, n + 3)
        - _slice(y, axis, 0, n)
    ) / h


def pml_profile(n: int, width: int, h: float, c: float, faces: bool) -> np.ndarray:
    """PML damping rate σ(x) (1/s) along one axis of n cells, at the n cell centres or the
    n + 1 faces: σ_max ξ² with ξ ∈ [0, 1] the depth into the layer, and σ_max set so that
    a normally incident wave, there and back through the layer, loses PML_DECAY nepers
    (2∫σ/c dx = 2σ_max W h / (3c))."""
    x = np.arange(n + 1.0) if faces else np.arange(n) + 0.5
    if width == 0:
        return np.zeros_like(x)
    xi = np.maximum(np.maximum(width - x, x - (n - width)), 0.0) / width
    return 3.0 * c * PML_DECAY / (2.0 * width * h) * xi**2


def _along(profile: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A 1-D profile shaped to broadcast along `axis` of an ndim-array."""
    shape = [1] * ndim
    shape[axis] = profile.shape[0]
    return profile.reshape(shape)


def _wall_update(
    reflection: float, *, h: float, dt: float, c: float, rho: float
) -> tuple[float, float]:
    """(decay, gain) of the impedance update; (0, 0) keeps a rigid wall at v = 0."""
    if reflection == 1.0:
        return 0.0, 0.0
    lam = c * dt / h * (1 + reflection) / (1 - reflection)
    return (1 - lam) / (1 + lam), 2 * dt / rho / (1 + lam)


def update_coefficients(
    mask: Bool[Array, " *grid"],
    *,
    h: float,
    dt: float,
    c: float,
    rho: float,
    reflections: tuple[tuple[float, float], ...],
    pml_width: int,
    order: int,
    dtype,
):
    """Cell (decay, gain), per axis (shape (d, *grid)) with a PML, and per-face (decay, gain, energy
    weight, near, far) arrays of the update, time-centred:

        p_a^{n+1} = [(1 − σ_aΔt/2) p_a^n − ρc²Δt·D_a v_a^{n+1/2}] / (1 + σ_aΔt/2)
        v_a^{n+3/2} = [(1 − σ_aΔt/2) v_a^{n+1/2} − (Δt/ρ)·G_a p^{n+1}] / (1 + σ_aΔt/2)

    with p = Σ_a p_a: Berenger's split-field PML (1994, J. Comput. Phys. 114, 185), for
    acoustics Yuan et al. 1997 (IEEE Trans. UFFC 44(4), 816), σ_a a function of x_a only
    and zero outside the layer, where the split parts add up to the plain scheme. Wall
    faces take the impedance update; dead faces and rigid walls keep v = 0.
    """
    mask = np.asarray(mask, dtype=bool)
    air = mask.astype(np.float64)
    d = mask.ndim
    decay, gain = [], []
    for axis, n in enumerate(mask.shape):
        s = _along(pml_profile(n, pml_width, h, c, False), axis, d) * dt / 2
        decay.append((1 - s) / (1 + s) * air)
        gain.append(rho * c**2 * dt / (1 + s) * air)
    # without a layer every axis has the same coefficients and p needs no split
    cells = (decay[0], gain[0]) if pml_width == 0 else (np.stack(decay), np.stack(gain))
    cells = tuple(jnp.asarray(x, dtype=dtype) for x in cells)
    faces = []
    for axis in range(mask.ndim):
        interior, air_low, air_high, wide = face_kinds(mask, axis)
        wall = air_low | air_high
        # air below the face: the wall's outward normal is +axis (side 1), else −axis
        (d_minus, g_minus), (d_plus, g_plus) = (
            _wall_update(r, h=h, dt=dt, c=c, rho=rho) for r in reflections[axis]
        )
        wall_decay = np.where(air_low, d_plus, d_minus)
        wall_gain = np.where(air_low, g_plus, g_minus)
        sigma = pml_profile(mask.shape[axis], pml_width, h, c, True)
        s = _along(sigma, axis, d) * dt / 2
        decay = np.where(interior, (1 - s) / (1 + s), np.where(wall, wall_decay, 0.0))
        gain = np.where(interior, dt / rho / (1 + s), np.where(wall, wall_gain, 0.0))
        weight = np.where(interior, 1.0, np.where(wall, 0.5, 0.0))
        arrays = [decay, gain, weight]
        if order == 4:
            arrays += [np.where(wide, NEAR4, 1.0), np.where(wide, FAR4, 0.0)]
        arrays = [jnp.asarray(x, dtype=dtype) for x in arrays]
        faces.append((*arrays, None, None) if order == 2 else tuple(arrays))
    return cells, faces


def acoustic_energy(
    p: Float[Array, " *grid"],
    v: tuple[Float[Array, " ..."], ...],
    *,
    rho: float,
    c: float,
    spacing: float,
    v_next: tuple[Float[Array, " ..."], ...] | None = None,
    face_weights: tuple[Float[Array, " ..."], ...] | None = None,
) -> Array:
    """Acoustic energy h^d [Σ p²/(2ρc²) + (ρ/2) Σ w v·v'] in joules (per metre in 2-D).

    With v' = `v_next` = v^{n+1/2} and v = v^{n−1/2} around p = p^n this is the discrete
    energy that leapfrog conserves exactly in a rigid room (weights w: 1 on interior faces,
    1/2 on walls, whose face carries half a cell). Without `v_next`, the plain energy of
    (p, v); without weights, every face counts fully.
    """
    volume = spacing**p.ndim
    potential = jnp.sum(p**2) / (2 * rho * c**2)
    v_next = v if v_next is None else v_next
    if len(v) != p.ndim or len(v_next) != p.ndim:
        raise ValueError(f"velocity must have one component per axis ({p.ndim}), got {len(v)}")
    kinetic = 0.0
    for a, (u0, u1) in enumerate(zip(v, v_next, strict=True)):
        w = 1.0 if face_weights is None else face_weights[a]
        kinetic = kinetic + jnp.sum(w * u0 * u1)
    return volume * (potential + rho / 2 * kinetic)


def courant_limit(ndim: int, order: int) -> float:
    """Largest stable c·Δt·sqrt(d)/h: 1 for second order; 6/7 for fourth order, whose
    stencil's largest symbol 2(9/8 + 1/24) = 7/3 exceeds the second-order 2 by 7/6."""
    del ndim  # the sqrt(d) is already in the Courant number's definition
    return 1.0 if order == 2 else 6.0 / 7.0


def dt_from_courant(courant: float, h: float, c: float, ndim: int) -> float:
    return courant * h / (c * math.sqrt(ndim))
