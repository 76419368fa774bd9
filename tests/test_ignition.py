"""Laser-ignition problem, PNODE and its baselines: sampling ranges, ignition and failure in
the reference, PNODE composition and energy by construction, gradients through the stiff
solve, kernel ridge regression, and the problem's metrics."""

import importlib.resources

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

from surrogate._serialization import build, describe
from surrogate.applications.ignition import PNODE, KernelRidge, TrajectoryMLP
from surrogate.problems import get
from surrogate.problems.ignition import NAMES, Ignition, ignition_metrics
from surrogate.solvers._mechanism import load_mechanism, species_enthalpy

MECH = load_mechanism("h2o2")


def _stack(inputs):
    return np.stack([np.asarray(inputs[n], np.float64) for n in NAMES])


def test_samples_lie_in_their_ranges_and_extrapolation_leaves_exactly_one():
    problem = get("ignition")
    lo, hi = (a.astype(np.float32).astype(np.float64) for a in problem.ranges())  # x64 off
    x = _stack(problem.sample_inputs(jax.random.key(0), 300))
    assert x.shape == (7, 300)
    assert np.all(x >= lo[:, None]) and np.all(x <= hi[:, None])
    # uniform: every parameter fills its range
    assert np.all((x.max(1) - x.min(1)) > 0.9 * (hi - lo))
    f = 0.25
    extra = Ignition(extrapolation=f)
    x = _stack(extra.sample_inputs(jax.random.key(0), 300))
    outside = (x < lo[:, None]) | (x > hi[:, None])
    np.testing.assert_array_equal(outside.sum(0), 1)
    low, high = ((lo / hi) ** f * lo)[:, None], ((hi / lo) ** f * hi)[:, None]
    assert np.all(x >= low * (1 - 1e-6)) and np.all(x <= high * (1 + 1e-6))
    np.testing.assert_allclose(np.stack(extra.extended_ranges()), np.c_[low, high].T, rtol=1e-6)
    assert set(np.nonzero(outside)[0]) == set(range(7))  # every parameter gets its turn


def test_bad_options():
    with pytest.raises(ValueError, match="min < max"):
        Ignition(T0_min=600.0)
    with pytest.raises(ValueError, match="positive"):
        Ignition(T0_min=-1.0)
    with pytest.raises(ValueError, match="extrapolation"):
        Ignition(extrapolation=-0.5)
    with pytest.raises(ValueError, match="pulse width"):
        Ignition(pulse_width_max=6e-5)
    with pytest.raises(ValueError, match="shape"):
        ignition_metrics(np.linspace(0, 1, 8), np.zeros((2, 8)), np.zeros((3, 8)))


def test_some_cases_ignite_and_the_others_fail(x64):
    """In a batch of 8 drawn cases some ignite and some fail; ignition means water formed and
    a flame temperature, failure a kernel that cooled back with almost no water."""
    problem = Ignition(n_times=41, rtol=1e-5, atol=1e-8)
    inputs = problem.sample_inputs(jax.random.key(3), 8)
    out = jax.tree.map(np.asarray, jax.jit(jax.vmap(problem.solve))(inputs))
    ign = out["ignited"].astype(bool)
    assert 0 < ign.sum() < 8
    T0 = np.asarray(inputs["T0"])
    assert np.all(out["Y_H2O"][ign, -1] > 0.05) and np.all(out["T"][ign].max(1) > T0[ign] + 1300)
    assert np.all(out["Y_H2O"][~ign, -1] < 0.01) and np.all(out["T"][~ign].max(1) < T0[~ign] + 900)
    np.testing.assert_allclose(out["T"][:, 0], T0)
    # the metrics of the truth against itself
    m = problem.metrics(jnp.asarray(out["T"])[:, None], jnp.asarray(out["T"])[:, None])
    assert m["mae_T"] == 0 and m["ignition_accuracy"] == 1 and m["delay_mae"] == 0
    assert m["n_ignited"] == ign.sum()


def _random_pnode(key, **kw):
    """A PNODE whose network output is not the prior (the last layer is not zero)."""
    model = PNODE(times=np.linspace(0.0, 1.5e-3, 31), key=key, **kw)
    last = model.mlp.layers[-1]
    k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
    new = (
        0.3 * jax.random.normal(k1, last.weight.shape, last.weight.dtype),
        0.3 * jax.random.normal(k2, last.bias.shape, last.bias.dtype),
    )
    return eqx.tree_at(lambda m: (m.mlp.layers[-1].weight, m.mlp.layers[-1].bias), model, new)


CASES = np.array(
    [
        [1.4e6, 2.5e-4, 2e-5, 1.0, 400.0, 1e5, 500.0],  # ignites
        [0.5e6, 3e-4, 2e-5, 1.5, 350.0, 1.5e5, 1500.0],  # fails
    ]
)


