"""Residual SSM blocks and the deep stack (S4/S4D architecture, Gu et al. 2022, Sec. 4).

A block is  x ← x + Mix(GELU(SSM(LN(x))))  (pre-norm) or  x ← LN(x + Mix(GELU(SSM(x))))
(post-norm). Mix is a per-time-step linear map of the channels, optionally gated,
GLU(z) = (W₁z + b₁) ⊙ σ(W₂z + b₂) (Dauphin et al. 2017), which S4 uses after its SSM. The
stack is a linear encoder, `depth` blocks, (a final LN for pre-norm,) optional pooling over
time and a linear decoder: sequence-to-sequence regression with `pooling="none"`,
classification or sequence-to-value regression with "mean" or "last".

The SSM is any layer of the family, chosen by `layer`: "s4d" (`DiagonalSSM`, or
`BidirectionalSSM`), "s5" (`S5`), "s4" (`S4`), "hydra" (`Hydra`). All map `(length,
channels)` to `(length, out_channels)` and take `rate`; the causal ones can be stepped.

Everything is per sequence, time first: (length, features).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from .._serialization import savable
from ._hydra import Hydra
from ._layer import BidirectionalSSM, DiagonalSSM
from ._s4 import S4
from ._s5 import S5

MIXINGS = ("glu", "linear")
POOLINGS = ("none", "mean", "last")
LAYERS = ("s4d", "s5", "s4", "hydra")

BlockState = Complex[Array, "..."]  # the layer's own state: (channels, modes), (modes,), ...


def _per_step(f, x: Array) -> Array:
    """Apply a per-vector layer to one vector (channels,) or to every step of (length, ...)."""
    return f(x) if x.ndim == 1 else jax.vmap(f)(x)


def make_layer(
    layer: str,
    channels: int,
    state_size: int,
    *,
    bidirectional: bool = False,
    merge: str = "sum",
    dtype=jnp.float32,
    key: PRNGKeyArray,
    **options,
) -> DiagonalSSM | BidirectionalSSM | S5 | S4 | Hydra:
    """The SSM layer named `layer` (one of `LAYERS`), `options` going to its constructor."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    common = dict(dtype=dtype, key=key, **options)
    if layer == "hydra":
        if not bidirectional or merge != "sum":
            raise ValueError(
                "layer='hydra' mixes both directions in one matrix: it needs "
                f"bidirectional=True and merge='sum', got {bidirectional}, {merge!r}"
            )
        return Hydra(channels, state_size, **common)
    if layer == "s4d":
        if bidirectional:
            return BidirectionalSSM(channels, state_size, merge=merge, **common)
        return DiagonalSSM(channels, state_size, **common)
    cls = S5 if layer == "s5" else S4
    return cls(channels, state_size, bidirectional=bidirectional, merge=merge, **common)


def _dt_options(layer: str, dt) -> dict:
    if dt is None:
        return {}
    if layer != "s5":
        raise ValueError(f"per-step time increments dt need layer='s5', got layer={layer!r}")
    return {"dt": dt}


