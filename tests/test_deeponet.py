"""DeepONet: the Cartesian-product path against the pointwise path, Fourier features, gradients
against finite differences, an antiderivative learned at one resolution and queried at
another, the grid adapter's interpolation, and the errors on bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.operators._features import cos_sin_turns
from surrogate.operators.deeponet import DeepONet, DeepONetOperator, resample

SMALL = dict(
    p=4,
    branch_width=8,
    branch_depth=2,
    trunk_width=8,
    trunk_depth=2,
    fourier_features=3,
    fourier_scale=2.0,
)


def _small(split_trunk=True):
    return DeepONet(
        5,
        2,
        n_out=2,
        activation="tanh",
        split_trunk=split_trunk,
        dtype=jnp.float64,
        key=jax.random.key(0),
        **SMALL,
    )


@pytest.mark.parametrize("split_trunk", [True, False])
def test_fast_path_equals_pointwise_path(split_trunk, x64):
    model = _small(split_trunk)
    rng = np.random.default_rng(0)
    u, v = jnp.asarray(rng.standard_normal((2, 5)))
    coords = jnp.asarray(rng.uniform(size=(7, 2)))
    per_point = jnp.where(jnp.arange(7)[:, None] % 2 == 0, u[None, :], v[None, :])

    @eqx.filter_jit
    def paths(m):
        return m(u, coords), m(v, coords), m.pointwise(u, coords), m.pointwise(per_point, coords)

    fast_u, fast_v, slow_u, mixed = paths(model)
    assert fast_u.shape == (2, 7)
    np.testing.assert_allclose(fast_u, slow_u, rtol=1e-13, atol=1e-14)
    expected = np.where(np.arange(7) % 2 == 0, fast_u, fast_v)  # point i uses u or v
    np.testing.assert_allclose(mixed, expected, rtol=1e-13, atol=1e-14)
    # with the bias, G(u)(y)_j = Σ_k b_jk t_jk + β_j: shifting β shifts every output
    shifted = eqx.tree_at(lambda m: m.bias, model, model.bias + jnp.asarray([1.0, -2.0]))
    np.testing.assert_allclose(paths(shifted)[0] - fast_u, [[1.0] * 7, [-2.0] * 7], atol=1e-12)


def test_fourier_features_and_gradient(x64):
    """The trunk sees [cos 2πBy, sin 2πBy]; B is fixed (zero gradient); the gradient of the
    other parameters matches central finite differences."""
    model = _small()
    rng = np.random.default_rng(1)
    u = jnp.asarray(rng.standard_normal(5))
    coords = jnp.asarray(rng.uniform(size=(6, 2)))
    weights = jnp.asarray(rng.standard_normal((2, 6)))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    direction = jax.tree.unflatten(
        treedef, [jnp.asarray(rng.standard_normal(a.shape)) for a in leaves]
    )
    direction = eqx.tree_at(lambda m: m.frequencies, direction, jnp.zeros((3, 2)))

    def loss(p):
        return jnp.sum(weights * eqx.combine(p, static)(u, coords))

    @jax.jit
    def check(params, direction, eps=1e-6):
        m = eqx.combine(params, static)
        phase = 2.0 * jnp.pi * coords @ m.frequencies.T
        features = jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=1)
        t = jax.vmap(m.trunk)(features).reshape(6, 2, 4)
        by_hand = jnp.einsum("kp,nkp->kn", m.branch(u).reshape(2, 4), t) + m.bias[:, None]
        grad = jax.grad(loss)(params)
        exact = sum(
            jnp.vdot(g, d)
            for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True)
        )
        plus = jax.tree.map(lambda a, b: a + eps * b, params, direction)
        minus = jax.tree.map(lambda a, b: a - eps * b, params, direction)
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        return by_hand, m(u, coords), grad.frequencies, exact, fd

    by_hand, out, grad_b, exact, fd = check(params, direction)
    np.testing.assert_allclose(out, by_hand, rtol=1e-13)
    assert np.all(np.asarray(grad_b) == 0.0)
    np.testing.assert_allclose(exact, fd, rtol=1e-7)


def _antiderivative_data(seed, n_samples, n, modes=4):
    """Smooth inputs u on [0, 1] (vertex grid of n points) and U(x) = ∫_0^x u, exactly."""
    a, b = np.random.default_rng(seed).standard_normal((2, n_samples, modes))
    k = np.arange(1, modes + 1)
    a, b = a / k, b / k
    phase = 2 * np.pi * k[:, None] * np.linspace(0.0, 1.0, n)[None, :]
    c, s = np.cos(phase), np.sin(phase)
    u = a @ c + b @ s
    U = (a / (2 * np.pi * k)) @ s + (b / (2 * np.pi * k)) @ (1.0 - c)
    return jnp.asarray(u[:, None], jnp.float32), jnp.asarray(U[:, None], jnp.float32)


def _relative_l2(model, x, y):
    pred = jax.vmap(model)(x)
    return jnp.mean(jnp.linalg.norm((pred - y)[:, 0], axis=-1) / jnp.linalg.norm(y[:, 0], axis=-1))


def test_antiderivative_at_two_resolutions():
    """Trained on 33-point grids, the same weights evaluated on 129-point grids (input
    interpolated onto the sensors, trunk at the new points) are as accurate."""
    model = DeepONetOperator(
        1,
        1,
        (33,),
        p=64,
        branch_width=64,
        branch_depth=2,
        trunk_width=64,
        trunk_depth=2,
        activation="gelu",
        key=jax.random.key(0),
    )
    x, y = _antiderivative_data(1, 512, 33)
    tests = [_antiderivative_data(2, 128, n) for n in (33, 129)]
    steps, batch = 600, 64
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(optax.cosine_decay_schedule(5e-3, steps))

    @jax.jit
    def train(params):
        def step(carry, key):
            params, state = carry
            idx = jax.random.choice(key, 512, (batch,), replace=False)
            grads = jax.grad(lambda p: _relative_l2(eqx.combine(p, static), x[idx], y[idx]))(params)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        keys = jax.random.split(jax.random.key(3), steps)
        (trained, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
        return [_relative_l2(eqx.combine(trained, static), *t) for t in tests]

    coarse, fine = (float(e) for e in train(params))
    print("ANTIDERIV", coarse, fine)
    assert coarse < 0.2, coarse  # the untrained model is at ~1
    assert abs(fine - coarse) < 0.1 * coarse, (coarse, fine)


def test_resample_is_exact_where_it_should_be(x64):
    rng = np.random.default_rng(2)
    field = jnp.asarray(rng.standard_normal((2, 129)))
    np.testing.assert_array_equal(resample(field, (33,), periodic=False), field[:, ::4])
    periodic = jnp.asarray(rng.standard_normal((1, 64, 32)))
    np.testing.assert_array_equal(resample(periodic, (16, 8), periodic=True), periodic[:, ::4, ::4])

    # multilinear interpolation reproduces bilinear functions on the unit square
    def bilinear(n, m):
        x, y = np.linspace(0, 1, n)[:, None], np.linspace(0, 1, m)[None, :]
        return jnp.asarray((1.0 + 2.0 * x - 3.0 * y + 4.0 * x * y)[None])

    np.testing.assert_allclose(
        resample(bilinear(5, 4), (13, 7), periodic=False), bilinear(13, 7), rtol=1e-13, atol=1e-13
    )


def test_bad_input_raises(x64):
    model = _small()
    u, coords = jnp.zeros(5), jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"branch input should have shape \(5,\), got \(6,\)"):
        model(jnp.zeros(6), coords)
    with pytest.raises(ValueError, match=r"coords should have shape \(n_points, 2\), got \(4, 3\)"):
        model(u, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"coords should have shape \(n_points, 2\), got \(2,\)"):
        model.pointwise(u, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"one input function per point needs shape \(4, 5\)"):
        model.pointwise(jnp.zeros((3, 5)), coords)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        DeepONet(5, 2, activation="swish", key=jax.random.key(0))
    with pytest.raises(ValueError, match="need positive sizes"):
        DeepONet(5, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="sensor grid needs >= 2 points"):
        DeepONetOperator(1, 1, (1, 8), key=jax.random.key(0))
    op = DeepONetOperator(1, 2, (2, 2), dtype=jnp.float64, key=jax.random.key(0), **SMALL)
    with pytest.raises(ValueError, match=r"expected a field \(1, \*grid\) with 2 grid axes"):
        op(jnp.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"expected a field \(1, \*grid\) with 2 grid axes"):
        op(jnp.zeros((1, 16)))
    with pytest.raises(ValueError, match=r"grid needs >= 2 points per axis, got shape \(1, 1, 4\)"):
        op(jnp.zeros((1, 1, 4)))


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=64))
def test_cos_sin_turns_match_float64_reference(turns):
    # the polynomial cos/sin in turns against numpy's in float64: the error is that of
    # float32 rounding of the result, not of 2π·u (which would grow with |u|)
    u = np.asarray(turns, np.float32)
    cos, sin = cos_sin_turns(jnp.asarray(u))
    assert cos.dtype == sin.dtype == jnp.float32
    phase = 2 * np.pi * (u.astype(np.float64) - np.round(u.astype(np.float64)))
    np.testing.assert_allclose(np.asarray(cos), np.cos(phase), atol=2e-6)
    np.testing.assert_allclose(np.asarray(sin), np.sin(phase), atol=2e-6)


def test_cos_sin_turns_float64_is_accurate(x64):
    u = jnp.linspace(-3.0, 3.0, 20001, dtype=jnp.float64)
    cos, sin = cos_sin_turns(u)
    assert cos.dtype == jnp.float64
    assert float(jnp.max(jnp.abs(cos - jnp.cos(2 * jnp.pi * u)))) < 1e-14
    assert float(jnp.max(jnp.abs(sin - jnp.sin(2 * jnp.pi * u)))) < 1e-14