@pytest.fixture(scope="module")
def pnode_and_grad():
    with jax.enable_x64(True):
        model = _random_pnode(
            jax.random.key(0), rtol=1e-10, atol=1e-12, newton_rtol=1e-6, newton_atol=1e-8
        )
        x = jnp.asarray(CASES)

        def loss(m):
            traj = jax.vmap(m.trajectory)(x)
            return jnp.mean((traj["T"] / 1000.0) ** 2), traj

        yield model, x, eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))


def test_pnode_composition_and_energy_hold_by_construction(x64, pnode_and_grad):
    """Mass fractions >= 0 summing to 1, c in [0, 1], and the mixture enthalpy follows
    dh/dt = q(t) + k (h0 - h) exactly (as for the reactor): closed form for a Gaussian q."""
    model, x, value_and_grad = pnode_and_grad
    (_, traj), _ = value_and_grad(model)
    traj = jax.tree.map(np.asarray, traj)
    assert np.all(traj["Y"] >= 0)
    np.testing.assert_allclose(traj["Y"].sum(-1), 1.0, atol=1e-13)
    assert np.all((traj["c"] >= -1e-9) & (traj["c"] <= 1 + 1e-9))
    assert traj["T"][0].max() > 1800 and traj["T"][1].max() < 1000  # one ignites, one not
    ts = np.asarray(model.times)
    for i in range(2):
        theta = {k: float(v) for k, v in model.physical_parameters(x[i]).items()}
        E, tp, s, k = (theta[n] for n in ("energy", "pulse_time", "pulse_width", "mixing_rate"))
        lag = k * s**2
        pulse = E * np.exp(-k * (ts - tp) + 0.5 * k * lag)
        pulse *= ndtr((ts - tp - lag) / s) - ndtr((-tp - lag) / s)
        h = traj["h"][i]
        expected = h[0] + pulse  # h_amb = h0: the surroundings are the unburnt gas at T0
        assert np.max(np.abs(h - expected)) < 1e-6 * E
        # and the heat of reaction moved into sensible enthalpy: T rose beyond the pulse
    W = np.asarray(MECH.molecular_weights)
    h0 = np.sum(traj["Y"][0, 0] * np.asarray(species_enthalpy(MECH, x[0, 4])) / W)
    assert h0 == pytest.approx(traj["h"][0, 0], rel=1e-12)


def test_pnode_gradient_matches_finite_differences(x64, pnode_and_grad):
    """d loss / d (biases of the network's last layer), reverse mode through Kvaerno5 on two
    cases, one igniting, vs central differences (float64, tight step tolerances; the
    differences of an adaptive solve are noisy below steps of ~1e-5)."""
    model, _, value_and_grad = pnode_and_grad
    (_, _), grads = value_and_grad(model)
    where = lambda m: m.mlp.layers[-1].bias  # noqa: E731
    g = np.asarray(where(grads))
    for i in (2, 5, 6):  # pulse energy, mixing rate and completeness outputs
        eps = 1e-4
        vals = []
        for sign in (1, -1):
            b = where(model).at[i].add(sign * eps)
            (v, _), _ = value_and_grad(eqx.tree_at(where, model, b))
            vals.append(float(v))
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(g[i]) > 1e-2  # the loss does depend on it
        assert g[i] == pytest.approx(fd, rel=2e-4)


