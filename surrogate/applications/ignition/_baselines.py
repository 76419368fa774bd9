"""Data-driven baselines of the ignition problem, as in the PNODE study: kernel ridge
regression and a fully connected network, both mapping (parameters, t) -> T.

Kernel ridge regression (KRR) with the Gaussian (RBF) kernel on the pair (z, t) of scaled
parameters z and scaled time t,

    k((z, t), (z', t')) = exp(-|z - z'|^2 / (2 l_z^2)) exp(-(t - t')^2 / (2 l_t^2)),

is a product kernel. On training data that share one time grid, the Gram matrix of all
(case, time) points is the Kronecker product K_z ⊗ K_t, and the closed-form KRR solution
alpha = (K + lambda I)^-1 y follows from the eigendecompositions K_z = Q_z S_z Q_z^T and
K_t = Q_t S_t Q_t^T (Saatçi 2012, "Scalable inference for structured Gaussian process
models", ch. 5):

    alpha = Q_z [(Q_z^T Y Q_t) / (s_z s_t^T + lambda)] Q_t^T,       Y of shape (case, time),

exact and O(n^3 + m^3) instead of O((n m)^3). A prediction is K_z(z*, Z) alpha K_t.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable


def _rbf(a: Array, b: Array, length: float) -> Array:
    d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    return jnp.exp(-0.5 * d2 / length**2)


def log_features(x: Float[Array, "n p"], center: Array, scale: Array) -> Float[Array, "n p"]:
    """(log x - center) / scale: the parameters span factors of 2-10, all positive."""
    return (jnp.log(x) - center[None]) / scale[None]


@savable
class KernelRidge(eqx.Module):
    """KRR on (parameters, t) with a product RBF kernel; fitted by `KernelRidge.fit`.

    `__call__(x)` takes one sample's physical parameters (p,) and returns T at the training
    times, shape (1, time).
    """

    z_train: Float[Array, "n p"]
    alpha: Float[Array, "n time"]
    center: Float[Array, " p"]
    scale: Float[Array, " p"]
    k_time: Float[Array, "time time"]
    y_mean: Float[Array, ""]
    y_scale: Float[Array, ""]
    length_z: float = eqx.field(static=True)
    length_t: float = eqx.field(static=True)
    ridge: float = eqx.field(static=True)

    def __init__(self, z_train, alpha, center, scale, k_time, y_mean, y_scale, length_z,
                 length_t, ridge):  # fmt: skip
        self.z_train, self.alpha, self.center, self.scale = z_train, alpha, center, scale
        self.k_time, self.y_mean, self.y_scale = k_time, y_mean, y_scale
        self.length_z, self.length_t, self.ridge = float(length_z), float(length_t), float(ridge)

    @classmethod
    def fit(
        cls,
        x: Float[Array, "n p"],
        y: Float[Array, "n time"],
        times: Float[Array, " time"],
        *,
        length_z: float = 1.0,
        length_t: float = 0.05,
        ridge: float = 1e-3,
    ) -> KernelRidge:
        """Closed-form fit on physical parameters `x` (all > 0) and targets `y` at `times`;
        length scales are in units of the standardized log parameters and of t / t_end."""
        x, y, times = jnp.asarray(x), jnp.asarray(y), jnp.asarray(times)
        if x.ndim != 2 or y.ndim != 2 or y.shape != (x.shape[0], times.shape[0]):
            raise ValueError(
                f"need x (n, p), y (n, time), times (time,); got {x.shape}, {y.shape}, "
                f"{times.shape}"
            )
        if not (length_z > 0 and length_t > 0 and ridge >= 0):
            raise ValueError(f"need length scales > 0 and ridge >= 0, got {length_z}, "
                             f"{length_t}, {ridge}")  # fmt: skip
        logx = jnp.log(x)
        center = jnp.mean(logx, axis=0)
        scale = jnp.where(jnp.std(logx, axis=0) > 0, jnp.std(logx, axis=0), 1.0)
        z = log_features(x, center, scale)
        tn = (times / times[-1])[:, None]
        k_z, k_t = _rbf(z, z, length_z), _rbf(tn, tn, length_t)
        y_mean, y_scale = jnp.mean(y), jnp.std(y) + 1e-12
        s_z, q_z = jnp.linalg.eigh(k_z)
        s_t, q_t = jnp.linalg.eigh(k_t)
        s = jnp.maximum(s_z, 0.0)[:, None] * jnp.maximum(s_t, 0.0)[None, :]
        rotated = q_z.T @ ((y - y_mean) / y_scale) @ q_t
        alpha = q_z @ (rotated / (s + ridge)) @ q_t.T
        return cls(z, alpha, center, scale, k_t, y_mean, y_scale, length_z, length_t, ridge)

    def __call__(self, x: Float[Array, " p"]) -> Float[Array, "1 time"]:
        return self.predict(jnp.asarray(x)[None])[:, None][0]

    def predict(self, x: Float[Array, "n p"]) -> Float[Array, "n time"]:
        z = log_features(jnp.asarray(x), self.center, self.scale)
        pred = _rbf(z, self.z_train, self.length_z) @ self.alpha @ self.k_time
        return pred * self.y_scale + self.y_mean


def select_kernel_ridge(
    x_train: Array,
    y_train: Array,
    x_valid: Array,
    y_valid: Array,
    times: Array,
    *,
    lengths_z: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
    lengths_t: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1),
    ridges: Sequence[float] = (1e-4, 1e-2, 0.1, 0.3, 1.0),
) -> tuple[KernelRidge, dict[str, float]]:
    """The KRR of least validation MAE over a grid of (l_z, l_t, lambda), refitted on
    train + valid; returns it and the chosen settings."""
    best, best_err = None, math.inf
    for lz, lt, lam in itertools.product(lengths_z, lengths_t, ridges):
        model = KernelRidge.fit(x_train, y_train, times, length_z=lz, length_t=lt, ridge=lam)
        err = float(jnp.mean(jnp.abs(model.predict(x_valid) - y_valid)))
        if err < best_err:
            best, best_err = dict(length_z=lz, length_t=lt, ridge=lam), err
    x_all = jnp.concatenate([jnp.asarray(x_train), jnp.asarray(x_valid)])
    y_all = jnp.concatenate([jnp.asarray(y_train), jnp.asarray(y_valid)])
    return KernelRidge.fit(x_all, y_all, times, **best), {**best, "valid_mae": best_err}


@savable
class TrajectoryMLP(eqx.Module):
    """A fully connected network (z, t) -> y evaluated at the saved `times`: one sample's
    (normalized) parameters (p,) -> (normalized) T of shape (1, time).

    The time enters as t / t_end; the same MLP is applied at every time (vmapped), so this
    is the FC baseline of the PNODE study, usable by `train_from_config` as "mlp".
    """

    mlp: eqx.nn.MLP
    times: tuple[float, ...] = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        *,
        times: Sequence[float],
        width: int = 64,
        depth: int = 3,
        key: PRNGKeyArray,
    ):
        times = tuple(float(t) for t in np.asarray(times).reshape(-1))
        if len(times) < 2 or times[-1] <= 0:
            raise ValueError("times must hold >= 2 times ending at t > 0")
        if in_channels < 1 or out_channels < 1 or width < 1 or depth < 0:
            raise ValueError(
                f"need in/out channels >= 1, width >= 1, depth >= 0; got {in_channels}, "
                f"{out_channels}, {width}, {depth}"
            )
        self.mlp = eqx.nn.MLP(in_channels + 1, out_channels, width, depth,
                              activation=jax.nn.silu, key=key)  # fmt: skip
        self.times, self.in_channels, self.out_channels = times, in_channels, out_channels
        self.width, self.depth = width, depth

    def __call__(self, x: Float[Array, " p"]) -> Float[Array, "c time"]:
        if x.shape != (self.in_channels,):
            raise ValueError(f"expected {self.in_channels} parameters, got shape {x.shape}")
        dtype = self.mlp.layers[0].weight.dtype
        tn = jnp.asarray(self.times, dtype) / self.times[-1]
        x = jnp.asarray(x, dtype)
        return jax.vmap(lambda t: self.mlp(jnp.concatenate([x, t[None]])))(tn).T
