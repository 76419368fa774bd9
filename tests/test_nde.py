"""Neural ODEs on diffrax: fitting, exact solutions, stiffness, gradients, bad inputs."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

from surrogate.nde import MLPField, NeuralODE, sliding_windows, trajectory_loss

# dy/dt = A y with A = [[-0.1, 2], [-2, -0.1]]: a damped spiral,
# y(t) = e^{-0.1 t} R(2t) y0 with R(θ) = [[cos θ, sin θ], [-sin θ, cos θ]].
A_SPIRAL = ((-0.1, 2.0), (-2.0, -0.1))


def spiral_exact(ts, y0):
    c, s, e = jnp.cos(2 * ts), jnp.sin(2 * ts), jnp.exp(-0.1 * ts)
    return jnp.stack([e * (c * y0[0] + s * y0[1]), e * (-s * y0[0] + c * y0[1])], axis=-1)


class LinearField(eqx.Module):
    a: jax.Array

    def __call__(self, t, y, args):
        return y @ self.a.T  # rows of y are states: works for (2,) and (batch, 2)


def batched(model, ts, y0):
    return jax.vmap(model, in_axes=(None, 0))(ts, y0)


def ring(key, n):
    """Initial states on an annulus 0.5 <= |y| <= 1.5."""
    kr, ka = jax.random.split(key)
    r = jax.random.uniform(kr, (n,), minval=0.5, maxval=1.5)
    a = jax.random.uniform(ka, (n,), maxval=2 * jnp.pi)
    return jnp.stack([r * jnp.cos(a), r * jnp.sin(a)], axis=-1)


def test_neural_ode_fits_spiral():
    """An MLP field trained on 10-step windows of 8 spirals predicts 8 unseen spirals over
    the whole interval [0, 4] (1.3 turns) to a relative L2 error below 5% (2% measured)."""
    kd, kt, km = jax.random.split(jax.random.PRNGKey(0), 3)
    ts = jnp.linspace(0.0, 4.0, 41)
    ys = jax.vmap(spiral_exact, in_axes=(None, 0))(ts, ring(kd, 8))
    train = sliding_windows({"ts": jnp.tile(ts, (8, 1)), "ys": ys}, window=11, stride=10)
    model = NeuralODE(MLPField(2, 32, 2, key=km), rtol=1e-4, atol=1e-4)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def steps(params, state):
        def body(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(
                lambda p: trajectory_loss(eqx.combine(p, static), train)
            )(params)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(body, (params, state), length=100)

    for _ in range(3):
        (params, state), losses = steps(params, state)
    model = eqx.combine(params, static)
    y0 = ring(kt, 8)
    truth = jax.vmap(spiral_exact, in_axes=(None, 0))(ts, y0)
    pred = eqx.filter_jit(batched)(model, ts, y0)
    rel = jnp.sqrt(jnp.sum((pred - truth) ** 2) / jnp.sum(truth**2))
    assert losses[-1] < 1e-3
    assert rel < 0.05, rel


def test_irregular_times_batch_as_one_system(x64):
    """At irregular output times, a batch of 8 spirals solved as one (8, 2) system (one
    step size for all, torchdiffeq's way) matches the exact solution to the tolerance. (The
    per-sample `vmap` path is checked against exact solutions in test_nde_losses.)"""
    later = jnp.sort(jax.random.uniform(jax.random.PRNGKey(1), (8,), jnp.float64, 0.0, 3.0))
    ts = jnp.concatenate([jnp.zeros(1), later])
    y0 = ring(jax.random.PRNGKey(2), 8)
    model = NeuralODE(
        LinearField(jnp.array(A_SPIRAL)), solver=diffrax.Dopri5(), rtol=1e-10, atol=1e-10
    )
    truth = jax.vmap(spiral_exact, in_axes=(None, 0))(ts, y0)
    as_one = model(ts, y0)  # (times, 8, 2)
    assert as_one.dtype == jnp.float64
    assert jnp.max(jnp.abs(jnp.swapaxes(as_one, 0, 1) - truth)) < 1e-8


def stiff_field(t, y, args):
    """y1' = -λ (y1 - cos t) - sin t (λ = 1e3; slow manifold y1 = cos t), y2' = -y2."""
    lam = 1e3
    return jnp.stack([-lam * (y[0] - jnp.cos(t)) - jnp.sin(t), -y[1]])


def test_stiff_problem_kvaerno5_float64(x64):
    """Kvaerno5 (L-stable, implicit) follows y1 = cos t + (y1(0) − 1) e^{−λt} to 1e-6 in a
    hundred steps, where an explicit solver is held to steps of ~3/λ by stability."""
    ts = jnp.array([0.0, 1e-3, 1e-2, 0.3, 1.1, 2.0])
    y0 = jnp.array([2.0, 1.0])
    exact = jnp.stack([jnp.cos(ts) + jnp.exp(-1e3 * ts), jnp.exp(-ts)], axis=-1)
    stiff = NeuralODE(stiff_field, solver=diffrax.Kvaerno5(), rtol=1e-8, atol=1e-8)
    sol = stiff.solve(ts, y0)
    assert sol.ys.dtype == jnp.float64
    assert jnp.max(jnp.abs(stiff(ts, y0) - exact)) < 1e-6
    # an explicit RK method is stable only for dt ≲ 3.3/λ: ≳ 600 steps on [0, 2]
    assert int(sol.stats["num_steps"]) < 200, sol.stats["num_steps"]


def fd_loss(params, static, ts, y0, target, adjoint=diffrax.RecursiveCheckpointAdjoint()):
    model = NeuralODE(
        eqx.combine(params, static),
        solver=diffrax.Dopri5(),
        rtol=1e-12,
        atol=1e-12,
        adjoint=adjoint,
    )
    return jnp.sum((model(ts, y0) - target) ** 2)


@pytest.mark.parametrize(
    "adjoint",
    [diffrax.RecursiveCheckpointAdjoint(), diffrax.BacksolveAdjoint()],
    ids=["recursive_checkpoint", "backsolve"],
)
def test_gradient_matches_central_differences(x64, adjoint):
    """<∇L, v> of L(θ) = Σ_t |y_θ(t) − target(t)|² equals (L(θ+hv) − L(θ−hv)) / 2h along
    random directions v, in float64 with tight solver tolerances."""
    kf, kv, kt = jax.random.split(jax.random.PRNGKey(3), 3)
    field = MLPField(2, 8, 1, dtype=jnp.float64, key=kf)
    ts = jnp.array([0.0, 0.2, 0.7, 1.0])
    y0 = jnp.array([0.5, -0.3])
    target = jax.random.normal(kt, (4, 2), jnp.float64)
    params, static = eqx.partition(field, eqx.is_array)
    grad = eqx.filter_jit(jax.grad(fd_loss))(params, static, ts, y0, target, adjoint)
    # the forward solve does not depend on the adjoint: one compiled value function
    value = eqx.filter_jit(fd_loss)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    h = 1e-5
    for i in range(3):
        keys = jax.random.split(jax.random.fold_in(kv, i), len(leaves))
        v = treedef.unflatten(
            [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
        )
        plus = jax.tree_util.tree_map(lambda p, d: p + h * d, params, v)
        minus = jax.tree_util.tree_map(lambda p, d: p - h * d, params, v)
        fd = (value(plus, static, ts, y0, target) - value(minus, static, ts, y0, target)) / (2 * h)
        ad = sum(
            jnp.vdot(g, d)
            for g, d in zip(
                jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(v), strict=True
            )
        )
        assert abs(ad - fd) <= 1e-6 * abs(fd), (ad, fd)


def test_max_steps_reached_is_a_clear_error():
    """A solve that runs out of steps raises a message naming max_steps, eagerly and under
    jit + vmap, instead of returning garbage."""
    model = NeuralODE(
        LinearField(jnp.array(A_SPIRAL)),
        solver=diffrax.Euler(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.1,
        max_steps=5,
    )
    ts = jnp.linspace(0.0, 5.0, 3)  # 50 steps needed
    with pytest.raises(RuntimeError, match="max_steps=5"):
        model(ts, jnp.ones(2))
    run = eqx.filter_jit(batched)
    with pytest.raises(RuntimeError, match="max_steps=5"):
        jax.block_until_ready(run(model, ts, jnp.ones((2, 2))))
    assert jnp.all(jnp.isfinite(run(model, ts / 10, jnp.ones((2, 2)))))  # 5 steps: fine


def test_bad_inputs_raise_clear_errors(x64):
    field = MLPField(2, 4, 1, key=jax.random.PRNGKey(0))
    model = NeuralODE(field)
    ts, y0 = jnp.linspace(0.0, 1.0, 3), jnp.ones(2, jnp.float32)
    with pytest.raises(ValueError, match="strictly increasing"):
        model(jnp.array([0.0, 0.5, 0.4]), y0)
    with pytest.raises(ValueError, match="strictly increasing"):
        model(jnp.array([0.0, jnp.nan]), y0)
    with pytest.raises(ValueError, match="1-D array of at least 2 times"):
        model(jnp.zeros((2, 2)), y0)
    with pytest.raises(ValueError, match="1-D array of at least 2 times"):
        model(jnp.zeros(1), y0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\), got \(3,\)"):
        model(ts, jnp.ones(3, jnp.float32))
    with pytest.raises(ValueError, match="y0 must be finite"):
        model(ts, jnp.array([1.0, jnp.inf], jnp.float32))
    with pytest.raises(ValueError, match="floating-point"):
        model(ts, jnp.ones(2, jnp.int32))
    with pytest.raises(ValueError, match="returns float32 for a float64 state"):
        NeuralODE(lambda t, y, a: jnp.zeros(2, jnp.float32))(ts, jnp.ones(2))
    with pytest.raises(ValueError, match=r"returns shape \(3,\) for a state of shape \(2,\)"):
        NeuralODE(lambda t, y, a: jnp.zeros(3))(ts, jnp.ones(2))
    with pytest.raises(ValueError, match="not both"):
        NeuralODE(field, rtol=1e-3, stepsize_controller=diffrax.PIDController(rtol=1, atol=1))
    with pytest.raises(ValueError, match="needs a step: pass dt0"):
        NeuralODE(field, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize())
    with pytest.raises(ValueError, match="no error estimate"):
        NeuralODE(field, solver=diffrax.Euler())
    with pytest.raises(ValueError, match="diffrax adjoint"):
        NeuralODE(field, adjoint="backsolve")
    with pytest.raises(ValueError, match="diffrax solver"):
        NeuralODE(field, solver="dopri5")
    with pytest.raises(ValueError, match="max_steps must be a positive"):
        NeuralODE(field, max_steps=0)
    with pytest.raises(ValueError, match="need state_size >= 1"):
        MLPField(0, 4, 1, key=jax.random.PRNGKey(0))
