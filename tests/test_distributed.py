"""Data-parallel training: two processes on localhost train to the parameters one process
reaches with the same global batch; one device reproduces `fit`; bad settings are refused."""

import os
import socket
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from surrogate._serialization import read_header, read_tree
from surrogate.hpc import data_mesh, fit_distributed, initialize_distributed
from surrogate.training import fit

EPOCHS, BATCH = 4, 8
XLA_FLAGS = "--xla_force_host_platform_device_count=2"  # two CPU devices per process

# The same tiny regression in the workers and here: 24 samples, MLP 3 -> 8 -> 8 -> 1.
SETUP = """
import equinox as eqx, jax, jax.numpy as jnp, optax

def problem():
    x = jax.random.normal(jax.random.key(1), (24, 3))
    y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5]))[:, None]
    model = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.key(0))
    return model, {"x": x, "y": y}

def loss(model, batch):
    return jnp.mean((jax.vmap(model)(batch["x"]) - batch["y"]) ** 2)
"""
namespace: dict = {}
exec(SETUP, namespace)
problem, loss = namespace["problem"], namespace["loss"]

WORKER = SETUP + textwrap.dedent(
    """
    import sys
    import numpy as np
    from surrogate.hpc import fit_distributed, initialize_distributed

    out, tag, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rank, size = initialize_distributed()
    assert (size, jax.device_count(), jax.local_device_count()) == (2, 4, 2), jax.devices()
    model, train = problem()
    settings = dict(optimizer=optax.adam(1e-2), key=jax.random.key(5), progress=False)
    try:
        fit_distributed(model, loss, train, epochs=1, batch_size=6, **settings)
        raise AssertionError("a batch of 6 was split over 4 devices")
    except ValueError as e:
        assert "must be a multiple of the 4 devices" in str(e), e
    trained, history = fit_distributed(
        model, loss, train, epochs=epochs, batch_size=batch,
        checkpoint=f"{out}/checkpoint.eqx", **settings
    )
    leaves = jax.tree_util.tree_leaves(eqx.filter(trained, eqx.is_array))
    np.savez(f"{out}/{tag}.npz", *map(np.asarray, leaves), loss=np.asarray(history["train_loss"]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leaves(model):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


def _train(trainer, **kw):
    model, train = problem()
    settings = dict(optimizer=optax.adam(1e-2), epochs=EPOCHS, batch_size=BATCH, progress=False)
    return trainer(model, loss, train, key=jax.random.key(5), **{**settings, **kw})


def test_two_processes_train_like_one(tmp_path):
    """Two processes with two CPU devices each (gloo collectives between the processes)
    against one process with one device: same global batch of 8, same parameters."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    runs = {
        f"rank{r}": {
            "SURROGATE_COORDINATOR": f"127.0.0.1:{port}",
            "SURROGATE_NUM_PROCESSES": "2",
            "SURROGATE_PROCESS_ID": str(r),
        }
        for r in range(2)
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SURROGATE_", "SLURM_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, script, tmp_path, tag, str(EPOCHS), str(BATCH)],
            env={**base, **extra, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": XLA_FLAGS},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tag, extra in runs.items()
    ]
    try:
        single, history = _train(fit_distributed)  # one process, one device, meanwhile
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    reference = _leaves(single)
    for tag in runs:
        got = np.load(tmp_path / f"{tag}.npz")
        for k, ref in enumerate(reference):
            # float32 round-off: the global mean is a sum of four partial sums there
            np.testing.assert_allclose(got[f"arr_{k}"], ref, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got["loss"], history["train_loss"], rtol=2e-5)
    # the model moved: the agreement is not that of untouched initial parameters
    start = _leaves(problem()[0])
    assert max(np.max(np.abs(a - b)) for a, b in zip(reference, start)) > 1e-2
    # process 0 wrote the checkpoint; it holds the trained parameters
    assert [p.name for p in tmp_path.glob("*checkpoint*")] == ["checkpoint.eqx"]
    assert read_header(tmp_path / "checkpoint.eqx")["epoch"] == EPOCHS
    saved = read_tree(tmp_path / "checkpoint.eqx", (problem()[0], None))[0]
    for a, b in zip(_leaves(saved), reference):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_one_device_reproduces_fit_and_resumes(tmp_path):
    """On one device the distributed loop is `fit` (same minibatches, same updates), and its
    checkpoint resumes in `fit` exactly where an uninterrupted `fit` run would be."""
    straight, history = _train(fit, epochs=EPOCHS + 2)
    _, history_d = _train(fit_distributed, epochs=EPOCHS, checkpoint=tmp_path / "c.eqx")
    np.testing.assert_allclose(history_d["train_loss"], history["train_loss"][:EPOCHS], rtol=1e-6)
    resumed, _ = _train(fit, epochs=EPOCHS + 2, checkpoint=tmp_path / "c.eqx", resume=True)
    for a, b in zip(_leaves(resumed), _leaves(straight)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_bad_settings(monkeypatch):
    model, train = problem()
    kw = dict(optimizer=optax.sgd(0.1), epochs=1, key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fit_distributed(model, loss, train, batch_size=0, **kw)
    bad = {"x": train["x"].at[0, 0].set(jnp.nan), "y": train["y"]}
    with pytest.raises(ValueError, match="training data hold 1 NaN"):
        fit_distributed(model, loss, bad, batch_size=4, **kw)
    assert data_mesh().axis_names == ("batch",) and data_mesh().size == jax.device_count()
    for name in ("SURROGATE_COORDINATOR", "SURROGATE_NUM_PROCESSES", "SURROGATE_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert initialize_distributed() == (0, 1)  # nothing set: one process
    monkeypatch.setenv("SURROGATE_COORDINATOR", "localhost:1234")
    with pytest.raises(ValueError, match="SURROGATE_NUM_PROCESSES, SURROGATE_PROCESS_ID not set"):
        initialize_distributed()
    monkeypatch.setenv("SURROGATE_NUM_PROCESSES", "two")
    monkeypatch.setenv("SURROGATE_PROCESS_ID", "0")
    with pytest.raises(ValueError, match="should be integers, got 'two'"):
        initialize_distributed()
    monkeypatch.setenv("SURROGATE_NUM_PROCESSES", "2")
    monkeypatch.setenv("SURROGATE_PROCESS_ID", "2")
    with pytest.raises(ValueError, match="need 0 <= SURROGATE_PROCESS_ID"):
        initialize_distributed()
    monkeypatch.setenv("SURROGATE_COORDINATOR", "localhost")
    with pytest.raises(ValueError, match="should be host:port"):
        initialize_distributed()
