"""DeepONet: the Cartesian-product path against the pointwise path, Fourier features, gradients
against finite differences, an antiderivative learned at one resolution and queried at
another, the grid adapter's interpolation, and the errors on bad input. The CNN branch
against a convolution written out by hand and across input resolutions; POD-DeepONet's
basis against numpy's SVD (exact reconstruction, Eckart-Young truncation error), its
gradient against finite differences and its output on other grids; files written before
the branch option build the same model."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate._serialization import build, describe
from surrogate.operators import ConvBranch, PODDeepONet, pod_basis
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


def test_cnn_branch_is_the_convolution_written_out(x64):
    """One stride-2 convolution (kernel 3, zero padding 1), tanh, flatten channel-major, one
    linear map: against numpy loops on a 1-D grid of 9 points with 2 channels."""
    u = np.random.default_rng(3).standard_normal(18)

    @eqx.filter_jit  # built and called in one compilation
    def branch_and_output(u, key):
        branch = ConvBranch((2, 9), 4, channels=(3,), kernel=3, width=8, depth=0,
                            activation=jnp.tanh, dtype=jnp.float64, key=key)  # fmt: skip
        return branch, branch(u)

    branch, out = branch_and_output(jnp.asarray(u), jax.random.key(1))
    w, b = np.asarray(branch.convs[0].weight), np.asarray(branch.convs[0].bias)  # (3,2,3), (3,1)
    padded = np.pad(u.reshape(2, 9), ((0, 0), (1, 1)))
    h = np.zeros((3, 5))  # ceil(9 / 2) outputs
    for o in range(3):
        for i in range(5):
            h[o, i] = np.tanh(np.sum(w[o] * padded[:, 2 * i : 2 * i + 3]) + b[o, 0])
    lin = branch.head.layers[0]
    expected = np.asarray(lin.weight) @ h.reshape(-1) + np.asarray(lin.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13)
    # 1-D, 2-D and 3-D sensor grids: the operator's output follows the input's grid (traced
    # only: no compilation)
    for shape in [(6,), (5, 7), (3, 4, 5)]:
        grid = tuple(n + 2 for n in shape)

        def make_and_call(shape=shape, grid=grid):
            op = DeepONetOperator(2, 3, shape, branch="cnn", conv_channels=(2, 2), conv_kernel=3,
                                  dtype=jnp.float64, key=jax.random.key(0), **SMALL)  # fmt: skip
            assert isinstance(op.deeponet.branch, ConvBranch)
            return op(jnp.ones((2, *grid)))

        assert eqx.filter_eval_shape(make_and_call).shape == (3, *grid)


def test_cnn_operator_sees_the_same_sensors_at_any_input_resolution(x64):
    """The CNN branch reads the sensor grid: a bilinear field (which the interpolation onto
    the sensors reproduces) on a 13 x 13 grid gives the branch the same values as on the
    9 x 9 sensor grid, so the output is the DeepONet of the 9 x 9 samples at the 13 x 13
    points. (Nested grids: `test_pod_deeponet_gradient_and_other_grids`.)"""

    def bilinear(n):
        x, y = np.linspace(0, 1, n)[:, None], np.linspace(0, 1, n)[None, :]
        return jnp.asarray((0.5 - x + 2.0 * y - 3.0 * x * y)[None])

    op = DeepONetOperator(1, 2, (9, 9), branch="cnn", conv_channels=(2,), conv_kernel=3,
                          dtype=jnp.float64, key=jax.random.key(2), **SMALL)  # fmt: skip

    @eqx.filter_jit
    def outputs(op, b9, b13):
        coords = jnp.stack(jnp.meshgrid(*[jnp.linspace(0.0, 1.0, 13)] * 2, indexing="ij"), -1)
        by_hand = op.deeponet(b9.reshape(-1), coords.reshape(-1, 2)).reshape(2, 13, 13)
        return op(b13), by_hand

    b13, by_hand = outputs(op, bilinear(9), bilinear(13))
    np.testing.assert_allclose(b13, by_hand, rtol=1e-12, atol=1e-13)
    assert float(jnp.std(by_hand)) > 1e-3  # not a constant field


def _pod_model(y, n_modes, **options):
    mean, modes, _ = pod_basis(y, n_modes=n_modes)
    return PODDeepONet(1, mean, modes, branch_width=6, branch_depth=1, key=jax.random.key(5),
                       **options)  # fmt: skip


def test_pod_basis_reconstructs_and_truncates_as_eckart_young(x64):
    """Against numpy's SVD: with all modes the data come back to round-off; with k modes the
    squared error is the energy of the discarded singular values, Σ_{i>k} σ_i²."""
    rng = np.random.default_rng(6)
    y = rng.standard_normal((12, 2, 5, 4)) * np.linspace(3.0, 0.1, 40).reshape(1, 2, 5, 4)
    flat = y.reshape(12, 40)
    sigma = np.linalg.svd(flat - flat.mean(0), compute_uv=False)  # independent reference

    @jax.jit
    def pod_and_errors(y):
        full = _pod_model(y, 12)

        def reconstruct(model):
            return jax.vmap(lambda v: model.expand(model.project(v)))(y)

        # the model's first k modes only (the branch is not used here)
        truncated = [eqx.tree_at(lambda m: m.modes, full, full.modes[:k]) for k in (1, 4, 9)]
        errors = [jnp.sum((reconstruct(m) - y) ** 2) for m in truncated]
        return full.mean, full.modes, pod_basis(y, n_modes=3)[2], reconstruct(full), errors

    mean, modes, s, back, errors = pod_and_errors(jnp.asarray(y))
    np.testing.assert_allclose(s, sigma, rtol=1e-12, atol=1e-12 * sigma[0])  # sigma[11] ~ 0
    np.testing.assert_allclose(mean, flat.mean(0).reshape(2, 5, 4), rtol=1e-13)
    phi = np.asarray(modes).reshape(12, 40)
    np.testing.assert_allclose(phi @ phi.T / 40, np.eye(12), atol=1e-12)  # unit RMS, orthogonal
    np.testing.assert_allclose(back, y, rtol=1e-11, atol=1e-12)  # n - 1 = 11 modes suffice
    for k, error in zip((1, 4, 9), errors, strict=True):
        np.testing.assert_allclose(error, np.sum(sigma[k:] ** 2), rtol=1e-10)
    # the variance fraction keeps the fewest modes whose energy reaches it
    energy = np.cumsum(sigma**2) / np.sum(sigma**2)
    for fraction in (energy[5] - 1e-9, energy[5] + 1e-9):
        k = int(np.argmax(energy >= fraction)) + 1
        assert pod_basis(jnp.asarray(y), variance=float(fraction))[1].shape == (k, 2, 5, 4)


def test_pod_deeponet_gradient_and_other_grids(x64):
    """d/dθ of Σ w·G(a) along a random direction of the branch weights against central finite
    differences; the mean and modes get zero gradient. On a nested 2x finer input the output
    is the modes' grid output at the shared points and the mean of neighbours between."""
    rng = np.random.default_rng(7)
    y = jnp.asarray(rng.standard_normal((8, 1, 9)))
    model = _pod_model(y, 4)
    a = jnp.asarray(rng.standard_normal((1, 9)))
    weights = jnp.asarray(rng.standard_normal((1, 9)))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    direction = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
    direction = eqx.tree_at(lambda m: (m.mean, m.modes), direction,
                            (np.zeros(model.mean.shape), np.zeros(model.modes.shape)))  # fmt: skip

    def loss(p):
        return jnp.sum(weights * eqx.combine(p, static)(a))

    fine = jnp.asarray(rng.standard_normal((1, 17))).at[:, ::2].set(a)

    @jax.jit
    def check(params, direction, eps=1e-6):
        grad = jax.grad(loss)(params)
        pairs = zip(jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True)
        exact = sum(jnp.vdot(g, d) for g, d in pairs)
        plus = jax.tree.map(lambda p, d: p + eps * d, params, direction)
        minus = jax.tree.map(lambda p, d: p - eps * d, params, direction)
        m = eqx.combine(params, static)
        return grad, exact, (loss(plus) - loss(minus)) / (2 * eps), m(fine), m(a)

    grad, exact, fd, out, coarse = check(params, direction)
    assert np.all(np.asarray(grad.mean) == 0) and np.all(np.asarray(grad.modes) == 0)
    assert abs(float(exact)) > 1e-3
    np.testing.assert_allclose(exact, fd, rtol=1e-7)
    np.testing.assert_allclose(out[:, ::2], coarse, rtol=1e-13)
    np.testing.assert_allclose(out[:, 1::2], (coarse[:, :-1] + coarse[:, 1:]) / 2, rtol=1e-12)


