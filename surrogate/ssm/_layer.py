"""The diagonal SSM layer (S4D/DSS style) and its bidirectional form.

Inputs are one unbatched sequence `(length, channels)`, time first; batch with `jax.vmap`.
Each of the H channels is an independent SISO system x' = Λx + Bu, y = 2 Re(Cx) + Du with
P = N/2 complex modes (conjugate pairs, see `_init`). Parameters are real arrays:
Re Λ = −exp(`log_neg_real`) keeps every mode stable whatever the optimiser does;
Δ = exp(`log_dt`) per channel; B and C are stored as (real, imaginary) in a last axis of 2,
because jax.grad of a real loss with respect to a complex leaf returns the conjugate of the
descent direction and optax would then step the imaginary parts the wrong way.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from .._serialization import savable
from ._discretize import DISCRETIZATIONS, DiscreteSSM, discretize
from ._init import INITS, DiagonalInit, log_uniform_dt
from ._kernels import KERNELS, ssm_assoc, ssm_fft, ssm_scan, ssm_step

# Block length of the chunked scans (`kernel="scan"` or `"assoc"`): on a 2-core CPU, with
# N = 64, blocks of 32 to 64 steps were fastest at L >= 4096 and 32 also at L = 256 to 1024,
# where 64 was 2-3x slower (benchmarks/ssm_kernels.py).
DEFAULT_CHUNK = 32
# Up to this length the step-by-step recurrence beats the FFT's fixed costs on CPU.
SHORT = 32


def select_kernel(length: int, platform: str | None = None) -> str:
    """The kernel `kernel="auto"` uses for a sequence length on a platform ("cpu", "gpu", ...).

    On CPU, measured with benchmarks/ssm_kernels.py (forward + backward, H = 256, N = 64,
    2 cores): the FFT was the fastest kernel at every length from 64 to 16384 (L = 4096:
    FFT 62 ms, chunked scans 74-76 ms, chunked associative scan 134 ms, plain lax.scan
    466 ms), and the plain recurrence for L <= 32 (L = 16: 1.3 ms, FFT 1.7 ms). On GPUs and
    TPUs the parallel forms are used (not measured here): the FFT, or the step-wise
    associative scan for short sequences.
    """
    platform = jax.default_backend() if platform is None else platform
    if length > SHORT:
        return "fft"
    return "scan" if platform == "cpu" else "assoc"


def _complex(pair: Float[Array, "... 2"]) -> Complex[Array, "..."]:
    return jax.lax.complex(pair[..., 0], pair[..., 1])


def _pair(z: Complex[Array, "..."]) -> Float[Array, "... 2"]:
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)


@savable
class DiagonalSSM(eqx.Module):
    """H independent diagonal state-space models (S4D, Gu et al. 2022; DSS, Gupta et al. 2022).

    A sequence is `(length, channels)`, time first. `state_size` N is the real state size of
    each channel, kept as N/2 complex modes (conjugate pairs, y = 2 Re(Cx) + Du); states
    passed to `run` and `step` are complex `(channels, N/2)` arrays.

    `kernel` picks how a sequence is computed ("fft", "scan", "assoc" or "auto", see
    `_kernels` and `select_kernel`); all give the same numbers. `chunk` is the block length
    of the scans (1: plain step-by-step recurrence). `init` is one of "s4d_lin", "s4d_inv",
    "s4d_legs", "dss_exp", "dss_softmax" (at length 1024; use
    `functools.partial(dss_softmax, length=L)` for another) or any function
    `(state_size, dt, *, key) -> DiagonalInit`. Δ starts log-uniform in [dt_min, dt_max].
    `rate` at call time is the sampling rate relative to the one trained at: Δ becomes
    Δ/rate (exact for inputs held between samples with zero-order hold).

    Example:
        >>> layer = DiagonalSSM(8, 16, key=jax.random.key(0))
        >>> y = layer(jnp.ones((100, 8)))                 # (length, channels)
        >>> state, y_t = layer.step(layer.init_state(), jnp.ones(8))
    """

    log_neg_real: Float[Array, "channels modes"]
    imag: Float[Array, "channels modes"]
    b: Float[Array, "channels modes 2"]
    c: Float[Array, "channels modes 2"]
    d: Float[Array, " channels"]
    log_dt: Float[Array, " channels"]
    channels: int = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    discretization: str = eqx.field(static=True)
    kernel: str = eqx.field(static=True)
    chunk: int = eqx.field(static=True)
    init: str | Callable[..., DiagonalInit] = eqx.field(static=True)
    dt_min: float = eqx.field(static=True)
    dt_max: float = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        *,
        init: str | Callable[..., DiagonalInit] = "s4d_lin",
        discretization: str = "zoh",
        kernel: str = "auto",
        chunk: int = DEFAULT_CHUNK,
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
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if isinstance(init, str):
            if init not in INITS:
                raise ValueError(f"init must be one of {tuple(INITS)} or a function, got {init!r}")
            init_fn = INITS[init]
        else:  # a file records a library initialisation by its name
            init_fn = init
            init = next((name for name, f in INITS.items() if f is init), init)
        self.init, self.dt_min, self.dt_max = init, float(dt_min), float(dt_max)
        k_dt, k_init, k_d = jax.random.split(key, 3)
        log_dt = log_uniform_dt(k_dt, channels, dt_min, dt_max, dtype)
        lam, b, c = init_fn(state_size, jnp.exp(log_dt), key=k_init)
        re = jnp.real(lam)
        if not isinstance(re, jax.core.Tracer) and bool(jnp.any(re >= 0)):
            raise ValueError("the initialisation gave eigenvalues with Re λ >= 0")
        self.log_neg_real = jnp.log(-jnp.real(lam)).astype(dtype)
        self.imag = jnp.imag(lam).astype(dtype)
        self.b = _pair(b).astype(dtype)
        self.c = _pair(c).astype(dtype)
        self.d = jax.random.normal(k_d, (channels,), dtype)
        self.log_dt = log_dt
        self.channels = channels
        self.state_size = state_size
        self.discretization = discretization
        self.kernel = kernel
        self.chunk = chunk

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def lam(self) -> Complex[Array, "channels modes"]:
        return jax.lax.complex(-jnp.exp(self.log_neg_real), self.imag)

    def discretize(self, rate: float | Float[Array, ""] = 1.0) -> DiscreteSSM:
        """Ā, B̄, C at step Δ/rate: `rate` = new sampling rate / the rate trained at."""
        if isinstance(rate, int | float) and not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        dt = jnp.exp(self.log_dt) / rate
        return discretize(self.lam, _complex(self.b), _complex(self.c), dt, self.discretization)

    def init_state(self) -> Complex[Array, "channels modes"]:
        """The zero state, (channels, state_size/2) complex."""
        return jnp.zeros(self.imag.shape, jnp.result_type(self.imag.dtype, jnp.complex64))

    def _check_state(self, state: Array) -> None:
        if state.shape != self.imag.shape:
            raise ValueError(f"state must have shape {self.imag.shape}, got {state.shape}")

    def run(
        self,
        state: Complex[Array, "channels modes"] | None,
        u: Float[Array, "length channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
    ) -> tuple[Complex[Array, "channels modes"], Float[Array, "length channels"]]:
        """(state after the sequence, outputs) from the state before it (None: zero)."""
        if u.ndim != 2 or u.shape[1] != self.channels or u.shape[0] < 1:
            raise ValueError(
                f"expected an input of shape (length >= 1, {self.channels}), got {u.shape}"
            )
        if state is not None:
            self._check_state(state)
        disc = self.discretize(rate)
        kernel, chunk = self.kernel, self.chunk
        if kernel == "auto":
            kernel = select_kernel(u.shape[0])
            chunk = 1 if u.shape[0] <= SHORT else chunk
        if kernel == "fft":
            state, y = ssm_fft(disc, u, state)
        elif kernel == "scan":
            state, y = ssm_scan(disc, u, state, chunk=chunk)
        else:
            state, y = ssm_assoc(disc, u, state, chunk=chunk)
        return state, y + u * self.d[None, :]

    def __call__(
        self, u: Float[Array, "length channels"], *, rate: float | Float[Array, ""] = 1.0
    ) -> Float[Array, "length channels"]:
        """Outputs for one sequence from the zero state."""
        return self.run(None, u, rate=rate)[1]

    def step(
        self,
        state: Complex[Array, "channels modes"],
        u_t: Float[Array, " channels"],
        *,
        rate: float | Float[Array, ""] = 1.0,
    ) -> tuple[Complex[Array, "channels modes"], Float[Array, " channels"]]:
        """One time step for use inside a simulator: (state, u_t) -> (state, y_t)."""
        if u_t.shape != (self.channels,):
            raise ValueError(f"expected an input of shape ({self.channels},), got {u_t.shape}")
        self._check_state(state)
        state, y = ssm_step(self.discretize(rate), state, u_t)
        return state, y + self.d * u_t


@savable
class BidirectionalSSM(eqx.Module):
    """A causal SSM plus an anti-causal one (a second SSM run on the time-reversed input).

    y = SSM_f(u) + flip(SSM_b(flip(u))) for `merge="sum"`, or the two stacked along channels,
    (length, 2 channels), for `merge="concat"` (then mixed by the block's linear layer).
    """

    forward: DiagonalSSM
    backward: DiagonalSSM
    merge: str = eqx.field(static=True)
    ssm_options: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        *,
        merge: str = "sum",
        key: PRNGKeyArray,
        **ssm_options,
    ):
        if merge not in ("sum", "concat"):
            raise ValueError(f"merge must be 'sum' or 'concat', got {merge!r}")
        k_f, k_b = jax.random.split(key)
        self.forward = DiagonalSSM(channels, state_size, key=k_f, **ssm_options)
        self.backward = DiagonalSSM(channels, state_size, key=k_b, **ssm_options)
        self.merge = merge
        self.ssm_options = tuple(sorted(ssm_options.items()))

    @property
    def state_size(self) -> int:
        return self.forward.state_size

    @property
    def channels(self) -> int:
        return self.forward.channels

    @property
    def out_channels(self) -> int:
        return 2 * self.channels if self.merge == "concat" else self.channels

    def __call__(
        self, u: Float[Array, "length channels"], *, rate: float | Float[Array, ""] = 1.0
    ) -> Float[Array, "length out"]:
        y_f = self.forward(u, rate=rate)
        y_b = self.backward(u[::-1], rate=rate)[::-1]
        if self.merge == "sum":
            return y_f + y_b
        return jnp.concatenate([y_f, y_b], axis=1)
