"""Room acoustics: a DeepONet surrogate of the source position -> pressure field map.

    python benchmarks/room_acoustics.py [--quick] [--cases 2d,3d] [--features none,images]
                                        [--repeats 20]

For each room: generate the reference fields of `train + test` uniformly sampled sources
(unit-amplitude Gaussian pulse, f_max = 1 kHz, 6 points per wavelength, walls with α = 0.2),
train a `SourceDeepONet` on the first `train` sources, once per variant of its trunk
inputs (`--features`: "none", the plain DeepONet on (x, t) trained in the Cartesian
layout; "images", the trunk also seeing distances and retarded distances to the source's
mirror images, trained on random (source, point) pairs), and report on the unseen `test`
sources the RMSE (Pa), relative L2 and max error over the whole time window and grid; the
inference time of 10⁴ (x, t) points for one source after compilation; the time of one
compiled solver run for the same source; and their ratio per space-time point of the
stored grid (the speed-up). One JSON line on stdout: `results[case][variant]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from _common import emit, machine, median_time

from surrogate.applications.room_acoustics import train_surrogate
from surrogate.problems import generate
from surrogate.problems.room_acoustics import RoomAcoustics

CASES = {
    "2d": dict(problem=dict(ndim=2, size_x=2.0, size_y=2.0), train=80, test=20),
    "3d": dict(
        problem=dict(ndim=3, size_x=2.0, size_y=1.6, size_z=1.3, margin=0.45, stride=2),
        train=60,
        test=10,
    ),
}
# per variant: model options, mirror-image order per case, minibatch (points, or
# (source, point) pairs), epochs per case
VARIANTS = {
    "none": dict(
        model=dict(p=64, branch_width=128, trunk_width=64, fourier_features=64, fourier_scale=1.5),
        batch_points=1024,
        epochs={"2d": 300, "3d": 400},
    ),
    "images": dict(
        model=dict(p=64, branch_width=128, trunk_width=64, fourier_features=32, fourier_scale=1.5),
        # 25 images in both rooms (Σ|m| ≤ 3 in 2-D, ≤ 2 in 3-D): 63 in 3-D cost 7.5 ms
        image_order={"2d": 3, "3d": 2},
        batch_points=4096,
        epochs={"2d": 15, "3d": 15},
    ),
}
LEARNING_RATE, N_QUERY = 3e-3, 10_000


def run_case(name: str, features: list[str], quick: bool, repeats: int) -> dict:
    case = CASES[name]
    problem = RoomAcoustics(**case["problem"])
    n_train, n_test = case["train"], case["test"]
    t = time.perf_counter()
    data = problem.from_dataset(generate(problem, n_train + n_test, seed=0))
    t_generate = time.perf_counter() - t
    x0, p = jnp.asarray(data["x0"]), jnp.asarray(data["p"])
    rows = {}
    for variant in features:
        v = VARIANTS[variant]
        epochs = max(1, v["epochs"][name] // 4) if quick else v["epochs"][name]
        options = dict(v["model"])
        if "image_order" in v:
            options["image_order"] = v["image_order"][name]
        rows[variant] = run_variant(
            problem, x0, p, n_train, variant, epochs, v["batch_points"], options, repeats
        )
        rows[variant]["generate_s"] = round(t_generate, 1)
    return rows


def run_variant(problem, x0, p, n_train, variant, epochs, batch_points, options, repeats):
    t = time.perf_counter()
    model, history = train_surrogate(
        problem, x0[:n_train], p[:n_train], key=jax.random.key(0), epochs=epochs,
        batch_points=batch_points, learning_rate=LEARNING_RATE, source_features=variant,
        **options,
    )  # fmt: skip
    t_train = time.perf_counter() - t
    points = problem.space_time_points()
    # training samples: grid points (Cartesian layout) or (source, point) pairs
    n_samples = points.shape[0] * (1 if variant == "none" else n_train)
    predict = jax.jit(jax.vmap(model, in_axes=(0, None)))
    pred = predict(x0[n_train:], points)
    true = jax.vmap(problem.to_points)(p[n_train:])
    metrics = problem.metrics(pred, true)

    # inference: 10⁴ random (x, t) points for one unseen source, compiled once
    lower, upper = problem.bounds()
    u = jax.random.uniform(jax.random.key(1), (N_QUERY, len(lower)))
    query = jnp.asarray(lower) + u * (jnp.asarray(upper) - jnp.asarray(lower))
    infer = eqx.filter_jit(lambda m, s, y: m(s, y))
    source = x0[n_train]
    load = os.getloadavg()[0]
    ms_query = 1e3 * median_time(lambda: infer(model, source, query).block_until_ready(), repeats)
    ms_grid = 1e3 * median_time(lambda: infer(model, source, points).block_until_ready(), repeats)
    solve = jax.jit(problem.solve)
    ms_solver = 1e3 * median_time(
        lambda: solve({"x0": source})["p"].block_until_ready(), max(3, repeats // 4)
    )
    row = {
        "rmse_pa": metrics["rmse"],
        "relative_l2": metrics["relative_l2"],
        "max_error_pa": metrics["max_error"],
        "field_rms_pa": float(jnp.sqrt(jnp.mean(true**2))),
        "inference_ms_1e4_points": round(ms_query, 3),
        "load_average_at_timing": round(load, 2),
        "inference_ms_full_grid": round(ms_grid, 3),
        "grid_points": int(points.shape[0]),
        "solver_ms": round(ms_solver, 3),
        "speedup_full_grid": round(ms_solver / ms_grid, 2),
        "speedup_1e4_points_vs_solver": round(ms_solver / ms_query, 2),
        "train_s": round(t_train, 1),
        "epochs": epochs,
        "train_steps": epochs * (n_samples // min(batch_points, n_samples)),
        "final_train_loss": history["train_loss"][-1],
        "grid": list(problem.room.shape),
        "solver_steps": problem.solver.n_steps(problem.times()),
    }
    print(f"{problem.ndim}-D, {variant}: {row}", file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2-D only, a quarter of the epochs")
    ap.add_argument("--cases", default=None, help="comma-separated: 2d,3d (default 2d,3d)")
    ap.add_argument(
        "--features", default="none,images", help="comma-separated variants: none,images"
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=0, help="override every variant's epochs")
    ap.add_argument(
        "--model",
        default="",
        help="overrides of the chosen variants' model options, e.g. p=32,trunk_width=48",
    )
    args = ap.parse_args()
    features = args.features.split(",")
    for variant in features:
        if variant not in VARIANTS:
            ap.error(f"--features: unknown variant {variant!r}; variants: {sorted(VARIANTS)}")
    for item in filter(None, args.model.split(",")):
        name, _, value = item.partition("=")
        for variant in features:
            model = VARIANTS[variant]["model"]
            if name not in model:
                ap.error(f"--model: unknown option {name!r} of {variant}; options: {sorted(model)}")
            model[name] = type(model[name])(value)
    names = (args.cases or ("2d" if args.quick else "2d,3d")).split(",")
    for name in names:
        if name not in CASES:
            ap.error(f"--cases: unknown case {name!r}; cases: {sorted(CASES)}")
    if args.epochs:
        for variant in features:
            VARIANTS[variant]["epochs"] = dict.fromkeys(CASES, args.epochs)
    results = {name: run_case(name, features, args.quick, args.repeats) for name in names}
    emit(
        {
            "name": "room_acoustics",
            "config": {
                "quick": args.quick,
                "cases": {
                    k: {**CASES[k], "problem": RoomAcoustics(**CASES[k]["problem"]).options()}
                    for k in names
                },
                "variants": {k: VARIANTS[k] for k in features},
                "learning_rate": LEARNING_RATE,
                "source_amplitude_pa": 1.0,
                "targets": {
                    "rmse_pa_2d": 0.05,
                    "rmse_pa_3d": 0.10,
                    "relative_l2_2d": 0.41,
                    "relative_l2_3d": 0.4,
                    "inference_ms": 5.0,
                },
            },
            "repeats": args.repeats,
            "machine": machine(),
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
