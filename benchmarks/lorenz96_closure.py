"""Closures of the two-scale Lorenz '96 system: offline, forecast and climate skill.

    python benchmarks/lorenz96_closure.py [--quick] [--epochs 30] [--seed 0]

Arnold, Moroz & Palmer (2013) setting: K = 8, J = 32, h = 1, b = c = 10, F = 20; truth RK4
at dt = 0.001; the one-level model steps at Δt = 0.005 (RK4, closure coupled once per
step, the update the tendency-difference target reproduces exactly). Closures:

- no closure (U = 0);
- polynomial: the cubic of Arnold et al. fitted by least squares (the baseline);
- polynomial + AR(1): Arnold et al.'s additive AR(1) noise around it;
- MLP local (X_k -> U_k), MLP stencil (X_{k-2..k+2} -> U_k), FNO over the ring: trained
  offline on (X, U) pairs with `surrogate.applications.lorenz96.fit_closure` (Adam, cosine decay);
- MLP stencil + AR(1).

Metrics: offline MSE / R² of U on held-out truth; ensemble-mean forecast RMSE at lead
0.5, 1 and 2 time units (40 true initial states × 10 members perturbed by N(0, 0.1²));
climate from 10 runs of 100 time units started on the truth: Hellinger distance of X's
PDF to the truth's (100 common bins), RMS error of X's autocorrelation up to lag 1, and
blow-ups (|X| > 100). `--quick` (a smoke run): less data, 3 epochs, 20-unit climate runs,
10 forecast cases. Data are generated once into benchmarks/data/ (ignored by git).
One JSON line on stdout; a readable table on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import ROOT, emit, machine, median_time

from surrogate import problems
from surrogate.applications.lorenz96 import (
    FNOClosure,
    LocalMLPClosure,
    autocorrelation,
    blowup_time,
    coupled_rollout,
    ensemble_forecast,
    fit_ar1_closure,
    fit_closure,
    fit_polynomial,
    forecast_rmse,
    hellinger_distance,
    offline_mse,
    offline_r2,
)
from surrogate.data import read_dataset, write_dataset
from surrogate.problems import generate

FULL = dict(n_train=16, train_times=4000, n_test=10, test_times=20001, epochs=30, cases=40)
QUICK = dict(n_train=8, train_times=2000, n_test=10, test_times=4001, epochs=3, cases=10)
MEMBERS, PERTURBATION, LEADS = 10, 0.1, (0.5, 1.0, 2.0)
BOUND, BINS, SPIN_UP = 100.0, 100, 10.0


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def dataset(n: int, n_times: int, seed: int) -> Path:
    path = ROOT / "benchmarks" / "data" / f"lorenz96_n{n}_t{n_times}_seed{seed}.nc"
    if not path.exists():
        t = time.perf_counter()
        p = problems.get("lorenz96", n_times=n_times, spin_up=SPIN_UP, store_y=False)
        write_dataset(generate(p, n, seed=seed, batch_size=n), path)
        log(f"generated {path.name} in {time.perf_counter() - t:.0f} s")
    return path


def n_parameters(closure) -> int:
    if closure is None:
        return 0
    leaves = jax.tree.leaves(eqx.filter(closure, eqx.is_inexact_array))
    return int(sum(a.size for a in leaves))


def train_closures(x_train, u_train, epochs: int, key) -> tuple[dict, dict]:
    """All closures of the table, and the seconds each took to fit."""
    pairs_x, pairs_u = x_train.reshape(-1, 8), u_train.reshape(-1, 8)
    closures, seconds = {"none": None}, {"none": 0.0}
    t = time.perf_counter()
    closures["polynomial"] = fit_polynomial(pairs_x, pairs_u, 3)
    closures["polynomial+AR1"] = fit_ar1_closure(closures["polynomial"], x_train, u_train)
    seconds["polynomial"] = seconds["polynomial+AR1"] = time.perf_counter() - t
    k_mlp0, k_mlp2, k_fno, k_fit = jax.random.split(key, 4)
    nets = {
        "MLP local": LocalMLPClosure(0, 32, 2, key=k_mlp0),
        "MLP stencil": LocalMLPClosure(2, 64, 2, key=k_mlp2),
        "FNO": FNOClosure(4, 32, 3, key=k_fno),
    }
    for name, net in nets.items():
        t = time.perf_counter()
        closures[name], hist = fit_closure(
            net, pairs_x, pairs_u, epochs=epochs, batch_size=128, learning_rate=3e-3, key=k_fit
        )
        seconds[name] = time.perf_counter() - t
        log(f"trained {name}: {epochs} epochs, loss {hist['train_loss'][-1]:.4g}, "
            f"{seconds[name]:.0f} s")  # fmt: skip
    t = time.perf_counter()
    closures["MLP stencil+AR1"] = fit_ar1_closure(closures["MLP stencil"], x_train, u_train)
    seconds["MLP stencil+AR1"] = seconds["MLP stencil"] + time.perf_counter() - t
    return closures, seconds


def evaluate(name, closure, host, test, settings, key) -> dict:
    x_test, u_test = test
    out: dict = {"n_parameters": n_parameters(closure)}
    if closure is not None:
        states = jnp.asarray(x_test[:, :2000].reshape(-1, 8))
        apply = eqx.filter_jit(lambda c, s: jax.vmap(lambda v: c(v, None))(s))
        pred = apply(closure, states)
        true = jnp.asarray(u_test[:, :2000].reshape(-1, 8))
        out["offline_mse"] = float(offline_mse(pred, true))
        out["offline_r2"] = float(offline_r2(pred, true))
        batch = states[:1000]
        out["us_per_state"] = 1e6 * median_time(
            lambda: apply(closure, batch).block_until_ready(), repeats=5, warmup=1
        ) / batch.shape[0]  # fmt: skip
    # forecasts from true states, compared with the truth that follows them
    n_lead = round(max(LEADS) / host.dt)
    starts = np.linspace(0, x_test.shape[1] - n_lead - 1, settings["cases"] // x_test.shape[0])
    cases = [(i, int(s)) for i in range(x_test.shape[0]) for s in starts]
    x0 = jnp.asarray(np.stack([x_test[i, s] for i, s in cases]))
    truth = jnp.asarray(np.stack([x_test[i, s : s + n_lead + 1] for i, s in cases]))
    k_fc, k_clim = jax.random.split(key)
    t_forecast = time.perf_counter()
    xs, first = ensemble_forecast(
        host,
        closure,
        x0,
        n_lead,
        members=MEMBERS,
        perturbation=PERTURBATION,
        key=k_fc,
        bound=BOUND,
    )
    rmse = forecast_rmse(xs, truth)
    out["forecast_seconds"] = round(time.perf_counter() - t_forecast, 1)
    for lead in LEADS:
        out[f"rmse_{lead:g}"] = float(rmse[round(lead / host.dt)])
    out["forecast_blowups"] = int(jnp.sum(first >= 0))
    # climate: one run per test trajectory, as long as the truth's
    n_long = x_test.shape[1] - 1
    t = time.perf_counter()
    run = coupled_rollout(host, closure, jnp.asarray(x_test[:, 0]), n_long, key=k_clim, bound=BOUND)
    run.states.block_until_ready()
    out["climate_seconds"] = round(time.perf_counter() - t, 1)
    model_x, true_x = run.states[:, :-1], jnp.asarray(x_test[:, :-1])
    out["hellinger"] = float(hellinger_distance(true_x, model_x, bins=BINS))
    lag = round(1.0 / host.dt)
    acf_model = autocorrelation(model_x, lag, axis=1)
    acf_true = autocorrelation(true_x, lag, axis=1)
    out["acf_rms_error"] = float(jnp.sqrt(jnp.mean((acf_model - acf_true) ** 2)))
    times = blowup_time(run.first_unstable_step, host.dt)
    out["climate_blowups"] = int(jnp.sum(jnp.isfinite(times)))
    out["first_blowup_time"] = float(jnp.min(times)) if out["climate_blowups"] else None
    out["climate_time_units"] = n_long * host.dt
    return out


def table(results: dict) -> str:
    cols = [
        ("offline_r2", "R² U", "{:.3f}"),
        ("rmse_0.5", "RMSE t=.5", "{:.3f}"),
        ("rmse_1", "RMSE t=1", "{:.3f}"),
        ("rmse_2", "RMSE t=2", "{:.3f}"),
        ("hellinger", "Hellinger", "{:.4f}"),
        ("acf_rms_error", "ACF err", "{:.4f}"),
        ("climate_blowups", "blow-ups", "{}"),
        ("train_seconds", "train s", "{:.0f}"),
    ]
    lines = [f"{'closure':<18}" + "".join(f"{h:>11}" for _, h, _ in cols)]
    for name, r in results.items():
        cells = [fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in cols]
        lines.append(f"{name:<18}" + "".join(f"{c:>11}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short smoke run (< 3 min)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of the networks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    t_start = time.perf_counter()
    train = read_dataset(dataset(settings["n_train"], settings["train_times"], 1000 + args.seed))
    test = read_dataset(dataset(settings["n_test"], settings["test_times"], 2000 + args.seed))
    problem = problems.get(
        "lorenz96", n_times=settings["test_times"], spin_up=SPIN_UP, store_y=False
    )
    host = problem.coarse
    key = jax.random.key(args.seed)
    closures, seconds = train_closures(
        jnp.asarray(train["X"].values), jnp.asarray(train["U"].values), settings["epochs"], key
    )
    results = {}
    for name, closure in closures.items():
        t = time.perf_counter()
        results[name] = evaluate(
            name, closure, host, (test["X"].values, test["U"].values), settings, key
        )
        results[name]["train_seconds"] = round(seconds[name], 1)
        r = results[name]
        log(f"evaluated {name} in {time.perf_counter() - t:.0f} s (forecasts "
            f"{r['forecast_seconds']} s, climate runs {r['climate_seconds']} s)")  # fmt: skip
    # deterministic learned closures against the polynomial; the stochastic learned one
    # against both the polynomial and Arnold et al.'s polynomial + AR(1)
    pairs = [(n, "polynomial") for n in ("MLP local", "MLP stencil", "FNO", "MLP stencil+AR1")]
    pairs.append(("MLP stencil+AR1", "polynomial+AR1"))
    checks = {
        f"{metric}: {n} < {ref}": results[n][metric] < results[ref][metric]
        for metric in ("rmse_1", "hellinger")
        for n, ref in pairs
    }
    checks["learned climate blow-ups"] = sum(
        results[n]["climate_blowups"]
        for n in ("MLP local", "MLP stencil", "FNO", "MLP stencil+AR1")
    )
    log(table(results))
    log(f"total {time.perf_counter() - t_start:.0f} s")
    emit(
        {
            "name": "lorenz96_closure",
            "config": {
                **problem.options(),
                **settings,
                "quick": args.quick,
                "seed": args.seed,
                "coarse_dt": host.dt,
                "coupling": host.coupling,
                "forecast_members": MEMBERS,
                "forecast_perturbation": PERTURBATION,
                "climate_runs": settings["n_test"],
                "bound": BOUND,
                "hellinger_bins": BINS,
                "optimizer": "adam 3e-3, cosine decay, batch 128 states, MSE of U",
            },
            "machine": machine(),
            "results": results,
            "checks": checks,
            "seconds_total": round(time.perf_counter() - t_start, 1),
        }
    )


if __name__ == "__main__":
    main()
