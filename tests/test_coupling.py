import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.coupling import (
    AbstractParameterization,
    Parameterization,
    ZeroParameterization,
    check_tendencies,
    ensemble_rollout,
    rollout,
)
from surrogate.solvers.lorenz96 import Lorenz96OneLevel


def euler_step(x, parameterization):
    """A host whose only physics is the parameterization: x ← x + dt·U(x), dt = 0.25."""
    return x + 0.25 * parameterization(x, None)


def doubling(x, parameterization):
    return 2 * x


def constant(x, params):
    return jnp.full_like(x, 3.0)


class Damping(AbstractParameterization):
    """U = −rate·X: a one-parameter closure, to differentiate through a rollout."""

    rate: jax.Array

    def __call__(self, state, params=None):
        return -self.rate * state


def test_first_unstable_step_of_a_linear_ramp_and_the_freeze():
    # x_n = 0.75 n leaves x <= 10 first at n = floor(10 / 0.75) + 1 = 14
    first = math.floor(10 / 0.75) + 1
    result = rollout(euler_step, constant, jnp.zeros(2), 40, save_every=2, bounds=(None, 10.0))
    assert int(result.first_unstable_step) == first == 14
    assert not bool(result.stable)
    steps = 2 * np.arange(21)
    expected = 0.75 * np.minimum(steps, first - 1)  # frozen at the last good state x_13
    np.testing.assert_allclose(result.states[:, 0], expected, rtol=1e-6)
    assert result.states.shape == (21, 2)


def test_first_non_finite_step_is_reported():
    # float32 overflows at 2^128: x_n = 2^n x_0 is finite up to n = 127 for x_0 = 1
    result = rollout(doubling, None, jnp.ones(3, jnp.float32), 200, save_every=8)
    assert int(result.first_unstable_step) == 128
    assert bool(jnp.all(jnp.isfinite(result.states)))
    np.testing.assert_array_equal(result.states[-1], np.full(3, 2.0**127, np.float32))
    np.testing.assert_array_equal(result.states[15], np.full(3, 2.0**120, np.float32))


def test_blow_up_of_dxdt_equals_x_squared_against_bounds_given_either_way():
    # the exact flow of dx/dt = x² over dt is x ← x / (1 − x dt); from x_0 = 1 with dt = 0.1,
    # x_n = 1 / (1 − 0.1 n) (blow-up at t = 1), first above 4 at n = 8 (x_7 = 3.33, x_8 = 5)
    def exact_flow(x, parameterization):
        return x / (1 - 0.1 * x)

    x0 = jnp.ones(1)
    by_pair = rollout(exact_flow, None, x0, 12, bounds=(-4.0, 4.0))
    by_callable = rollout(exact_flow, None, x0, 12, bounds=lambda s: jnp.all(jnp.abs(s) <= 4))
    for result in (by_pair, by_callable):
        assert int(result.first_unstable_step) == 8
        np.testing.assert_allclose(result.states[:8, 0], 1 / (1 - 0.1 * np.arange(8)), rtol=1e-5)
        np.testing.assert_allclose(result.states[8:, 0], 1 / 0.3, rtol=1e-5)


def test_per_leaf_bounds_on_a_pytree_state():
    # only leaf "b" grows (by 0.75 a step) and only it is bounded above by 5: n = 7
    def step(state, parameterization):
        return {"a": state["a"] * 0.5, "b": euler_step(state["b"], parameterization)}

    state0 = {"a": jnp.full(3, 100.0), "b": jnp.zeros(2)}
    bounds = ({"a": None, "b": -1.0}, {"a": None, "b": 5.0})
    result = rollout(step, constant, state0, 10, bounds=bounds)
    assert int(result.first_unstable_step) == 7
    np.testing.assert_allclose(result.states["a"][-1], 100.0 * 0.5**6)


def _naive_rk4(x, forcing, dt, n):
    def f(x):
        return -np.roll(x, 1) * (np.roll(x, 2) - np.roll(x, -1)) - x + forcing

    out = [x]
    for _ in range(n):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(x)
    return np.stack(out)


