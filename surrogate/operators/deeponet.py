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

    Example: `DeepONet(100, 1, p=64, key=key)(u, x[:, None])` with `u` of shape `(100,)` and
    `x` of shape `(n,)` gives `(1, n)`.
    """

    branch: eqx.nn.MLP
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
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        sizes = dict(n_sensors=n_sensors, coord_dim=coord_dim, n_out=n_out, p=p)
        if min(sizes.values()) < 1 or fourier_features < 0 or fourier_scale <= 0:
            raise ValueError(
                f"need positive sizes, fourier_features >= 0 and fourier_scale > 0; got {sizes}, "
                f"fourier_features={fourier_features}, fourier_scale={fourier_scale}"
            )
        act = _activation(activation)
        kb, kt, kf = jax.random.split(key, 3)
        self.branch = eqx.nn.MLP(
            n_sensors, n_out * p, branch_width, branch_depth, act, dtype=dtype, key=kb
        )
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


@savable
class DeepONetOperator(eqx.Module):
    """A DeepONet used as an operator `(in_channels, *grid) -> (out_channels, *grid)`.

    The branch sees the flattened input field on the sensor grid `sensor_shape` (an input on
    another grid is first interpolated multilinearly onto it); the trunk is evaluated at the
    points of the input's own grid, so the output comes at any resolution. Grids cover the
    unit box: with end points (`periodic=False`, Darcy's vertex grids) or without.
    """

    deeponet: DeepONet
    in_channels: int = eqx.field(static=True)
    sensor_shape: tuple[int, ...] = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    deeponet_options: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        sensor_shape: tuple[int, ...],
        *,
        periodic: bool = False,
        dtype=jnp.float32,
        key: PRNGKeyArray,
        **deeponet_options,
    ):
        sensor_shape = tuple(int(n) for n in sensor_shape)
        if not sensor_shape or min(sensor_shape) < 2:
            raise ValueError(f"sensor grid needs >= 2 points per axis, got {sensor_shape}")
        n_sensors = in_channels * math.prod(sensor_shape)
        self.deeponet = DeepONet(
            n_sensors,
            len(sensor_shape),
            n_out=out_channels,
            dtype=dtype,
            key=key,
            **deeponet_options,
        )
        self.in_channels, self.sensor_shape, self.periodic = in_channels, sensor_shape, periodic
        self.out_channels = out_channels
        self.deeponet_options = tuple(sorted(deeponet_options.items()))

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
