"""DeepONet: an operator as a sum of products of a branch and a trunk network.

Lu, Jin, Pang, Zhang & Karniadakis, "Learning nonlinear operators via DeepONet based on the
universal approximation theorem of operators", Nat. Mach. Intell. 3 (2021). For an input
function `u` sampled at fixed sensors and a query point `y`,

    G(u)(y)_j = Σ_k b_{jk}(u) t_{jk}(y) + β_j,     k = 1 .. p,  j = 1 .. n_out,

with `b` the branch MLP (sensor values -> n_out·p) and `t` the trunk MLP (coordinates ->
n_out·p, or p shared by all outputs), the trunk's last layer activated too (Lu et al., §2).
The trunk may see random Fourier features [cos 2πBy, sin 2πBy] with fixed B ~ N(0, s²)
(Tancik et al. 2020, "Fourier features let networks learn high frequency functions").
Input and output scaling are left to the normalizers of `surrogate.data`.

On fields (`DeepONetOperator`, `PODDeepONet`) the branch may be a CNN over the sensor grid
instead of an MLP over the flattened sensors, and the trunk may be replaced by the POD
basis of the training outputs: both from Lu, Meng, Cai, Mao, Goswami, Zhang & Karniadakis,
"A comprehensive and fair comparison of two neural operators (with practical extensions)
based on FAIR data", CMAME 393 (2022) (their Darcy branch: two stride-2 5×5 convolutions
with ReLU, then dense layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from ._features import fourier_features

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "sin": jnp.sin,
}


def _activation(activation: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[activation]


def _conv_size(n: int, kernel: int) -> int:
    # a stride-2 convolution padded by kernel // 2 on both sides: ceil(n / 2) for odd kernels
    return (n + 2 * (kernel // 2) - kernel) // 2 + 1


class ConvBranch(eqx.Module):
    """A branch network on a grid: the flat sensor vector reshaped to `grid` = (channels,
    *sensor_shape), stride-2 convolutions (`channels[i]` filters of size `kernel`, padded
    by kernel // 2, each followed by the activation), flattened, then an MLP head of
    `depth` hidden layers of `width` (depth 0: one linear map) to `out_size`. The
    convolutions are 1-, 2- or 3-D as the grid is. Each halves the grid (ceil(n / 2)), so
    the head sees `channels[-1] · Π ceil(n_i / 2^L)` features: a few layers make a large
    grid cheap, which an MLP over every sensor is not."""

    convs: tuple[eqx.nn.Conv, ...]
    head: eqx.nn.MLP
    grid: tuple[int, ...] = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        grid: tuple[int, ...],
        out_size: int,
        *,
        channels: tuple[int, ...],
        kernel: int,
        width: int,
        depth: int,
        activation: Callable[[Array], Array],
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, len(channels) + 1)
        ndim, c_in, shape, convs = len(grid) - 1, grid[0], grid[1:], []
        for c, k in zip(channels, keys[:-1], strict=True):
            convs.append(
                eqx.nn.Conv(
                    ndim, c_in, c, kernel, stride=2, padding=kernel // 2, dtype=dtype, key=k
                )
            )
            c_in, shape = c, tuple(_conv_size(n, kernel) for n in shape)
        self.convs = tuple(convs)
        self.head = eqx.nn.MLP(
            c_in * math.prod(shape), out_size, width, depth, activation, dtype=dtype, key=keys[-1]
        )
        self.grid, self.activation = tuple(grid), activation

    def __call__(self, u: Float[Array, " n_sensors"]) -> Float[Array, " out_size"]:
        h = u.reshape(self.grid)
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.head(h.reshape(-1))


def _branch_net(n_sensors, out_size, grid, width, depth, activation, channels, kernel, dtype, key):
    """An MLP over the flat sensors (`grid` None) or a `ConvBranch` over `grid`."""
    if grid is None:
        return eqx.nn.MLP(n_sensors, out_size, width, depth, activation, dtype=dtype, key=key)
    return ConvBranch(grid, out_size, channels=channels, kernel=kernel, width=width, depth=depth,
                      activation=activation, dtype=dtype, key=key)  # fmt: skip


def _check_branch_options(
    n_sensors: int, grid, channels, kernel
) -> tuple[tuple[int, ...] | None, tuple[int, ...], int]:
    """Normalised (branch_grid, conv_channels, conv_kernel), or a one-line ValueError."""
    channels = tuple(channels)
    if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ValueError(f"conv_channels must be positive integers, got {channels}")
    if not (isinstance(kernel, int) and kernel >= 1):
        raise ValueError(f"conv_kernel must be a positive integer, got {kernel!r}")
    if grid is None:
        return None, channels, kernel
    grid = tuple(grid)
    if not (
        2 <= len(grid) <= 4
        and all(isinstance(n, int) and n >= 1 for n in grid)
        and math.prod(grid) == n_sensors
    ):
        raise ValueError(
            f"branch_grid must be (channels, *sensor_shape) with 1-3 grid axes and "
            f"{n_sensors} values in all, got {grid}"
        )
    return grid, channels, kernel


@savable
class DeepONet(eqx.Module):
    """`model(u, coords) -> (n_out, n_points)` for ONE input function `u` (vmap outside).

    `u` is `(n_sensors,)`: the input function at fixed sensors, or a parameter vector.
    `coords` is `(n_points, coord_dim)`. `model(u, coords)` evaluates the branch once and the
    trunk once per point and contracts them in one einsum (the Cartesian-product layout);
    `model.pointwise` evaluates each point on its own, for scattered points or one input
    function per point, and gives the same values.

    `n_out` outputs split the branch output into `n_out` groups of `p` coefficients, and the
    trunk output too (`split_trunk=True`) or not (one basis of `p` functions shared by all
    outputs). `fourier_features > 0` feeds the trunk [cos 2πBy, sin 2πBy] with B of shape
    `(fourier_features, coord_dim)` drawn from N(0, fourier_scale²) and never trained (its
    gradient is zero; mask it out of weight decay). `activation` is a callable or one of
    `ACTIVATIONS`.

    `branch_grid = (channels, *sensor_shape)` (product `n_sensors`) makes the branch a
    `ConvBranch` over the sensors reshaped to that grid: `conv_channels` stride-2
    convolutions of size `conv_kernel`, then an MLP head of `branch_depth` hidden layers of
    `branch_width`. `None` (the default) keeps the MLP over the flat sensors.

    Example: `DeepONet(100, 1, p=64, key=key)(u, x[:, None])` with `u` of shape `(100,)` and
    `x` of shape `(n,)` gives `(1, n)`.
    """

    branch: eqx.nn.MLP | ConvBranch
    trunk: eqx.nn.MLP
    bias: Float[Array, " n_out"]
    frequencies: Float[Array, "features coord_dim"] | None
    n_sensors: int = eqx.field(static=True)
    coord_dim: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    split_trunk: bool = eqx.field(static=True)
    branch_width: int = eqx.field(static=True)
    branch_depth: int = eqx.field(static=True)
    trunk_width: int = eqx.field(static=True)
    trunk_depth: int = eqx.field(static=True)
    activation: str | Callable[[Array], Array] = eqx.field(static=True)
    fourier_features: int = eqx.field(static=True)
    fourier_scale: float = eqx.field(static=True)
    branch_grid: tuple[int, ...] | None = eqx.field(static=True)
    conv_channels: tuple[int, ...] = eqx.field(static=True)
    conv_kernel: int = eqx.field(static=True)

    def __init__(
        self,
        n_sensors: int,
        coord_dim: int,
        *,
        n_out: int = 1,
        p: int = 64,
        branch_width: int = 128,
        branch_depth: int = 3,
        trunk_width: int = 128,
        trunk_depth: int = 3,
        activation: str | Callable[[Array], Array] = "tanh",
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        split_trunk: bool = True,
        branch_grid: tuple[int, ...] | None = None,
        conv_channels: tuple[int, ...] = (16, 32, 64, 128),
        conv_kernel: int = 5,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        sizes = dict(n_sensors=n_sensors, coord_dim=coord_dim, n_out=n_out, p=p)
        if min(sizes.values()) < 1 or fourier_features < 0 or fourier_scale <= 0:
            raise ValueError(
                f"need positive sizes, fourier_features >= 0 and fourier_scale > 0; got {sizes}, "
                f"fourier_features={fourier_features}, fourier_scale={fourier_scale}"
            )
        grid, channels, kernel = _check_branch_options(
            n_sensors, branch_grid, conv_channels, conv_kernel
        )
        act = _activation(activation)
        kb, kt, kf = jax.random.split(key, 3)
        self.branch = _branch_net(n_sensors, n_out * p, grid, branch_width, branch_depth, act,
                                  channels, kernel, dtype, kb)  # fmt: skip
        trunk_in = 2 * fourier_features if fourier_features else coord_dim
        trunk_out = n_out * p if split_trunk else p
        self.trunk = eqx.nn.MLP(
            trunk_in, trunk_out, trunk_width, trunk_depth, act, act, dtype=dtype, key=kt
        )
        self.bias = jnp.zeros((n_out,), dtype)
        self.frequencies = (
            fourier_scale * jax.random.normal(kf, (fourier_features, coord_dim), dtype)
            if fourier_features
            else None
        )
        self.n_sensors, self.coord_dim, self.n_out, self.p = n_sensors, coord_dim, n_out, p
        self.split_trunk = split_trunk
        self.branch_width, self.branch_depth = branch_width, branch_depth
        self.trunk_width, self.trunk_depth = trunk_width, trunk_depth
        self.activation = activation
        self.fourier_features, self.fourier_scale = fourier_features, float(fourier_scale)
        self.branch_grid, self.conv_channels, self.conv_kernel = grid, channels, kernel

    def _check(self, u: Array, coords: Array, per_point: bool = False) -> None:
        if per_point and u.ndim == 2:
            if u.shape != (coords.shape[0], self.n_sensors):
                raise ValueError(
                    f"one input function per point needs shape ({coords.shape[0]}, "
                    f"{self.n_sensors}), got {u.shape}"
                )
        elif u.shape != (self.n_sensors,):
            raise ValueError(f"branch input should have shape ({self.n_sensors},), got {u.shape}")
        if coords.ndim != 2 or coords.shape[1] != self.coord_dim:
            raise ValueError(
                f"coords should have shape (n_points, {self.coord_dim}), got {coords.shape}"
            )

    def _branch(self, u: Float[Array, " n_sensors"]) -> Float[Array, "n_out p"]:
        return self.branch(u).reshape(self.n_out, self.p)

    def _trunk(self, y: Float[Array, " coord_dim"]) -> Float[Array, "n_out_or_1 p"]:
        if self.frequencies is not None:
            # the frequencies are fixed, not trained (Tancik et al. 2020)
            y = fourier_features(jax.lax.stop_gradient(self.frequencies), y)
        return self.trunk(y).reshape(-1, self.p)

    def __call__(
        self, u: Float[Array, " n_sensors"], coords: Float[Array, "n_points coord_dim"]
    ) -> Float[Array, "n_out n_points"]:
        self._check(u, coords)
        b = self._branch(u)
        t = jax.vmap(self._trunk)(coords)  # (n_points, n_out or 1, p)
        if self.split_trunk:
            y = jnp.einsum("kp,nkp->kn", b, t)
        else:  # one trunk basis shared by all outputs
            y = jnp.einsum("kp,np->kn", b, t[:, 0])
        return y + self.bias[:, None]

    def evaluate(
        self, u: Float[Array, " n_sensors"], y: Float[Array, " coord_dim"]
    ) -> Float[Array, " n_out"]:
        """G(u)(y) at a single point `y`."""
        return jnp.sum(self._branch(u) * self._trunk(y), axis=-1) + self.bias

    def pointwise(
        self,
        u: Float[Array, " n_sensors"] | Float[Array, "n_points n_sensors"],
        coords: Float[Array, "n_points coord_dim"],
    ) -> Float[Array, "n_out n_points"]:
        """G(u)(y) point by point (vmapped `evaluate`); `u` may hold one function per point."""
        self._check(u, coords, per_point=True)
        in_axes = (0, 0) if u.ndim == 2 else (None, 0)
        return jax.vmap(self.evaluate, in_axes=in_axes)(u, coords).T


def _grid_points(shape: tuple[int, ...], periodic: bool, dtype=jnp.float32) -> Array:
    """Points of a uniform grid on [0, 1]^d as `(prod(shape), d)`: `i / (n - 1)` on a vertex
    grid with both end points (Darcy), `i / n` on a periodic grid."""
    axes = [jnp.arange(n, dtype=dtype) / (n if periodic else n - 1) for n in shape]
    mesh = jnp.meshgrid(*axes, indexing="ij")
    return jnp.stack([m.reshape(-1) for m in mesh], axis=-1)


def resample(x: Float[Array, " c *grid"], shape: tuple[int, ...], periodic: bool) -> Array:
    """Multilinear interpolation of a field onto another uniform grid of the unit box."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    # index coordinates of the new points on the old grid, same conventions as above
    scale = [
        (m if periodic else m - 1) / (n if periodic else n - 1)
        for m, n in zip(x.shape[1:], shape, strict=True)
    ]
    idx = jnp.meshgrid(
        *[jnp.arange(n, dtype=x.dtype) * s for n, s in zip(shape, scale, strict=True)],
        indexing="ij",
    )
    mode = "wrap" if periodic else "nearest"

    def one(channel):
        return jax.scipy.ndimage.map_coordinates(channel, idx, order=1, mode=mode)

    return jax.vmap(one)(x)


BRANCHES = ("mlp", "cnn")
_CONV_OPTIONS = ("conv_channels", "conv_kernel")


def _branch_grid(branch: str, in_channels: int, sensor_shape: tuple[int, ...], options) -> tuple:
    """The `branch_grid` of `DeepONet` for `branch` on fields, or a one-line ValueError."""
    if branch not in BRANCHES:
        raise ValueError(f"unknown branch {branch!r}; expected one of {list(BRANCHES)}")
    if "branch_grid" in options:
        raise ValueError("branch_grid is set from sensor_shape: choose branch='cnn' instead")
    if branch == "mlp" and any(k in options for k in _CONV_OPTIONS):
        given = sorted(k for k in options if k in _CONV_OPTIONS)
        raise ValueError(f"{given} are options of the CNN branch: add branch='cnn'")
    if branch == "mlp":
        return None
    if not 1 <= len(sensor_shape) <= 3:
        raise ValueError(f"the CNN branch takes 1-3 grid axes, got sensor_shape {sensor_shape}")
    return (in_channels, *sensor_shape)


@savable
class DeepONetOperator(eqx.Module):
    """A DeepONet used as an operator `(in_channels, *grid) -> (out_channels, *grid)`.

    The branch sees the flattened input field on the sensor grid `sensor_shape` (an input on
    another grid is first interpolated multilinearly onto it); the trunk is evaluated at the
    points of the input's own grid, so the output comes at any resolution. Grids cover the
    unit box: with end points (`periodic=False`, Darcy's vertex grids) or without.

    `branch="mlp"` (the default) is an MLP over the flattened sensors; `branch="cnn"` a
    `ConvBranch` over the sensor grid (1-3 axes; options `conv_channels`, `conv_kernel`,
    and `branch_width`/`branch_depth` for its head), the branch Lu et al. (2022) use for
    inputs on grids. Other keyword arguments go to `DeepONet`.
    """

    deeponet: DeepONet
    in_channels: int = eqx.field(static=True)
    sensor_shape: tuple[int, ...] = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    branch: str = eqx.field(static=True)
    deeponet_options: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        sensor_shape: tuple[int, ...],
        *,
        periodic: bool = False,
        branch: str = "mlp",
        dtype=jnp.float32,
        key: PRNGKeyArray,
        **deeponet_options,
    ):
        sensor_shape = tuple(int(n) for n in sensor_shape)
        if not sensor_shape or min(sensor_shape) < 2:
            raise ValueError(f"sensor grid needs >= 2 points per axis, got {sensor_shape}")
        grid = _branch_grid(branch, in_channels, sensor_shape, deeponet_options)
        n_sensors = in_channels * math.prod(sensor_shape)
        self.deeponet = DeepONet(
            n_sensors,
            len(sensor_shape),
            n_out=out_channels,
            branch_grid=grid,
            dtype=dtype,
            key=key,
            **deeponet_options,
        )
        self.in_channels, self.sensor_shape, self.periodic = in_channels, sensor_shape, periodic
        self.branch = branch
        self.out_channels = out_channels
        # lists (a config's conv_channels) as tuples: static fields must hash
        self.deeponet_options = tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in deeponet_options.items())
        )

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        d = len(self.sensor_shape)
        if x.ndim != d + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"expected a field ({self.in_channels}, *grid) with {d} grid axes, "
                f"got shape {x.shape}"
            )
        if min(x.shape[1:]) < 2:
            raise ValueError(f"grid needs >= 2 points per axis, got shape {x.shape}")
        u = resample(x, self.sensor_shape, self.periodic).reshape(-1)
        coords = _grid_points(x.shape[1:], self.periodic, x.dtype)
        return self.deeponet(u, coords).reshape(-1, *x.shape[1:])