def test_headers_written_before_the_branch_option_build_the_mlp_model():
    """0.1/0.2 files record no `branch`, `branch_grid` or conv options: they build the MLP
    branch with the same leaves, so their stored arrays still fit."""
    # traced, not run: the models' structure and shapes are what a file's leaves must fit
    new = eqx.filter_eval_shape(
        lambda: DeepONetOperator(1, 2, (8,), p=4, branch_width=8, key=jax.random.key(0))
    )
    old = describe(new)
    del old["config"]["branch"]
    rebuilt = eqx.filter_eval_shape(build, old)
    assert type(rebuilt.deeponet.branch) is eqx.nn.MLP and describe(rebuilt) == describe(new)
    assert jax.tree.structure(rebuilt) == jax.tree.structure(new)
    shapes = [[a.shape for a in jax.tree.leaves(m) if hasattr(a, "shape")] for m in (rebuilt, new)]
    assert shapes[0] == shapes[1] and len(shapes[0]) == 17  # 2 MLPs of 4 layers, bias
    plain = describe(
        eqx.filter_eval_shape(lambda: DeepONet(5, 1, p=4, branch_width=8, key=jax.random.key(0)))
    )
    for k in ("branch_grid", "conv_channels", "conv_kernel"):
        del plain["config"][k]
    assert type(eqx.filter_eval_shape(build, plain).branch) is eqx.nn.MLP


