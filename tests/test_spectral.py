"""Pseudo-spectral helpers: exactness on trigonometric polynomials, the 2/3 rule, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.solvers.spectral import (
    dealias_mask,
    derivative,
    inverse_laplacian,
    laplacian,
    subsample_periodic,
    wavenumber_grid,
    wavenumbers,
)


def _trig_poly_1d(key, n, length, n_modes):
    """u(x) = Σ a_m cos(2πmx/L) + b_m sin(2πmx/L) on n points and its analytic derivatives."""
    x = jnp.arange(n, dtype=jnp.float64) * length / n
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (n_modes,), jnp.float64)
    b = jax.random.normal(kb, (n_modes,), jnp.float64)
    k = 2 * math.pi * jnp.arange(n_modes, dtype=jnp.float64) / length
    phase = k[:, None] * x[None, :]

    def deriv(order):
        # d^p/dx^p cos(kx) = k^p cos(kx + pπ/2), and likewise for sin
        shift = order * math.pi / 2
        return jnp.sum(
            (a[:, None] * jnp.cos(phase + shift) + b[:, None] * jnp.sin(phase + shift))
            * (k[:, None] ** order),
            axis=0,
        )

    return deriv


@pytest.mark.parametrize("n, length", [(16, 1.0), (15, 2 * math.pi), (32, 3.0)])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_derivative_exact_on_1d_trig_polynomials(x64, n, length, order):
    # every mode strictly below Nyquist is represented exactly
    deriv = _trig_poly_1d(jax.random.key(n), n, length, (n - 1) // 2 + 1)
    got = derivative(deriv(0), order=order, length=length)
    assert jnp.max(jnp.abs(got - deriv(order))) < 1e-9 * jnp.max(jnp.abs(deriv(order)))


def test_mixed_derivatives_and_laplacian_exact_in_2d_and_3d(x64):
    n, length = 12, 2.0
    x = jnp.arange(n, dtype=jnp.float64) * length / n
    X, Y = jnp.meshgrid(x, x, indexing="ij")
    k = 2 * math.pi / length
    u = jnp.sin(2 * k * X) * jnp.cos(3 * k * Y) + jnp.cos(k * (X - 4 * Y))
    u_xy = (-6 * k**2) * jnp.cos(2 * k * X) * jnp.sin(3 * k * Y) + 4 * k**2 * jnp.cos(
        k * (X - 4 * Y)
    )
    got = derivative(derivative(u, axis=0, length=length), axis=1, length=length)
    assert jnp.max(jnp.abs(got - u_xy)) < 1e-9 * float(jnp.max(jnp.abs(u_xy)))
    lap = -13 * k**2 * jnp.sin(2 * k * X) * jnp.cos(3 * k * Y) - 17 * k**2 * jnp.cos(
        k * (X - 4 * Y)
    )
    assert jnp.max(jnp.abs(laplacian(u, length) - lap)) < 1e-9 * float(jnp.max(jnp.abs(lap)))

    axes = [jnp.arange(m, dtype=jnp.float64) * length / m for m in (8, 6, 12)]
    X3, Y3, Z3 = jnp.meshgrid(*axes, indexing="ij")
    u3 = jnp.sin(k * X3) * jnp.cos(2 * k * Y3) * jnp.cos(k * Z3)
    u3_x = k * jnp.cos(k * X3) * jnp.cos(2 * k * Y3) * jnp.cos(k * Z3)
    assert jnp.max(jnp.abs(derivative(u3, axis=0, length=length) - u3_x)) < 1e-9 * k
    u3_zz = derivative(u3, axis=-1, order=2, length=length)
    assert jnp.max(jnp.abs(u3_zz + k**2 * u3)) < 1e-9 * k**2


def test_odd_derivative_of_nyquist_mode_is_zero_and_even_one_is_exact(x64):
    n = 16
    x = jnp.arange(n, dtype=jnp.float64) / n
    nyquist = jnp.cos(math.pi * n * x)  # (−1)^i: the mode has no sign on the grid
    assert jnp.max(jnp.abs(derivative(nyquist, order=1))) < 1e-9
    k = math.pi * n
    assert jnp.max(jnp.abs(derivative(nyquist, order=2) + k**2 * nyquist)) < 1e-9 * k**2


def test_inverse_laplacian_inverts_on_zero_mean_fields(x64):
    f = jax.random.normal(jax.random.key(0), (16, 12), jnp.float64)
    u = inverse_laplacian(f, length=0.5)
    assert abs(float(jnp.mean(u))) < 1e-12
    assert jnp.max(jnp.abs(laplacian(u, length=0.5) - (f - jnp.mean(f)))) < 1e-9
    # and solves −Δψ = ω for a single Fourier mode: ψ = ω / |k|²
    x = jnp.arange(16, dtype=jnp.float64) / 16
    w = jnp.sin(2 * math.pi * 3 * x)
    assert jnp.max(jnp.abs(inverse_laplacian(w) + w / (2 * math.pi * 3) ** 2)) < 1e-14


def test_wavenumbers_match_their_definition():
    for n in (7, 8):
        m = np.fft.fftfreq(n, d=1 / n)
        np.testing.assert_allclose(wavenumbers(n, 3.0), 2 * np.pi * m / 3.0, rtol=1e-6)
        np.testing.assert_allclose(
            wavenumbers(n, real=True), 2 * np.pi * np.arange(n // 2 + 1), rtol=1e-6
        )
    k = wavenumbers(8, zero_nyquist=True)
    assert float(k[4]) == 0.0 and float(k[3]) == pytest.approx(6 * math.pi)
    kx, ky = wavenumber_grid((6, 8))
    assert kx.shape == ky.shape == (6, 5)
    np.testing.assert_allclose(kx[:, 0], wavenumbers(6), rtol=1e-6)
    np.testing.assert_allclose(ky[0], wavenumbers(8, real=True), rtol=1e-6)


@given(st.lists(st.integers(2, 13), min_size=1, max_size=3))
def test_dealias_mask_matches_naive_two_thirds_rule(shape):
    mask = np.asarray(dealias_mask(tuple(shape)))
    for index in np.ndindex(mask.shape):
        modes = [i if i <= n // 2 else i - n for i, n in zip(index, shape, strict=True)]
        modes[-1] = index[-1]  # the rfft axis holds non-negative modes only
        assert mask[index] == all(3 * abs(m) < n for m, n in zip(modes, shape, strict=True))


def test_two_thirds_rule_removes_aliasing_of_products(x64):
    # for u, v on the kept modes, the kept modes of u v on the grid equal those of the exact
    # product (evaluated on a grid twice as fine, where nothing aliases)
    n = 24
    keep = dealias_mask((n, n))

    def band_limited(key, m):
        coeff = jax.random.normal(key, (n, n // 2 + 1), jnp.float64) * keep
        fine = jnp.zeros((m, m // 2 + 1), jnp.complex128)
        fine = fine.at[: n // 2, : n // 2 + 1].set(coeff[: n // 2])
        fine = fine.at[m - n // 2 :, : n // 2 + 1].set(coeff[n // 2 :])
        return jnp.fft.irfft2(fine * (m / n) ** 2, s=(m, m))

    ku, kv = jax.random.split(jax.random.key(1))
    u, v = band_limited(ku, n), band_limited(kv, n)
    uf, vf = band_limited(ku, 2 * n), band_limited(kv, 2 * n)
    np.testing.assert_allclose(uf[::2, ::2], u, atol=1e-12)
    coarse = jnp.fft.rfft2(u * v)
    fine = jnp.fft.rfft2(uf * vf) / 4
    exact = jnp.concatenate([fine[: n // 2, : n // 2 + 1], fine[-n // 2 :, : n // 2 + 1]])
    assert jnp.max(jnp.abs(jnp.where(keep, coarse - exact, 0.0))) < 1e-9
    # without the rule, the highest kept-but-not-dealiased modes do alias
    assert jnp.max(jnp.abs(coarse - exact)) > 1e-3


def test_subsample_periodic_equals_sampling_on_the_coarse_grid():
    def field(n):
        x = jnp.arange(n) / n
        return jnp.sin(2 * jnp.pi * x)[:, None] * jnp.cos(4 * jnp.pi * x)[None, :]

    np.testing.assert_allclose(subsample_periodic(field(256), 64), field(64), atol=1e-6)
    assert subsample_periodic(jnp.zeros(12), 4).shape == (4,)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 2 grid points"):
        wavenumbers(1)
    with pytest.raises(ValueError, match="length"):
        wavenumbers(8, -1.0)
    with pytest.raises(ValueError, match="1 to 3 dimensions"):
        wavenumber_grid((4, 4, 4, 4))
    with pytest.raises(ValueError, match="non-negative integer"):
        derivative(jnp.zeros(8), order=-1)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        derivative(jnp.zeros((8, 8)), axis=2)
    with pytest.raises(ValueError, match="real floating"):
        laplacian(jnp.zeros(8, dtype=jnp.int32))
    with pytest.raises(ValueError, match="1-, 2- or 3-D"):
        inverse_laplacian(jnp.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="n_out must divide n"):
        subsample_periodic(jnp.zeros((256, 256)), 60)
