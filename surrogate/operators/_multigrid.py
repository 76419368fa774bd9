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
"""

from __future__ import annotations

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
        correction = P[level](u, fs[level].shape[1:])
        u = correction if us[level] is None else us[level] + correction
        if S_post is not None:
            u = smooth(u, fs[level], A[level], S_post[level])
    return u


def uniform_init(key, shape: tuple[int, ...], fan_in: int, dtype) -> Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for convolutions."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
