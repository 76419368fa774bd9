"""Dataset generation throughput: one process (vmapped batches) vs Dask with 1 and 2 workers.

    python benchmarks/generation_scaling.py [--n 256] [--resolution 256] [--quick]

Burgers (ν = 0.1, T = 1) at a modest resolution. Measured, in samples per second:
- `in_process_solve`: the compiled, vmapped reference solve alone (steady state);
- `in_process_generate`: `generate` + `write_dataset` as `surrogate generate` runs them
  (one compilation per call included);
- `dask_1`, `dask_2`: `generate_sharded` on a `LocalCluster` of 1 and 2 single-threaded
  worker processes, one shard per worker (each shard compiles its solve, writes its file;
  then one merge), after a warm-up run that starts the workers and imports JAX there.
Parallel efficiency = speedup of 2 workers over 1, divided by 2.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
from _common import emit, machine, median_time

from surrogate import problems
from surrogate.data import write_dataset
from surrogate.hpc import dask_client, generate_sharded
from surrogate.problems import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256, help="samples per timed run")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 samples at 128 points, once")
    args = parser.parse_args()
    if args.quick:
        args.n, args.resolution, args.repeats = 32, 128, 1
    problem = problems.get("burgers", resolution=args.resolution)
    results: dict = {}

    key = jax.random.key(0)
    inputs = problem.sample_inputs(key, args.batch_size)
    solve = eqx.filter_jit(lambda batch: jax.vmap(problem.solve)(batch))
    t = median_time(lambda: jax.block_until_ready(solve(inputs)), args.repeats)
    results["in_process_solve"] = args.batch_size / t

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "serial.nc"

        def serial():
            write_dataset(generate(problem, args.n, seed=0, batch_size=args.batch_size), out)

        results["in_process_generate"] = args.n / median_time(serial, args.repeats, warmup=1)
        for workers in (1, 2):
            with dask_client(f"local:{workers}") as client:

                def sharded(n=args.n, workers=workers, client=client):
                    generate_sharded(
                        problem,
                        n,
                        seed=0,
                        out=Path(tmp) / f"dask{workers}.nc",
                        client=client,
                        n_shards=workers,
                        batch_size=args.batch_size,
                        overwrite=True,
                    )

                t0 = time.perf_counter()
                sharded(n=2 * workers)  # warm-up: workers import surrogate and JAX
                results[f"dask_{workers}_warmup_s"] = time.perf_counter() - t0
                results[f"dask_{workers}"] = args.n / median_time(sharded, args.repeats, warmup=0)
    speedup = results["dask_2"] / results["dask_1"]
    emit(
        {
            "name": "generation_scaling",
            "config": {
                "problem": "burgers",
                "options": problem.options(),
                "n_samples": args.n,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "quick": args.quick,
            },
            "machine": machine(),
            "samples_per_second": {
                k: round(v, 3) for k, v in results.items() if not k.endswith("_s")
            },
            "warmup_seconds": {k: round(v, 2) for k, v in results.items() if k.endswith("_s")},
            "speedup_2_workers": round(speedup, 3),
            "parallel_efficiency_2_workers": round(speedup / 2, 3),
            "dask_2_vs_in_process_generate": round(
                results["dask_2"] / results["in_process_generate"], 3
            ),
            "note": "compilation included in every figure but in_process_solve; "
            "efficiency 1.0 is ideal",
        }
    )


if __name__ == "__main__":
    main()
