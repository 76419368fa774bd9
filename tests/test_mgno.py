"""MgNO and its multigrid V-cycle: grid transfers against naive loops, textbook multigrid
convergence with fixed operators, gradients against finite differences, the fast path against
the first implementation (values and gradients, float64), files saved before it, symmetries,
training at two resolutions with the same weights, and the errors on bad input."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import surrogate
from surrogate.operators._multigrid import (
    conv_same,
    conv_same_last,
    full_weighting_stencil,
    laplacian_stencil,
    level_shapes,
    linear_prolongation_stencil,
    prolong,
    prolong_last,
    restrict,
    restrict_last,
    v_cycle,
)
from surrogate.operators.mgno import MgConv, MgNO, MgNOLayer

# ---- grid transfers ------------------------------------------------------------------------


def _padded(x, i, padding):
    n = x.shape[-1]
    if padding == "periodic":
        return x[:, i % n]
    return x[:, i] if 0 <= i < n else np.zeros(x.shape[0])


@settings(max_examples=6, deadline=None)
@given(n=st.integers(3, 19), padding=st.sampled_from(["zero", "periodic"]), seed=st.integers(0, 99))
def test_transfers_match_naive_loops(n, padding, seed):
    """1-D convolution, stride-2 restriction and transposed-convolution prolongation against
    loops over the definitions (the prolongation as a scatter, an independent formulation)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2, n))
        w = rng.standard_normal((3, 2, 3))
        nc = (n + 1) // 2
        xc = rng.standard_normal((2, nc))

        same = np.array(
            [
                [
                    sum(w[o, :, k] @ _padded(x, i + k - 1, padding) for k in range(3))
                    for i in range(n)
                ]
                for o in range(3)
            ]
        )
        coarse = np.array(
            [
                [
                    sum(w[o, :, k] @ _padded(x, 2 * j + k - 1, padding) for k in range(3))
                    for j in range(nc)
                ]
                for o in range(3)
            ]
        )
        fine = np.zeros((3, n))
        for j in range(nc):
            for k in range(3):
                i = 2 * j + 1 - k  # coarse j sits on fine 2j; the kernel spreads it around
                if padding == "periodic":
                    i %= n
                elif not 0 <= i < n:
                    continue
                fine[:, i] += w[:, :, k] @ xc[:, j]

        np.testing.assert_allclose(
            conv_same(jnp.asarray(x), jnp.asarray(w), padding), same, rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(
            restrict(jnp.asarray(x), jnp.asarray(w), padding), coarse, rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(
            prolong(jnp.asarray(xc), jnp.asarray(w), (n,), padding), fine, rtol=1e-12, atol=1e-12
        )


def test_channels_last_transfers_match_reference(x64):
    """The fast path's transfers on channels-last fields against the ones above (checked
    against loops), vmapped over two samples with one kernel as in training: values, and
    their own gradients (restrictions for the prolongation, a phase-split prolongation for
    the restriction) against autodiff of the reference formulations."""
    rng = np.random.default_rng(5)
    # odd and even sizes, zero and periodic (odd periodic: the dilated prolongation), and 57
    # rows: the convolution in row strips
    cases = [((6, 9), "zero"), ((6, 8), "periodic"), ((7, 8), "periodic"), ((57, 3), "periodic")]
    data = []
    for shape, padding in cases:
        coarse = tuple((n + 1) // 2 for n in shape)
        shapes = [(2, 2, *shape), (3, 2) + (3,) * len(shape), (2, 2, *coarse)]
        shapes += [(2, 3, *shape), (2, 3, *coarse)]
        data.append([jnp.asarray(rng.standard_normal(s)) for s in shapes])

    def batched(f, last, extra, padding):
        def one(a, k):
            if last:
                return jnp.moveaxis(f(jnp.moveaxis(a, 0, -1), k, *extra, padding), -1, 0)
            return f(a, k, *extra, padding)

        return jax.vmap(one, (0, None))

    @jax.jit
    def compare(data):
        out = []
        for (shape, padding), (x, w, xc, dy, dyc) in zip(cases, data, strict=True):
            ops = [(conv_same, conv_same_last, x, (), dy)]
            if shape[0] < 57:
                ops += [
                    (restrict, restrict_last, x, (), dyc),
                    (prolong, prolong_last, xc, (shape,), dy),
                ]
            for ref, fast, inp, extra, cot in ops:
                y, fast_vjp = jax.vjp(batched(fast, True, extra, padding), inp, w)
                z, ref_vjp = jax.vjp(batched(ref, False, extra, padding), inp, w)
                out.append([(y, z), *zip(fast_vjp(cot), ref_vjp(cot), strict=True)])
        return out

    for pairs in compare(data):
        for got, want in pairs:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_fixed_transfers_are_exact_on_bilinear_functions(x64):
    """On Darcy's vertex grid of 85 points (coarse j = fine 2j) full weighting of a bilinear
    function gives its coarse samples, and bilinear prolongation of coarse samples gives the
    fine samples."""
    n = 85
    x = jnp.linspace(0.0, 1.0, n)
    fine = (1.0 + 2.0 * x[:, None] - 3.0 * x[None, :] + 0.5 * x[:, None] * x[None, :])[None]
    coarse = fine[:, ::2, ::2]
    interior = (slice(None), slice(1, -1), slice(1, -1))
    r = restrict(fine, full_weighting_stencil(2, jnp.float64), "zero")
    p = prolong(coarse, linear_prolongation_stencil(2, jnp.float64), (n, n), "zero")
    np.testing.assert_allclose(r[interior], coarse[interior], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(p[interior], fine[interior], rtol=1e-13, atol=1e-13)


# ---- the V-cycle with fixed operators: textbook multigrid for Poisson ------------------------


def _poisson_levels(n, levels, padding, omega=0.8, nu=2):
    """-Δ u = f on the unit square, 5-point stencil, damped Jacobi, full weighting, bilinear
    prolongation. Dirichlet: vertex grid of n = 2^k + 1 points whose boundary rows are the
    identity (u = 0) and whose coarse boundary residuals are dropped. Periodic: n = 2^k."""
    lap = laplacian_stencil(2, jnp.float64)
    fw, lp = full_weighting_stencil(2, jnp.float64), linear_prolongation_stencil(2, jnp.float64)
    shapes = level_shapes((n, n), levels)

    def interior(shape):
        if padding == "periodic":
            return jnp.ones((1, *shape))
        return jnp.zeros((1, *shape)).at[:, 1:-1, 1:-1].set(1.0)

    A, S, R, P = [], [], [], []
    for level, shape in enumerate(shapes):
        h = 1.0 / (shape[0] if padding == "periodic" else shape[0] - 1)
        m = interior(shape)
        A.append(lambda u, m=m, h=h: m * conv_same(u, lap, padding) / h**2 + (1.0 - m) * u)
        S.append([lambda r, m=m, h=h: m * (omega * h**2 / 4.0) * r] * nu)
        if level < levels - 1:
            mc = interior(shapes[level + 1])
            R.append(lambda r, mc=mc: mc * restrict(r, fw, padding))
            P.append(lambda u, fine: prolong(u, lp, fine, padding))
    return A, S, R, P


def _reduction_factors(n, levels, padding, cycles=6):
    A, S, R, P = _poisson_levels(n, levels, padding)
    f = np.random.default_rng(n).standard_normal((1, n, n))
    if padding == "periodic":  # the periodic Laplacian needs a mean-free right-hand side
        f -= f.mean()
    else:  # u = 0 on the boundary rows
        f[:, [0, -1], :] = 0.0
        f[:, :, [0, -1]] = 0.0

    @jax.jit
    def iterate(f):
        def one(u, _):
            u = u + v_cycle(f - A[0](u), A, S, R, P, S_post=S)  # one V(2,2) correction
            return u, jnp.linalg.norm(f - A[0](u))

        _, res = jax.lax.scan(one, jnp.zeros_like(f), None, length=cycles)
        res = jnp.concatenate([jnp.linalg.norm(f)[None], res])
        return res[1:] / res[:-1]

    return np.asarray(iterate(jnp.asarray(f)))


@pytest.mark.parametrize("padding,sizes", [("zero", (17, 33, 65)), ("periodic", (32,))])
def test_v_cycle_reduces_poisson_residual_independently_of_grid(padding, sizes, x64):
    """V(2,2) with ω = 4/5 Jacobi: residual reduced by ≤ 0.2 per cycle on every grid size.
    (Local Fourier analysis: ω-Jacobi at ω = 4/5 damps the high frequencies by 3/5 per sweep,
    so four sweeps give ≈ 0.6^4 ≈ 0.13 once the coarse grids remove the smooth error.)"""
    worst = []
    for n in sizes:
        levels = int(np.log2(n - 1 if padding == "zero" else n))  # coarsest grid: 3 or 2 points
        factors = _reduction_factors(n, levels, padding)
        assert np.all(factors < 0.2), (n, factors)
        worst.append(factors.max())
    assert max(worst) - min(worst) < 0.03, worst  # independent of h
    if padding == "zero":  # control: without coarse grids the same smoother stalls
        single = _reduction_factors(sizes[1], 1, padding)
        assert single[-1] > 0.9, single


# ---- learned operators -----------------------------------------------------------------------


def test_layer_gradient_matches_finite_differences(x64):
    layer = MgNOLayer(
        2,
        ndim=1,
        levels=3,
        smoothing=1,
        post_smoothing=1,
        padding="periodic",
        coarse_guess="restrict",
        dtype=jnp.float64,
        key=jax.random.key(0),
    )
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.standard_normal((2, 2, 12)))
    params, static = eqx.partition((layer, x), eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    v = jax.tree.unflatten(treedef, [jnp.asarray(rng.standard_normal(a.shape)) for a in leaves])

    def loss(p):
        lay, inp = eqx.combine(p, static)
        return jnp.sum(w * lay(inp))

    @jax.jit
    def directional(params, v, eps=1e-6):
        grad = jax.grad(loss)(params)
        exact = sum(
            jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v), strict=True)
        )
        plus = jax.tree.map(lambda a, b: a + eps * b, params, v)
        minus = jax.tree.map(lambda a, b: a - eps * b, params, v)
        return exact, (loss(plus) - loss(minus)) / (2 * eps)

    exact, fd = directional(params, v)
    np.testing.assert_allclose(exact, fd, rtol=1e-7)


# ---- the fast path against the first implementation ------------------------------------------


def test_fast_path_equals_reference(x64):
    """`MgNO.__call__` gives the outputs of `MgNO._reference`, the channels-first cycle with
    the dilated prolongation it replaced, to round-off (random weights and inputs): on
    Darcy's 85 x 85 grid with 4 levels (row strips, phase-split prolongation, the lifted first
    smoothing step), and on an even periodic grid with 3 levels, learned coarse guesses, two
    pre- and one post-smoothing steps. (Gradients: the transfers above, and finite
    differences below.)"""
    rng = np.random.default_rng(4)
    cases = [
        ((85, 85), dict(levels=4)),
        ((12, 10), dict(levels=3, padding="periodic", coarse_guess="restrict", smoothing=2)),
    ]
    models, inputs = [], []
    for seed, (grid, options) in enumerate(cases):
        post = options.get("padding") == "periodic"
        key = jax.random.key(seed)
        models.append(
            MgNO(
                2,
                2,
                width=4,
                depth=1,
                dtype=jnp.float64,
                key=key,
                **options,
                post_smoothing=int(post),
            )
        )
        inputs.append(jnp.asarray(rng.standard_normal((2, 2, *grid))))

    @jax.jit
    def both(models, inputs):
        return [(jax.vmap(m)(x), jax.vmap(m._reference)(x)) for m, x in zip(models, inputs)]

    for fast, ref in both(models, inputs):
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12 * np.abs(ref).max())

    # forward mode too (the transfers' custom rules are JVPs): a random direction in the
    # weights and the input at once
    @jax.jit
    def tangents(models, inputs, directions):
        out = []
        for m, x, (dm, dx) in zip(models, inputs, directions, strict=True):

            def run(call):
                return jax.jvp(lambda m, x: jax.vmap(call(m))(x), (m, x), (dm, dx))[1]

            out.append((run(lambda m: m), run(lambda m: m._reference)))
        return out

    directions = [
        (
            jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), m),
            jnp.asarray(rng.standard_normal(x.shape)),
        )
        for m, x in zip(eqx.filter(models, eqx.is_inexact_array), inputs, strict=True)
    ]
    for fast, ref in tangents(models, inputs, directions):
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


