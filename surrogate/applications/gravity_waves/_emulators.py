"""Learned emulators of the spectral gravity-wave scheme, momentum-conserving by construction.

All map the wind profile u(z) of a column (or of every column of a ring), with ρ(z),
N(z), the launched total flux and the spectral width, to the drag (m s⁻²). They are
`surrogate.coupling` parameterizations of `surrogate.solvers.qbo.QBO`: called as
`(u, params)` with the QBO's params ("rho", "n", "dz", "source_flux", "source_width").

**Flux form.** A network predicts, per layer k, the fraction σ(ℓ_k) ∈ (0, 1) of the
eastward and of the westward flux that passes the layer (as the scheme does wave by
wave), so the fluxes at the interfaces are

    F^E_{k+½} = F^E_0 Π_{j≤k} σ(ℓ^E_j),   F^W alike,

F^E_0, F^W_0 the launched eastward and westward fluxes of the source (AD99 eq. 17 of
the known source, `source_spectrum`), and the drag is their divergence,
drag_k = −(F_{k+½} − F_{k−½})/(ρ_k dz_k). Hence for ANY weights:
- Σ_k ρ_k dz_k drag_k = F_0 − F_top: the column takes the launched momentum, except
  what leaves through the top (the scheme's own budget);
- eastward waves only accelerate the flow eastward and westward waves westward (each
  part of the drag has the sign of its waves), and no flux is created aloft.

- `GravityWaveMLP`: MLP of the flattened column (levels fixed at construction);
- `GravityWaveSSM`: bidirectional diagonal-SSM stack over the levels
  (`surrogate.ssm.SSMStack`), any number of levels;
- `NonlocalGravityWaveSSM`: sees the columns `reach` to either side on the ring
  (their features as extra channels) and, besides the pass fractions of its own waves,
  where the flux they lose in each layer lands: a softmax over the columns 0..spread
  east of the launch for eastward waves (which travel east, dx/dz = c N/(k ĉ²) > 0)
  and 0..spread west for westward ones. The weights sum to one, so the RING's budget
  Σ_j Σ_k ρ dz drag = Σ_j (F_0 − F_top) holds for any weights, while a column's own
  budget need not (momentum travels with the waves, as in the reference's oblique rays).

Inputs per level (normalized per channel, not per level): u, the running maximum and
minimum of u from the launch level (u = 0 there) up to the level (where the eastward /
westward waves slower than that already met a critical level: a prefix operation that
a linear time-invariant SSM approximates only smoothly, given here), ln ρ, N, the
column's launched flux and spectral width at every level, the fractions of the launched
eastward and westward flux that critical levels alone would let through to the level,
and the fractions that the scheme itself would let through in this column with vertical
rays and its hard switch (critical levels and breaking, from the known source spectrum
and the wave's saturation flux ρ k ĉ³/(2N) at `wavenumber` k). These are the sharp,
prefix parts of the scheme, which smooth networks reproduce poorly; the smooth switch,
and on a ring the rays' drift through the neighbours, are left to the network. (Measured
on the ring benchmark: with the last two channels the nonlocal model's R² per level at
18-20 km rose from 0.895-0.90 to 0.92-0.93.)
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...coupling import AbstractParameterization
from ...data import Normalizer
from ...solvers.gravity_waves import phase_speeds, saturation_flux, source_spectrum
from ...ssm import SSMStack
from ...training import fit

N_FEATURES = 11  # channels of `features`
DAY = 86400.0
WAVENUMBER = 2 * np.pi / 300e3  # AD99's default horizontal wavenumber (1/m)


def features(
    u: Float[Array, " level"],
    rho: Float[Array, " level"],
    n: Float[Array, " level"],
    flux: Float[Array, ""],
    width: Float[Array, ""],
    *,
    c_max: float = 100.0,
    n_waves: int = 80,
    centre: float = 0.0,
    wavenumber: float = WAVENUMBER,
) -> Float[Array, "11 level"]:
    """The 11 input channels of one column (module docstring), unnormalized: u, its running
    maximum and minimum from the launch level, ln ρ, N, the launched flux, the width, the
    fractions of the launched eastward and westward flux that critical levels alone would
    let through to each level (the source's waves faster than the running maximum, slower
    than the running minimum), and those that the scheme with its hard switch lets
    through (waves below their saturation flux at every level so far)."""
    launch = jnp.zeros_like(u[:1])
    up = jnp.concatenate([launch, u])
    highest, lowest = jax.lax.cummax(up)[1:], jax.lax.cummin(up)[1:]
    c = phase_speeds(c_max, n_waves, u.dtype)
    b = source_spectrum(c, flux=jnp.ones((), u.dtype), width=width, centre=centre)
    east, west = jnp.maximum(b, 0.0), jnp.maximum(-b, 0.0)
    tiny = jnp.finfo(u.dtype).tiny

    def fraction(spectrum, passes):  # of the spectrum's flux in the waves that pass, per level
        return jnp.sum(spectrum[:, None] * passes, axis=0) / jnp.maximum(jnp.sum(spectrum), tiny)

    passes_east = fraction(east, c[:, None] > highest[None, :])
    passes_west = fraction(west, c[:, None] < lowest[None, :])
    # AD99 with vertical rays and the hard switch: a wave lives while |B| < F_sat
    f_sat = saturation_flux(u[None, :], n[None, :], rho[None, :], c[:, None],
                            jnp.sign(b)[:, None], wavenumber)  # fmt: skip
    alive = jax.lax.cummin((f_sat > flux * jnp.abs(b)[:, None]).astype(u.dtype), axis=1)
    lives_east, lives_west = fraction(east, alive), fraction(west, alive)
    ones = jnp.ones_like(u)
    return jnp.stack([u, highest, lowest, jnp.log(rho), n, flux * ones, width * ones,
                      passes_east, passes_west, lives_east, lives_west])  # fmt: skip


def launch_fluxes(flux, width, *, c_max: float, n_waves: int, centre: float):
    """(eastward, westward) launched flux (Pa) of the AD99 source with total `flux`."""
    c = phase_speeds(c_max, n_waves, jnp.result_type(flux))
    b = source_spectrum(c, flux=flux, width=width, centre=centre)
    return jnp.sum(jnp.where(b > 0, b, 0.0)), jnp.sum(jnp.where(b < 0, b, 0.0))


def flux_profiles(logits: Float[Array, "2 level"], east0, west0):
    """(F^E, F^W) at the interfaces from pass-fraction logits (module docstring)."""
    passed = jnp.cumprod(jax.nn.sigmoid(logits), axis=-1)
    ones = jnp.ones_like(passed[:, :1])
    frac = jnp.concatenate([ones, passed], axis=-1)
    return east0 * frac[0], west0 * frac[1]


def _deposit(flux):
    """What each layer takes from a flux profile at the interfaces: F_{k−½} − F_{k+½}."""
    return flux[..., :-1] - flux[..., 1:]


class _Emulator(AbstractParameterization):
    """Normalizers, the source, and the parameterization call."""

    in_norm: eqx.AbstractVar[Normalizer]
    c_max: eqx.AbstractVar[float]
    n_waves: eqx.AbstractVar[int]
    centre: eqx.AbstractVar[float]
    wavenumber: eqx.AbstractVar[float]

    #: whether the model sees the whole ring ((column, level) inputs) or one column
    nonlocal_: ClassVar[bool] = False

    def _launch(self, flux, width):
        return launch_fluxes(flux, width, c_max=self.c_max, n_waves=self.n_waves,
                             centre=self.centre)  # fmt: skip

    def _features(self, u, params, flux):
        norm = jax.lax.stop_gradient(self.in_norm)
        dtype = norm.mean.dtype
        rho, n = params["rho"].astype(dtype), params["n"].astype(dtype)
        width = jnp.asarray(params["source_width"], dtype)
        x = features(u.astype(dtype), rho, n, jnp.asarray(flux, dtype), width, c_max=self.c_max,
                     n_waves=self.n_waves, centre=self.centre,
                     wavenumber=self.wavenumber)  # fmt: skip
        return norm.encode(x)

    @abc.abstractmethod
    def drag_and_fluxes(self, u: Array, params: dict) -> tuple[Array, tuple[Array, Array]]:
        """The drag (m s⁻²) and the (eastward, westward) fluxes of the launched waves (Pa)
        at the interfaces, as `AD99.drag_and_fluxes`."""

    def __call__(self, u: Array, params: Any = None) -> Array:
        return self.drag_and_fluxes(u, params)[0].astype(u.dtype)


class _ColumnEmulator(_Emulator):
    """A single-column emulator: columns of a ring are emulated one by one."""

    @abc.abstractmethod
    def _logits(self, x: Float[Array, "7 level"]) -> Float[Array, "2 level"]:
        """Pass-fraction logits (east, west) from normalized features."""

    def _column(self, u, params, flux):
        east0, west0 = self._launch(flux, params["source_width"])
        east, west = flux_profiles(self._logits(self._features(u, params, flux)), east0, west0)
        mass = params["rho"] * params["dz"]
        return (_deposit(east) + _deposit(west)) / mass.astype(east.dtype), (east, west)

    def drag_and_fluxes(self, u, params):
        _check(u, params)
        if u.ndim == 1:
            return self._column(u, params, jnp.asarray(params["source_flux"]))
        flux = jnp.broadcast_to(params["source_flux"], u.shape[:1])
        return jax.vmap(lambda v, f: self._column(v, params, f))(u, flux)


def _positive_wavenumber(k) -> float:
    if not float(k) > 0:
        raise ValueError(f"wavenumber must be positive (1/m, 2π over the wavelength), got {k}")
    return float(k)


def _check(u, params, n_levels=None):
    shapes = [jnp.shape(params[k]) for k in ("rho", "n", "dz")]
    if u.ndim not in (1, 2) or any(s != u.shape[-1:] for s in shapes):
        raise ValueError(f"u should be (level,) or (column, level) with rho, n, dz (level,), "
                         f"got {u.shape} and {shapes}")  # fmt: skip
    if n_levels is not None and u.shape[-1] != n_levels:
        raise ValueError(f"this emulator was built for {n_levels} levels, got {u.shape[-1]}")


@savable
class GravityWaveSSM(_ColumnEmulator):
    """Bidirectional diagonal-SSM stack over the levels of one column (module docstring).

    `width` channels, `depth` bidirectional blocks of `state_size` states; the source is
    the AD99 spectrum on `n_waves` phase speeds in ±`c_max`, centred on `centre` m/s.
    """

    stack: SSMStack
    in_norm: Normalizer
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    c_max: float = eqx.field(static=True)
    n_waves: int = eqx.field(static=True)
    centre: float = eqx.field(static=True)
    wavenumber: float = eqx.field(static=True)

    def __init__(self, width: int = 32, depth: int = 2, state_size: int = 16, *,
                 c_max: float = 100.0, n_waves: int = 80, centre: float = 0.0,
                 wavenumber: float = WAVENUMBER, dtype=jnp.float32,
                 key: PRNGKeyArray):  # fmt: skip
        self.stack = SSMStack(N_FEATURES, 2, width, depth, state_size, bidirectional=True,
                              dt_min=0.01, dt_max=1.0, dtype=dtype, key=key)  # fmt: skip
        self.in_norm = Normalizer(N_FEATURES, dtype=dtype)
        self.width, self.depth, self.state_size = int(width), int(depth), int(state_size)
        self.c_max, self.n_waves, self.centre = float(c_max), int(n_waves), float(centre)
        self.wavenumber = _positive_wavenumber(wavenumber)

    def _logits(self, x):
        return self.stack(x.T).T


@savable
class GravityWaveMLP(_ColumnEmulator):
    """MLP of the flattened column (N_FEATURES·N normalized features -> 2N logits), N =
    `n_levels`."""

    mlp: eqx.nn.MLP
    in_norm: Normalizer
    n_levels: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    c_max: float = eqx.field(static=True)
    n_waves: int = eqx.field(static=True)
    centre: float = eqx.field(static=True)
    wavenumber: float = eqx.field(static=True)

    def __init__(self, n_levels: int = 36, width: int = 256, depth: int = 3, *,
                 c_max: float = 100.0, n_waves: int = 80, centre: float = 0.0,
                 wavenumber: float = WAVENUMBER, dtype=jnp.float32,
                 key: PRNGKeyArray):  # fmt: skip
        self.mlp = eqx.nn.MLP(N_FEATURES * n_levels, 2 * n_levels, width, depth, jax.nn.gelu,
                              dtype=dtype, key=key)  # fmt: skip
        self.in_norm = Normalizer(N_FEATURES, dtype=dtype)
        self.n_levels, self.width, self.depth = int(n_levels), int(width), int(depth)
        self.c_max, self.n_waves, self.centre = float(c_max), int(n_waves), float(centre)
        self.wavenumber = _positive_wavenumber(wavenumber)

    def _logits(self, x):
        return self.mlp(x.reshape(-1)).reshape(2, -1)

    def drag_and_fluxes(self, u, params):
        _check(u, params, self.n_levels)
        return super().drag_and_fluxes(u, params)


@savable
class NonlocalGravityWaveSSM(_Emulator):
    """The ring's emulator: a bidirectional SSM over the levels of each column that reads
    the features of the columns up to `reach` away on either side, and places what its
    waves deposit on the columns 0..`spread` downstream (module docstring; `spread`
    defaults to `reach`; on a ring the offsets wrap around, so it may reach n_col − 1).
    A ray can drift further than `reach`: a 30 m/s wave of 300 km wavelength at
    N = 0.02 s⁻¹ climbs 18 km over ~600 km. On the benchmark's 8-column ring that did not
    pay, though: with `spread=7` the R² of the top two levels was 0.69 / 0.30 against
    0.73 / 0.33 with 3 (15 epochs, before the breaking features). The weights are shared
    by all columns (the ring has no preferred column)."""

    stack: SSMStack
    in_norm: Normalizer
    reach: int = eqx.field(static=True)
    spread: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    c_max: float = eqx.field(static=True)
    n_waves: int = eqx.field(static=True)
    centre: float = eqx.field(static=True)
    wavenumber: float = eqx.field(static=True)
    nonlocal_: ClassVar[bool] = True

    def __init__(self, reach: int = 3, width: int = 48, depth: int = 2, state_size: int = 16,
                 *, spread: int | None = None, c_max: float = 100.0, n_waves: int = 80,
                 centre: float = 0.0, wavenumber: float = WAVENUMBER, dtype=jnp.float32,
                 key: PRNGKeyArray):  # fmt: skip
        spread = reach if spread is None else spread
        if reach < 0 or spread < 0:
            raise ValueError(f"reach and spread must be >= 0 columns, got {reach}, {spread}")
        n_in = N_FEATURES * (2 * reach + 1)
        self.stack = SSMStack(n_in, 2 * (spread + 2), width, depth, state_size,
                              bidirectional=True, dt_min=0.01, dt_max=1.0, dtype=dtype,
                              key=key)  # fmt: skip
        self.in_norm = Normalizer(N_FEATURES, dtype=dtype)
        self.reach, self.spread = int(reach), int(spread)
        self.width, self.depth = int(width), int(depth)
        self.state_size = int(state_size)
        self.c_max, self.n_waves, self.centre = float(c_max), int(n_waves), float(centre)
        self.wavenumber = _positive_wavenumber(wavenumber)

    def drag_and_fluxes(self, u, params):
        _check(u, params)
        if u.ndim == 1:
            u = u[None]
        n_col = u.shape[0]
        if n_col < 2 * self.reach + 1:
            raise ValueError(
                f"a ring of {n_col} columns is shorter than the reach {self.reach} on either "
                f"side allows ({2 * self.reach + 1})"
            )
        if n_col <= self.spread:
            raise ValueError(
                f"a ring of {n_col} columns is too short to spread a deposit over {self.spread} "
                f"columns downstream (needs {self.spread + 1})"
            )
        flux = jnp.broadcast_to(params["source_flux"], (n_col,))
        x = jax.vmap(lambda v, f: self._features(v, params, f))(u, flux)  # (col, 11, level)
        # the neighbours' features as channels: offsets -reach..reach
        window = jnp.concatenate([jnp.roll(x, -o, axis=0) for o in
                                  range(-self.reach, self.reach + 1)], axis=1)  # fmt: skip
        out = jax.vmap(lambda w: self.stack(w.T).T)(window)  # (col, 2 + 2(spread+1), level)
        east0, west0 = jax.vmap(lambda f: self._launch(f, params["source_width"]))(flux)
        east, west = jax.vmap(flux_profiles)(out[:, :2], east0, west0)
        r = self.spread + 1
        kernels = (jax.nn.softmax(out[:, 2 : 2 + r], axis=1),
                   jax.nn.softmax(out[:, 2 + r :], axis=1))  # fmt: skip
        deposit = jnp.zeros_like(u, dtype=east.dtype)
        for flux_profile, kernel, sign in ((east, kernels[0], 1), (west, kernels[1], -1)):
            lost = _deposit(flux_profile)
            for o in range(r):
                deposit = deposit + jnp.roll(lost * kernel[:, o], sign * o, axis=0)
        mass = (params["rho"] * params["dz"]).astype(deposit.dtype)
        return deposit / mass[None], (east, west)


# ---- data and training ---------------------------------------------------------------------


def training_arrays(ds, *, stride: int = 1) -> dict[str, Array]:
    """Ring snapshots of a `gravity_waves` dataset as float32 arrays with the snapshot axis
    first: u and drag (n, column, level), launch_flux (n, column), source_width (n,), rho
    and n (n, level), dz (level,); every `stride`-th stored time of every sample."""
    u = np.asarray(ds["u"].values[:, ::stride], np.float32)
    s, t = u.shape[:2]

    def per_sample(name):
        v = np.asarray(ds[name].values, np.float32)
        return np.repeat(v, t, axis=0)

    z = np.asarray(ds["interface"].values, np.float64)
    return {
        "u": jnp.asarray(u.reshape(s * t, *u.shape[2:])),
        "drag": jnp.asarray(
            np.asarray(ds["drag"].values[:, ::stride], np.float32).reshape(s * t, *u.shape[2:])
        ),  # fmt: skip
        "launch_flux": jnp.asarray(
            np.asarray(ds["launch_flux"].values[:, ::stride], np.float32).reshape(s * t, -1)
        ),  # fmt: skip
        "source_width": jnp.asarray(per_sample("source_width")),
        "rho": jnp.asarray(per_sample("rho")),
        "n": jnp.asarray(per_sample("n")),
        "dz": jnp.asarray(np.diff(z), jnp.float32),
    }


def predict(model: _Emulator, data: dict[str, Array]) -> Array:
    """Drag (m s⁻²) of every ring snapshot of `training_arrays` data."""
    dz = data["dz"]

    def one(u, f, w, rho, n):
        return model(u, {"rho": rho, "n": n, "dz": dz, "source_flux": f, "source_width": w})

    run = eqx.filter_jit(jax.vmap(one))
    return run(data["u"], data["launch_flux"], data["source_width"], data["rho"], data["n"])


def fit_emulator(
    model: _Emulator,
    data: dict[str, Array],
    *,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    column_weight: float = 1.0,
    level_floor: float | None = None,
    key: PRNGKeyArray,
    progress: bool = False,
) -> tuple[_Emulator, dict]:
    """Fit the input normalizer, then minimise with Adam (cosine-decayed learning rate) the
    mean squared drag error in units of the drag's standard deviation, plus
    `column_weight` times that of the column integral Σ ρ dz drag in units of its own.
    With `level_floor` the drag errors are in units of each LEVEL's standard deviation,
    floored at `level_floor` times the overall one (quiet levels count as much as active
    ones, without dividing by zero where the drag never varies).
    `data` are ring snapshots (`training_arrays`); a single-column emulator is trained on
    their columns one by one, the nonlocal one on whole rings (batch_size counts rings)."""
    if not learning_rate > 0 or epochs < 1:
        raise ValueError(f"need learning_rate > 0 and epochs >= 1, got {learning_rate}, "
                         f"{epochs}")  # fmt: skip
    dz = jnp.asarray(data["dz"])
    n, n_col, n_lev = data["u"].shape
    column_features = functools.partial(features, c_max=model.c_max, n_waves=model.n_waves,
                                        centre=model.centre,
                                        wavenumber=model.wavenumber)  # fmt: skip
    x = jax.vmap(jax.vmap(column_features, in_axes=(0, None, None, 0, None)))(
        data["u"], data["rho"], data["n"], data["launch_flux"], data["source_width"]
    ).reshape(n * n_col, N_FEATURES, n_lev)
    model = eqx.tree_at(lambda m: m.in_norm, model, Normalizer.fit(x))
    arrays = {k: v for k, v in data.items() if k != "dz"}
    if not model.nonlocal_:  # columns as samples
        arrays = {
            "u": data["u"].reshape(n * n_col, n_lev),
            "drag": data["drag"].reshape(n * n_col, n_lev),
            "launch_flux": data["launch_flux"].reshape(n * n_col),
            "source_width": jnp.repeat(data["source_width"], n_col),
            "rho": jnp.repeat(data["rho"], n_col, axis=0),
            "n": jnp.repeat(data["n"], n_col, axis=0),
        }
    drag_std = jnp.std(data["drag"]) + 1e-12
    if level_floor is not None:
        if not level_floor > 0:
            raise ValueError(f"level_floor must be positive, got {level_floor}")
        per_level = jnp.std(data["drag"].reshape(-1, n_lev), axis=0)
        drag_std = jnp.maximum(per_level, level_floor * drag_std)
    column = jnp.sum(data["drag"] * (data["rho"][:, None] * dz[None, None]), axis=-1)
    column_std = jnp.std(column) + 1e-12

    def loss_fn(m, batch):
        def one(u, f, w, rho, nn):
            return m(u, {"rho": rho, "n": nn, "dz": dz, "source_flux": f, "source_width": w})

        pred = jax.vmap(one)(batch["u"], batch["launch_flux"], batch["source_width"],
                             batch["rho"], batch["n"])  # fmt: skip
        scale = drag_std.reshape((1,) * (pred.ndim - 1) + (-1,)) if drag_std.ndim else drag_std
        err = (pred - batch["drag"]) / scale
        mass = batch["rho"] * dz[None]
        if m.nonlocal_:
            mass = mass[:, None]
        col = jnp.sum((pred - batch["drag"]) * mass, axis=-1) / column_std
        return jnp.mean(err**2) + column_weight * jnp.mean(col**2)

    n_samples = arrays["u"].shape[0]
    steps = max(1, n_samples // min(batch_size, n_samples))
    schedule = optax.cosine_decay_schedule(learning_rate, max(1, epochs * steps), alpha=0.01)
    return fit(model, loss_fn, arrays, optimizer=optax.adam(schedule), epochs=epochs,
               batch_size=batch_size, key=key, progress=progress)  # fmt: skip
