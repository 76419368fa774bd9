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


def other_runnable(looks: int = 5) -> int:
    """Runnable processes besides this one, the median of a few looks at /proc/loadavg
    (its fourth field is running/total); 0 where there is no /proc."""
    counts = []
    for _ in range(looks):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        counts.append(running - 1)
        time.sleep(0.2)
    return sorted(counts)[len(counts) // 2]


def peer_threads(option: str) -> int | None:
    """torch threads for the peer: None leaves torch's own choice (all cores)."""
    if option == "auto":
        busy = other_runnable()
        if busy:
            print(f"{busy} other process(es) running: the peer gets 1 thread", file=sys.stderr)
            return 1
        return None
    return int(option) or None


def emit(result: dict) -> None:
    print(json.dumps(result))
