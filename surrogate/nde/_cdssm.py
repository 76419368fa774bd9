"""Continuous-discrete state-space models for gappy, irregularly sampled time series.

    dx = f(x) dt + L dW,        y_k = h(x(t_k)) + v_k,   v_k ~ N(0, diag R),
    x(t_0) ~ N(m_0, P_0),

with observations at increasing but otherwise arbitrary times t_k, any component of any y_k
possibly missing. Ansari, Heng, Lim & Soh (2023), "Neural continuous-discrete state space
models for irregularly-sampled time series" (ICML), NCDSSM: between two observation times
the Gaussian moments of x follow ordinary differential equations, at an observation they are
updated by Kalman's rule on the observed components only, and the sum over observations of
the one-step predictive log densities log p(y_k | y_<k) is the marginal log-likelihood,
exact when f and h are linear, the extended-Kalman (linearised) one otherwise.

Moments between observations (Särkkä & Solin 2019, "Applied stochastic differential
equations", the linear-SDE moment equations and their Taylor linearisation):

    m' = f(m),   P' = J(m) P + P J(m)ᵀ + L Lᵀ,   J = ∂f/∂x,

which for f(x) = A x is exact and has the closed form m(t) = Φ m, P(t) = Φ P Φᵀ + Q_d with
Φ = e^{A t}, Q_d = ∫₀ᵗ e^{A s} L Lᵀ e^{Aᵀ s} ds (Van Loan 1978, "Computing integrals involving
the matrix exponential"). Here (Φ, Q_d) are computed by scaling and squaring on the pair,
(Φ, Q)(2h) = (Φ², Φ Q Φᵀ + Q)(h), after Taylor series at a step h with ‖A h‖₁ ≤ 1/2; unlike
the exponential of Van Loan's block matrix this never forms e^{−Aᵀ t}, which overflows
relative to Φ when the modes' decay rates differ and the gap is long. The observation
update takes the observed components one at a time (R is diagonal), so a mask costs nothing
and no matrix is factorised.

Both models keep the drift matrices stable by construction: A = W − Wᵀ − B Bᵀ with B
lower-triangular with a positive diagonal, so that A + Aᵀ = −2 B Bᵀ is negative definite
and every eigenvalue of A has a negative real part. A convex combination of such matrices is
again such a matrix, so the locally linear drift f(x) = A(x) x of `NeuralCDSSM` satisfies
d|x|²/dt = 2 xᵀ A(x) x < 0: the noise-free latent state decays to 0 from anywhere.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._serialization import savable

_PROPAGATIONS = ("exact", "ode")
_TAYLOR_TERMS = 16  # (‖A h‖₁ ≤ 1/2, ‖Lyapunov operator · h‖ ≤ 1): remainder < 1/17! ≈ 3e-15
_MAX_HALVINGS = 24  # round-off accuracy up to ‖A‖₁ Δt = 2^22 (~4e6 decay times)


# ---- linear algebra ---------------------------------------------------------------------


def _positive_factor(raw: Array) -> Array:
    """Lower-triangular factor with a positive diagonal (exp of the raw one): C Cᵀ is
    positive definite whatever the raw values."""
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(raw)))


def _stable_matrix(skew: Array, damping: Array) -> Array:
    """A = W − Wᵀ − B Bᵀ: its symmetric part −B Bᵀ is negative definite."""
    b = _positive_factor(damping)
    return skew - skew.T - b @ b.T


def _sym(p: Array) -> Array:
    return 0.5 * (p + p.T)


def _discretize(a: Array, q: Array, dt: Array) -> tuple[Array, Array]:
    """Φ = e^{A Δt} and Q_d = ∫₀^Δt e^{A s} Q e^{Aᵀ s} ds for one gap Δt > 0."""
    norm = jnp.max(jnp.sum(jnp.abs(a), axis=0)) * dt
    halvings = jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-30) / 0.5))
    halvings = jax.lax.stop_gradient(jnp.clip(halvings, 0, _MAX_HALVINGS - 1))
    h = dt * jnp.exp2(-halvings)
    ah = a * h
    # Taylor series: Φ(h) = Σ (A h)^k / k!, Q_d(h) = Σ h^{k+1}/(k+1)! 𝓛^k(Q), 𝓛X = A X + X Aᵀ
    # (Q_d solves Q_d' = 𝓛 Q_d + Q from 0)
    # (a loop, not unrolled: XLA compiles one small body instead of 50 products)

    def taylor(carry, k):
        term, qterm, phi, qd = carry
        term = term @ ah / k
        qterm = (ah @ qterm + qterm @ ah.T) / (k + 1)
        return (term, qterm, phi + term, qd + qterm), None

    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    ks = jnp.arange(1, _TAYLOR_TERMS + 1, dtype=a.dtype)
    (_, _, phi, qd), _ = jax.lax.scan(taylor, (eye, q * h, eye, q * h), ks)

    def double(carry, i):
        phi, qd = carry
        twice = (phi @ phi, _sym(phi @ qd @ phi.T + qd))
        keep = i < halvings
        return (jnp.where(keep, twice[0], phi), jnp.where(keep, twice[1], qd)), None

    (phi, qd), _ = jax.lax.scan(double, (phi, qd), jnp.arange(_MAX_HALVINGS, dtype=a.dtype))
    return phi, _sym(qd)


def _update(m, p, y, mask, hm, hjac, r):
    """Kalman update on the observed components; returns (m, P, log p(y_obs | past)).

    R is diagonal, so the update by the observed vector equals the updates by its components
    one after the other, each conditioning on the previous ones (the chain rule of
    log p(y_obs | past) is the sum of their scalar predictive densities): no matrix to
    factorise, O(obs · state²), and a missing component is simply skipped (zero gain, no
    term). For a nonlinear emission the linearisation at the predicted mean is kept for all
    components, h(x) ≈ h(m⁻) + J (x − m⁻), which makes the result that of the joint extended
    Kalman update. Covariances by Joseph's form, symmetrised.
    """
    m_pred, eye = m, jnp.eye(m.shape[0], dtype=m.dtype)

    def component(carry, inputs):
        m, p, ll = carry
        h, yi, seen, ri, hmi = inputs
        h = jnp.where(seen, h, 0)
        resid = jnp.where(seen, yi - hmi - h @ (m - m_pred), 0)
        ph = p @ h
        s = h @ ph + ri
        k = ph / s
        ikh = eye - jnp.outer(k, h)
        p = _sym(ikh @ p @ ikh.T + ri * jnp.outer(k, k))
        term = -0.5 * (resid**2 / s + jnp.log(2 * math.pi * s))
        return (m + k * resid, p, ll + jnp.where(seen, term, 0)), None

    zero = jnp.zeros((), m.dtype)
    (m, p, ll), _ = jax.lax.scan(component, (m, p, zero), (hjac, y, mask, r, hm))
    return m, p, ll


# ---- input checks -----------------------------------------------------------------------


# Inputs known now are checked in numpy (nothing to compile, a ValueError at once); traced
# ones (under the caller's jit) get their shapes checked now and their values at run time.


def _traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_times(times: ArrayLike, who: str, name: str) -> Array:
    if not _traced(times):
        times = np.asarray(times)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"{who}: {name} must be a 1-D array of times, got shape {times.shape}")
    if not jnp.issubdtype(times.dtype, jnp.floating):
        times = times.astype(jnp.result_type(float))
    msg = f"{who}: {name} must be finite and strictly increasing"
    if _traced(times):
        bad = jnp.any(~jnp.isfinite(times)) | jnp.any(jnp.diff(times) <= 0)
        return eqx.error_if(times, bad, msg)
    if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
        raise ValueError(f"{msg}, got {times}")
    return jnp.asarray(times)


def _check_window(times, obs, mask, obs_size: int, who: str):
    times = _check_times(times, who, "times")
    t = times.shape[0]
    obs = obs if _traced(obs) else np.asarray(obs)
    mask = mask if _traced(mask) else np.asarray(mask)
    if obs.shape != (t, obs_size):
        raise ValueError(
            f"{who}: obs must have shape (times, obs_size) = {(t, obs_size)}, got {obs.shape}"
        )
    if mask.shape != (t, obs_size):
        raise ValueError(
            f"{who}: mask must have the shape of obs {(t, obs_size)}, got {mask.shape}"
        )
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{who}: mask must be boolean (True = observed), got dtype {mask.dtype}")
    if not jnp.issubdtype(obs.dtype, jnp.floating):
        raise ValueError(f"{who}: obs must be floating-point, got dtype {obs.dtype}")
    msg = f"{who}: obs must be finite where mask is True (missing values need mask False)"
    if _traced(obs, mask):
        obs = eqx.error_if(obs, jnp.any(mask & ~jnp.isfinite(obs)), msg)
    elif np.any(mask & ~np.isfinite(obs)):
        raise ValueError(msg)
    return times, jnp.asarray(obs), jnp.asarray(mask)


# ---- the models -------------------------------------------------------------------------


class _CDSSM(eqx.Module):
    """Filtering, likelihood and forecasts shared by the concrete models; they supply the
    initial moments, the emission, the drift and its Jacobian, and the propagation."""

    state_size: eqx.AbstractVar[int]
    obs_size: eqx.AbstractVar[int]
    initial_mean: eqx.AbstractVar[Array]
    initial_factor: eqx.AbstractVar[Array]
    diffusion_factor: eqx.AbstractVar[Array]
    log_noise_variance: eqx.AbstractVar[Array]
    rtol: eqx.AbstractVar[float]
    atol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]

    @abc.abstractmethod
    def _drift(self, x: Array) -> tuple[Array, Array]:
        """f(x) and its Jacobian."""

    @abc.abstractmethod
    def _emission(self, x: Array) -> tuple[Array, Array]:
        """h(x) and its Jacobian."""

    def _transitions(self, gaps: Array) -> Any:
        """Per-gap data that `_propagate` consumes (scanned over)."""
        return gaps

    def _propagate(self, m: Array, p: Array, gap: Any) -> tuple[Array, Array]:
        """The moment equations solved with diffrax (Tsit5, adaptive steps) over one gap."""

        def field(t, y, model):
            m, p = y
            f, jac = model._drift(m)
            return f, jac @ p + p @ jac.T + model._process_noise()

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            jnp.zeros((), gap.dtype),
            gap,
            None,
            (m, p),
            self,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps,
            throw=False,
        )
        m, p = eqx.error_if(
            (sol.ys[0][-1], sol.ys[1][-1]),
            sol.result != diffrax.RESULTS.successful,
            f"{type(self).__name__}: the moment equations took more than max_steps="
            f"{self.max_steps} steps (or failed) over one gap; raise max_steps or rtol/atol",
        )
        return m, _sym(p)

    # -- parameters in the model's terms --

    @property
    def diffusion_matrix(self) -> Float[Array, "state state"]:
        """L (lower-triangular, positive diagonal)."""
        return _positive_factor(self.diffusion_factor)

    @property
    def noise_variance(self) -> Float[Array, " obs"]:
        """The diagonal of R."""
        return jnp.exp(self.log_noise_variance)

    @property
    def initial_covariance(self) -> Float[Array, "state state"]:
        c = _positive_factor(self.initial_factor)
        return c @ c.T

    def _process_noise(self) -> Array:
        ell = self.diffusion_matrix
        return ell @ ell.T

    # -- public --

    def _window(self, times, obs, mask):
        return _check_window(times, obs, mask, self.obs_size, type(self).__name__)

    def log_likelihood(
        self,
        times: Float[Array, " times"],
        obs: Float[Array, "times obs"],
        mask: Bool[Array, "times obs"],
    ) -> Float[Array, ""]:
        """Σ_k log p(y_k,obs | y_<k): the Gaussian predictive densities of the observed
        components (entries of `obs` where `mask` is False are ignored, NaN allowed); a time
        with nothing observed only propagates. Exact for `LinearCDSSM`."""
        return jnp.sum(_run(self, *self._window(times, obs, mask))[2])

    def filter(
        self,
        times: Float[Array, " times"],
        obs: Float[Array, "times obs"],
        mask: Bool[Array, "times obs"],
    ) -> tuple[Float[Array, "times state"], Float[Array, "times state state"]]:
        """Filtered means and covariances of x(t_k) given y_≤k."""
        means, covs, _ = _run(self, *self._window(times, obs, mask))
        return means, covs

    def forecast(
        self,
        times: Float[Array, " times"],
        obs: Float[Array, "times obs"],
        mask: Bool[Array, "times obs"],
        future_times: Float[Array, " future"],
    ) -> tuple[Float[Array, "future obs"], Float[Array, "future obs"]]:
        """Mean and variance of y at each future time (after times[-1], increasing) given
        the window: the filter's last moments propagated without updates. The variance is
        the latent uncertainty seen through the emission plus the observation noise R."""
        who = type(self).__name__
        future = _check_times(future_times, who, "future_times")
        times, obs, mask = self._window(times, obs, mask)
        msg = f"{who}: future_times must come after the last time of the window"
        if _traced(future, times):
            future = eqx.error_if(future, future[0] <= times[-1], msg)
        elif float(future[0]) <= float(times[-1]):
            raise ValueError(f"{msg} ({float(times[-1])}), got {future}")
        return _forecast(self, times, obs, mask, future)


# The computations behind the public methods, compiled once per model structure and input
# shapes (inputs checked before): a call outside `jit` does not run op by op.


@eqx.filter_jit
def _run(model: _CDSSM, times: Array, obs: Array, mask: Array):
    dtype = model.initial_mean.dtype
    r = model.noise_variance
    y = jnp.where(mask, obs, 0).astype(dtype)  # before any arithmetic: NaN stays out

    def step(carry, inputs):
        gap, yk, mk = inputs
        m, p = model._propagate(*carry, gap)
        hm, hjac = model._emission(m)
        m, p, ll = _update(m, p, yk, mk, hm, hjac, r)
        return (m, p), (m, p, ll)

    # the first time is a gap of length 0 (the moments stay those of the prior): one update
    # in the compiled program instead of two
    gaps = jnp.concatenate([jnp.zeros(1, dtype), jnp.diff(times).astype(dtype)])
    start = (model.initial_mean, model.initial_covariance)
    _, (ms, ps, lls) = jax.lax.scan(step, start, (model._transitions(gaps), y, mask))
    return ms, ps, lls


@eqx.filter_jit
def _forecast(model: _CDSSM, times: Array, obs: Array, mask: Array, future: Array):
    means, covs, _ = _run(model, times, obs, mask)
    dtype = model.initial_mean.dtype
    gaps = jnp.diff(jnp.concatenate([times[-1:].astype(future.dtype), future])).astype(dtype)

    def step(carry, gap):
        m, p = model._propagate(*carry, gap)
        return (m, p), (m, p)

    _, (ms, ps) = jax.lax.scan(step, (means[-1], covs[-1]), model._transitions(gaps))

    def observe(m, p):
        hm, hjac = model._emission(m)
        return hm, jnp.einsum("ij,jk,ik->i", hjac, p, hjac) + model.noise_variance

    return jax.vmap(observe)(ms, ps)


# Initial values are assembled in numpy from one normal draw of the key: a model of new
# sizes then costs one random-number kernel to compile, not one per parameter.


def _normals(key: PRNGKeyArray, shapes: list[tuple[int, ...]], dtype: Any) -> list[np.ndarray]:
    sizes = [math.prod(shape) for shape in shapes]
    z = np.asarray(jax.random.normal(key, (sum(sizes),), dtype), np.float64)
    ends = np.cumsum(sizes)
    return [z[e - n : e].reshape(shape) for e, n, shape in zip(ends, sizes, shapes, strict=True)]


def _drift_init(z_skew: np.ndarray, z_damping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ≈ −0.5 I plus a random rotation and a small random symmetric part."""
    n = z_skew.shape[-1]
    damping = 0.1 * np.tril(z_damping, -1) + math.log(math.sqrt(0.5)) * np.eye(n)
    return 0.5 * z_skew / math.sqrt(n), damping