FIXTURES = Path(__file__).parent / "fixtures"


def test_files_saved_before_the_fast_path_load_and_agree():
    """A model saved by the first implementation (tests/fixtures, written at commit d43b73b:
    odd grid, learned coarse guesses, post-smoothing) loads, and the fast path reproduces its
    saved outputs to float32 round-off."""
    saved = np.load(FIXTURES / "mgno_before_fast_path.npz")
    model = surrogate.load(FIXTURES / "mgno_before_fast_path.eqx")
    y = jax.jit(jax.vmap(model))(jnp.asarray(saved["x"]))
    np.testing.assert_allclose(y, saved["y"], rtol=0, atol=1e-5 * np.abs(saved["y"]).max())


def test_mgconv_symmetries(x64):
    """Linear in its input on an odd vertex grid; with periodic padding it commutes with shifts
    by 2^(levels-1) points (the coarse grids shift with them) and not with a shift by one."""
    conv = MgConv(2, ndim=2, levels=3, dtype=jnp.float64, key=jax.random.key(0))
    rng = np.random.default_rng(1)
    f, g = rng.standard_normal((2, 2, 85, 43))
    stacked = jnp.asarray(np.stack([2.0 * f - 3.0 * g, f, g]))
    out = eqx.filter_jit(lambda c: jax.vmap(c)(stacked))(conv)
    np.testing.assert_allclose(out[0], 2.0 * out[1] - 3.0 * out[2], rtol=1e-10, atol=1e-12)

    per = MgConv(2, ndim=1, levels=4, padding="periodic", dtype=jnp.float64, key=jax.random.key(2))
    x = rng.standard_normal((2, 48))
    shifted = jnp.asarray(np.stack([x, np.roll(x, 8, -1), np.roll(x, 1, -1)]))
    y, y8, y1 = eqx.filter_jit(lambda c: jax.vmap(c)(shifted))(per)
    np.testing.assert_allclose(y8, np.roll(y, 8, -1), atol=1e-12)
    gap = np.abs(y1 - np.roll(y, 1, -1)).max()
    assert gap > 1e-3 * np.abs(y).max()


