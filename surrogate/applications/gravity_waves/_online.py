"""Online runs: an emulator in the QBO model in place of the spectral scheme, and the QBO's
period and amplitude of a run."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ...coupling import Parameterization, RolloutResult, rollout
from ...solvers.qbo import (
    DAY,
    MONTH,
    QBO,
    YEAR,
    QBOState,
    at_height,
    qbo_amplitude,
    qbo_period,
)

U_BOUND = 150.0  # m/s: a wind beyond this counts as a blow-up


def online_run(
    model: QBO,
    parameterization: Parameterization,
    *,
    years: float,
    state0: QBOState | None = None,
    save_every_days: float = 5.0,
) -> RolloutResult:
    """Run `model` with `parameterization` as its wave forcing for `years` (365-day) years
    from `state0` (default: its parabolic initial state, `QBO.initial_state`), through
    `surrogate.coupling.rollout`: stable while every wind stays finite and within
    ±`U_BOUND` m/s (else the run freezes at its last good state and says when it failed)."""
    if not years > 0 or not save_every_days > 0:
        raise ValueError(f"years and save_every_days must be positive, got {years}, "
                         f"{save_every_days}")  # fmt: skip
    every = max(1, round(save_every_days * DAY / model.dt))
    n_steps = every * math.ceil(years * YEAR / model.dt / every)
    bounds = ((-U_BOUND, None), (U_BOUND, None))
    state0 = model.initial_state() if state0 is None else state0
    return rollout(model.step, parameterization, state0, n_steps, save_every=every,
                   bounds=bounds)  # fmt: skip


def spun_up_state(model: QBO, parameterization: Parameterization, *, years: float) -> QBOState:
    """The state after `years` of `model` with `parameterization` (the reference scheme)
    from its initial state, its clock reset to zero: where online runs start, inside the
    regime the emulators were trained on (the problem's data are stored after a spin-up,
    and the parabolic initial state is not a QBO state)."""
    result = online_run(model, parameterization, years=years, save_every_days=years * 365)
    if not bool(result.stable):
        raise ValueError("the spin-up run blew up")
    return result.states[0][-1], jnp.zeros((), result.states[1].dtype)


def qbo_statistics(
    result: RolloutResult, model: QBO, *, spin_up_years: float = 0.0, height: float = 25e3
) -> dict[str, float]:
    """Period (months of 365/12 days) and amplitude (standard deviation, m/s) of the
    ring-mean wind at `height` after `spin_up_years`, and the spread of the columns about
    the ring mean (m/s, RMS); NaN period if the wind changes sign fewer than three times."""
    u, t = (np.asarray(a, np.float64) for a in result.states)
    if u.ndim == 3:
        spread = float(np.sqrt(np.mean((u - u.mean(axis=1, keepdims=True)) ** 2)))
        u = u.mean(axis=1)
    else:
        spread = 0.0
    keep = t >= spin_up_years * YEAR
    if keep.sum() < 3:
        raise ValueError(f"the run of {t[-1] / YEAR:.3g} years is shorter than its spin-up "
                         f"of {spin_up_years} years")  # fmt: skip
    series = at_height(u[keep], model.heights(), height)
    return {
        "period_months": qbo_period(series, t[keep]) / MONTH,
        "amplitude": qbo_amplitude(series),
        "column_spread": spread,
        "stable": bool(result.stable),
        "first_unstable_day": float(
            jnp.where(result.stable, -1, result.first_unstable_step) * model.dt / DAY
        ),  # fmt: skip
    }
