"""The deterministic polynomial closure of Arnold, Moroz & Palmer (2013) and its fit.

Arnold et al. (2013), Phil. Trans. R. Soc. A 371, 20110479: the sub-grid tendency
of each slow variable is modelled by a cubic in that variable alone,

    U_det(X_k) = b0 + b1 X_k + b2 X_k² + b3 X_k³,

the same polynomial at every k, fitted by least squares to (X_k, U_k) pairs of a truth run.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...coupling import AbstractParameterization


def check_ring_state(x: Array, what: str = "state X") -> None:
    """Closures of the one-level Lorenz '96 model see one state X of shape (K,)."""
    if jnp.ndim(x) != 1:
        raise ValueError(
            f"{what} should be one unbatched ring of shape (K,), got shape {jnp.shape(x)} "
            "(batch with jax.vmap)"
        )


@savable
class PolynomialClosure(AbstractParameterization):
    """U_k = Σ_i b_i X_k^i (i = 0..degree), the same polynomial at every k (module docstring).

    `coefficients` are b_0, ..., b_degree (lowest power first). Build one from data with
    `fit_polynomial`. Called as `closure(x, params)` with `x` of shape (K,); `params` is
    ignored. Tendencies come back in `x`'s dtype.
    """

    coefficients: Float[Array, " n_coefficients"]
    degree: int = eqx.field(static=True)

    def __init__(
        self,
        degree: int = 3,
        coefficients: Any = None,
        *,
        dtype=jnp.float32,
        key: PRNGKeyArray | None = None,
    ):
        del key  # deterministic; the argument keeps the constructor uniform for loading
        if not isinstance(degree, int) or degree < 0:
            raise ValueError(f"degree must be a non-negative int, got {degree!r}")
        if coefficients is None:
            coefficients = jnp.zeros((degree + 1,), dtype)
        coefficients = jnp.asarray(coefficients, dtype)
        if coefficients.shape != (degree + 1,):
            raise ValueError(
                f"a degree-{degree} polynomial has {degree + 1} coefficients, got shape "
                f"{coefficients.shape}"
            )
        self.degree, self.coefficients = degree, coefficients

    def __call__(self, x: Float[Array, " k"], params: Any = None) -> Float[Array, " k"]:
        check_ring_state(x)
        # Horner's rule, highest power first
        u = jnp.zeros_like(x) + self.coefficients[-1]
        for b in self.coefficients[-2::-1]:
            u = u * x + b
        return u.astype(x.dtype)


def _shift_and_scale(a: Float[Array, " n"], center: Array, scale: Array) -> Float[Array, " n"]:
    """Monomial coefficients b of p(X) = Σ_i a_i ((X − center)/scale)^i (binomial theorem)."""
    n = a.shape[0]
    b = [jnp.zeros((), a.dtype) for _ in range(n)]
    for i in range(n):
        for r in range(i + 1):
            b[r] = b[r] + a[i] * math.comb(i, r) * (-center) ** (i - r) / scale**i
    return jnp.stack(b)


@eqx.filter_jit
def fit_polynomial(
    x: Float[Array, " *batch"], u: Float[Array, " *batch"], degree: int = 3
) -> PolynomialClosure:
    """Least-squares fit of U ≈ Σ_i b_i X^i over all pairs (x, u) (any equal shapes, pooled).

    Arnold et al. (2013) with `degree = 3`. The Vandermonde matrix is built in the
    standardized variable (X − mean)/std, which keeps it well conditioned in float32, and
    the coefficients are mapped back to powers of X exactly.
    """
    x, u = jnp.asarray(x), jnp.asarray(u)
    if x.shape != u.shape:
        raise ValueError(f"x and u must have the same shape, got {x.shape} and {u.shape}")
    if not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative int, got {degree!r}")
    if x.size < degree + 1:
        raise ValueError(f"fitting degree {degree} needs >= {degree + 1} pairs, got {x.size}")
    x, u = x.reshape(-1), u.reshape(-1)
    center, scale = jnp.mean(x), jnp.std(x)
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    t = (x - center) / scale
    vander = jnp.stack([t**i for i in range(degree + 1)], axis=1)
    a, *_ = jnp.linalg.lstsq(vander, u)
    return PolynomialClosure(degree, _shift_and_scale(a, center, scale), dtype=x.dtype)