def test_zero_parameterization_rollout_is_the_plain_solver_and_stable(x64):
    model = Lorenz96OneLevel(8, forcing=8.0)
    x0 = 8.0 + jnp.sin(jnp.arange(8, dtype=jnp.float64))
    result = rollout(model.step, ZeroParameterization(), x0, 200, save_every=10, bounds=(-50, 50))
    assert int(result.first_unstable_step) == -1 and bool(result.stable)
    np.testing.assert_allclose(result.states, _naive_rk4(np.asarray(x0), 8.0, 0.005, 200)[::10],
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    np.testing.assert_array_equal(result.states, model.trajectory(x0, 200, save_every=10))


def test_ensemble_equals_member_by_member_runs(x64):
    model = Lorenz96OneLevel(8, forcing=20.0)
    # with U = +X, dX/dt = adv(X) + F: a uniform X has adv = 0 and grows as 30 + F t, so member
    # 1 first exceeds 40.05 at t = 0.505, step 101; the two small chaotic members stay inside
    closure = Damping(jnp.asarray(-1.0, jnp.float64))
    x0 = jnp.stack(
        [0.1 * jnp.sin(jnp.arange(8.0)), jnp.full(8, 30.0), 0.1 * jnp.cos(jnp.arange(8.0))]
    )
    bounds = (-40.05, 40.05)
    ensemble = ensemble_rollout(model.step, closure, x0, 120, bounds=bounds)
    np.testing.assert_array_equal(ensemble.first_unstable_step, [-1, 101, -1])
    np.testing.assert_array_equal(ensemble.stable, [True, False, True])
    np.testing.assert_allclose(ensemble.states[1, 100:], 30 + 20 * 0.5, rtol=1e-12)
    for i in range(3):
        member = rollout(model.step, closure, x0[i], 120, bounds=bounds)
        assert int(ensemble.first_unstable_step[i]) == int(member.first_unstable_step)
        np.testing.assert_allclose(ensemble.states[i], member.states, rtol=1e-12, atol=1e-12)

    # the documented alternative, jax.vmap over rollout, is the same
    x0 = jnp.asarray([[1.0], [2.0], [0.5], [0.125]], jnp.float32)
    vmapped = jax.vmap(lambda s: rollout(doubling, None, s, 140))(x0)
    x0 = jnp.asarray([[1.0], [2.0], [0.5], [0.125]], jnp.float32)
    doubled = ensemble_rollout(doubling, None, x0, 140)
    np.testing.assert_array_equal(doubled.first_unstable_step, [128, 127, 129, 131])
    np.testing.assert_array_equal(doubled.stable, [False] * 4)
    np.testing.assert_array_equal(vmapped.first_unstable_step, doubled.first_unstable_step)
    np.testing.assert_array_equal(vmapped.states, doubled.states)


def test_traced_bad_initial_state_is_reported_as_step_zero():
    x0 = jnp.asarray([[1.0], [jnp.nan], [50.0]])
    result = jax.vmap(lambda s: rollout(doubling, None, s, 4, bounds=(-10.0, 10.0)))(x0)
    np.testing.assert_array_equal(result.first_unstable_step, [4, 0, 0])


def test_gradient_through_rollout_matches_the_analytic_one(x64):
    # x ← x + 0.25·(−r x) gives x_n = (1 − r/4)^n x_0, so d/dr Σx_n² = −(n/2)(1 − r/4)^(2n−1) Σx_0²
    # while the state stays inside the bounds; a frozen state keeps the last good one's gradient
    x0 = jnp.asarray([1.0, -2.0], jnp.float64)

    def loss(rate, n):
        final = rollout(euler_step, Damping(rate), x0, 40, bounds=(-10.0, 10.0)).states[n]
        return jnp.sum(final**2)

    rate = jnp.asarray(0.3, jnp.float64)
    for n in (1, 17, 40):
        expected = -(n / 2) * (1 - 0.3 / 4) ** (2 * n - 1) * 5.0
        np.testing.assert_allclose(jax.grad(loss)(rate, n), expected, rtol=1e-12)
    # anti-damping r = −1 grows as 1.25^n: |x_n| = 2·1.25^n passes 10 at n = 8, then frozen
    expected = -(7 / 2) * 1.25**13 * 5.0
    for n in (7, 20):
        np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(-1.0, jnp.float64), n), expected)


def test_parameterization_contract():
    assert isinstance(constant, Parameterization) and isinstance(Damping(1.0), Parameterization)
    zero = ZeroParameterization()({"u": jnp.ones(3), "v": jnp.ones((2, 2), jnp.float16)}, None)
    assert zero["v"].dtype == jnp.float16 and float(jnp.abs(zero["u"]).sum()) == 0.0
    check_tendencies(constant, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"tendencies shaped like the state: expected .*\[4\]"):
        check_tendencies(lambda s, p: s[:2], jnp.zeros(4))
    with pytest.raises(ValueError, match=r"got .*float16\[4\]"):
        check_tendencies(lambda s, p: s.astype(jnp.float16), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"must be callable as \(state, params\)"):
        check_tendencies(3.0, jnp.zeros(4))


def test_bad_rollout_input_is_rejected_with_clear_errors():
    x0 = jnp.zeros(2)
    with pytest.raises(ValueError, match=r"must return a state like its input: expected"):
        rollout(lambda s, p: s[:1], None, x0, 5)
    with pytest.raises(ValueError, match=r"n_steps must be a positive int, got 0"):
        rollout(euler_step, constant, x0, 0)
    with pytest.raises(ValueError, match=r"save_every must be a positive int dividing n_steps=10"):
        rollout(euler_step, constant, x0, 10, save_every=4)
    with pytest.raises(ValueError, match=r"bounds must be None, a callable .* got str"):
        rollout(euler_step, constant, x0, 10, bounds="positive")
    with pytest.raises(ValueError, match=r"bounds callable must return one boolean"):
        rollout(euler_step, constant, x0, 10, bounds=lambda s: s > 0)
    with pytest.raises(ValueError, match=r"bounds \(lo, hi\) must each be None, a scalar"):
        rollout(euler_step, constant, x0, 10, bounds=(jnp.zeros(3), None))
    with pytest.raises(ValueError, match=r"initial state has NaN or inf values"):
        rollout(euler_step, constant, x0.at[1].set(jnp.inf), 10)
    with pytest.raises(ValueError, match=r"initial state is outside the bounds"):
        rollout(euler_step, constant, x0 + 20, 10, bounds=(None, 10.0))
    with pytest.raises(ValueError, match=r"leading member axis of one size"):
        ensemble_rollout(euler_step, constant, {"a": jnp.zeros((3, 2)), "b": jnp.zeros(2)}, 5)
    with pytest.raises(ValueError, match=r"initial state of member 2 has NaN"):
        ensemble_rollout(euler_step, constant, jnp.zeros((4, 2)).at[2, 0].set(jnp.nan), 5)
    with pytest.raises(ValueError, match=r"tendencies shaped like the state"):
        rollout(Lorenz96OneLevel(8).step, lambda s, p: s[:4], jnp.zeros(8), 5)
