"""SSM layer, bidirectional layer, blocks and stack: properties, streaming, errors, learning."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_ssm_kernels import continuous, loop_reference

from surrogate.ssm import BidirectionalSSM, DiagonalInit, DiagonalSSM, SSMBlock, SSMStack

H, N = 3, 8


@eqx.filter_jit
def call(model, u, rate=1.0):
    return model(u, rate=rate)


@eqx.filter_jit
def stream(model, u):
    """The sequence fed one step at a time through `model.step`."""
    return jax.lax.scan(lambda s, u_t: model.step(s, u_t), model.init_state(), u)[1]


def _impulse_responses(layer: DiagonalSSM, length: int) -> np.ndarray:
    """K_k + D δ_k per channel from the numpy loop: (length, channels)."""
    impulse = np.zeros((length, layer.channels))
    impulse[0] = 1.0
    _, y = loop_reference(layer, impulse)
    y[0] += continuous(layer)[3]
    return y


def test_bidirectional_halves_are_causal_and_anticausal(x64):
    """An impulse at s reaches t > s through the forward half only, t < s through the reverse
    half only, with the reverse half's kernel read backwards in time."""
    length, s = 15, 6
    bi = BidirectionalSSM(H, N, kernel="scan", dtype=jnp.float64, key=jax.random.key(0))
    u = jnp.zeros((length, H), jnp.float64).at[s].set(1.0)
    y = np.asarray(call(bi, u))
    k_f = _impulse_responses(bi.forward, length)
    k_b = _impulse_responses(bi.backward, length)
    np.testing.assert_allclose(y[s + 1 :], k_f[1 : length - s], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(y[:s], k_b[s:0:-1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(y[s], k_f[0] + k_b[0], rtol=1e-10)


def test_bidirectional_reverse_half_is_the_forward_layer_on_flipped_input(x64):
    bi = BidirectionalSSM(
        H, N, merge="concat", kernel="fft", dtype=jnp.float64, key=jax.random.key(1)
    )
    u = jax.random.normal(jax.random.key(2), (17, H), jnp.float64)
    y = call(bi, u)
    assert y.shape == (17, 2 * H)
    # The reverse half, computed by another kernel as a causal layer of its own.
    alone = DiagonalSSM(H, N, kernel="scan", dtype=jnp.float64, key=jax.random.key(0))
    alone = eqx.tree_at(
        lambda m: [getattr(m, f) for f in _PARAMS],
        alone,
        [getattr(bi.backward, f) for f in _PARAMS],
    )
    np.testing.assert_allclose(y[:, H:], call(alone, u[::-1])[::-1], rtol=1e-10, atol=1e-12)
    # Exchanging the halves and flipping time gives the same map with its halves exchanged.
    swapped = eqx.tree_at(lambda m: (m.forward, m.backward), bi, (bi.backward, bi.forward))
    np.testing.assert_allclose(
        call(swapped, u[::-1])[::-1],
        jnp.concatenate([y[:, H:], y[:, :H]], 1),
        rtol=1e-10,
        atol=1e-12,
    )


_PARAMS = ("log_neg_real", "imag", "b", "c", "d", "log_dt")


@pytest.mark.parametrize("rate", [2, 3])
def test_rate_change_is_exact_for_held_inputs_with_zero_order_hold(x64, rate):
    """ZOH is exact for piecewise-constant inputs: sampling them `rate` times finer with
    Δ/rate gives the same state, hence output, at the coarse sample times."""
    layer = DiagonalSSM(
        H, N, init="s4d_inv", kernel="fft", dtype=jnp.float64, key=jax.random.key(3)
    )
    u = jax.random.normal(jax.random.key(4), (11, H), jnp.float64)
    coarse = layer(u)
    fine = layer(jnp.repeat(u, rate, axis=0), rate=rate)
    np.testing.assert_allclose(fine[rate - 1 :: rate], coarse, rtol=1e-10, atol=1e-12)
    # a traced rate is accepted (e.g. a simulator's step size inside jit)
    traced = eqx.filter_jit(lambda m, v, r: m(v, rate=r))(layer, u, jnp.float64(rate))
    np.testing.assert_allclose(traced, layer(u, rate=float(rate)), rtol=1e-12)
    _, ref = loop_reference(layer, u, rate=rate)
    np.testing.assert_allclose(
        traced, ref + np.asarray(u) * continuous(layer)[3], rtol=1e-10, atol=1e-12
    )


def test_step_by_step_streaming_equals_the_sequence_call():
    layer = DiagonalSSM(H, N, init="s4d_legs", kernel="assoc", key=jax.random.key(5))
    u = jax.random.normal(jax.random.key(6), (20, H))
    y = stream(layer, u)
    np.testing.assert_allclose(y, call(layer, u), rtol=1e-5, atol=1e-5 * float(jnp.abs(y).max()))
    # `run` carries the state between two calls on consecutive pieces of the sequence.
    pieces = eqx.filter_jit(lambda m, u: m.run(m.run(None, u[:7])[0], u[7:])[1])(layer, u)
    np.testing.assert_allclose(pieces, y[7:], rtol=1e-5, atol=1e-5 * float(jnp.abs(y).max()))


def _stack(**kwargs):
    return SSMStack(2, 3, width=8, depth=2, state_size=N, key=jax.random.key(7), **kwargs)


def test_stack_is_causal_and_can_be_stepped():
    model = _stack(kernel="scan")
    u = jax.random.normal(jax.random.key(8), (16, 2))
    y = call(model, u)
    assert y.shape == (16, 3)
    perturbed = call(model, u.at[9].add(1.0))
    np.testing.assert_allclose(perturbed[:9], y[:9], rtol=0, atol=1e-6)
    assert jnp.all(jnp.abs(perturbed[9:] - y[9:]).max(axis=1) > 1e-4)
    np.testing.assert_allclose(stream(model, u), y, rtol=1e-4, atol=1e-5)


@eqx.filter_jit
def _pooled(models, u):
    return [m(u) for m in models]


def test_stack_pooling_and_postnorm_linear_mixing():
    """Pooling commutes with the per-step decoder: "last" and "mean" of the sequence output."""
    u = jax.random.normal(jax.random.key(9), (12, 2))
    for kwargs in ({"prenorm": False, "mixing": "linear"}, {"bidirectional": True}):
        seq, last, mean = _pooled([_stack(pooling=p, **kwargs) for p in POOLINGS], u)
        np.testing.assert_allclose(last, seq[-1], rtol=1e-6)
        np.testing.assert_allclose(mean, seq.mean(0), rtol=1e-5, atol=1e-6)


POOLINGS = ("none", "last", "mean")


def test_block_with_silent_ssm_is_the_mixing_of_gelu_zero():
    """With C = 0 and D = 0 the SSM outputs zeros; the block adds GLU(W gelu(0) + b)."""
    block = SSMBlock(4, N, mixing="glu", key=jax.random.key(10))
    block = eqx.tree_at(
        lambda b: (b.ssm.c, b.ssm.d),
        block,
        (jnp.zeros_like(block.ssm.c), jnp.zeros_like(block.ssm.d)),
    )
    x = jax.random.normal(jax.random.key(11), (5, 4))
    z = block.mix.bias  # W gelu(0) = 0
    expected = x + (z[:4] * jax.nn.sigmoid(z[4:]))[None]
    np.testing.assert_allclose(call(block, x), expected, rtol=1e-6)


def test_errors_name_what_was_expected():
    key = jax.random.key(0)
    layer = DiagonalSSM(H, N, key=key)
    with pytest.raises(ValueError, match=r"shape \(length >= 1, 3\), got \(3,\)"):
        layer(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(length >= 1, 3\), got \(5, 4\)"):
        layer(jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"state must have shape \(3, 4\), got \(3, 3\)"):
        layer.run(jnp.zeros((3, 3), jnp.complex64), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"input of shape \(3,\), got \(2,\)"):
        layer.step(layer.init_state(), jnp.zeros(2))
    with pytest.raises(ValueError, match="rate must be > 0, got -1"):
        layer(jnp.zeros((5, 3)), rate=-1.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        DiagonalSSM(H, N, kernel="conv", key=key)
    with pytest.raises(ValueError, match="discretization must be one of"):
        DiagonalSSM(H, N, discretization="euler", key=key)
    with pytest.raises(ValueError, match="init must be one of"):
        DiagonalSSM(H, N, init="hippo", key=key)
    with pytest.raises(ValueError, match="state_size must be a positive even number"):
        DiagonalSSM(H, 5, key=key)
    unstable = DiagonalInit(*(jnp.ones((H, N // 2), jnp.complex64),) * 3)
    with pytest.raises(ValueError, match="eigenvalues with Re λ >= 0"):
        DiagonalSSM(H, N, init=lambda n, dt, *, key: unstable, key=key)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        DiagonalSSM(H, N, chunk=0, key=key)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        DiagonalSSM(0, N, key=key)
    with pytest.raises(ValueError, match="merge must be 'sum' or 'concat'"):
        BidirectionalSSM(H, N, merge="mean", key=key)
    with pytest.raises(ValueError, match="mixing must be one of"):
        SSMBlock(H, N, mixing="mlp", key=key)
    with pytest.raises(ValueError, match="pooling must be one of"):
        _stack(pooling="max")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        SSMStack(2, 3, depth=0, key=key)
    with pytest.raises(ValueError, match=r"shape \(length, 2\), got \(7, 3\)"):
        _stack()(jnp.zeros((7, 3)))
    with pytest.raises(ValueError, match="cannot be stepped"):
        _stack(bidirectional=True).init_state()
    with pytest.raises(ValueError, match="pooling='mean' needs the whole sequence"):
        model = _stack(pooling="mean")
        model.step(model.init_state(), jnp.zeros(2))


def test_stack_remembers_a_value_for_1000_steps():
    """v ~ U(−1, 1) is shown for the first 100 steps, then 1000 steps of N(0, 0.3²) noise
    follow and v must be output at the last step. Outputs that do not depend on inputs more
    than 1000 steps back have a relative error >= 1; we require < 0.1 after 400 Adam steps."""
    hold, gap, batch = 100, 1000, 8
    length = hold + gap

    def sample(key, n):
        kv, kn = jax.random.split(key)
        v = jax.random.uniform(kv, (n,), minval=-1.0, maxval=1.0)
        u = 0.3 * jax.random.normal(kn, (n, length))
        u = jnp.where(jnp.arange(length)[None] < hold, v[:, None], u)
        return u[..., None], v

    model = SSMStack(1, 1, width=8, depth=1, state_size=16, pooling="last", key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimiser = optax.adam(1e-2)

    def relative_error(params, u, v):
        pred = jax.vmap(eqx.combine(params, static))(u)[:, 0]
        return jnp.mean((pred - v) ** 2) / (1.0 / 3.0)  # Var U(−1, 1) = 1/3

    @jax.jit
    def train(params):
        def step(carry, key):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(relative_error)(params, *sample(key, batch))
            updates, opt_state = optimiser.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(jax.random.key(1), 400)
        (params, _), losses = jax.lax.scan(step, (params, optimiser.init(params)), keys)
        return params, losses

    before = relative_error(params, *sample(jax.random.key(2), 256))
    params, losses = train(params)
    after = relative_error(params, *sample(jax.random.key(2), 256))
    assert before > 0.5
    assert after < 0.1, (float(before), float(after), losses[-10:])
