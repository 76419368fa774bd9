"""S5, S4 (DPLR) and Hydra against independent references, and the family's one interface.

References are written here from the papers' definitions, in numpy complex128: a plain loop
of S5's discretised recurrence, S4's kernel C Ā^k B̄ from the dense A = Λ − PQᴴ, and Hydra's
quasiseparable matrix entry by entry.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from surrogate.ssm import (
    S4,
    S5,
    DiagonalSSM,
    Hydra,
    SSMBlock,
    SSMStack,
    hippo_legs,
    legs_nplr,
)
from surrogate.ssm._blocks import make_layer

H, N = 2, 4


def _cx(pair) -> np.ndarray:
    pair = np.asarray(pair, np.float64)
    return pair[..., 0] + 1j * pair[..., 1]


def _full(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, z.conj()], axis=-1)


def _perturbed(model, seed, scale=0.1):
    """Every float leaf moved off its initial value (breaks the HiPPO symmetries). numpy's
    generator, not jax.random: eager jax ops would compile once per leaf shape."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(eqx.filter(model, eqx.is_inexact_array))
    moved = [x + scale * jnp.asarray(rng.standard_normal(x.shape), x.dtype) for x in leaves]
    return eqx.combine(jax.tree.unflatten(treedef, moved), model)


# ---- S5 ---------------------------------------------------------------------------------


def s5_loop(layer: S5, u, dt=None) -> np.ndarray:
    """S5 by a numpy loop: x_k = Ā_k x_{k−1} + B̄_k u_k, y_k = 2 Re(C̃ x_k) + D u_k, and
    the reverse readout of the same system stepping back from t_{k+1} to t_k."""
    lam = -np.exp(np.asarray(layer.log_neg_real, np.float64)) + 1j * np.asarray(layer.imag)
    b, c, d = _cx(layer.b), _cx(layer.c), np.asarray(layer.d, np.float64)
    delta = np.exp(np.asarray(layer.log_dt, np.float64))
    u = np.asarray(u, np.float64)
    length = len(u)
    dt = np.ones(length) if dt is None else np.asarray(dt, np.float64)

    def disc(step):
        z = step * delta * lam
        if layer.discretization == "zoh":
            return np.exp(z), (np.exp(z) - 1.0) / lam
        return (1 + z / 2) / (1 - z / 2), step * delta / (1 - z / 2)

    x, y = np.zeros(lam.shape, complex), np.zeros((length, layer.channels))
    for k in range(length):
        a, g = disc(dt[k])
        x = a * x + g * (b @ u[k])
        y[k] = 2 * np.real(c[0] @ x) + d * u[k]
    if layer.bidirectional:
        x, back = np.zeros(lam.shape, complex), np.zeros_like(y)
        for k in reversed(range(length)):
            a, g = disc(dt[k + 1] if k + 1 < length else dt[0])
            x = a * x + g * (b @ u[k])
            back[k] = 2 * np.real(c[1] @ x)
        y = np.concatenate([y, back], 1) if layer.merge == "concat" else y + back
    return y


@eqx.filter_jit
def _call(model, u, **kwargs):
    return model(u, **kwargs)


@eqx.filter_jit
def _call_all(models, u, **kwargs):
    """Several models in one compilation (compiling dominates these small tests)."""
    return [m(u, **kwargs) for m in models]


def _s5_pair(seed: int, **options):
    """The same S5 (same key) computed by the sequential and the associative scan."""
    return [
        S5(H, 2 * N, blocks=2, kernel=k, dtype=jnp.float64, key=jax.random.key(seed), **options)
        for k in ("scan", "assoc")
    ]