@savable
class SSMBlock(eqx.Module):
    """SSM layer, GELU, GLU or linear channel mixing, residual connection and LayerNorm.

    `layer` picks the SSM ("s4d", "s5", "s4", "hydra"; `make_layer`); `dt` at call time is
    S5's per-step time increments.
    """

    ssm: DiagonalSSM | BidirectionalSSM | S5 | S4 | Hydra
    mix: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    mixing: str = eqx.field(static=True)
    prenorm: bool = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    merge: str = eqx.field(static=True)
    layer: str = eqx.field(static=True)
    ssm_kwargs: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        *,
        layer: str = "s4d",
        mixing: str = "glu",
        prenorm: bool = True,
        bidirectional: bool = False,
        merge: str = "sum",
        dtype=jnp.float32,
        key: PRNGKeyArray,
        **ssm_kwargs,
    ):
        if mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
        k_ssm, k_mix = jax.random.split(key)
        self.ssm = make_layer(layer, channels, state_size, bidirectional=bidirectional,
                              merge=merge, dtype=dtype, key=k_ssm, **ssm_kwargs)  # fmt: skip
        width = self.ssm.out_channels
        out = 2 * channels if mixing == "glu" else channels
        self.mix = eqx.nn.Linear(width, out, dtype=dtype, key=k_mix)
        self.norm = eqx.nn.LayerNorm(channels, dtype=dtype)
        self.mixing = mixing
        self.prenorm = prenorm
        self.channels, self.state_size = channels, state_size
        self.bidirectional, self.merge, self.layer = bidirectional, merge, layer
        self.ssm_kwargs = tuple(sorted(ssm_kwargs.items()))

    def _pointwise(self, z: Float[Array, "... width"]) -> Float[Array, "... channels"]:
        z = jax.nn.gelu(z)
        z = _per_step(self.mix, z)
        return jax.nn.glu(z, axis=-1) if self.mixing == "glu" else z

    def _norm(self, x: Float[Array, "... channels"]) -> Float[Array, "... channels"]:
        return _per_step(self.norm, x)

    def __call__(
        self,
        x: Float[Array, "length channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: Float[Array, " length"] | None = None,
    ) -> Float[Array, "length channels"]:
        options = _dt_options(self.layer, dt)
        z = self.ssm(self._norm(x) if self.prenorm else x, rate=rate, **options)
        x = x + self._pointwise(z)
        return x if self.prenorm else self._norm(x)

    def init_state(self) -> BlockState:
        if self.bidirectional:
            raise ValueError("a bidirectional block looks at the future and cannot be stepped")
        return self.ssm.init_state()

    def step(
        self,
        state: BlockState,
        x_t: Float[Array, " channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: float | Float[Array, ""] | None = None,
    ) -> tuple[BlockState, Float[Array, " channels"]]:
        """One time step of a causal block: the same numbers as `__call__` at that step."""
        if self.bidirectional:
            raise ValueError("a bidirectional block looks at the future and cannot be stepped")
        options = _dt_options(self.layer, dt)
        z_t = self._norm(x_t) if self.prenorm else x_t
        state, z = self.ssm.step(state, z_t, rate=rate, **options)
        x_t = x_t + self._pointwise(z)
        return state, x_t if self.prenorm else self._norm(x_t)


@savable
class SSMStack(eqx.Module):
    """Encoder, `depth` SSM blocks and decoder: an S4D-style deep sequence model.

    Maps (length, in_features) to (length, out_features) with `pooling="none"`, or to
    (out_features,) with "mean" or "last". `layer` is the SSM of every block ("s4d",
    "s5", "s4", "hydra"; see `SSMBlock`); extra keyword arguments go to every SSM layer
    (for "s4d": init, discretization, kernel, chunk, dt_min, dt_max).

    Example:
        >>> model = SSMStack(1, 1, width=32, depth=2, state_size=16, key=jax.random.key(0))
        >>> y = model(jnp.zeros((1000, 1)))                           # (1000, 1)
        >>> state, y_t = model.step(model.init_state(), jnp.zeros(1))  # streaming
    """

    encoder: eqx.nn.Linear
    blocks: tuple[SSMBlock, ...]
    norm: eqx.nn.LayerNorm | None
    decoder: eqx.nn.Linear
    in_features: int = eqx.field(static=True)
    pooling: str = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    mixing: str = eqx.field(static=True)
    prenorm: bool = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    layer: str = eqx.field(static=True)
    ssm_kwargs: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 128,
        depth: int = 4,
        state_size: int = 64,
        *,
        pooling: str = "none",
        layer: str = "s4d",
        mixing: str = "glu",
        prenorm: bool = True,
        bidirectional: bool = False,
        dtype=jnp.float32,
        key: PRNGKeyArray,
        **ssm_kwargs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        k_enc, k_dec, *k_blocks = jax.random.split(key, depth + 2)
        self.encoder = eqx.nn.Linear(in_features, width, dtype=dtype, key=k_enc)
        self.blocks = tuple(
            SSMBlock(
                width,
                state_size,
                layer=layer,
                mixing=mixing,
                prenorm=prenorm,
                bidirectional=bidirectional,
                dtype=dtype,
                key=k,
                **ssm_kwargs,
            )
            for k in k_blocks
        )
        self.norm = eqx.nn.LayerNorm(width, dtype=dtype) if prenorm else None
        self.decoder = eqx.nn.Linear(width, out_features, dtype=dtype, key=k_dec)
        self.in_features = in_features
        self.pooling = pooling
        self.out_features, self.width, self.depth = out_features, width, depth
        self.state_size, self.mixing, self.prenorm = state_size, mixing, prenorm
        self.bidirectional, self.layer = bidirectional, layer
        self.ssm_kwargs = tuple(sorted(ssm_kwargs.items()))

    def _encode(self, u: Array) -> Array:
        return _per_step(self.encoder, u)

    def _norm(self, h: Array) -> Array:
        return h if self.norm is None else _per_step(self.norm, h)

    def __call__(
        self,
        u: Float[Array, "length in_features"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: Float[Array, " length"] | None = None,
    ) -> Float[Array, "length out_features"] | Float[Array, " out_features"]:
        if u.ndim != 2 or u.shape[1] != self.in_features:
            raise ValueError(
                f"expected an input of shape (length, {self.in_features}), got {u.shape}"
            )
        h = self._encode(u)
        for block in self.blocks:
            h = block(h, rate=rate, dt=dt)
        h = self._norm(h)
        if self.pooling == "mean":
            h = jnp.mean(h, axis=0)
        elif self.pooling == "last":
            h = h[-1]
        return _per_step(self.decoder, h)

    def init_state(self) -> tuple[BlockState, ...]:
        """Zero states of every block (causal stacks only)."""
        return tuple(block.init_state() for block in self.blocks)

    def step(
        self,
        state: tuple[BlockState, ...],
        u_t: Float[Array, " in_features"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: float | Float[Array, ""] | None = None,
    ) -> tuple[tuple[BlockState, ...], Float[Array, " out_features"]]:
        """One time step: y_t as `__call__` gives it at t (or, for "last", on u_0..u_t)."""
        if self.pooling == "mean":
            raise ValueError("pooling='mean' needs the whole sequence; step needs 'none'/'last'")
        if u_t.shape != (self.in_features,):
            raise ValueError(f"expected an input of shape ({self.in_features},), got {u_t.shape}")
        h = self._encode(u_t)
        new = []
        for block, s in zip(self.blocks, state, strict=True):
            s, h = block.step(s, h, rate=rate, dt=dt)
            new.append(s)
        return tuple(new), self.decoder(self._norm(h))
