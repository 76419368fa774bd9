"""Losses on batches of fields `(sample, channels, *grid)`.

Relative Lp as in the FNO paper: for each sample ‖pred − true‖_p / ‖true‖_p over all its
channels and grid points, averaged over the batch. Optional quadrature `weights` (broadcast
against one sample) turn the sums into integrals on non-uniform grids; on uniform grids the
cell size cancels in the ratio.
"""

from __future__ import annotations

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


def relative_lp(pred: Array, true: Array, p: float = 2.0, weights: Array | None = None) -> Array:
    """Mean over the batch of the per-sample relative Lp error."""
    return jnp.mean(relative_lp_per_sample(pred, true, p, weights))


def relative_l2(pred: Array, true: Array) -> Array:
    return relative_lp(pred, true, 2.0)


def mse(pred: Array, true: Array) -> Array:
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {true.shape}")
    return jnp.mean((pred - true) ** 2)


LOSSES = {"relative_l2": relative_l2, "mse": mse}