@settings(max_examples=6, deadline=None)
@given(
    length=st.integers(1, 24),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["zoh", "bilinear"]),
    direction=st.sampled_from(["causal", "sum", "concat"]),
    irregular=st.booleans(),
)
@example(length=1, seed=0, method="zoh", direction="causal", irregular=True)
@example(length=7, seed=1, method="bilinear", direction="concat", irregular=True)
@example(length=7, seed=2, method="zoh", direction="sum", irregular=False)
def test_s5_kernels_equal_the_loop_of_the_recurrence(length, seed, method, direction, irregular):
    """Both kernels, constant or per-step Δ (some increments 0), ZOH or bilinear, causal or
    bidirectional: the numpy loop's outputs to round-off."""
    with jax.enable_x64(True):
        bi = direction != "causal"
        merge = "sum" if direction == "causal" else direction
        layers = _s5_pair(seed, discretization=method, bidirectional=bi, merge=merge)
        rng = np.random.default_rng(seed)
        u = rng.standard_normal((length, H))
        dt = np.where(rng.random(length) < 0.2, 0.0, rng.uniform(0.1, 3.0, length))
        dt = dt if irregular else None
        ref = s5_loop(layers[0], u, dt)
        kwargs = {} if dt is None else {"dt": jnp.asarray(dt)}
        for y in _call_all(layers, jnp.asarray(u), **kwargs):
            assert y.shape == ((length, 2 * H) if merge == "concat" and bi else (length, H))
            np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_s5_per_step_dt_is_exact_for_inputs_held_between_samples(x64):
    """ZOH: an input held over irregular intervals of 1, 2 or 3 fine steps gives, with
    dt = those counts, the states a regular run on the fine grid has at the interval ends;
    and a constant dt is the same as a rate of 1/dt."""
    layer = _s5_pair(3)[1]
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 4, 9)
    u = jnp.asarray(rng.standard_normal((9, H)))

    @eqx.filter_jit
    def outputs(m):
        fine = m(jnp.repeat(u, counts, axis=0, total_repeat_length=int(counts.sum())))
        coarse = m(u, dt=jnp.asarray(counts, jnp.float64))
        return fine, coarse, m(u, dt=jnp.full(9, 0.5)), m(u, rate=2.0)

    fine, coarse, half, rate = outputs(layer)
    np.testing.assert_allclose(coarse, fine[np.cumsum(counts) - 1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(half, rate, rtol=1e-12)


@eqx.filter_jit
def _stream(model, u, dt):
    def one(s, inputs):
        return model.step(s, *inputs[:1], **({} if dt is None else {"dt": inputs[1]}))

    xs = (u,) if dt is None else (u, dt)
    return jax.lax.scan(one, model.init_state(), xs)[1]


def test_step_streaming_equals_the_sequence_call(x64):
    """S5 (with per-step Δ) and S4 fed one step at a time give the sequence call's outputs;
    S5's `run` carries the state from one piece of a sequence to the next."""
    rng = np.random.default_rng(5)
    u = jnp.asarray(rng.standard_normal((15, H)))
    dt = jnp.asarray(rng.uniform(0.2, 2.0, 15))
    s5 = _perturbed(_s5_pair(6)[0], 7)
    s4 = _perturbed(S4(H, 2 * N, dtype=jnp.float64, key=jax.random.key(8)), 9)

    @eqx.filter_jit
    def outputs(s5, s4):
        state, first = s5.run(None, u[:6], dt=dt[:6])
        pieces = jnp.concatenate([first, s5.run(state, u[6:], dt=dt[6:])[1]])
        return s5(u, dt=dt), _stream(s5, u, dt), pieces, s4(u), _stream(s4, u, None)

    y, streamed, pieces, y4, streamed4 = outputs(s5, s4)
    np.testing.assert_allclose(streamed, y, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(pieces, y, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(streamed4, y4, rtol=1e-9, atol=1e-12)


def test_s5_init_is_hippo_n_in_blocks(x64):
    """Λ of each of the J blocks: the eigenvalues (one of each conjugate pair) of the normal
    part A + ppᵀ of HiPPO-LegS of size N/J."""
    layer = _s5_pair(0)[0]  # N = 8 in J = 2 blocks
    q = np.sqrt(2 * np.arange(N) + 1.0)
    values = np.linalg.eigvals(hippo_legs(N) + 0.5 * np.outer(q, q))
    values = np.sort_complex(values[values.imag > 0])
    lam = -np.exp(np.asarray(layer.log_neg_real)) + 1j * np.asarray(layer.imag)
    for j in range(2):
        np.testing.assert_allclose(np.sort_complex(lam[2 * j : 2 * j + 2]), values, rtol=1e-10)


# ---- S4 ---------------------------------------------------------------------------------


def s4_dense_kernel(layer: S4, length: int) -> np.ndarray:
    """K_k = Re(C Ā^k B̄) with Ā, B̄ the bilinear discretisation of the dense N × N
    A = diag(Λ) − P Qᴴ over all N modes (kept ones and conjugates), Ā powered step by step."""
    lam = -np.exp(np.asarray(layer.log_neg_real, np.float64)) + 1j * np.asarray(layer.imag)
    p = _cx(layer.p)
    q = p if layer.q is None else _cx(layer.q)
    b, c = _cx(layer.b), _cx(layer.c)
    dt = np.exp(np.asarray(layer.log_dt, np.float64))
    out = np.zeros((c.shape[0], layer.channels, length))
    eye = np.eye(layer.state_size)
    for h in range(layer.channels):
        a = np.diag(_full(lam[h])) - _full(p[h]).T @ _full(q[h]).conj()
        a_bar = np.linalg.solve(eye - dt[h] / 2 * a, eye + dt[h] / 2 * a)
        x = dt[h] * np.linalg.solve(eye - dt[h] / 2 * a, _full(b[h]))
        for k in range(length):
            out[:, h, k] = np.real(_full(c[:, h]) @ x)
            x = a_bar @ x
    return out


@pytest.mark.parametrize("rank, tied", [(1, True), (2, False)])
def test_s4_cauchy_woodbury_kernel_equals_the_dense_powers(x64, rank, tied):
    layer = S4(H, 2 * N, rank=rank, tied=tied, bidirectional=True, dtype=jnp.float64,
               key=jax.random.key(1))  # fmt: skip
    layer = _perturbed(layer, 2, 0.2)
    lengths = (1, 2, 9, 16)
    u = jnp.zeros((9, H), jnp.float64).at[4].set(1.0)
    kernels, y = eqx.filter_jit(lambda m: ([m.kernel(n) for n in lengths], m(u)))(layer)
    for length, k in zip(lengths, kernels):
        ref = s4_dense_kernel(layer, length)
        assert np.max(np.abs(k - ref)) <= 1e-8 * np.max(np.abs(ref)), length
    # and the layer convolves with it: an impulse at s returns K_{t−s} (+ D at t = s)
    np.testing.assert_allclose(y[5:], ref[0][:, 1:5].T, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(y[:4], ref[1][:, 4:0:-1].T, rtol=1e-8, atol=1e-12)


def test_s4_init_is_hippo_legs(x64):
    """V (Λ − p̃ p̃ᴴ) Vᴴ over all modes is the HiPPO-LegS matrix, and the layer holds Λ, p̃, b̃."""
    lam, vec, p, b = legs_nplr(8)
    v = _full(vec)
    a = v @ (np.diag(_full(lam)) - np.outer(_full(p), _full(p).conj())) @ v.conj().T
    np.testing.assert_allclose(a, hippo_legs(8), atol=1e-12)
    layer = S4(3, 8, dtype=jnp.float64, key=jax.random.key(0))
    np.testing.assert_allclose(-np.exp(layer.log_neg_real[2]), lam.real, rtol=1e-14)
    np.testing.assert_allclose(_cx(layer.p)[1, 0], p, rtol=1e-14)
    np.testing.assert_allclose(_cx(layer.b)[0], b, rtol=1e-14)


def test_s4_tends_to_s4d_legs_as_the_low_rank_term_vanishes(x64):
    """With P -> εP the kernel tends to the diagonal (S4D-LegS, bilinear) kernel of the same
    Λ, B, C, Δ; PQᴴ is O(ε²), so is the difference (second order)."""
    s4 = S4(H, 2 * N, dtype=jnp.float64, key=jax.random.key(3))
    s4d = DiagonalSSM(H, 2 * N, init="s4d_legs", discretization="bilinear", kernel="fft",
                      dtype=jnp.float64, key=jax.random.key(3))  # fmt: skip
    s4d = eqx.tree_at(
        lambda m: (m.log_neg_real, m.imag, m.b, m.c, m.log_dt),
        s4d,
        (s4.log_neg_real, s4.imag, s4.b, s4.c[0], s4.log_dt),
    )
    length = 32
    impulse = jnp.zeros((length, H), jnp.float64).at[0].set(1.0)
    diagonal = np.asarray(_call(s4d, impulse) - impulse * s4d.d[None]).T

    @eqx.filter_jit
    def kernel(m):
        return m.kernel(length)[0]

    errors = []
    for eps in (0.0, 1e-2, 1e-3):
        k = kernel(eqx.tree_at(lambda m: m.p, s4, eps * s4.p))
        errors.append(np.max(np.abs(k - diagonal)) / np.max(np.abs(diagonal)))
    assert errors[0] < 1e-12
    assert 1e-8 < errors[2] < 1e-3
    assert 90 < errors[1] / errors[2] < 110, errors  # ε² convergence
    full = np.max(np.abs(kernel(s4) - diagonal)) / np.max(np.abs(diagonal))
    assert full > 0.05  # and at ε = 1 the low-rank term matters


def test_gradient_of_s4_matches_finite_differences(x64):
    layer = S4(H, 2 * N, rank=2, tied=False, dtype=jnp.float64, key=jax.random.key(4))
    layer = _perturbed(layer, 5)
    rng = np.random.default_rng(6)
    u, w = jnp.asarray(rng.standard_normal((11, H))), jnp.asarray(rng.random((11, H)))

    def loss(m):
        return jnp.sum(w * m(u) ** 2)

    params, static = eqx.partition(layer, eqx.is_inexact_array)
    grad = eqx.filter_jit(eqx.filter_grad(loss))(layer)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), direction))
    h = 1e-6
    value = eqx.filter_jit(loss)
    ends = [
        value(eqx.combine(jax.tree.unflatten(treedef, [x + s * h * d for x, d in
                                                       zip(leaves, direction)]), static))
        for s in (1.0, -1.0)
    ]  # fmt: skip
    fd = (ends[0] - ends[1]) / (2 * h)
    assert abs(fd - analytic) <= 1e-6 * abs(analytic), (float(fd), float(analytic))


# ---- Hydra ------------------------------------------------------------------------------


def hydra_matrix(layer: Hydra, u) -> np.ndarray:
    """M (heads, L, L) entry by entry: C_{i−1}ᵀ a_{i−1}⋯a_{j+1} B_j Δ_j below the diagonal,
    δ_i on it, C̄_{i+1}ᵀ ā_{i+1}⋯ā_{j−1} B̄_j Δ̄_j above (the backward direction's own)."""
    s = jax.tree.map(lambda z: np.asarray(z, np.float64), eqx.filter_jit(Hydra.steps)(layer, u))
    length = u.shape[0]
    m = np.zeros((layer.heads, length, length))
    for h in range(layer.heads):
        for i in range(length):
            for j in range(length):
                if i > j:
                    decay = np.exp(np.sum(s.log_a[0, j + 1 : i, h]))
                    m[h, i, j] = s.c[0, i - 1] @ s.b[0, j] * decay * s.delta[0, j, h]
                elif i < j:
                    decay = np.exp(np.sum(s.log_a[1, i + 1 : j, h]))
                    m[h, i, j] = s.c[1, i + 1] @ s.b[1, j] * decay * s.delta[1, j, h]
                else:
                    m[h, i, i] = s.diag[i, h]
    return m


@pytest.mark.parametrize("length, chunk", [(1, 4), (7, 3), (13, 4), (12, 32)])
def test_hydra_equals_its_dense_quasiseparable_matrix(x64, length, chunk):
    layer = Hydra(6, 3, heads=3, chunk=chunk, dtype=jnp.float64, key=jax.random.key(0))
    layer = _perturbed(layer, 1, 0.3)
    u = jnp.asarray(np.random.default_rng(2).standard_normal((length, 6)))
    m = hydra_matrix(layer, u)
    x = np.asarray(u).reshape(length, 3, 2)
    ref = np.einsum("hij,jhp->ihp", m, x).reshape(length, 6)
    np.testing.assert_allclose(_call(layer, u), ref, rtol=1e-11, atol=1e-13 * np.abs(ref).max())


# ---- one interface ----------------------------------------------------------------------


def test_every_layer_has_the_one_interface(x64):
    """(length, channels) -> (length, out_channels), `rate` accepted, `channels`,
    `state_size`, `out_channels`; blocks and stacks take any of them; causal ones step."""
    u = jnp.asarray(np.random.default_rng(0).standard_normal((10, H)))
    key = jax.random.key(1)
    options = dict(bidirectional=True, dtype=jnp.float64, key=key)
    layers = [
        make_layer("s5", H, 2 * N, merge="concat", **options),
        make_layer("s4", H, 2 * N, **options),
        make_layer("hydra", H, 2 * N, **options),
    ]
    assert [type(m) for m in layers[:3]] == [S5, S4, Hydra]
    for layer, y in zip(layers, _call_all(layers, u, rate=2.0)):
        assert (layer.channels, layer.state_size) == (H, 2 * N)
        assert y.shape == (10, layer.out_channels)
    assert [m.out_channels for m in layers] == [2 * H, H, H]

    @eqx.filter_jit
    def outputs(model, v):
        change = jnp.arange(1.0, v.shape[1] + 1.0)
        return model(v), _stream(model, v, None), model(v.at[6].add(change))

    # width 4: a LayerNorm over two channels would leave only their signs
    stack = SSMStack(H, 1, width=4, depth=1, state_size=2 * N, layer="s5", dtype=jnp.float64,
                     key=key)  # fmt: skip
    block = SSMBlock(4, 2 * N, layer="s4", dtype=jnp.float64, key=key)
    assert stack.blocks[0].layer == "s5" and isinstance(block.ssm, S4)
    v = jnp.asarray(np.random.default_rng(1).standard_normal((10, 4)))
    for model, w in ((stack, u), (block, v)):
        y, streamed, changed = outputs(model, w)
        np.testing.assert_allclose(streamed, y, rtol=1e-10, atol=1e-12)
        # causal: a change at step 6 leaves the outputs before it alone (to FFT round-off)
        np.testing.assert_allclose(changed[:6], y[:6], rtol=0, atol=1e-12)
        assert np.all(np.abs(changed[6:] - y[6:]).max(1) > 1e-6)


def test_errors_name_what_was_expected(x64):
    key = jax.random.key(0)
    f64 = dict(dtype=jnp.float64, key=key)  # the shapes and dtype built before: no compiling
    s5 = S5(H, 2 * N, **f64)
    with pytest.raises(ValueError, match=r"shape \(length >= 1, 2\), got \(5, 3\)"):
        s5(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"dt must have shape \(5,\).*got \(4,\)"):
        s5(jnp.zeros((5, H)), dt=jnp.ones(4))
    with pytest.raises(ValueError, match="dt must be >= 0"):
        s5(jnp.zeros((2, H)), dt=jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="rate must be > 0, got 0"):
        s5(jnp.zeros((2, H)), rate=0.0)
    with pytest.raises(ValueError, match=r"state must have shape \(4,\), got \(3,\)"):
        s5.step(jnp.zeros(3, jnp.complex64), jnp.zeros(H))
    with pytest.raises(ValueError, match="multiple of 2·blocks"):
        S5(H, 8, blocks=3, key=key)
    with pytest.raises(ValueError, match="kernel must be one of"):
        S5(H, 8, kernel="fft", key=key)
    bi = S5(H, 2 * N, bidirectional=True, **f64)
    with pytest.raises(ValueError, match="cannot be stepped"):
        bi.step(bi.init_state(), jnp.zeros(H))
    with pytest.raises(ValueError, match="takes no state"):
        bi.run(bi.init_state(), jnp.zeros((2, H)))
    with pytest.raises(ValueError, match="rank must be 1 or 2, got 3"):
        S4(H, 8, rank=3, key=key)
    with pytest.raises(ValueError, match="state_size must be a positive even number"):
        S4(H, 5, key=key)
    with pytest.raises(ValueError, match="merge must be 'sum' or 'concat'"):
        S4(H, 8, merge="mean", key=key)
    with pytest.raises(ValueError, match=r"shape \(length >= 1, 2\), got \(0, 2\)"):
        S4(H, 2 * N, **f64)(jnp.zeros((0, H)))
    with pytest.raises(ValueError, match="heads must divide channels=6, got 4"):
        Hydra(6, 3, heads=4, key=key)
    with pytest.raises(ValueError, match=r"shape \(length >= 1, 6\), got \(6,\)"):
        Hydra(6, 3, heads=3, **f64)(jnp.zeros(6))
    with pytest.raises(ValueError, match="layer must be one of"):
        SSMBlock(H, 2 * N, layer="mamba", key=key)
    with pytest.raises(ValueError, match="needs bidirectional=True"):
        SSMStack(H, 1, width=4, depth=1, state_size=2 * N, layer="hydra", **f64)
    with pytest.raises(ValueError, match="dt need layer='s5', got layer='s4d'"):
        SSMBlock(4, 2 * N, **f64)(jnp.zeros((3, 4)), dt=jnp.ones(3))
