"""MgNO: neural operator layers whose linear part is a learned multigrid V-cycle.

He, Liu & Xu, "MgNO: Efficient parameterization of linear operators via multigrid", ICLR
2024. A layer is `u <- σ(MgConv(u) + W u + b)` with `W` a 1x1 channel mixing, `b` a bias per
channel and `σ` GELU; `MgConv` is one multichannel V-cycle (`_multigrid.v_cycle`) whose
operators A (residual), S (smoother), R (restriction), P (prolongation) and optionally Π
(coarse initial guess) are learned width-3 convolutions, channels -> channels, one set per
level. The grid size is not in the weights: the same model runs on any grid with enough
points for its levels (see `_multigrid` for how odd and even sizes coarsen).

Resolution. The weights are stencils in grid units, so on a grid it was not trained on the
model is a different operator, unless the target is scale-free AND the grid frequencies it
meets were seen in training: zero-shot super-resolution does not come with the architecture
(as for CNNs; Sakarvadia et al. 2025, "The false promise of zero-shot super-resolution in
machine-learned operators"). Measured in 1-D with width 8: trained at 33 points on
-u'' = f (Dirichlet), relative L2 error 0.08 at 33 points and 1.45 at 65; trained at 32
points on the periodic Hilbert transform, 0.01 at 32 and 0.17 at 64. Train on every
resolution the model will see (32 and 64 together: 0.01-0.02 at both, tests/test_mgno.py).

Speed. `__call__` runs the cycle on channels-last fields with the transfers of `_multigrid`'s
fast path (phase-split prolongation; both transfers' gradients written with restrictions),
the convolutions of grids of 56 rows or more in row strips, the first smoothing step and
`W` of the first layer composed with the lifting, and GELU's derivative kept from the
forward pass. `_reference` is the first implementation (channels-first, dilated
prolongation, plain autodiff), kept to test against (equal to round-off in float64) and to
time against: benchmarks/mgno_step.py. The transfers' gradients come from custom JVPs
whose tangent maps are written as transposes, so forward mode (`jax.jvp`, `jacfwd`) works
too, while reverse mode runs the cheap forms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._serialization import savable
from ._multigrid import (
    check_grid,
    check_padding,
    conv_same,
    conv_same_last,
    prolong,
    prolong_last,
    restrict,
    restrict_last,
    uniform_init,
    v_cycle,
)
from ._pointwise import PointwiseLinear

COARSE_GUESSES = ("zero", "restrict")


def _check_field(x: Array, channels: int, ndim: int, levels: int, who: str) -> None:
    if x.ndim != ndim + 1:
        raise ValueError(
            f"{who} expects a field (channels, *grid) with {ndim} grid axes, got shape {x.shape}"
        )
    if x.shape[0] != channels:
        raise ValueError(f"{who} expects {channels} input channels, got {x.shape[0]} ({x.shape})")
    check_grid(x.shape[1:], levels)


def _channel_map(x: Float[Array, " *grid i"], weight: Float[Array, " o i"]) -> Array:
    """`y[..., o] = Σ_i W[o, i] x[..., i]`, as a matrix product of the flattened grid (XLA's
    CPU dot is 2-3x slower, forward and backward, on the field's own rank)."""
    y = x.reshape(-1, x.shape[-1]) @ weight.T
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def _pointwise_last(linear: PointwiseLinear, x: Float[Array, " *grid i"]) -> Array:
    """`PointwiseLinear` on a channels-last field: `y[..., o] = Σ_i W[o, i] x[..., i] + b[o]`."""
    y = _channel_map(x, linear.weight)
    if linear.bias is None:
        return y
    return y + linear.bias.reshape((1,) * (x.ndim - 1) + (-1,))


@jax.custom_jvp
def _gelu(x: Array) -> Array:
    """`jax.nn.gelu(x, approximate=False)`, whose derivative `Φ(x) + x φ(x)` is formed in the
    forward pass from the same `Φ` (autodiff recomputes erfc and its derivative after)."""
    return jax.nn.gelu(x, approximate=False)


@_gelu.defjvp
def _gelu_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    cdf = 0.5 * jax.lax.erfc(-x * math.sqrt(0.5))
    pdf = jnp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return x * cdf, (cdf + x * pdf) * dx


def _affine(linear: PointwiseLinear) -> Float[Array, " o i1"]:
    """`[W | b]`: the map `x -> W x + b` as a matrix acting on `(x, 1)`."""
    bias = (
        jnp.zeros(linear.weight.shape[:1], linear.weight.dtype)
        if linear.bias is None
        else linear.bias
    )
    return jnp.concatenate([linear.weight, bias[:, None]], 1)


class MgConv(eqx.Module):
    """One multichannel V-cycle with learned width-3 convolutions (MgNO's multigrid W).

    `coarse_guess="zero"` starts every coarse level from zero (the correction scheme; for a
    linear cycle the learned initial guess of MgNet cancels in full-approximation form, see
    `v_cycle`); `"restrict"` starts it from a learned stride-2 convolution Π of the finer
    iterate, added back by the prolongation.
    """

    A: list[Array]
    S: list[list[Array]]
    S_post: list[list[Array]] | None
    R: list[Array]
    P: list[Array]
    Pi: list[Array] | None
    channels: int = eqx.field(static=True)
    ndim: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    padding: str = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        *,
        ndim: int = 2,
        levels: int = 4,
        smoothing: int = 1,
        post_smoothing: int = 0,
        padding: str = "zero",
        coarse_guess: str = "zero",
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        check_padding(padding)
        if coarse_guess not in COARSE_GUESSES:
            raise ValueError(f"unknown coarse_guess {coarse_guess!r}; expected {COARSE_GUESSES}")
        if ndim not in (1, 2):
            raise ValueError(f"MgConv works on 1-D or 2-D grids, got ndim={ndim}")
        if channels < 1 or levels < 1 or smoothing < 1 or post_smoothing < 0:
            raise ValueError(
                "need channels >= 1, levels >= 1, smoothing >= 1, post_smoothing >= 0; got "
                f"{channels}, {levels}, {smoothing}, {post_smoothing}"
            )
        kernel = (channels, channels) + (3,) * ndim
        fan_in = channels * 3**ndim

        kA, kS, kT, kR, kP, kPi = jax.random.split(key, 6)

        def draw(k, n):
            # same-shaped draws keyed by fold_in: an eager RNG call compiles once per shape
            return [uniform_init(jax.random.fold_in(k, i), kernel, fan_in, dtype) for i in range(n)]

        def steps(k, n):
            return [draw(jax.random.fold_in(k, level), n) for level in range(levels)]

        self.A, self.R, self.P = draw(kA, levels), draw(kR, levels - 1), draw(kP, levels - 1)
        self.S = steps(kS, smoothing)
        self.S_post = steps(kT, post_smoothing) if post_smoothing else None
        self.Pi = draw(kPi, levels - 1) if coarse_guess == "restrict" else None
        self.channels, self.ndim, self.levels, self.padding = channels, ndim, levels, padding

    def __call__(self, f: Float[Array, " c *grid"]) -> Float[Array, " c *grid"]:
        _check_field(f, self.channels, self.ndim, self.levels, "MgConv")
        return jnp.moveaxis(self._cycle(jnp.moveaxis(f, 0, -1)), -1, 0)

    def _cycle(
        self, f: Float[Array, " *grid c"], first: Callable[[Array], Array] | None = None
    ) -> Float[Array, " *grid c"]:
        """The V-cycle on a channels-last field (the fast path; see `_multigrid`). `first`,
        when given, computes the first smoothing step `S[0][0] f` another way."""
        pad = self.padding

        def up(w):
            return lambda x, fine: prolong_last(x, w, fine, pad)

        S = [
            [functools.partial(conv_same_last, kernel=w, padding=pad) for w in lv] for lv in self.S
        ]
        if first is not None:
            S[0][0] = first
        return self._v_cycle(f, conv_same_last, restrict_last, up, S=S, channels_last=True)

    def _reference(self, f: Float[Array, " c *grid"]) -> Float[Array, " c *grid"]:
        """The first implementation, channels-first with a dilated prolongation: kept to test
        and time the fast path against (tests/test_mgno.py, benchmarks/mgno_step.py)."""
        _check_field(f, self.channels, self.ndim, self.levels, "MgConv")
        pad = self.padding

        def up(w):
            return lambda x, fine: prolong(x, w, fine, pad)

        return self._v_cycle(f, conv_same, restrict, up)

    def _v_cycle(self, f, conv_op, restrict_op, up, S=None, channels_last=False):
        pad = self.padding

        def conv(w):
            return functools.partial(conv_op, kernel=w, padding=pad)

        def down(w):
            return functools.partial(restrict_op, kernel=w, padding=pad)

        return v_cycle(
            f,
            A=[conv(w) for w in self.A],
            S=[[conv(w) for w in level] for level in self.S] if S is None else S,
            R=[down(w) for w in self.R],
            P=[up(w) for w in self.P],
            S_post=None if self.S_post is None else [[conv(w) for w in lv] for lv in self.S_post],
            Pi=None if self.Pi is None else [down(w) for w in self.Pi],
            channels_last=channels_last,
        )


class MgNOLayer(eqx.Module):
    """`u <- σ(MgConv(u) + W u + b)`, MgNO's layer with a bias constant per channel (the
    paper allows a bias function; a constant keeps the weights free of the grid size)."""

    mgconv: MgConv
    mix: PointwiseLinear

    def __init__(self, channels: int, *, dtype=jnp.float32, key: PRNGKeyArray, **mg_options):
        k1, k2 = jax.random.split(key)
        self.mgconv = MgConv(channels, dtype=dtype, key=k1, **mg_options)
        self.mix = PointwiseLinear(channels, channels, dtype=dtype, key=k2)

    def __call__(self, u: Float[Array, " c *grid"]) -> Float[Array, " c *grid"]:
        return jnp.moveaxis(self._last(jnp.moveaxis(u, 0, -1)), -1, 0)

    def _last(
        self, u: Float[Array, " *grid c"], source: tuple[Array, PointwiseLinear] | None = None
    ) -> Float[Array, " *grid c"]:
        """The layer on a channels-last field. `source = (x, lift)` says that `u = lift(x)`
        with fewer channels in `x`: the maps applied to `u` itself (the first smoothing step
        and `W`) are then composed with the lifting and applied to `(x, 1)` instead."""
        if source is None or source[0].shape[-1] + 1 >= u.shape[-1]:
            return _gelu(self.mgconv._cycle(u) + _pointwise_last(self.mix, u))
        x, lift = source
        ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
        x1 = jnp.concatenate([x, ones], -1)  # zero (or periodic) outside like u itself
        lifted = _affine(lift)  # (width, cin + 1): u = lifted @ (x, 1)
        kernel = jnp.einsum("oi...,ij->oj...", self.mgconv.S[0][0], lifted)
        first = functools.partial(conv_same_last, x1, kernel=kernel, padding=self.mgconv.padding)
        mixed = _channel_map(x1, self.mix.weight @ lifted)
        if self.mix.bias is not None:
            mixed = mixed + self.mix.bias.reshape((1,) * (u.ndim - 1) + (-1,))
        return _gelu(self.mgconv._cycle(u, first=lambda _: first()) + mixed)

    def _reference(self, u: Float[Array, " c *grid"]) -> Float[Array, " c *grid"]:
        return jax.nn.gelu(self.mgconv._reference(u) + self.mix(u), approximate=False)


@savable
class MgNO(eqx.Module):
    """MgNO operator `(in_channels, *grid) -> (out_channels, *grid)` for ONE sample.

    A 1x1 map to `width` channels, `depth` MgNO layers, a 1x1 map to `out_channels`; no other
    lifting or projection. `levels` grid levels per V-cycle with `smoothing` pre- and
    `post_smoothing` post-smoothing steps per level; `padding` is "zero" (homogeneous
    Dirichlet) or "periodic". A grid needs at least `2^(levels-1) + 1` points per axis.

    Example: `MgNO(1, 1, ndim=2, width=32, depth=5, levels=4, key=key)` maps Darcy's
    coefficient `(1, 85, 85)` to the pressure `(1, 85, 85)`; `jax.vmap` it over samples.
    """

    lift: PointwiseLinear
    layers: list[MgNOLayer]
    project: PointwiseLinear
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    ndim: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    smoothing: int = eqx.field(static=True)
    post_smoothing: int = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    coarse_guess: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ndim: int = 2,
        width: int = 32,
        depth: int = 5,
        levels: int = 4,
        smoothing: int = 1,
        post_smoothing: int = 0,
        padding: str = "zero",
        coarse_guess: str = "zero",
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        check_padding(padding)
        if coarse_guess not in COARSE_GUESSES:
            raise ValueError(f"unknown coarse_guess {coarse_guess!r}; expected {COARSE_GUESSES}")
        if in_channels < 1 or out_channels < 1 or width < 1 or depth < 1:
            raise ValueError(
                "need in_channels, out_channels, width, depth >= 1; got "
                f"{in_channels}, {out_channels}, {width}, {depth}"
            )
        k_in, k_out, *k_layers = jax.random.split(key, depth + 2)
        options = dict(
            ndim=ndim,
            levels=levels,
            smoothing=smoothing,
            post_smoothing=post_smoothing,
            padding=padding,
            coarse_guess=coarse_guess,
        )
        self.layers = [MgNOLayer(width, dtype=dtype, key=k, **options) for k in k_layers]
        self.lift = PointwiseLinear(in_channels, width, dtype=dtype, key=k_in)
        self.project = PointwiseLinear(width, out_channels, dtype=dtype, key=k_out)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ndim, self.levels = ndim, levels
        self.width, self.depth = width, depth
        self.smoothing, self.post_smoothing = smoothing, post_smoothing
        self.padding, self.coarse_guess = padding, coarse_guess

    def __call__(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        _check_field(x, self.in_channels, self.ndim, self.levels, "MgNO")
        # channels-last inside: the lifting writes that layout, the projection reads it
        x = jnp.moveaxis(x, 0, -1)
        u = _pointwise_last(self.lift, x)
        u = self.layers[0]._last(u, source=(x, self.lift))
        for layer in self.layers[1:]:
            u = layer._last(u)
        return jnp.moveaxis(_pointwise_last(self.project, u), -1, 0)

    def _reference(self, x: Float[Array, " cin *grid"]) -> Float[Array, " cout *grid"]:
        """The first implementation (`MgConv._reference`), for tests and benchmarks."""
        _check_field(x, self.in_channels, self.ndim, self.levels, "MgNO")
        u = self.lift(x)
        for layer in self.layers:
            u = layer._reference(u)
        return self.project(u)
