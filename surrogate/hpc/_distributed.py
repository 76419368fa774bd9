"""Data-parallel training over every device of every process: `jax.sharding` + `jax.distributed`.

One `Mesh` with a single axis `"batch"` spans all devices of all processes. Each minibatch
is a global array split along its sample axis over that mesh; parameters and optimiser
state are replicated. The loss is the mean over the *global* batch exactly as in `fit`, so
XLA's SPMD partitioner inserts the all-reduce of the gradients (Xu et al. 2021, "GSPMD")
and every step is the step one process would take with the same global batch, up to the
order of floating-point sums. Every process holds the whole training set in host memory
(each reads the same file) and sends its devices only their rows of each batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..data import minibatches
from ..training._fit import _make_eval, _n_samples, check_arguments, epoch_loop, restore

AXIS = "batch"
ENV = ("SURROGATE_COORDINATOR", "SURROGATE_NUM_PROCESSES", "SURROGATE_PROCESS_ID")


def initialize_distributed() -> tuple[int, int]:
    """Start `jax.distributed` from the environment; returns `(process_id, num_processes)`.

    1. `SURROGATE_COORDINATOR` (host:port of process 0), `SURROGATE_NUM_PROCESSES` and
       `SURROGATE_PROCESS_ID` set: those (e.g. `mpirun`, or processes started by hand);
    2. else inside a SLURM step of several tasks (`srun`): JAX reads the coordinator, the
       number of processes and the rank from SLURM's variables;
    3. else a single process: nothing to start.

    Call it before any other JAX computation. On CPU, cross-process collectives use gloo.
    """
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    given = {name: os.environ.get(name) for name in ENV}
    if any(v is not None for v in given.values()):
        missing = [name for name, v in given.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set; set all of {', '.join(ENV)} or none")
        coordinator = given["SURROGATE_COORDINATOR"]
        if ":" not in coordinator:
            raise ValueError(f"SURROGATE_COORDINATOR should be host:port, got {coordinator!r}")
        try:
            n = int(given["SURROGATE_NUM_PROCESSES"])
            rank = int(given["SURROGATE_PROCESS_ID"])
        except ValueError:
            raise ValueError(
                "SURROGATE_NUM_PROCESSES and SURROGATE_PROCESS_ID should be integers, got "
                f"{given['SURROGATE_NUM_PROCESSES']!r} and {given['SURROGATE_PROCESS_ID']!r}"
            ) from None
        if n < 1 or not 0 <= rank < n:
            raise ValueError(
                f"need 0 <= SURROGATE_PROCESS_ID < SURROGATE_NUM_PROCESSES, got {rank} and {n}"
            )
        if n == 1:
            return 0, 1
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes=n, process_id=rank)
    elif "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named `"batch"` over `devices` (default: all devices, all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def _replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Array leaves as global arrays held whole by every device of `mesh`."""
    sharding = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(lambda x: place(x) if eqx.is_array(x) else x, tree)


def _to_host(tree: PyTree) -> PyTree:
    """Global (replicated) array leaves as numpy arrays on this process."""

    def get(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if leaf.is_fully_addressable:
            return np.asarray(leaf)
        if leaf.sharding.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree_util.tree_map(get, tree)


def _place_batches(data: PyTree, perm: np.ndarray, mesh: Mesh) -> PyTree:
    """Leaves `(n, ...)` -> global `(n_batches, batch, ...)` arrays split along `batch`;
    each device receives only its rows, gathered on the host from `perm`."""
    sharding = NamedSharding(mesh, PartitionSpec(None, AXIS))

    def place(a):
        def rows(index):
            return a[perm[index[0], index[1]]][(slice(None), slice(None), *index[2:])]

        return jax.make_array_from_callback((*perm.shape, *a.shape[1:]), sharding, rows)

    return jax.tree_util.tree_map(place, data)


def _make_epoch(loss_fn, optimizer, mesh: Mesh):
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(AXIS))

    @eqx.filter_jit
    def epoch(model, opt_state, batches):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def step(carry, batch):
            params, opt_state = carry
            batch = jax.lax.with_sharding_constraint(batch, split)

            def loss_of(p):
                return loss_fn(eqx.combine(p, static), batch)

            loss, grads = jax.value_and_grad(loss_of)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            carry = (optax.apply_updates(params, updates), opt_state)
            return jax.lax.with_sharding_constraint(carry, replicated), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        losses = jax.lax.with_sharding_constraint(losses, replicated)
        return eqx.combine(params, static), opt_state, losses

    return epoch


def fit_distributed(
    model: eqx.Module,
    loss_fn: Callable[[eqx.Module, PyTree], Array],
    train: PyTree,
    valid: PyTree | None = None,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: PRNGKeyArray,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    mesh: Mesh | None = None,
) -> tuple[eqx.Module, dict[str, list]]:
    """`surrogate.training.fit`, data-parallel over `mesh` (default `data_mesh()`).

    Same arguments, minibatches (epoch e shuffles with `fold_in(key, e)`), loss, history
    and checkpoint format as `fit`, so a checkpoint of one resumes in the other.
    `batch_size` is the global batch, split evenly over the mesh's devices. Every process
    calls this with the same model, data and key; process 0 alone writes the checkpoint
    (on a file system all processes see, for `resume`). Returns the trained model as local
    arrays of this process, and the history.
    """
    mesh = data_mesh() if mesh is None else mesh
    n, batch_size = check_arguments(train, valid, epochs, batch_size)
    if batch_size % mesh.size:
        raise ValueError(
            f"the global batch_size {batch_size} must be a multiple of the {mesh.size} "
            f"devices of the mesh"
        )
    if jax.process_count() > 1:
        try:
            multihost_utils.assert_equal(np.array([n, batch_size, epochs]))
        except AssertionError:
            raise ValueError("processes disagree on the number of samples or settings") from None
    train = jax.tree_util.tree_map(np.asarray, train)

    params = eqx.filter(model, eqx.is_inexact_array)
    if jax.process_count() > 1:  # start from process 0's parameters, whatever the others hold
        params = jax.tree_util.tree_map(jnp.asarray, multihost_utils.broadcast_one_to_all(params))
        model = eqx.combine(params, eqx.filter(model, eqx.is_inexact_array, inverse=True))
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    model, opt_state, start, history = restore(model, opt_state, checkpoint, resume)

    model, opt_state = _replicate((model, opt_state), mesh)
    valid_g = _replicate(valid, mesh) if valid is not None else None
    epoch = _make_epoch(loss_fn, optimizer, mesh)
    evaluate = _make_eval(loss_fn, batch_size)

    def run_epoch(e, model, opt_state):
        perm = np.asarray(minibatches(jax.random.fold_in(key, e), n, batch_size))
        new_model, new_state, losses = epoch(model, opt_state, _place_batches(train, perm, mesh))
        return new_model, new_state, float(np.mean(_to_host(losses)))

    def validate(model):
        return float(_to_host(evaluate(model, valid_g, _n_samples(valid))))

    model, _, history = epoch_loop(
        model, opt_state, run_epoch, None if valid is None else validate,
        start=start, epochs=epochs, history=history, checkpoint=checkpoint,
        progress=progress, callback=callback, lead=jax.process_index() == 0, to_host=_to_host,
    )  # fmt: skip
    return _local(model), history


def _local(model: eqx.Module) -> eqx.Module:
    """A model whose arrays live on this process's default device."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x, _to_host(model)
    )