def _hilbert_data(seed, n_samples, n, modes=4):
    """Smooth periodic inputs and their Hilbert transform (cos kx -> sin kx, sin -> -cos):
    an order-0, scale-free operator, so its grid-unit stencils are the same at every grid."""
    a, b = np.random.default_rng(seed).standard_normal((2, n_samples, modes))
    phase = 2 * np.pi * np.arange(1, modes + 1)[:, None] * np.arange(n)[None, :] / n
    c, s = np.cos(phase), np.sin(phase)
    return jnp.asarray((a @ c + b @ s)[:, None], jnp.float32), jnp.asarray(
        (a @ s - b @ c)[:, None], jnp.float32
    )


def _relative_l2(model, x, y):
    pred = jax.vmap(model)(x)
    axes = tuple(range(1, y.ndim))
    return jnp.mean(jnp.sqrt(jnp.sum((pred - y) ** 2, axes) / jnp.sum(y**2, axes)))


def _model(key=jax.random.key(0)):
    return MgNO(1, 1, ndim=1, width=8, depth=1, levels=4, padding="periodic", key=key)


def test_same_weights_fit_two_resolutions():
    """One set of weights trained on batches at 32 and 64 points reaches a small error at
    both. (Zero-shot transfer to an unseen finer grid is NOT expected of a stencil network:
    the lowest grid frequencies there were never seen; see the `MgNO` docstring.)"""
    train_sets = [_hilbert_data(1, 256, n) for n in (32, 64)]
    test_sets = [_hilbert_data(2, 64, n) for n in (32, 64)]
    steps, batch = 300, 8
    params, static = eqx.partition(_model(), eqx.is_inexact_array)
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, steps))

    def loss(params, sets):
        m = eqx.combine(params, static)
        return [_relative_l2(m, x, y) for x, y in sets]

    @jax.jit
    def train(params):
        def step(carry, key):
            params, state = carry
            idx = jax.random.choice(key, 256, (batch,), replace=False)
            batches = [(x[idx], y[idx]) for x, y in train_sets]
            grads = jax.grad(lambda p: sum(loss(p, batches)))(params)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        keys = jax.random.split(jax.random.key(2), steps)
        (trained, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
        return loss(trained, test_sets)

    errors = np.asarray(train(params))
    assert errors.max() < 0.05, errors  # the untrained model is at ~1
    assert errors.max() < 2.0 * errors.min(), errors


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input_raises():
    key = jax.random.key(0)
    model = _model(key)
    with pytest.raises(ValueError, match="expects 1 input channels, got 3"):
        model(jnp.zeros((3, 16)))
    with pytest.raises(ValueError, match="with 1 grid axes"):
        model(jnp.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="too small for 4 multigrid levels: need at least 9"):
        model(jnp.zeros((1, 8)))
    with pytest.raises(ValueError, match="unknown padding mode 'reflect'"):
        MgNO(1, 1, padding="reflect", key=key)
    with pytest.raises(ValueError, match="unknown coarse_guess 'full'"):
        MgNO(1, 1, coarse_guess="full", key=key)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        MgConv(2, ndim=3, key=key)
    with pytest.raises(ValueError, match="levels >= 1"):
        MgConv(2, levels=0, key=key)
    with pytest.raises(ValueError, match="does not come from a fine grid"):
        prolong(jnp.zeros((1, 4)), linear_prolongation_stencil(1), (12,), "zero")
    with pytest.raises(ValueError, match=r"coarse grid \(4,\) does not come from a fine grid"):
        prolong_last(jnp.zeros((4, 1)), linear_prolongation_stencil(1), (12,), "zero")
    with pytest.raises(ValueError, match="need in_channels, out_channels, width, depth >= 1"):
        MgNO(1, 1, depth=0, key=key)
    f, ident = jnp.zeros((1, 8)), [lambda u: u]
    with pytest.raises(ValueError, match="need A and S for each level; got 2 A and 1 S"):
        v_cycle(f, ident * 2, [ident], ident, ident)
    with pytest.raises(ValueError, match="2 levels need 1 restrictions and prolongations"):
        v_cycle(f, ident * 2, [ident] * 2, [], [])
    with pytest.raises(ValueError, match="2 levels need 1 Pi; got 2"):
        v_cycle(f, ident * 2, [ident] * 2, ident, ident, Pi=ident * 2)
    with pytest.raises(ValueError, match="need S_post for each of the 2 levels; got 1"):
        v_cycle(f, ident * 2, [ident] * 2, ident, ident, S_post=[ident])
