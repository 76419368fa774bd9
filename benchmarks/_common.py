"""Shared helpers of the benchmark scripts: machine description, timing, peer venv."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "load_average": os.getloadavg()[0],
    }


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in seconds; `fn` must block until its result is ready."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_peer(script: str, args: dict, timeout: int = 1800) -> dict | None:
    """Run `script` in the peers' venv (`make bench-peers`); it prints one JSON line."""
    if not PEER_PYTHON.exists():
        print(f"peer venv missing ({PEER_PYTHON}); run `make bench-peers`", file=sys.stderr)
        return None
    r = subprocess.run(
        [str(PEER_PYTHON), "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    print(json.dumps(result))
