"""Linear room acoustics: a staggered-grid leapfrog (FDTD) solver in 2-D and 3-D.

    ∂p/∂t = −ρc² ∇·v,    ∂v/∂t = −(1/ρ) ∇p,

pressure p (Pa) at cell centres, particle velocity v (m/s) on cell faces, leapfrog in time
with v at half steps (Yee 1966, IEEE Trans. Antennas Propag. 14(3); for acoustics
Botteldooren 1995, JASA 98(6) 3302). Second order in space and time, or fourth order in
space away from walls (`order=4`). Stable for the Courant number C = cΔt·sqrt(d)/h ≤ 1
(≤ 6/7 at fourth order). Walls: rigid, or locally reacting with the impedance of a
normal-incidence absorption coefficient (`Room`); an optional perfectly matched layer
absorbs at the edge of the grid for free-field runs. Operators, boundary updates and the
PML: `_acoustics_scheme`.

The source is an initial Gaussian pressure pulse at rest (`gaussian_pulse`); its position
can be traced, so a dataset over source positions is one `jax.vmap`:

    room = Room(rectangle_mask((5.0, 4.0), 0.057), 0.057, absorption=0.1)
    solver = WaveSolver(room)
    xy = room.grid_coords()
    run = lambda x0: solver.simulate(gaussian_pulse(xy, x0, 1.0, pulse_width(1000.0)),
                                     save_times=(0.01, 0.02), receivers=mics)
    fields, signals = jax.jit(jax.vmap(run))(sources)
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._acoustics_geometry import Room as Room
from ._acoustics_geometry import check_position as check_position
from ._acoustics_geometry import gaussian_pulse as gaussian_pulse
from ._acoustics_geometry import l_shape_mask as l_shape_mask
from ._acoustics_geometry import multilinear_weights
from ._acoustics_geometry import obstacle_mask as obstacle_mask
from ._acoustics_geometry import pulse_width as pulse_width
from ._acoustics_geometry import rectangle_mask as rectangle_mask
from ._acoustics_geometry import shoebox_mask as shoebox_mask
from ._acoustics_geometry import wall_distance as wall_distance
from ._acoustics_scheme import acoustic_energy as acoustic_energy
from ._acoustics_scheme import courant_limit as courant_limit
from ._acoustics_scheme import divergence_1d, dt_from_courant, gradient, update_coefficients


class AcousticState(eqx.Module):
    """Leapfrog state at step n: p = p^n at cell centres, v = v^{n+1/2} on the faces, and
    with a PML the split parts p_a of p = Σ_a p_a (else None)."""

    p: Float[Array, " *grid"]
    v: tuple[Float[Array, "..."], ...]
    p_split: Float[Array, " d *grid"] | None = None


class WaveSolver(eqx.Module):
    """Staggered leapfrog for linear acoustics in a `Room`.

    Give either `courant` (C = cΔt·sqrt(d)/h; default 0.9 of the stability limit) or `dt`
    in seconds; an unstable choice is refused. `c` in m/s, `rho` in kg/m³; `order` 2 or 4
    is the spatial order of the stencil; `dtype` that of every array the solver makes.
    """

    room: Room
    cell_coef: tuple[Array, Array]
    face_coef: tuple[tuple[Array | None, ...], ...]
    c: float = eqx.field(static=True)
    rho: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    courant: float = eqx.field(static=True)
    order: int = eqx.field(static=True)
    dtype: jnp.dtype = eqx.field(static=True)

    def __init__(
        self,
        room: Room,
        *,
        c: float = 343.0,
        rho: float = 1.2,
        courant: float | None = None,
        dt: float | None = None,
        order: int = 2,
        dtype=jnp.float32,
    ):
        if order not in (2, 4):
            raise ValueError(f"order must be 2 or 4 (spatial order of the stencil), got {order}")
        if not (c > 0 and rho > 0):
            raise ValueError(f"sound speed and density must be positive, got c={c}, rho={rho}")
        limit = courant_limit(room.ndim, order)
        h, d = room.spacing, room.ndim
        if courant is not None and dt is not None:
            raise ValueError("give either courant or dt, not both")
        if dt is None:
            courant = 0.9 * limit if courant is None else float(courant)
            dt = dt_from_courant(courant, h, c, d)
        else:
            courant = c * dt * math.sqrt(d) / h
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"time step must be positive and finite, got dt={dt}")
        if courant > limit * (1 + 1e-12):
            raise ValueError(
                f"unstable time step: Courant number c·dt·sqrt(d)/h = {courant:.4g} exceeds "
                f"the limit {limit:.4g} of the order-{order} scheme; need dt <= "
                f"{dt_from_courant(limit, h, c, d):.4g} s at h = {h} m, c = {c} m/s"
            )
        self.room, self.c, self.rho, self.order = room, float(c), float(rho), order
        self.dt, self.courant, self.dtype = float(dt), float(courant), jnp.dtype(dtype)
        reflections = tuple((room.reflection(a, 0), room.reflection(a, 1)) for a in range(d))
        self.cell_coef, faces = update_coefficients(
            room.mask, h=h, dt=self.dt, c=self.c, rho=self.rho, reflections=reflections,
            pml_width=room.pml_width, order=order, dtype=self.dtype,
        )  # fmt: skip
        self.face_coef = tuple(faces)

    # ---- the scheme ----------------------------------------------------------------
    def gradient(self, p: Float[Array, " *grid"]) -> tuple[Float[Array, "..."], ...]:
        """The discrete ∇p on the faces (one array per axis, n_a + 1 faces along a)."""
        h = self.room.spacing
        return tuple(gradient(p, a, h, f[3], f[4]) for a, f in enumerate(self.face_coef))

    def divergence(self, v: tuple[Float[Array, "..."], ...]) -> Float[Array, " *grid"]:
        """The discrete ∇·v at the cells, −Gᵀ v."""
        return sum(self._divergence_parts(v))

    def _divergence_parts(self, v: tuple[Array, ...]) -> list[Array]:
        h = self.room.spacing
        return [
            divergence_1d(u, a, h, f[3], f[4])
            for a, (u, f) in enumerate(zip(v, self.face_coef, strict=True))
        ]

    @property
    def face_weights(self) -> tuple[Array, ...]:
        """Energy weight of each face: 1 interior, 1/2 wall, 0 dead (no air beside it)."""
        return tuple(f[2] for f in self.face_coef)

    def initial_state(self, p0: Float[Array, " *grid"]) -> AcousticState:
        """(p^0, v^{1/2}) from p0 at rest: v(0) = 0 and ∂²v/∂t² = 0 at t = 0, so
        v^{1/2} = −(Δt/2ρ)∇p0 to third order in Δt (on interior faces; a source clear of
        the walls has p0 ≈ 0 there)."""
        p0 = self._check_field(p0)
        p0 = p0 * self.room.mask
        interior = (w == 1.0 for w in self.face_weights)
        v = tuple(
            jnp.where(m, -0.5 * self.dt / self.rho * g, 0.0).astype(self.dtype)
            for m, g in zip(interior, self.gradient(p0), strict=True)
        )
        split = None
        if self.room.pml_width:  # any split adds up to p0; the layer starts at rest
            split = jnp.broadcast_to(p0 / self.room.ndim, (self.room.ndim, *p0.shape))
        return AcousticState(p0, v, split)

    def step(self, state: AcousticState) -> AcousticState:
        """(p^n, v^{n+1/2}) -> (p^{n+1}, v^{n+3/2})."""
        decay, gain = self.cell_coef
        if state.p_split is None:
            split = None
            p = decay * state.p - gain * self.divergence(state.v)
        else:
            split = decay * state.p_split - gain * jnp.stack(self._divergence_parts(state.v))
            p = jnp.sum(split, axis=0)
        v = tuple(
            f[0] * u - f[1] * g
            for u, g, f in zip(state.v, self.gradient(p), self.face_coef, strict=True)
        )
        return AcousticState(p, v, split)

    def energy(
        self, p: Float[Array, " *grid"], v_before: tuple[Array, ...], v_after: tuple[Array, ...]
    ) -> Array:
        """The conserved discrete energy at step n from p^n, v^{n−1/2}, v^{n+1/2} (J, or
        J/m in 2-D); see `acoustic_energy`."""
        weights, h = self.face_weights, self.room.spacing
        kw = dict(rho=self.rho, c=self.c, spacing=h, v_next=v_after, face_weights=weights)
        return acoustic_energy(p, v_before, **kw)

    # ---- runs ------------------------------------------------------------------------
    def n_steps(self, save_times) -> int:
        """Steps simulated to reach the last of `save_times` (s)."""
        return max(k + (frac > 0) for k, frac in self._save_plan(save_times))

    def simulate(
        self,
        p0: Float[Array, " *grid"],
        *,
        save_times,
        receivers: Float[Array, " n_receivers d"] | None = None,
    ) -> tuple[Float[Array, " n_times *grid"], Float[Array, " n_receivers n_t"]]:
        """Run from p0 at rest; return the pressure field at `save_times` and the pressure at
        `receivers` at every step.

        `save_times` (s) must be concrete; a time between two steps gets the linear
        interpolation of the two, which keeps the scheme's second order. `receivers`
        (n, d) positions in metres, possibly traced, are sampled by multilinear
        interpolation between cell centres (solid cells count as p = 0, so keep receivers a
        cell away from walls). Signals have n_steps + 1 samples, at t = kΔt, k = 0..n_steps.
        """
        plan = self._save_plan(save_times)
        n_steps = self.n_steps(save_times)
        p0 = self._check_field(p0)
        if receivers is not None:
            receivers = self._check_receivers(receivers).astype(self.dtype)
        # which outputs each step adds to, with which weight: static tables kept off the
        # traced path, so that one step touches a couple of saved fields, not all of them
        slots: list[list[tuple[int, float]]] = [[] for _ in range(n_steps + 1)]
        for j, (k, frac) in enumerate(plan):
            slots[k].append((j, 1.0 - frac))
            if frac > 0:
                slots[k + 1].append((j, frac))
        width = max(len(row) for row in slots)
        table = [row + [(0, 0.0)] * (width - len(row)) for row in slots]
        slot_j = np.asarray([[j for j, _ in row] for row in table], dtype=np.int32)
        slot_w = np.asarray([[w for _, w in row] for row in table], dtype=self.dtype)
        return _run(self, p0, receivers, slot_j, slot_w, len(plan))

    # ---- checks ----------------------------------------------------------------------
    def _check_field(self, p0) -> Array:
        p0 = jnp.asarray(p0)
        if p0.shape != self.room.shape:
            raise ValueError(
                f"initial pressure must have the room's grid shape "
                f"{self.room.shape}, got {p0.shape}"
            )
        return p0.astype(self.dtype)

    def _check_receivers(self, receivers) -> Array:
        receivers = jnp.asarray(receivers)
        d = self.room.ndim
        if receivers.ndim != 2 or receivers.shape[1] != d or receivers.shape[0] == 0:
            raise ValueError(
                f"receivers must have shape (n_receivers, {d}) with "
                f"n_receivers >= 1, got {receivers.shape}"
            )
        return receivers

    def _save_plan(self, save_times) -> list[tuple[int, float]]:
        """(k, θ) per save time t = (k + θ)Δt, θ ∈ [0, 1); concrete floats only."""
        try:  # static metadata, kept off the traced path
            times = [float(t) for t in np.ravel(np.asarray(save_times, dtype=np.float64))]
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
            raise ValueError(
                "save_times must be concrete numbers (they fix the number of "
                "steps), not traced values"
            ) from None
        if not times or not all(math.isfinite(t) and t >= 0 for t in times):
            raise ValueError(
                f"save_times must be a non-empty list of finite times >= 0 s, got {save_times}"
            )
        plan = []
        for t in times:
            steps = t / self.dt
            k = math.floor(steps + 1e-9)
            frac = steps - k
            plan.append((k, 0.0 if frac < 1e-9 else frac))
        return plan


@eqx.filter_jit
def _run(solver: WaveSolver, p0: Array, receivers: Array | None, slot_j: Array,
         slot_w: Array, n_times: int):  # fmt: skip
    """The time loop of `WaveSolver.simulate`, one `lax.scan` over the steps."""
    shape = solver.room.shape
    if receivers is None:

        def probe(p):
            return jnp.zeros((0,), solver.dtype)
    else:
        idx, wts = multilinear_weights(shape, solver.room.spacing, receivers)

        def probe(p):
            return sum(w * p[i] for i, w in zip(idx, wts, strict=True))

    def record(fields, p, js, ws):
        for m in range(js.shape[0]):
            old = jax.lax.dynamic_index_in_dim(fields, js[m], keepdims=False)
            fields = jax.lax.dynamic_update_index_in_dim(fields, old + ws[m] * p, js[m], 0)
        return fields

    state = solver.initial_state(p0)
    fields = record(jnp.zeros((n_times, *shape), solver.dtype), state.p, slot_j[0], slot_w[0])

    def body(carry, xs):
        state, fields = carry
        state = solver.step(state)
        return (state, record(fields, state.p, *xs)), probe(state.p)

    (_, fields), signals = jax.lax.scan(body, (state, fields), (slot_j[1:], slot_w[1:]))
    signals = jnp.concatenate([probe(state.p)[None], signals], axis=0)
    return fields, signals.T