def _common_init(state_size: int, obs_size: int, z_emission: np.ndarray) -> dict:
    """Shared by both models: L = 0.5 I, R = 0.1, P_0 = I, m_0 = 0, H ~ N(0, 1/state)."""
    return {
        "diffusion_factor": math.log(0.5) * np.eye(state_size),
        "emission": z_emission / math.sqrt(state_size),
        "log_noise_variance": np.full(obs_size, math.log(0.1)),
        "initial_mean": np.zeros(state_size),
        "initial_factor": np.zeros((state_size, state_size)),
    }


class _MLP(eqx.Module):
    """tanh hidden layers, linear output; weights N(0, 1/fan_in)."""

    weights: list[Array]
    biases: list[Array]

    def __call__(self, x: Array) -> Array:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = w @ x + b
            x = jnp.tanh(x) if i < last else x
        return x


def _mlp_shapes(sizes: list[int]) -> list[tuple[int, ...]]:
    return [s for n_in, n_out in zip(sizes[:-1], sizes[1:]) for s in ((n_out, n_in), (n_out,))]


def _mlp(z: list[np.ndarray], dtype: Any, zero_last: bool = False) -> _MLP:
    weights = [w / math.sqrt(w.shape[1]) for w in z[0::2]]
    biases = list(z[1::2])
    if zero_last:
        weights[-1], biases[-1] = 0 * weights[-1], 0 * biases[-1]
    return _MLP([jnp.asarray(w, dtype) for w in weights], [jnp.asarray(b, dtype) for b in biases])


