"""Periodic Gaussian random fields, the input distribution of the FNO benchmarks.

A GRF on the unit torus [0, 1)^d with covariance operator C = σ² (−Δ + τ² I)^(−α) has the
Karhunen-Loève expansion u = Σ_k sqrt(λ_k) ξ_k e^{2πi k·x}, with λ_k = σ² (4π²|k|² + τ²)^(−α).
We sample it by colouring white noise in Fourier space: if w is iid N(0, 1) on an n^d grid,
then u = irfftn(sqrt(n^d λ_k) rfftn(w)) has covariance Σ_k λ_k e^{2πi k·(x−y)} on the grid
(truncated to the grid's modes), and all symmetries of the real transform come for free.

The FNO paper's Burgers data: σ² = 625, τ = 5, α = 2 (mean zero); Darcy: (−Δ + 9I)^(−2);
Navier-Stokes: 7^(3/2) (−Δ + 49 I)^(−2.5).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def grf_eigenvalues(
    shape: tuple[int, ...],
    *,
    alpha: float,
    tau: float,
    sigma: float,
    zero_mean: bool = True,
    dtype=jnp.float32,
) -> Float[Array, " ..."]:
    """λ_k on the `rfftn` layout of a grid of `shape` on the unit torus."""
    freqs = [jnp.fft.fftfreq(n, d=1.0 / n) for n in shape[:-1]]
    freqs.append(jnp.fft.rfftfreq(shape[-1], d=1.0 / shape[-1]))
    grids = jnp.meshgrid(*freqs, indexing="ij")
    k2 = sum(g.astype(dtype) ** 2 for g in grids)
    lam = sigma**2 * (4.0 * math.pi**2 * k2 + tau**2) ** (-alpha)
    if zero_mean:
        lam = lam.at[(0,) * len(shape)].set(0.0)
    return lam.astype(dtype)


def grf(
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    *,
    alpha: float,
    tau: float,
    sigma: float,
    zero_mean: bool = True,
    dtype=jnp.float32,
) -> Float[Array, " ..."]:
    """One periodic Gaussian random field on a grid of `shape` over [0, 1)^d."""
    shape = tuple(int(n) for n in shape)
    if not shape or min(shape) < 2:
        raise ValueError(f"a random field needs at least 2 points per axis, got shape {shape}")
    if alpha <= 0 or tau < 0 or sigma <= 0:
        raise ValueError(f"need alpha > 0, tau >= 0, sigma > 0; got {alpha}, {tau}, {sigma}")
    if tau == 0 and not zero_mean:
        raise ValueError("tau = 0 gives the mean mode infinite variance; use zero_mean=True")
    axes = tuple(range(-len(shape), 0))
    lam = grf_eigenvalues(
        shape, alpha=alpha, tau=tau, sigma=sigma, zero_mean=zero_mean, dtype=dtype
    )
    noise = jax.random.normal(key, shape, dtype=dtype)
    coloured = jnp.fft.rfftn(noise, axes=axes) * jnp.sqrt(math.prod(shape) * lam)
    return jnp.fft.irfftn(coloured, s=shape, axes=axes).astype(dtype)


def grf_1d(
    key: PRNGKeyArray,
    n: int,
    *,
    alpha: float = 2.0,
    tau: float = 5.0,
    sigma: float = 25.0,
    zero_mean: bool = True,
    dtype=jnp.float32,
) -> Float[Array, " n"]:
    """A 1-D periodic GRF; the defaults are the FNO paper's Burgers initial conditions."""
    return grf(key, (n,), alpha=alpha, tau=tau, sigma=sigma, zero_mean=zero_mean, dtype=dtype)


def grf_2d(
    key: PRNGKeyArray,
    n: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float = 1.0,
    zero_mean: bool = True,
    dtype=jnp.float32,
) -> Float[Array, " n n"]:
    """A 2-D periodic GRF on an n x n grid over the unit square."""
    return grf(key, (n, n), alpha=alpha, tau=tau, sigma=sigma, zero_mean=zero_mean, dtype=dtype)
