"""2-D incompressible Navier-Stokes in vorticity form on the unit torus (FNO paper, §5.3).

    ∂ω/∂t + u·∇ω = ν Δω + f,   u = ∇^⊥ψ = (∂ψ/∂y, −∂ψ/∂x),   −Δψ = ω,   (x, y) ∈ [0, 1)²

(Li et al., "Fourier neural operator for parametric PDEs", ICLR 2021, §5.3), with the
forcing f = 0.1 (sin 2π(x + y) + cos 2π(x + y)) and initial vorticity drawn from the GRF
7^(3/2) (−Δ + 49 I)^(−2.5) of that paper. Array axis 0 is x, axis 1 is y.

Discretisation: Fourier pseudo-spectral in space, the product u·∇ω formed on the grid and
dealiased by the 2/3 rule; Crank-Nicolson for the diffusion and Heun's predictor-corrector
for the advection and forcing (second order in time), as the paper's data generator does:

    (1 + hν|k|²/2) ω̂*     = (1 − hν|k|²/2) ω̂ⁿ + h (f̂ − N̂(ω̂ⁿ))
    (1 + hν|k|²/2) ω̂ⁿ⁺¹   = (1 − hν|k|²/2) ω̂ⁿ + h (f̂ − [N̂(ω̂ⁿ) + N̂(ω̂*)] / 2)

with N̂ = mask · F[u·∇ω]. The mean of ω (mode 0) is conserved when f has zero mean, since
u·∇ω = ∇·(uω) for the divergence-free spectral velocity.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..fields import grf
from .spectral import dealias_mask, subsample_periodic, wavenumber_grid


def initial_vorticity(key: PRNGKeyArray, n: int, *, dtype=jnp.float32) -> Float[Array, "n n"]:
    """The FNO paper's initial vorticity: the zero-mean GRF 7^(3/2) (−Δ + 49 I)^(−2.5)."""
    return grf(key, (n, n), alpha=2.5, tau=7.0, sigma=7.0**1.5, dtype=dtype)


def fno_forcing(n: int, *, dtype=jnp.float32) -> Float[Array, "n n"]:
    """f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y)) on the n × n grid x_i = i / n."""
    x = jnp.arange(n, dtype=dtype) / n
    s = x[:, None] + x[None, :]
    return (0.1 * (jnp.sin(2 * jnp.pi * s) + jnp.cos(2 * jnp.pi * s))).astype(dtype)


def _spectral_operators(n: int, dtype):
    kx, ky = wavenumber_grid((n, n), zero_nyquist=True, dtype=dtype)
    k2x, k2y = wavenumber_grid((n, n), dtype=dtype)
    k2 = k2x**2 + k2y**2
    # ψ̂ = ω̂ / |k|²; the mean mode of ψ is free and set to zero
    inv_k2 = jnp.where(k2 > 0, 1.0 / jnp.where(k2 > 0, k2, 1.0), 0.0)
    return kx, ky, k2, inv_k2, dealias_mask((n, n))


def _advection_hat(w_hat, n, kx, ky, inv_k2, mask):
    """mask · F[u·∇ω] from ω̂ (rfft2 layout): four inverse transforms, one forward."""
    psi_hat = w_hat * inv_k2
    # u = ∂ψ/∂y, v = −∂ψ/∂x, and the two components of ∇ω
    stacked = jnp.stack([1j * ky * psi_hat, -1j * kx * psi_hat, 1j * kx * w_hat, 1j * ky * w_hat])
    u, v, wx, wy = jnp.fft.irfft2(stacked, s=(n, n))
    return jnp.where(mask, jnp.fft.rfft2(u * wx + v * wy), 0.0)


def _check_vorticity(w: Array, what: str) -> int:
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"{what}: expected a square n x n vorticity field, got shape {w.shape}")
    if w.shape[0] < 8:
        raise ValueError(f"{what}: the grid needs at least 8 points per axis, got {w.shape[0]}")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"{what}: expected a real floating field, got dtype {w.dtype}")
    return w.shape[0]


@jax.jit
def velocity(w: Float[Array, "n n"]) -> Float[Array, "2 n n"]:
    """The velocity (u, v) = (∂ψ/∂y, −∂ψ/∂x), −Δψ = ω, of a periodic vorticity field."""
    n = _check_vorticity(w, "velocity")
    kx, ky, _, inv_k2, _ = _spectral_operators(n, w.dtype)
    psi_hat = jnp.fft.rfft2(w) * inv_k2
    return jnp.fft.irfft2(jnp.stack([1j * ky * psi_hat, -1j * kx * psi_hat]), s=(n, n))


