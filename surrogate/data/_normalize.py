"""Normalizers fitted on training data and saved with the model.

Statistics are per channel (over samples and grid points), not per grid point as in the
FNO reference code: a per-point normalizer bakes the training grid into the model and
breaks evaluation at other resolutions.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable


@savable
class Normalizer(eqx.Module):
    """(x − mean) / std per channel of a `(channels, *grid)` field."""

    mean: Float[Array, " channels"]
    std: Float[Array, " channels"]
    channels: int = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        mean=None,
        std=None,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray | None = None,
    ):
        del key  # deterministic; the argument keeps the constructor uniform for loading
        self.channels = int(channels)
        self.mean = jnp.zeros((channels,), dtype) if mean is None else jnp.asarray(mean, dtype)
        self.std = jnp.ones((channels,), dtype) if std is None else jnp.asarray(std, dtype)

    @classmethod
    def fit(cls, data: Float[Array, " sample channels *grid"], eps: float = 1e-6) -> Normalizer:
        data = jnp.asarray(data)
        if data.ndim < 2:
            raise ValueError(f"fit expects (sample, channels, *grid) data, got {data.shape}")
        axes = (0, *range(2, data.ndim))
        mean = jnp.mean(data, axis=axes)
        std = jnp.std(data, axis=axes) + eps
        return cls(data.shape[1], mean, std, dtype=data.dtype)

    def _shape(self, v, ndim):
        # statistics of the data, never trained: a normalizer inside a trained module
        # (e.g. a closure) gets zero gradients, so Adam leaves it as fitted
        return jax.lax.stop_gradient(v).reshape((-1,) + (1,) * (ndim - 1))

    def encode(self, x: Float[Array, " channels *grid"]) -> Float[Array, " channels *grid"]:
        return (x - self._shape(self.mean, x.ndim)) / self._shape(self.std, x.ndim)

    def decode(self, x: Float[Array, " channels *grid"]) -> Float[Array, " channels *grid"]:
        return x * self._shape(self.std, x.ndim) + self._shape(self.mean, x.ndim)


@savable
class NormalizedModel(eqx.Module):
    """A model with its input and output normalizers: physical units in and out."""

    model: eqx.Module
    input_norm: Normalizer
    output_norm: Normalizer

    def __init__(
        self,
        model: eqx.Module,
        input_norm: Normalizer,
        output_norm: Normalizer,
        *,
        key: PRNGKeyArray | None = None,
    ):
        del key
        self.model, self.input_norm, self.output_norm = model, input_norm, output_norm

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        return self.output_norm.decode(self.model(self.input_norm.encode(x)))


def minibatches(key: PRNGKeyArray, n: int, batch_size: int) -> Array:
    """Indices `(n // batch_size, batch_size)` of a random permutation; the remainder of
    the permutation is dropped this epoch (and drawn in others)."""
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size must be in [1, {n}] for {n} samples, got {batch_size}")
    perm = jax.random.permutation(key, n)
    nb = n // batch_size
    return perm[: nb * batch_size].reshape(nb, batch_size)