def test_bad_branch_and_pod_options_raise_one_line():
    key = jax.random.key(0)
    y, mean, modes = np.ones((4, 1, 6)), np.zeros((1, 6)), np.zeros((2, 1, 6))

    def pod(*args, call=None, project=None, **kwargs):  # traced only, never computed
        def make():
            model = PODDeepONet(*args, key=key, **kwargs)
            return model(call) if call is not None else model.project(project)

        return eqx.filter_eval_shape(make)

    cases = [
        (lambda: DeepONetOperator(1, 1, (8,), branch="rnn", key=key), "unknown branch 'rnn'"),
        (lambda: DeepONetOperator(1, 1, (8,), conv_kernel=3, key=key),
         r"\['conv_kernel'\] are options of the CNN branch: add branch='cnn'"),
        (lambda: DeepONetOperator(1, 1, (8,), branch_grid=(1, 8), key=key),
         "branch_grid is set from sensor_shape"),
        (lambda: DeepONetOperator(1, 1, (4,) * 4, branch="cnn", key=key),
         "the CNN branch takes 1-3 grid axes"),
        (lambda: DeepONetOperator(1, 1, (8,), branch="cnn", conv_channels=(4, 0), key=key),
         "conv_channels must be positive integers"),
        (lambda: DeepONetOperator(1, 1, (8,), branch="cnn", conv_kernel=0, key=key),
         "conv_kernel must be a positive integer"),
        (lambda: DeepONet(6, 1, branch_grid=(1, 5), key=key), r"branch_grid must be .* 6 values"),
        (lambda: pod_basis(y), "give exactly one of n_modes and variance"),
        (lambda: pod_basis(y, n_modes=2, variance=0.9), "give exactly one of n_modes and variance"),
        (lambda: pod_basis(y, n_modes=5), "n_modes must be an integer from 1 to 4, got 5"),
        (lambda: pod_basis(y, variance=1.5), r"variance must be a fraction in \(0, 1\]"),
        (lambda: pod_basis(np.ones((4, 6)), n_modes=1), r"expects \(sample, channels, \*grid\)"),
        (lambda: pod(1, mean, modes[:, :, :5]), r"need mean \(cout, \*grid\)"),
        (lambda: pod(1, mean, modes, (6, 6)), "sensor grid needs 1 axes"),
        (lambda: pod(1, mean, modes, branch="gru"), "unknown branch 'gru'"),
        (lambda: pod(1, mean, modes, branch="cnn", conv_channels=()), "conv_channels must be"),
        (lambda: pod(2, mean, modes, call=jnp.ones((1, 6))),
         r"expected a field \(2, \*grid\) with 1 grid axes, got shape \(1, 6\)"),
        (lambda: pod(1, mean, modes, project=jnp.ones((1, 5))),
         r"project expects a field \(1, 6\)"),
    ]  # fmt: skip
    for make, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            make()
        assert "\n" not in str(info.value), str(info.value)