@jax.jit
def advection(w: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """The 2/3-dealiased pseudo-spectral u·∇ω of a periodic vorticity field."""
    n = _check_vorticity(w, "advection")
    kx, ky, _, inv_k2, mask = _spectral_operators(n, w.dtype)
    return jnp.fft.irfft2(_advection_hat(jnp.fft.rfft2(w), n, kx, ky, inv_k2, mask), s=(n, n))


class NavierStokesSolver(eqx.Module):
    """Pseudo-spectral CN/Heun solver of the FNO paper's 2-D vorticity equation.

    Solves on an n × n grid with steps no larger than `dt` (each record interval is split
    into equal steps), and returns ω at t = record_interval, 2 record_interval, ...,
    t_final, subsampled to n_out × n_out (every (n / n_out)-th point). The paper: n = 256,
    n_out = 64, dt = 1e-4, records every time unit, ν = 1e-3 (T = 50), 1e-4 (T = 30),
    1e-5 (T = 20). Stability of the explicit advection needs dt · max|u| · (2π n / 3) ≲ 1.
    """

    n: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)
    viscosity: float
    dt: float = eqx.field(static=True)
    t_final: float = eqx.field(static=True)
    record_interval: float = eqx.field(static=True)
    forcing: Float[Array, "n n"]

    def __init__(
        self,
        n: int = 256,
        viscosity: float = 1e-3,
        *,
        t_final: float = 50.0,
        dt: float = 1e-4,
        n_out: int = 64,
        record_interval: float = 1.0,
        forcing: str | Array = "fno",
        dtype=jnp.float32,
    ):
        if int(n) != n or n < 8:
            raise ValueError(f"the grid needs at least 8 points per axis, got n = {n}")
        if int(n_out) != n_out or n_out < 1 or n % n_out:
            raise ValueError(f"n_out must divide n = {n} to subsample, got n_out = {n_out}")
        if not (viscosity >= 0 and math.isfinite(viscosity)):
            raise ValueError(f"viscosity must be non-negative and finite, got {viscosity}")
        if not record_interval > 0:
            raise ValueError(f"record_interval must be positive, got {record_interval}")
        if not 0 < dt <= record_interval:
            raise ValueError(f"dt must be in (0, record_interval = {record_interval}], got {dt}")
        records = t_final / record_interval
        if not (t_final > 0 and abs(records - round(records)) < 1e-9 * max(records, 1.0)):
            raise ValueError(
                f"t_final must be a positive multiple of record_interval = {record_interval}, "
                f"got {t_final}"
            )
        self.n, self.n_out = int(n), int(n_out)
        self.viscosity = float(viscosity)
        self.dt, self.t_final, self.record_interval = (
            float(dt),
            float(t_final),
            float(record_interval),
        )
        if isinstance(forcing, str):
            if forcing not in ("fno", "none"):
                raise ValueError(f"forcing must be 'fno', 'none' or an array, got {forcing!r}")
            zeros = jnp.zeros((self.n, self.n), dtype)
            self.forcing = fno_forcing(self.n, dtype=dtype) if forcing == "fno" else zeros
        else:
            forcing = jnp.asarray(forcing)
            if forcing.shape != (self.n, self.n):
                raise ValueError(
                    f"forcing should have shape {(self.n, self.n)}, got {forcing.shape}"
                )
            # on a torus ∫ω = 0 for a periodic velocity, so a forcing with a mean is inconsistent
            if not isinstance(forcing, jax.core.Tracer):
                scale = float(jnp.max(jnp.abs(forcing)))
                mean = abs(float(jnp.mean(forcing)))
                if not math.isfinite(scale) or mean > 1e-6 * scale:
                    raise ValueError(
                        f"forcing must be finite with zero mean over the torus, got mean {mean:.3g}"
                    )
            self.forcing = forcing

    @property
    def steps_per_record(self) -> int:
        return max(1, math.ceil(self.record_interval / self.dt - 1e-9))

    @property
    def n_records(self) -> int:
        return round(self.t_final / self.record_interval)

    def __call__(
        self, w0: Float[Array, "n n"]
    ) -> tuple[Float[Array, "n_out n_out"], Float[Array, "t n_out n_out"]]:
        """(ω(0), [ω(t_1), ..., ω(t_final)]) on the n_out grid, for one initial vorticity."""
        n = _check_vorticity(w0, "NavierStokesSolver")
        if n != self.n:
            raise ValueError(
                f"initial vorticity should have shape {(self.n, self.n)}, got {w0.shape}"
            )
        if not isinstance(w0, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w0))):
            raise ValueError("initial vorticity has NaN or inf values")
        dtype = w0.dtype
        kx, ky, k2, inv_k2, mask = _spectral_operators(n, dtype)
        h = jnp.asarray(self.record_interval / self.steps_per_record, dtype)
        z = h * self.viscosity * k2
        implicit = 1.0 / (1.0 + 0.5 * z)
        f_hat = jnp.fft.rfft2(self.forcing.astype(dtype))

        # The CN/Heun update in increment form, ω̂ⁿ⁺¹ = ω̂ⁿ + (h R − z ω̂ⁿ) / (1 + z/2), equal to
        # the ratio form of the module docstring: with z = hν|k|² ~ 1e-6, the factor
        # (1 − z/2) / (1 + z/2) would carry a 1 % error in its decay rate in float32, a bias
        # that adds up over 10⁴ steps; the increment keeps only unbiased rounding.
        def step(w_hat, _):
            n0 = _advection_hat(w_hat, n, kx, ky, inv_k2, mask)
            linear = h * f_hat - z * w_hat
            predictor = w_hat + implicit * (linear - h * n0)
            n1 = _advection_hat(predictor, n, kx, ky, inv_k2, mask)
            return w_hat + implicit * (linear - 0.5 * h * (n0 + n1)), None

        def record(w_hat, _):
            w_hat, _ = jax.lax.scan(step, w_hat, None, length=self.steps_per_record)
            w = jnp.fft.irfft2(w_hat, s=(n, n)).astype(dtype)
            return w_hat, subsample_periodic(w, self.n_out)

        _, snapshots = jax.lax.scan(record, jnp.fft.rfft2(w0), None, length=self.n_records)
        snapshots = eqx.error_if(
            snapshots,
            ~jnp.all(jnp.isfinite(snapshots)),
            "Navier-Stokes solution became non-finite: the initial vorticity had NaN/inf or "
            "the step dt is beyond the advective stability limit",
        )
        return subsample_periodic(w0, self.n_out), snapshots
