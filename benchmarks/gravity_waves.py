"""Emulating spectral gravity-wave drag in a QBO ring: offline skill and 20-year online runs.

    python benchmarks/gravity_waves.py [--quick] [--seed 0] [--years 20] [--n-train 24]

Data: `surrogate generate gravity_waves` rings (8 columns 150 km apart, 36 layers of
500 m from 17 to 35 km, daily steps, AD99 with 80 phase speeds, switch smoothness 0.2 and
oblique rays, a source envelope travelling around the ring): each sample has its own
ring-mean launched flux (0.7-1.3 mPa), spectral half width (16-24 m/s), isothermal
temperature (196-212 K) and initial wind, is spun up 3 years and then stored every 10
days for 3 years. Training on every second stored state of `n_train` samples, testing on
all of `n_test` others.

Emulators (`surrogate.applications.gravity_waves`, all in flux form: the drag is the
divergence of predicted eastward and westward flux profiles launched at the source's
values, so the momentum budget holds for any weights):
- `mlp`: single-column MLP; `ssm`: single-column bidirectional SSM over the levels;
- `nonlocal`: SSM that reads the columns up to 3 away and places the deposited flux on
  the columns downstream.
`local_ad99` is the scheme itself without oblique rays (what a perfect single-column
emulator of the physics would give on these rings).

Offline: R² on the test rings of the drag (pooled; per level: mean and minimum over the
levels where the drag's standard deviation exceeds 5% of its largest; column-integrated
Σ ρ dz drag with each sample's ρ).
Online: a ring at a source setting inside the training range (1.0 mPa, 20 m/s, 204 K)
and one outside it (1.6 mPa), spun up 3 years with the scheme, then run `years` years
with the scheme and with each emulator in its place (`surrogate.coupling.rollout`, blow-up
= a wind beyond ±150 m/s or NaN); QBO period and amplitude (standard deviation) of the
ring-mean wind at 25 km, relative to the scheme's. A time-height plot of the ring-mean
u(z, t) of every run goes to benchmarks/results/gravity_waves_qbo.png (`_seed{s}` for
other seeds), the trained emulators to benchmarks/results/gravity_waves_*_seed{s}.eqx.
One JSON line on stdout; a table on stderr. Data are cached in benchmarks/data/.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import ROOT, emit, machine

import surrogate
from surrogate import problems
from surrogate.applications.gravity_waves import (
    GravityWaveMLP,
    GravityWaveSSM,
    NonlocalGravityWaveSSM,
    fit_emulator,
    online_run,
    predict,
    qbo_statistics,
    spun_up_state,
    training_arrays,
)
from surrogate.data import read_dataset, write_dataset
from surrogate.metrics import r2_score
from surrogate.problems import generate
from surrogate.problems.gravity_waves import C_MAX
from surrogate.solvers.gravity_waves import AD99

FULL = dict(n_train=24, n_test=8, n_times=110, stride=2, years=20.0,
            epochs={"mlp": 40, "ssm": 20, "nonlocal": 60})  # fmt: skip
QUICK = dict(n_train=4, n_test=2, n_times=20, stride=2, years=2.0,
             epochs={"mlp": 2, "ssm": 1, "nonlocal": 1})  # fmt: skip
# (batch size, learning rate, column weight): batches of columns for the single-column
# models, of rings for the nonlocal one. The single-column models close each column's
# budget by construction, while the rings' per-column integrals also hold what the
# neighbours' waves deposit (the scheme itself without oblique rays has a column R² of
# ~0.04): fitting them would only distort the escaping flux, so their weight is 0 (with 1
# the MLP's held-out drag R² fell from 0.855 to 0.830).
TRAINING = {
    "mlp": (256, 1e-3, 0.0),
    "ssm": (256, 3e-3, 0.0),
    "nonlocal": (32, 3e-3, 1.0),
}
# drag errors in units of each level's standard deviation, floored at this times the
# overall one: the quiet lower stratosphere then counts (with the overall std, the
# nonlocal model's R² at 18-20 km stayed at 0.53-0.62; with 0.25, 0.60-0.66)
LEVEL_FLOOR = 0.25
SETTINGS = {  # online source settings: (ring-mean flux Pa, half width m/s, temperature K)
    "inside": (1.0e-3, 20.0, 204.0),
    "outside_flux": (1.6e-3, 20.0, 204.0),
}
SPIN_UP_YEARS = 3.0
ACTIVE = 0.05  # a level counts where the drag's std exceeds 5% of the largest


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def dataset(problem, n: int, seed: int) -> Path:
    name = f"gravity_waves_t{problem.n_times}_w{problem.n_waves}_n{n}_seed{seed}.nc"
    path = ROOT / "benchmarks" / "data" / name
    if not path.exists():
        t = time.perf_counter()
        write_dataset(generate(problem, n, seed=seed, batch_size=min(n, 8)), path)
        log(f"generated {path.name} in {time.perf_counter() - t:.0f} s")
    return path


def per_level_r2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    ss_res = np.sum((true - pred) ** 2, axis=0)
    return 1.0 - ss_res / np.maximum(ss_tot, 1e-30)


def offline(pred, test) -> dict:
    pred, true = np.asarray(pred, np.float64), np.asarray(test["drag"], np.float64)
    n_lev = true.shape[-1]
    p, t = pred.reshape(-1, n_lev), true.reshape(-1, n_lev)
    levels = per_level_r2(p, t)
    std = t.std(axis=0)
    active = std > ACTIVE * std.max()
    mass = np.asarray(test["rho"], np.float64)[:, None] * np.asarray(test["dz"])[None, None]
    col_p, col_t = (np.sum(a * mass, axis=-1).ravel() for a in (pred, true))
    return {
        "r2_drag": float(r2_score(p, t)),
        "r2_drag_level_mean": float(levels[active].mean()),
        "r2_drag_level_min": float(levels[active].min()),
        "active_levels": int(active.sum()),
        "r2_drag_levels": [round(float(v), 3) for v in levels],
        "r2_drag_column": float(r2_score(col_p, col_t)),
        "rmse_m_s_day": float(np.sqrt(np.mean((p - t) ** 2)) * 86400),
    }


def plot(runs: dict, model_heights, years: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(runs)
    names = list(runs[settings[0]])
    size = (7 * len(settings), 1.6 * len(names) + 1)
    fig, axes = plt.subplots(len(names), len(settings), figsize=size, sharex=True, sharey=True,
                             squeeze=False)  # fmt: skip
    z = np.asarray(model_heights) / 1e3
    levels = np.linspace(-40, 40, 17)
    for j, setting in enumerate(settings):
        for i, name in enumerate(names):
            u = runs[setting][name]
            t = np.arange(u.shape[0]) * years / (u.shape[0] - 1)
            ax = axes[i, j]
            cs = ax.contourf(t, z, u.T, levels=levels, cmap="RdBu_r", extend="both")
            ax.set_title(f"{name} — {setting}", fontsize=9)
            ax.set_ylabel("z (km)")
    for ax in axes[-1]:
        ax.set_xlabel("years after spin-up")
    fig.colorbar(cs, ax=axes, label="ring-mean u (m/s)", shrink=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--years", type=float, default=None, help="length of the online runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=None, help="training runs (24; 4 quick)")
    args = ap.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    if args.years is not None:
        cfg["years"] = args.years
    if args.n_train is not None:
        if args.n_train < 1:
            ap.error(f"--n-train must be at least 1, got {args.n_train}")
        cfg["n_train"] = args.n_train
    # outputs of a run on another training size keep those of the default one
    tag = "" if args.quick or cfg["n_train"] == FULL["n_train"] else f"_n{cfg['n_train']}"
    t_start = time.perf_counter()
    problem = problems.get("gravity_waves", n_times=cfg["n_times"])
    train = training_arrays(read_dataset(dataset(problem, cfg["n_train"], 1000 + args.seed)),
                            stride=cfg["stride"])  # fmt: skip
    test = training_arrays(read_dataset(dataset(problem, cfg["n_test"], 2000 + args.seed)))
    log(f"data: {train['u'].shape[0]} training rings, {test['u'].shape[0]} test rings "
        f"({time.perf_counter() - t_start:.0f} s)")  # fmt: skip
    key = jax.random.key(args.seed)
    k_mlp, k_ssm, k_nl, k_fit = jax.random.split(key, 4)
    source = dict(
        c_max=C_MAX,
        n_waves=problem.n_waves,
        centre=0.0,
        wavenumber=2 * math.pi / problem.wavelength,
    )
    models = {
        "mlp": GravityWaveMLP(problem.n_levels, width=256, depth=3, key=k_mlp, **source),
        "ssm": GravityWaveSSM(width=32, depth=2, state_size=16, key=k_ssm, **source),
        "nonlocal": NonlocalGravityWaveSSM(
            reach=3, width=48, depth=2, state_size=16, key=k_nl, **source
        ),  # fmt: skip
    }
    results: dict = {}
    trained = {}
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        batch, lr, column_weight = TRAINING[name]
        t = time.perf_counter()
        trained[name], hist = fit_emulator(
            model, train, epochs=cfg["epochs"][name], batch_size=batch, learning_rate=lr,
            column_weight=column_weight, level_floor=LEVEL_FLOOR, key=k_fit,
        )  # fmt: skip
        n_params = sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
        results[name] = {"train_seconds": round(time.perf_counter() - t, 1),
                         "epochs": cfg["epochs"][name], "n_parameters": int(n_params),
                         "final_train_loss": round(hist["train_loss"][-1], 4)}  # fmt: skip
        results[name]["offline"] = offline(predict(trained[name], test), test)
        surrogate.save(out_dir / f"gravity_waves_{name}_seed{args.seed}{tag}.eqx", trained[name])
        log(f"{name}: trained in {results[name]['train_seconds']} s, offline "
            f"R² {results[name]['offline']['r2_drag']:.3f}")  # fmt: skip
    local = AD99(c_max=C_MAX, n_waves=problem.n_waves, wavenumber=2 * math.pi / problem.wavelength,
                 centre=0.0, smoothness=problem.smoothness)  # fmt: skip
    results["local_ad99"] = {"offline": offline(predict(local, test), test)}

    runs: dict = {}
    for setting, (flux, width, temperature) in SETTINGS.items():
        qbo = problem.model(source_flux=flux, source_width=width, temperature=temperature)
        state0 = spun_up_state(qbo, problem.scheme(), years=SPIN_UP_YEARS)
        runs[setting] = {}
        stats = {}
        for name, param in {"reference": problem.scheme(), **trained}.items():
            t = time.perf_counter()
            result = online_run(qbo, param, years=cfg["years"], state0=state0)
            jax.block_until_ready(result.states)
            stats[name] = qbo_statistics(result, qbo)
            stats[name]["seconds"] = round(time.perf_counter() - t, 1)
            runs[setting][name] = np.asarray(result.states[0]).mean(axis=1)
            log(f"{setting} {name}: {stats[name]}")
        ref = stats["reference"]
        for name in trained:
            s = stats[name]
            s["period_error"] = s["period_months"] / ref["period_months"] - 1
            s["amplitude_error"] = s["amplitude"] / ref["amplitude"] - 1
            s["within_10_percent"] = bool(s["stable"] and abs(s["period_error"]) < 0.1
                                          and abs(s["amplitude_error"]) < 0.1)  # fmt: skip
        results[f"online_{setting}"] = {
            "source": {"flux_Pa": flux, "width_m_s": width, "temperature_K": temperature},
            **{k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()}
               for k, v in stats.items()},
        }  # fmt: skip
    png = out_dir / ("gravity_waves_qbo.png" if args.seed == 0 and not tag else
                     f"gravity_waves_qbo_seed{args.seed}{tag}.png")  # fmt: skip
    plot(runs, problem.heights(), cfg["years"], png)

    log(f"{'model':10s} {'R2':>6s} {'R2 lev':>7s} {'R2 min':>7s} {'R2 col':>7s}  online "
        "period/amplitude error (inside, outside)")  # fmt: skip
    for name in [*trained, "local_ad99"]:
        o = results[name]["offline"]
        line = (f"{name:10s} {o['r2_drag']:6.3f} {o['r2_drag_level_mean']:7.3f} "
                f"{o['r2_drag_level_min']:7.3f} {o['r2_drag_column']:7.3f}")  # fmt: skip
        if name in trained:
            for setting in SETTINGS:
                s = results[f"online_{setting}"][name]
                line += f"  {s['period_error']:+.3f}/{s['amplitude_error']:+.3f}"
                line += "" if s["stable"] else " (blew up)"
        log(line)
    emit({
        "benchmark": "gravity_waves",
        "config": {**{k: v for k, v in cfg.items()}, "training": TRAINING,
                   "level_floor": LEVEL_FLOOR,
                   "settings": SETTINGS, "spin_up_years": SPIN_UP_YEARS,
                   "problem": problem.options(), "seed": args.seed},
        "machine": machine(),
        "results": results,
        "plot": str(png.relative_to(ROOT)),
        "seconds": round(time.perf_counter() - t_start, 1),
    })  # fmt: skip


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
