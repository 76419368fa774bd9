"""Dataset generation on a Dask cluster: one task per shard, then one merge.

Each task runs `generate_shard` on a worker and writes its own shard file (the workers and
this process must see the same file system, as on a cluster with a shared `$HOME` or
scratch); nothing but file names travels back to the client. Shards already complete on
disk are skipped, so re-running the same command after a failure finishes the job.
Dask is an optional dependency (`pip install "surrogate-jax[dask]"`), imported only here.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ._shards import generate_shard, merge_shards, shard_path

if TYPE_CHECKING:
    from ..problems import Problem

#: how long to wait for the first worker of an external scheduler (seconds)
WORKER_TIMEOUT = 300


def require_distributed():
    """`dask.distributed`, or an `ImportError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "the Dask back-end needs dask.distributed, which is not installed; "
            "pip install 'surrogate-jax[dask]'"
        ) from None
    return distributed


def _local_workers(address: str) -> int:
    """ "local" -> one worker per CPU core; "local:N" -> N workers."""
    if address == "local":
        return os.cpu_count() or 1
    try:
        n = int(address.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--dask {address!r}: expected local, local:N with N >= 1, or an address")
    return n


@contextlib.contextmanager
def dask_client(address: str = "local") -> Iterator:
    """A `distributed.Client` for `address`, closed on exit.

    `"local"` / `"local:N"` start a `LocalCluster` of N single-threaded worker processes
    (JAX uses its own threads inside a process; one Python thread per worker avoids two
    solves fighting over a core). Anything else is a scheduler address such as
    `tcp://10.0.0.1:8786`, e.g. one started by dask-jobqueue's `SLURMCluster`.
    """
    distributed = require_distributed()
    if address == "local" or address.startswith("local:"):
        n = _local_workers(address)
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        with distributed.Client(address, timeout=60) as client:
            yield client


def generate_sharded(
    problem: Problem,
    n_total: int,
    *,
    seed: int,
    out: str | os.PathLike,
    client,
    n_shards: int | None = None,
    shard_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    overwrite: bool = False,
    keep_shards: bool = False,
    on_shard: Callable[[int, int, bool], None] | None = None,
) -> Path:
    """Generate an `n_total`-sample dataset of `problem` as Dask tasks and merge it to `out`.

    `n_shards` defaults to the number of workers. Shard files go to `shard_dir` (default
    `OUT.shards/`) and are deleted after a successful merge unless `keep_shards`. If a task
    fails, the shards that finished stay on disk and the error names the failed shard.
    `on_shard(i, n, generated)` is called as each shard finishes.
    """
    distributed = require_distributed()
    out = Path(out).resolve()
    if n_shards is None:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        n_shards = max(1, min(n_total, len(client.scheduler_info()["workers"])))
    if n_shards < 1:
        raise ValueError(f"number of shards must be >= 1, got {n_shards}")
    if n_shards > n_total:
        raise ValueError(f"{n_shards} shards of {n_total} samples: some would be empty")
    shard_dir = Path(shard_dir).resolve() if shard_dir else out.with_name(out.name + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    paths = [shard_path(shard_dir, i, n_shards) for i in range(n_shards)]
    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            generate_shard,
            problem,
            n_total,
            seed=seed,
            shard=i,
            n_shards=n_shards,
            out=str(p),
            batch_size=batch_size,
            overwrite=overwrite,
            key=f"surrogate-shard-{i}-of-{n_shards}-{run}",
            pure=False,
        ): i
        for i, p in enumerate(paths)
    }
    failed = []
    for future in distributed.as_completed(futures):
        i = futures[future]
        if future.status == "error":
            failed.append((i, future.exception()))
        elif on_shard is not None:
            on_shard(i, n_shards, future.result()[1])
    if failed:
        i, err = min(failed, key=lambda f: f[0])
        message = (
            f"shard {i}/{n_shards} failed ({len(failed)} of {n_shards} failed): {err}; "
            f"finished shards are kept in {shard_dir}, re-run to complete"
        )
        kind = next((t for t in (ValueError, OSError) if isinstance(err, t)), RuntimeError)
        raise kind(message)
    merge_shards(paths, out)
    if not keep_shards:
        for p in paths:
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            shard_dir.rmdir()
    return out
