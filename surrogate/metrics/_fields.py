"""Field errors on batches `(sample, channels, *grid)`: relative Lp and H1, RMSE, R².

Relative Lp as in the FNO paper: for each sample ‖pred − true‖_p / ‖true‖_p over all its
channels and grid points. Optional quadrature `weights` (broadcast against one sample) turn
the sums into integrals on non-uniform grids; on uniform grids the cell size cancels in the
ratio.

Relative H1 (Sobolev) as in neuraloperator's `H1Loss`: ‖pred − true‖_H1 / ‖true‖_H1 with
‖u‖²_H1 = ∫ |u|² + Σ_i |∂_i u|² dx, the derivatives taken on the grid by central finite
differences (periodic wrap-around, or second-order one-sided at the two ends of a vertex
grid) or spectrally by FFT on a periodic grid. It weighs an error at wavenumber k by
√(1 + 4π²k²) on the unit box, so it penalises high-frequency errors that L2 hardly sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _norm(x: Array, p: float, weights: Array | None) -> Array:
    flat_axes = tuple(range(1, x.ndim))
    a = jnp.abs(x) ** p
    if weights is not None:
        a = a * jnp.asarray(weights)[None]  # weights describe one sample
    return jnp.sum(a, axis=flat_axes) ** (1.0 / p)


def relative_lp_per_sample(
    pred: Float[Array, " batch ..."],
    true: Float[Array, " batch ..."],
    p: float = 2.0,
    weights: Array | None = None,
    eps: float = 1e-12,
) -> Float[Array, " batch"]:
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {true.shape}")
    return _norm(pred - true, p, weights) / (_norm(true, p, weights) + eps)


def relative_l2_per_sample(pred: Array, true: Array) -> Float[Array, " batch"]:
    return relative_lp_per_sample(pred, true, 2.0)








DERIVATIVES = ("fd", "spectral")


def _spacings(
    grid: tuple[int, ...], spacing: float | Sequence[float] | None, periodic: bool
) -> tuple[float, ...]:
    if spacing is None:
        # the unit box: n points without the end point (periodic) or with both (vertex grid)
        return tuple(1.0 / (n if periodic else n - 1) for n in grid)
    h = (float(spacing),) * len(grid) if isinstance(spacing, int | float) else tuple(spacing)
    if len(h) != len(grid) or not all(math.isfinite(v) and v > 0 for v in h):
        raise ValueError(
            f"spacing needs one positive grid step per grid axis ({len(grid)}), got {spacing!r}"
        )
    return tuple(float(v) for v in h)


def _fd_derivative(u: Array, axis: int, h: float, periodic: bool) -> Array:
    """Second-order central difference along `axis`; at the ends of a non-periodic axis the
    one-sided (−3u₀ + 4u₁ − u₂)/2h, also second order."""
    if periodic:
        return (jnp.roll(u, -1, axis) - jnp.roll(u, 1, axis)) / (2.0 * h)

    n = u.shape[axis]

    def part(start, stop):
        return jax.lax.slice_in_dim(u, start, stop, axis=axis)

    first = (-3.0 * part(0, 1) + 4.0 * part(1, 2) - part(2, 3)) / (2.0 * h)
    inner = (part(2, n) - part(0, n - 2)) / (2.0 * h)
    last = (3.0 * part(n - 1, n) - 4.0 * part(n - 2, n - 1) + part(n - 3, n - 2)) / (2.0 * h)
    return jnp.concatenate([first, inner, last], axis=axis)


def _spectral_derivative(u: Array, axis: int, h: float) -> Array:
    """∂u by FFT on a periodic axis of length n·h; the Nyquist mode of an even n is dropped
    (its derivative is not real)."""
    n = u.shape[axis]
    k = jnp.fft.rfftfreq(n, d=h).astype(u.dtype)  # cycles per unit length
    if n % 2 == 0:
        k = k.at[-1].set(0.0)
    shape = [1] * u.ndim
    shape[axis] = k.size
    u_hat = jnp.fft.rfft(u, axis=axis) * (2j * jnp.pi * k).reshape(shape)
    return jnp.fft.irfft(u_hat, n=n, axis=axis).astype(u.dtype)


def _quadrature(grid: tuple[int, ...], h: tuple[float, ...], periodic: bool, dtype) -> Array:
    """Weights of one sample's grid: the cell volume (periodic, exact for trigonometric
    polynomials) or the trapezoid rule (vertex grid with both end points)."""
    w = jnp.ones((), dtype)
    for i, (n, step) in enumerate(zip(grid, h, strict=True)):
        wi = jnp.full((n,), step, dtype)
        if not periodic:
            wi = wi.at[0].set(step / 2).at[-1].set(step / 2)
        shape = [1] * len(grid)
        shape[i] = n
        w = w * wi.reshape(shape)
    return w


def _check_h1(u: Array, periodic: bool, derivative: str) -> tuple[int, ...]:
    if not 3 <= u.ndim <= 5:
        raise ValueError(
            f"H1 needs fields (batch, channels, *grid) with 1 to 3 grid axes, got shape {u.shape}"
        )
    if derivative not in DERIVATIVES:
        raise ValueError(f"unknown derivative {derivative!r}; use one of {DERIVATIVES}")
    if derivative == "spectral" and not periodic:
        raise ValueError('derivative="spectral" needs a periodic grid (periodic=True)')
    grid = tuple(u.shape[2:])
    if min(grid) < 3:
        raise ValueError(f"H1 finite differences need >= 3 points per grid axis, got {grid}")
    return grid


def h1_norm(
    u: Float[Array, " batch channels *grid"],
    spacing: float | Sequence[float] | None = None,
    *,
    periodic: bool = True,
    derivative: str = "fd",
) -> Float[Array, " batch"]:
    """‖u‖_H1 = (∫ Σ_c |u_c|² + Σ_i |∂_i u_c|² dx)^½ of each sample of a batch of fields.

    `spacing` is the grid step, one number or one per grid axis (default: the unit box, 1/n
    when `periodic`, 1/(n − 1) on a vertex grid with both end points). `derivative` is "fd"
    (central differences; periodic wrap-around or second-order one-sided at the ends) or
    "spectral" (FFT, periodic only: exact for trigonometric polynomials the grid resolves).
    The integral is the cell-volume sum (periodic) or the trapezoid rule (vertex grid).
    """
    grid = _check_h1(u, periodic, derivative)
    h = _spacings(grid, spacing, periodic)
    w = _quadrature(grid, h, periodic, u.dtype)[None, None]
    total = jnp.abs(u) ** 2
    for i, step in enumerate(h):
        axis = 2 + i
        if derivative == "spectral":
            du = _spectral_derivative(u, axis, step)
        else:
            du = _fd_derivative(u, axis, step, periodic)
        total = total + jnp.abs(du) ** 2
    return jnp.sqrt(jnp.sum(total * w, axis=tuple(range(1, u.ndim))))


def relative_h1_per_sample(
    pred: Float[Array, " batch channels *grid"],
    true: Float[Array, " batch channels *grid"],
    spacing: float | Sequence[float] | None = None,
    *,
    periodic: bool = True,
    derivative: str = "fd",
    eps: float = 1e-12,
) -> Float[Array, " batch"]:
    """‖pred − true‖_H1 / ‖true‖_H1 per sample (see `h1_norm` for the options)."""
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {true.shape}")
    options = dict(periodic=periodic, derivative=derivative)
    return h1_norm(pred - true, spacing, **options) / (h1_norm(true, spacing, **options) + eps)



def same_shape(pred: Array, true: Array) -> None:
    if jnp.shape(pred) != jnp.shape(true):
        raise ValueError(
            f"prediction shape {jnp.shape(pred)} differs from target shape {jnp.shape(true)}"
        )


def rmse(pred: Array, true: Array) -> Float[Array, ""]:
    """Root mean squared error pooled over every axis."""
    same_shape(pred, true)
    return jnp.sqrt(jnp.mean((jnp.asarray(pred) - jnp.asarray(true)) ** 2))


def max_error(pred: Array, true: Array) -> Float[Array, ""]:
    """Largest absolute error."""
    same_shape(pred, true)
    return jnp.max(jnp.abs(jnp.asarray(pred) - jnp.asarray(true)))


def r2_score(pred: Array, true: Array, axis=None) -> Array:
    """Coefficient of determination 1 − SS_res / SS_tot (over `axis`, default all)."""
    ss_res = jnp.sum((true - pred) ** 2, axis=axis)
    ss_tot = jnp.sum((true - jnp.mean(true, axis=axis, keepdims=True)) ** 2, axis=axis)
    return 1.0 - ss_res / ss_tot


def field_metrics(
    pred: Float[Array, " sample channels *grid"],
    true: Float[Array, " sample channels *grid"],
    *,
    h1: bool = False,
    periodic: bool = False,
) -> dict[str, float]:
    """Relative L2 (mean over samples, as in the FNO paper), RMSE and max error; with `h1`
    also the relative H1 error (unit box, central differences; `periodic` or vertex grid)."""
    out = {
        "relative_l2": float(jnp.mean(relative_l2_per_sample(pred, true))),
        "rmse": float(rmse(pred, true)),
        "max_error": float(max_error(pred, true)),
    }
    if h1:
        out["relative_h1"] = float(
            jnp.mean(relative_h1_per_sample(pred, true, periodic=periodic))
        )
    return out
