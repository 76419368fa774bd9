"""Spectral convolution: multiply the lowest Fourier modes by learned complex weights.

Li et al. (2021), FNO, eq. (4): (K v)(x) = F⁻¹(R · F v)(x), with R acting on the lowest
`modes` frequencies of each axis (both signs on axes with a full transform, non-negative ones
on the last, real-transform axis) and zero elsewhere.

Two numerically equivalent transforms are provided:
- "fft": `rfftn`, gather the kept corners, mix, scatter, `irfftn`. O(N log N).
- "dft": matrix products with the truncated DFT matrices of the kept modes. O(N · modes),
  but dense matrix products run near peak on CPUs, while the FFT plus gather/scatter does
  not; with few kept modes (the usual case) this is the faster one on the CPU.
Both are exact transforms of the same linear operator, so weights are interchangeable.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


def kept_frequencies(n: int, modes: int, full: bool) -> np.ndarray:
    """Integer frequencies kept on an axis of `n` points: 0..m-1 (and -m..-1 if `full`)."""
    pos = np.arange(modes)
    return np.concatenate([pos, np.arange(-modes, 0)]) if full else pos


def check_modes(grid: tuple[int, ...], modes: tuple[int, ...]) -> None:
    if len(grid) != len(modes):
        raise ValueError(f"input has {len(grid)} grid axes {grid}, expected {len(modes)}")
    for axis, (n, m) in enumerate(zip(grid, modes, strict=True)):
        last = axis == len(grid) - 1
        need = m if last else 2 * m
        if (n // 2 + 1 if last else n) < need:
            raise ValueError(
                f"grid axis {axis} of {n} points keeps fewer than the {m} Fourier modes the "
                f"layer was built with (need n >= {2 * m - 1 if last else 2 * m})"
            )


def _forward_dft(n: int, freqs: np.ndarray, dtype) -> Array:
    # (n, k): X_k = Σ_j x_j e^{-2πi k j / n}
    j = np.arange(n)[:, None]
    return jnp.asarray(np.exp(-2j * np.pi * j * freqs[None, :] / n), dtype=dtype)


def _inverse_dft(n: int, freqs: np.ndarray, real_axis: bool, dtype) -> Array:
    # (k, n): x_j = (1/n) Σ_k c_k X_k e^{2πi k j / n}; on the real (last) axis each kept
    # frequency 0 < k < n/2 stands for itself and its conjugate, hence c_k = 2.
    j = np.arange(n)[None, :]
    mat = np.exp(2j * np.pi * freqs[:, None] * j / n) / n
    if real_axis:
        weight = np.where((freqs == 0) | (2 * freqs == n), 1.0, 2.0)
        mat = mat * weight[:, None]
    return jnp.asarray(mat, dtype=dtype)


def _along(x: Array, mat: Array, axis: int) -> Array:
    """Contract `x`'s `axis` with the first axis of `mat`, keeping the axis in place."""
    return jnp.moveaxis(jnp.tensordot(x, mat, axes=[[axis], [0]]), -1, axis)


def _complex_along(re: Array, im: Array, mat: Array, axis: int) -> tuple[Array, Array]:
    """(re + i im) times the complex matrix `mat` along `axis`, in real arithmetic."""
    mr, mi = jnp.real(mat), jnp.imag(mat)
    return (
        _along(re, mr, axis) - _along(im, mi, axis),
        _along(re, mi, axis) + _along(im, mr, axis),
    )


