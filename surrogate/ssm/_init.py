"""Initialisations of diagonal state-space models: S4D-Lin, S4D-Inv, S4D-LegS, DSS-exp/softmax.

Convention (S4D, Gu et al. 2022, "On the parameterization and initialization of diagonal
state space models", Sec. 3): a real SSM of state size N with a diagonalisable A has N/2
conjugate pairs of eigenvalues. We store one member of each pair (the one with Im λ >= 0),
so every array here has P = N/2 "modes", and the output of one SISO channel is

    y = 2 Re(Σ_p C_p x_p) + D u,

which is the real system's output (the conjugate half contributes the complex conjugate).

Every initialiser has the signature `(state_size, dt, *, key) -> DiagonalInit` where `dt`
holds the initial step of each of the H channels; it returns Λ, B, C of shape (H, P).

DSS (Gupta, Gu & Berant 2022, "Diagonal state spaces are as effective as structured state
spaces", Prop. 1) writes the kernel without B and C:

    DSS-exp:      K_k = Re Σ_i w_i λ_i⁻¹ (e^{λ_i Δ} − 1) e^{λ_i k Δ},
    DSS-softmax:  K_k = Re Σ_i w_i λ_i⁻¹ e^{λ_i k Δ} / Σ_{r<L} e^{λ_i r Δ}.

The zero-order-hold kernel of (Λ, B, C, Δ) is K_k = 2 Re Σ C_i B_i λ_i⁻¹ (e^{λ_i Δ} − 1) e^{λ_i k Δ}
(see `_discretize`), so DSS-exp is exactly B = 1, C = w/2; and since
Σ_{r<L} z^r = (z^L − 1)/(z − 1), DSS-softmax at length L is B = 1, C = w / (2 (e^{L λ Δ} − 1)).
We use both as initialisations of the same (Λ, B, C, Δ) layer, which then trains with
Re λ < 0 kept by its parameterisation: the softmax's dependence on the total length L would
break the recurrent (streaming) form and the change of sampling rate, so it is not kept
during training. Both DSS variants start from the skew-HiPPO eigenvalues, as in the paper.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray


class DiagonalInit(NamedTuple):
    """Continuous-time parameters Λ (Re < 0), B and C of H channels with P modes each."""

    lam: Complex[Array, "channels modes"]
    b: Complex[Array, "channels modes"]
    c: Complex[Array, "channels modes"]


def _modes(state_size: int) -> int:
    if state_size < 2 or state_size % 2:
        raise ValueError(
            f"state_size must be a positive even number (N/2 conjugate pairs), got {state_size}"
        )
    return state_size // 2


def _complex_normal(key: PRNGKeyArray, shape: tuple[int, ...], std: float, dtype) -> Array:
    """Circular complex Gaussian with E|z|² = std²."""
    kr, ki = jax.random.split(key)
    s = std / math.sqrt(2.0)
    return jax.lax.complex(
        s * jax.random.normal(kr, shape, dtype), s * jax.random.normal(ki, shape, dtype)
    )


def _broadcast(values: Array, dt: Array) -> Array:
    cdtype = jnp.result_type(dt.dtype, jnp.complex64)
    return jnp.broadcast_to(values.astype(cdtype)[None, :], (dt.shape[0], values.shape[0]))


def _s4d(lam: Array, state_size: int, dt: Array, key: PRNGKeyArray) -> DiagonalInit:
    lam = _broadcast(lam, dt)
    # S4D: B = 1 and C ~ CN(0, 1).
    c = _complex_normal(key, lam.shape, 1.0, dt.dtype)
    return DiagonalInit(lam, jnp.ones_like(lam), c)


def s4d_lin(state_size: int, dt: Float[Array, " channels"], *, key: PRNGKeyArray) -> DiagonalInit:
    """S4D-Lin: λ_n = −1/2 + iπn (S4D paper, Eq. 9)."""
    n = jnp.arange(_modes(state_size), dtype=dt.dtype)
    return _s4d(-0.5 + 1j * math.pi * n, state_size, dt, key)


def s4d_inv(state_size: int, dt: Float[Array, " channels"], *, key: PRNGKeyArray) -> DiagonalInit:
    """S4D-Inv: λ_n = −1/2 + i N/π (N/(2n+1) − 1) (S4D paper, Eq. 8)."""
    n = jnp.arange(_modes(state_size), dtype=dt.dtype)
    big_n = float(state_size)
    return _s4d(-0.5 + 1j * big_n / math.pi * (big_n / (2 * n + 1) - 1), state_size, dt, key)


def hippo_legs(state_size: int) -> np.ndarray:
    """The HiPPO-LegS matrix, A_nk = −√((2n+1)(2k+1)) for n > k, −(n+1) for n = k, 0 above
    (HiPPO, Gu et al. 2020, Thm. 2; S4, Eq. 2), as a float64 numpy array."""
    q = np.sqrt(2.0 * np.arange(state_size) + 1.0)
    return -np.tril(np.outer(q, q), -1) - np.diag(np.arange(1.0, state_size + 1.0))


def legs_nplr(state_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS in normal-plus-low-rank form over one mode of each conjugate pair.

    With p_n = √(n + 1/2) and b_n = √(2n+1), A + p pᵀ = −I/2 + S, S skew-symmetric (S4,
    Sec. 3.2). −iS is Hermitian, so its eigendecomposition is exact and cheap in float64:
    −I/2 + S = V_full diag(Λ_full) V_fullᴴ with V_full = [V, V̄], Λ_full = [Λ, Λ̄]. Returns
    Λ (Im > 0, ascending), V (N × N/2) and the projections Vᴴp, Vᴴb; then

        A = V_full (diag Λ_full − p̃ p̃ᴴ) V_fullᴴ,   p̃ = V_fullᴴ p = [Vᴴp, conj(Vᴴp)].

    Computed once at initialisation, in numpy.
    """
    n_modes = _modes(state_size)
    q = np.sqrt(2.0 * np.arange(state_size) + 1.0)
    lower = np.tril(-0.5 * np.outer(q, q), k=-1)
    skew = lower - lower.T
    mu, vec = np.linalg.eigh(-1j * skew)
    keep = np.argsort(mu)[-n_modes:]  # one eigenvalue of each ±μ pair
    vec = vec[:, keep]
    return -0.5 + 1j * mu[keep], vec, vec.conj().T @ (q / np.sqrt(2.0)), vec.conj().T @ q


