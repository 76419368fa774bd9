import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.fields import grf, grf_1d, grf_2d, grf_eigenvalues


def _empirical_spectrum(samples):
    """E|û_k|² / n^{2d}: the covariance eigenvalue each Fourier mode should carry."""
    d = samples.ndim - 1
    axes = tuple(range(1, d + 1))
    n_total = math.prod(samples.shape[1:])
    return np.mean(np.abs(np.fft.rfftn(samples, axes=axes)) ** 2, axis=0) / n_total**2


def test_grf_1d_spectrum_matches_covariance(x64):
    n, m = 64, 4000
    keys = jax.random.split(jax.random.key(0), m)
    u = np.asarray(jax.vmap(lambda k: grf_1d(k, n, dtype=jnp.float64))(keys))
    lam = np.asarray(grf_eigenvalues((n,), alpha=2.0, tau=5.0, sigma=25.0, dtype=jnp.float64))
    emp = _empirical_spectrum(u)
    # |ξ|² of one complex mode has relative std 1: 4000 samples give ~1.6%; allow 6%
    k = np.arange(1, 20)
    np.testing.assert_allclose(emp[k], lam[k], rtol=0.06)
    # and the analytic value itself: λ_1 = 625 / (4π² + 25)²
    assert lam[1] == pytest.approx(625 / (4 * math.pi**2 + 25) ** 2)
    assert np.abs(u.mean(axis=1)).max() < 1e-12  # zero mean mode


def test_grf_2d_spectrum_matches_covariance(x64):
    n, m = 32, 1500
    keys = jax.random.split(jax.random.key(1), m)
    u = np.asarray(
        jax.vmap(lambda k: grf_2d(k, n, alpha=2.0, tau=3.0, sigma=1.0, dtype=jnp.float64))(keys)
    )
    lam = np.asarray(grf_eigenvalues((n, n), alpha=2.0, tau=3.0, sigma=1.0, dtype=jnp.float64))
    emp = _empirical_spectrum(u)
    idx = [(1, 0), (0, 1), (1, 1), (n - 1, 1), (2, 3), (n - 2, 2), (3, 0)]
    for i in idx:
        assert emp[i] == pytest.approx(lam[i], rel=0.12), i
    # pointwise variance equals the sum of all eigenvalues (mirrored modes counted twice)
    weights = np.full(lam.shape, 2.0)
    weights[:, 0] = 1.0
    if n % 2 == 0:
        weights[:, -1] = 1.0
    assert u.var() == pytest.approx(float(np.sum(weights * lam)), rel=0.05)


@given(n=st.integers(2, 40), alpha=st.floats(1.0, 3.0), tau=st.floats(0.5, 10.0))
def test_grf_shape_dtype_and_determinism(n, alpha, tau):
    key = jax.random.key(3)
    a = grf(key, (n,), alpha=alpha, tau=tau, sigma=1.0)
    b = grf(key, (n,), alpha=alpha, tau=tau, sigma=1.0)
    assert a.shape == (n,) and a.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_grf_bad_input():
    with pytest.raises(ValueError, match="at least 2 points"):
        grf_1d(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="alpha > 0"):
        grf(jax.random.key(0), (8,), alpha=-1.0, tau=1.0, sigma=1.0)
    with pytest.raises(ValueError, match="tau = 0"):
        grf(jax.random.key(0), (8,), alpha=2.0, tau=0.0, sigma=1.0, zero_mean=False)
