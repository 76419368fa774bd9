"""Continuous-discrete state-space models: the linear-Gaussian likelihood and filter against
a hand-written numpy Kalman filter (Van Loan discretisation per gap, observed components
only), diffrax moments against the closed form, gradients against central differences,
masked NaN, forecasts against the analytic moments of a stable SDE, the locally linear model
against its one-matrix special case and against an independent extended Kalman filter
(RK4 moments, finite-difference Jacobians), and maximum likelihood recovering a drift."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from surrogate.nde import LinearCDSSM, NeuralCDSSM

F64 = jnp.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-12}

# a window of 9 irregular times: partial rows (0, 5), fully missing rows (2, 3)
TIMES = np.cumsum([0.0, 0.3, 0.05, 1.2, 0.4, 0.7, 0.1, 1.5, 0.6]) + 2.0
MASK = np.ones((9, 2), bool)
MASK[0, 1] = MASK[2] = MASK[3] = MASK[5, 0] = False
OBS = np.where(MASK, np.random.default_rng(0).normal(size=(9, 2)), np.nan)


# ---- independent numpy references -------------------------------------------------------


def np_expm(m):
    """e^M by scaling and squaring of a 25-term Taylor series."""
    norm = np.abs(m).sum(0).max()
    s = max(0, int(np.ceil(np.log2(norm))) + 1) if norm > 0 else 0
    x = m / 2.0**s
    e = term = np.eye(len(m))
    for k in range(1, 25):
        term = term @ x / k
        e = e + term
    for _ in range(s):
        e = e @ e
    return e


def van_loan(a, q, dt):
    """Φ = e^{A Δt}, Q_d = ∫ e^{A s} Q e^{Aᵀ s} ds from e^{[[A, Q], [0, −Aᵀ]] Δt}."""
    n = len(a)
    e = np_expm(np.block([[a, q], [np.zeros((n, n)), -a.T]]) * dt)
    phi = e[:n, :n]
    return phi, e[:n, n:] @ phi.T


def np_filter(propagate, emit, r, m0, p0, times, obs, mask):
    """Kalman filter on the observed sub-vector (standard covariance update, joint)."""
    m, p, ll, means, covs = m0, p0, 0.0, [], []
    for k in range(len(times)):
        if k:
            m, p = propagate(m, p, times[k] - times[k - 1])
        seen = np.flatnonzero(mask[k])
        if seen.size:
            hm, jac = emit(m)
            h = jac[seen]
            s = h @ p @ h.T + np.diag(r[seen])
            res = obs[k, seen] - hm[seen]
            ll -= 0.5 * (res @ np.linalg.solve(s, res) + np.linalg.slogdet(s)[1])
            ll -= 0.5 * seen.size * math.log(2 * math.pi)
            gain = np.linalg.solve(s, h @ p).T
            m, p = m + gain @ res, p - gain @ s @ gain.T
        means.append(m)
        covs.append(p)
    return ll, np.array(means), np.array(covs)


def process_noise(model):
    ell = np.asarray(model.diffusion_matrix)
    return ell @ ell.T


def linear_reference(model, times=TIMES, obs=OBS, mask=MASK):
    a, q = np.asarray(model.drift_matrix), process_noise(model)
    h = np.asarray(model.emission)

    def propagate(m, p, dt):
        phi, qd = van_loan(a, q, dt)
        return phi @ m, phi @ p @ phi.T + qd

    return np_filter(
        propagate,
        lambda m: (h @ m, h),
        np.asarray(model.noise_variance),
        np.asarray(model.initial_mean),
        np.asarray(model.initial_covariance),
        times,
        obs,
        mask,
    )


def fd_jacobian(fn, x, delta=1e-6):
    """f(x) and ∂f/∂x by central differences, all points in one batched call."""
    n = len(x)
    pts = np.concatenate([x[None], x + delta * np.eye(n), x - delta * np.eye(n)])
    v = fn(pts)
    return v[0], (v[1 : n + 1] - v[n + 1 :]).T / (2 * delta)


def np_mlp(mlp, x):
    """The model's MLP (tanh hidden layers, linear output) on a batch of rows, in numpy."""
    for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        x = x @ np.asarray(w).T + np.asarray(b)
        x = np.tanh(x) if i < len(mlp.weights) - 1 else x
    return x


def np_stable(skew, damping):
    b = np.tril(damping, -1) + np.diag(np.exp(np.diag(damping)))
    return skew - skew.T - b @ b.T


