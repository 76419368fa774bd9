"""Data-parallel training of an FNO on a Burgers dataset over all devices of all processes.

    # one process (all local devices):
    python examples/hpc/train_distributed.py data.nc --out model.eqx
    # two processes on one machine (e.g. to try it; on CPU they talk through gloo):
    export SURROGATE_COORDINATOR=127.0.0.1:12355 SURROGATE_NUM_PROCESSES=2
    SURROGATE_PROCESS_ID=0 python examples/hpc/train_distributed.py data.nc --out m.eqx &
    SURROGATE_PROCESS_ID=1 python examples/hpc/train_distributed.py data.nc --out m.eqx
    # SLURM, one process per task (JAX reads the coordinator and ranks from SLURM):
    srun python examples/hpc/train_distributed.py data.nc --out model.eqx

Every process reads the whole dataset and builds the same model; each device gets its slice
of every global batch; process 0 writes the checkpoint and the model.
"""

from __future__ import annotations

import argparse

from surrogate.hpc import fit_distributed, initialize_distributed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--out", default="model.eqx")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch")
    args = parser.parse_args()
    rank, size = initialize_distributed()  # before any other JAX computation

    import jax
    import jax.numpy as jnp
    import optax

    import surrogate
    from surrogate.data import NormalizedModel, Normalizer, read_dataset
    from surrogate.operators import FNO
    from surrogate.problems import problem_of_dataset
    from surrogate.training import relative_l2

    ds = read_dataset(args.data)
    problem = problem_of_dataset(ds)
    data = problem.from_dataset(ds)
    x = jnp.asarray(problem.model_input(data), jnp.float32)
    y = jnp.asarray(problem.model_target(data), jnp.float32)
    in_norm, out_norm = Normalizer.fit(x), Normalizer.fit(y)
    net = FNO(x.shape[1], y.shape[1], modes=(8,), width=16, n_layers=3, key=jax.random.key(0))

    def loss(model, batch):
        pred = jax.vmap(lambda a: out_norm.decode(model(a)))(batch["x"])
        return relative_l2(pred, batch["y"])

    train = {"x": jax.vmap(in_norm.encode)(x), "y": y}
    net, history = fit_distributed(
        net,
        loss,
        train,
        optimizer=optax.adam(3e-3),
        epochs=args.epochs,
        batch_size=args.batch_size,
        key=jax.random.key(1),
        checkpoint=args.out + ".checkpoint",
        progress=rank == 0,
    )
    if rank == 0:
        surrogate.save(args.out, NormalizedModel(net, in_norm, out_norm))
        print(
            f"{size} process(es), {jax.device_count()} device(s): train loss "
            f"{history['train_loss'][0]:.4f} -> {history['train_loss'][-1]:.4f}; wrote {args.out}"
        )


if __name__ == "__main__":
    main()
