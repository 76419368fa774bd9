"""Emulating simplified Betts-Miller convection in a single column: offline and online skill.

    python benchmarks/convection.py [--quick] [--epochs 40] [--seed 0]

Data: `surrogate generate convection` columns (40 levels, 1000-100 hPa, dt = 15 min):
each column has its own SST, surface wind and large-scale cooling/moistening, is spun up
1 day with the physical scheme, then 96 hourly states are stored with the scheme's heating,
moistening and precipitation. Emulators, trained on (T, q) -> (heating, moistening) of the
training columns (`surrogate.applications.lorenz96.fit_emulator`, Adam + cosine decay, MSE of the
normalized targets), both with the by-construction constraints (derived precipitation
P >= 0, column enthalpy conserved):

- `ConvectionSSM`: bidirectional diagonal-SSM stack over the levels;
- `ConvectionMLP`: MLP of the flattened column.

Offline: R² on the held-out columns of the heating (pooled; at each level, with their
mean over the levels where the heating varies and their minimum over the levels where the
scheme heats in at least 5% of the test states; column-integrated), the moistening and
the precipitation.
Online: each test column restarted from its first stored state and run for `days` days
with the scheme, and with each emulator in its place (vmapped over columns, coupled by
`surrogate.coupling.rollout`); reported: unstable columns (NaN or T outside 150-350 K;
the statistics below use the stable ones), the smallest q,
time-mean precipitation against the scheme's (relative difference), the time-mean
temperature profile's RMS difference, the fraction of hourly states at which the next
step would make q negative (the column clips q at 0: that is where an emulator breaks
the water and enthalpy budgets), and the column enthalpy budget residual (W/m²,
`Column.enthalpy_budget_residual` at hourly states).
One JSON line on stdout; a table on stderr. Data are cached in benchmarks/data/.
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
from _common import ROOT, emit, machine

from surrogate import problems
from surrogate.applications.convection import (
    ConvectionMLP,
    ConvectionSSM,
    fit_emulator,
    precipitation_mm_day,
)
from surrogate.coupling import rollout
from surrogate.data import read_dataset, write_dataset
from surrogate.evaluation import r2_score
from surrogate.problems import generate
from surrogate.solvers.column import DAY, LV

# `stride`: training states every `stride` hours (neighbouring hours are alike)
FULL = dict(n_train=1024, n_test=32, stride=4, epochs=30, days=30, ssm=(64, 3, 32), mlp=(256, 3))
QUICK = dict(n_train=16, n_test=8, stride=4, epochs=3, days=3, ssm=(32, 2, 16), mlp=(128, 2))
STEPS_PER_SAVE = 4  # hourly states of the online runs
LEARNING_RATES = {"ssm": 3e-3, "mlp": 1e-3}
T_BOUNDS = (150.0, 350.0)  # K: outside, a coupled column counts as unstable
ACTIVE_FRACTION = 0.05  # a level is "active" where the scheme heats in >= 5% of the states


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def dataset(problem, n: int, seed: int) -> Path:
    path = ROOT / "benchmarks" / "data" / f"convection_L{problem.n_levels}_n{n}_seed{seed}.nc"
    if not path.exists():
        t = time.perf_counter()
        write_dataset(generate(problem, n, seed=seed, batch_size=min(n, 64)), path)
        log(f"generated {path.name} in {time.perf_counter() - t:.0f} s")
    return path


def per_level_r2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """R² at each level; NaN where the target never varies (above every convective top)."""
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    ss_res = np.sum((true - pred) ** 2, axis=0)
    keep = ss_tot > 1e-8 * ss_tot.max()
    return np.where(keep, 1.0 - ss_res / np.where(keep, ss_tot, 1.0), np.nan)


def offline(model, test: dict, p, dp) -> dict:
    apply = eqx.filter_jit(lambda m, t, q: jax.vmap(lambda a, b: m.predict(a, b, p, dp))(t, q))
    h, m = (np.asarray(a) for a in apply(model, test["T"], test["q"]))
    ht, mt = np.asarray(test["heating"]), np.asarray(test["moistening"])
    dpn = np.asarray(dp)
    levels = per_level_r2(h, ht)
    # levels where the scheme heats in at least 5% of the test states
    active = np.mean(np.abs(ht) > 0, axis=0) >= ACTIVE_FRACTION
    return {
        "r2_heating": float(r2_score(h, ht)),
        "r2_heating_per_level": float(np.nanmean(levels)),
        "r2_heating_min_active_level": float(np.min(levels[active])),
        "active_levels": int(np.sum(active)),
        "r2_heating_levels": [round(float(v), 4) for v in levels],
        "r2_heating_column": float(r2_score(h @ dpn, ht @ dpn)),
        "r2_moistening": float(r2_score(m, mt)),
        "r2_precip": float(r2_score(precipitation_mm_day(m, dp), test["precip"])),
    }


def physical(state) -> jax.Array:
    """A column is unstable once some T leaves [150, 350] K (or is NaN)."""
    return jnp.all((state[0] > T_BOUNDS[0]) & (state[0] < T_BOUNDS[1]))


def online(problem, forcing: dict, states0, model, days: int) -> dict:
    """Runs of every test column with `model` (None: the scheme); hourly diagnostics."""
    n_steps = round(days * DAY / problem.dt)

    def one(f, t0, q0):
        column = problem.column(**f)
        result = rollout(
            column.step, model, (t0, q0), n_steps, save_every=STEPS_PER_SAVE, bounds=physical
        )
        t, q = result.states

        def diagnose(a, b):
            precip = column.precipitation((a, b), model) * DAY
            # would the next step make q negative before the clip at 0?
            dq = column.convection((a, b), model)[1] + column.forcing((a, b))[1]
            q_next = b + column.dt * dq
            clipped = jnp.any(q_next < 0)
            return precip, column.enthalpy_budget_residual((a, b), model), clipped

        precip, residual, clipped = jax.vmap(diagnose)(t, q)
        return result.first_unstable_step, t, q, precip, residual, clipped

    start = time.perf_counter()
    first, t, q, precip, residual, clipped = jax.jit(jax.vmap(one))(forcing, *states0)
    first.block_until_ready()
    return {
        "seconds": time.perf_counter() - start,
        "unstable": int(jnp.sum(first >= 0)),
        "stable": np.asarray(first < 0),
        "nan": bool(jnp.any(~jnp.isfinite(t)) | jnp.any(~jnp.isfinite(q))),
        "min_q": float(jnp.min(q)),
        "precip": np.asarray(precip),
        "t_mean": np.asarray(jnp.mean(t, axis=1)),
        "residual": np.asarray(residual),
        "clipped": np.asarray(jnp.mean(clipped, axis=1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--days", type=int, default=None, help="length of the online runs")
    ap.add_argument("--n-train", type=int, default=None, help="training columns")
    ap.add_argument("--stride", type=int, default=None, help="hours between training states")
    ap.add_argument(
        "--level-floor", type=float, default=None,
        help="weigh errors per level (floor: this times the channel's std); default per channel",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    for name in ("epochs", "days", "n_train", "stride", "level_floor"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    t_start = time.perf_counter()
    problem = problems.get("convection")
    column = problem.column()
    p, dp = column.levels
    train_ds = read_dataset(dataset(problem, settings["n_train"], 1000 + args.seed))
    test_ds = read_dataset(dataset(problem, settings["n_test"], 2000 + args.seed))

    def flat(ds, name, stride=1):
        return jnp.asarray(ds[name].values[:, ::stride].reshape(-1, problem.n_levels))

    names = ("T", "q", "heating", "moistening")
    train = {k: flat(train_ds, k, settings["stride"]) for k in names}
    test = {k: flat(test_ds, k) for k in names}
    test["precip"] = jnp.asarray(test_ds["precip"].values.reshape(-1))
    key = jax.random.key(args.seed)
    k_ssm, k_mlp, k_fit = jax.random.split(key, 3)
    models = {
        "ssm": ConvectionSSM(*settings["ssm"], key=k_ssm),
        "mlp": ConvectionMLP(problem.n_levels, *settings["mlp"], key=k_mlp),
    }
    results: dict = {}
    trained = {}
    for name, model in models.items():
        t = time.perf_counter()
        trained[name], hist = fit_emulator(
            model, train["T"], train["q"], train["heating"], train["moistening"], p, dp,
            epochs=settings["epochs"], batch_size=64, learning_rate=LEARNING_RATES[name],
            level_floor=settings.get("level_floor"), key=k_fit,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        n_params = sum(a.size for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
        results[name] = {"train_seconds": round(seconds, 1), "n_parameters": int(n_params),
                         "final_train_loss": hist["train_loss"][-1]}  # fmt: skip
        results[name].update(offline(trained[name], test, p, dp))
        log(f"trained {name} in {seconds:.0f} s: {results[name]}")
    # online: from each test column's first stored state
    forcing = {k: jnp.asarray(test_ds[k].values) for k in ("sst", "wind", "adv_cooling",
                                                           "adv_moistening")}  # fmt: skip
    states0 = (jnp.asarray(test_ds["T"].values[:, 0]), jnp.asarray(test_ds["q"].values[:, 0]))
    runs = {"scheme": online(problem, forcing, states0, None, settings["days"])}
    for name in models:
        runs[name] = online(problem, forcing, states0, trained[name], settings["days"])
    ref = runs["scheme"]
    for name, run in runs.items():
        # statistics over the columns that stayed stable in this run (a frozen, failed
        # column has non-finite diagnostics), against the scheme on the same columns
        ok = np.asarray(run["stable"])
        p_run, p_ref = run["precip"][ok], ref["precip"][ok]
        flux = float(np.mean(np.abs(LV * p_ref / DAY)))
        out = results.setdefault(name, {})
        out.update(
            online_seconds=round(run["seconds"], 1),
            online_unstable_columns=run["unstable"],
            online_nan=run["nan"],
            online_min_q=run["min_q"],
            online_negative_q=run["min_q"] < 0,
            q_clip_active_fraction=float(np.mean(run["clipped"][ok])),
            mean_precip_mm_day=float(np.mean(p_run)),
            scheme_precip_same_columns=float(np.mean(p_ref)),
            precip_rel_diff=float(np.mean(p_run) / np.mean(p_ref) - 1),
            column_precip_corr=float(np.corrcoef(p_run.mean(axis=1), p_ref.mean(axis=1))[0, 1]),
            t_mean_rms_diff_K=float(np.sqrt(np.mean((run["t_mean"][ok] - ref["t_mean"][ok]) ** 2))),
            budget_residual_mean_abs_W_m2=float(np.mean(np.abs(run["residual"][ok]))),
            budget_residual_rel=float(np.mean(np.abs(run["residual"][ok])) / flux),
        )
    for name, r in results.items():
        log(f"{name:>7}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in r.items()))  # fmt: skip
    checks = {
        "ssm_r2_heating>=0.9": results["ssm"]["r2_heating"] >= 0.9,
        "ssm_r2_heating_mean_over_levels>=0.9": results["ssm"]["r2_heating_per_level"] >= 0.9,
        "ssm_r2_heating_column>=0.9": results["ssm"]["r2_heating_column"] >= 0.9,
        "ssm_precip_within_10%": abs(results["ssm"]["precip_rel_diff"]) <= 0.1,
        "ssm_stable": results["ssm"]["online_unstable_columns"] == 0,
    }
    emit(
        {
            "name": "convection",
            "config": {
                **problem.options(),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
                "quick": args.quick,
                "seed": args.seed,
                "ssm_width_depth_state": list(settings["ssm"]),
                "mlp_width_depth": list(settings["mlp"]),
                "optimizer": "adam (lr ssm 3e-3, mlp 1e-3), cosine decay, batch 64 columns, "
                "normalized MSE of raw + constrained outputs",
                "constraints": "P >= 0, column enthalpy conserved (both emulators); SSM: P "
                "and the correction profile from its budget head, MLP: P from the moistening",
                "active_level_fraction": ACTIVE_FRACTION,
                "t_bounds_K": list(T_BOUNDS),
            },
            "machine": machine(),
            "results": results,
            "checks": checks,
            "seconds_total": round(time.perf_counter() - t_start, 1),
        }
    )


if __name__ == "__main__":
    main()
