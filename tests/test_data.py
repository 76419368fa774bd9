import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surrogate import problems
from surrogate.data import Normalizer, read_dataset, write_dataset
from surrogate.problems import generate, problem_of_dataset

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 5),
    res=st.sampled_from([4, 8, 16]),
    viscosity=st.floats(1e-3, 1.0),
    n_times=st.integers(0, 3),
    data=st.data(),
)
def test_netcdf_round_trip(tmp_path_factory, n, res, viscosity, n_times, data):
    p = problems.get("burgers", resolution=res, viscosity=viscosity, n_times=n_times)
    arr = lambda *shape: np.asarray(  # noqa: E731
        data.draw(st.lists(finite, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
        dtype=np.float32,
    ).reshape(shape)
    inputs = {"u0": arr(n, res)}
    outputs = {"u": arr(n, res)}
    if n_times:
        outputs["u_t"] = arr(n, n_times, res)
    path = tmp_path_factory.mktemp("nc") / "d.nc"
    write_dataset(p.to_dataset(inputs, outputs, seed=7), path)
    ds = read_dataset(path)
    back = p.from_dataset(ds)
    for k, v in {**inputs, **outputs}.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == np.float32
    assert problem_of_dataset(ds) == p
    assert ds.attrs["Conventions"] == "CF-1.10" and ds.attrs["seed"] == 7
    assert ds.attrs["option_viscosity"] == pytest.approx(viscosity)
    for name in ds.data_vars:
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds["x"].attrs["units"] == "1"
    assert json.loads(ds.attrs["problem_options"])["resolution"] == res


def test_generation_is_per_sample_deterministic():
    p = problems.get("burgers", resolution=32)
    whole = generate(p, 5, seed=3, batch_size=2)
    part = generate(p, seed=3, indices=[1, 4], batch_size=3)
    np.testing.assert_array_equal(whole["u"].values[[1, 4]], part["u"].values)
    np.testing.assert_array_equal(part["sample"].values, [1, 4])
    other = generate(p, 2, seed=4)
    assert not np.allclose(other["u0"].values, whole["u0"].values[:2])


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    p = problems.get("burgers", resolution=8)
    ds = p.to_dataset({"u0": np.zeros((2, 8))}, {"u": np.zeros((2, 8))})
    target = tmp_path / "out.nc"
    import xarray as xr

    def boom(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"CDF\x01 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(ds, target)
    assert list(tmp_path.iterdir()) == []


def test_normalizer_round_trip_and_statistics(x64):
    x = jax.random.normal(jax.random.key(0), (50, 2, 16)) * np.array([3.0, 0.1])[None, :, None]
    x = x + np.array([1.0, -2.0])[None, :, None]
    norm = Normalizer.fit(x)
    z = jax.vmap(norm.encode)(x)
    np.testing.assert_allclose(np.mean(z, axis=(0, 2)), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.std(z, axis=(0, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(norm.decode)(z), x, atol=1e-12)


def test_normalizer_statistics_are_not_trained(x64):
    # a normalizer inside a trained module gets zero gradients (and so stays as fitted
    # under Adam), while the gradient with respect to the data still flows through it
    x = jax.random.normal(jax.random.key(1), (2, 8)) + 3.0
    norm = Normalizer.fit(x[None])

    def loss(n, a):
        return jnp.sum(n.decode(jnp.sin(n.encode(a))) ** 2)

    g_norm, g_x = jax.grad(loss, argnums=(0, 1))(norm, x)
    assert float(jnp.max(jnp.abs(g_norm.mean))) == 0.0
    assert float(jnp.max(jnp.abs(g_norm.std))) == 0.0
    eps = 1e-6
    e = jnp.zeros_like(x).at[1, 3].set(eps)
    fd = (loss(norm, x + e) - loss(norm, x - e)) / (2 * eps)
    np.testing.assert_allclose(g_x[1, 3], fd, rtol=1e-7)


def test_bad_data_messages(tmp_path):
    p = problems.get("burgers", resolution=8)
    good = p.to_dataset({"u0": np.zeros((2, 8))}, {"u": np.ones((2, 8))})
    with pytest.raises(ValueError, match="no variable 'u'"):
        p.from_dataset(good.drop_vars("u"))
    bad = good.copy(deep=True)
    bad["u"].values[1, 3] = np.nan
    with pytest.raises(ValueError, match="'u' holds 1 NaN"):
        p.from_dataset(bad)
    with pytest.raises(ValueError, match="has dimensions"):
        p.from_dataset(good.assign(u=(("x", "sample"), np.ones((8, 2)))))
    with pytest.raises(ValueError, match="should have 2 dimensions"):
        p.model_input({"u0": np.zeros((2, 1, 8))})
    with pytest.raises(ValueError, match="expected dimensions"):
        p.to_dataset({"u0": np.zeros((2, 8, 1))}, {"u": np.zeros((2, 8))})
    path = tmp_path / "d.nc"
    write_dataset(good, path)
    truncated = tmp_path / "t.nc"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or not netCDF"):
        read_dataset(truncated)
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(ValueError, match="truncated or not netCDF"):
        read_dataset(text)
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        read_dataset(tmp_path / "missing.nc")
    with pytest.raises(ValueError, match="unknown problem 'heat'"):
        problems.get("heat")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['visc'\]"):
        problems.get("burgers", visc=0.1)
    with pytest.raises(ValueError, match="expects float"):
        problems.get("burgers", viscosity="thick")
