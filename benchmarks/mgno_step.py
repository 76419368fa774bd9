"""Time one Adam step of MgNO: the fast path against the first implementation, same run.

    python benchmarks/mgno_step.py [--quick] [--repeats 7] [--profile]

Darcy's configuration (He et al. 2024): B = 20 samples of s = 85 points per axis, width 32,
5 layers, 4 levels, one smoothing step, zero padding; MSE loss against sin(x), Adam(1e-3),
float32, all CPU threads. "fast" is `MgNO.__call__` (channels-last fields, transfers with
their own gradients, see surrogate/operators/_multigrid.py); "reference" is
`MgNO._reference`, the channels-first V-cycle the fast path replaced, on the same weights.
Both are compiled first (compile time reported apart), then their steps alternate, the
order swapped every round, so that other work on a shared machine slows both alike. We
report the median wall time, its minimum, the median CPU time of this process (and the
system part of it, with the minor page faults per step), and the load average before and
after.

Where the time goes besides the arithmetic: XLA's CPU runtime allocates each step's
temporaries afresh (818 MB for the fast step, `memory_analysis()`), glibc's malloc maps
blocks that large straight from the kernel, and the kernel faults in and zeroes every page
on first touch, every step. For the reference that is ~2 M page faults and ~5 s of system
time per step. An allocator that keeps freed memory removes it (`LD_PRELOAD=` jemalloc
with `MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`): the JSON records LD_PRELOAD and
MALLOC_CONF when set. `--profile` adds the forward pass alone and a per-operation
breakdown of one fast step from `jax.profiler` (time summed over XLA's threads).

Prints one JSON line per implementation and one with their ratio on stdout (also appended
to benchmarks/results/mgno_step.jsonl), and a table on stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from _common import machine

from surrogate.operators import MgNO

CONFIG = dict(batch=20, grid=85, width=32, depth=5, levels=4, optimizer="adam", lr=1e-3)
IMPLS = ("reference", "fast")
RESULTS = Path(__file__).resolve().parent / "results" / "mgno_step.jsonl"


def _call(impl: str):
    return (lambda m, x: m(x)) if impl == "fast" else (lambda m, x: m._reference(x))


def make_step(impl: str, opt):
    """One Adam step `(model, state, x, y) -> (model, state, loss)`, not compiled."""
    call = _call(impl)

    def step(model, state, x, y):
        def loss(m):
            return jnp.mean((jax.vmap(lambda a: call(m, a))(x) - y) ** 2)

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, value

    return step


def _forward_ms(impl: str, model, x, repeats: int) -> float:
    call = _call(impl)
    fwd = eqx.filter_jit(lambda m, x: jax.vmap(lambda a: call(m, a))(x))
    jax.block_until_ready(fwd(model, x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fwd(model, x))
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _op_names(hlo: str) -> dict[str, str]:
    """HLO instruction name -> a short description (convolution window or op and shape)."""
    bodies, current = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^%?([\w.\-]+) \(.*\) -> .* \{$", line)
        if head:
            current = bodies.setdefault(head.group(1), [])
        elif current is not None:
            current.append(line)
    names = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*%([\w.\-]+) = (\S+) (\w+)\((.*)", line)
        if not m:
            continue
        name, shape, op, rest = m.groups()
        shape = shape.split("{")[0]
        called = re.search(r"calls=%([\w.\-]+)", rest)
        body = "\n".join(bodies.get(called.group(1), [])) if called else line
        conv = re.search(r"= (\S+) convolution\(.*window=\{([^}]*)\}", body)
        if conv:
            names[name] = f"conv -> {conv.group(1).split('{')[0]} [{conv.group(2)}]"
        elif re.search(r" dot\(", body):
            names[name] = f"dot -> {shape}"
        else:
            names[name] = f"{re.sub(r'[.0-9]+$', '', name)} -> {shape}"
    return names


def profile_step(step, model, state, x, y, top: int = 25) -> list[dict]:
    """Per-operation time of one step from a `jax.profiler` trace, largest first."""
    params, static = eqx.partition(model, eqx.is_array)
    run = jax.jit(lambda p, s, x, y: step(eqx.combine(p, static), s, x, y)[1:])
    names = _op_names(run.lower(params, state, x, y).compile().as_text())
    jax.block_until_ready(run(params, state, x, y))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready(run(params, state, x, y))
        (path,) = Path(d).rglob("*.xplane.pb")
        data = jax.profiler.ProfileData.from_file(str(path))
    total, count = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:
                    total[names[event.name]] += event.duration_ns
                    count[names[event.name]] += 1
    return [
        {"op": k, "ms": round(t / 1e6, 1), "count": count[k]} for k, t in total.most_common(top)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--profile", action="store_true", help="forward alone, op breakdown")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    c = CONFIG
    opt = optax.adam(c["lr"])
    model = MgNO(
        1, 1, ndim=2, width=c["width"], depth=c["depth"], levels=c["levels"], key=jax.random.key(0)
    )
    x = jax.random.normal(jax.random.key(1), (c["batch"], 1, c["grid"], c["grid"]))
    y = jnp.sin(x)
    n_parameters = sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    load_at_start = list(os.getloadavg())

    runs = {}
    for impl in IMPLS:
        # each implementation trains its own copy (the steps donate their inputs)
        params = jax.tree.map(jnp.copy, model)
        state = opt.init(eqx.filter(params, eqx.is_inexact_array))
        step = eqx.filter_jit(make_step(impl, opt), donate="all-except-first")
        t = time.perf_counter()
        params, state, value = step(params, state, x, y)
        jax.block_until_ready(value)
        runs[impl] = dict(step=step, carry=[params, state], compile_s=time.perf_counter() - t)
        runs[impl].update(wall=[], cpu=[], sys=[], faults=[], loss=float(value))
    for r in range(repeats):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            run = runs[impl]
            w, p = time.perf_counter(), time.process_time()
            u = resource.getrusage(resource.RUSAGE_SELF)
            params, state, value = run["step"](*run["carry"], x, y)
            jax.block_until_ready(value)
            run["wall"].append(time.perf_counter() - w)
            run["cpu"].append(time.process_time() - p)
            v = resource.getrusage(resource.RUSAGE_SELF)
            run["sys"].append(v.ru_stime - u.ru_stime)
            run["faults"].append(v.ru_minflt - u.ru_minflt)
            run["carry"] = [params, state]
    load_at_end = list(os.getloadavg())

    config = {**c, "dtype": "float32", "smoothing": 1, "padding": "zero", "loss": "mse"}
    lines = []
    for impl in IMPLS:
        run = runs[impl]
        line = {
            "name": "mgno_step",
            "impl": impl,
            "config": config,
            "repeats": repeats,
            "step_ms": round(1e3 * statistics.median(run["wall"]), 1),
            "step_min_ms": round(1e3 * min(run["wall"]), 1),
            "step_cpu_ms": round(1e3 * statistics.median(run["cpu"]), 1),
            "step_sys_ms": round(1e3 * statistics.median(run["sys"]), 1),
            "step_page_faults": int(statistics.median(run["faults"])),
            "compile_s": round(run["compile_s"], 1),
            "first_loss": run["loss"],
            "parameters": n_parameters,
        }
        if args.profile:
            line["forward_ms"] = round(_forward_ms(impl, model, x, repeats), 1)
        lines.append(line)
    ref, fast = lines
    ratio = {
        "name": "mgno_step_ratio",
        "config": config,
        "speedup_wall": round(ref["step_ms"] / fast["step_ms"], 2),
        "speedup_wall_min": round(ref["step_min_ms"] / fast["step_min_ms"], 2),
        "speedup_cpu": round(ref["step_cpu_ms"] / fast["step_cpu_ms"], 2),
        "load_average_start": load_at_start,
        "load_average_end": load_at_end,
        "allocator": {k: os.environ[k] for k in ("LD_PRELOAD", "MALLOC_CONF") if k in os.environ},
        "machine": machine(),
    }
    if args.profile:
        ratio["speedup_forward"] = round(ref["forward_ms"] / fast["forward_ms"], 2)
        params = jax.tree.map(jnp.copy, model)
        state = opt.init(eqx.filter(params, eqx.is_inexact_array))
        ratio["fast_step_ops"] = profile_step(make_step("fast", opt), params, state, x, y)
    lines.append(ratio)

    for line in lines[:2]:
        print(
            f"{line['impl']:>9}: step {line['step_ms']:8.1f} ms (min {line['step_min_ms']:.1f},"
            f" cpu {line['step_cpu_ms']:.1f} of which system {line['step_sys_ms']:.1f}, "
            f"{line['step_page_faults']} page faults), compile {line['compile_s']:.1f} s",
            file=sys.stderr,
        )
    print(
        f"speed-up {ratio['speedup_wall']}x wall, {ratio['speedup_cpu']}x cpu; "
        f"load {load_at_start[0]:.1f} -> {load_at_end[0]:.1f}",
        file=sys.stderr,
    )
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        for line in lines:
            print(json.dumps(line))
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
