"""Field metrics shared by the operator-learning problems (FNO-paper style)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from ..training._losses import relative_l2_per_sample


def field_metrics(pred: Array, true: Array) -> dict[str, float]:
    """Relative L2 (mean over samples, as in the FNO paper), RMSE and max error."""
    err = pred - true
    return {
        "relative_l2": float(jnp.mean(relative_l2_per_sample(pred, true))),
        "rmse": float(jnp.sqrt(jnp.mean(err**2))),
        "max_error": float(jnp.max(jnp.abs(err))),
    }
