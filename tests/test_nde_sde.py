"""Neural SDEs: Ornstein–Uhlenbeck moments, Itô vs Stratonovich, reduction to the ODE."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from surrogate.nde import NeuralSDE

# One linear SDE family, dX = (a X + b) dt + (c X + d) dW, coefficients read from `args`:
# one compiled solve per solver serves the OU process, geometric Brownian motion and σ = 0.
N_PATHS, DT = 8192, 0.02
TS = np.array([0.0, 0.2, 0.5, 1.0])  # multiples of DT: outputs fall on steps (float64)
STEPS = np.round(TS / DT)


def linear_drift(t, y, p):
    return p["a"] * y + p["b"]


def linear_diffusion(t, y, p):
    return p["c"] * y + p["d"]


def paths(interpretation, a=0.0, b=0.0, c=0.0, d=0.0, x0=1.0, seed=0):
    sde = NeuralSDE(linear_drift, linear_diffusion, interpretation=interpretation, dt0=DT)
    p = {k: jnp.array(v, jnp.float64) for k, v in {"a": a, "b": b, "c": c, "d": d}.items()}
    y0 = jnp.array([x0], jnp.float64)
    ts = jnp.asarray(TS)
    return eqx.filter_jit(sde.sample)(ts, y0, p, n=N_PATHS, key=jax.random.PRNGKey(seed))[..., 0]


def test_ornstein_uhlenbeck_moments_and_zero_noise(x64):
    """dX = −θ X dt + σ dW from x0: E X(t) = x0 e^{−θt}, Var X(t) = σ²/2θ (1 − e^{−2θt}).
    Ensemble moments of 8192 Euler paths match within 4 standard errors plus Euler's O(dt)
    bias (from the exact moments of the recursion X_{k+1} = (1 − θ dt) X_k + σ ΔW_k). With
    σ = 0 every path is the ODE's Euler solution x0 (1 − θ dt)^k, to rounding."""
    theta, sigma, x0 = 1.5, 0.5, 1.0
    x = paths("ito", a=-theta, d=sigma, x0=x0)
    mean, var = jnp.mean(x, 0), jnp.var(x, 0, ddof=1)
    m_exact = x0 * jnp.exp(-theta * TS)
    v_exact = sigma**2 / (2 * theta) * (1 - jnp.exp(-2 * theta * TS))
    r = 1 - theta * DT
    m_euler = x0 * r**STEPS
    v_euler = sigma**2 * DT * (1 - r ** (2 * STEPS)) / (1 - r**2)
    se_mean, se_var = jnp.sqrt(v_exact / N_PATHS), v_exact * jnp.sqrt(2 / (N_PATHS - 1))
    assert jnp.all(jnp.abs(mean - m_exact) <= 4 * se_mean + jnp.abs(m_euler - m_exact) + 1e-12)
    assert jnp.all(jnp.abs(var - v_exact) <= 4 * se_var + jnp.abs(v_euler - v_exact) + 1e-12)
    still = paths("ito", a=-theta, d=0.0, x0=x0)
    assert jnp.max(jnp.abs(still - m_euler[None, :])) < 1e-12


def test_ito_and_stratonovich_solutions_differ_as_theory_says(x64):
    """Geometric Brownian motion dX = μX dt + sX dW: E X(t) = e^{μt} read as Itô (Euler) and
    e^{(μ + s²/2)t} read as Stratonovich (Heun); each ensemble mean matches its own value
    (the two differ by 20 standard errors at t = 1). With s = 0 the paths are the ODE's Euler
    and Heun solutions (1 + μ dt)^k and (1 + μ dt + (μ dt)²/2)^k: Heun's SDE step, drift and
    noise terms together, reduces to the ODE's."""
    mu, s = 0.2, 0.6
    heun_factor = 1 + mu * DT + (mu * DT) ** 2 / 2
    cases = (
        ("ito", jnp.exp(mu * TS), (1 + mu * DT) ** STEPS),
        ("stratonovich", jnp.exp((mu + s**2 / 2) * TS), heun_factor**STEPS),
    )
    for interpretation, mean, ode in cases:
        x = paths(interpretation, a=mu, c=s, seed=1)
        se = mean * jnp.sqrt((jnp.exp(s**2 * TS) - 1) / N_PATHS)
        assert jnp.all(jnp.abs(jnp.mean(x, 0) - mean) < 4 * se + 0.01 * mean), interpretation
        still = paths(interpretation, a=mu, seed=1)
        assert jnp.max(jnp.abs(still - ode[None, :])) < 1e-12, interpretation


def test_sde_bad_inputs():
    f, g = (lambda t, y, a: -y), (lambda t, y, a: jnp.ones_like(y))
    ts = jnp.linspace(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="interpretation must be one of"):
        NeuralSDE(f, g, interpretation="ito-strat", dt0=0.1)
    with pytest.raises(ValueError, match="noise must be one of"):
        NeuralSDE(f, g, noise="scalar", dt0=0.1)
    with pytest.raises(ValueError, match="needs noise_size >= 1"):
        NeuralSDE(f, g, noise="general", dt0=0.1)
    with pytest.raises(ValueError, match="noise_size must not be given"):
        NeuralSDE(f, g, noise_size=2, dt0=0.1)
    with pytest.raises(ValueError, match="Euler converges to the ito solution but interp"):
        NeuralSDE(f, g, interpretation="stratonovich", solver=diffrax.Euler(), dt0=0.1)
    with pytest.raises(ValueError, match="Heun converges to the stratonovich solution but"):
        NeuralSDE(f, g, solver=diffrax.Heun(), dt0=0.1)
    NeuralSDE(f, g, solver=diffrax.Heun(), additive=True, dt0=0.1)  # additive: either
    with pytest.raises(ValueError, match="Tsit5 is not an SDE solver"):
        NeuralSDE(f, g, solver=diffrax.Tsit5(), dt0=0.1)
    with pytest.raises(ValueError, match="needs a step: pass dt0"):
        NeuralSDE(f, g)
    with pytest.raises(ValueError, match="adaptive steps need brownian_tol"):
        NeuralSDE(
            f,
            g,
            solver=diffrax.SPaRK(),
            additive=True,
            stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-3),
        )
    sde = NeuralSDE(f, g, dt0=0.1)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"y0 must be a vector \(d,\), got shape \(2, 2\)"):
        sde(ts, jnp.ones((2, 2)), key=key)
    with pytest.raises(ValueError, match=r"diffusion must return shape \(2, 3\) \(general"):
        NeuralSDE(f, g, noise="general", noise_size=3, dt0=0.1)(ts, jnp.ones(2), key=key)
    with pytest.raises(ValueError, match="strictly increasing"):
        sde(ts[::-1], jnp.ones(2), key=key)
    with pytest.raises(ValueError, match="n must be a positive number of paths"):
        sde.sample(ts, jnp.ones(2), n=0, key=key)
