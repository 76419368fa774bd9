"""Darcy solver: operator, second-order convergence, CG tolerance, coefficient, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.solvers.darcy import (
    DarcySolver,
    _cosine_grf,
    darcy_coefficient,
    darcy_operator,
    harmonic_face_coefficients,
    subsample_vertex,
)

PI = math.pi


def _vertex_grid(n):
    # fields are built with numpy: eager jax ops would each compile once per grid
    x = np.linspace(0.0, 1.0, n)
    return np.meshgrid(x, x, indexing="ij")


def _dense_operator(a):
    """The matrix of darcy_operator on the interior unknowns, column by column."""
    m = a.shape[0] - 2
    ax, ay = harmonic_face_coefficients(a)
    basis = jnp.eye(m * m, dtype=a.dtype).reshape(m * m, m, m)
    cols = jax.jit(jax.vmap(lambda e: darcy_operator(e, ax, ay, 1.0 / (m + 1))))(basis)
    return cols.reshape(m * m, m * m).T


# one compiled solve per grid, shared by the convergence tests (the tolerance is traced)
GRIDS = [16, 32, 64]


def _slope(ns, errors):
    return np.polyfit(np.log(1.0 / (np.asarray(ns) - 1)), np.log(errors), 1)[0]


def test_operator_matches_naive_five_point_assembly(x64):
    n = 7
    a = np.exp(np.random.default_rng(0).normal(size=(n, n)))
    h = 1.0 / (n - 1)
    an = a
    m = n - 2
    naive = np.zeros((m * m, m * m))
    for i in range(1, n - 1):
        for j in range(1, n - 1):
            row = (i - 1) * m + (j - 1)
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                p, q = i + di, j + dj
                face = 2 * an[i, j] * an[p, q] / (an[i, j] + an[p, q])
                naive[row, row] += face / h**2
                if 1 <= p <= n - 2 and 1 <= q <= n - 2:
                    naive[row, (p - 1) * m + (q - 1)] -= face / h**2
    dense = np.asarray(_dense_operator(jnp.asarray(a)))
    np.testing.assert_allclose(dense, naive, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(dense, dense.T, rtol=1e-13)
    assert np.linalg.eigvalsh(dense).min() > 0


def test_second_order_on_smooth_manufactured_solution(x64):
    # u = sin πx sin πy, a = 1 + ½ sin 2πx cos πy, f = −∇a·∇u − a Δu
    errors, ns = [], GRIDS
    for n in ns:
        X, Y = _vertex_grid(n)
        a = 1 + 0.5 * np.sin(2 * PI * X) * np.cos(PI * Y)
        a_x = PI * np.cos(2 * PI * X) * np.cos(PI * Y)
        a_y = -0.5 * PI * np.sin(2 * PI * X) * np.sin(PI * Y)
        u = np.sin(PI * X) * np.sin(PI * Y)
        u_x, u_y = PI * np.cos(PI * X) * np.sin(PI * Y), PI * np.sin(PI * X) * np.cos(PI * Y)
        f = -(a_x * u_x + a_y * u_y) + 2 * PI**2 * a * u
        errors.append(np.max(np.abs(DarcySolver(n, rtol=1e-11)(a, f) - u)))
    assert 1.95 < _slope(ns, errors) < 2.05, errors
    assert errors[-1] < 3e-4


def test_second_order_across_a_coefficient_jump(x64):
    # a = 1 | 10 across x = ½ (a face of an even grid). u = sin 2πx sin πy / a is continuous
    # with continuous flux a ∂u/∂x, and f = 5π² sin 2πx sin πy on both sides
    errors, ns = [], GRIDS
    for n in ns:
        X, Y = _vertex_grid(n)
        a = np.where(X < 0.5, 1.0, 10.0)
        f = 5 * PI**2 * np.sin(2 * PI * X) * np.sin(PI * Y)
        u = np.sin(2 * PI * X) * np.sin(PI * Y) / a
        errors.append(np.max(np.abs(DarcySolver(n, rtol=1e-11)(a, f) - u)))
    assert 1.9 < _slope(ns, errors) < 2.1, errors


def test_constant_coefficient_unit_forcing_matches_series_solution(x64):
    # a = 3, f = 1: u = Σ_{j,k odd} 16 sin jπx sin kπy / (3 π⁴ j k (j² + k²)), the torsion
    # function's sine series (truncation error ~ 1e-7 with j, k < 2000)
    j = np.arange(1, 2000, 2, dtype=np.float64)
    coeff = 16 / (3 * PI**4 * j[:, None] * j[None, :] * (j[:, None] ** 2 + j**2))
    errors = []
    for n in GRIDS:
        s = np.sin(PI * np.outer(np.linspace(0, 1, n), j))
        exact = s @ coeff @ s.T
        u = np.asarray(DarcySolver(n, rtol=1e-11)(np.full((n, n), 3.0), np.ones((n, n))))
        np.testing.assert_allclose(u, u.T, atol=1e-14)
        errors.append(np.max(np.abs(u - exact)) / np.max(exact))
    assert 1.9 < _slope(GRIDS, errors) < 2.1, errors
    assert errors[-1] < 3e-4


def test_cg_meets_its_tolerance_and_preconditioned_spectrum_is_bounded(x64):
    n, rtol = 16, 1e-9
    a = darcy_coefficient(jax.random.key(4), n, dtype=jnp.float64)
    u, steps = DarcySolver(n, rtol=rtol).solve(a, np.ones((n, n)))
    A = np.asarray(_dense_operator(a))
    # P = (−Δ_h)^(−1/2) from numpy's eigendecomposition of the 1-D Dirichlet difference
    m, h = n - 2, 1.0 / (n - 1)
    t = (2 * np.eye(m) - np.eye(m, k=1) - np.eye(m, k=-1)) / h**2
    lap = np.kron(t, np.eye(m)) + np.kron(np.eye(m), t)
    mu, q = np.linalg.eigh(lap)
    p = q @ np.diag(mu**-0.5) @ q.T
    b = np.ones(m * m)
    r = b - A @ np.asarray(u[1:-1, 1:-1]).ravel()
    assert np.linalg.norm(p @ r) <= rtol * np.linalg.norm(p @ b)
    assert int(steps) <= 30
    exact = np.linalg.solve(A, b)
    assert np.max(np.abs(np.asarray(u[1:-1, 1:-1]).ravel() - exact)) < 1e-7 * exact.max()
    # a_min (−Δ_h) ≤ A ≤ a_max (−Δ_h): cond(P A P) ≤ 12 / 3 whatever the grid
    spectrum = np.linalg.eigvalsh(p @ A @ p)
    assert 3 - 1e-9 < spectrum.min() and spectrum.max() < 12 + 1e-9


def test_iterations_stay_flat_and_float32_matches_float64(x64):
    iterations = []
    for n in GRIDS:
        a = darcy_coefficient(jax.random.key(n), n, dtype=jnp.float64)
        u64, steps = DarcySolver(n, rtol=1e-6).solve(a, np.ones((n, n)))
        iterations.append(int(steps))
    assert max(iterations) <= 25 and max(iterations) - min(iterations) <= 4, iterations
    # float32 reaches the default tolerance (the preconditioned residual is resolvable)
    u32, steps32 = DarcySolver(GRIDS[-1]).solve(a.astype(jnp.float32))
    assert u32.dtype == jnp.float32 and int(steps32) <= 25
    u64 = DarcySolver(GRIDS[-1], rtol=1e-11)(a, np.ones_like(a))
    assert float(jnp.max(jnp.abs(u32 - u64)) / jnp.max(u64)) < 1e-5


def test_jit_and_vmap_over_coefficients(x64):
    n = 16
    keys = jax.random.split(jax.random.key(2), 2)
    a = jax.vmap(lambda k: darcy_coefficient(k, n, dtype=jnp.float64))(keys)
    solver = DarcySolver(n, rtol=1e-10)
    batched = jax.jit(jax.vmap(solver))(a)
    for i in range(2):
        np.testing.assert_allclose(batched[i], solver(a[i]), rtol=0, atol=1e-12)


def test_coefficient_takes_two_values_from_a_cosine_grf_of_the_right_covariance(x64):
    a = darcy_coefficient(jax.random.key(0), 33)
    assert a.shape == (33, 33) and a.dtype == jnp.float32
    assert set(np.unique(np.asarray(a)).tolist()) == {3.0, 12.0}
    # pointwise variance of the GRF: Σ_k λ_k cos²(πk₁x) cos²(πk₂y), λ = (π²|k|² + 9)^(−2)
    n, samples = 9, 4000
    fields = jax.jit(jax.vmap(lambda k: _cosine_grf(k, n, 2.0, 3.0, jnp.float64)))(
        jax.random.split(jax.random.key(1), samples)
    )
    x = np.linspace(0, 1, n)
    k = np.arange(n)
    lam = (PI**2 * (k[:, None] ** 2 + k[None, :] ** 2) + 9.0) ** -2.0
    lam[0, 0] = 0.0
    c2 = np.cos(PI * np.outer(x, k)) ** 2
    variance = c2 @ lam @ c2.T
    np.testing.assert_allclose(np.var(np.asarray(fields), axis=0), variance, rtol=0.12)
    # the field is symmetric about zero, so each value of a is about equally likely
    assert 0.45 < float(jnp.mean(fields >= 0)) < 0.55


def test_subsample_vertex_takes_the_papers_points():
    def field(n):
        x = np.linspace(0.0, 1.0, n)
        return np.sin(3 * x)[:, None] * np.cos(2 * x)[None, :]

    fine = jnp.asarray(field(421))
    for n_out in (85, 141, 211, 421):
        np.testing.assert_allclose(subsample_vertex(fine, n_out), field(n_out), atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    solver = DarcySolver(16)
    with pytest.raises(ValueError, match=r"coefficient should have shape \(16, 16\)"):
        solver(jnp.ones((16, 15)))
    with pytest.raises(ValueError, match="at least 4 points"):
        DarcySolver(3)
    with pytest.raises(ValueError, match="rtol must be in"):
        DarcySolver(16, rtol=0.0)
    with pytest.raises(ValueError, match="finite and positive"):
        solver(jnp.ones((16, 16)).at[3, 4].set(jnp.nan))
    with pytest.raises(ValueError, match="finite and positive"):
        solver(-jnp.ones((16, 16)))
    with pytest.raises(ValueError, match=r"source f should have shape"):
        solver(jnp.ones((16, 16)), jnp.ones((8, 8)))
    with pytest.raises(ValueError, match="floating"):
        solver(jnp.ones((16, 16), dtype=jnp.int32))
    with pytest.raises(RuntimeError, match="finite and positive"):
        jax.jit(lambda a: solver(a))(jnp.ones((16, 16)).at[3, 4].set(jnp.nan)).block_until_ready()
    with pytest.raises(ValueError, match="below what float32 resolves on a 421-point grid"):
        DarcySolver(421, rtol=1e-6)(jnp.ones((421, 421)))
    with pytest.raises(ValueError, match="unsupported resolution 100"):
        subsample_vertex(jnp.zeros((421, 421)), 100)
    with pytest.raises(ValueError, match="at least 2 points"):
        darcy_coefficient(jax.random.key(0), 1)
