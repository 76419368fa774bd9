"""Generate a dataset with Dask workers started as SLURM jobs by dask-jobqueue.

    pip install "surrogate-jax[dask]" dask-jobqueue
    python examples/hpc/dask_slurm.py --n 10000 --out burgers.nc --jobs 8

Each SLURM job runs one single-threaded Dask worker process; each worker generates whole
shards (one task = one shard file in OUT.shards/, on a file system the nodes share), and
this process merges them. Re-running after a failure skips the shards already complete.
The same run on one machine, without SLURM: `surrogate generate burgers ... --dask local:4`.
Not run in CI (needs a SLURM cluster); adjust queue, account and resources to yours.
"""

from __future__ import annotations

import argparse

from surrogate import problems
from surrogate.hpc import generate_sharded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--out", default="burgers.nc")
    parser.add_argument("--jobs", type=int, default=8, help="SLURM jobs = Dask workers")
    parser.add_argument("--shards", type=int, default=64, help="tasks; several per worker")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    args = parser.parse_args()

    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=args.queue,
        cores=4,  # one worker process per job; JAX uses the job's cores inside it
        processes=1,
        memory="8GB",
        walltime="01:00:00",
        job_extra_directives=["--output=logs/dask-worker-%j.out"],
    )
    cluster.scale(jobs=args.jobs)
    problem = problems.get("burgers", resolution=1024, viscosity=0.1)
    with Client(cluster) as client:
        client.wait_for_workers(1)
        path = generate_sharded(
            problem,
            args.n,
            seed=0,
            out=args.out,
            client=client,
            n_shards=args.shards,
            on_shard=lambda i, n, new: print(f"shard {i}/{n}", "done" if new else "skipped"),
        )
    cluster.close()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