def spectral_multiply(
    weight: Float[Array, " 2 cout cin *kept"],
    x: Float[Array, " cin *grid"],
    modes: tuple[int, ...],
    transform: str,
) -> Float[Array, " cout *grid"]:
    """Apply complex mode weights (stored as real and imaginary parts, `weight[0]` and
    `weight[1]`) to the real field `x`."""
    grid = x.shape[1:]
    d = len(grid)
    letters = "abcdefgh"[:d]
    mix = f"oi{letters},i{letters}->o{letters}"
    wr, wi = weight[0], weight[1]
    if transform == "fft":
        axes = tuple(range(1, d + 1))
        xh = jnp.fft.rfftn(x, axes=axes)
        idx = [
            kept_frequencies(n, m, full=a < d - 1)
            for a, (n, m) in enumerate(zip(grid, modes, strict=True))
        ]
        corner = xh[(slice(None), *np.ix_(*idx))]
        yk = jnp.einsum(mix, wr + 1j * wi, corner)
        out_shape = (weight.shape[1], *grid[:-1], grid[-1] // 2 + 1)
        yh = jnp.zeros(out_shape, yk.dtype).at[(slice(None), *np.ix_(*idx))].set(yk)
        return jnp.fft.irfftn(yh, s=grid, axes=axes).astype(x.dtype)
    if transform == "dft":
        # forward: the real axis first (real input), then the full axes; all in real pairs
        cdtype = jnp.complex128 if x.dtype == jnp.float64 else jnp.complex64
        last = d
        f = _forward_dft(grid[-1], kept_frequencies(grid[-1], modes[-1], False), cdtype)
        re, im = _along(x, jnp.real(f), last), _along(x, jnp.imag(f), last)
        for a in range(d - 1):
            f = _forward_dft(grid[a], kept_frequencies(grid[a], modes[a], True), cdtype)
            re, im = _complex_along(re, im, f, a + 1)
        # mode-wise channel mixing (a complex product in real arithmetic)
        yr = jnp.einsum(mix, wr, re) - jnp.einsum(mix, wi, im)
        yi = jnp.einsum(mix, wr, im) + jnp.einsum(mix, wi, re)
        for a in range(d - 1):
            g = _inverse_dft(grid[a], kept_frequencies(grid[a], modes[a], True), False, cdtype)
            yr, yi = _complex_along(yr, yi, g, a + 1)
        g = _inverse_dft(grid[-1], kept_frequencies(grid[-1], modes[-1], False), True, cdtype)
        # only the real part survives the inverse real transform
        return (_along(yr, jnp.real(g), last) - _along(yi, jnp.imag(g), last)).astype(x.dtype)
    raise ValueError(f"unknown spectral transform {transform!r}; use 'fft' or 'dft'")


class SpectralConv(eqx.Module):
    """Spectral convolution over the last d axes of a `(channels, *grid)` field."""

    # complex weights as (real, imaginary) parts: real parameters keep optimisers honest
    # (jax.grad of a real loss w.r.t. a complex leaf is the conjugate of the descent
    # direction, which optax would follow the wrong way in the imaginary part)
    weight: Float[Array, " 2 out in *kept"]
    modes: tuple[int, ...] = eqx.field(static=True)
    transform: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, ...],
        *,
        transform: str = "dft",
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        modes = (modes,) if isinstance(modes, int) else tuple(int(m) for m in modes)
        if not modes or min(modes) < 1:
            raise ValueError(f"modes must be positive integers, got {modes}")
        if transform not in ("fft", "dft"):
            raise ValueError(f"unknown spectral transform {transform!r}; use 'fft' or 'dft'")
        kept = tuple(2 * m for m in modes[:-1]) + (modes[-1],)
        # the FNO reference initialization: uniform(0, 1) / (in · out), real and imaginary
        scale = 1.0 / (in_channels * out_channels)
        shape = (2, out_channels, in_channels, *kept)
        self.weight = scale * jax.random.uniform(key, shape, dtype)
        self.modes = modes
        self.transform = transform

    @property
    def n_parameters(self) -> int:
        return math.prod(self.weight.shape)

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        if x.ndim != len(self.modes) + 1 or x.shape[0] != self.weight.shape[2]:
            raise ValueError(
                f"expected input (channels={self.weight.shape[2]}, "
                f"{len(self.modes)} grid axes), got shape {x.shape}"
            )
        check_modes(x.shape[1:], self.modes)
        return spectral_multiply(self.weight, x, self.modes, self.transform)
