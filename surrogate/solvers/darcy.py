"""2-D Darcy flow of the FNO paper (Li et al., ICLR 2021, §5.2):

    −∇·(a(x) ∇u(x)) = f(x),  x ∈ (0, 1)²,   u = 0 on the boundary,   f = 1.

Discretisation: five-point finite differences on the vertex grid x_i = i h, h = 1/(n − 1),
i = 0..n−1 (n × n points including the boundary, as the paper's data), with the coefficient
given at the vertices and the face coefficients their harmonic means,

    (A u)_ij = Σ_faces a_f (u_ij − u_nb) / h²,   a_{i+½,j} = 2 a_ij a_{i+1,j} / (a_ij + a_{i+1,j}),

the flux-conserving choice that stays second order across a coefficient jump at a face
(the series-resistor rule). A is symmetric positive definite on the (n − 2)² interior values.

Solver: conjugate gradients (lineax) on the split-preconditioned operator P A P, with
P = M^(−1/2) and M = a_min L_h, L_h the constant-coefficient Dirichlet Laplacian, applied
exactly by fast sine transforms (a "fast Poisson" preconditioner in place of multigrid).
Since a_min L_h ≤ A ≤ a_max L_h, the spectrum of P A P lies in [1, a_max / a_min] (= [1, 4]
for the paper's a ∈ {3, 12}) on every grid, so the iteration count does not grow with n.
The tolerance is on the preconditioned residual, ‖P(b − A u)‖₂ ≤ rtol ‖P b‖₂, which bounds
the relative error of M^(1/2) u by cond · rtol. Rounding u to float32 alone leaves this
residual at ≈ 0.15 eps (n − 1) (6e-6 at n = 421; the raw residual b − A u is ~1e-3 there),
so the default tolerance is max(1e-6, eps (n − 1)) and a smaller one is refused.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray


def harmonic_face_coefficients(
    a: Float[Array, "n n"],
) -> tuple[Float[Array, "n-1 n-2"], Float[Array, "n-2 n-1"]]:
    """Harmonic means of a on the x-faces (between rows) and y-faces of interior vertices."""
    ax = 2 * a[1:, 1:-1] * a[:-1, 1:-1] / (a[1:, 1:-1] + a[:-1, 1:-1])
    ay = 2 * a[1:-1, 1:] * a[1:-1, :-1] / (a[1:-1, 1:] + a[1:-1, :-1])
    return ax, ay


def darcy_operator(
    u: Float[Array, "m m"], ax: Float[Array, "m+1 m"], ay: Float[Array, "m m+1"], h: float
) -> Float[Array, "m m"]:
    """(A u) of −∇·(a∇u) on the interior values u, with u = 0 on the boundary."""
    p = jnp.pad(u, 1)
    flux_x = ax * (p[1:, 1:-1] - p[:-1, 1:-1])
    flux_y = ay * (p[1:-1, 1:] - p[1:-1, :-1])
    return -((flux_x[1:] - flux_x[:-1]) + (flux_y[:, 1:] - flux_y[:, :-1])) / h**2


def _dst1(x: Array, axis: int) -> Array:
    """Orthonormal DST-I along `axis` (its own inverse), from an rfft of the odd extension."""
    x = jnp.moveaxis(x, axis, -1)
    m = x.shape[-1]
    zero = jnp.zeros(x.shape[:-1] + (1,), x.dtype)
    odd = jnp.concatenate([zero, x, zero, -x[..., ::-1]], axis=-1)
    y = -jnp.imag(jnp.fft.rfft(odd, axis=-1))[..., 1 : m + 1]
    return jnp.moveaxis(y * math.sqrt(0.5 / (m + 1)), -1, axis)


def _laplacian_eigenvalues(m: int, h: float, dtype) -> Array:
    """Eigenvalues of the 5-point Dirichlet −Δ_h on an m × m interior grid (DST-I basis)."""
    mu = (4 / h**2) * jnp.sin(jnp.pi * jnp.arange(1, m + 1, dtype=dtype) / (2 * (m + 1))) ** 2
    return mu[:, None] + mu[None, :]


def _inverse_sqrt_poisson(r: Array, weight: Array) -> Array:
    """M^(−1/2) r for M = ā (−Δ_h): DST-I, divide by sqrt of the eigenvalues, DST-I."""
    return _dst1(_dst1(_dst1(_dst1(r, 0), 1) * weight, 0), 1)


@functools.partial(jax.jit, static_argnames=("n", "alpha", "tau", "dtype"))
def _cosine_grf(key: PRNGKeyArray, n: int, alpha: float, tau: float, dtype) -> Array:
    """Zero-mean GRF with covariance (−Δ + τ²)^(−α), −Δ with Neumann conditions on [0, 1]².

    Karhunen-Loève in the cosine basis cos(πk₁x) cos(πk₂y), eigenvalues π²|k|² + τ², on the
    vertex grid x_i = i / (n − 1) with k = 0..n−1 (the DCT-I modes the grid carries).
    """
    k = jnp.arange(n, dtype=dtype)
    basis = jnp.cos(jnp.pi * k[None, :] * jnp.arange(n, dtype=dtype)[:, None] / (n - 1))
    lam = (jnp.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2) ** (-alpha)
    coeff = jnp.sqrt(lam.at[0, 0].set(0.0)) * jax.random.normal(key, (n, n), dtype)
    return basis @ coeff @ basis.T


def darcy_coefficient(
    key: PRNGKeyArray,
    n: int,
    *,
    high: float = 12.0,
    low: float = 3.0,
    alpha: float = 2.0,
    tau: float = 3.0,
    dtype=jnp.float32,
) -> Float[Array, "n n"]:
    """The FNO paper's Darcy coefficient on the n × n vertex grid of [0, 1]².

    a = high where a zero-mean GRF with covariance (−Δ + τ² I)^(−α) is ≥ 0 and low
    elsewhere; like the paper's data the field uses the Neumann (cosine) eigenbasis on the
    unit square, so it is not periodic. Defaults: (−Δ + 9 I)^(−2), a ∈ {12, 3}.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"the coefficient grid needs at least 2 points per axis, got n = {n}")
    if not (high > 0 and low > 0):
        raise ValueError(f"coefficient values must be positive, got high={high}, low={low}")
    field = _cosine_grf(key, int(n), float(alpha), float(tau), jnp.dtype(dtype))
    return _threshold(field, float(high), float(low))


