import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import surrogate
from surrogate._serialization import read_header, read_tree
from surrogate.data import NormalizedModel, Normalizer
from surrogate.operators import FNO
from surrogate.training import (
    TrainingDiverged,
    checkpoint_epoch,
    fit,
    relative_l2,
    relative_lp_per_sample,
)


def _data(n=24, s=32):
    x = jax.random.normal(jax.random.key(0), (n, 1, s))
    return {"x": x, "y": jnp.cumsum(x, axis=-1) / s}


def _loss(model, batch):
    return relative_l2(jax.vmap(model)(batch["x"]), batch["y"])


def _fno():
    return FNO(1, 1, 4, width=8, n_layers=2, key=jax.random.key(1))


def _params(m):
    return jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array))


def test_relative_lp_definition(x64):
    true = jnp.array([[3.0, 4.0], [1.0, 0.0]])
    pred = jnp.array([[3.0, 5.0], [0.0, 0.0]])
    np.testing.assert_allclose(relative_lp_per_sample(pred, true), [1 / 5, 1.0])
    np.testing.assert_allclose(relative_lp_per_sample(pred, true, p=1), [1 / 7, 1.0])
    w = jnp.array([1.0, 0.0])  # quadrature weights hide the second point
    np.testing.assert_allclose(relative_lp_per_sample(pred, true, weights=w), [0.0, 1.0])


def test_fit_reduces_loss_and_resume_equals_uninterrupted(tmp_path):
    data = _data()
    opt = optax.adam(optax.exponential_decay(3e-3, 6, 0.5))
    kw = dict(optimizer=opt, batch_size=5, key=jax.random.key(2), progress=False)
    full, hist = fit(_fno(), _loss, data, data, epochs=4, checkpoint=tmp_path / "a.eqx", **kw)
    assert hist["train_loss"][-1] < 0.8 * hist["train_loss"][0]
    ck = tmp_path / "b.eqx"
    fit(_fno(), _loss, data, data, epochs=2, checkpoint=ck, **kw)
    assert checkpoint_epoch(ck) == 2
    resumed, hist2 = fit(_fno(), _loss, data, data, epochs=4, checkpoint=ck, resume=True, **kw)
    for a, b in zip(_params(full), _params(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert hist2["epoch"] == [1, 2, 3, 4]
    np.testing.assert_allclose(hist2["train_loss"], hist["train_loss"], rtol=1e-6)


class _Scalar(eqx.Module):
    w: jax.Array

    def __call__(self, x):
        return x * self.w


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    # loss w + log(w) with SGD (lr 1): w goes 2.5 -> 2.5 - (1 + 1/2.5) = 1.1 in epoch 1,
    # then 1.1 - (1 + 1/1.1) < 0 in epoch 2, where log(w) turns NaN in validation
    def loss(model, batch):
        return jnp.mean(model.w + jnp.log(model.w) + 0 * batch["x"])

    data = {"x": jnp.ones((1, 1))}
    ck = tmp_path / "ck.eqx"
    with pytest.raises(
        TrainingDiverged, match="validation loss became nan at epoch 2.*last good checkpoint kept"
    ) as info:
        fit(
            _Scalar(jnp.array(2.5)),
            loss,
            data,
            data,
            optimizer=optax.sgd(1.0),
            epochs=10,
            batch_size=1,
            key=jax.random.key(0),
            checkpoint=ck,
            progress=False,
        )
    assert checkpoint_epoch(ck) == 1
    model, _ = read_tree(ck, (_Scalar(jnp.array(0.0)), optax.sgd(1.0).init(jnp.array(0.0))))
    assert float(model.w) == pytest.approx(1.1)
    assert float(info.value.model.w) == pytest.approx(float(model.w))


def test_fit_bad_input():
    data = _data()
    kw = dict(optimizer=optax.adam(1e-3), epochs=1, key=jax.random.key(0), progress=False)
    bad = {"x": data["x"].at[0, 0, 0].set(jnp.nan), "y": data["y"]}
    with pytest.raises(ValueError, match="training data hold 1 NaN"):
        fit(_fno(), _loss, bad, batch_size=4, **kw)
    with pytest.raises(ValueError, match="same number of samples"):
        fit(_fno(), _loss, {"x": data["x"], "y": data["y"][:3]}, batch_size=4, **kw)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        fit(_fno(), _loss, data, batch_size=4, resume=True, **kw)


def test_save_load_round_trip(tmp_path):
    net = _fno()
    model = NormalizedModel(net, Normalizer(1, [0.5], [2.0]), Normalizer(1, [-1.0], [3.0]))
    path = surrogate.save(tmp_path / "m.eqx", model, note="hello")
    back = surrogate.load(path)
    x = jax.random.normal(jax.random.key(3), (1, 32))
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(back(x)))
    header = read_header(path)
    assert header["note"] == "hello" and header["model"]["config"]["model"]["config"]["width"] == 8
    (tmp_path / "junk.eqx").write_text("not a model")
    with pytest.raises(ValueError, match="not a surrogate model file"):
        surrogate.load(tmp_path / "junk.eqx")
    cut = tmp_path / "cut.eqx"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="do not match the model"):
        surrogate.load(cut)


def test_every_config_model_saves_and_loads(tmp_path):
    from surrogate.operators import DeepONetOperator, MgNO

    x = jax.random.normal(jax.random.key(1), (1, 9, 9))
    models = [
        MgNO(1, 1, ndim=2, width=4, depth=2, levels=2, padding="periodic", key=jax.random.key(0)),
        DeepONetOperator(
            1,
            2,
            (9, 9),
            p=8,
            branch_width=8,
            trunk_width=8,
            activation="gelu",
            key=jax.random.key(0),
        ),
        FNO(1, 1, (2, 2), width=4, n_layers=1, key=jax.random.key(0)),
    ]
    for i, model in enumerate(models):
        back = surrogate.load(surrogate.save(tmp_path / f"{i}.eqx", model))
        np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(back(x)))
