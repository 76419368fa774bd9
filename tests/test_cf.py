"""CF conventions of the datasets of every built-in problem: units and long names on every
variable (`sample` included), no fill value on coordinates (CF §2.5.1), and the IOOS
compliance checker's CF suite without errors where it is installed (the `dev` extra; it runs
offline, with its packaged standard-name table)."""

import jax
import netCDF4
import numpy as np
import pytest

from surrogate import problems
from surrogate.data import read_dataset, write_dataset

# tiny options: the metadata is under test, not the physics
SMALL = {
    "burgers": ("burgers", dict(resolution=16, n_times=3)),
    "darcy": ("darcy", dict(resolution=9, solve_resolution=33)),
    "navier_stokes": (
        "navier_stokes",
        dict(resolution=8, solve_resolution=16, final_time=3.0, n_in=2, dt=0.05),
    ),
    "lorenz96": ("lorenz96", dict(k=4, j=4, spin_up=0.01, save_interval=0.005, n_times=3)),
    "convection": ("convection", dict(n_levels=30, spin_up=3600, save_interval=1800, n_times=3)),
    "room_acoustics": (
        "room_acoustics",
        dict(size_x=1.2, size_y=1.0, f_max=600.0, points_per_wavelength=5.0, duration=0.004,
             n_times=5, margin=0.35, absorption=0.3, stride=2),
    ),  # fmt: skip
    "room_acoustics_3d": (
        "room_acoustics",
        dict(ndim=3, size_x=1.2, size_y=1.0, size_z=1.0, f_max=400.0, points_per_wavelength=4.0,
             duration=0.003, n_times=3, margin=0.35, absorption=0.3, stride=2),
    ),  # fmt: skip
    "ignition": ("ignition", dict(n_times=4, t_end=1e-4)),
    "gravity_waves": (
        "gravity_waves",
        dict(n_columns=2, dz=3000.0, n_waves=4, spin_up=0.0, save_interval=432000.0, n_times=3),
    ),  # fmt: skip
}

# Warnings of the checker's CF suite that these datasets keep, on purpose:
# - §2.4: CF recommends T, Z, Y, X order; fields are stored (sample, time, x, y[, z]), the
#   order of the solvers, of `model_input` and of the models trained on them;
# - §4.1/§4.2: the checker takes any axis X/Y for longitude/latitude; here they are the
#   Cartesian axes of a unit square, a torus or a room.
KEPT_WARNINGS = {"§2.4 Dimensions", "§4.1 Latitude Coordinate", "§4.2 Longitude Coordinate"}


# compiling ignition's stiff reference solve alone takes ~20 s: its dataset is built from
# sampled inputs and zero outputs of the declared shapes, which carry the same metadata
DECLARED_ONLY = {"ignition"}


def _declared_dataset(problem, n: int):
    inputs = problem.store_inputs(problem.sample_inputs(jax.random.key(0), n))
    sizes = {name: len(c.values) for name, c in problem.coords().items()}
    outputs = {
        name: np.zeros((n, *(sizes[d] for d in var.dims)))
        for name, var in problem.variables().items()
        if var.role == "output"
    }
    return problem.to_dataset({k: np.asarray(v) for k, v in inputs.items()}, outputs, seed=0)


@pytest.fixture(scope="module", params=sorted(SMALL))
def written(request, tmp_path_factory):
    name, options = SMALL[request.param]
    problem = problems.get(name, **options)
    if request.param in DECLARED_ONLY:
        ds = _declared_dataset(problem, 2)
    else:
        ds = problems.generate(problem, 2, seed=0)
    return write_dataset(ds, tmp_path_factory.mktemp("cf") / f"{request.param}.nc")


def _attributes(path) -> dict[str, dict]:
    """Every variable's attributes as stored in the file (xarray moves some to encoding)."""
    with netCDF4.Dataset(path) as nc:
        return {
            name: {k: var.getncattr(k) for k in var.ncattrs()}
            for name, var in nc.variables.items()
        }


def test_every_variable_has_units_and_a_long_name_and_coordinates_no_fill(written):
    with netCDF4.Dataset(written) as nc:
        coords = {name for name in nc.variables if nc.variables[name].dimensions == (name,)}
        assert "sample" in coords
    for name, attrs in _attributes(written).items():
        assert attrs.get("units"), f"{name} has no units"
        assert attrs.get("long_name"), f"{name} has no long_name"
        if name in coords:
            assert "_FillValue" not in attrs, f"coordinate {name} has a _FillValue"
        # data have no missing values (NaN is refused on reading): no fill value either
        assert not np.isnan(attrs.get("_FillValue", 0.0)), f"{name} has a NaN _FillValue"
    time = _attributes(written).get("time")
    if time is not None:  # a dimension named time is a CF time axis, with a reference
        assert " since " in time["units"] and time["standard_name"] == "time"


def test_a_dataset_read_back_and_written_again_keeps_its_coordinates_without_fill(
    written, tmp_path
):
    again = write_dataset(read_dataset(written), tmp_path / "again.nc")
    assert _attributes(again) == _attributes(written)


def test_the_ioos_compliance_checker_finds_no_cf_error(written):
    pytest.importorskip(
        "compliance_checker", reason="the IOOS compliance checker (dev extra) is not installed"
    )
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    suite.load_all_available_checkers()
    nc = suite.load_dataset(str(written))
    try:
        # the datasets say Conventions = CF-1.10
        results, crashed = suite.run_all(nc, ["cf:1.10"], [], [])["cf:1.10"]
    finally:
        nc.close()
    assert not crashed, f"checks that raised: {crashed}"
    report = suite.build_structure("cf:1.10", results, str(written), 1)

    def failures(priority):
        return {
            r.name: r.msgs for r in report[f"{priority}_priorities"] if r.value[0] < r.value[1]
        }

    assert report["high_count"] == 0, failures("high")
    assert set(failures("medium")) <= KEPT_WARNINGS, failures("medium")
    assert report["low_count"] == 0, failures("low")
