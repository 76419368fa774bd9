"""POD-DeepONet: a DeepONet whose trunk is the POD basis of the training outputs.

Lu, Meng, Cai, Mao, Goswami, Zhang & Karniadakis, "A comprehensive and fair comparison of
two neural operators (with practical extensions) based on FAIR data", CMAME 393 (2022):
for outputs on a fixed grid, the trunk's p basis functions can be replaced by the leading
principal components of the training outputs and their mean, so that only the branch is
learned (their Darcy POD-DeepONet has a CNN branch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from .deeponet import (
    ConvBranch,
    _activation,
    _branch_grid,
    _branch_net,
    _check_branch_options,
    resample,
)


def pod_basis(
    y: Float[Array, " sample cout *grid"],
    *,
    n_modes: int | None = None,
    variance: float | None = None,
) -> tuple[Array, Array, Array]:
    """Proper orthogonal decomposition of training outputs: `(mean, modes, singular_values)`.

    With Y the `(n_samples, D)` matrix of the flattened outputs (D = cout · Π grid) and
    Y − 1ȳᵀ = U Σ Vᵀ its thin SVD, the modes are the first k rows of Vᵀ scaled by √D, so that
    each has unit root-mean-square over its D values (orthonormal for the mean over the
    grid, a discrete L²(unit box) product, as in Lu et al. 2022): `modes` is `(k, cout,
    *grid)`, `mean` is ȳ as `(cout, *grid)` and `singular_values` all of Σ (descending).
    The modes are all channels' together. Keep `n_modes` modes (1 .. min(n_samples, D)), or
    the fewest whose energy Σ_{i<=k} σ_i² reaches the fraction `variance` ∈ (0, 1] of the
    total; exactly one of the two. Projecting onto the first k modes leaves the error
    ‖Y − Y_k‖_F² = Σ_{i>k} σ_i², the least of any rank-k approximation (Eckart-Young).
    """
    y = jnp.asarray(y)
    if y.ndim < 3 or y.shape[0] < 2:
        raise ValueError(
            f"pod_basis expects (sample, channels, *grid) with >= 2 samples, got {y.shape}"
        )
    if (n_modes is None) == (variance is None):
        raise ValueError(f"give exactly one of n_modes and variance, got {n_modes=}, {variance=}")
    n, size = y.shape[0], math.prod(y.shape[1:])
    if n_modes is not None and not (isinstance(n_modes, int) and 1 <= n_modes <= min(n, size)):
        raise ValueError(f"n_modes must be an integer from 1 to {min(n, size)}, got {n_modes!r}")
    if variance is not None and not 0 < variance <= 1:
        raise ValueError(f"variance must be a fraction in (0, 1], got {variance}")
    mean, sigma, modes = _centred_svd(y.reshape(n, size))
    if variance is not None:
        # a number of modes is a shape: chosen from the concrete singular values (not jittable)
        energy = np.cumsum(np.asarray(sigma, np.float64) ** 2)
        n_modes = min(int(np.sum(energy < variance * energy[-1])) + 1, sigma.shape[0])
    return mean.reshape(y.shape[1:]), modes[:n_modes].reshape(n_modes, *y.shape[1:]), sigma


@jax.jit
def _centred_svd(flat: Float[Array, "n size"]) -> tuple[Array, Array, Array]:
    """Mean, singular values and right singular vectors scaled to unit RMS of the centred rows."""
    mean = jnp.mean(flat, axis=0, keepdims=True)
    _, sigma, vt = jnp.linalg.svd(flat - mean, full_matrices=False)
    return mean[0], sigma, vt * math.sqrt(flat.shape[1])


@savable
class PODDeepONet(eqx.Module):
    """POD-DeepONet (Lu et al. 2022): the trunk replaced by the POD basis of the outputs,

        G(a) = ȳ + Σ_k b_k(a) φ_k,      k = 1 .. n_modes,

    `(in_channels, *grid) -> (cout, *mean_grid)` for ONE input (vmap outside), with ȳ the
    training mean `mean` `(cout, *mean_grid)`, φ_k the modes `(n_modes, cout, *mean_grid)`
    (from `pod_basis(y_train, ...)`) and b the branch (`branch="mlp"` over the flattened
    sensors or `"cnn"` over the sensor grid, as in `DeepONetOperator`). The input is
    interpolated multilinearly onto `sensor_shape` (default: the modes' grid).

        mean, modes, _ = pod_basis(y_train, n_modes=64)
        model = PODDeepONet(1, mean, modes, branch="cnn", key=key)

    The mean and modes are data, not weights: the call stops their gradient, so Adam
    leaves them as they were fitted (AdamW's decoupled weight decay shrinks every array it
    is given: mask them out of it for long runs). POD modes live on the grid they were
    fitted on; on an input of another grid the output, computed on the modes' grid, is
    interpolated multilinearly onto the input's (exact at the points both grids share; it
    has no detail finer than the modes' grid).

    Fit the POD on the outputs the model is trained to produce: on normalized targets
    when the loss decodes the model's output with a normalizer. The branch's last layer
    starts scaled by 1/√n_modes, so that the first outputs are of the data's size.
    """

    branch_net: eqx.nn.MLP | ConvBranch
    mean: Float[Array, " cout *grid"]
    modes: Float[Array, " n_modes cout *grid"]
    in_channels: int = eqx.field(static=True)
    sensor_shape: tuple[int, ...] = eqx.field(static=True)
    branch: str = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    branch_width: int = eqx.field(static=True)
    branch_depth: int = eqx.field(static=True)
    activation: str | Callable[[Array], Array] = eqx.field(static=True)
    conv_channels: tuple[int, ...] = eqx.field(static=True)
    conv_kernel: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        mean: Float[Array, " cout *grid"],
        modes: Float[Array, " n_modes cout *grid"],
        sensor_shape: tuple[int, ...] | None = None,
        *,
        branch: str = "mlp",
        periodic: bool = False,
        branch_width: int = 128,
        branch_depth: int = 3,
        activation: str | Callable[[Array], Array] = "tanh",
        conv_channels: tuple[int, ...] = (16, 32, 64, 128),
        conv_kernel: int = 5,
        key: PRNGKeyArray,
    ):
        mean, modes = jnp.asarray(mean), jnp.asarray(modes)
        if mean.ndim < 2 or modes.shape[1:] != mean.shape or modes.shape[0] < 1:
            raise ValueError(
                f"need mean (cout, *grid) and modes (n_modes, cout, *grid) on its grid, got "
                f"{mean.shape} and {modes.shape}"
            )
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        sensor_shape = tuple(
            int(n) for n in (mean.shape[1:] if sensor_shape is None else sensor_shape)
        )
        if len(sensor_shape) != mean.ndim - 1 or min(sensor_shape) < 2:
            raise ValueError(
                f"sensor grid needs {mean.ndim - 1} axes of >= 2 points, got {sensor_shape}"
            )
        if not (min(branch_width, branch_depth + 1) >= 1):
            raise ValueError(f"need branch_width >= 1 and branch_depth >= 0, got "
                             f"{branch_width}, {branch_depth}")  # fmt: skip
        grid = _branch_grid(branch, in_channels, sensor_shape, {})
        n_sensors = in_channels * math.prod(sensor_shape)
        grid, channels, kernel = _check_branch_options(n_sensors, grid, conv_channels, conv_kernel)
        n_modes = modes.shape[0]
        net = _branch_net(n_sensors, n_modes, grid, branch_width, branch_depth,
                          _activation(activation), channels, kernel, mean.dtype, key)  # fmt: skip
        last = (lambda b: b.layers[-1]) if grid is None else (lambda b: b.head.layers[-1])
        shrink = 1.0 / math.sqrt(n_modes)
        net = eqx.tree_at(lambda b: (last(b).weight, last(b).bias), net,
                          (last(net).weight * shrink, last(net).bias * shrink))  # fmt: skip
        self.branch_net, self.mean, self.modes = net, mean, modes.astype(mean.dtype)
        self.in_channels, self.sensor_shape, self.branch = in_channels, sensor_shape, branch
        self.periodic, self.activation = periodic, activation
        self.branch_width, self.branch_depth = branch_width, branch_depth
        self.conv_channels, self.conv_kernel = channels, kernel

    @property
    def n_modes(self) -> int:
        return self.modes.shape[0]

    def expand(self, b: Float[Array, " n_modes"]) -> Float[Array, " cout *grid"]:
        """ȳ + Σ_k b_k φ_k on the modes' grid."""
        mean, modes = jax.lax.stop_gradient((self.mean, self.modes))
        return mean + jnp.tensordot(b, modes, axes=1)

    def project(self, y: Float[Array, " cout *grid"]) -> Float[Array, " n_modes"]:
        """The coefficients of `y` − ȳ on the modes (mean over the grid: they have unit RMS);
        `expand(project(y))` is the best approximation of `y` in their span."""
        if y.shape != self.mean.shape:
            raise ValueError(f"project expects a field {self.mean.shape}, got {y.shape}")
        mean, modes = jax.lax.stop_gradient((self.mean, self.modes))
        return jnp.tensordot(modes, y - mean, axes=y.ndim) / y.size

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
        y = self.expand(self.branch_net(u))
        return resample(y, x.shape[1:], self.periodic)
