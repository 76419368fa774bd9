"""S4: the normal-plus-low-rank (DPLR) state-space layer of Gu, Goel & Ré 2022.

"Efficiently modeling long sequences with structured state spaces" (ICLR 2022). Each of the H
channels is a SISO system x' = A x + B u, y = C x + D u with N real states, written in the
eigenbasis of the normal part of A as

    A = Λ − P Qᴴ,   Λ diagonal (N/2 conjugate pairs, Re λ < 0), P, Q: N × r (r = 1 or 2).

HiPPO-LegS is exactly of this form with r = 1 and Q = P (`_init.legs_nplr`), which is the
initialisation. Discretised with the bilinear transform (S4, Eq. 3),
Ā = (I − Δ/2 A)⁻¹(I + Δ/2 A), B̄ = Δ (I − Δ/2 A)⁻¹ B, and the convolution kernel
K_k = C Ā^k B̄, k < L, is computed without powering Ā (S4, Sec. 3.3 and Alg. 1):

1. The truncated generating function at the L-th roots of unity ω_j = e^{−2πij/L} is
   K̂(ω_j) = Σ_{k<L} K_k ω_j^k = C̃ (I − Ā ω_j)⁻¹ B̄ with C̃ = C (I − Ā^L) (ω_j^L = 1), and
   (I − Ā ω)⁻¹ B̄ = Δ M(ω)⁻¹ B with M(ω) = (1 − ω) I − (Δ/2)(1 + ω) A. (We keep this form,
   rather than the paper's 2/(1 + ω) [g(ω) − A]⁻¹, because it stays finite at ω = −1.)
2. M = D(ω) + s P Qᴴ with D diagonal, D_n = (1 − ω) − s λ_n, s = (Δ/2)(1 + ω), so by the
   Woodbury identity C̃ M⁻¹ B = k₀₀ − s k₀₁ (I + s k₁₁)⁻¹ k₁₀, where every k is a Cauchy
   sum Σ_n v_n w_n / D_n(ω) (k₀₀: v = C̃, w = B; k₀₁: C̃, P; k₁₀: Qᴴ, B; k₁₁: Qᴴ, P).
3. K = inverse FFT of K̂ (a real FFT: K̂ is Hermitian).

The sums run over all N modes: each kept mode n is paired with its conjugate, whose
weights are the conjugates (the low-rank term couples the two, so the halves cannot be run
apart as in S4D). C̃ needs Ā^L, computed once per call by repeated squaring of the dense
N × N matrix, which is real in the coordinates (Re z, Im z) (log₂ L real products); storing
C rather than C̃ keeps the layer independent of L and of the sampling rate, and gives the
recurrent form (`step`) for free.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from .._serialization import savable
from ._init import legs_nplr, log_uniform_dt
from ._kernels import causal_conv


def _complex(pair: Float[Array, "... 2"]) -> Complex[Array, "..."]:
    return jax.lax.complex(pair[..., 0], pair[..., 1])


def _pair(z) -> np.ndarray:
    return np.stack([np.real(z), np.imag(z)], axis=-1)


def _full(z: Complex[Array, "... modes"]) -> Complex[Array, "... n"]:
    """The N-state vector from its N/2 kept modes: the conjugates fill the other half."""
    return jnp.concatenate([z, jnp.conj(z)], axis=-1)


def _small_solve(m: Complex[Array, "... r r"], rhs: Complex[Array, "... r k"]) -> Array:
    """m⁻¹ rhs for r = 1 or 2 in closed form: batches of tiny systems, where LAPACK's
    batched calls cost more than the arithmetic (and two of them in one program's backward
    pass were seen to stall XLA's CPU runtime)."""
    if m.shape[-1] == 1:
        return rhs / m
    a, b, c, d = m[..., 0, :1], m[..., 0, 1:], m[..., 1, :1], m[..., 1, 1:]
    det = a * d - b * c
    r0, r1 = rhs[..., :1, :], rhs[..., 1:, :]
    return (
        jnp.concatenate(
            [(d[..., None] * r0 - b[..., None] * r1), (a[..., None] * r1 - c[..., None] * r0)],
            axis=-2,
        )
        / det[..., None]
    )


def dplr_kernel(
    lam: Complex[Array, "h modes"],
    p: Complex[Array, "h r modes"],
    q: Complex[Array, "h r modes"],
    b: Complex[Array, "h modes"],
    c_tilde: Complex[Array, "out h modes"],
    dt: Float[Array, " h"],
    length: int,
) -> Float[Array, "out h length"]:
    """K_k = C Ā^k B̄ (k < length) from C̃ = C (I − Ā^L) by Cauchy sums and Woodbury (above).

    Arrays hold the kept modes only; `c_tilde` may hold several readouts (bidirectional).
    """
    n_out, rank = c_tilde.shape[0], p.shape[1]
    freqs = length // 2 + 1
    omega = jnp.exp(-2j * math.pi * jnp.arange(freqs, dtype=dt.dtype) / length).astype(lam.dtype)
    s = 0.5 * dt[:, None] * (1.0 + omega)[None]  # (h, f)
    den = (1.0 - omega)[None, :, None] - s[..., None] * lam[:, None, :]
    den_conj = (1.0 - omega)[None, :, None] - s[..., None] * jnp.conj(lam)[:, None, :]
    left = jnp.concatenate([jnp.swapaxes(c_tilde, 0, 1), jnp.conj(q)], axis=1)  # (h, o+r, m)
    right = jnp.concatenate([b[:, None], p], axis=1)  # (h, 1+r, m)
    w = left[:, :, None, :] * right[:, None, :, :]
    # every Cauchy sum at once, the conjugate modes with the conjugate weights
    k = jnp.einsum("hijm,hfm->hfij", w, 1.0 / den) + jnp.einsum(
        "hijm,hfm->hfij", jnp.conj(w), 1.0 / den_conj
    )
    k00, k01 = k[..., :n_out, 0], k[..., :n_out, 1:]
    k10, k11 = k[..., n_out:, :1], k[..., n_out:, 1:]
    eye = jnp.eye(rank, dtype=k.dtype)[None, None]
    inner = _small_solve(eye + s[..., None, None] * k11, k10)  # (h, f, r, 1)
    khat = dt[:, None, None] * (k00 - s[..., None] * (k01 @ inner)[..., 0])  # (h, f, out)
    kernel = jnp.fft.irfft(khat, n=length, axis=1)  # (h, length, out)
    return jnp.moveaxis(kernel, 2, 0).astype(dt.dtype)


def _vector_times_power(v: Array, a: Array, n: int) -> Array:
    """v Aⁿ for a static n by repeated squaring (powers of one matrix commute)."""
    while n:
        if n & 1:
            v = jnp.einsum("...hi,hij->...hj", v, a)
        n >>= 1
        if n:
            a = a @ a
    return v


@savable
class S4(eqx.Module):
    """H SISO DPLR state-space systems A = Λ − PQᴴ, bilinear, convolution by Cauchy/Woodbury.

    A sequence is `(length, channels)`, time first. `state_size` N is the real state size
    of each channel (N/2 kept modes). `rank` r is 1 or 2: HiPPO-LegS needs 1; with 2 the
    second column of P starts at 1 % of the first times random complex factors (A within
    1e-4 of HiPPO-LegS, and away from the saddle at P₂ = 0 that would never train). With
    `tied=True` Q = P, so the Hermitian part Re Λ − PPᴴ of A is negative definite and every
    Ā is stable whatever the optimiser does ("How to train your HiPPO", Gu et al. 2023);
    `tied=False` trains Q apart (the original S4). `bidirectional` adds a second readout
    C_b of the same system run backwards, summed (`merge="sum"`) or stacked ("concat").
    `rate` scales Δ to Δ/rate. `step` is the recurrent form with the dense Ā (N² per step).

    Example:
        >>> layer = S4(8, 32, key=jax.random.key(0))
        >>> y = layer(jnp.ones((1000, 8)))
    """

    log_neg_real: Float[Array, "channels modes"]
    imag: Float[Array, "channels modes"]
    p: Float[Array, "channels rank modes 2"]
    q: Float[Array, "channels rank modes 2"] | None
    b: Float[Array, "channels modes 2"]
    c: Float[Array, "directions channels modes 2"]
    d: Float[Array, " channels"]
    log_dt: Float[Array, " channels"]
    channels: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)
    tied: bool = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    merge: str = eqx.field(static=True)
    dt_min: float = eqx.field(static=True)
    dt_max: float = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        *,
        rank: int = 1,
        tied: bool = True,
        bidirectional: bool = False,
        merge: str = "sum",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if rank not in (1, 2):
            raise ValueError(f"rank must be 1 or 2, got {rank}")
        if merge not in ("sum", "concat"):
            raise ValueError(f"merge must be 'sum' or 'concat', got {merge!r}")
        lam, _, p, b = legs_nplr(state_size)
        k_dt, k_c, k_p, k_d = jax.random.split(key, 4)
        n_dir = 2 if bidirectional else 1
        rows = [p]
        if rank == 2:
            noise = np.asarray(jax.random.normal(k_p, (2, p.size)), np.float64)
            rows.append(0.01 * p * (noise[0] + 1j * noise[1]) / np.sqrt(2.0))
        low = np.broadcast_to(np.stack(rows), (channels, rank, p.size))
        c = np.asarray(jax.random.normal(k_c, (n_dir, channels, p.size, 2)), np.float64)
        self.log_neg_real = jnp.asarray(np.broadcast_to(np.log(-lam.real), low[:, 0].shape), dtype)
        self.imag = jnp.asarray(np.broadcast_to(lam.imag, low[:, 0].shape), dtype)
        self.p = jnp.asarray(_pair(low), dtype)
        self.q = None if tied else jnp.asarray(_pair(low), dtype)
        self.b = jnp.asarray(_pair(np.broadcast_to(b, low[:, 0].shape)), dtype)
        self.c = jnp.asarray(c / np.sqrt(2.0), dtype)  # C ~ CN(0, 1) as in S4D-LegS
        self.d = jax.random.normal(k_d, (channels,), dtype)
        self.log_dt = log_uniform_dt(k_dt, channels, dt_min, dt_max, dtype)
        self.channels, self.state_size, self.rank = channels, state_size, rank
        self.tied, self.bidirectional, self.merge = bool(tied), bool(bidirectional), merge
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)

    @property
    def out_channels(self) -> int:
        return 2 * self.channels if self.bidirectional and self.merge == "concat" else self.channels

    @property
    def lam(self) -> Complex[Array, "channels modes"]:
        return jax.lax.complex(-jnp.exp(self.log_neg_real), self.imag)

    def _step_size(self, rate) -> Float[Array, " channels"]:
        if isinstance(rate, int | float) and not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        return jnp.exp(self.log_dt) / rate

    def discrete(self, rate: float | Float[Array, ""] = 1.0):
        """Dense Ā (H, N, N), B̄ (H, N) and C (directions, H, N) in the eigenbasis.

        I − Δ/2 A = diag(1 − Δλ/2) + (Δ/2) P Qᴴ is inverted by the Woodbury identity
        (an r × r system), as S4 does for its recurrent form (Gu et al. 2022, App. C.2).
        """
        lam, p, b, c = _full(self.lam), _full(_complex(self.p)), _complex(self.b), _complex(self.c)
        q = p if self.q is None else _full(_complex(self.q))
        dt = self._step_size(rate)[:, None]
        d_inv = 1.0 / (1.0 - 0.5 * dt * lam)  # (h, n)
        low = jnp.einsum("hri,hrj->hij", p, q.conj())  # P Qᴴ
        right = jax.vmap(jnp.diag)(1.0 + 0.5 * dt * lam) - 0.5 * dt[..., None] * low
        right = jnp.concatenate([right, _full(b)[..., None]], axis=-1)  # [I + Δ/2 A | B]
        # (D + Δ/2 P Qᴴ)⁻¹ X = D⁻¹X − D⁻¹P (2/Δ + Qᴴ D⁻¹ P)⁻¹ Qᴴ D⁻¹X
        dx = d_inv[..., None] * right
        eye = jnp.eye(p.shape[1], dtype=p.dtype)[None]
        small = 2.0 / dt[..., None] * eye + jnp.einsum("hri,hi,hsi->hrs", q.conj(), d_inv, p)
        corr = _small_solve(small, jnp.einsum("hri,hij->hrj", q.conj(), dx))
        out = dx - jnp.einsum("hi,hri,hrj->hij", d_inv, p, corr)
        return out[..., :-1], dt * out[..., -1], _full(c)

    def kernel(
        self, length: int, rate: float | Float[Array, ""] = 1.0
    ) -> Float[Array, "directions channels length"]:
        """K_k = C Ā^k B̄ for k < length, by the Cauchy/Woodbury route (module docstring)."""
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        a_bar, _, c = self.discrete(rate)
        m = self.imag.shape[-1]
        # Ā is conjugate-symmetric ([[E, F], [F̄, Ē]] over kept | conjugate modes), so in the
        # coordinates (Re z, Im z) it is the real [[Re(E+F), −Im(E−F)], [Im(E+F), Re(E−F)]]:
        # Ā^L by real squarings (4× fewer flops), and C Ā^L = C W⁻¹ (Ā_real)^L W with
        # C W⁻¹ = [2 Re c, −2 Im c] and the kept half of v W equal to (v₁ − i v₂)/2.
        e, f = a_bar[:, :m, :m], a_bar[:, :m, m:]
        top = jnp.concatenate([jnp.real(e + f), -jnp.imag(e - f)], axis=-1)
        bottom = jnp.concatenate([jnp.imag(e + f), jnp.real(e - f)], axis=-1)
        a_real = jnp.concatenate([top, bottom], axis=-2)
        ck = c[..., :m]
        v = _vector_times_power(
            jnp.concatenate([2.0 * jnp.real(ck), -2.0 * jnp.imag(ck)], axis=-1), a_real, length
        )
        c_tilde = ck - 0.5 * jax.lax.complex(v[..., :m], -v[..., m:])
        p = _complex(self.p)
        q = p if self.q is None else _complex(self.q)
        return dplr_kernel(self.lam, p, q, _complex(self.b), c_tilde, self._step_size(rate), length)

    def __call__(
        self, u: Float[Array, "length channels"], *, rate: float | Float[Array, ""] = 1.0
    ) -> Float[Array, "length out"]:
        if u.ndim != 2 or u.shape[1] != self.channels or u.shape[0] < 1:
            raise ValueError(
                f"expected an input of shape (length >= 1, {self.channels}), got {u.shape}"
            )
        k = self.kernel(u.shape[0], rate)
        y = causal_conv(u, k[0]) + u * self.d[None]
        if not self.bidirectional:
            return y
        y_b = causal_conv(u[::-1], k[1])[::-1]
        return jnp.concatenate([y, y_b], axis=1) if self.merge == "concat" else y + y_b

    def init_state(self) -> Complex[Array, "channels n"]:
        """The zero state, (channels, state_size) complex (all N states, eigenbasis)."""
        shape = (self.channels, self.state_size)
        return jnp.zeros(shape, jnp.result_type(self.imag.dtype, jnp.complex64))

    def step(
        self,
        state: Complex[Array, "channels n"],
        u_t: Float[Array, " channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
    ) -> tuple[Complex[Array, "channels n"], Float[Array, " channels"]]:
        """One step of the recurrence x ← Āx + B̄u_t, y_t = Re(C x) + D u_t."""
        if self.bidirectional:
            raise ValueError("a bidirectional S4 looks at the future and cannot be stepped")
        if u_t.shape != (self.channels,):
            raise ValueError(f"expected an input of shape ({self.channels},), got {u_t.shape}")
        if state.shape != (self.channels, self.state_size):
            raise ValueError(
                f"state must have shape {(self.channels, self.state_size)}, got {state.shape}"
            )
        a_bar, b_bar, c = self.discrete(rate)
        state = jnp.einsum("hij,hj->hi", a_bar, state) + b_bar * u_t[:, None]
        return state, jnp.real(jnp.sum(c[0] * state, axis=-1)) + self.d * u_t
