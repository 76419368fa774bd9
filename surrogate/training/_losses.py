"""Training losses on batches of fields `(sample, channels, *grid)`: the batch means of the
per-sample errors of `surrogate.metrics`."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..metrics import relative_h1_per_sample, relative_lp_per_sample


def relative_lp(pred: Array, true: Array, p: float = 2.0, weights: Array | None = None) -> Array:
    """Mean over the batch of the per-sample relative Lp error."""
    return jnp.mean(relative_lp_per_sample(pred, true, p, weights))


def relative_l2(pred: Array, true: Array) -> Array:
    return relative_lp(pred, true, 2.0)


def mse(pred: Array, true: Array) -> Array:
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {true.shape}")
    return jnp.mean((pred - true) ** 2)


def relative_h1(
    pred: Float[Array, " batch channels *grid"],
    true: Float[Array, " batch channels *grid"],
    spacing: float | Sequence[float] | None = None,
    *,
    periodic: bool = True,
    derivative: str = "fd",
) -> Array:
    """Mean over the batch of the per-sample relative H1 error (neuraloperator's `H1Loss`).

    The defaults (periodic central differences on the unit box) are what `loss = "h1"` in a
    training config uses, as neuraloperator does for every problem; pass `periodic=False` for
    fields on a vertex grid with both end points (Darcy) to use one-sided ends instead.
    """
    return jnp.mean(
        relative_h1_per_sample(pred, true, spacing, periodic=periodic, derivative=derivative)
    )


LOSSES = {"relative_l2": relative_l2, "mse": mse, "h1": relative_h1}
