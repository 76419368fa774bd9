"""Room-acoustics solver: free-field convergence against the spherical-wave solution,
energy conservation and wall absorption, the PML, symmetry, receivers and bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surrogate.solvers import acoustics as ac

C, RHO, SIGMA = 343.0, 1.2, 0.2


def spherical_pulse(r, t, amplitude=1.0, sigma=SIGMA, c=C):
    """Exact 3-D solution from the Gaussian at rest: r·p = [f(r − ct) + f(r + ct)]/2."""
    a, b = r - c * t, r + c * t
    return amplitude * (a * jnp.exp(-(a**2) / sigma**2) + b * jnp.exp(-(b**2) / sigma**2)) / (2 * r)


def energies(solver, p0, n_steps):
    """The conserved discrete energy E^n, n = 1..n_steps."""

    def body(carry, _):
        new = solver.step(carry[1])
        return (carry[1].v, new), solver.energy(new.p, carry[1].v, new.v)

    state = solver.initial_state(p0)
    return jax.lax.scan(body, (state.v, state), None, length=n_steps)[1]


def free_field_error(points_per_sigma, order, courant, full):
    """Relative L2 error at ct = 2σ of a 3-D pulse; `full` = False simulates one octant with
    the pulse centred on the corner (rigid walls are then exact symmetry planes)."""
    h, length, t = SIGMA / points_per_sigma, 6 * SIGMA, 2 * SIGMA / C  # walls 4σ past the front
    n = round(length / h)
    room = ac.Room(jnp.ones(((2 if full else 1) * n,) * 3, bool), h)
    x0 = jnp.full((3,), n * h if full else 0.0)
    solver = ac.WaveSolver(room, courant=courant, order=order, dtype=jnp.float64)
    xyz = room.grid_coords(jnp.float64)
    fields, _ = solver.simulate(ac.gaussian_pulse(xyz, x0, 1.0, SIGMA), save_times=[t])
    exact = spherical_pulse(jnp.linalg.norm(xyz - x0[None, None, None], axis=-1), t)
    return float(jnp.linalg.norm(fields[0] - exact) / jnp.linalg.norm(exact))


@pytest.mark.parametrize(
    "order, ppw, full, slope_range",
    [(2, [4, 5, 6, 8], False, (1.85, 2.2)), (4, [4, 5, 6], True, (3.6, 4.4))],
    ids=["second-order", "fourth-order-space"],
)
def test_free_field_converges_at_the_scheme_order(x64, order, ppw, full, slope_range):
    # fourth order in space only: there Courant ∝ h makes the time error Δt² ∝ h⁴
    ppw = np.array(ppw, dtype=float)
    errors = [free_field_error(k, order, 0.9 if order == 2 else 3.2 / k, full) for k in ppw]
    slope = np.polyfit(np.log(SIGMA / ppw), np.log(errors), 1)[0]
    assert slope_range[0] < slope < slope_range[1], (errors, slope)
    assert errors[-1] < (6e-3 if order == 2 else 3e-3)  # measured 0.52 % and 0.20 %


def test_fourth_order_gradient_against_loops_and_divergence_is_its_adjoint(x64):
    h, room = 0.1, ac.Room(ac.l_shape_mask((1.2, 0.8), (0.5, 0.3), 0.1), 0.1)
    solver, mask = ac.WaveSolver(room, order=4, dtype=jnp.float64), np.asarray(room.mask)
    p = np.where(mask, np.random.default_rng(0).normal(size=mask.shape), 0.0)
    air = lambda i, j: 0 <= i < mask.shape[0] and bool(mask[i, j])  # noqa: E731
    cell = lambda i, j: p[i, j] if air(i, j) else 0.0  # noqa: E731
    naive = np.zeros((mask.shape[0] + 1, mask.shape[1]))
    for i in range(naive.shape[0]):  # face i between cells i − 1 and i along x
        for j in range(mask.shape[1]):
            wide = all(air(k, j) for k in (i - 2, i - 1, i, i + 1))
            d1, d3 = cell(i, j) - cell(i - 1, j), cell(i + 1, j) - cell(i - 2, j)
            naive[i, j] = (9 / 8 * d1 - d3 / 24 if wide else d1) / h
    grad = solver.gradient(jnp.asarray(p))
    assert np.allclose(grad[0], naive, atol=1e-12)
    v = [jnp.asarray(np.random.default_rng(a + 1).normal(size=g.shape)) for a, g in enumerate(grad)]
    lhs = sum(jnp.sum(g * u) for g, u in zip(grad, v, strict=True))
    assert float(lhs) == pytest.approx(-float(jnp.sum(p * solver.divergence(v))), rel=1e-12)


@pytest.mark.parametrize("order", [2, 4])
def test_energy_conserved_in_rigid_room(x64, order):
    h = 0.05
    room = ac.Room(ac.l_shape_mask((2.0, 1.6), (0.8, 0.6), h), h)
    solver = ac.WaveSolver(room, order=order, dtype=jnp.float64)
    p0 = ac.gaussian_pulse(room.grid_coords(jnp.float64), jnp.array([0.6, 0.5]), 2.0, SIGMA)
    e = energies(solver, p0, 600)  # ~ 5 crossings of the room
    assert float(jnp.max(jnp.abs(e / e[0] - 1))) < 1e-12
    # E^0 with v^{-1/2} = −v^{1/2} (p0 starts at rest), within O((cΔt/σ)²) of ∫p0²/(2ρc²)
    v = solver.initial_state(p0).v
    start = ac.acoustic_energy(p0, v, v_next=[-u for u in v], rho=RHO, c=C, spacing=h,
                               face_weights=solver.face_weights)  # fmt: skip
    assert float(e[0]) == pytest.approx(float(start), rel=1e-12)
    potential = h**2 * float(jnp.sum(p0**2)) / (2 * RHO * C**2)
    assert float(e[0]) == pytest.approx(potential, rel=0.03)


def test_energy_balance_with_impedance_walls(x64):
    # dE = −Δt Σ_wall Z ū² h^{d−1}: the flux into the walls, in the scheme's own discrete form
    h, alpha = 0.05, 0.3
    room = ac.Room(ac.obstacle_mask((2.0, 1.6), (1.2, 0.4), (1.5, 0.9), h), h, absorption=alpha)
    solver = ac.WaveSolver(room, dtype=jnp.float64)
    z, walls = room.impedance(RHO, C), [w == 0.5 for w in solver.face_weights]
    p0 = ac.gaussian_pulse(room.grid_coords(jnp.float64), jnp.array([0.6, 0.7]), 1.0, SIGMA)

    def body(carry, _):
        v_before, state = carry
        new = solver.step(state)
        # u^{n+1/2}(u^{n+3/2} + 2u^{n+1/2} + u^{n−1/2})/4 on every wall face
        flux = sum(
            jnp.sum(jnp.where(m, u * (a + 2 * u + b), 0.0)) / 4
            for m, b, u, a in zip(walls, v_before, state.v, new.v, strict=True)
        )
        return (state.v, new), (solver.energy(new.p, state.v, new.v), solver.dt * h * z * flux)

    state = solver.initial_state(p0)
    _, (e, loss) = jax.lax.scan(body, (state.v, state), None, length=800)
    assert float(e[-1] / e[0]) < 0.5  # the walls took a good part of it
    balance = e[1:] - (e[0] - jnp.cumsum(loss[1:]))  # loss[0] has no v^{-1/2}
    assert float(jnp.max(jnp.abs(balance))) < 1e-11 * float(e[0])


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9, 1.0])
def test_normal_incidence_absorption(x64, alpha):
    # a plane pulse in a rigid-sided duct, absorbing end wall at x = 3 m: the half running
    # to it returns with R = sqrt(1 − α) times its amplitude, so E → E0 (1 + R²)/2
    h = SIGMA / 8
    room = ac.Room(jnp.ones((round(3.0 / h), 2), bool), h, absorption=((0.0, alpha), (0.0, 0.0)))
    solver = ac.WaveSolver(room, dtype=jnp.float64)
    x = room.grid_coords(jnp.float64)[..., 0]
    p0 = jnp.exp(-((x - 1.5) ** 2) / SIGMA**2)
    t = 2.5 / C  # the reflected half is centred at x = 2 m, the other at x = 1 m
    e = energies(solver, p0, solver.n_steps([t]))
    assert float(e[-1] / e[0]) == pytest.approx(1 - alpha / 2, abs=1e-3)
    fields, _ = solver.simulate(p0, save_times=[t])
    reflected = fields[0][x[:, 0] > 1.5, 0]
    assert float(jnp.max(reflected)) == pytest.approx(math.sqrt(1 - alpha) / 2, abs=2e-3)


def diffuse_absorption(alpha):
    """Random-incidence α of a locally reacting wall: ∫ α(θ) sin 2θ dθ (Paris formula)."""
    r, theta = math.sqrt(1 - alpha), np.linspace(0, np.pi / 2, 4001)
    zc = (1 + r) / (1 - r) * np.cos(theta)  # ζ cos θ; R(θ) = (ζ cos θ − 1)/(ζ cos θ + 1)
    return float(np.trapezoid((1 - ((zc - 1) / (zc + 1)) ** 2) * np.sin(2 * theta), theta))


@pytest.mark.parametrize("alpha", [0.1, 0.25])
def test_shoebox_decay_follows_eyring(x64, alpha):
    # E ∝ exp(−c S (−ln(1 − ᾱ)) t / 4V) (Eyring), ᾱ the random-incidence α. A shoebox with
    # uniform walls is not perfectly diffuse; over its first 10–20 dB the measured rate
    # is 0.86–0.89 of Eyring's, so the tolerance is 20 %.
    size, h = (2.0, 1.6, 1.3), 0.05
    room = ac.Room(ac.shoebox_mask(size, h), h, absorption=alpha)
    solver = ac.WaveSolver(room, dtype=jnp.float64)
    p0 = ac.gaussian_pulse(room.grid_coords(jnp.float64), jnp.array([0.7, 0.6, 0.5]), 1.0, SIGMA)
    e = np.asarray(energies(solver, p0, solver.n_steps([0.05])))
    t = np.arange(1, e.size + 1) * solver.dt
    window = t > 0.01
    rate = -np.polyfit(t[window], np.log(e[window]), 1)[0]
    volume, area = np.prod(size), 2 * (size[0] * size[1] + size[1] * size[2] + size[0] * size[2])
    eyring = -C * area * math.log(1 - diffuse_absorption(alpha)) / (4 * volume)
    assert rate / eyring == pytest.approx(1.0, abs=0.2)


def test_pml_matches_larger_domain(x64):
    h, width, n = 0.025, 12, 64
    pad = round(2.0 / h)  # walls far enough that nothing returns by the last time
    small, big = jnp.ones((n + 2 * width,) * 2, bool), jnp.ones((n + 2 * pad,) * 2, bool)
    times, out = [0.8 / C, 1.6 / C, 2.4 / C], []
    for room in (ac.Room(small, h, pml_width=width), ac.Room(small, h), ac.Room(big, h)):
        solver = ac.WaveSolver(room, dtype=jnp.float64)
        centre = jnp.full((2,), room.extent[0] / 2)
        p0 = ac.gaussian_pulse(room.grid_coords(jnp.float64), centre, 1.0, SIGMA)
        off = (room.shape[0] - n) // 2
        out.append(solver.simulate(p0, save_times=times)[0][:, off : off + n, off : off + n])
    assert float(jnp.max(jnp.abs(out[0] - out[2]))) < 2e-4  # PML: ≤ 2e-4 of the amplitude
    assert float(jnp.max(jnp.abs(out[1] - out[2]))) > 1e-2  # rigid edges would reflect


@pytest.mark.parametrize("order", [2, 4])
def test_mirror_symmetric_source_gives_symmetric_field(order):
    h = 0.05
    room = ac.Room(ac.obstacle_mask((3.0, 2.0), (1.8, 0.6), (2.2, 1.4), h), h, absorption=0.2)
    solver = ac.WaveSolver(room, order=order)
    p0 = ac.gaussian_pulse(room.grid_coords(), jnp.array([0.9, 1.0]), 1.0, SIGMA)
    mics = jnp.array([[2.6, 0.45], [2.6, 1.55]])  # mirror images about y = 1 m
    fields, signals = solver.simulate(p0, save_times=[0.004, 0.011], receivers=mics)
    scale = float(jnp.max(jnp.abs(fields)))
    assert float(jnp.max(jnp.abs(fields - fields[:, :, ::-1]))) < 1e-5 * scale
    assert float(jnp.max(jnp.abs(signals[0] - signals[1]))) < 1e-5 * scale
    assert float(jnp.max(jnp.abs(signals))) > 1e-2 * scale  # the sound did get there


def test_batch_over_traced_source_positions():
    h = 0.05
    room = ac.Room(ac.rectangle_mask((2.0, 1.5), h), h, absorption=0.1)
    solver = ac.WaveSolver(room)
    xy, mics = room.grid_coords(), jnp.array([[1.5, 1.0]])

    def run(x0):
        return solver.simulate(ac.gaussian_pulse(xy, x0), save_times=[0.003], receivers=mics)

    sources = jnp.array([[0.6, 0.5], [1.1, 0.8]])
    fields, signals = jax.jit(jax.vmap(run))(sources)
    for i in range(2):
        f, s = run(sources[i])
        assert jnp.allclose(fields[i], f, atol=1e-6) and jnp.allclose(signals[i], s, atol=1e-6)
    assert signals.shape == (2, 1, solver.n_steps([0.003]) + 1)


def test_saved_fields_and_receivers_agree_with_steps(x64):
    h = 0.05
    room = ac.Room(ac.rectangle_mask((1.5, 1.2), h), h, absorption=0.3)
    solver = ac.WaveSolver(room, dtype=jnp.float64)
    p0 = ac.gaussian_pulse(room.grid_coords(jnp.float64), jnp.array([0.5, 0.6]), 1.0, SIGMA)
    k, theta = 37, 0.3
    mic = jnp.array([[10.5 * h, 7.5 * h]])  # the centre of cell (10, 7)
    times = [k * solver.dt, (k + theta) * solver.dt, (k + 1) * solver.dt]
    fields, signals = solver.simulate(p0, save_times=times, receivers=mic)
    step, state = eqx.filter_jit(solver.step), solver.initial_state(p0)
    for _ in range(k):
        state = step(state)
    following = step(state)
    assert jnp.allclose(fields[0], state.p, atol=1e-14)
    assert jnp.allclose(fields[2], following.p, atol=1e-14)
    assert jnp.allclose(fields[1], (1 - theta) * state.p + theta * following.p, atol=1e-14)
    assert float(signals[0, k]) == pytest.approx(float(state.p[10, 7]), abs=1e-14)


@given(
    st.lists(st.tuples(st.floats(0.025, 1.475), st.floats(0.025, 1.175)), min_size=3, max_size=3)
)
def test_receivers_interpolate_linear_fields_exactly(points):
    # multilinear interpolation between cell centres reproduces any linear field
    with jax.enable_x64(True):
        room = ac.Room(ac.rectangle_mask((1.5, 1.2), 0.05), 0.05)
        xy, mics = room.grid_coords(jnp.float64), jnp.asarray(points, dtype=jnp.float64)
        linear = lambda x: 3.0 + 2.0 * x[..., 0] - 5.0 * x[..., 1]  # noqa: E731
        solver = ac.WaveSolver(room, dtype=jnp.float64)
        _, signals = solver.simulate(linear(xy), save_times=[0.0], receivers=mics)
        assert jnp.allclose(signals[:, 0], linear(mics), atol=1e-12)


def test_pulse_width_puts_the_spectrum_down_by_e4_at_f_max():
    sigma, k = ac.pulse_width(1000.0, C), 2 * np.pi * 1000.0 / C
    assert sigma == pytest.approx(0.2184, abs=1e-4)  # the seed study's ≈ 0.2 m
    # 1-D factor of the spatial Fourier transform of exp(−x²/σ²), by quadrature
    x = np.linspace(-8 * sigma, 8 * sigma, 20001)
    g = np.exp(-(x**2) / sigma**2)
    assert np.trapezoid(g * np.cos(k * x), x) / np.trapezoid(g, x) == pytest.approx(np.exp(-4.0))


def test_wall_distance_and_source_checks():
    h = 0.05
    room = ac.Room(ac.obstacle_mask((3.0, 2.0), (1.8, 0.6), (2.2, 1.4), h), h)
    assert ac.wall_distance(room, [0.3, 1.0]) == pytest.approx(0.3, abs=1e-9)
    assert ac.wall_distance(room, [1.6, 1.0]) == pytest.approx(0.2, abs=1e-9)
    assert ac.wall_distance(room, [2.0, 1.0]) == pytest.approx(-0.2, abs=1e-9)
    assert ac.check_position(room, [[0.8, 1.0], [2.6, 1.0]], margin=0.3).shape == (2, 2)
    for x, match in [
        ([2.0, 1.0], "inside a wall or obstacle"),
        ([[0.8, 1.0], [1.6, 1.0]], r"source 1 at \[1.6, 1.0\] m is 0.2000 m .* margin 0.3"),
        ([3.5, 1.0], "outside the room"),
        ([1.0, 1.0, 1.0], r"shape \(2,\) or \(n, 2\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            ac.check_position(room, x, margin=0.3)


def test_bad_input_is_refused():
    h, mask = 0.05, np.ones((20, 20), bool)
    room = ac.Room(mask, h)
    solver, p0, dt_max = ac.WaveSolver(room), jnp.zeros((20, 20)), h / (C * math.sqrt(2))
    run = solver.simulate
    cases = [
        (lambda: ac.WaveSolver(room, dt=1.01 * dt_max), r"exceeds the limit 1 .*need dt <="),
        (lambda: ac.WaveSolver(room, courant=0.9, order=4), "exceeds the limit 0.8571"),
        (lambda: ac.WaveSolver(room, courant=0.5, dt=1e-5), "either courant or dt"),
        (lambda: ac.WaveSolver(room, order=3), "order must be 2 or 4"),
        (lambda: ac.Room(np.zeros((8, 8), bool), h), "no air cell"),
        (lambda: ac.Room(np.ones((8, 8)), h), "must be boolean"),
        (lambda: ac.Room(np.ones((8,), bool), h), "2-D or 3-D"),
        (lambda: ac.Room(mask, h, absorption=1.5), r"coefficients must lie in \[0, 1\]"),
        (lambda: ac.Room(mask, h, absorption=((0.1, 0.2),)), "one number or 2 pairs"),
        (lambda: ac.Room(mask, h, pml_width=10), "pml_width must be in"),
        (lambda: ac.l_shape_mask((2.0, 2.0), (2.5, 0.5), h), "cutout"),
        (lambda: ac.obstacle_mask((2.0, 2.0), (1.5, 0.5), (2.5, 1.0), h), "inside the room"),
        (lambda: run(p0, save_times=[0.001], receivers=np.zeros((3, 3))), r"\(n_receivers, 2\)"),
        (lambda: run(p0, save_times=[0.001], receivers=np.zeros(2)), "receivers must have shape"),
        (lambda: run(jnp.zeros((20, 21)), save_times=[0.001]), r"grid shape \(20, 20\)"),
        (lambda: run(p0, save_times=[-0.001]), "finite times >= 0"),
        (lambda: jax.jit(lambda t: run(p0, save_times=t))(jnp.ones(1)), "must be concrete"),
        (lambda: ac.gaussian_pulse(room.grid_coords(), jnp.zeros(3)), r"shape \(2,\) to match"),
        (lambda: ac.pulse_width(0.0), "f_max must be a positive"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
