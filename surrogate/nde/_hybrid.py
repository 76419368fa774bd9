"""Hybrid vector fields: known physics with learnable parameters plus a learned correction.

    dy/dt = physics(t, y, args, θ(args)) + network(t, y, args)

"Universal differential equations" (Rackauckas et al. 2020, arXiv:2001.04385): the terms we
trust are written down, their constants θ are fitted with the network, and the network only
learns what the physics misses. Positive constants (rates, damping, pre-exponential factors,
activation energies) are stored as logarithms, so that gradient steps cannot make them
negative and a step changes them by a relative amount whatever their scale (a
pre-exponential factor of 1e10 and a damping of 0.1 train alike).

θ may also be produced by a network of a conditioning vector carried in `args` (one
reaction's Arrhenius parameters as functions of the case's equivalence ratio and pressure,
say): `ConditionedParameters`. Either kind sits in the same `HybridField`, so the whole
model is one `eqx.Module` trained by one optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._serialization import savable


def _known(x: Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


@savable
class PhysicalParameters(eqx.Module):
    """Named learnable constants; those listed in `positive` are stored as log values.

    `PhysicalParameters({"damping": 0.1, "omega": 2.0}, positive=("damping",))()` returns
    `{"damping": 0.1, "omega": 2.0}` as arrays; only `log(0.1)` and `2.0` are leaves.
    """

    raw: dict[str, Array]
    positive: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self, values: Mapping[str, ArrayLike], *, positive: Sequence[str] = (), dtype: Any = None
    ):
        values = dict(values)
        positive = tuple(positive)
        unknown = [n for n in positive if n not in values]
        if unknown:
            raise ValueError(f"positive names {unknown} are not parameters; have {sorted(values)}")
        dtype = jnp.float32 if dtype is None else dtype
        raw = {}
        for name, value in values.items():
            with jax.ensure_compile_time_eval():  # check values known at trace time now
                value = jnp.asarray(value, dtype)
                finite, pos = jnp.all(jnp.isfinite(value)), jnp.all(value > 0)
            if _known(finite) and not bool(finite):
                raise ValueError(f"parameter {name!r} must be finite, got {value}")
            if name in positive:
                if _known(pos) and not bool(pos):
                    raise ValueError(f"parameter {name!r} is declared positive, got {value}")
                value = jnp.log(value)
            raw[name] = value
        self.raw, self.positive = raw, positive

    @property
    def values(self) -> dict[str, Array]:
        return self()

    def __call__(self, args: Any = None) -> dict[str, Array]:
        return {n: jnp.exp(v) if n in self.positive else v for n, v in self.raw.items()}


@savable
class ConditionedParameters(eqx.Module):
    """θ(c) from a network g of a conditioning vector c:

        θ_i(c) = θ_i^ref exp(g_i(c))   (positive),      θ_i(c) = θ_i^ref + g_i(c)   (others).

    The fixed references set each parameter's scale, so the network's outputs are O(1)
    (a log-ratio or an offset) whatever the physical units. `c` is `args` itself, or
    `args[condition_key]` when `args` is a dict carrying other things too.
    """

    network: Callable
    names: tuple[str, ...] = eqx.field(static=True)
    reference_values: tuple[float, ...] = eqx.field(static=True)
    positive: tuple[str, ...] = eqx.field(static=True)
    condition_key: str | None = eqx.field(static=True)

    def __init__(
        self,
        network: Callable,
        reference: Mapping[str, float],
        *,
        positive: Sequence[str] = (),
        condition_key: str | None = None,
    ):
        if not callable(network):
            raise ValueError(f"network must be a callable c -> g(c), got {network!r}")
        names = tuple(reference)
        unknown = [n for n in positive if n not in names]
        if unknown:
            raise ValueError(f"positive names {unknown} are not parameters; have {list(names)}")
        for n in positive:
            if not float(reference[n]) > 0:
                raise ValueError(
                    f"reference of positive parameter {n!r} must be > 0, got {reference[n]}"
                )
        self.network, self.names = network, names
        self.reference_values = tuple(float(reference[n]) for n in names)
        self.positive, self.condition_key = tuple(positive), condition_key

    @property
    def reference(self) -> dict[str, float]:
        return dict(zip(self.names, self.reference_values, strict=True))

    def __call__(self, args: Any) -> dict[str, Array]:
        c = args if self.condition_key is None else args[self.condition_key]
        c = jnp.asarray(c)
        if c.ndim != 1:
            raise ValueError(f"the condition must be a vector (c,), got shape {c.shape}")
        g = self.network(c)
        if g.shape != (len(self.names),):
            raise ValueError(
                f"the parameter network must return shape ({len(self.names)},) for "
                f"{self.names}, got {g.shape}"
            )
        return {
            n: ref * jnp.exp(g[i]) if n in self.positive else ref + g[i]
            for i, (n, ref) in enumerate(zip(self.names, self.reference_values, strict=True))
        }


@savable
class HybridField(eqx.Module):
    """f(t, y, args) = physics(t, y, args, parameters(args)) + network(t, y, args).

    `physics` is a plain function of the known terms; `parameters` is a
    `PhysicalParameters` or `ConditionedParameters` (or any callable `args -> dict`);
    `network` is the learned correction (`None` for physics with learned constants only).
    """

    physics: Callable
    network: Callable | None
    parameters: Callable | None

    def __init__(
        self,
        physics: Callable,
        network: Callable | None = None,
        *,
        parameters: Callable | None = None,
    ):
        if not callable(physics):
            raise ValueError(f"physics must be a callable (t, y, args, params), got {physics!r}")
        if network is not None and not callable(network):
            raise ValueError(f"network must be a callable (t, y, args) or None, got {network!r}")
        self.physics, self.network, self.parameters = physics, network, parameters

    def __call__(self, t: ArrayLike, y: Float[Array, "..."], args: Any = None) -> Array:
        params = {} if self.parameters is None else self.parameters(args)
        dy = self.physics(t, y, args, params)
        if self.network is None:
            return dy
        correction = self.network(t, y, args)
        if correction.shape != dy.shape:
            raise ValueError(
                f"the network's correction has shape {correction.shape} but the physics "
                f"returns {dy.shape}"
            )
        return dy + correction
