"""The operator-learning problems (Darcy, Navier-Stokes) on the shared dataset contract."""

import jax
import numpy as np
import pytest

from surrogate import problems
from surrogate.problems import generate, problem_of_dataset
from surrogate.solvers.darcy import DarcySolver, subsample_vertex


def test_darcy_dataset_is_the_subsampled_fine_solve():
    p = problems.get("darcy", resolution=9, solve_resolution=33)
    ds = generate(p, 2, seed=1)
    data = p.from_dataset(ds)
    assert data["a"].shape == (2, 9, 9) and data["u"].shape == (2, 9, 9)
    a_fine = p.sample_input(jax.random.fold_in(jax.random.key(1), 1))["a"]
    u_fine = DarcySolver(33)(a_fine)
    np.testing.assert_allclose(data["u"][1], subsample_vertex(u_fine, 9), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(data["a"][1], np.asarray(a_fine)[::4, ::4])
    assert set(np.unique(data["a"])) <= {3.0, 12.0}
    assert np.all(data["u"][:, 0, :] == 0) and np.all(data["u"] >= 0)  # max principle, f > 0
    assert problem_of_dataset(ds) == p
    assert p.model_input(data).shape == (2, 1, 9, 9)


def test_navier_stokes_task_split_and_mean_vorticity():
    p = problems.get("navier_stokes", resolution=16, solve_resolution=32, final_time=3.0, n_in=2)
    ds = generate(p, 1, seed=0)
    data = p.from_dataset(ds)
    assert data["w"].shape == (1, 3, 16, 16)
    assert p.model_input(data).shape == (1, 2, 16, 16)
    assert p.model_target(data).shape == (1, 1, 16, 16)
    # zero-mean initial vorticity and zero-mean forcing keep the mean at zero
    assert abs(float(data["w"].mean())) < 1e-5 * float(np.abs(data["w"]).max())


def test_problem_option_errors():
    with pytest.raises(ValueError, match="not a subsampling of the 421-point"):
        problems.get("darcy", resolution=100)
    with pytest.raises(ValueError, match="must divide solve_resolution"):
        problems.get("navier_stokes", resolution=48)
    with pytest.raises(ValueError, match="n_in must be in"):
        problems.get("navier_stokes", final_time=5.0, n_in=5)
