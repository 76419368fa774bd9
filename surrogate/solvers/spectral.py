"""Pseudo-spectral helpers for periodic fields on [0, L)^d, d = 1, 2, 3.

A real field u on a uniform periodic grid of n points per axis is represented by its
`rfftn` coefficients û_m, m the integer mode numbers of `fftfreq` (last axis: `rfftfreq`).
The angular wavenumber of mode m on a period L is k = 2π m / L, so that

    ∂u/∂x ↔ i k û,      Δu ↔ −|k|² û,

exactly for every trigonometric polynomial the grid resolves (Canuto, Hussaini, Quarteroni
& Zang, *Spectral Methods: Fundamentals in Single Domains*, 2006, ch. 2). On an even grid the
Nyquist mode m = n/2 is a cosine with no sign, so odd derivatives of it are set to zero,
which keeps derivatives of real fields real.

Quadratic products are dealiased by Orszag's 2/3 rule (J. Atmos. Sci. 28, 1971): modes with
|m| ≥ n/3 on any axis are discarded, so that the sum of two kept modes, aliased back onto the
grid, never lands on a kept mode.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

# Wavenumbers and masks depend on the grid's shape only: they are built with numpy as static
# metadata (as jax-cfd's grids do), so that no jax operation is dispatched, or compiled, per
# shape outside the jitted transforms below.


def _check_n(n: int, what: str) -> int:
    if int(n) != n or n < 2:
        raise ValueError(f"{what} needs at least 2 grid points per axis, got {n}")
    return int(n)


def _check_length(length: float) -> float:
    if not (length > 0 and math.isfinite(length)):
        raise ValueError(f"the period `length` must be positive and finite, got {length}")
    return float(length)


def _modes(n: int, real: bool) -> np.ndarray:
    """Integer mode numbers of an `fft` (or `rfft`) of n points, as a numpy int array."""
    return np.arange(n // 2 + 1) if real else np.fft.ifftshift(np.arange(n) - n // 2)


def mode_numbers(n: int, *, real: bool = False, dtype=jnp.float32) -> Float[Array, " m"]:
    """Integer mode numbers m of an `fft` (or, with `real`, an `rfft`) of n points."""
    return jnp.asarray(_modes(_check_n(n, "mode_numbers"), real), dtype=dtype)


def _wavenumbers(n: int, length: float, real: bool, zero_nyquist: bool) -> np.ndarray:
    m = _modes(n, real)
    k = (2.0 * math.pi / length) * m
    if zero_nyquist and n % 2 == 0:
        k = np.where(np.abs(m) == n // 2, 0.0, k)
    return k


def wavenumbers(
    n: int,
    length: float = 1.0,
    *,
    real: bool = False,
    zero_nyquist: bool = False,
    dtype=jnp.float32,
) -> Float[Array, " m"]:
    """Angular wavenumbers k = 2π m / L of a periodic grid of n points on [0, L).

    The layout is that of `jnp.fft.fft` (n values) or, with `real=True`, of `jnp.fft.rfft`
    (n // 2 + 1 values). `zero_nyquist=True` sets k = 0 at m = n/2 on an even grid: use it for
    odd derivatives, as the Nyquist cosine has no derivative the grid can represent.
    """
    n, length = _check_n(n, "wavenumbers"), _check_length(length)
    return jnp.asarray(_wavenumbers(n, length, real, zero_nyquist), dtype=dtype)


def _check_shape(shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    shape = tuple(_check_n(n, what) for n in shape)
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"periodic fields of 1 to 3 dimensions are supported, got shape {shape}")
    return shape


def wavenumber_grid(
    shape: tuple[int, ...],
    length: float = 1.0,
    *,
    zero_nyquist: bool = False,
    dtype=jnp.float32,
) -> tuple[Float[Array, "*modes"], ...]:
    """Angular wavenumbers (k_0, ..., k_{d-1}) of each axis, on the `rfftn` layout of `shape`.

    Each array has the full shape of `rfftn` of a field of `shape` (last axis n // 2 + 1).
    """
    shape, length = _check_shape(shape, "wavenumber_grid"), _check_length(length)
    ks = [_wavenumbers(n, length, i == len(shape) - 1, zero_nyquist) for i, n in enumerate(shape)]
    return tuple(jnp.asarray(k, dtype=dtype) for k in np.meshgrid(*ks, indexing="ij"))


def dealias_mask(shape: tuple[int, ...]) -> Bool[Array, "*modes"]:
    """Orszag's 2/3-rule mask on the `rfftn` layout: True where |m| < n/3 on every axis."""
    shape = _check_shape(shape, "dealias_mask")
    ms = [np.abs(_modes(n, i == len(shape) - 1)) for i, n in enumerate(shape)]
    keep = np.ones(tuple(len(m) for m in ms), dtype=bool)
    for g, n in zip(np.meshgrid(*ms, indexing="ij"), shape, strict=True):
        # 3|m| < n in integers: no rounding at the edge of the kept band
        keep &= 3 * g < n
    return jnp.asarray(keep)


def _check_field(u: Array, what: str) -> None:
    if u.ndim not in (1, 2, 3):
        raise ValueError(f"{what}: expected a 1-, 2- or 3-D periodic field, got shape {u.shape}")
    if not jnp.issubdtype(u.dtype, jnp.floating):
        raise ValueError(f"{what}: expected a real floating field, got dtype {u.dtype}")
    for n in u.shape:
        _check_n(n, what)


@functools.partial(jax.jit, static_argnames=("axis", "order", "length"))
def derivative(
    u: Float[Array, "*grid"], axis: int = -1, order: int = 1, length: float = 1.0
) -> Float[Array, "*grid"]:
    """∂^order u / ∂x_axis^order of a periodic real field, by the Fourier multiplier (ik)^order.

    Exact (to round-off) for trigonometric polynomials of modes |m| < n/2 along `axis`.
    """
    _check_field(u, "derivative")
    if int(order) != order or order < 0:
        raise ValueError(f"derivative order must be a non-negative integer, got {order}")
    if not -u.ndim <= axis < u.ndim:
        raise ValueError(f"axis {axis} is out of range for a field of shape {u.shape}")
    axis = axis % u.ndim
    ks = wavenumber_grid(u.shape, length, zero_nyquist=(order % 2 == 1), dtype=u.dtype)
    multiplier = (1j * ks[axis]) ** int(order)
    u_hat = jnp.fft.rfftn(u)
    return jnp.fft.irfftn(multiplier * u_hat, s=u.shape).astype(u.dtype)


def _k2(shape: tuple[int, ...], length: float, dtype) -> Array:
    return sum(k**2 for k in wavenumber_grid(shape, length, dtype=dtype))


@functools.partial(jax.jit, static_argnames=("length",))
def laplacian(u: Float[Array, "*grid"], length: float = 1.0) -> Float[Array, "*grid"]:
    """Δu of a periodic real field, by the Fourier multiplier −|k|²."""
    _check_field(u, "laplacian")
    k2 = _k2(u.shape, length, u.dtype)
    return jnp.fft.irfftn(-k2 * jnp.fft.rfftn(u), s=u.shape).astype(u.dtype)


@functools.partial(jax.jit, static_argnames=("length",))
def inverse_laplacian(f: Float[Array, "*grid"], length: float = 1.0) -> Float[Array, "*grid"]:
    """The zero-mean periodic u with Δu = f − mean(f).

    On a torus Δ is singular on constants: the mean of f cannot be matched (the solvability
    condition), so it is dropped, and the free constant of u is fixed by mean(u) = 0.
    """
    _check_field(f, "inverse_laplacian")
    k2 = _k2(f.shape, length, f.dtype)
    # k2 = 0 only at the mean mode; divide by 1 there and zero the result instead
    inv = jnp.where(k2 > 0, -1.0 / jnp.where(k2 > 0, k2, 1.0), 0.0)
    return jnp.fft.irfftn(inv * jnp.fft.rfftn(f), s=f.shape).astype(f.dtype)


def subsample_periodic(u: Float[Array, " *grid"], n_out: int) -> Float[Array, " *grid_out"]:
    """Every (n / n_out)-th point of a periodic field on every axis (FNO: 256² → 64²).

    Pointwise injection, as used for the FNO paper's Navier-Stokes data; `n_out` must divide n.
    """
    _check_field(u, "subsample_periodic")
    n_out = int(n_out)
    for n in u.shape:
        if n_out < 1 or n % n_out:
            raise ValueError(
                f"cannot subsample a periodic grid of {n} points to {n_out}: "
                "n_out must divide n on every axis"
            )
    index = tuple(slice(None, None, n // n_out) for n in u.shape)
    return u[index]
