"""Speed of the diagonal SSM kernels: forward + backward of one S4D layer, H = 256, N = 64.

Compares the FFT convolution, the chunked `lax.scan`, the chunked `associative_scan`, their
step-by-step forms (chunk = 1), and a plain JAX S4D layer written here as the baseline
(complex arithmetic, one `lax.scan` step per time step: the layer before this work). Each
variant is compiled, warmed up and timed on its own (round-robin timing let the step-wise
forms' gigabytes of residuals slow the next variant down by up to 2x); we report the median
wall time, its minimum, and the median CPU time of this process, which is less sensitive to
other processes on a shared machine. Compare with the load average in "machine". The two
parts of the FFT layer (Vandermonde kernel, FFT convolution) are timed apart in "fft_parts".

Prints one JSON line on stdout and a table on stderr.
    python benchmarks/ssm_kernels.py [--quick] [--lengths 256,1024] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from surrogate.ssm import DiagonalSSM, causal_conv, select_kernel, ssm_kernel

# name, kernel, chunk; the baseline is `plain_s4d_layer` below.
VARIANTS = (
    ("baseline", None, None),
    ("scan_1", "scan", 1),
    ("assoc_1", "assoc", 1),
    ("fft", "fft", 1),
    ("scan_32", "scan", 32),
    ("assoc_32", "assoc", 32),
    ("scan_64", "scan", 64),
)
# The step-by-step associative scan holds (L, H, N/2) complex arrays at every level: 4 GB
# of residuals and 4 s a call at L = 4096.
MAX_PLAIN_ASSOC = 4096


def plain_s4d_layer(layer: DiagonalSSM, u: jax.Array) -> jax.Array:
    """The reference point: S4D by a complex `lax.scan`, one step per sample."""
    lam = jax.lax.complex(-jnp.exp(layer.log_neg_real), layer.imag)
    b = jax.lax.complex(layer.b[..., 0], layer.b[..., 1])
    c = jax.lax.complex(layer.c[..., 0], layer.c[..., 1])
    dt_lam = jnp.exp(layer.log_dt)[:, None] * lam
    a_bar = jnp.exp(dt_lam)
    b_bar = (a_bar - 1.0) / lam * b

    def step(x, u_t):
        x = a_bar * x + b_bar * u_t[:, None]
        return x, 2.0 * jnp.real(jnp.sum(c * x, axis=1))

    _, y = jax.lax.scan(step, jnp.zeros_like(a_bar), u)
    return y + u * layer.d[None, :]


def _loss(layer, u, baseline: bool):
    y = plain_s4d_layer(layer, u) if baseline else layer(u)
    return jnp.mean(y**2)


def make_step(baseline: bool):
    @eqx.filter_jit
    def forward_backward(layer, u):
        return eqx.filter_value_and_grad(_loss)(layer, u, baseline)

    return forward_backward


def _time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def fft_parts(layer: DiagonalSSM, u: jax.Array, repeats: int) -> dict[str, float]:
    """Forward + backward time (ms) of the two parts of the FFT kernel."""
    length = u.shape[0]
    kernel = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda m: jnp.mean(ssm_kernel(m.discretize(), length) ** 2))
    )
    k = ssm_kernel(layer.discretize(), length)
    conv = jax.jit(jax.value_and_grad(lambda u, k: jnp.mean(causal_conv(u, k) ** 2), (0, 1)))
    return {
        "vandermonde_kernel_ms": _time(kernel, layer, repeats=repeats),
        "fft_convolution_ms": _time(conv, u, k, repeats=repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L in 256, 1024; 3 rounds")
    parser.add_argument("--lengths", default="256,1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--state-size", type=int, default=64)
    parser.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    args = parser.parse_args()
    lengths = [256, 1024] if args.quick else [int(s) for s in args.lengths.split(",")]
    repeats = 3 if args.quick else args.repeats
    chosen = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    h, n = args.channels, args.state_size

    load_at_start = list(os.getloadavg())
    results, parts = [], {}
    for length in lengths:
        u = jax.random.normal(jax.random.key(1), (length, h), jnp.float32)
        parts[str(length)] = fft_parts(DiagonalSSM(h, n, key=jax.random.key(0)), u, repeats)
        for name, kernel, chunk in chosen:
            if name == "assoc_1" and length > (256 if args.quick else MAX_PLAIN_ASSOC):
                continue
            layer = DiagonalSSM(
                h, n, kernel=kernel or "scan", chunk=chunk or 1, key=jax.random.key(0)
            )
            fn = make_step(name == "baseline")
            t0 = time.perf_counter()
            jax.block_until_ready(fn(layer, u))  # compile and warm up
            first = time.perf_counter() - t0
            walls, cpus = [], []
            for _ in range(repeats if first < 10 else min(repeats, 3)):
                w, c = time.perf_counter(), time.process_time()
                jax.block_until_ready(fn(layer, u))
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            results.append(
                {
                    "length": length,
                    "variant": name,
                    "median_ms": 1e3 * float(np.median(walls)),
                    "min_ms": 1e3 * float(np.min(walls)),
                    "cpu_median_ms": 1e3 * float(np.median(cpus)),
                    "compile_and_first_s": first,
                    "repeats": len(walls),
                }
            )
            del fn, layer  # free the big residuals of the step-wise forms before the next

    table = {}
    for r in results:
        table.setdefault(r["length"], {})[r["variant"]] = r
    summary = {}
    for length, row in table.items():
        ours = {k: v for k, v in row.items() if k != "baseline"}
        fastest = min(ours, key=lambda k: ours[k]["median_ms"])
        fastest_cpu = min(ours, key=lambda k: ours[k]["cpu_median_ms"])
        entry = {
            "fastest": fastest,
            "fastest_by_cpu_time": fastest_cpu,
            "auto_picks": select_kernel(length, "cpu"),
        }
        if "baseline" in row:
            base = row["baseline"]
            entry["speedup_vs_baseline"] = base["median_ms"] / ours[fastest]["median_ms"]
            entry["speedup_vs_baseline_cpu_time"] = (
                base["cpu_median_ms"] / ours[fastest_cpu]["cpu_median_ms"]
            )
        summary[str(length)] = entry

    record = {
        "name": "ssm_kernels",
        "config": {
            "channels": h,
            "state_size": n,
            "modes": n // 2,
            "dtype": "float32",
            "lengths": lengths,
            "repeats": repeats,
            "measure": "value_and_grad of mean(y^2) "
            "wrt all layer parameters, jitted; median over repeated calls",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "results": results,
        "summary": summary,
        "fft_parts": parts,
    }
    print(json.dumps(record))

    names = [v[0] for v in chosen]
    print(
        f"{'L':>6} " + " ".join(f"{s:>10}" for s in names) + "   (median ms; cpu ms)",
        file=sys.stderr,
    )
    for length, row in table.items():
        cells = [f"{row[s]['median_ms']:10.1f}" if s in row else f"{'-':>10}" for s in names]
        cpu = [f"{row[s]['cpu_median_ms']:10.1f}" if s in row else f"{'-':>10}" for s in names]
        print(f"{length:>6} " + " ".join(cells), file=sys.stderr)
        print(f"{'cpu':>6} " + " ".join(cpu), file=sys.stderr)
        e = summary[str(length)]
        sp = e.get("speedup_vs_baseline", math.nan)
        pt = parts[str(length)]
        print(
            f"{'':>6} FFT layer parts: Vandermonde kernel {pt['vandermonde_kernel_ms']:.1f} ms, "
            f"FFT convolution {pt['fft_convolution_ms']:.1f} ms",
            file=sys.stderr,
        )
        print(
            f"{'':>6} fastest {e['fastest']} ({sp:.1f}x baseline), auto picks {e['auto_picks']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
