"""Room-acoustics problem and its DeepONet surrogate: dataset round trip with units, the
wall margin of sampled sources, the problem's solve against a direct solver run, the
surrogate's two evaluation paths, and bad options."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate import load, save
from surrogate._serialization import describe
from surrogate.applications.room_acoustics import (
    SourceDeepONet,
    image_orbits,
    image_sources,
    train_surrogate,
)
from surrogate.data import read_dataset, write_dataset
from surrogate.problems import generate, get
from surrogate.problems.room_acoustics import RoomAcoustics
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
    assert back["time"].attrs["units"] == "seconds since 2000-01-01"
    assert back["x"].attrs["units"] == "m"
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
        (dict(f_max=0.0), r"f_max must be a number in \(0, 1e\+06\] \(Hz\), got 0.0"),
        (dict(f_max=-100.0), r"f_max must be a number in \(0, "),
        (dict(ndim=4), "ndim must be 2 or 3"),
        (dict(points_per_wavelength=1.0), r"points_per_wavelength must be a number in \[2, 100\]"),
        (dict(absorption=1.5), r"absorption must be a number in \[0, 1\]"),
        (dict(n_times=1), r"n_times must be an integer in \[2, 100000\]"),
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


# ---- the source-relative ("images") trunk features of SourceDeepONet ------------------
BOX = ((0.0, 0.0, 0.0), (2.0, 1.6, 0.02))  # 2 m × 1.6 m, 20 ms
SMALL = dict(p=8, branch_width=16, trunk_width=16, fourier_features=8)


def images_model(lower=BOX[0], upper=BOX[1], key=0, **options):
    options = {**SMALL, **options}
    return SourceDeepONet(lower, upper, source_features="images", sound_speed=343.0,
                          pulse_width=0.2, key=jax.random.key(key), **options)  # fmt: skip


def test_image_sources_and_features_equal_hand_computed_values(x64):
    x0 = jnp.asarray([0.5, 0.3])
    got = np.asarray(image_sources(x0, BOX[0][:2], BOX[1][:2]))
    want = [[0.5, 0.3], [-0.5, 0.3], [3.5, 0.3], [0.5, -0.3], [0.5, 2.9]]
    assert np.allclose(got, want, atol=1e-12)
    # second order adds the images of the images: x0 ∓ 2L and the four corner images
    second = np.asarray(image_sources(x0, BOX[0][:2], BOX[1][:2], order=2))
    extra = {(-3.5, 0.3), (4.5, 0.3), (0.5, -2.9), (0.5, 3.5),
             (-0.5, -0.3), (-0.5, 2.9), (3.5, -0.3), (3.5, 2.9)}  # fmt: skip
    assert {tuple(np.round(row, 9)) for row in second[5:]} == extra and second.shape == (13, 2)
    # features at x = (1.8, 1.2), t = 2 ms: squared distances 2.5 (direct), 6.1 & 3.7
    # (x walls), 3.94 & 4.58 (y walls), each pair nearer first; D² = 2² + 1.6²
    model = images_model()
    t = 0.002
    f = np.asarray(model.source_relative(x0, jnp.asarray([1.8, 1.2, t])))
    r = np.sqrt([2.5, 3.7, 6.1, 3.94, 4.58])
    rho = (r - 343.0 * t) / 0.2
    want = np.concatenate([r / np.sqrt(6.56), np.tanh(rho / 3), np.exp(-(rho**2)), [0.65, 0.5625]])
    assert f.shape == (3 * 5 + 2,)
    assert np.allclose(f, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("d", [2, 3])
def test_image_orbits_are_closed_under_the_mirrors_of_the_box(d):
    for order in (1, 2, 3):
        orbits = image_orbits(d, order)
        flat = [m for o in orbits for m in o]
        # all images with at most `order` reflections, once each: 1, 2d+1, ... (d=3:
        # the octahedral numbers 1, 7, 25, 63)
        count = sum(1 for m in itertools.product(range(-order, order + 1), repeat=d)
                    if sum(map(abs, m)) <= order)  # fmt: skip
        assert len(flat) == len(set(flat)) == count
        for orbit in orbits:
            for a in range(d):
                flipped = {tuple(-v if i == a else v for i, v in enumerate(m)) for m in orbit}
                assert flipped == set(orbit)


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_source_on_a_symmetry_plane_gives_a_mirror_symmetric_field_untrained(ndim):
    lower = (0.0,) * ndim + (0.0,)
    upper = (2.0, 1.6, 1.3)[:ndim] + (0.02,)
    pts = jax.random.uniform(jax.random.key(3), (64, ndim + 1)) * jnp.asarray(upper)[None]
    for axis in range(ndim):
        x0 = jnp.asarray([0.7, 0.5, 0.4][:ndim]).at[axis].set(upper[axis] / 2)
        mirrored = pts.at[:, axis].set(upper[axis] - pts[:, axis])
        # order 2: orbits of 1, 2 and 4 images
        model = images_model(lower, upper, key=axis, image_order=2)
        a, b = model(x0, pts), model(x0, mirrored)
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(a)))
        # the plain DeepONet sees absolute positions and is not symmetric untrained
        plain = SourceDeepONet(lower, upper, key=jax.random.key(axis), **SMALL)
        a, b = plain(x0, pts), plain(x0, mirrored)
        assert float(jnp.max(jnp.abs(a - b))) > 1e-3 * float(jnp.max(jnp.abs(a)))


def test_images_model_trains_agrees_pointwise_and_round_trips_through_a_file(tmp_path):
    problem = RoomAcoustics(**TINY)
    data = problem.from_dataset(generate(problem, 4, seed=1))
    model, history = train_surrogate(
        problem, data["x0"], data["p"], key=jax.random.key(0), epochs=4, batch_points=128,
        learning_rate=3e-3, source_features="images", image_order=2, **SMALL,
    )  # fmt: skip
    assert history["train_loss"][-1] < 0.8 * history["train_loss"][0]
    assert model.sound_speed == problem.c and model.pulse_width == pytest.approx(problem.sigma)
    points = problem.space_time_points()
    x0 = jnp.asarray([0.6, 0.5], jnp.float32)
    grid = model(x0, points)
    assert jnp.allclose(grid, model.pointwise(x0, points), atol=1e-5)
    # one source per point: each row as if evaluated for its own source
    sources = jnp.stack([x0, jnp.asarray([0.4, 0.6])])[jnp.arange(points.shape[0]) % 2]
    mixed = model.pointwise(sources, points)
    assert jnp.allclose(mixed[::2], grid[::2], atol=1e-5)
    assert jnp.allclose(mixed[1::2], model(sources[1], points[1::2]), atol=1e-5)
    path = save(tmp_path / "room.eqx", model)
    back = load(path)
    assert back.source_features == "images" and back.image_order == 2
    assert back.pulse_width == model.pulse_width and back.sound_speed == model.sound_speed
    assert jnp.array_equal(back(x0, points), grid)
    # a default model's file holds none of the new settings (files written before load)
    plain = SourceDeepONet(*problem.bounds(), key=jax.random.key(0), **SMALL)
    assert describe(plain)["config"]["source_features"] == "none"
    assert jnp.array_equal(load(save(tmp_path / "plain.eqx", plain))(x0, points), plain(x0, points))


def test_bad_source_feature_options_are_refused():
    with pytest.raises(ValueError, match="unknown source_features 'mirror'"):
        SourceDeepONet(*BOX, source_features="mirror", key=jax.random.key(0), **SMALL)
    with pytest.raises(ValueError, match="needs sound_speed > 0"):
        SourceDeepONet(*BOX, source_features="images", key=jax.random.key(0), **SMALL)
    for order in (0, 5, 1.5):
        with pytest.raises(ValueError, match="image_order must be an integer from 1 to 4"):
            images_model(image_order=order)
    model = images_model()
    with pytest.raises(ValueError, match=r"points of shape \(n, 3\)"):
        model(jnp.zeros(2), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"one source per point needs x0 of shape \(5, 2\)"):
        model.pointwise(jnp.zeros((4, 2)), jnp.zeros((5, 3)))
