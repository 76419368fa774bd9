"""Diagonal SSM kernels against a plain numpy loop of the discretised recurrence.

The reference discretises the continuous parameters itself (zero-order hold or bilinear, in
complex128) and runs x_k = Ā x_{k−1} + B̄ u_k, y_k = 2 Re(C x_k) step by step.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from surrogate.ssm import (
    DiagonalSSM,
    dss_softmax,
    s4d_inv,
    s4d_legs,
    s4d_lin,
    ssm_assoc,
    ssm_fft,
    ssm_kernel,
    ssm_scan,
)

INITS = ("s4d_lin", "s4d_inv", "s4d_legs", "dss_exp", "dss_softmax")
METHODS = ("zoh", "bilinear")
H, N, CHUNK = 2, 6, 4  # three modes per channel; blocks of 4 steps in the chunked kernels


def continuous(layer: DiagonalSSM):
    """(λ, B, C, D, Δ) of a layer as complex128/float64 numpy arrays."""
    lam = -np.exp(np.asarray(layer.log_neg_real, np.float64)) + 1j * np.asarray(layer.imag)
    b = np.asarray(layer.b[..., 0], np.float64) + 1j * np.asarray(layer.b[..., 1])
    c = np.asarray(layer.c[..., 0], np.float64) + 1j * np.asarray(layer.c[..., 1])
    dt = np.exp(np.asarray(layer.log_dt, np.float64))
    return lam, b, c, np.asarray(layer.d, np.float64), dt


def loop_reference(layer: DiagonalSSM, u, x0=None, rate: float = 1.0):
    """Final state and outputs (without D u) of the discretised recurrence, step by step."""
    lam, b, c, _, dt = continuous(layer)
    z = (dt / rate)[:, None] * lam
    if layer.discretization == "zoh":
        a_bar = np.exp(z)
        b_bar = (a_bar - 1.0) / lam * b
    else:
        a_bar = (1.0 + z / 2) / (1.0 - z / 2)
        b_bar = (dt / rate)[:, None] / (1.0 - z / 2) * b
    x = np.zeros_like(lam) if x0 is None else np.asarray(x0, np.complex128)
    ys = []
    for u_t in np.asarray(u, np.float64):
        x = a_bar * x + b_bar * u_t[:, None]
        ys.append(2.0 * np.real(np.sum(c * x, axis=1)))
    return x, np.array(ys).reshape(len(ys), -1)


@functools.partial(jax.jit, static_argnames="chunk")
def all_kernels(disc, u, x0, chunk=CHUNK):
    return {
        "fft": ssm_fft(disc, u, x0),
        "scan_1": ssm_scan(disc, u, x0, chunk=1),
        "scan": ssm_scan(disc, u, x0, chunk=chunk),
        "assoc_1": ssm_assoc(disc, u, x0, chunk=1),
        "assoc": ssm_assoc(disc, u, x0, chunk=chunk),
    }


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _check_all(length: int, dtype, tol: float, seed: int):
    key = jax.random.key(seed)
    ku, kx, kl = jax.random.split(key, 3)
    u = jax.random.normal(ku, (length, H), dtype)
    x0 = jax.lax.complex(*jax.random.normal(kx, (2, H, N // 2), dtype))
    for init in INITS:
        for method in METHODS:
            layer = DiagonalSSM(H, N, init=init, discretization=method, dtype=dtype, key=kl)
            x_ref, y_ref = loop_reference(layer, u, x0)
            for name, (x, y) in all_kernels(layer.discretize(), u, x0).items():
                assert y.dtype == dtype and x.shape == (H, N // 2)
                err = max(_rel(y, y_ref), _rel(x, x_ref))
                assert err < tol, (init, method, name, length, err)


@settings(max_examples=2, deadline=None)
@given(length=st.integers(1, 40), seed=st.integers(0, 2**16))
@example(length=1, seed=0)
@example(length=23, seed=1)  # odd, 6 blocks of 4 with a partial last one
def test_kernels_match_loop_float64(length, seed):
    with jax.enable_x64(True):
        _check_all(length, jnp.float64, 1e-10, seed)


@settings(max_examples=2, deadline=None)
@given(length=st.integers(1, 40), seed=st.integers(0, 2**16))
@example(length=1, seed=2)
def test_kernels_match_loop_float32(length, seed):
    _check_all(length, jnp.float32, 1e-5, seed)


_KERNELS = {"fft": ssm_fft, "scan": ssm_scan, "assoc": ssm_assoc}
CUTS = (1, 9, 22)


@jax.jit
def split_runs(disc, u):
    """For each cut k: u[:k] by the chunked scan, then u[k:] from its state by each kernel."""
    out = {}
    for cut in CUTS:
        x_mid, y_first = ssm_scan(disc, u[:cut], None, chunk=CHUNK)
        for name in ("fft", "scan_1", "scan", "assoc_1", "assoc"):
            kernel, _, chunk = name.partition("_")
            kwargs = {} if kernel == "fft" else {"chunk": int(chunk or CHUNK)}
            x_end, y_rest = _KERNELS[kernel](disc, u[cut:], x_mid, **kwargs)
            out[cut, name] = (x_end, jnp.concatenate([y_first, y_rest]))
    return out


def test_split_sequence_with_carried_state_equals_whole(x64):
    """Running u[:k] then u[k:] from the returned state gives the outputs of the whole."""
    layer = DiagonalSSM(H, N, init="s4d_inv", dtype=jnp.float64, key=jax.random.key(4))
    u = jax.random.normal(jax.random.key(5), (23, H), jnp.float64)
    disc = layer.discretize()
    whole = all_kernels(disc, u, layer.init_state())
    for (cut, name), (x_end, y) in split_runs(disc, u).items():
        x_whole, y_whole = whole[name]
        np.testing.assert_allclose(y, y_whole, rtol=1e-11, atol=1e-12, err_msg=f"{cut} {name}")
        np.testing.assert_allclose(x_end, x_whole, rtol=1e-11, atol=1e-12)


def _loss(layer, u, weights):
    return jnp.sum(weights * layer(u) ** 2)


@eqx.filter_jit
def _grads(layers, u, weights):
    return [eqx.filter_grad(_loss)(layer, u, weights) for layer in layers]


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))])


def test_gradients_agree_between_kernels_and_with_finite_differences(x64):
    u = jax.random.normal(jax.random.key(7), (13, H), jnp.float64)
    weights = jax.random.uniform(jax.random.key(8), (13, H), jnp.float64)
    variants = [("fft", 1), ("scan", 1), ("scan", CHUNK), ("assoc", 1), ("assoc", CHUNK)]
    layers = [  # the same key: the same parameters, computed by different kernels
        DiagonalSSM(
            H,
            N,
            init="s4d_legs",
            discretization="bilinear",
            kernel=k,
            chunk=c,
            dtype=jnp.float64,
            key=jax.random.key(6),
        )
        for k, c in variants
    ]
    grads = [_flat(g) for g in _grads(layers, u, weights)]
    for (k, c), g in zip(variants[1:], grads[1:], strict=True):
        np.testing.assert_allclose(g, grads[0], rtol=1e-9, atol=1e-12, err_msg=f"{k} {c}")

    # Central differences of the FFT layer along a random direction of all parameters.
    params, static = eqx.partition(layers[0], eqx.is_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    direction = jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    )
    loss = eqx.filter_jit(_loss)
    h = 1e-6
    ends = [
        eqx.combine(jax.tree.map(lambda p, d, s=s: p + s * h * d, params, direction), static)
        for s in (1.0, -1.0)
    ]
    fd = (loss(ends[0], u, weights) - loss(ends[1], u, weights)) / (2 * h)
    analytic = jnp.vdot(grads[0], _flat(direction))
    assert abs(fd - analytic) <= 1e-7 * abs(analytic)


def test_s4d_lin_and_inv_eigenvalues():
    dt = jnp.full((3,), 0.01)
    lam, b, _ = s4d_lin(8, dt, key=jax.random.key(0))
    np.testing.assert_allclose(lam[1], -0.5 + 1j * np.pi * np.arange(4), rtol=1e-6)
    np.testing.assert_array_equal(b, 1.0)
    lam, _, _ = s4d_inv(8, dt, key=jax.random.key(0))
    n = np.arange(4)
    np.testing.assert_allclose(lam[2].imag, 8 / np.pi * (8 / (2 * n + 1) - 1), rtol=1e-6)
    np.testing.assert_array_equal(lam.real, -0.5)


def test_s4d_legs_is_the_normal_part_of_hippo_legs(x64):
    """Each λ is an eigenvalue of A + PPᵀ (HiPPO-LegS plus its rank-one part), |B| = |Vᴴb|."""
    n_state = 16
    q = np.sqrt(2 * np.arange(n_state) + 1.0)
    legs = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(1, n_state + 1.0))
    normal = legs + 0.5 * np.outer(q, q)  # P Pᵀ with P_n = √(n + 1/2)
    lam, b, _ = s4d_legs(n_state, jnp.full((1,), 0.1), key=jax.random.key(0))
    lam, b = np.asarray(lam[0]), np.asarray(b[0])
    assert lam.shape == (n_state // 2,) and np.all(lam.imag > 0)
    for value in lam:
        smallest = np.linalg.svd(normal - value * np.eye(n_state), compute_uv=False)[-1]
        assert smallest < 1e-10 * np.linalg.norm(normal)
    values, vectors = np.linalg.eig(normal)
    order = np.argsort(values.imag)[-n_state // 2 :]
    proj = np.abs(vectors[:, order].conj().T @ q) ** 2
    np.testing.assert_allclose(np.abs(b) ** 2, proj, rtol=1e-8)
    np.testing.assert_allclose(lam, values[order], rtol=1e-10)


def test_dss_softmax_initialisation_reproduces_the_dss_kernel(x64):
    """DSS-softmax at length L: K_k = Re Σ w λ⁻¹ e^{λkΔ} / Σ_{r<L} e^{λrΔ} (DSS Prop. 1)."""
    length = 12
    key = jax.random.key(3)
    common = dict(dtype=jnp.float64, dt_min=0.05, dt_max=0.2, key=key)
    softmax = DiagonalSSM(H, N, init=functools.partial(dss_softmax, length=length), **common)
    exp = DiagonalSSM(H, N, init="dss_exp", **common)  # same key: the same Δ and w = 2C
    lam, _, c_exp, _, dt = continuous(exp)
    w = 2.0 * c_exp
    p = lam[..., None] * dt[:, None, None] * np.arange(length)  # P_ik = λ_i k Δ
    softmax_p = np.exp(p) / np.exp(p).sum(-1, keepdims=True)
    kernel = np.real(np.einsum("hi,hik->hk", w / lam, softmax_p))
    impulse = np.zeros((length, H))
    impulse[0] = 1.0
    _, response = loop_reference(softmax, impulse)
    np.testing.assert_allclose(response.T, kernel, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ssm_kernel(softmax.discretize(), length), kernel, rtol=1e-10, atol=1e-12
    )
    # and DSS-exp is zero-order hold with B = 1, C = w/2: K_k = Re Σ w λ⁻¹ (e^{λΔ} − 1) e^{λkΔ}
    kernel_exp = np.real(np.einsum("hi,hik->hk", w / lam * np.expm1(lam * dt[:, None]), np.exp(p)))
    np.testing.assert_allclose(
        ssm_kernel(exp.discretize(), length), kernel_exp, rtol=1e-10, atol=1e-12
    )


def test_initialisation_errors():
    with pytest.raises(ValueError, match="state_size must be a positive even number"):
        s4d_lin(7, jnp.ones(2), key=jax.random.key(0))
    with pytest.raises(ValueError, match="sequence length >= 1"):
        dss_softmax(8, jnp.ones(2), key=jax.random.key(0), length=0)
    with pytest.raises(ValueError, match="0 < dt_min <= dt_max"):
        DiagonalSSM(2, 4, dt_min=0.1, dt_max=0.01, key=jax.random.key(0))