def ekf_reference(model, times, obs, mask, step=0.005):
    """Extended Kalman filter written from the model's equations in numpy: f(x) = Σ_k
    softmax(MLP(x))_k A_k x and h(x) = H x + MLP(x); moments m' = f(m), P' = J P + P Jᵀ + Q
    by RK4, Jacobians by central differences."""
    mats = np.stack([np_stable(*w) for w in zip(np.asarray(model.drift_skews),
                                                 np.asarray(model.drift_dampings))])  # fmt: skip
    h = np.asarray(model.emission)

    def f(x):
        logits = np_mlp(model.weight_net, x)
        alpha = np.exp(logits - logits.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
        return np.einsum("nk,kij,nj->ni", alpha, mats, x)

    def g(x):
        return x @ h.T + np_mlp(model.emission_net, x)

    q = process_noise(model)

    def rhs(m, p):
        f0, jac = fd_jacobian(f, m)
        return f0, jac @ p + p @ jac.T + q

    def propagate(m, p, dt):
        n = int(np.ceil(dt / step))
        dt = dt / n
        for _ in range(n):
            k1 = rhs(m, p)
            k2 = rhs(m + dt / 2 * k1[0], p + dt / 2 * k1[1])
            k3 = rhs(m + dt / 2 * k2[0], p + dt / 2 * k2[1])
            k4 = rhs(m + dt * k3[0], p + dt * k3[1])
            m = m + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            p = p + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        return m, p

    return np_filter(
        propagate,
        lambda m: fd_jacobian(g, m),
        np.asarray(model.noise_variance),
        np.asarray(model.initial_mean),
        np.asarray(model.initial_covariance),
        times,
        obs,
        mask,
    )


def perturbed(model, seed, scale=0.3):
    """Every parameter moved off its initial value (nonzero m0, off-diagonal factors, ...);
    numpy draws (no random-number kernel to compile per leaf shape)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: x + scale * rng.normal(size=x.shape) if eqx.is_inexact_array(x) else x, model
    )


# ---- the linear-Gaussian model ----------------------------------------------------------


def test_moment_equations_by_diffrax_equal_the_closed_form(x64):
    """propagation="ode" (m' = A m, P' = A P + P Aᵀ + L Lᵀ by Tsit5 at rtol 1e-10): the same
    log-likelihood, filtered means and covariances as the numpy filter with Van Loan's
    exact discretisation, on irregular times with partial and fully missing rows, to 1e-9."""
    model = LinearCDSSM(3, 2, propagation="ode", **TIGHT, key=jax.random.key(1), dtype=F64)
    model = perturbed(model, 2)
    ll_ref, means_ref, covs_ref = linear_reference(model)
    assert abs(float(model.log_likelihood(TIMES, OBS, MASK)) - ll_ref) <= 1e-9 * abs(ll_ref)
    means, covs = model.filter(TIMES, OBS, MASK)
    np.testing.assert_allclose(means, means_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(covs, covs_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(covs, np.swapaxes(covs, 1, 2))


A_TRUE = np.array([[-0.4, 1.0], [-1.5, -0.2]])  # eigenvalues −0.3 ± 1.2207i
Q_TRUE, R_TRUE = 0.25 * np.eye(2), [0.02, 0.02, 0.02]
H_TRUE = np.array([[1.0, 0.0], [0.5, 1.0], [-0.7, 0.4]])


@functools.cache
def simulated(n_seq=8, n_times=100, seed=0):
    """Exact samples of dx = A x dt + L dW at irregular times (gaps U(0.1, 0.6)), observed
    through H with noise R; 20% of the components missing (NaN)."""
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.1, 0.6, (n_seq, n_times - 1))
    times = np.concatenate([np.zeros((n_seq, 1)), np.cumsum(gaps, 1)], 1)
    x, xs = rng.normal(size=(n_seq, 2)), []
    for k in range(n_times):
        if k:
            for i in range(n_seq):
                phi, qd = van_loan(A_TRUE, Q_TRUE, gaps[i, k - 1])
                x[i] = phi @ x[i] + np.linalg.cholesky(qd) @ rng.normal(size=2)
        xs.append(x.copy())
    y = np.stack(xs, 1) @ H_TRUE.T + np.sqrt(R_TRUE) * rng.normal(size=(n_seq, n_times, 3))
    mask = rng.random(y.shape) > 0.2
    return times, np.where(mask, y, np.nan), mask


def nll(model, times, obs, mask):
    """Negative log-likelihood per observed value of a batch of sequences."""
    return -jnp.sum(jax.vmap(model.log_likelihood)(times, obs, mask)) / jnp.sum(mask)


NLL_AND_GRAD = eqx.filter_jit(eqx.filter_value_and_grad(nll))


def test_linear_likelihood_equals_a_numpy_kalman_filter(x64):
    """The closed-form (Φ, Q_d) by scaling and squaring with Joseph-form sequential updates
    vs a numpy filter with Van Loan's block exponential and joint updates of the observed
    sub-vector: the same log-likelihood of 8 sequences × 100 irregular times (3 components,
    20% missing: partial rows and fully missing ones) to 1e-11 relative."""
    model = perturbed(LinearCDSSM(2, 3, key=jax.random.key(3), dtype=F64), 4)
    times, obs, mask = simulated()
    assert (~mask).all(axis=2).any() and ((~mask).any(axis=2) & mask.any(axis=2)).any()
    ref = sum(linear_reference(model, *seq)[0] for seq in zip(times, obs, mask, strict=True))
    value, _ = NLL_AND_GRAD(model, times, obs, mask)
    assert abs(float(value) * mask.sum() + ref) <= 1e-11 * abs(ref)


def test_gradient_matches_central_differences(x64):
    """d nll along two random directions of all parameters: autodiff vs (f(θ+εv) −
    f(θ−εv)) / 2ε, ε = 1e-5, to 1e-6 relative."""
    model = perturbed(LinearCDSSM(2, 3, key=jax.random.key(3), dtype=F64), 4)
    data = simulated()
    _, grad = NLL_AND_GRAD(model, *data)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    for seed in (5, 6):
        v = perturbed(jax.tree.map(jnp.zeros_like, params), seed, scale=1.0)
        exact = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v)))
        eps = 1e-5
        plus = eqx.combine(jax.tree.map(lambda p, d: p + eps * d, params, v), static)
        minus = eqx.combine(jax.tree.map(lambda p, d: p - eps * d, params, v), static)
        fd = (NLL_AND_GRAD(plus, *data)[0] - NLL_AND_GRAD(minus, *data)[0]) / (2 * eps)
        assert abs(float(exact)) > 1e-3
        assert abs(float(exact - fd)) <= 1e-6 * abs(float(exact))


def test_masked_nan_changes_neither_value_nor_gradient(x64):
    """Missing entries as NaN, 0 or 1e30 give bit-identical, finite value and gradient; a
    decreasing time under `jit` is a runtime error, not a silent result."""
    model = perturbed(LinearCDSSM(2, 3, key=jax.random.key(3), dtype=F64), 7)
    times, obs, mask = simulated()
    assert np.isnan(obs).any()
    results = [NLL_AND_GRAD(model, times, np.where(mask, obs, fill), mask)
               for fill in (np.nan, 0.0, 1e30)]  # fmt: skip
    for value, grad in results:
        assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
    for value, grad in results[1:]:
        assert value == results[0][0]
        for g, g0 in zip(jax.tree.leaves(grad), jax.tree.leaves(results[0][1]), strict=True):
            np.testing.assert_array_equal(g, g0)
    backwards = times.copy()
    backwards[0, 5] = backwards[0, 4]
    with pytest.raises(eqx.EquinoxRuntimeError, match="strictly increasing"):
        NLL_AND_GRAD(model, backwards, obs, mask)


def test_forecast_of_an_unobserved_stable_system(x64):
    """With nothing observed the forecast is the SDE's own moments from x(t_0) ~ N(m0, P0):
    mean H e^{A t} m0, variance diag(H P(t) Hᵀ) + R with P(t) from the eigenvectors of A
    (P(t) = Φ P0 Φᵀ + V (M ∘ (e^{(λ_i + λ̄_j) t} − 1)/(λ_i + λ̄_j)) Vᴴ, M = V⁻¹ Q V⁻ᴴ). From
    P0 ≈ 0 the variance grows with the horizon; after 10⁴ time units (decay rates 0.07 and
    5: a gap over which Van Loan's block exponential overflows) it is the stationary one,
    A P∞ + P∞ Aᵀ + Q = 0, and the mean is 0."""
    model = LinearCDSSM(2, 3, key=jax.random.key(8), dtype=F64)
    model = eqx.tree_at(
        lambda m: (m.drift_skew, m.drift_damping, m.diffusion_factor, m.initial_mean,
                   m.initial_factor),
        model,
        (jnp.array([[0.0, 0.3], [0.0, 0.0]]), jnp.diag(jnp.log(jnp.sqrt(jnp.array([0.05, 5.0])))),
         jnp.array([[math.log(0.5), 0.0], [0.3, math.log(0.2)]]), jnp.array([1.0, -2.0]),
         jnp.diag(jnp.full(2, math.log(1e-3)))),
    )  # fmt: skip
    a, q = np.asarray(model.drift_matrix), process_noise(model)
    h, r = np.asarray(model.emission), np.asarray(model.noise_variance)
    m0, p0 = np.asarray(model.initial_mean), np.asarray(model.initial_covariance)
    times = np.array([0.0, 0.4, 1.0])
    horizons = np.array([1.5, 2.0, 3.0, 6.0, 11.0, 21.0, 41.0, 81.0])
    mean, var = model.forecast(times, np.full((3, 3), np.nan), np.zeros((3, 3), bool),
                               np.append(horizons, 1e4))  # fmt: skip
    lam, v = np.linalg.eig(a)
    vinv = np.linalg.inv(v)
    mq = vinv @ q @ vinv.conj().T
    rates = lam[:, None] + lam.conj()[None, :]
    for i, t in enumerate(horizons):
        phi = (v * np.exp(lam * t)) @ vinv
        p = phi @ p0 @ phi.T + (v @ (mq * np.expm1(rates * t) / rates) @ v.conj().T)
        np.testing.assert_allclose(mean[i], (h @ phi @ m0).real, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(var[i], np.diag(h @ p.real @ h.T) + r, rtol=1e-10)
    assert np.all(np.diff(var[:-1], axis=0) > 0)
    p_inf = np.linalg.solve(np.kron(np.eye(2), a) + np.kron(a, np.eye(2)), -q.ravel())
    np.testing.assert_allclose(var[-1], np.diag(h @ p_inf.reshape(2, 2) @ h.T) + r, rtol=1e-10)
    np.testing.assert_allclose(mean[-1], 0, atol=1e-12)


def test_maximum_likelihood_recovers_the_drift_eigenvalues(x64):
    """Adam (lr 0.05, 150 steps) on 8 sequences × 100 irregular times of a known linear SDE
    observed in 3 components (H, L, R, m0, P0 learned too; the latent basis is not
    identifiable, A's eigenvalues are): λ = −0.3 ± 1.221i recovered within 0.08. The
    maximum of this data set's likelihood is 0.043 from λ (reached by 150 steps from three
    initialisations); the untrained model's eigenvalues, −0.51 ± 0.92i, are 0.36 away."""
    model = LinearCDSSM(2, 3, key=jax.random.key(0), dtype=F64)
    data = simulated()
    opt = optax.adam(0.05)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def apply(model, grad, state):
        updates, state = opt.update(grad, state)
        return eqx.apply_updates(model, updates), state

    for _ in range(150):
        _, grad = NLL_AND_GRAD(model, *data)
        model, state = apply(model, grad, state)
    found = np.linalg.eigvals(np.asarray(model.drift_matrix))
    want = np.linalg.eigvals(A_TRUE)
    found, want = found[np.argsort(found.imag)], want[np.argsort(want.imag)]
    assert np.max(np.abs(found - want)) < 0.08, found


def test_drift_is_stable_for_any_parameters(x64):
    """A = W − Wᵀ − B Bᵀ has eigenvalues with negative real parts for any raw values (256
    draws of scale 3), and the locally linear drift contracts: xᵀ f(x) = xᵀ A(x) x < 0."""
    rng = np.random.default_rng(0)

    def draws(model, fn, *args):
        params, static = eqx.partition(model, eqx.is_inexact_array)
        params = jax.tree.map(lambda p: p[None] + 3 * rng.normal(size=(256, *p.shape)), params)
        return eqx.filter_jit(jax.vmap(lambda p, *a: fn(eqx.combine(p, static), *a)))(params, *args)

    mats = draws(LinearCDSSM(3, 2, key=jax.random.key(0), dtype=F64), lambda m: m.drift_matrix)
    neural = NeuralCDSSM(3, 2, 8, n_matrices=3, nonlinear_emission=True, key=jax.random.key(0),
                         dtype=F64)  # fmt: skip
    power = draws(neural, lambda m, x: x @ m.drift(x), 5 * rng.normal(size=(256, 3)))
    assert np.max(np.linalg.eigvals(np.asarray(mats)).real) < 0
    assert np.max(power) < 0


# ---- the locally linear model -----------------------------------------------------------


def test_neural_model_with_one_matrix_is_the_linear_model(x64):
    """K = 1: softmax weights are 1 whatever the network says, f(x) = A x and J = A, so
    the locally linear filter is the linear one (numpy reference, to the ODE tolerance)."""
    lin = perturbed(LinearCDSSM(3, 2, key=jax.random.key(1), dtype=F64), 2)
    neural = perturbed(NeuralCDSSM(3, 2, 4, n_matrices=1, **TIGHT, key=jax.random.key(9),
                                   dtype=F64), 10)  # fmt: skip
    neural = eqx.tree_at(
        lambda m: (m.drift_skews, m.drift_dampings, m.diffusion_factor, m.emission,
                   m.log_noise_variance, m.initial_mean, m.initial_factor),
        neural,
        (lin.drift_skew[None], lin.drift_damping[None], lin.diffusion_factor, lin.emission,
         lin.log_noise_variance, lin.initial_mean, lin.initial_factor),
    )  # fmt: skip
    ll_ref, means_ref, covs_ref = linear_reference(lin)
    assert abs(float(neural.log_likelihood(TIMES, OBS, MASK)) - ll_ref) <= 1e-9 * abs(ll_ref)
    means, covs = neural.filter(TIMES, OBS, MASK)
    np.testing.assert_allclose(means, means_ref, atol=1e-9)
    np.testing.assert_allclose(covs, covs_ref, atol=1e-9)


def test_neural_model_equals_an_independent_extended_kalman_filter(x64):
    """K = 3 mixed matrices and an MLP emission (all parameters perturbed, so the weights α(x)
    and h vary along the path): log-likelihood, means and covariances equal those of an EKF
    with RK4 moments (step 0.005) and central-difference Jacobians, to 1e-7."""
    model = NeuralCDSSM(3, 2, 8, n_matrices=3, nonlinear_emission=True, **TIGHT,
                        key=jax.random.key(11), dtype=F64)  # fmt: skip
    model = perturbed(model, 12, scale=0.5)
    model = eqx.tree_at(lambda m: m.initial_mean, model, jnp.array([1.5, -1.0, 0.5]))
    times, obs, mask = TIMES, OBS, MASK
    ll_ref, means_ref, covs_ref = ekf_reference(model, times, obs, mask)
    means, covs = model.filter(times, obs, mask)
    np.testing.assert_allclose(means, means_ref, atol=1e-7)
    np.testing.assert_allclose(covs, covs_ref, atol=1e-7)
    assert abs(float(model.log_likelihood(times, obs, mask)) - ll_ref) <= 1e-7 * abs(ll_ref)
    # the weights do vary: the drift is not one linear map along the filtered path
    alpha = jax.vmap(lambda x: jax.nn.softmax(model.weight_net(x)))(means)
    assert float(jnp.max(jnp.ptp(alpha, axis=0))) > 0.05


# ---- bad input --------------------------------------------------------------------------


def test_bad_input_is_refused_before_any_computation(x64):
    model = LinearCDSSM(3, 2, key=jax.random.key(0), dtype=F64)
    t, y, m = TIMES, OBS, MASK
    cases = [
        ((t.reshape(3, 3), y, m), "1-D array of times"),
        ((t[::-1], y, m), "strictly increasing"),
        ((np.where(np.arange(9) == 4, t[3], t), y, m), "strictly increasing"),
        ((np.where(np.arange(9) == 4, np.nan, t), y, m), "finite and strictly"),
        ((t, y[:, :1], m), r"obs must have shape \(times, obs_size\) = \(9, 2\)"),
        ((t, y, m[:5]), "mask must have the shape of obs"),
        ((t, y, m.astype(int)), "mask must be boolean"),
        ((t, np.where(m, 1, 0), m), "obs must be floating-point"),
        ((t, np.nan_to_num(y) + np.where(np.arange(2) == 0, np.nan, 0), m), "finite where mask"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            model.log_likelihood(*args)
    with pytest.raises(ValueError, match="future_times must come after"):
        model.forecast(t, y, m, np.array([t[-1], t[-1] + 1]))
    with pytest.raises(ValueError, match="future_times must be finite and strictly"):
        model.forecast(t, y, m, np.array([t[-1] + 2, t[-1] + 1]))
    with pytest.raises(ValueError, match="state_size must be a positive integer"):
        LinearCDSSM(0, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="propagation must be one of"):
        LinearCDSSM(2, 2, propagation="euler", key=jax.random.key(0))
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        NeuralCDSSM(2, 2, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="rtol and atol must be positive"):
        NeuralCDSSM(2, 2, 4, rtol=0.0, key=jax.random.key(0))