def _check_sizes(who: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")


def _check_tolerances(who: str, rtol: float, atol: float, max_steps: int) -> None:
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"{who}: rtol and atol must be positive, got {rtol}, {atol}")
    if int(max_steps) < 1:
        raise ValueError(f"{who}: max_steps must be a positive integer, got {max_steps}")


@savable
class LinearCDSSM(_CDSSM):
    """Linear-Gaussian continuous-discrete SSM: dx = A x dt + L dW, y_k = H x(t_k) + v_k.

    A = W − Wᵀ − B Bᵀ is stable for any parameter values (B lower-triangular with a positive
    diagonal), L and the factor of P_0 are lower-triangular with positive diagonals, R is
    diagonal (stored as logarithms). `propagation="exact"` (default) moves the moments over a
    gap by the closed form (Φ, Q_d) (all gaps at once, then a scan of matrix products);
    `"ode"` integrates m' = A m, P' = A P + P Aᵀ + L Lᵀ with diffrax (Tsit5, `rtol`/`atol`).
    The log-likelihood is the exact marginal one, differentiable in every parameter.

        model = LinearCDSSM(2, 3, key=jax.random.key(0))
        ll = model.log_likelihood(times, obs, mask)      # mask: True where observed
        mean, var = model.forecast(times, obs, mask, future_times)
    """

    drift_skew: Float[Array, "state state"]
    drift_damping: Float[Array, "state state"]
    diffusion_factor: Float[Array, "state state"]
    emission: Float[Array, "obs state"]
    log_noise_variance: Float[Array, " obs"]
    initial_mean: Float[Array, " state"]
    initial_factor: Float[Array, "state state"]
    state_size: int = eqx.field(static=True)
    obs_size: int = eqx.field(static=True)
    propagation: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        state_size: int,
        obs_size: int,
        *,
        propagation: str = "exact",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        max_steps: int = 4096,
        key: PRNGKeyArray,
        dtype: Any = jnp.float32,
    ):
        _check_sizes("LinearCDSSM", state_size=state_size, obs_size=obs_size)
        if propagation not in _PROPAGATIONS:
            raise ValueError(
                f"LinearCDSSM: propagation must be one of {_PROPAGATIONS}, got {propagation!r}"
            )
        _check_tolerances("LinearCDSSM", rtol, atol, max_steps)
        n = state_size
        z_skew, z_damping, z_emission = _normals(key, [(n, n), (n, n), (obs_size, n)], dtype)
        values = _common_init(n, obs_size, z_emission)
        values["drift_skew"], values["drift_damping"] = _drift_init(z_skew, z_damping)
        for name, value in values.items():
            setattr(self, name, jnp.asarray(value, dtype))
        self.state_size, self.obs_size = state_size, obs_size
        self.propagation = propagation
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)

    @property
    def drift_matrix(self) -> Float[Array, "state state"]:
        """A."""
        return _stable_matrix(self.drift_skew, self.drift_damping)

    def _drift(self, x):
        a = self.drift_matrix
        return a @ x, a

    def _emission(self, x):
        return self.emission @ x, self.emission

    def _transitions(self, gaps):
        if self.propagation == "ode":
            return gaps
        a, q = self.drift_matrix, self._process_noise()
        return jax.vmap(lambda dt: _discretize(a, q, dt))(gaps)

    def _propagate(self, m, p, gap):
        if self.propagation == "ode":
            return super()._propagate(m, p, gap)
        phi, qd = gap
        return phi @ m, _sym(phi @ p @ phi.T + qd)