def test_pnode_bad_input(x64):
    model = PNODE(times=np.linspace(0, 1e-3, 5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="7 parameters"):
        model(jnp.ones(6))
    with pytest.raises(ValueError, match="in_channels=7"):
        PNODE(5, 1, times=np.linspace(0, 1e-3, 5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="start at 0"):
        PNODE(times=np.linspace(1e-4, 1e-3, 5), key=jax.random.key(0))
    with jax.enable_x64(False), pytest.raises(ValueError, match="float64"):
        model(jnp.ones(7))


def test_kernel_ridge_interpolates_as_ridge_vanishes(x64):
    """With lambda -> 0 the fit reproduces its training targets (a positive-definite Gram
    matrix of distinct points); with lambda > 0 it shrinks towards the mean."""
    rng = np.random.default_rng(0)
    x = np.exp(rng.uniform(0, 1, (6, 3)))
    times = np.linspace(0, 1, 8)
    y = rng.normal(size=(6, 8))
    exact = KernelRidge.fit(x, y, times, length_z=0.7, length_t=0.1, ridge=1e-12)
    np.testing.assert_allclose(exact.predict(x), y, atol=1e-7)
    np.testing.assert_allclose(exact(x[2]), y[2][None], atol=1e-7)
    smooth = KernelRidge.fit(x, y, times, length_z=0.7, length_t=0.1, ridge=10.0)
    assert np.std(smooth.predict(x)) < 0.5 * np.std(y)


def test_kernel_ridge_recovers_a_smooth_function(x64):
    """f(x, t) = sin(2 log x1) cos(3 t) + log x2 t^2 from 60 cases, at 40 new ones."""
    rng = np.random.default_rng(1)
    times = np.linspace(0, 1, 21)

    def f(x):
        lx = np.log(x)
        return np.sin(2 * lx[:, :1]) * np.cos(3 * times) + lx[:, 1:2] * times**2

    x, xt = np.exp(rng.uniform(0, 1, (60, 2))), np.exp(rng.uniform(0.1, 0.9, (40, 2)))
    model = KernelRidge.fit(x, f(x), times, length_z=1.0, length_t=0.3, ridge=1e-6)
    err = np.max(np.abs(np.asarray(model.predict(xt)) - f(xt)))
    assert err < 0.02 * np.max(np.abs(f(xt)))


def test_trajectory_mlp_shape_and_config():
    net = TrajectoryMLP(7, 1, times=np.linspace(0, 1e-3, 11), width=8, depth=2,
                        key=jax.random.key(0))  # fmt: skip
    assert net(jnp.ones(7)).shape == (1, 11)
    # the MLP at time t_i is the same network applied to (x, t_i / t_end)
    direct = net.mlp(jnp.concatenate([jnp.ones(7), jnp.array([0.3])]))
    np.testing.assert_allclose(net(jnp.ones(7))[0, 3], direct[0], rtol=1e-6)
    assert build(describe(net))(jnp.ones(7)).shape == (1, 11)


def test_metrics_on_a_constructed_case(x64):
    """Logistic ignition curves with known delays; a 5 K offset, a shift by 3 grid steps and
    a failed prediction give known MAE, delay error and accuracy."""
    ts = np.linspace(0, 2e-3, 201)
    dt = ts[1] - ts[0]
    tau = np.array([5e-4, 8e-4, 1.2e-3, 0.0])
    ramp = 1.0 / (1.0 + np.exp(-(ts[None] - tau[:, None]) / 2e-5))
    true = 400.0 + 1500.0 * ramp
    true[3] = 400.0 + 300.0 * np.exp(-(((ts - 3e-4) / 5e-5) ** 2))  # a pulse that fails
    pred = true + 5.0
    m = ignition_metrics(ts, pred, true)
    assert m["mae_T"] == pytest.approx(5.0, rel=1e-12)
    assert m["ignition_accuracy"] == 1.0 and m["delay_mae"] < 1e-12 and m["n_ignited"] == 3
    shifted = true.copy()
    shifted[0] = 400.0 + 1500.0 / (1.0 + np.exp(-(ts - tau[0] - 3 * dt) / 2e-5))
    m = ignition_metrics(ts, shifted, true)
    assert m["delay_mae"] == pytest.approx(3 * dt / 3, rel=1e-6)  # one of three ignitions
    assert m["mae_T"] == pytest.approx(np.mean(np.abs(shifted - true)), rel=1e-12)
    failed = true.copy()
    failed[1] = 400.0
    m = ignition_metrics(ts, failed[:, None], true[:, None])
    assert m["ignition_accuracy"] == 0.75


def test_names_are_the_pnode_order():
    from surrogate.applications.ignition import DEFAULT_RANGES, PARAMETER_NAMES

    assert NAMES == PARAMETER_NAMES
    lo, hi = Ignition().ranges()
    np.testing.assert_array_equal(np.array(DEFAULT_RANGES), np.stack([lo, hi], 1))


def test_pnode_save_load_round_trip(x64, tmp_path):
    """The .eqx file rebuilds the model from its recorded arguments and every leaf (float64)."""
    import surrogate

    model = _random_pnode(jax.random.key(2), mechanism="h2o2", width=8)
    path = surrogate.save(tmp_path / "pnode.eqx", model)
    back = surrogate.load(path)
    assert describe(back) == describe(model)
    leaves = [jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (back, model)]
    for a, b in zip(*leaves, strict=True):
        assert a.dtype == jnp.float64
        np.testing.assert_array_equal(a, b)
    # a float64 model refuses to load with float64 off, naming the fix
    from surrogate._serialization import needs_x64

    assert needs_x64(path)
    with jax.enable_x64(False), pytest.raises(ValueError, match="float64 model"):
        surrogate.load(path)


def test_mechanism_by_path_is_parsed_once_and_a_missing_file_is_named(tmp_path):
    import shutil

    from surrogate.solvers._mechanism import load_mechanism

    path = tmp_path / "mine.yaml"
    packaged = importlib.resources.files("surrogate.solvers") / "mechanisms" / "h2o2.yaml"
    shutil.copy(str(packaged), path)
    first = load_mechanism(path)
    assert load_mechanism(str(path)) is first  # cached: models may ask at every call
    assert first.species == MECH.species
    with pytest.raises(FileNotFoundError, match="no such mechanism file"):
        load_mechanism(tmp_path / "absent.yaml")
