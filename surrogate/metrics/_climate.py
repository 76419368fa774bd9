"""Offline, forecast and climate metrics of closures and coupled models (pure functions of arrays).

- offline: MSE and R² of the predicted sub-grid tendency;
- forecast: RMSE of the ensemble-mean forecast against the truth, per lead time
  (Arnold et al. 2013);
- climate: the Hellinger distance between the PDFs of X in the truth and in the coupled
  model (as Arnold et al. 2013 measure climate, on histograms over common bins), the
  autocorrelation function of X, and the time to blow-up.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._fields import r2_score
from ._fields import same_shape as _same_shape


def offline_mse(pred: Float[Array, " *batch"], true: Float[Array, " *batch"]) -> Float[Array, ""]:
    """Mean squared error of predicted tendencies, pooled over every axis."""
    _same_shape(pred, true)
    return jnp.mean((jnp.asarray(pred) - jnp.asarray(true)) ** 2)


def offline_r2(pred: Float[Array, " *batch"], true: Float[Array, " *batch"]) -> Float[Array, ""]:
    """Coefficient of determination 1 − SS_res/SS_tot, pooled over every axis."""
    _same_shape(pred, true)
    return r2_score(jnp.asarray(pred), jnp.asarray(true))


def histogram_probabilities(
    samples: Float[Array, " *n"], edges: Float[Array, " bins_plus_one"]
) -> Float[Array, " bins"]:
    """Probability of each bin [e_i, e_{i+1}) (the last bin closed); samples outside the
    edges are dropped before normalizing."""
    edges = jnp.asarray(edges)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(f"edges must be a 1-D array of >= 2 values, got shape {edges.shape}")
    counts, _ = jnp.histogram(jnp.ravel(samples), bins=edges)
    total = jnp.sum(counts)
    return counts / jnp.where(total > 0, total, 1)


def hellinger(p: Float[Array, " bins"], q: Float[Array, " bins"]) -> Float[Array, ""]:
    """H(p, q) = ( ½ Σ_i (√p_i − √q_i)² )^{1/2} for probability vectors: 0 for p = q, 1 for
    disjoint supports. Written as a sum of squares, it is exactly 0 for identical inputs
    (1 − Σ √(p_i q_i) would be off by rounding)."""
    _same_shape(p, q)
    return jnp.sqrt(0.5 * jnp.sum((jnp.sqrt(p) - jnp.sqrt(q)) ** 2))


def hellinger_distance(
    a: Float[Array, " *n"],
    b: Float[Array, " *m"],
    *,
    bins: int = 100,
    value_range: tuple[float, float] | None = None,
) -> Float[Array, ""]:
    """Hellinger distance between the PDFs of samples `a` and `b` (all values pooled), both
    histogrammed on the same `bins` equal bins over `value_range` (default: the range of
    `a` and `b` together)."""
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    a, b = jnp.ravel(jnp.asarray(a)), jnp.ravel(jnp.asarray(b))
    if a.size == 0 or b.size == 0:
        raise ValueError(f"need samples on both sides, got {a.size} and {b.size}")
    if value_range is None:
        return _hellinger_of_samples(a, b, bins, None, None)
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range}")
    return _hellinger_of_samples(a, b, bins, jnp.asarray(lo), jnp.asarray(hi))


@functools.partial(jax.jit, static_argnames="bins")
def _hellinger_of_samples(a, b, bins: int, lo, hi) -> Array:
    if lo is None:
        lo = jnp.minimum(jnp.min(a), jnp.min(b))
        hi = jnp.maximum(jnp.max(a), jnp.max(b))
        hi = jnp.where(hi > lo, hi, lo + 1)  # all samples equal: one bin holds them
    edges = jnp.linspace(lo, hi, bins + 1)
    return hellinger(histogram_probabilities(a, edges), histogram_probabilities(b, edges))


@functools.partial(jax.jit, static_argnames=("max_lag", "axis"))
def autocorrelation(
    x: Float[Array, " ..."], max_lag: int, *, axis: int = 0
) -> Float[Array, " lags"]:
    """ρ(τ) = Σ_t x'_t x'_{t+τ} / Σ_t x'_t², τ = 0..max_lag, along `axis` (time).

    x' is each series minus its mean; numerator and denominator are pooled over all other
    axes (series of one stationary process). The biased estimator: ρ(0) = 1 exactly and
    |ρ(τ)| <= 1. All lags at once by the Wiener-Khinchin theorem: the autocovariance is
    the inverse FFT of |FFT(x')|², zero-padded to >= 2n so that the circular correlation
    equals the linear one.
    """
    x = jnp.asarray(x)
    if not isinstance(max_lag, int) or max_lag < 0:
        raise ValueError(f"max_lag must be a non-negative int, got {max_lag!r}")
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is not an axis of an array of shape {x.shape}")
    n = x.shape[axis]
    if max_lag >= n:
        raise ValueError(f"max_lag must be < the series length {n}, got {max_lag}")
    series = jnp.moveaxis(x, axis, 0).reshape(n, -1)
    series = series - jnp.mean(series, axis=0, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = jnp.fft.rfft(series, n=size, axis=0)
    power = jnp.sum(jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2, axis=1)
    covariance = jnp.fft.irfft(power, n=size)[: max_lag + 1]
    return covariance / covariance[0]


def forecast_rmse(
    ensemble: Float[Array, " case member time k"], truth: Float[Array, " case time k"]
) -> Float[Array, " time"]:
    """RMSE of the ensemble-mean forecast per lead time, over cases and k."""
    ensemble, truth = jnp.asarray(ensemble), jnp.asarray(truth)
    if ensemble.ndim != 4 or ensemble.shape[:1] + ensemble.shape[2:] != truth.shape:
        raise ValueError(
            f"ensemble should be (case, member, time, k) and truth (case, time, k) with "
            f"matching sizes, got {ensemble.shape} and {truth.shape}"
        )
    error = jnp.mean(ensemble, axis=1) - truth
    return jnp.sqrt(jnp.mean(error**2, axis=(0, 2)))


def blowup_time(
    first_unstable_step: Int[Array, " *members"], dt: float
) -> Float[Array, " *members"]:
    """Model time at which a rollout left its bounds (`rollout`'s first_unstable_step
    times the step `dt`); +inf for a rollout that stayed stable (step −1)."""
    steps = jnp.asarray(first_unstable_step)
    return jnp.where(steps < 0, jnp.inf, steps * dt)
