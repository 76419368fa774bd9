import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogate.operators import FNO, SpectralConv


@pytest.mark.parametrize("n", [64, 128, 256])
def test_fno_1d_runs_at_several_resolutions(n):
    model = FNO(1, 2, 8, width=8, n_layers=2, key=jax.random.key(0))
    y = model(jnp.ones((1, n)))
    assert y.shape == (2, n) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))


def test_fno_2d_and_3d_shapes():
    m2 = FNO(3, 1, (4, 5), width=6, n_layers=2, key=jax.random.key(0))
    assert m2(jnp.ones((3, 16, 12))).shape == (1, 16, 12)
    assert m2(jnp.ones((3, 32, 20))).shape == (1, 32, 20)
    m3 = FNO(1, 1, (2, 3, 2), width=4, n_layers=1, key=jax.random.key(0))
    assert m3(jnp.ones((1, 8, 8, 6))).shape == (1, 8, 8, 6)


def test_parameter_count_matches_neuraloperator_structure():
    # neuraloperator 2.0 FNO(n_modes=(30,), hidden_channels=64, in/out 1, n_layers=4,
    # use_channel_mlp=False) has 558,017 parameters; (24, 22) at width 32: 2,368,033.
    assert FNO(1, 1, 16, 64, 4, key=jax.random.key(0)).n_parameters == 558_017
    assert FNO(1, 1, (12, 12), 32, 4, key=jax.random.key(0)).n_parameters == 2_368_033


def _same_weights(a, b):
    return eqx.tree_at(lambda m: m.weight, b, a.weight)


@settings(max_examples=8)  # every new shape compiles afresh
@given(n=st.integers(9, 40), m=st.integers(1, 4), cin=st.integers(1, 3))
def test_dft_and_fft_transforms_agree_1d(n, m, cin):
    with jax.enable_x64(True):
        a = SpectralConv(cin, 2, m, transform="dft", dtype=jnp.float64, key=jax.random.key(n))
        b = _same_weights(
            a, SpectralConv(cin, 2, m, transform="fft", dtype=jnp.float64, key=jax.random.key(0))
        )
        x = jax.random.normal(jax.random.key(1), (cin, n), jnp.float64)
        np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-12)


@pytest.mark.parametrize(
    "grid,modes", [((12, 10), (3, 4)), ((9, 11), (2, 3)), ((8, 6, 7), (2, 2, 3))]
)
def test_dft_and_fft_transforms_agree_nd(x64, grid, modes):
    a = SpectralConv(2, 3, modes, transform="dft", dtype=jnp.float64, key=jax.random.key(0))
    b = _same_weights(
        a, SpectralConv(2, 3, modes, transform="fft", dtype=jnp.float64, key=jax.random.key(1))
    )
    x = jax.random.normal(jax.random.key(2), (2, *grid), jnp.float64)
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-12)


def test_spectral_conv_is_the_fourier_multiplier(x64):
    # one channel, one kept mode with weight w: a cosine of frequency 1 comes back
    # multiplied by w (complex: amplitude |w|, phase arg w); frequency 3 is dropped
    n = 32
    x = jnp.arange(n) / n
    layer = SpectralConv(1, 1, 2, dtype=jnp.float64, key=jax.random.key(0))
    w = jnp.zeros((2, 1, 1, 2), jnp.float64).at[:, 0, 0, 1].set(jnp.array([0.5, 0.25]))
    layer = eqx.tree_at(lambda m: m.weight, layer, w)
    u = jnp.cos(2 * jnp.pi * x) + jnp.cos(6 * jnp.pi * x)
    expected = 0.5 * jnp.cos(2 * jnp.pi * x) - 0.25 * jnp.sin(2 * jnp.pi * x)
    np.testing.assert_allclose(np.asarray(layer(u[None])[0]), np.asarray(expected), atol=1e-13)


@pytest.mark.parametrize("transform", ["dft", "fft"])
def test_spectral_layer_gradient_matches_finite_differences(x64, transform):
    layer = SpectralConv(
        2, 2, (3, 2), transform=transform, dtype=jnp.float64, key=jax.random.key(0)
    )
    x = jax.random.normal(jax.random.key(1), (2, 10, 8), jnp.float64)

    def f(w, x):
        return jnp.sum(jnp.sin(eqx.tree_at(lambda m: m.weight, layer, w)(x)))

    gw, gx = jax.grad(f, argnums=(0, 1))(layer.weight, x)
    for arg, g, key in ((0, gw, 2), (1, gx, 3)):
        base = (layer.weight, x)
        d = jax.random.normal(jax.random.key(key), base[arg].shape, jnp.float64)
        eps = 1e-6
        plus = list(base)
        minus = list(base)
        plus[arg] = base[arg] + eps * d
        minus[arg] = base[arg] - eps * d
        fd = (f(*plus) - f(*minus)) / (2 * eps)
        assert float(jnp.sum(g * d)) == pytest.approx(float(fd), rel=1e-7, abs=1e-9)


def test_zero_shot_resolution_of_a_band_limited_operator(x64):
    # an FNO is a function of the continuous field: a smooth input sampled at 64 and 256
    # points gives outputs that agree at the shared points (up to aliasing of the GELU)
    model = FNO(1, 1, 6, width=8, n_layers=2, dtype=jnp.float64, key=jax.random.key(0))
    f = lambda n: jnp.sin(2 * jnp.pi * jnp.arange(n) / n)[None]  # noqa: E731
    coarse, fine = model(f(64)), model(f(256))
    assert float(jnp.max(jnp.abs(coarse - fine[:, ::4]))) < 2e-3 * float(jnp.max(jnp.abs(fine)))


def test_bad_input_messages():
    model = FNO(1, 1, 16, width=4, n_layers=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="keeps fewer than the 16 Fourier modes"):
        model(jnp.ones((1, 16)))
    with pytest.raises(ValueError, match="batch with jax.vmap"):
        model(jnp.ones((5, 1, 64)))
    with pytest.raises(ValueError, match="channels=1"):
        model(jnp.ones((2, 64)))
    with pytest.raises(ValueError, match="unknown transform"):
        FNO(1, 1, 4, key=jax.random.key(0), transform="wavelet")
    with pytest.raises(ValueError, match="1 to 3 grid axes"):
        FNO(1, 1, (2, 2, 2, 2), key=jax.random.key(0))
