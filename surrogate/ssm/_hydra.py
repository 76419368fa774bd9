"""Hydra: a bidirectional selective SSM as a quasiseparable matrix mixer.

Hwang, Lahoti, Dao & Gu 2024, "Hydra: bidirectional state space models through generalized
matrix mixers". A causal selective SSM (Mamba-2's SSD, Dao & Gu 2024) is a lower-triangular
semiseparable matrix applied to the sequence, SS(x)_i = Σ_{j<=i} C_iᵀ a_i ⋯ a_{j+1} B_j Δ_j x_j,
with a per-step scalar decay a_k = e^{Δ_k A} per head and B_k, C_k, Δ_k computed from the
input at step k. Hydra adds the same construction run backwards and one diagonal:

    y = shift(SS_f(x)) + flip(shift(SS_b(flip(x)))) + δ ⊙ x,   shift(z)_i = z_{i−1}, z_{−1} = 0,

which is the quasiseparable matrix (in the generator form of Eidelman & Gohberg)

    M_ij = C_{i−1}ᵀ (a_{i−1} ⋯ a_{j+1}) B_j Δ_j      for i > j   (forward scan, shifted)
    M_ii = δ_i                                        (the one, shared, diagonal)
    M_ij = C̄_{i+1}ᵀ (ā_{i+1} ⋯ ā_{j−1}) B̄_j Δ̄_j      for i < j   (backward scan, shifted)

(bars: the backward direction's own projections). The shifts drop both scans' diagonals,
which would otherwise count the diagonal twice, and leave it to δ_i = d + W_D x_i, which is
richer than either scan's C_iᵀB_iΔ_i. Both directions share A; each has its own Δ, B and C
projections, as in the reference implementation. This module is the sequence mixer only:
the short convolution, gate, norm and projections of a full Hydra block are left to
`SSMBlock` (GELU, GLU mixing, LayerNorm, residual).

Each scan is computed in SSD's chunked form (Dao & Gu 2024, Sec. 6): inside blocks of T
steps a masked T × T product, between blocks a `lax.scan` over the L/T block states.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from ._init import log_uniform_dt


class HydraSteps(NamedTuple):
    """Per-step parameters of both directions (index 0 forward, 1 backward), original time."""

    delta: Float[Array, "2 length heads"]  # Δ_k > 0
    log_a: Float[Array, "2 length heads"]  # log a_k = Δ_k A < 0
    b: Float[Array, "2 length state"]
    c: Float[Array, "2 length state"]
    diag: Float[Array, "length heads"]  # δ_k


def ssd_chunked(
    x: Float[Array, "length heads hd"],
    delta: Float[Array, "length heads"],
    log_a: Float[Array, "length heads"],
    b: Float[Array, "length state"],
    c: Float[Array, "length state"],
    chunk: int,
) -> Float[Array, "length heads hd"]:
    """SS(x)_i = Σ_{j<=i} C_iᵀ (Π_{j<k<=i} a_k) B_j Δ_j x_j by blocks of `chunk` steps."""
    length = x.shape[0]
    t = min(chunk, length)
    m = -(-length // t)
    pad = m * t - length  # zero steps at the end change nothing before them

    def blocks(z):
        return jnp.pad(z, ((0, pad),) + ((0, 0),) * (z.ndim - 1)).reshape(m, t, *z.shape[1:])

    xd = blocks(x * delta[..., None])
    b, c = blocks(b), blocks(c)
    cum = jnp.cumsum(blocks(log_a), axis=1)  # (m, t, heads): log a_1 ⋯ a_k inside a block
    # inside a block: Σ_{s<=k} (C_k·B_s) e^{cum_k − cum_s} Δ_s x_s
    causal = (jnp.arange(t)[:, None] >= jnp.arange(t)[None, :])[None, :, :, None]
    diff = cum[:, :, None, :] - cum[:, None, :, :]
    decay = jnp.where(causal, jnp.exp(jnp.where(causal, diff, 0.0)), 0.0)
    gram = jnp.einsum("mkn,msn->mks", c, b)
    y = jnp.einsum("mks,mksh,mshp->mkhp", gram, decay, xd)
    # each block's own contribution to the state at its end, then the states entering blocks
    to_end = jnp.exp(cum[:, -1:, :] - cum)
    own = jnp.einsum("msh,mshp,msn->mhpn", to_end, xd, b)

    def body(state, block):
        decay_m, own_m = block
        return decay_m[:, None, None] * state + own_m, state

    _, entering = jax.lax.scan(body, jnp.zeros_like(own[0]), (jnp.exp(cum[:, -1]), own))
    y = y + jnp.einsum("mkn,mkh,mhpn->mkhp", c, jnp.exp(cum), entering)
    return y.reshape(m * t, *x.shape[1:])[:length]


def _shift(z: Array) -> Array:
    """z_{i−1} at i, zero at i = 0."""
    return jnp.concatenate([jnp.zeros_like(z[:1]), z[:-1]], axis=0)


def _uniform(key, shape, fan_in: int, dtype) -> Array:
    lim = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -lim, lim)


@savable
class Hydra(eqx.Module):
    """Hydra's quasiseparable mixer: two selective scans and a shared diagonal (module doc).

    A sequence is `(length, channels)`, time first; the H channels are split in `heads`
    groups (default: heads of gcd(H, 8) channels) that share a decay and Δ. `state_size` N
    is the size of B_k and C_k (shared by the heads, Mamba-2's single group). Δ_k =
    softplus(W_Δ x_k + b_Δ)/rate with b_Δ set so that Δ starts log-uniform in [dt_min,
    dt_max] (a layer trained at one sampling rate evaluated at another takes `rate`); A = −1
    at start, as in Hydra. `chunk` is SSD's block length: 16 was the fastest of 16-128 on
    CPU (forward + backward, L = 1024, H = 32, 4 heads, batch 8: 120 ms; 32: 144 ms, 64: 150
    ms, 128: 228 ms). Hydra sees the whole sequence: it cannot be stepped.

    Example:
        >>> layer = Hydra(16, 8, key=jax.random.key(0))
        >>> y = layer(jnp.ones((100, 16)))                 # (length, channels)
    """

    w_b: Float[Array, "2 state channels"]
    w_c: Float[Array, "2 state channels"]
    w_dt: Float[Array, "2 heads channels"]
    dt_bias: Float[Array, "2 heads"]
    log_neg_a: Float[Array, " heads"]
    w_d: Float[Array, "heads channels"]
    d: Float[Array, " heads"]
    channels: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    heads: int = eqx.field(static=True)
    chunk: int = eqx.field(static=True)
    dt_min: float = eqx.field(static=True)
    dt_max: float = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 16,
        *,
        heads: int | None = None,
        chunk: int = 16,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if state_size < 1:
            raise ValueError(f"state_size must be >= 1, got {state_size}")
        heads = channels // math.gcd(channels, 8) if heads is None else heads
        if heads < 1 or channels % heads:
            raise ValueError(f"heads must divide channels={channels}, got {heads}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        k_b, k_c, k_dt, k_bias, k_d = jax.random.split(key, 5)
        self.w_b = _uniform(k_b, (2, state_size, channels), channels, dtype)
        self.w_c = _uniform(k_c, (2, state_size, channels), channels, dtype)
        self.w_dt = _uniform(k_dt, (2, heads, channels), channels, dtype)
        dt0 = np.exp(np.asarray(log_uniform_dt(k_bias, 2 * heads, dt_min, dt_max, dtype), float))
        self.dt_bias = jnp.asarray(dt0 + np.log(-np.expm1(-dt0)), dtype).reshape(2, heads)
        self.log_neg_a = jnp.zeros((heads,), dtype)  # A = −1 (softplus⁻¹ above: Δ₀)
        self.w_d = _uniform(k_d, (heads, channels), channels, dtype)
        self.d = jnp.ones((heads,), dtype)
        self.channels, self.state_size, self.heads, self.chunk = channels, state_size, heads, chunk
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)

    @property
    def out_channels(self) -> int:
        return self.channels

    def _check(self, u: Array) -> None:
        if u.ndim != 2 or u.shape[1] != self.channels or u.shape[0] < 1:
            raise ValueError(
                f"expected an input of shape (length >= 1, {self.channels}), got {u.shape}"
            )

    def steps(
        self, u: Float[Array, "length channels"], *, rate: float | Float[Array, ""] = 1.0
    ) -> HydraSteps:
        """Δ_k, log a_k, B_k, C_k of both directions and δ_k, computed from the input."""
        self._check(u)
        if isinstance(rate, int | float) and not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        delta = jax.nn.softplus(jnp.einsum("ehc,lc->elh", self.w_dt, u) + self.dt_bias[:, None])
        delta = delta / rate
        log_a = -delta * jnp.exp(self.log_neg_a)[None, None]
        b = jnp.einsum("enc,lc->eln", self.w_b, u)
        c = jnp.einsum("enc,lc->eln", self.w_c, u)
        return HydraSteps(delta, log_a, b, c, u @ self.w_d.T + self.d[None])

    def __call__(
        self, u: Float[Array, "length channels"], *, rate: float | Float[Array, ""] = 1.0
    ) -> Float[Array, "length channels"]:
        s = self.steps(u, rate=rate)
        length = u.shape[0]
        x = u.reshape(length, self.heads, self.channels // self.heads)
        fwd = ssd_chunked(x, s.delta[0], s.log_a[0], s.b[0], s.c[0], self.chunk)
        rev = ssd_chunked(
            x[::-1], s.delta[1, ::-1], s.log_a[1, ::-1], s.b[1, ::-1], s.c[1, ::-1], self.chunk
        )
        y = _shift(fwd) + _shift(rev)[::-1] + s.diag[..., None] * x
        return y.reshape(length, self.channels)
