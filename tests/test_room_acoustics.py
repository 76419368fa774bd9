"""Room-acoustics problem and its DeepONet surrogate: dataset round trip with units, the
wall margin of sampled sources, the problem's solve against a direct solver run, the
surrogate's two evaluation paths, and bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.data import generate, read_dataset, write_dataset
from surrogate.problems import get
from surrogate.problems.room_acoustics import RoomAcoustics, SourceDeepONet, train_surrogate
from surrogate.solvers import acoustics as ac

# a tiny room: 4 kHz pulses would be expensive, so a low f_max and a coarse grid
TINY = dict(size_x=1.2, size_y=1.0, f_max=600.0, points_per_wavelength=5.0, duration=0.004,
            n_times=5, margin=0.35, absorption=0.3)  # fmt: skip


def test_dataset_round_trips_through_netcdf_with_units(tmp_path):
    problem = get("room_acoustics", **{k: str(v) for k, v in TINY.items()}, stride="2")
    ds = generate(problem, 3, seed=7)
    path = write_dataset(ds, tmp_path / "room.nc")
    back = read_dataset(path)
    data = problem.from_dataset(back)
    assert np.array_equal(data["p"], ds["p"].values)
    assert np.array_equal(data["x0"], ds["x0"].values)
    assert back["p"].attrs["units"] == "Pa" and back["x0"].attrs["units"] == "m"
    assert back["time"].attrs["units"] == "s" and back["x"].attrs["units"] == "m"
    assert back.attrs["Conventions"] == "CF-1.10" and back.attrs["problem"] == "room_acoustics"
    assert back.attrs["option_absorption"] == pytest.approx(0.3)
    # stored coordinates are exactly the cell centres kept by the stride
    h = problem.spacing
    assert np.allclose(back["x"].values, (np.arange(0, problem.room.shape[0], 2) + 0.5) * h)
    assert np.allclose(back["time"].values, np.linspace(0.0, 0.004, 5))
    assert data["p"].shape == (3, 5, len(back["x"]), len(back["y"]))


@given(st.integers(0, 2**31 - 1), st.sampled_from([2, 3]))
def test_sampled_sources_keep_the_wall_margin(seed, ndim):
    problem = RoomAcoustics(ndim=ndim, size_x=1.0, size_y=1.4, size_z=1.2, margin=0.3)
    x0 = np.asarray(problem.sample_inputs(jax.random.key(seed), 64)["x0"])
    # check_position raises if any source is closer than the margin to a wall
    ac.check_position(problem.room, x0, margin=0.3 - 1e-6)
    extent = np.asarray(problem.extent)
    # and the sources fill the allowed box, not a corner of it
    assert np.all(x0.min(0) < 0.3 + 0.35 * (extent - 0.6))
    assert np.all(x0.max(0) > extent - 0.3 - 0.35 * (extent - 0.6))


@pytest.mark.parametrize("ndim", [2, 3])
def test_solve_equals_a_direct_solver_run(ndim):
    problem = RoomAcoustics(ndim=ndim, **TINY, size_z=0.9, stride=1 if ndim == 2 else 2)
    x0 = jnp.asarray([0.45, 0.5, 0.4][:ndim], jnp.float32)
    got = jax.jit(problem.solve)({"x0": x0})["p"]
    # the same physics set up by hand, from the solver's public API only
    h = 343.0 / (600.0 * 5.0)
    mask = ac.rectangle_mask((1.2, 1.0), h) if ndim == 2 else ac.shoebox_mask((1.2, 1.0, 0.9), h)
    room = ac.Room(mask, h, absorption=0.3)
    p0 = ac.gaussian_pulse(room.grid_coords(), x0, 1.0, 2 * 343.0 / (np.pi * 600.0))
    fields, _ = ac.WaveSolver(room).simulate(p0, save_times=np.linspace(0, 0.004, 5))
    want = fields if ndim == 2 else fields[:, ::2, ::2, ::2]
    assert got.shape == want.shape
    assert float(jnp.max(jnp.abs(got - want))) < 1e-6
    assert (
        float(jnp.max(jnp.abs(got[0] - p0[(slice(None, None, 1 if ndim == 2 else 2),) * ndim])))
        < 1e-6
    )


def test_metrics_are_in_pascal():
    problem = RoomAcoustics(**TINY)
    true = jnp.zeros((2, 5, 4, 4), jnp.float32)
    pred = true.at[0, 1, 2, 3].set(0.8)
    m = problem.metrics(pred, true.at[1].set(1.0))
    # 0.8 Pa at one of 160 points, and 1 Pa everywhere on the second sample
    assert m["rmse"] == pytest.approx(np.sqrt((0.64 + 80.0) / 160.0), rel=1e-6)
    assert m["max_error"] == pytest.approx(1.0)


def test_trained_surrogate_grid_and_pointwise_agree_and_training_reduces_the_loss():
    problem = RoomAcoustics(**TINY)
    data = problem.from_dataset(generate(problem, 4, seed=1))
    opts = dict(p=16, trunk_width=32, branch_width=32, fourier_features=16, fourier_scale=1.0)
    model, history = train_surrogate(
        problem, data["x0"], data["p"], key=jax.random.key(0), epochs=6, batch_points=256,
        learning_rate=3e-3, **opts,
    )  # fmt: skip
    assert history["train_loss"][-1] < history["train_loss"][0]
    points = problem.space_time_points()
    x0 = jnp.asarray([0.6, 0.5], jnp.float32)
    grid = model(x0, points)
    assert jnp.allclose(grid, model.pointwise(x0, points), atol=1e-5)
    # one source per point, given as such, also agrees
    per_point = jnp.broadcast_to(x0, (points.shape[0], 2))
    assert jnp.allclose(grid, model.pointwise(per_point, points), atol=1e-5)
    # the grid order is that of the dataset: (x, y, t) rows against to_points(p)
    p = jnp.asarray(data["p"][0])
    flat = problem.to_points(p)
    k = points.shape[0] // 3 + 7  # an arbitrary point of the space-time grid
    i, j, t = np.unravel_index(k, (*p.shape[1:], p.shape[0]))
    assert float(flat[k]) == float(p[t, i, j])
    c = problem.coords()
    assert np.allclose(
        np.asarray(points[k]), [c["x"].values[i], c["y"].values[j], c["time"].values[t]]
    )


def test_bad_options_are_refused():
    cases = [
        (dict(size_x=0.9, margin=0.5), "room too small for the margin: side x"),
        (dict(f_max=0.0), "f_max must be a positive"),
        (dict(f_max=-100.0), "f_max must be a positive"),
        (dict(ndim=4), "ndim must be 2 or 3"),
        (dict(points_per_wavelength=1.0), "points_per_wavelength must be >= 2"),
        (dict(absorption=1.5), r"absorption must lie in \[0, 1\]"),
        (dict(n_times=1), "n_times >= 2"),
    ]
    for options, match in cases:
        with pytest.raises(ValueError, match=match):
            RoomAcoustics(**options)
    with pytest.raises(ValueError, match="expects float"):
        get("room_acoustics", f_max="loud")
    problem = RoomAcoustics(**TINY)
    with pytest.raises(ValueError, match=r"x0 must have shape \(2,\)"):
        problem.solve({"x0": jnp.zeros(3)})
    model = SourceDeepONet(*problem.bounds(), p=4, trunk_width=8, branch_width=8,
                           key=jax.random.key(0))  # fmt: skip
    with pytest.raises(ValueError, match=r"points of shape \(n, 3\)"):
        model(jnp.zeros(2), jnp.zeros((5, 2)))
