"""Pointwise (1×1) channel maps on `(channels, *grid)` fields."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class PointwiseLinear(eqx.Module):
    """y[o, ...] = Σ_i W[o, i] x[i, ...] (+ b[o]): a linear map of channels at every point."""

    weight: Float[Array, " out in"]
    bias: Float[Array, " out"] | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        use_bias: bool = True,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        # PyTorch's Conv1d/Linear default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        bound = 1.0 / math.sqrt(in_channels)
        kw, kb = jax.random.split(key)
        self.weight = jax.random.uniform(kw, (out_channels, in_channels), dtype, -bound, bound)
        self.bias = (
            jax.random.uniform(kb, (out_channels,), dtype, -bound, bound) if use_bias else None
        )

    def __call__(self, x: Float[Array, " in *grid"]) -> Float[Array, " out *grid"]:
        y = jnp.tensordot(self.weight, x, axes=1)
        if self.bias is not None:
            y = y + self.bias.reshape((-1,) + (1,) * (x.ndim - 1))
        return y


class ChannelMLP(eqx.Module):
    """Two pointwise linear maps with an activation between (FNO lifting / projection)."""

    first: PointwiseLinear
    second: PointwiseLinear

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        k1, k2 = jax.random.split(key)
        self.first = PointwiseLinear(in_channels, hidden, dtype=dtype, key=k1)
        self.second = PointwiseLinear(hidden, out_channels, dtype=dtype, key=k2)

    def __call__(self, x: Float[Array, " in *grid"]) -> Float[Array, " out *grid"]:
        return self.second(jax.nn.gelu(self.first(x), approximate=False))
