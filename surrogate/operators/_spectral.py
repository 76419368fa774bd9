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


def spectral_multiply(
    weight: Array, x: Float[Array, " cin *grid"], modes: tuple[int, ...], transform: str
) -> Float[Array, " cout *grid"]:
    """Apply the complex mode weights `weight` (cout, cin, *kept) to the real field `x`."""
    grid = x.shape[1:]
    d = len(grid)
    cdtype = jnp.complex128 if x.dtype == jnp.float64 else jnp.complex64
    letters = "abcdefgh"[:d]
    mix = f"oi{letters},i{letters}->o{letters}"
    if transform == "fft":
        axes = tuple(range(1, d + 1))
        xh = jnp.fft.rfftn(x, axes=axes)
        idx = [kept_frequencies(n, m, full=a < d - 1) for a, (n, m) in
               enumerate(zip(grid, modes, strict=True))]
        corner = xh[(slice(None), *np.ix_(*idx))]
        yk = jnp.einsum(mix, weight, corner)
        out_shape = (weight.shape[0], *grid[:-1], grid[-1] // 2 + 1)
        yh = jnp.zeros(out_shape, cdtype).at[(slice(None), *np.ix_(*idx))].set(yk)
        return jnp.fft.irfftn(yh, s=grid, axes=axes).astype(x.dtype)
    if transform == "dft":
        xk = x.astype(cdtype) if d > 1 else x
        for a in range(d - 1, -1, -1):
            freqs = kept_frequencies(grid[a], modes[a], full=a < d - 1)
            f = _forward_dft(grid[a], freqs, cdtype)
            xk = jnp.moveaxis(jnp.tensordot(xk, f, axes=[[a + 1], [0]]), -1, a + 1)
        yk = jnp.einsum(mix, weight, xk)
        for a in range(d):
            freqs = kept_frequencies(grid[a], modes[a], full=a < d - 1)
            g = _inverse_dft(grid[a], freqs, real_axis=a == d - 1, dtype=cdtype)
            if a == d - 1:
                # only the real part survives on the real-transform axis
                y = jnp.tensordot(yk.real, g.real, axes=[[a + 1], [0]]) - jnp.tensordot(
                    yk.imag, g.imag, axes=[[a + 1], [0]])
                yk = jnp.moveaxis(y, -1, a + 1)
            else:
                yk = jnp.moveaxis(jnp.tensordot(yk, g, axes=[[a + 1], [0]]), -1, a + 1)
        return yk.astype(x.dtype)
    raise ValueError(f"unknown spectral transform {transform!r}; use 'fft' or 'dft'")


class SpectralConv(eqx.Module):
    """Spectral convolution over the last d axes of a `(channels, *grid)` field."""

    weight: Array  # complex (out, in, *kept modes)
    modes: tuple[int, ...] = eqx.field(static=True)
    transform: str = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, modes: int | tuple[int, ...], *,
                 transform: str = "dft", dtype=jnp.float32, key: PRNGKeyArray):
        modes = (modes,) if isinstance(modes, int) else tuple(int(m) for m in modes)
        if not modes or min(modes) < 1:
            raise ValueError(f"modes must be positive integers, got {modes}")
        if transform not in ("fft", "dft"):
            raise ValueError(f"unknown spectral transform {transform!r}; use 'fft' or 'dft'")
        kept = tuple(2 * m for m in modes[:-1]) + (modes[-1],)
        cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
        # the FNO reference initialization: uniform(0, 1) / (in · out), real and imaginary
        scale = 1.0 / (in_channels * out_channels)
        kr, ki = jax.random.split(key)
        shape = (out_channels, in_channels, *kept)
        self.weight = (scale * (jax.random.uniform(kr, shape, dtype)
                                + 1j * jax.random.uniform(ki, shape, dtype))).astype(cdtype)
        self.modes = modes
        self.transform = transform

    @property
    def n_parameters(self) -> int:
        return 2 * math.prod(self.weight.shape)

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        if x.ndim != len(self.modes) + 1 or x.shape[0] != self.weight.shape[1]:
            raise ValueError(f"expected input (channels={self.weight.shape[1]}, "
                             f"{len(self.modes)} grid axes), got shape {x.shape}")
        check_modes(x.shape[1:], self.modes)
        return spectral_multiply(self.weight, x, self.modes, self.transform)
