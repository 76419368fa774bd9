"""S5: one multi-input, multi-output diagonal state-space system shared by all channels.

Smith, Warrington & Linderman 2023, "Simplified state space layers for sequence modeling".
Where S4/S4D run H independent single-input systems of N states each, S5 runs one system
of N real states (N/2 complex modes, conjugate pairs as in `_init`) driven by all H
channels at once:

    x'(t) = Λ x + B̃ u,   y = 2 Re(C̃ x) + D u,   Λ: N/2 diagonal, B̃: N/2 × H, C̃: H × N/2,

discretised per mode with its own step Δ_p (zero-order hold or bilinear, `_discretize`):

    x_k = Ā_k x_{k−1} + B̄_k u_k,   Ā_k = e^{Δ_p,k λ_p},  B̄_k = (Ā_k − 1)/λ_p · B̃_p  (ZOH).

The recurrence is diagonal in the modes, so it runs by `jax.lax.associative_scan` on the
pairs (Ā_k, B̄_k u_k) (S5, Sec. 3.2) or by a sequential `lax.scan`. Because nothing is
precomputed from a fixed Δ, the step may change from one sample to the next: with
`dt = t_k − t_{k−1}` (in units of the step trained at) Δ_p,k = Δ_p dt_k, which is how S5
handles irregularly sampled series (S5, Sec. 6.3; exact for inputs held between samples
under ZOH). Λ starts from HiPPO-N, the normal part of HiPPO-LegS (`legs_nplr`), repeated in
J blocks along the diagonal: B̃ = Vᴴ B, C̃ = C V with V block-diagonal (S5, Sec. 4.3).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from .._serialization import savable
from ._discretize import DISCRETIZATIONS
from ._init import legs_nplr, log_uniform_dt
from ._kernels import _combine

S5_KERNELS = ("auto", "scan", "assoc")


def select_s5_kernel(length: int, platform: str | None = None) -> str:
    """The kernel `kernel="auto"` of `S5` uses for a sequence length on a platform.

    On CPU the sequential scan: measured with `benchmarks/ssm_family.py --tasks kernels`
    (forward + backward, batch 16 vmapped, H = 64, N = 64, 2 cores shared with a data
    generation job), scan / associative scan took 1.6 / 3.4 ms at L = 64, 4.9 / 11.3 ms at
    256, 72 / 81 ms at 1024 and 341 / 452 ms at 4096 (an earlier run at load 6: the same
    order at every length): with N/2 complex modes per step the state is too small for the
    scan's per-step cost to matter, while the associative scan does twice the work. On
    GPUs and TPUs the associative scan (depth log L; not measured here: no GPU was lent).
    """
    del length  # the same choice at every length measured
    platform = jax.default_backend() if platform is None else platform
    return "scan" if platform == "cpu" else "assoc"


def hippo_n_blocks(state_size: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Λ (N/2,) and the block-diagonal V (N × N/2) of HiPPO-N in `blocks` blocks (S5, 4.3)."""
    if blocks < 1 or state_size < 2 * blocks or state_size % (2 * blocks):
        raise ValueError(
            f"state_size must be a positive multiple of 2·blocks (each block of N/blocks "
            f"states has conjugate pairs), got state_size={state_size}, blocks={blocks}"
        )
    size = state_size // blocks
    lam, vec, _, _ = legs_nplr(size)
    full = np.zeros((state_size, state_size // 2), complex)
    for j in range(blocks):
        full[j * size : (j + 1) * size, j * (size // 2) : (j + 1) * (size // 2)] = vec
    return np.tile(lam, blocks), full


def discretize_modes(
    lam: Complex[Array, " modes"], dt: Float[Array, "*steps modes"], method: str
) -> tuple[Complex[Array, "*steps modes"], Complex[Array, "*steps modes"]]:
    """Ā and g with B̄ = g B̃ of x' = λx + B̃u for steps `dt` (ZOH or bilinear, `_discretize`)."""
    lam = jnp.broadcast_to(lam, dt.shape)
    z = dt * lam
    if method == "zoh":
        return jnp.exp(z), jnp.expm1(z) / lam  # expm1: accurate B̄ ≈ ΔB̃ for |Δλ| << 1
    return (1.0 + 0.5 * z) / (1.0 - 0.5 * z), dt / (1.0 - 0.5 * z)


def _split(z: Array) -> tuple[Array, Array]:
    return jnp.real(z), jnp.imag(z)


# The recurrences work on (re, im) pairs of real arrays: XLA's CPU loops and products are
# several times faster on real arrays than on complex ones.
Pair = tuple[Array, Array]


def _scan_pairs(a: Pair, bu: Pair, x0: Pair, reverse: bool) -> tuple[Pair, Pair]:
    if a[0].ndim == 1:
        ar, ai = a

        def body(x, b_k):
            xr, xi = x
            x = (ar * xr - ai * xi + b_k[0], ar * xi + ai * xr + b_k[1])
            return x, x

        xs = bu
    else:

        def body(x, k):
            (xr, xi), (a_r, a_i, b_r, b_i) = x, k
            x = (a_r * xr - a_i * xi + b_r, a_r * xi + a_i * xr + b_i)
            return x, x

        xs = (*a, *bu)
    return jax.lax.scan(body, x0, xs, reverse=reverse)


def _assoc_pairs(a: Pair, bu: Pair, x0: Pair, reverse: bool) -> tuple[Pair, Pair]:
    ar, ai = (jnp.broadcast_to(z, bu[0].shape) for z in a)
    first = -1 if reverse else 0
    # the entering state folded into the first map: b_first += a_first x0
    br = bu[0].at[first].add(ar[first] * x0[0] - ai[first] * x0[1])
    bi = bu[1].at[first].add(ar[first] * x0[1] + ai[first] * x0[0])
    _, _, sr, si = jax.lax.associative_scan(_combine, (ar, ai, br, bi), reverse=reverse)
    last = 0 if reverse else -1
    return (sr[last], si[last]), (sr, si)


_SCANS = {"scan": _scan_pairs, "assoc": _assoc_pairs}


def diagonal_scan(
    a: Complex[Array, "*length modes"],
    bu: Complex[Array, "length modes"],
    x0: Complex[Array, " modes"],
    *,
    kernel: str = "scan",
    reverse: bool = False,
) -> tuple[Complex[Array, " modes"], Complex[Array, "length modes"]]:
    """x_k = a_k x_{k−1} + bu_k (reverse: x_k = a_k x_{k+1} + bu_k, from the end).

    `a` is (modes,) for a constant step or (length, modes). `kernel="scan"` is a sequential
    `lax.scan`, "assoc" a `lax.associative_scan` on the affine maps x -> a_k x + bu_k.
    Returns (last state, all states).
    """
    last, states = _SCANS[kernel](_split(a), _split(bu), _split(x0), reverse)
    return jax.lax.complex(*last), jax.lax.complex(*states)


def _pair(z: np.ndarray) -> np.ndarray:
    return np.stack([np.real(z), np.imag(z)], axis=-1)


def _times(w: Complex[Array, "*steps modes"], z: Pair) -> Pair:
    wr, wi = _split(jnp.broadcast_to(w, z[0].shape))
    return wr * z[0] - wi * z[1], wr * z[1] + wi * z[0]


def _project(u: Float[Array, "length channels"], w: Float[Array, "out channels 2"]) -> Pair:
    """u W̃ᵀ for a complex W̃ stored as (re, im) pairs: two real matrix products."""
    return u @ w[..., 0].T, u @ w[..., 1].T


def _readout(states: Pair, c: Float[Array, "channels modes 2"]) -> Array:
    """2 Re(C̃ x_k) for every k, as real matrix products."""
    return 2.0 * (states[0] @ c[..., 0].T - states[1] @ c[..., 1].T)


@savable
class S5(eqx.Module):
    """One MIMO diagonal SSM of `state_size` N real states shared by H channels (S5).

    A sequence is `(length, channels)`, time first. `blocks` J splits the HiPPO-N
    initialisation of Λ in J blocks of N/J states. `kernel` is "scan", "assoc" or "auto"
    (`select_s5_kernel`); all give the same numbers. With `bidirectional=True` a second
    readout C̃_b reads the same system run backwards in time (S5's bidirectional form), and
    `merge` sums the two ("sum") or stacks them along channels ("concat", out_channels 2H).
    Calls take `rate` (sampling rate relative to the one trained at: Δ -> Δ/rate) and
    `dt`, the time increments t_k − t_{k−1} of an irregular series in units of the step
    trained at (the first one is the step into u_0); Δ_p,k = Δ_p dt_k / rate. The reverse
    half steps from t_{k+1} back to t_k with dt_{k+1} (and with dt_0 into the last sample).

    Example:
        >>> layer = S5(8, 32, key=jax.random.key(0))
        >>> y = layer(jnp.ones((100, 8)), dt=jnp.full(100, 0.5))      # (length, channels)
        >>> state, y_t = layer.step(layer.init_state(), jnp.ones(8), dt=0.5)
    """

    log_neg_real: Float[Array, " modes"]
    imag: Float[Array, " modes"]
    b: Float[Array, "modes channels 2"]
    c: Float[Array, "directions channels modes 2"]
    d: Float[Array, " channels"]
    log_dt: Float[Array, " modes"]
    channels: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    blocks: int = eqx.field(static=True)
    discretization: str = eqx.field(static=True)
    kernel: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    merge: str = eqx.field(static=True)
    dt_min: float = eqx.field(static=True)
    dt_max: float = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        *,
        blocks: int = 1,
        discretization: str = "zoh",
        kernel: str = "auto",
        bidirectional: bool = False,
        merge: str = "sum",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(
                f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}"
            )
        if kernel not in S5_KERNELS:
            raise ValueError(f"kernel must be one of {S5_KERNELS}, got {kernel!r}")
        if merge not in ("sum", "concat"):
            raise ValueError(f"merge must be 'sum' or 'concat', got {merge!r}")
        lam, vec = hippo_n_blocks(state_size, blocks)
        k_dt, k_b, k_c, k_d = jax.random.split(key, 4)
        n_dir = 2 if bidirectional else 1
        self.log_dt = log_uniform_dt(k_dt, state_size // 2, dt_min, dt_max, dtype)
        # B ~ N(0, 1/H) and C ~ CN(0, 2/N) in the state basis, then projected onto the modes.
        b = np.asarray(jax.random.normal(k_b, (state_size, channels)), np.float64).astype(complex)
        b = b / np.sqrt(channels)
        c = np.asarray(jax.random.normal(k_c, (n_dir, channels, state_size, 2)), np.float64)
        c = (c[..., 0] + 1j * c[..., 1]) / np.sqrt(state_size)
        self.log_neg_real = jnp.asarray(np.log(-lam.real), dtype)
        self.imag = jnp.asarray(lam.imag, dtype)
        self.b = jnp.asarray(_pair(vec.conj().T @ b), dtype)
        self.c = jnp.asarray(_pair(c @ vec), dtype)
        self.d = jax.random.normal(k_d, (channels,), dtype)
        self.channels, self.state_size, self.blocks = channels, state_size, blocks
        self.discretization, self.kernel = discretization, kernel
        self.bidirectional, self.merge = bool(bidirectional), merge
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)

    @property
    def out_channels(self) -> int:
        return 2 * self.channels if self.bidirectional and self.merge == "concat" else self.channels

    @property
    def lam(self) -> Complex[Array, " modes"]:
        return jax.lax.complex(-jnp.exp(self.log_neg_real), self.imag)

    def init_state(self) -> Complex[Array, " modes"]:
        """The zero state, (state_size/2,) complex."""
        return jnp.zeros(self.imag.shape, jnp.result_type(self.imag.dtype, jnp.complex64))

    def _steps(self, rate, dt, length: int | None) -> Float[Array, "*length modes"]:
        if isinstance(rate, int | float) and not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        delta = jnp.exp(self.log_dt) / rate
        if dt is None:
            return delta
        want = () if length is None else (length,)
        if jnp.shape(dt) != want:
            raise ValueError(
                f"dt must have shape {want} (one increment per step), got {jnp.shape(dt)}"
            )
        # values are checked when they are known (numpy: jnp ops inside jit are staged)
        if not isinstance(dt, jax.core.Tracer) and bool(np.any(np.asarray(dt) < 0)):
            raise ValueError("dt must be >= 0 (time increments of an ordered series)")
        dt = jnp.asarray(dt, delta.dtype)
        return dt[..., None] * delta[None] if dt.ndim else dt * delta

    def run(
        self,
        state: Complex[Array, " modes"] | None,
        u: Float[Array, "length channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: Float[Array, " length"] | None = None,
    ) -> tuple[Complex[Array, " modes"], Float[Array, "length out"]]:
        """(state after the sequence, outputs) from the state before it (None: zero)."""
        if u.ndim != 2 or u.shape[1] != self.channels or u.shape[0] < 1:
            raise ValueError(
                f"expected an input of shape (length >= 1, {self.channels}), got {u.shape}"
            )
        if state is not None:
            if self.bidirectional:
                raise ValueError("a bidirectional S5 looks at the future: it takes no state")
            self._check_state(state)
        length = u.shape[0]
        steps = self._steps(rate, dt, length)
        scan = _SCANS[select_s5_kernel(length) if self.kernel == "auto" else self.kernel]
        a, g = discretize_modes(self.lam, steps, self.discretization)
        bu = _project(u, self.b)  # B̃ u_k, (length, modes)
        x0 = self.init_state() if state is None else state
        final, states = scan(_split(a), _times(g, bu), _split(x0), False)
        y = _readout(states, self.c[0])
        if self.bidirectional:
            if dt is not None:  # from t_{k+1} back to t_k takes dt_{k+1}
                steps = jnp.roll(steps, -1, axis=0)
                a, g = discretize_modes(self.lam, steps, self.discretization)
            _, back = scan(_split(a), _times(g, bu), _split(self.init_state()), True)
            y_b = _readout(back, self.c[1])
            if self.merge == "concat":
                return jax.lax.complex(*final), jnp.concatenate([y + u * self.d[None], y_b], axis=1)
            y = y + y_b
        return jax.lax.complex(*final), y + u * self.d[None]

    def __call__(
        self,
        u: Float[Array, "length channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: Float[Array, " length"] | None = None,
    ) -> Float[Array, "length out"]:
        """Outputs for one sequence from the zero state."""
        return self.run(None, u, rate=rate, dt=dt)[1]

    def _check_state(self, state: Array) -> None:
        if state.shape != self.imag.shape:
            raise ValueError(f"state must have shape {self.imag.shape}, got {state.shape}")

    def step(
        self,
        state: Complex[Array, " modes"],
        u_t: Float[Array, " channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
        dt: float | Float[Array, ""] | None = None,
    ) -> tuple[Complex[Array, " modes"], Float[Array, " channels"]]:
        """One time step (of increment `dt` if given): (state, u_t) -> (state, y_t)."""
        if self.bidirectional:
            raise ValueError("a bidirectional S5 looks at the future and cannot be stepped")
        if u_t.shape != (self.channels,):
            raise ValueError(f"expected an input of shape ({self.channels},), got {u_t.shape}")
        self._check_state(state)
        a, g = discretize_modes(self.lam, self._steps(rate, dt, None), self.discretization)
        bu = _times(g, _project(u_t[None], self.b))
        state = a * state + jax.lax.complex(bu[0][0], bu[1][0])
        y = _readout(_split(state[None]), self.c[0])[0]
        return state, y + self.d * u_t