@savable
class NeuralCDSSM(_CDSSM):
    """Locally linear continuous-discrete SSM (NCDSSM-LL of Ansari et al. 2023):

        dx = A(x) x dt + L dW,   A(x) = Σ_k α_k(x) A_k,   α = softmax(MLP(x)),
        y_k = H x(t_k) [+ g(x(t_k))] + v_k,

    with `n_matrices` stable matrices A_k (parameterised as in `LinearCDSSM`) mixed by an MLP
    of `depth` hidden layers of width `hidden`. The moments follow the linearised equations
    m' = f(m), P' = J P + P Jᵀ + L Lᵀ with J = ∂f/∂x at m (automatic differentiation),
    integrated by diffrax (Tsit5, `rtol`/`atol`), and the update is the extended Kalman
    filter's. `nonlinear_emission=True` adds an MLP g to the linear emission (its last layer
    starts at zero, so the model starts linear), linearised at the predicted mean. With one
    matrix the model is `LinearCDSSM` with propagation="ode".
    """

    drift_skews: Float[Array, "k state state"]
    drift_dampings: Float[Array, "k state state"]
    weight_net: _MLP
    diffusion_factor: Float[Array, "state state"]
    emission: Float[Array, "obs state"]
    emission_net: _MLP | None
    log_noise_variance: Float[Array, " obs"]
    initial_mean: Float[Array, " state"]
    initial_factor: Float[Array, "state state"]
    state_size: int = eqx.field(static=True)
    obs_size: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    n_matrices: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    nonlinear_emission: bool = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        state_size: int,
        obs_size: int,
        hidden: int,
        *,
        n_matrices: int = 4,
        depth: int = 1,
        nonlinear_emission: bool = False,
        rtol: float = 1e-5,
        atol: float = 1e-6,
        max_steps: int = 4096,
        key: PRNGKeyArray,
        dtype: Any = jnp.float32,
    ):
        _check_sizes(
            "NeuralCDSSM",
            state_size=state_size,
            obs_size=obs_size,
            hidden=hidden,
            n_matrices=n_matrices,
            depth=depth,
        )
        _check_tolerances("NeuralCDSSM", rtol, atol, max_steps)
        n, k = state_size, n_matrices
        weight_sizes = _mlp_shapes([n] + [hidden] * depth + [k])
        emission_sizes = _mlp_shapes([n] + [hidden] * depth + [obs_size])
        shapes = [(k, n, n), (k, n, n), (obs_size, n)] + weight_sizes
        z = _normals(key, shapes + (emission_sizes if nonlinear_emission else []), dtype)
        values = _common_init(n, obs_size, z[2])
        values["drift_skews"], values["drift_dampings"] = _drift_init(z[0], z[1])
        for name, value in values.items():
            setattr(self, name, jnp.asarray(value, dtype))
        self.weight_net = _mlp(z[3 : len(shapes)], dtype)
        # g starts at zero: the model starts with a linear emission
        self.emission_net = _mlp(z[len(shapes) :], dtype, True) if nonlinear_emission else None
        self.state_size, self.obs_size, self.hidden = state_size, obs_size, hidden
        self.n_matrices, self.depth = n_matrices, depth
        self.nonlinear_emission = bool(nonlinear_emission)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)

    @property
    def drift_matrices(self) -> Float[Array, "k state state"]:
        """A_1, ..., A_K."""
        return jax.vmap(_stable_matrix)(self.drift_skews, self.drift_dampings)

    def drift(self, x: Float[Array, " state"]) -> Float[Array, " state"]:
        """f(x) = A(x) x."""
        alpha = jax.nn.softmax(self.weight_net(x))
        return jnp.einsum("k,kij,j->i", alpha, self.drift_matrices, x)

    def _drift(self, x):
        return self.drift(x), jax.jacfwd(self.drift)(x)

    def _emission(self, x):
        if self.emission_net is None:
            return self.emission @ x, self.emission
        g = self.emission_net
        return self.emission @ x + g(x), self.emission + jax.jacfwd(g)(x)
