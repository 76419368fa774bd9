"""Losses for neural differential equations: trajectories, time windows, ensembles.

Every loss is a pure function. `trajectory_loss(model, batch)` has the signature a generic
trainer expects (`loss_fn(model, batch) -> scalar`, `batch` a dict of arrays with a leading
sample axis). Long trajectories are cut into short windows (`time_windows`,
`sliding_windows`) before training: fitting a whole long trajectory from its first state
lets errors compound and the loss landscape gets rough ("multiple shooting", Ribeiro et al.
2020, arXiv:1902.10081; Kidger 2021, §2.4), while windows of W steps keep each gradient
short and the batch large.

Ensemble losses compare two sets of samples of a distribution (paths of a neural SDE
against observed paths): the energy distance (Székely & Rizzo 2013, "Energy statistics",
eq. 2), the energy score of one observation (Gneiting & Raftery 2007, eq. 22), the
Gaussian-kernel MMD (Gretton et al. 2012, eq. 5) and moment matching. Samples are along axis
0; every other axis is flattened into one event vector (so whole paths are compared; vmap
over the time axis to compare marginals instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

# ---- trajectories -----------------------------------------------------------------------


def _trajectories(batch: Mapping[str, Array], who: str) -> tuple[Array, Array]:
    missing = [k for k in ("ts", "ys") if k not in batch]
    if missing:
        raise ValueError(
            f"{who}: batch needs keys 'ts' and 'ys', missing {missing}; have {sorted(batch)}"
        )
    ts, ys = jnp.asarray(batch["ts"]), jnp.asarray(batch["ys"])
    if ys.ndim < 3:
        raise ValueError(f"{who}: ys must be (sample, time, *state), got shape {ys.shape}")
    n, t = ys.shape[:2]
    if ts.shape not in ((t,), (n, t)):
        raise ValueError(
            f"{who}: ts must have shape ({t},) or ({n}, {t}) to match ys of "
            f"shape {ys.shape}, got {ts.shape}"
        )
    return jnp.broadcast_to(ts, (n, t)), ys


def trajectory_loss(
    model: Callable, batch: Mapping[str, Array], *, relative: bool = False
) -> Float[Array, ""]:
    """Mean squared error of `model(ts, y0, args)` against `ys` over a batch of trajectories.

    `batch`: `ts` `(n, T)` (or `(T,)` shared), `ys` `(n, T, *state)`, optional `y0`
    `(n, *state)` (default `ys[:, 0]`) and optional `args` (a pytree, leading axis `n`:
    conditions of each sample). `relative=True` divides each sample's squared error by
    its squared norm (for trajectories of different scales).
    """
    ts, ys = _trajectories(batch, "trajectory_loss")
    y0 = jnp.asarray(batch["y0"]) if "y0" in batch else ys[:, 0]
    if y0.shape != (ys.shape[0],) + ys.shape[2:]:
        raise ValueError(
            f"trajectory_loss: y0 must have shape {(ys.shape[0],) + ys.shape[2:]}, got {y0.shape}"
        )
    args = batch.get("args")
    pred = jax.vmap(model, in_axes=(0, 0, None if args is None else 0))(ts, y0, args)
    sq = (pred - ys) ** 2
    if not relative:
        return jnp.mean(sq)
    axes = tuple(range(1, ys.ndim))
    return jnp.mean(jnp.sum(sq, axis=axes) / jnp.sum(ys**2, axis=axes))


def _gather(batch: Mapping[str, Array], sample: Array, start: Array, window: int, who: str):
    ts, ys = _trajectories(batch, who)
    steps = start[:, None] + jnp.arange(window)[None, :]
    out = {"ts": ts[sample[:, None], steps], "ys": ys[sample[:, None], steps]}
    if batch.get("args") is not None:
        out["args"] = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[sample], batch["args"])
    return out


def _check_window(batch, window: int, who: str) -> tuple[int, int]:
    _, ys = _trajectories(batch, who)
    n, t = ys.shape[:2]
    if not 2 <= window <= t:
        raise ValueError(
            f"{who}: window must be between 2 and the trajectory length {t}, got {window}"
        )
    return n, t


def time_windows(
    batch: Mapping[str, Array], *, window: int, n_windows: int, key: PRNGKeyArray
) -> dict[str, Array]:
    """`n_windows` windows of `window` consecutive times, each from a uniformly drawn
    trajectory at a uniformly drawn start: `{"ts": (n_windows, W), "ys": (n_windows, W, ...)}`
    plus the samples' `args`. Each window starts from its own first state (`ys[:, 0]`)."""
    n, t = _check_window(batch, window, "time_windows")
    if n_windows < 1:
        raise ValueError(f"time_windows: n_windows must be >= 1, got {n_windows}")
    k_sample, k_start = jax.random.split(key)
    sample = jax.random.randint(k_sample, (n_windows,), 0, n)
    start = jax.random.randint(k_start, (n_windows,), 0, t - window + 1)
    return _gather(batch, sample, start, window, "time_windows")


