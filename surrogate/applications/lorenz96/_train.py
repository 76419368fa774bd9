"""Training learned closures offline with `surrogate.training.fit`.

`fit_closure` minimises the MSE of the predicted sub-grid tendency U over (X, U) pairs of
truth runs (as Arnold et al. 2013 fit their polynomial, and Gagne et al. 2020 their local
networks), after setting the closure's normalizers from the training data.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ...data import Normalizer
from ...training import fit


def with_normalizers(closure: eqx.Module, x: Array, u: Array) -> eqx.Module:
    """`closure` with its `x_norm`, `u_norm` fitted on states x (..., K) and tendencies u."""
    if not hasattr(closure, "x_norm"):
        return closure
    xn = Normalizer.fit(jnp.reshape(x, (-1, 1, x.shape[-1])))
    un = Normalizer.fit(jnp.reshape(u, (-1, 1, u.shape[-1])))
    return eqx.tree_at(lambda c: (c.x_norm, c.u_norm), closure, (xn, un))


def _optimizer(learning_rate: float, epochs: int, steps: int) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(learning_rate, max(1, epochs * steps), alpha=0.01)
    return optax.adam(schedule)


def _check_lr(learning_rate: float) -> None:
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")


def fit_closure(
    closure: eqx.Module,
    x: Float[Array, " n k"],
    u: Float[Array, " n k"],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    key: PRNGKeyArray,
    valid: tuple[Array, Array] | None = None,
    progress: bool = False,
) -> tuple[eqx.Module, dict]:
    """Train `closure` offline on pairs of states x (n, K) and sub-grid tendencies u (n, K).

    Adam with a cosine-decayed learning rate; minibatches of `batch_size` states. Returns
    the trained closure and `fit`'s history.
    """
    x, u = jnp.asarray(x), jnp.asarray(u)
    if x.ndim != 2 or x.shape != u.shape:
        raise ValueError(
            f"x and u should be pairs of states and tendencies of one shape (n, K), got "
            f"{x.shape} and {u.shape}"
        )
    _check_lr(learning_rate)
    closure = with_normalizers(closure, x, u)

    def loss_fn(model, batch):
        pred = jax.vmap(lambda s: model(s, None))(batch["x"])
        return jnp.mean((pred - batch["u"]) ** 2)

    steps = max(1, x.shape[0] // max(1, min(batch_size, x.shape[0])))
    return fit(
        closure,
        loss_fn,
        {"x": x, "u": u},
        None if valid is None else {"x": jnp.asarray(valid[0]), "u": jnp.asarray(valid[1])},
        optimizer=_optimizer(learning_rate, epochs, steps),
        epochs=epochs,
        batch_size=batch_size,
        key=key,
        progress=progress,
    )
