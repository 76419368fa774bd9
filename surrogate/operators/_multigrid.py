"""Multigrid V-cycle pieces: grid transfers as convolutions, fixed stencils, the cycle itself.

Fields are `(channels, *grid)` arrays on 1-D or 2-D uniform grids. Every level operator is a
convolution with a width-3 kernel `(out, in, 3[, 3])` (cross-correlation, as in
`jax.lax.conv_general_dilated`) after padding the field by one point per side, either with
zeros (homogeneous Dirichlet: the field vanishes just outside the grid) or periodically.

Grid hierarchy. Coarse point `j` sits on fine point `2j`, so a grid of `n` points coarsens to
`ceil(n / 2)` points:

- restriction is a stride-2 convolution of the padded field ('SAME'-like padding), so the
  coarse value `j` gathers fine points `2j - 1, 2j, 2j + 1`;
- prolongation is the transposed convolution: the coarse field is scattered onto the even
  fine points (zeros on the odd ones) and convolved with the kernel, which is the stride-2
  transposed convolution cropped to the fine size.

Vertex grids of `2^k m + 1` points (Darcy's 85, 141, 421, whose first and last points lie on
the boundary) keep both end points on every level: 85 -> 43 -> 22 -> 11. Periodic grids of
`2^k m` points coarsen exactly (every other point, 64 -> 32 -> 16). Any other size works too
(odd periodic sizes give a coarse grid whose last spacing across the seam is one fine step,
even Dirichlet sizes drop the last fine point from the coarse grid): the learned operators do
not care, only the textbook convergence of fixed operators does.

`conv_same`, `restrict` and `prolong` are the reference formulations (MgNO's `_reference`,
the textbook cycle of the tests); `conv_same_last`, `restrict_last` and `prolong_last` are
the same operators on `(*grid, channels)` fields, the fast path MgNO runs (see the section
below for what they do differently and why).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

PADDINGS = ("zero", "periodic")

Operator = Callable[[Array], Array]
Prolongation = Callable[[Array, tuple[int, ...]], Array]


def check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding mode {padding!r}; expected one of {PADDINGS}")


def coarse_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Grid shape one level down: `ceil(n / 2)` points per axis (coarse `j` = fine `2j`)."""
    return tuple((int(n) + 1) // 2 for n in shape)


def level_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Grid shapes of the `levels` levels of a hierarchy, finest first."""
    shapes = [tuple(int(n) for n in shape)]
    for _ in range(levels - 1):
        shapes.append(coarse_shape(shapes[-1]))
    return shapes


def check_grid(shape: Sequence[int], levels: int) -> None:
    """A hierarchy of `levels` levels needs at least 2 points per axis on its coarsest level,
    that is at least `2^(levels - 1) + 1` points per axis on the finest."""
    need = 2 ** (levels - 1) + 1
    for axis, n in enumerate(shape):
        if n < need:
            raise ValueError(
                f"grid of {n} points along axis {axis} is too small for {levels} multigrid "
                f"levels: need at least {need} points (2^(levels-1)+1), got shape {tuple(shape)}"
            )


def _pad(x: Array, width: int, padding: str) -> Array:
    pads = [(0, 0)] + [(width, width)] * (x.ndim - 1)
    return jnp.pad(x, pads, mode="constant" if padding == "zero" else "wrap")


def _conv(x: Array, kernel: Array, padding: str, stride: int) -> Array:
    ndim = x.ndim - 1
    xp = _pad(x, kernel.shape[-1] // 2, padding)
    y = jax.lax.conv_general_dilated(xp[None], kernel, (stride,) * ndim, "VALID")
    return y[0]


def conv_same(
    x: Float[Array, " cin *grid"], kernel: Float[Array, " cout cin *k"], padding: str
) -> Float[Array, " cout *grid"]:
    """Stride-1 convolution keeping the grid: `y_i = Σ_k K_k x_{i+k}` with padded borders."""
    return _conv(x, kernel, padding, 1)


def restrict(
    x: Float[Array, " cin *grid"], kernel: Float[Array, " cout cin *k"], padding: str
) -> Float[Array, " cout *coarse"]:
    """Stride-2 convolution: `y_j = Σ_k K_k x_{2j+k}`, `ceil(n/2)` points per axis."""
    return _conv(x, kernel, padding, 2)


def prolong(
    x: Float[Array, " cin *coarse"],
    kernel: Float[Array, " cout cin *k"],
    fine: tuple[int, ...],
    padding: str,
) -> Float[Array, " cout *fine"]:
    """Stride-2 transposed convolution cropped to the `fine` grid: the coarse values are put
    on the even fine points, zeros on the odd ones, then convolved with `kernel`."""
    if coarse_shape(fine) != x.shape[1:]:
        raise ValueError(
            f"a coarse grid {x.shape[1:]} does not come from a fine grid {fine}; "
            f"expected coarse shape {coarse_shape(fine)}"
        )
    # interior padding puts one zero between neighbours: 2 n_c - 1 points, then n_f
    config = [(0, 0, 0)] + [(0, n - (2 * m - 1), 1) for n, m in zip(fine, x.shape[1:], strict=True)]
    up = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
    return _conv(up, kernel, padding, 1)


# ---- channels-last transfers: the fast path of the learned cycle ---------------------------
# The same three operators on `(*grid, channels)` fields, kernels still `(out, in, *k)`.
# What costs time on XLA's CPU backend, measured at MgNO's Darcy sizes (benchmarks/
# mgno_step.py): channels-first convolutions (transposed around every call), padding the
# field before a 'VALID' convolution instead of letting the convolution pad (3x slower),
# the dilated prolongation (3/4 of its input zeros) and autodiff's gradients of it, and the
# weight gradients of convolutions whose operands outgrow the cache. So MgNO keeps its fields
# channels-last, zero padding is the convolution's own, the prolongation is split by parity
# classes of the fine points, both transfers get their own gradients (prolongation by K is
# the transpose of restriction by K', `_adjoint`, and the stride-2 convolution and its weight
# gradient are the cheap ones), and tall 2-D fields are convolved in row strips.

_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
# (parity of the fine point, offset of the coarse point) -> tap of the width-3 kernel:
# fine 2j takes tap 1 of coarse j; fine 2j + 1 takes tap 0 of coarse j and tap 2 of j + 1
_PHASE_TAPS = {(0, 0): 1, (1, 0): 0, (1, 1): 2}


def _conv_last(x: Array, kernel: Array, padding: str, stride: int, pads: list) -> Array:
    """Convolution of a channels-last field with a `(*k, in, out)` kernel, `pads` per axis."""
    ndim = x.ndim - 1
    if padding == "periodic":
        x = jnp.pad(x, [*pads, (0, 0)], mode="wrap")
        pads = [(0, 0)] * ndim
    y = jax.lax.conv_general_dilated(
        x[None], kernel, (stride,) * ndim, pads, dimension_numbers=_DIMENSIONS[ndim]
    )
    return y[0]


def _hwio(kernel: Array) -> Array:
    return jnp.moveaxis(kernel, (0, 1), (-1, -2))  # (out, in, *k) -> (*k, in, out)


def _adjoint(kernel: Array) -> Array:
    """`K'_k = K_{2-k}^T`: `prolong(x, K) = restrict^T(x, K')` and back (same padding; the
    index relation `i = 2j + k - 1`, or mod n when periodic, holds for every grid size)."""
    return jnp.flip(jnp.swapaxes(kernel, 0, 1), tuple(range(2, kernel.ndim)))


STRIP_ROWS = 28


def conv_same_last(
    x: Float[Array, " *grid cin"], kernel: Float[Array, " cout cin *k"], padding: str
) -> Float[Array, " *grid cout"]:
    """`conv_same` on a channels-last field. A 2-D field of `2 * STRIP_ROWS` rows or more is
    convolved in strips of about `STRIP_ROWS` output rows (each with its one-row halo): the
    weight gradient of each strip then works in cache (at s = 85, B = 20, width 32, 3 strips
    make a training step ~5% faster on a 2-core CPU)."""
    k = _hwio(kernel)
    rows = x.shape[0]
    n = rows // STRIP_ROWS if x.ndim == 3 else 0
    if n < 2:
        return _conv_last(x, k, padding, 1, [(1, 1)] * (x.ndim - 1))
    if padding == "periodic":
        x = jnp.pad(x, [(1, 1), (1, 1), (0, 0)], mode="wrap")
    edges = [round(i * rows / n) for i in range(n + 1)]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if padding == "periodic":
            part, pads = x[a : b + 2], [(0, 0), (0, 0)]
        else:
            part = x[max(a - 1, 0) : min(b + 1, rows)]
            pads = [(int(a == 0), int(b == rows)), (1, 1)]
        out.append(_conv_last(part, k, "zero", 1, pads))
    return jnp.concatenate(out, 0)


def _restrict_last(x: Array, kernel: Array, padding: str) -> Array:
    return _conv_last(x, _hwio(kernel), padding, 2, [(1, 1)] * (x.ndim - 1))


def _phase_kernel(kernel: Array) -> Array:
    """The prolongation kernel `(out, in, 3[, 3])` as a width-2 `(*2, in, 2^ndim out)` kernel
    on the coarse grid, one block of `out` features per parity class of the fine points."""
    ndim = kernel.ndim - 2
    cout, cin = kernel.shape[:2]
    zero = jnp.zeros((cin, cout), kernel.dtype)
    parities = list(itertools.product((0, 1), repeat=ndim))

    def block(parity, offset):
        taps = [_PHASE_TAPS.get((p, d)) for p, d in zip(parity, offset, strict=True)]
        return zero if None in taps else kernel[(slice(None), slice(None), *taps)].T

    w = jnp.stack([jnp.concatenate([block(p, d) for p in parities], -1) for d in parities])
    return w.reshape((2,) * ndim + (cin, len(parities) * cout))


def _prolong_last(x: Array, kernel: Array, fine: tuple[int, ...], padding: str) -> Array:
    """Fine point `2j` along an axis takes tap 1 of coarse point `j`, fine `2j + 1` taps 0 and
    2 of coarse `j` and `j + 1`: one width-2 convolution of the coarse field (padded by one
    point at the end) with `2^ndim` blocks of output features gives every parity class of
    fine points, which are then interleaved (16 instead of 36 taps per coarse point, and no
    zeros in the input). A periodic axis of odd length puts two coarse points side by side
    across the seam; such grids take the dilated formulation of `prolong`."""
    ndim = x.ndim - 1
    if padding == "periodic" and any(n % 2 for n in fine):
        return jnp.moveaxis(prolong(jnp.moveaxis(x, -1, 0), kernel, fine, padding), 0, -1)
    cout = kernel.shape[0]
    coarse = x.shape[:-1]
    y = _conv_last(x, _phase_kernel(kernel), padding, 1, [(0, 1)] * ndim)
    y = y.reshape(coarse + (2,) * ndim + (cout,))
    # (m1, m2, p1, p2, c) -> (m1, p1, m2, p2, c) -> (2 m1, 2 m2, c), cropped to the fine grid
    order = [a for axis in range(ndim) for a in (axis, ndim + axis)] + [2 * ndim]
    y = jnp.transpose(y, order).reshape(tuple(2 * m for m in coarse) + (cout,))
    return y[tuple(slice(n) for n in fine)]


def _restriction_weight_grad(x: Array, dy: Array, kernel: Array, padding: str) -> Array:
    """`∂<dy, restrict(x, K)>/∂K`, a stride-2 weight gradient."""
    return jax.vjp(lambda k: _restrict_last(x, k, padding), kernel)[1](dy)[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _restrict_last_jvp(x: Array, kernel: Array, padding: str) -> Array:
    return _restrict_last(x, kernel, padding)


@_restrict_last_jvp.defjvp
def _restrict_jvp(padding, primals, tangents):
    # the tangent in x is written as the transpose of the phase-split prolongation by K'
    # (restrict(., K) = prolong(., K')^T), so that reverse mode's input gradient is that
    # prolongation instead of autodiff's dilated transposed convolution; the tangent in K
    # is the convolution itself, whose transpose is its (batch-summed) weight gradient
    x, kernel = primals
    dx, dkernel = tangents
    coarse = jax.ShapeDtypeStruct(coarse_shape(x.shape[:-1]) + (kernel.shape[0],), x.dtype)
    adjoint = _adjoint(kernel)

    def prolong_by_adjoint(e):
        return _prolong_last(e, adjoint, x.shape[:-1], padding)

    (t_x,) = jax.linear_transpose(prolong_by_adjoint, coarse)(dx)
    t_kernel = _restrict_last(x, dkernel, padding)
    return _restrict_last(x, kernel, padding), t_x + t_kernel


def restrict_last(
    x: Float[Array, " *grid cin"], kernel: Float[Array, " cout cin *k"], padding: str
) -> Float[Array, " *coarse cout"]:
    """`restrict` on a channels-last field; its input gradient is a (phase-split)
    prolongation by the adjoint kernel (see above)."""
    return _restrict_last_jvp(x, kernel, padding)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _prolong_last_jvp(x: Array, kernel: Array, fine: tuple[int, ...], padding: str) -> Array:
    return _prolong_last(x, kernel, fine, padding)


@_prolong_last_jvp.defjvp
def _prolong_jvp(fine, padding, primals, tangents):
    # prolong(x, K) = restrict^T(x, K'), so both tangent maps are written as transposes
    # (`jax.linear_transpose`) of the restriction's own linear maps: reverse mode, which
    # transposes the tangents, then runs those maps themselves, the input gradient as a
    # stride-2 convolution and the kernel's as the restriction's weight gradient with the
    # roles of field and cotangent swapped (summed over a vmapped batch by autodiff, where a
    # custom VJP would give per-sample kernel gradients under vmap)
    x, kernel = primals
    dx, dkernel = tangents
    adjoint = _adjoint(kernel)
    fine_field = jax.ShapeDtypeStruct(tuple(fine) + (kernel.shape[0],), x.dtype)

    def restrict_by_adjoint(dy):
        return _restrict_last(dy, adjoint, padding)

    def weight_grad(dy):
        return _adjoint(_restriction_weight_grad(dy, x, adjoint, padding))

    (t_x,) = jax.linear_transpose(restrict_by_adjoint, fine_field)(dx)
    (t_kernel,) = jax.linear_transpose(weight_grad, fine_field)(dkernel)
    return _prolong_last(x, kernel, fine, padding), t_x + t_kernel


def prolong_last(
    x: Float[Array, " *coarse cin"],
    kernel: Float[Array, " cout cin *k"],
    fine: tuple[int, ...],
    padding: str,
) -> Float[Array, " *fine cout"]:
    """`prolong` on a channels-last field, computed by parity classes of the fine points;
    its gradients are restrictions (see above)."""
    if coarse_shape(fine) != x.shape[:-1]:
        raise ValueError(
            f"a coarse grid {x.shape[:-1]} does not come from a fine grid {fine}; "
            f"expected coarse shape {coarse_shape(fine)}"
        )
    return _prolong_last_jvp(x, kernel, tuple(int(n) for n in fine), padding)


# ---- fixed (textbook) stencils, single channel: kernels of shape (1, 1, 3[, 3]) ----------


def _tensor(stencil1d: list[float], ndim: int, dtype) -> Array:
    s = jnp.asarray(stencil1d, dtype)
    k = s
    for _ in range(ndim - 1):
        k = jnp.multiply.outer(k, s)
    return k[None, None]


def laplacian_stencil(ndim: int, dtype=jnp.float32) -> Float[Array, " 1 1 *k"]:
    """The (2d+1)-point stencil of `-h^2 Δ`: 2d in the centre, -1 on the axis neighbours."""
    k = jnp.zeros((3,) * ndim, dtype)
    centre = (1,) * ndim
    k = k.at[centre].set(2.0 * ndim)
    for axis in range(ndim):
        for side in (0, 2):
            k = k.at[centre[:axis] + (side,) + centre[axis + 1 :]].set(-1.0)
    return k[None, None]


def full_weighting_stencil(ndim: int, dtype=jnp.float32) -> Float[Array, " 1 1 *k"]:
    """Full-weighting restriction, the tensor product of `[1, 2, 1] / 4`."""
    return _tensor([0.25, 0.5, 0.25], ndim, dtype)


def linear_prolongation_stencil(ndim: int, dtype=jnp.float32) -> Float[Array, " 1 1 *k"]:
    """(Bi)linear interpolation as a transposed stencil, the tensor product of `[1, 2, 1] / 2`
    (the adjoint of full weighting times 2^d)."""
    return _tensor([0.5, 1.0, 0.5], ndim, dtype)


# ---- the cycle ------------------------------------------------------------------------------


def v_cycle(
    f: Float[Array, " c *grid"],
    A: Sequence[Operator],
    S: Sequence[Sequence[Operator]],
    R: Sequence[Operator],
    P: Sequence[Prolongation],
    *,
    S_post: Sequence[Sequence[Operator]] | None = None,
    Pi: Sequence[Operator] | None = None,
    channels_last: bool = False,
) -> Float[Array, " c *grid"]:
    """One multigrid V-cycle for `A u = f` from `u = 0`, with the level operators as arguments.

    Level `l = 0` is the finest. `A[l]`, `S[l]` act on level `l`; `R[l]`, `P[l]`, `Pi[l]`
    connect levels `l` and `l + 1`. With `L = len(A)` levels (MgNet, He & Xu 2019; MgNO,
    He, Liu & Xu 2024):

        for l = 0 .. L-1:   u_l <- u_l + S[l][i](f_l - A[l] u_l),  i = 0 .. len(S[l]) - 1
                            (l < L-1)  f_{l+1} = R[l](f_l - A[l] u_l)
                                       u_{l+1} = Pi[l](u_l), or 0 when `Pi` is None
        for l = L-2 .. 0:   u_l <- u_l + P[l](u_{l+1}, shape of level l)
                            u_l <- u_l + S_post[l][i](f_l - A[l] u_l)

    With `Pi = None` this is the textbook correction scheme, which the fixed stencils above
    turn into geometric multigrid for Poisson's equation. `Pi` is the learned initial guess of
    MgNet/MgNO; it is added back by `P` unchanged (not subtracted as in the full approximation
    scheme, where it would cancel out of a linear cycle).

    Fields are `(channels, *grid)`, or `(*grid, channels)` with `channels_last=True` (the
    grid shape handed to `P` is then `shape[:-1]`).
    """
    levels = len(A)
    if levels < 1 or len(S) != levels:
        raise ValueError(f"need A and S for each level; got {len(A)} A and {len(S)} S")
    if len(R) != levels - 1 or len(P) != levels - 1:
        raise ValueError(
            f"{levels} levels need {levels - 1} restrictions and prolongations; "
            f"got {len(R)} R and {len(P)} P"
        )
    if Pi is not None and len(Pi) != levels - 1:
        raise ValueError(f"{levels} levels need {levels - 1} Pi; got {len(Pi)}")
    if S_post is not None and len(S_post) != levels:
        raise ValueError(f"need S_post for each of the {levels} levels; got {len(S_post)}")

    def smooth(u, f, A_l, smoothers):
        for s in smoothers:
            # u = None stands for the zero guess: the first step is then u = S f, no A u
            u = s(f) if u is None else u + s(f - A_l(u))
        return u

    fs, us = [f], []
    u = None
    for level in range(levels):
        u = smooth(u, fs[level], A[level], S[level])
        if level == levels - 1:
            break
        r = fs[level] if u is None else fs[level] - A[level](u)
        us.append(u)
        fs.append(R[level](r))
        u = None if Pi is None or u is None else Pi[level](u)
    if u is None:  # no smoothing on the coarsest level and no initial guess there
        u = jnp.zeros_like(fs[-1])
    if S_post is not None:
        u = smooth(u, fs[-1], A[-1], S_post[-1])
    for level in reversed(range(levels - 1)):
        fine = fs[level].shape[:-1] if channels_last else fs[level].shape[1:]
        correction = P[level](u, fine)
        u = correction if us[level] is None else us[level] + correction
        if S_post is not None:
            u = smooth(u, fs[level], A[level], S_post[level])
    return u


def uniform_init(key, shape: tuple[int, ...], fan_in: int, dtype) -> Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for convolutions."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