def sliding_windows(
    batch: Mapping[str, Array], *, window: int, stride: int | None = None
) -> dict[str, Array]:
    """Every window of `window` times starting at multiples of `stride` (default `window - 1`,
    windows sharing their end points), of every trajectory: a deterministic training or
    validation set, `n * (1 + (T - W) // stride)` windows ordered by sample then start."""
    n, t = _check_window(batch, window, "sliding_windows")
    stride = window - 1 if stride is None else stride
    if stride < 1:
        raise ValueError(f"sliding_windows: stride must be >= 1, got {stride}")
    starts = jnp.arange(0, t - window + 1, stride)
    sample = jnp.repeat(jnp.arange(n), starts.shape[0])
    start = jnp.tile(starts, n)
    return _gather(batch, sample, start, window, "sliding_windows")


# ---- ensembles --------------------------------------------------------------------------


def _events(x: Array, y: Array, who: str) -> tuple[Array, Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"{who}: ensembles must be (samples, *event) with the same event "
            f"shape, got {x.shape} and {y.shape}"
        )
    if x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError(f"{who}: ensembles must not be empty, got {x.shape} and {y.shape}")
    return x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)


def _mean_distance(a: Array, b: Array) -> Array:
    """Mean of ‖a_i − b_j‖ over all pairs. The norm's gradient at 0 is taken as 0 (the
    double `where` keeps NaN out of the gradient of pairs of equal samples)."""
    d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    positive = d2 > 0
    return jnp.mean(jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0))


def energy_distance(x: Float[Array, "n ..."], y: Float[Array, "m ..."]) -> Float[Array, ""]:
    """Squared energy distance 2 E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ between the empirical
    distributions of `x` and `y` (V-statistic: ≥ 0, and 0 iff the ensembles coincide as
    multisets). In 1-D it equals 2 ∫ (F_x − F_y)² (Székely & Rizzo 2013, eq. 3)."""
    x, y = _events(x, y, "energy_distance")
    return 2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)


def energy_score(
    samples: Float[Array, "n ..."], observation: Float[Array, "..."]
) -> Float[Array, ""]:
    """Energy score E‖X − y‖ − ½ E‖X − X'‖ of an ensemble for one observation y, a strictly
    proper scoring rule (lower is better; Gneiting & Raftery 2007, eq. 22)."""
    x, y = _events(samples, jnp.asarray(observation)[None], "energy_score")
    return _mean_distance(x, y) - 0.5 * _mean_distance(x, x)


def gaussian_mmd(
    x: Float[Array, "n ..."], y: Float[Array, "m ..."], *, bandwidths=None
) -> Float[Array, ""]:
    """Squared maximum mean discrepancy with the kernel Σ_h exp(−‖a − b‖² / (2h²)), V-statistic
    (Gretton et al. 2012, eq. 5). Default bandwidths: (1/2, 1, 2) × the median distance of
    the pooled samples (held constant for the gradient)."""
    x, y = _events(x, y, "gaussian_mmd")
    xy = jnp.concatenate([x, y])
    d2 = jnp.sum((xy[:, None, :] - xy[None, :, :]) ** 2, axis=-1)
    if bandwidths is None:
        med = jax.lax.stop_gradient(jnp.sqrt(jnp.median(d2)))
        med = jnp.where(med > 0, med, 1.0)
        h = med * jnp.array([0.5, 1.0, 2.0], d2.dtype)
    else:
        h = jnp.asarray(bandwidths, d2.dtype).reshape(-1)
        if h.shape[0] < 1:
            raise ValueError("gaussian_mmd: bandwidths must not be empty")
    k = jnp.sum(jnp.exp(-d2[..., None] / (2 * h**2)[None, None, :]), axis=-1)
    n = x.shape[0]
    return jnp.mean(k[:n, :n]) + jnp.mean(k[n:, n:]) - 2 * jnp.mean(k[:n, n:])


def moment_loss(
    x: Float[Array, "n ..."], y: Float[Array, "m ..."], *, covariance: bool = False
) -> Float[Array, ""]:
    """‖mean_x − mean_y‖² + ‖var_x − var_y‖² (or the covariances' squared Frobenius distance
    with `covariance=True`), with unbiased (1/(n−1)) estimators."""
    x, y = _events(x, y, "moment_loss")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(
            f"moment_loss: need at least 2 samples each, got {x.shape[0]} and {y.shape[0]}"
        )
    mean = jnp.sum((jnp.mean(x, 0) - jnp.mean(y, 0)) ** 2)
    if covariance:
        spread = jnp.cov(x, rowvar=False) - jnp.cov(y, rowvar=False)
    else:
        spread = jnp.var(x, axis=0, ddof=1) - jnp.var(y, axis=0, ddof=1)
    return mean + jnp.sum(spread**2)
