"""Three ways to run a discretised diagonal SSM over a sequence; all give the same numbers.

For one channel, x_k = Ā x_{k−1} + B̄ u_k and y_k = 2 Re(C x_k) (the D u skip is added by the
layer). With x_{−1} = x₀,

    y_k = Σ_{j≤k} K_{k−j} u_j + 2 Re(C Ā^{k+1} x₀),   K_l = 2 Re Σ_p C_p B̄_p Ā_p^l,   (1)

the convolution form of S4 (Gu et al. 2022, Eq. 4-5). The kernels:

* `ssm_fft`: K by a Vandermonde product, then an FFT convolution of length >= 2L − 1:
  O(L log L) after the O(HPL) kernel. The Vandermonde product is split in blocks,
  Ā^{Tm + t} = Ā^{Tm} Ā^t, so that it becomes a real (2P × M)ᵀ(2P × T) matrix product per
  channel and only P(T + M) ≈ 2P√L exponentials are taken, not PL.
* `ssm_scan`: the recurrence with `jax.lax.scan`. `chunk=1` is the plain step-by-step loop.
  With `chunk=T > 1` the sequence is cut in blocks of T steps (the chunked or "state passing"
  form of Mamba-2, Dao & Gu 2024, Sec. 6): inside a block, (1) is a T × T lower-triangular
  Toeplitz product; the block's own contribution to the state is a (2P × T) product; only
  the L/T block-to-block states x ← Ā^T x + s go through the sequential scan. Everything
  heavy is a batched matrix product, which is what a CPU (or GPU) is fast at.
* `ssm_assoc`: the same recurrence by `jax.lax.associative_scan` (Blelloch 1990; S5, Smith et
  al. 2023) on pairs (a, b) ∘ (a', b') = (a a', a' b + b'); `chunk=1` scans the L steps,
  `chunk=T` the L/T block states of the chunked form.

Every kernel takes the state entering the sequence and returns the state after its last step,
so a sequence cut in pieces and run piece after piece gives the same outputs as the whole.
Arrays are (length, channels) for inputs and outputs, (channels, modes) for states.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from ._discretize import DiscreteSSM, power, powers

KERNELS = ("auto", "fft", "scan", "assoc")


def _cat(re: Array, im: Array) -> Array:
    """Real layout of a complex (H, P, ...) array: (H, 2P, ...)."""
    return jnp.concatenate([re, im], axis=1)


def _times(w: Complex[Array, "h p"], re: Array, im: Array) -> tuple[Array, Array]:
    """(w[..., None] · (re + i im)) in real arithmetic."""
    wr, wi = jnp.real(w)[..., None], jnp.imag(w)[..., None]
    return wr * re - wi * im, wr * im + wi * re


def _blocks(length: int) -> tuple[int, int]:
    """Block size T ≈ √L and number of blocks M of the Vandermonde products."""
    t = max(1, math.isqrt(length - 1) + 1) if length > 1 else 1
    return t, -(-length // t)


def vandermonde(
    disc: DiscreteSSM, w: Complex[Array, "channels modes"], length: int
) -> Float[Array, "channels length"]:
    """V_hl = Re Σ_p w_hp Ā_hp^l for l < length, by blocks Ā^{Tm+t} = Ā^{Tm} Ā^t."""
    t, m = _blocks(length)
    in_re, in_im = powers(disc, t)
    out_re, out_im = _times(w, *powers(disc, m, t))
    # Re(o · i) = o_re i_re − o_im i_im: one real (M × 2P)(2P × T) product per channel.
    v = jnp.matmul(jnp.swapaxes(_cat(out_re, -out_im), 1, 2), _cat(in_re, in_im))
    return v.reshape(v.shape[0], m * t)[:, :length]


def _sum_of_powers(
    disc: DiscreteSSM, v: Float[Array, "channels n"]
) -> Complex[Array, "channels modes"]:
    """Σ_s Ā^s v_s (the transpose of `vandermonde`), by the same blocks."""
    h, n = v.shape
    t, m = _blocks(n)
    blocks = jnp.pad(v, ((0, 0), (0, m * t - n))).reshape(h, m, t)
    in_re, in_im = powers(disc, t)
    z = jnp.swapaxes(jnp.matmul(blocks, jnp.swapaxes(_cat(in_re, in_im), 1, 2)), 1, 2)
    p = in_re.shape[1]
    out_re, out_im = powers(disc, m, t)
    re = jnp.sum(out_re * z[:, :p] - out_im * z[:, p:], axis=-1)
    im = jnp.sum(out_re * z[:, p:] + out_im * z[:, :p], axis=-1)
    return jax.lax.complex(re, im)


def ssm_kernel(disc: DiscreteSSM, length: int) -> Float[Array, "channels length"]:
    """Convolution kernel K_l = 2 Re Σ_p C_p B̄_p Ā_p^l of Eq. (1)."""
    return 2.0 * vandermonde(disc, disc.c * disc.b_bar, length)


def causal_conv(
    u: Float[Array, "length channels"], k: Float[Array, "channels length"]
) -> Float[Array, "length channels"]:
    """y_t = Σ_{s<=t} k_{t−s} u_s per channel, by real FFTs of length >= 2L − 1."""
    length = u.shape[0]
    n = 1 << (2 * length - 2).bit_length()
    y = jnp.fft.irfft(jnp.fft.rfft(u.T, n) * jnp.fft.rfft(k, n), n)
    return y[:, :length].T.astype(u.dtype)


def _zero_state(disc: DiscreteSSM) -> Complex[Array, "channels modes"]:
    return jnp.zeros_like(disc.b_bar)


def ssm_fft(
    disc: DiscreteSSM,
    u: Float[Array, "length channels"],
    state: Complex[Array, "channels modes"] | None = None,
) -> tuple[Complex[Array, "channels modes"], Float[Array, "length channels"]]:
    """(final state, y) by the convolution form (1); `state=None` means x₀ = 0."""
    length = u.shape[0]
    y = causal_conv(u, ssm_kernel(disc, length))
    # x_{L−1} = Ā^L x₀ + B̄ Σ_s Ā^s u_{L−1−s}
    final = disc.b_bar * _sum_of_powers(disc, u[::-1].T)
    if state is not None:
        y = y + 2.0 * vandermonde(disc, disc.c * disc.a_bar * state, length).T
        final = final + power(disc, length) * state
    return final, y


def ssm_step(
    disc: DiscreteSSM, state: Complex[Array, "channels modes"], u_t: Float[Array, " channels"]
) -> tuple[Complex[Array, "channels modes"], Float[Array, " channels"]]:
    """One step of the recurrence: x ← Ā x + B̄ u_t, y_t = 2 Re(C x)."""
    state = disc.a_bar * state + disc.b_bar * u_t[:, None]
    return state, 2.0 * jnp.sum(jnp.real(disc.c * state), axis=1)


def _recurrence(disc: DiscreteSSM, u: Array, state: Array) -> tuple[Array, Array]:
    # Real and imaginary parts carried separately: XLA's CPU loops are several times
    # faster on real arrays than on complex ones.
    a = disc.a_bar
    ar, ai = jnp.real(a), jnp.imag(a)
    br, bi = jnp.real(disc.b_bar), jnp.imag(disc.b_bar)
    cr, ci = jnp.real(disc.c), jnp.imag(disc.c)

    def body(x, u_t):
        xr, xi = x
        ub = u_t[:, None]
        xr, xi = ar * xr - ai * xi + br * ub, ar * xi + ai * xr + bi * ub
        return (xr, xi), 2.0 * jnp.sum(cr * xr - ci * xi, axis=1)

    (xr, xi), y = jax.lax.scan(body, (jnp.real(state), jnp.imag(state)), u)
    return jax.lax.complex(xr, xi), y


def _states_by_scan(a_t: Array, s: Array, x0: Array) -> Array:
    """States entering each block (H, M, P): x_{m+1} = Ā^T x_m + s_m, by a sequential scan."""
    ar, ai = jnp.real(a_t), jnp.imag(a_t)

    def body(x, s_m):
        xr, xi = x
        return (ar * xr - ai * xi + s_m[0], ar * xi + ai * xr + s_m[1]), x

    s = jnp.moveaxis(s, 1, 0)
    _, (xr, xi) = jax.lax.scan(body, (jnp.real(x0), jnp.imag(x0)), (jnp.real(s), jnp.imag(s)))
    return jnp.moveaxis(jax.lax.complex(xr, xi), 0, 1)


def _combine(left: tuple[Array, ...], right: tuple[Array, ...]) -> tuple[Array, ...]:
    # Composition of affine maps x -> a x + b (first `left`, then `right`), complex numbers
    # as (re, im) pairs: (a, b) o (a', b') = (a a', a' b + b').
    lar, lai, lbr, lbi = left
    rar, rai, rbr, rbi = right
    return (
        lar * rar - lai * rai,
        lar * rai + lai * rar,
        rar * lbr - rai * lbi + rbr,
        rar * lbi + rai * lbr + rbi,
    )


def _states_by_assoc(a_t: Array, s: Array, x0: Array) -> Array:
    """The same states by a parallel prefix over the blocks, x₀ folded into the first."""
    s = jnp.moveaxis(s, 1, 0)
    s = s.at[0].add(a_t * x0)
    ar = jnp.broadcast_to(jnp.real(a_t), s.shape)
    ai = jnp.broadcast_to(jnp.imag(a_t), s.shape)
    _, _, br, bi = jax.lax.associative_scan(_combine, (ar, ai, jnp.real(s), jnp.imag(s)))
    after = jax.lax.complex(br, bi)
    return jnp.moveaxis(jnp.concatenate([x0[None], after[:-1]], axis=0), 0, 1)


def _chunked(disc: DiscreteSSM, u: Array, state: Array, chunk: int, parallel: bool):
    length, h = u.shape
    t = min(chunk, length)
    m = -(-length // t)
    last = length - (m - 1) * t  # steps in the last block; the rest of it is zero padding
    blocks = jnp.pad(u, ((0, m * t - length), (0, 0))).T.reshape(h, m, t)
    pw_re, pw_im = powers(disc, t + 1)  # Ā^0, ..., Ā^T
    p = pw_re.shape[1]

    # Inside a block, Eq. (1) with x₀ = 0: y_{m,t} = Σ_s u_{m,s} K_{t−s}, a Toeplitz product.
    k = 2.0 * jnp.sum(_times(disc.c * disc.b_bar, pw_re[..., :t], pw_im[..., :t])[0], axis=1)
    lag = jnp.arange(t)[None, :] - jnp.arange(t)[:, None]  # [s, t] -> t − s
    toeplitz = jnp.where(lag[None] >= 0, k[:, jnp.maximum(lag, 0)], 0.0)
    y = jnp.matmul(blocks, toeplitz)

    # Each block's own contribution to the state at its end: s_m = Σ_s Ā^{T−1−s} B̄ u_{m,s}.
    g_re, g_im = _times(disc.b_bar, pw_re[..., t - 1 :: -1], pw_im[..., t - 1 :: -1])
    s = jnp.matmul(blocks, jnp.swapaxes(_cat(g_re, g_im), 1, 2))
    s = jax.lax.complex(s[..., :p], s[..., p:])
    a_t = jax.lax.complex(pw_re[..., t], pw_im[..., t])
    entering = (_states_by_assoc if parallel else _states_by_scan)(a_t, s, state)

    # The entering state's contribution: y_{m,t} += 2 Re Σ_p C_p Ā_p^{t+1} x_{m,p}.
    e_re, e_im = _times(disc.c, pw_re[..., 1:], pw_im[..., 1:])
    ent = jnp.concatenate([jnp.real(entering), jnp.imag(entering)], axis=-1)
    y = y + 2.0 * jnp.matmul(ent, _cat(e_re, -e_im))
    y = y.reshape(h, m * t)[:, :length].T

    # The state after the last real step (the padding of the last block is not run).
    gl_re, gl_im = _times(disc.b_bar, pw_re[..., last - 1 :: -1], pw_im[..., last - 1 :: -1])
    u_last = blocks[:, m - 1, :last]
    own = jax.lax.complex(
        jnp.einsum("hps,hs->hp", gl_re[..., :last], u_last),
        jnp.einsum("hps,hs->hp", gl_im[..., :last], u_last),
    )
    final = jax.lax.complex(pw_re[..., last], pw_im[..., last]) * entering[:, m - 1] + own
    return final, y


def ssm_scan(
    disc: DiscreteSSM,
    u: Float[Array, "length channels"],
    state: Complex[Array, "channels modes"] | None = None,
    *,
    chunk: int = 1,
) -> tuple[Complex[Array, "channels modes"], Float[Array, "length channels"]]:
    """(final state, y) by `lax.scan`: step by step (`chunk=1`) or block by block."""
    state = _zero_state(disc) if state is None else state
    if chunk == 1:
        return _recurrence(disc, u, state)
    return _chunked(disc, u, state, chunk, parallel=False)


def _assoc_steps(disc: DiscreteSSM, u: Array, state: Array) -> tuple[Array, Array]:
    # One affine map x -> Ā x + B̄ u_t per step, in (re, im) pairs; x₀ folded into the first.
    a = disc.a_bar
    shape = (u.shape[0], *a.shape)
    s = disc.b_bar[None] * u[:, :, None]
    s = s.at[0].add(a * state)
    ar = jnp.broadcast_to(jnp.real(a)[None], shape)
    ai = jnp.broadcast_to(jnp.imag(a)[None], shape)
    _, _, xr, xi = jax.lax.associative_scan(_combine, (ar, ai, jnp.real(s), jnp.imag(s)))
    cr, ci = jnp.real(disc.c)[None], jnp.imag(disc.c)[None]
    return jax.lax.complex(xr[-1], xi[-1]), 2.0 * jnp.sum(cr * xr - ci * xi, axis=-1)


def ssm_assoc(
    disc: DiscreteSSM,
    u: Float[Array, "length channels"],
    state: Complex[Array, "channels modes"] | None = None,
    *,
    chunk: int = 1,
) -> tuple[Complex[Array, "channels modes"], Float[Array, "length channels"]]:
    """(final state, y) by `lax.associative_scan` over steps (`chunk=1`) or blocks."""
    state = _zero_state(disc) if state is None else state
    if chunk == 1:
        return _assoc_steps(disc, u, state)
    return _chunked(disc, u, state, chunk, parallel=True)
