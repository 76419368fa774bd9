"""The SSM family side by side: S4D, S5, S4 (DPLR) and Hydra on long memory and on an
irregularly sampled series, plus the speed of S5's two kernels.

Tasks (`--tasks`, comma-separated):

* `delay`: y_t = u_{t−d} with d = L/4, u a smoothed white noise of unit variance (a moving
  average over `--smooth` steps, so that a finite state can hold the lagged signal), at
  L = 1024 and 4096. Every layer is an `SSMStack(1, 1, width, depth, state_size,
  layer=...)` trained with the same budget (steps, batch, Adam learning rate, width, depth);
  the state size is N per channel for S4D and S4, the size of B_k, C_k for Hydra, and
  S5's one state shared by all channels is `--s5-state-size` (128: about the others'
  parameter count). Hydra, which sees the whole sequence, is bidirectional, the others
  causal.
  Reported per layer and L: test MSE over t >= d relative to Var u (1: the zero
  predictor), forward + backward time of one training batch, parameters, training time.
* `irregular`: a one-level Lorenz '96 X series (K = 8, F = 8, `surrogate.solvers`)
  observed at irregular times (each step of dt = 0.01 kept with probability 0.1: gaps
  of 0.1 time units on average) with 30 % of the values missing; from a window of 64
  observations, forecast the next one (at its known time). S5 with per-step Δ (the time
  increments), S4D and S4 with their fixed Δ (the same inputs: values with zeros where
  missing, the mask, the gap to the next observation; Hydra, bidirectional, would see the
  value it forecasts and is left out), and the linear continuous-discrete SSM of
  `surrogate.nde` (Kalman filter, trained by its exact log-likelihood) and the locally
  linear one (4 mixed drift matrices, an MLP of width 32, extended Kalman filter through
  diffrax at rtol 1e-3; `--neural-cdssm 0` leaves it out), with persistence
  (the last observed value) as the floor. RMSE in units of X's std on the values observed
  at the forecast time.
* `kernels`: S5's sequential and associative scans, forward + backward, batch 16, H = 64,
  N = 64: the measurement behind `select_s5_kernel`.

Prints one JSON line per result (each states its settings) and appends them to
`benchmarks/results/ssm_family.jsonl`; a table on stderr.
    python benchmarks/ssm_family.py [--tasks delay,irregular,kernels] [--lengths 1024,4096]
        [--steps 400] [--batch 8] [--width 32] [--depth 2] [--state-size 64]
        [--s5-state-size 128] [--lr 5e-3] [--irregular-steps 500]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import ROOT, emit, machine, median_time

from surrogate.nde import LinearCDSSM, NeuralCDSSM
from surrogate.solvers.lorenz96 import Lorenz96OneLevel
from surrogate.ssm import LAYERS, S5, SSMStack, select_s5_kernel

OUT = ROOT / "benchmarks" / "results" / "ssm_family.jsonl"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def n_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))))


def fit(model, loss, sample, steps: int, lr: float, key):
    """Adam (clipped at norm 1) for `steps` batches drawn by `sample(key)`; one compiled
    step. Returns the model, the training losses, the median forward + backward time of
    one batch and the training wall time (after compilation)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    grad_fn = jax.value_and_grad(lambda p, batch: loss(eqx.combine(p, static), batch))

    @jax.jit
    def step(params, state, batch):
        value, grads = grad_fn(params, batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    fwd_bwd = jax.jit(grad_fn)
    sample = jax.jit(sample)
    keys = jax.random.split(key, steps)
    batch = sample(keys[0])
    ms = 1e3 * median_time(lambda: jax.block_until_ready(fwd_bwd(params, batch)), 3, warmup=1)
    state, losses = opt.init(params), []
    step = step.lower(params, state, batch).compile()  # compile outside the timed loop
    t0 = time.perf_counter()
    for k in keys:
        params, state, value = step(params, state, sample(k))
        losses.append(value)
    losses = [float(v) for v in jax.block_until_ready(losses)]
    return eqx.combine(params, static), losses, ms, time.perf_counter() - t0


# ---- delay --------------------------------------------------------------------------------


def delay_batch(key, n: int, length: int, delay: int, smooth: int):
    """u: white noise averaged over `smooth` steps, unit variance; y_t = u_{t−d}."""
    w = jax.random.normal(key, (n, length + delay + smooth - 1))
    u = jax.vmap(lambda z: jnp.convolve(z, jnp.ones(smooth) / math.sqrt(smooth), "valid"))(w)
    return u[:, delay:, None], u[:, :length, None]  # input from t = 0, target u_{t−d}


def delay_task(args, layer: str, length: int) -> dict:
    delay = length // 4
    n = args.s5_state_size if layer == "s5" else args.state_size
    model = SSMStack(1, 1, args.width, args.depth, n, layer=layer,
                     bidirectional=layer == "hydra", key=jax.random.key(args.seed))  # fmt: skip

    def loss(m, batch):
        u, y = batch
        pred = jax.vmap(m)(u)
        return jnp.mean((pred[:, delay:] - y[:, delay:]) ** 2)

    def sample(key):
        return delay_batch(key, args.batch, length, delay, args.smooth)

    model, losses, ms, train_s = fit(model, loss, sample, args.steps, args.lr,
                                     jax.random.key(args.seed + 1))  # fmt: skip
    test = delay_batch(jax.random.key(10**6 + args.seed), args.test, length, delay, args.smooth)
    mse = float(eqx.filter_jit(loss)(model, test))
    return {
        "task": "delay",
        "layer": layer,
        "length": length,
        "delay": delay,
        "state_size": n,
        "test_relative_mse": mse,  # Var u = 1
        "train_loss_last10": float(np.mean(losses[-10:])),
        "fwd_bwd_ms_per_batch": ms,
        "params": n_params(model),
        "train_s": train_s,
    }


# ---- irregular ----------------------------------------------------------------------------


def lorenz_observations(seed: int, n_windows: int, window: int, keep: float, missing: float):
    """Windows of `window + 1` irregular observations of one Lorenz '96 trajectory: times,
    values (normalised later), mask (True: observed). One trajectory per call."""
    system = Lorenz96OneLevel(8, forcing=8.0, dt=0.01)
    rng = np.random.default_rng(seed)
    x0 = system.initial_state(key=jax.random.key(seed))
    n_obs = n_windows * (window + 1)
    n_fine = int(1.3 * n_obs / keep) + 1000
    xs = np.asarray(system.trajectory(x0, n_fine), np.float64)[1000:]  # off the transient
    fine = np.flatnonzero(rng.random(len(xs)) < keep)[:n_obs]
    if len(fine) < n_obs:
        raise RuntimeError("trajectory too short for the requested windows")
    times = fine * system.dt
    values = xs[fine]
    mask = rng.random(values.shape) >= missing
    shape = (n_windows, window + 1)
    return times.reshape(shape), values.reshape(*shape, 8), mask.reshape(*shape, 8)


def _features(times, values, mask, mean_gap):
    """SSM inputs for every step but the last (which is the target) and S5's increments."""
    gaps = np.diff(times, axis=1) / mean_gap  # gap from step k to step k + 1
    dt = np.concatenate([np.ones_like(gaps[:, :1]), gaps[:, :-1]], axis=1)  # into step k
    x = np.where(mask, values, 0.0)[:, :-1]
    inputs = np.concatenate([x, mask[:, :-1].astype(float), gaps[..., None]], axis=-1)
    return inputs.astype(np.float32), dt.astype(np.float32)


def irregular_task(args) -> list[dict]:
    window, keep, missing = 64, 0.1, 0.3
    train = lorenz_observations(args.seed, args.irregular_windows, window, keep, missing)
    test = lorenz_observations(args.seed + 1000, args.irregular_test, window, keep, missing)
    mean, std = train[1].mean(), train[1].std()
    mean_gap = np.diff(train[0], axis=1).mean()
    data = {}
    for name, (t, v, m) in (("train", train), ("test", test)):
        v = (v - mean) / std
        inputs, dt = _features(t, v, m, mean_gap)
        data[name] = dict(times=t, values=v, mask=m, inputs=inputs, dt=dt)
    target = jnp.asarray(data["test"]["values"][:, -1], jnp.float32)
    target_mask = jnp.asarray(data["test"]["mask"][:, -1])

    def rmse(pred):
        err = jnp.where(target_mask, pred - target, 0.0)
        return float(jnp.sqrt(jnp.sum(err**2) / jnp.sum(target_mask)))

    # persistence: the last observed value of each component in the window
    v, m = data["test"]["values"][:, :-1], data["test"]["mask"][:, :-1]
    last = np.array([[v[i, np.flatnonzero(m[i, :, j])[-1], j] if m[i, :, j].any() else 0.0
                      for j in range(8)] for i in range(len(v))])  # fmt: skip
    common = {"task": "irregular", "window": window, "keep_probability": keep,
              "missing": missing, "train_windows": args.irregular_windows,
              "test_windows": args.irregular_test, "steps": args.irregular_steps}  # fmt: skip
    results = [{**common, "model": "persistence", "forecast_rmse": rmse(jnp.asarray(last))}]

    tr = {k: jnp.asarray(data["train"][k]) for k in ("inputs", "dt", "values", "mask")}
    n_train = tr["inputs"].shape[0]

    def sample(key):
        return jax.tree.map(lambda a: a[jax.random.randint(key, (args.batch,), 0, n_train)], tr)

    # Hydra is left out: it is bidirectional, so its output at step k would see the value
    # it is trained to forecast (the input at step k + 1)
    for layer in ("s5", "s4d", "s4"):
        n = args.s5_state_size if layer == "s5" else args.state_size
        model = SSMStack(17, 8, args.width, args.depth, n, layer=layer,
                         key=jax.random.key(args.seed))  # fmt: skip
        per_step = layer == "s5"

        def predict(m, inputs, dt, per_step=per_step):
            call = (lambda u, d: m(u, dt=d)) if per_step else (lambda u, d: m(u))
            return jax.vmap(call)(inputs, dt)

        def loss(m, batch, predict=predict):
            pred = predict(m, batch["inputs"], batch["dt"])
            nxt, obs = batch["values"][:, 1:], batch["mask"][:, 1:]
            return jnp.sum(jnp.where(obs, pred - nxt, 0.0) ** 2) / jnp.sum(obs)

        model, losses, ms, train_s = fit(model, loss, sample, args.irregular_steps, args.lr,
                                         jax.random.key(args.seed + 2))  # fmt: skip
        te = data["test"]
        pred = eqx.filter_jit(predict)(model, jnp.asarray(te["inputs"]), jnp.asarray(te["dt"]))
        results.append({**common, "model": layer + (" (per-step Δ)" if per_step else
                                                    " (fixed Δ)"),
                        "forecast_rmse": rmse(pred[:, -1]), "params": n_params(model),
                        "fwd_bwd_ms_per_batch": ms, "train_s": train_s})  # fmt: skip

    linear = LinearCDSSM(args.cdssm_state, 8, key=jax.random.key(args.seed))
    results.append(cdssm_result(args, linear, "cdssm (LinearCDSSM, Kalman)", data, rmse, common))
    if args.neural_cdssm:
        neural = NeuralCDSSM(args.cdssm_state, 8, 32, n_matrices=4, rtol=1e-3, atol=1e-4,
                             key=jax.random.key(args.seed))  # fmt: skip
        name = "cdssm (NeuralCDSSM, extended Kalman)"
        results.append(cdssm_result(args, neural, name, data, rmse, common))
    return results


def cdssm_result(args, model, name: str, data, rmse, common) -> dict:
    tr = {k: jnp.asarray(data["train"][k][:, :-1]) for k in ("times", "values", "mask")}
    tr["times"] = tr["times"] - tr["times"][:, :1]  # each window from its own t = 0
    n_train = tr["times"].shape[0]

    def loss(m, batch):
        ll = jax.vmap(m.log_likelihood)(batch["times"], batch["values"], batch["mask"])
        return -jnp.sum(ll) / jnp.sum(batch["mask"])  # per observed value

    def sample(key):
        return jax.tree.map(lambda a: a[jax.random.randint(key, (args.batch,), 0, n_train)], tr)

    model, losses, ms, train_s = fit(model, loss, sample, args.irregular_steps, args.lr,
                                     jax.random.key(args.seed + 3))  # fmt: skip
    te = data["test"]
    times = jnp.asarray(te["times"] - te["times"][:, :1])

    @eqx.filter_jit
    def forecast(m):
        def one(t, v, mk):
            return m.forecast(t[:-1], v[:-1], mk[:-1], t[-1:])[0][0]

        return jax.vmap(one)(times, jnp.asarray(te["values"]), jnp.asarray(te["mask"]))

    return {**common, "model": name, "state_size": args.cdssm_state,
            "forecast_rmse": rmse(forecast(model)), "params": n_params(model),
            "fwd_bwd_ms_per_batch": ms, "train_s": train_s}  # fmt: skip


# ---- kernels ------------------------------------------------------------------------------


def _mean_square(model, u):
    return jnp.mean(jax.vmap(model)(u) ** 2)


def kernels_task(args) -> list[dict]:
    h, n, batch = 64, 64, 16
    out = []
    for length in [int(s) for s in args.kernel_lengths.split(",")]:
        u = jax.random.normal(jax.random.key(1), (batch, length, h))
        row = {"task": "kernels", "length": length, "channels": h, "state_size": n,
               "batch": batch, "auto_picks_cpu": select_s5_kernel(length, "cpu")}  # fmt: skip
        for kernel in ("scan", "assoc"):
            layer = S5(h, n, kernel=kernel, key=jax.random.key(0))
            f = eqx.filter_jit(
                eqx.filter_value_and_grad(lambda m, u: jnp.mean(jax.vmap(m)(u) ** 2))
            )
            row[f"{kernel}_ms"] = 1e3 * median_time(
                lambda f=f, layer=layer: jax.block_until_ready(f(layer, u)), args.repeats
            )
        row["fastest"] = min(("scan", "assoc"), key=lambda k: row[f"{k}_ms"])
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="delay,irregular,kernels")
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--lengths", default="1024,4096")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--state-size", type=int, default=64, help="S4D, S4 (per channel), Hydra")
    p.add_argument("--s5-state-size", type=int, default=128, help="S5's one shared state")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--smooth", type=int, default=16)
    p.add_argument("--test", type=int, default=64)
    p.add_argument("--irregular-windows", type=int, default=256)
    p.add_argument("--irregular-test", type=int, default=256)
    p.add_argument("--irregular-steps", type=int, default=500)
    p.add_argument("--cdssm-state", type=int, default=8)
    p.add_argument("--neural-cdssm", type=int, default=1, help="0: without NeuralCDSSM")
    p.add_argument("--kernel-lengths", default="64,256,1024,4096")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    info = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), time.process_time()

    def report(result: dict) -> None:
        record = {"name": "ssm_family", **result, "settings": settings, "machine": info}
        emit(record)
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in result.items()))  # fmt: skip

    if "kernels" in tasks:
        for r in kernels_task(args):
            report(r)
    if "delay" in tasks:
        for length in [int(s) for s in args.lengths.split(",")]:
            for layer in args.layers.split(","):
                report(delay_task(args, layer, length))
    if "irregular" in tasks:
        for r in irregular_task(args):
            report(r)
    # CPU seconds of this process: on a shared machine a better measure of the work than wall
    report({"task": "total", "tasks": tasks, "wall_s": time.perf_counter() - t_start,
            "cpu_s": time.process_time() - cpu_start})  # fmt: skip


if __name__ == "__main__":
    main()