def legs_normal_eigen(state_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (Im > 0, ascending) and projected B of the normal part of HiPPO-LegS.

    HiPPO-LegS is A_nk = −√((2n+1)(2k+1)) for n > k, −(n+1) for n = k, 0 above; adding the
    rank-one P Pᵀ with P_n = √(n + 1/2) (S4, Gu et al. 2022, Sec. 3.2) leaves the normal
    matrix −I/2 + S with S skew-symmetric; λ = −1/2 + iμ and B = Vᴴ b with b_n = √(2n+1)
    (see `legs_nplr`).
    """
    lam, _, _, b = legs_nplr(state_size)
    return lam, b


def s4d_legs(state_size: int, dt: Float[Array, " channels"], *, key: PRNGKeyArray) -> DiagonalInit:
    """S4D-LegS: the diagonal of the normal part of HiPPO-LegS, with B projected on it."""
    lam, b = legs_normal_eigen(state_size)
    lam = _broadcast(jnp.asarray(lam), dt)
    c = _complex_normal(key, lam.shape, 1.0, dt.dtype)
    return DiagonalInit(lam, _broadcast(jnp.asarray(b), dt), c)


def dss_exp(state_size: int, dt: Float[Array, " channels"], *, key: PRNGKeyArray) -> DiagonalInit:
    """DSS-exp at initialisation: skew-HiPPO Λ, B = 1, C = w/2 with w ~ N(0, 1) + iN(0, 1)."""
    lam, _ = legs_normal_eigen(state_size)
    lam = _broadcast(jnp.asarray(lam), dt)
    w = _complex_normal(key, lam.shape, math.sqrt(2.0), dt.dtype)
    return DiagonalInit(lam, jnp.ones_like(lam), 0.5 * w)


def dss_softmax(
    state_size: int, dt: Float[Array, " channels"], *, key: PRNGKeyArray, length: int = 1024
) -> DiagonalInit:
    """DSS-softmax at sequence length `length`: C = w / (2 (e^{LλΔ} − 1)) (module docstring)."""
    if length < 1:
        raise ValueError(f"dss_softmax needs a sequence length >= 1, got {length}")
    lam, _ = legs_normal_eigen(state_size)
    lam = _broadcast(jnp.asarray(lam), dt)
    w = _complex_normal(key, lam.shape, math.sqrt(2.0), dt.dtype)
    # expm1 keeps e^{LλΔ} − 1 accurate when LΔ|λ| is small.
    return DiagonalInit(lam, jnp.ones_like(lam), w / (2.0 * jnp.expm1(length * dt[:, None] * lam)))


INITS = {
    "s4d_lin": s4d_lin,
    "s4d_inv": s4d_inv,
    "s4d_legs": s4d_legs,
    "dss_exp": dss_exp,
    "dss_softmax": dss_softmax,
}


def log_uniform_dt(
    key: PRNGKeyArray, channels: int, dt_min: float, dt_max: float, dtype
) -> Float[Array, " channels"]:
    """log Δ ~ U(log dt_min, log dt_max), one step per channel (S4, Sec. 3.4)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    return jax.random.uniform(
        key, (channels,), dtype, minval=math.log(dt_min), maxval=math.log(dt_max)
    )
