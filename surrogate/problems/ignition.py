"""Laser ignition of a hydrogen/air kernel: 0-D reactor with detailed chemistry, a Gaussian
laser pulse and entrainment of cold surroundings.

The setting of parametric neural ODEs for laser ignition in a rocket combustor (PNODE,
Dai, Buchmüller, Bhatt, Yang & Ihme): a small gas kernel is heated by a laser pulse; it
ignites when chemistry outruns the heat and radicals lost to the surroundings, and fails
otherwise. Here the kernel is `surrogate.solvers.reactor.IdealGasReactor` at constant
pressure with the packaged GRI-Mech 3.0 H2/O2 subset (or any Cantera YAML file with H2, O2,
N2, H2O, OH), mixing at rate k towards the unburnt gas at its initial temperature.

One sample is seven scalars, drawn uniformly in their ranges (`PARAMETERS`, in that order
the model input): laser energy E [J/kg], pulse time t_p [s], pulse width sigma [s],
equivalence ratio phi, initial temperature T0 [K], pressure p0 [Pa], mixing rate k [1/s].
Outputs on `n_times` times in [0, t_end]: T, p, mass fractions of H2, O2, H2O, OH; the
`ignited` flag (max T > T0 + `ignition_rise`) and `ignition_delay` (time of max dT/dt; on
failed cases it marks the pulse, and only ignited cases count in the metrics).

With the default ranges about half of the cases ignite. `extrapolation = f > 0` draws an
out-of-range test set: in each sample one parameter, chosen at random, lies outside its
range [lo, hi] by up to f times the range's width in log scale, i.e. uniformly in
log x within [lo (lo/hi)^f, lo) or (hi, hi (hi/lo)^f] (the side at random; the parameters are
positive and span factors of 1.7-10); the others stay in range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..solvers._mechanism import Mechanism, load_mechanism
from ..solvers.reactor import (
    GaussianPulse,
    IdealGasReactor,
    ignition_delay,
    mole_fractions_from_equivalence_ratio,
)
from ._base import Coordinate, Problem, Variable, check_option

# name, units, long name: the model input order of every surrogate of this problem
PARAMETERS: tuple[tuple[str, str, str], ...] = (
    ("laser_energy", "J kg-1", "laser energy deposited per unit mass"),
    ("pulse_time", "s", "time of the laser pulse maximum"),
    ("pulse_width", "s", "standard deviation of the laser pulse"),
    ("equivalence_ratio", "1", "fuel/air equivalence ratio"),
    ("T0", "K", "initial and surrounding temperature"),
    ("p0", "Pa", "pressure"),
    ("mixing_rate", "s-1", "entrainment rate of the surroundings"),
)
NAMES = tuple(p[0] for p in PARAMETERS)
SPECIES = ("H2", "O2", "H2O", "OH")


class Ignition(Problem):
    """Laser ignition of H2/air with mixing losses: parameters -> T(t), p(t), Y(t), ignition.

    Options: the range of each parameter (`<name>_min`, `<name>_max`), `extrapolation`
    (module docstring), `t_end` [s] and `n_times` of the saved trajectory, `ignition_rise`
    [K] of the ignition criterion, `mechanism` (packaged name or YAML path), and the
    reactor's `rtol`, `atol`.
    """

    laser_energy_min: float = 0.4e6
    laser_energy_max: float = 1.6e6
    pulse_time_min: float = 2e-4
    pulse_time_max: float = 4e-4
    pulse_width_min: float = 1e-5
    pulse_width_max: float = 3e-5
    equivalence_ratio_min: float = 0.5
    equivalence_ratio_max: float = 2.0
    T0_min: float = 300.0
    T0_max: float = 500.0
    p0_min: float = 0.5e5
    p0_max: float = 2e5
    mixing_rate_min: float = 200.0
    mixing_rate_max: float = 2000.0
    extrapolation: float = 0.0
    t_end: float = 2e-3
    n_times: int = 161
    ignition_rise: float = 1000.0
    mechanism: str = "h2o2"
    rtol: float = 1e-6
    atol: float = 1e-9

    name: ClassVar[str] = "ignition"
    model_inputs: ClassVar[tuple[str, ...]] = NAMES
    model_targets: ClassVar[tuple[str, ...]] = ("T",)
    # the stiff reference solve runs in float64; generation switches it on
    needs_x64: ClassVar[bool] = True

    def __check_init__(self):
        for name in NAMES:
            for end in ("min", "max"):
                check_option(f"{name}_{end}", getattr(self, f"{name}_{end}"), 0, 1e12,
                             low_open=True, note="every parameter is positive")  # fmt: skip
        lo, hi = self.ranges()
        if not np.all(hi > lo):
            bad = [n for n, a, b in zip(NAMES, lo, hi, strict=True) if not b > a]
            raise ValueError(f"ranges of {bad} must have min < max")
        check_option("extrapolation", self.extrapolation, 0, 10)
        check_option("t_end", self.t_end, 0, 10, low_open=True, note="s")
        check_option("n_times", self.n_times, 4, 100_000, integer=True)
        check_option("ignition_rise", self.ignition_rise, 0, 1e4, low_open=True, note="K")
        check_option("rtol", self.rtol, 0, 0.1, low_open=True)
        check_option("atol", self.atol, 0, 1, low_open=True)
        with np.errstate(over="ignore"):
            finite = np.all(np.isfinite(self.extended_ranges()))
        if not finite:
            raise ValueError(f"extrapolation={self.extrapolation} takes the ranges beyond floats")
        low, high = self.extended_ranges()
        if not 4 * high[NAMES.index("pulse_width")] <= low[NAMES.index("pulse_time")]:
            raise ValueError(
                "the earliest pulse time must be >= 4 times the widest pulse width (all the "
                "energy in t > 0), also with extrapolation"
            )
        missing = [s for s in (*SPECIES, "N2") if s not in self.mech.species]
        if missing:
            raise ValueError(f"mechanism {self.mechanism!r} lacks species {missing}")

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds of the parameters in `NAMES` order."""
        lo = np.array([getattr(self, f"{n}_min") for n in NAMES], dtype=np.float64)
        hi = np.array([getattr(self, f"{n}_max") for n in NAMES], dtype=np.float64)
        return lo, hi

    def extended_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounds reached with `extrapolation` (equal to `ranges()` when it is 0)."""
        lo, hi = self.ranges()
        f = self.extrapolation
        return lo * (lo / hi) ** f, hi * (hi / lo) ** f

    @property
    def mech(self) -> Mechanism:
        return load_mechanism(self.mechanism)

    def times(self) -> np.ndarray:
        return np.linspace(0.0, self.t_end, self.n_times)

    def sample_input(self, key: PRNGKeyArray) -> dict[str, Array]:
        lo, hi = (jnp.asarray(a) for a in self.ranges())
        k_in, k_which, k_side, k_out = jax.random.split(key, 4)
        u = jax.random.uniform(k_in, (len(NAMES),), dtype=lo.dtype)
        x = jnp.clip(lo + u * (hi - lo), lo, hi)
        if self.extrapolation > 0:
            which = jax.random.randint(k_which, (), 0, len(NAMES))
            above = jax.random.bernoulli(k_side)
            d = jax.random.uniform(k_out, (), dtype=lo.dtype) * self.extrapolation
            outside = jnp.where(above, hi * (hi / lo) ** d, lo * (lo / hi) ** d)
            x = jnp.where(jnp.arange(len(NAMES)) == which, outside, x)
        return dict(zip(NAMES, x, strict=True))

    def reactor(self, inputs: Mapping[str, Array]) -> IdealGasReactor:
        pulse = GaussianPulse(inputs["laser_energy"], inputs["pulse_time"], inputs["pulse_width"])
        return IdealGasReactor(
            self.mech,
            heat_source=pulse,
            mixing_rate=inputs["mixing_rate"],
            rtol=self.rtol,
            atol=self.atol,
        )

    def solve(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        mech = self.mech
        inputs = {n: jnp.asarray(inputs[n], jnp.float64) for n in NAMES}
        X0 = mole_fractions_from_equivalence_ratio(mech, inputs["equivalence_ratio"])
        ts = jnp.asarray(self.times())
        out = self.reactor(inputs).solve(inputs["T0"], inputs["p0"], ts, X0=X0)
        result = {"T": out["T"], "p": out["p"]}
        for s in SPECIES:
            result[f"Y_{s}"] = out["Y"][:, mech.species_index(s)]
        result["ignited"] = ignited(out["T"], self.ignition_rise).astype(out["T"].dtype)
        result["ignition_delay"] = ignition_delay(ts, out["T"])
        return result

    def coords(self) -> dict[str, Coordinate]:
        return {"time": Coordinate.time_axis(self.times(), "time since the start of the run")}

    def variables(self) -> dict[str, Variable]:
        v = {n: Variable((), u, ln, role="input") for n, u, ln in PARAMETERS}
        v["T"] = Variable(("time",), "K", "temperature")
        v["p"] = Variable(("time",), "Pa", "pressure")
        for s in SPECIES:
            v[f"Y_{s}"] = Variable(("time",), "1", f"mass fraction of {s}")
        v["ignited"] = Variable((), "1", f"1 if max T > T0 + {self.ignition_rise:g} K, else 0")
        v["ignition_delay"] = Variable((), "s", "time of the maximum of dT/dt")
        return v

    def solver_settings(self) -> dict:
        return {
            "method": "Kvaerno5 ESDIRK, PI step-size control, constant pressure, mixing",
            "mechanism": self.mechanism,
            "rtol": self.rtol,
            "atol": self.atol,
        }

    def metrics(self, pred: Array, true: Array) -> dict[str, float]:
        """MAE of T [K] over all times and samples, ignition accuracy, and the mean absolute
        ignition-delay error [s] on the cases that ignite in truth (`pred`, `true`: T of
        shape (sample, 1, time) or (sample, time))."""
        return ignition_metrics(self.times(), pred, true, self.ignition_rise)


def ignited(T: Float[Array, "... time"], rise: float) -> Array:
    """Whether max T exceeds T(0) + rise (the pulse alone heats by less than ~800 K here,
    a burning kernel by more than ~1300 K)."""
    return jnp.max(T, axis=-1) > T[..., 0] + rise


def ignition_metrics(
    ts: Float[Array, " time"], pred: Array, true: Array, rise: float = 1000.0
) -> dict[str, float]:
    """T MAE [K], ignition accuracy, delay MAE [s] (true ignitions), number of ignitions."""
    pred, true = jnp.asarray(pred), jnp.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {true.shape}")
    if pred.ndim == 3:
        pred, true = pred[:, 0], true[:, 0]
    if pred.ndim != 2 or pred.shape[1] != len(ts):
        raise ValueError(f"expected T of shape (sample, {len(ts)}), got {pred.shape}")
    ig_p, ig_t = ignited(pred, rise), ignited(true, rise)
    delay = jax.vmap(ignition_delay, in_axes=(None, 0))
    ts = jnp.asarray(ts, pred.dtype)
    err = jnp.abs(delay(ts, pred) - delay(ts, true))
    n_ign = int(jnp.sum(ig_t))
    return {
        "mae_T": float(jnp.mean(jnp.abs(pred - true))),
        "ignition_accuracy": float(jnp.mean(ig_p == ig_t)),
        "delay_mae": float(jnp.sum(jnp.where(ig_t, err, 0.0)) / max(n_ign, 1)),
        "n_ignited": float(n_ign),
    }
