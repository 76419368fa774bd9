"""Learned closures of the one-level Lorenz '96 model: a local MLP and a ring FNO.

Both map the state X (K,) to the sub-grid tendency U (K,), see ONE unbatched state, and
carry normalizers (scalars: every k is statistically the same) that `fit_closure` sets from
the training data before training, so a saved closure works in physical units.

- `LocalMLPClosure`: U_k = MLP(X_{k−s}, ..., X_{k+s}), the same network at every k (a
  convolution with a learned nonlinear kernel of width 2s + 1). s = 0 is the pointwise
  closure of Gagne et al. (2020, JAMES 12, e2019MS001896); s > 0 adds neighbours, which
  the slow advection term couples to X_k.
- `FNOClosure`: a 1-D Fourier neural operator over the periodic ring of the K slow
  variables, a non-local closure in the spirit of the multiscale neural operator
  (Lütjens et al. 2022, "Multiscale neural operator: learning fast and grid-independent
  PDE solvers"). No grid coordinates are appended: the ring is homogeneous, and without
  them the closure is equivariant under rotations of k, as the true U is.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...coupling import AbstractParameterization
from ...data import Normalizer
from ...operators import FNO
from ._polynomial import check_ring_state


@savable
class LocalMLPClosure(AbstractParameterization):
    """U_k = MLP(X_{k−stencil..k+stencil}) at every k of the ring (module docstring).

    `width`, `depth`: the MLP's hidden width and number of hidden layers; GELU activations.
    """

    mlp: eqx.nn.MLP
    x_norm: Normalizer
    u_norm: Normalizer
    stencil: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        stencil: int = 0,
        width: int = 32,
        depth: int = 2,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        if not isinstance(stencil, int) or stencil < 0:
            raise ValueError(f"stencil must be a non-negative int, got {stencil!r}")
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        self.mlp = eqx.nn.MLP(
            2 * stencil + 1, "scalar", width, depth, jax.nn.gelu, dtype=dtype, key=key
        )
        self.x_norm, self.u_norm = Normalizer(1, dtype=dtype), Normalizer(1, dtype=dtype)
        self.stencil, self.width, self.depth = stencil, width, depth

    def __call__(self, x: Float[Array, " k"], params: Any = None) -> Float[Array, " k"]:
        check_ring_state(x)
        if x.shape[0] < 2 * self.stencil + 1:
            raise ValueError(
                f"a stencil of {self.stencil} neighbours each side needs K >= "
                f"{2 * self.stencil + 1} variables, got K={x.shape[0]}"
            )
        z = self.x_norm.encode(x[None])[0]
        # window[k, i] = z[k + i − stencil]; jnp.roll(z, −s)[k] = z[k + s]
        shifts = range(-self.stencil, self.stencil + 1)
        windows = jnp.stack([jnp.roll(z, -s) for s in shifts], axis=1)
        u = jax.vmap(self.mlp)(windows.astype(self.x_norm.mean.dtype))
        return self.u_norm.decode(u[None])[0].astype(x.dtype)


@savable
class FNOClosure(AbstractParameterization):
    """U = FNO(X) over the periodic ring of K slow variables (module docstring).

    `modes` Fourier modes are kept (at most K // 2 + 1), `width` channels, `n_layers`
    Fourier layers.
    """

    operator: FNO
    x_norm: Normalizer
    u_norm: Normalizer
    modes: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    n_layers: int = eqx.field(static=True)

    def __init__(
        self,
        modes: int = 4,
        width: int = 32,
        n_layers: int = 4,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        self.operator = FNO(1, 1, modes, width, n_layers, grid=False, dtype=dtype, key=key)
        self.x_norm, self.u_norm = Normalizer(1, dtype=dtype), Normalizer(1, dtype=dtype)
        self.modes, self.width, self.n_layers = int(modes), int(width), int(n_layers)

    def __call__(self, x: Float[Array, " k"], params: Any = None) -> Float[Array, " k"]:
        check_ring_state(x)
        if x.shape[0] // 2 + 1 < self.modes:
            raise ValueError(
                f"a ring of K={x.shape[0]} variables holds {x.shape[0] // 2 + 1} Fourier "
                f"modes; this closure keeps {self.modes}"
            )
        z = self.x_norm.encode(x[None]).astype(self.x_norm.mean.dtype)
        return self.u_norm.decode(self.operator(z))[0].astype(x.dtype)