@functools.partial(jax.jit, static_argnames=("high", "low"))
def _threshold(field: Array, high: float, low: float) -> Array:
    return jnp.where(field >= 0, high, low).astype(field.dtype)


def subsample_vertex(u: Float[Array, "n n"], n_out: int) -> Float[Array, "n_out n_out"]:
    """Every r-th point of a vertex grid, r = (n − 1) / (n_out − 1) (FNO: 421 → 85, r = 5)."""
    if u.ndim != 2 or u.shape[0] != u.shape[1]:
        raise ValueError(f"expected a square n x n field, got shape {u.shape}")
    n = u.shape[0]
    if int(n_out) != n_out or n_out < 2 or (n - 1) % (n_out - 1):
        options = [(n - 1) // r + 1 for r in range(1, n) if (n - 1) % r == 0][:6]
        raise ValueError(
            f"unsupported resolution {n_out} for subsampling a {n}-point vertex grid: "
            f"n_out - 1 must divide {n - 1} (e.g. {options})"
        )
    return u[:: (n - 1) // (n_out - 1), :: (n - 1) // (n_out - 1)]


@eqx.filter_jit
def _split_cg(
    a: Array, f: Array | None, forcing: float, rtol: Array, max_steps: int
) -> tuple[Array, Array]:
    """u on the vertex grid from CG on P A P y = P b, u = P y, P = (a_min (−Δ_h))^(−1/2)."""
    dtype, m = a.dtype, a.shape[0] - 2
    h = 1.0 / (m + 1)
    b = jnp.full((m, m), forcing, dtype) if f is None else f[1:-1, 1:-1].astype(dtype)
    ax, ay = harmonic_face_coefficients(a)
    # M = a_min (−Δ_h) ≤ A, so every eigenvalue of P A P lies in [1, a_max / a_min]
    a_min = jnp.minimum(jnp.min(ax), jnp.min(ay))
    weight = 1.0 / jnp.sqrt(a_min * _laplacian_eigenvalues(m, h, dtype))
    # lineax's CG declares breakdown when p·Bp < 100 eps size (r·r); lifting the spectrum
    # of B above that keeps large float32 grids clear of the test
    lift = max(1.0, 1000.0 * float(jnp.finfo(dtype).eps) * m * m)

    def split(y):
        py = _inverse_sqrt_poisson(y, weight)
        return lift * _inverse_sqrt_poisson(darcy_operator(py, ax, ay, h), weight)

    rhs = _inverse_sqrt_poisson(b, weight)
    # scale the right side to unit rms, so that the absolute tolerance is a relative one
    scale = jnp.sqrt(jnp.mean(rhs**2))
    scale = jnp.where(scale > 0, scale, 1.0)
    operator = lx.FunctionLinearOperator(
        split, jax.ShapeDtypeStruct((m, m), dtype), tags=lx.positive_semidefinite_tag
    )
    cg = lx.CG(
        rtol=0.0, atol=lift * rtol, max_steps=max_steps, norm=lambda r: jnp.sqrt(jnp.mean(r**2))
    )
    sol = lx.linear_solve(operator, lift * rhs / scale, cg)
    u = _inverse_sqrt_poisson(sol.value, weight) * scale
    return jnp.pad(u, 1), sol.stats["num_steps"]


class DarcySolver(eqx.Module):
    """Finite-difference Darcy solver on the n × n vertex grid (FNO data: n = 421).

    `__call__(a)` gives u on all n × n vertices (zero on the boundary) for one coefficient
    field; `solve` also returns the number of CG iterations. `rtol` bounds the preconditioned
    residual (module docstring; None: max(1e-6, eps (n − 1)) for the coefficient's dtype);
    CG stops with an error after `max_steps` iterations.
    """

    n: int = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    forcing: float

    def __init__(
        self, n: int = 421, *, forcing: float = 1.0, rtol: float | None = None, max_steps: int = 500
    ):
        if int(n) != n or n < 4:
            raise ValueError(f"the vertex grid needs at least 4 points per axis, got n = {n}")
        if rtol is not None and not (0 < rtol < 1):
            raise ValueError(f"rtol must be in (0, 1), got {rtol}")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps}")
        self.n, self.max_steps = int(n), int(max_steps)
        self.rtol = None if rtol is None else float(rtol)
        self.forcing = float(forcing)

    def _check(self, a: Array, f: Array | None) -> Array:
        shape = (self.n, self.n)
        if a.shape != shape:
            raise ValueError(f"coefficient should have shape {shape}, got {a.shape}")
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise ValueError(f"coefficient should be a floating array, got dtype {a.dtype}")
        if f is not None and jnp.shape(f) != shape:
            raise ValueError(f"source f should have shape {shape}, got {jnp.shape(f)}")
        message = (
            "coefficient a must be finite and positive everywhere and f finite "
            "(got NaN, inf or a <= 0)"
        )
        if isinstance(a, jax.core.Tracer) or isinstance(f, jax.core.Tracer):
            bad = ~jnp.all(jnp.isfinite(a) & (a > 0))
            if f is not None:
                bad = bad | ~jnp.all(jnp.isfinite(f))
            return eqx.error_if(a, bad, message)
        # concrete input: check on the host, no device work and a ValueError at the call
        a_host = np.asarray(a)
        if not np.all(np.isfinite(a_host) & (a_host > 0)) or (
            f is not None and not np.all(np.isfinite(np.asarray(f)))
        ):
            raise ValueError(message)
        return a

    def solve(
        self, a: Float[Array, "n n"], f: Float[Array, "n n"] | None = None
    ) -> tuple[Float[Array, "n n"], Int[Array, ""]]:
        """(u, CG iterations) for one coefficient field; f defaults to the constant forcing."""
        a = self._check(a, f)
        floor = float(jnp.finfo(a.dtype).eps) * (self.n - 1)
        rtol = max(1e-6, floor) if self.rtol is None else self.rtol
        if rtol < 0.5 * floor:
            raise ValueError(
                f"rtol = {rtol:.3g} is below what {a.dtype} resolves on a {self.n}-point grid "
                f"(the preconditioned residual of a rounded solution is ~{0.15 * floor:.2g}); "
                f"use rtol >= {0.5 * floor:.2g} or float64"
            )
        # the tolerance is traced, so that changing it does not recompile
        rtol = jnp.asarray(rtol, a.dtype)
        return _split_cg(a, f, self.forcing, rtol, self.max_steps)

    def __call__(
        self, a: Float[Array, "n n"], f: Float[Array, "n n"] | None = None
    ) -> Float[Array, "n n"]:
        """u on the n × n vertex grid, zero on the boundary, for one coefficient field."""
        return self.solve(a, f)[0]
