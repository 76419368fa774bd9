"""Fourier Neural Operator in 1, 2 and 3 dimensions.

Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar (2021), "Fourier Neural
Operator for Parametric Partial Differential Equations", ICLR. Architecture (their §4 with
the reference code's choices, and neuraloperator 2.0's defaults):

    v₀ = P(a ⊕ grid),  v_{l+1} = σ(K_l v_l + W_l v_l),  u = Q(v_L)

P and Q are two-layer pointwise MLPs (hidden = ratio × width), K_l a spectral convolution
keeping `modes` Fourier modes per axis (plus a per-channel bias), W_l a pointwise linear skip
without bias, σ the GELU, not applied after the last layer.

The weights do not depend on the grid size: a model trained at one resolution runs at any
other that still holds its modes (zero-shot super-resolution). For non-periodic problems
`padding` appends zeros on every grid axis (a fraction of its length) and crops afterwards.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from ._pointwise import ChannelMLP, PointwiseLinear
from ._spectral import SpectralConv


def grid_coordinates(grid: tuple[int, ...], dtype) -> Float[Array, " d *grid"]:
    """Coordinates j/n in [0, 1) of every point, one channel per axis."""
    axes = [jnp.arange(n, dtype=dtype) / n for n in grid]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=0)


class FNOBlock(eqx.Module):
    spectral: SpectralConv
    spectral_bias: Float[Array, " width"]
    skip: PointwiseLinear

    def __init__(
        self, width: int, modes: tuple[int, ...], *, transform: str, dtype, key: PRNGKeyArray
    ):
        k1, k2 = jax.random.split(key)
        self.spectral = SpectralConv(width, width, modes, transform=transform, dtype=dtype, key=k1)
        self.spectral_bias = jnp.zeros((width,), dtype)
        self.skip = PointwiseLinear(width, width, use_bias=False, dtype=dtype, key=k2)

    def __call__(self, x: Float[Array, " w *grid"]) -> Float[Array, " w *grid"]:
        bias = self.spectral_bias.reshape((-1,) + (1,) * (x.ndim - 1))
        return self.spectral(x) + bias + self.skip(x)


@savable
class FNO(eqx.Module):
    """Fourier neural operator mapping `(in_channels, *grid)` to `(out_channels, *grid)`.

    `modes` is an int (1-D) or one int per grid axis; the number of axes sets the dimension.
    `transform` is "dft" (matrix products with the kept modes; fastest on CPUs for the
    usual few modes), "fft", or "auto" (dft on CPU, fft elsewhere).
    """

    lifting: ChannelMLP
    blocks: tuple[FNOBlock, ...]
    projection: ChannelMLP
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    n_layers: int = eqx.field(static=True)
    lifting_ratio: float = eqx.field(static=True)
    projection_ratio: float = eqx.field(static=True)
    grid: bool = eqx.field(static=True)
    padding: float = eqx.field(static=True)
    transform: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, ...],
        width: int = 64,
        n_layers: int = 4,
        *,
        lifting_ratio: float = 2.0,
        projection_ratio: float = 2.0,
        grid: bool = True,
        padding: float = 0.0,
        transform: str = "auto",
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        modes = (int(modes),) if isinstance(modes, int) else tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3:
            raise ValueError(f"FNO supports 1 to 3 grid axes, got modes={modes}")
        if min(in_channels, out_channels, width, n_layers) < 1:
            raise ValueError("in_channels, out_channels, width and n_layers must be >= 1")
        if transform not in ("auto", "dft", "fft"):
            raise ValueError(f"unknown transform {transform!r}; use 'auto', 'dft' or 'fft'")
        if not 0.0 <= padding < 1.0:
            raise ValueError(f"padding is a fraction of each axis in [0, 1), got {padding}")
        resolved = transform
        if transform == "auto":
            resolved = "dft" if jax.default_backend() == "cpu" else "fft"
        d = len(modes)
        kl, kp, *kb = jax.random.split(key, n_layers + 2)
        lift_in = in_channels + (d if grid else 0)
        self.lifting = ChannelMLP(lift_in, int(lifting_ratio * width), width, dtype=dtype, key=kl)
        self.blocks = tuple(
            FNOBlock(width, modes, transform=resolved, dtype=dtype, key=k) for k in kb
        )
        self.projection = ChannelMLP(
            width, int(projection_ratio * width), out_channels, dtype=dtype, key=kp
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes, self.width, self.n_layers = modes, width, n_layers
        self.lifting_ratio, self.projection_ratio = lifting_ratio, projection_ratio
        self.grid, self.padding, self.transform = grid, padding, transform

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        d = len(self.modes)
        if x.ndim != d + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"FNO expects one sample of shape (channels={self.in_channels}, "
                f"{d} grid axes); got {x.shape} (batch with jax.vmap)"
            )
        grid = x.shape[1:]
        if self.grid:
            x = jnp.concatenate([x, grid_coordinates(grid, x.dtype)], axis=0)
        v = self.lifting(x)
        if self.padding:
            pads = [(0, 0)] + [(0, math.ceil(self.padding * n)) for n in grid]
            v = jnp.pad(v, pads)
        for i, block in enumerate(self.blocks):
            v = block(v)
            if i < self.n_layers - 1:
                v = jax.nn.gelu(v, approximate=False)
        if self.padding:
            v = v[(slice(None), *(slice(0, n) for n in grid))]
        return self.projection(v)

    @property
    def n_parameters(self) -> int:
        leaves = jax.tree_util.tree_leaves(eqx.filter(self, eqx.is_array))
        return sum(a.size for a in leaves)
