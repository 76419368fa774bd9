"""A DeepONet for sound in rooms from the source position (Borrel-Jensen et al. 2024, PNAS
121, e2312159120): `SourceDeepONet` maps a source x0 and a space-time point (x, t) to the
pressure there, optionally with a trunk that sees distances and retarded distances to the
source and its mirror images in the walls (`image_sources`, Allen & Berkley 1979), and
`train_surrogate`, its training recipe on the fields of `surrogate.problems.RoomAcoustics`.
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ..._serialization import savable
from ...operators import DeepONet
from ...operators._features import fourier_features
from ...problems.room_acoustics import RoomAcoustics


def scaled(y: Array, lo: tuple[float, ...], hi: tuple[float, ...]) -> Array:
    """Affine map of the box [lo, hi] onto [−1, 1] (the last axis of `y` holds the coordinates)."""
    shape = (1,) * (y.ndim - 1) + (len(lo),)  # explicit: rank promotion is an error here
    lo_, hi_ = jnp.asarray(lo, y.dtype).reshape(shape), jnp.asarray(hi, y.dtype).reshape(shape)
    return 2.0 * (y - lo_) / (hi_ - lo_) - 1.0


def rms(x: Array) -> float:
    return float(math.sqrt(float(jnp.mean(jnp.square(x)))))


SOURCE_FEATURES = ("none", "images")


def image_orbits(d: int, order: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """The image indices m ∈ Zᵈ with Σ|m_a| ≤ `order` reflections, grouped into orbits of
    the box's mirror group (m_a -> −m_a on any axis), the direct source first; within an
    orbit the indices come in lexicographic order (so order 1 gives m_a = −1, then +1,
    axis by axis)."""
    ranges = [range(-order, order + 1)] * d
    seen, orbits = set(), []
    for m in sorted(itertools.product(*ranges), key=lambda m: (sum(map(abs, m)), m)):
        if sum(map(abs, m)) > order or m in seen:
            continue
        orbit = sorted(set(itertools.product(*[{-v, v} for v in m])))
        seen.update(orbit)
        orbits.append(tuple(orbit))
    # the direct source, then the first-order pairs axis by axis, then the rest
    return tuple(sorted(orbits, key=lambda o: (sum(map(abs, o[0])), [-abs(v) for v in o[0]])))


def image_sources(
    x0: Float[Array, " d"],
    lower: tuple[float, ...],
    upper: tuple[float, ...],
    order: int = 1,
) -> Float[Array, " n_images d"]:
    """x0 and its mirror images in the walls of the box [lower, upper] up to `order`
    reflections, in the order of `image_orbits` (order 1: x0, then per axis a the images
    2·lower_a − x0_a and 2·upper_a − x0_a). The free-field waves of these sources, each
    weakened by the wall's reflection coefficient per reflection, make the field in the
    box up to that order (Allen & Berkley 1979, "Image method for efficiently simulating
    small-room acoustics", JASA 65). Per axis, with y = x0 − lower and L = upper − lower,
    image m sits at lower + y + mL (m even) or lower + (m + 1)L − y (m odd)."""
    lo, hi = jnp.asarray(lower, x0.dtype), jnp.asarray(upper, x0.dtype)
    m = jnp.asarray([i for o in image_orbits(x0.shape[-1], order) for i in o], x0.dtype)
    y, side, lo = (x0 - lo)[None], (hi - lo)[None], lo[None]  # explicit: no rank promotion
    odd = jnp.abs(m) % 2 == 1
    return lo + jnp.where(odd, (m + 1.0) * side - y, y + m * side)


def _sorted_small(v: Float[Array, " k"]) -> Float[Array, " k"]:
    """`jnp.sort` of a few values by odd-even transposition (k rounds of min/max): under
    `vmap` over 10⁴ points XLA's sort costs more on the CPU than these elementwise ops."""
    items = list(v)
    for r in range(len(items)):
        for i in range(r % 2, len(items) - 1, 2):
            a, b = items[i], items[i + 1]
            items[i], items[i + 1] = jnp.minimum(a, b), jnp.maximum(a, b)
    return jnp.stack(items)


@savable
class SourceDeepONet(eqx.Module):
    """A DeepONet from the source position to the pressure at space-time points, in Pa.

    Branch input: x0 (d,) in metres; trunk input: rows (x, y[, z], t) in metres and
    seconds. Both are mapped from the box [`lower`, `upper`] onto [−1, 1] before the
    network (and before the trunk's random Fourier features), and the output is multiplied
    by `p_scale` (Pa), the RMS pressure of the training data, so that the net works at
    unit scale. `model(x0, points) -> (n_points,)` evaluates the branch once;
    `model.pointwise` evaluates each point on its own. Other keyword arguments go to
    `DeepONet` (p, widths, depths, Fourier features, ...).

    `source_features` chooses what the trunk sees:

    - `"none"` (default): (x, t) only, so the trunk is evaluated once for all sources (the
      Cartesian layout of `DeepONet`). The field of a source is then a combination of p
      fixed functions of (x, t) with coefficients b(x0). A pulse whose sharp front sits at
      |x − x0| = ct moves with x0, and such translated fronts are not of low rank: the
      n-width of {p(·; x0)} decays slowly, and no p fixed basis functions represent them
      well (Lanthaler, Molinaro, Hadorn & Mishra 2022, "Nonlinear reconstruction for
      operator learning of PDEs with discontinuities", ICLR 2023, the Shift-DeepONet).
    - `"images"`: the trunk also sees source-relative, physics-informed features (the
      Shift-DeepONet idea: let the input move the trunk's basis with it, here by
      geometry rather than by a learned shift). For x0 and its mirror images s_i in the
      walls of the box up to `image_order` reflections (`image_sources`; order 1: the 2d
      first-order images), the distance r_i = |x − s_i| / D (D the box diagonal), the
      retarded distance ρ_i = (|x − s_i| − c t)/σ as tanh(ρ_i/3) and the pulse envelope
      exp(−ρ_i²) (the initial pulse is exp(−r²/σ²), so ρ_i = 0 is the front of the wave
      of s_i, and the first-order images' fronts are the first reflections); and
      |x − x0|/L per axis. The random Fourier features see the folded coordinates
      |x − centre| and t instead of the absolute position. The images of one orbit of
      the box's mirror group enter sorted by distance (nearer wall first), so all trunk
      inputs are invariant under a mirror of the box applied to x and x0 together, as
      the true field is: a source on a symmetry plane gives a field symmetric about it,
      trained or not. `sound_speed` c (m/s) and `pulse_width` σ (m) are required. The
      trunk now depends on x0, so it is evaluated once per (source, point): one call for
      n points of one source costs about what it did, but training uses random (source,
      point) pairs (`train_surrogate`).
    """

    deeponet: DeepONet
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    p_scale: float = eqx.field(static=True)
    time_factor: float = eqx.field(static=True)
    source_features: str = eqx.field(static=True)
    sound_speed: float = eqx.field(static=True)
    pulse_width: float = eqx.field(static=True)
    image_order: int = eqx.field(static=True)
    options: tuple[tuple[str, object], ...] = eqx.field(static=True)

    def __init__(
        self,
        lower,
        upper,
        *,
        p_scale: float = 1.0,
        time_factor: float = 1.0,
        source_features: str = "none",
        sound_speed: float = 0.0,
        pulse_width: float = 0.0,
        image_order: int = 1,
        key: PRNGKeyArray,
        **options,
    ):
        lower, upper = tuple(float(v) for v in lower), tuple(float(v) for v in upper)
        if len(lower) != len(upper) or len(lower) not in (3, 4):
            raise ValueError(
                f"lower and upper must both hold (x, y[, z], t): 3 or 4 values, "
                f"got {lower}, {upper}"
            )
        if not all(b > a for a, b in zip(lower, upper, strict=True)) or not p_scale > 0:
            raise ValueError(f"need upper > lower and p_scale > 0, got {lower}, {upper}, {p_scale}")
        if source_features not in SOURCE_FEATURES:
            raise ValueError(
                f"unknown source_features {source_features!r}; expected one of {SOURCE_FEATURES}"
            )
        if source_features == "images" and not (sound_speed > 0 and pulse_width > 0):
            raise ValueError(
                "source_features='images' needs sound_speed > 0 (m/s) and pulse_width > 0 (m)"
                f" for the retarded distances, got {sound_speed} and {pulse_width}"
            )
        if not (isinstance(image_order, int) and 1 <= image_order <= 4):
            raise ValueError(f"image_order must be an integer from 1 to 4, got {image_order!r}")
        d = len(lower) - 1
        net = DeepONet(d, d + 1, n_out=1, key=key, **options)
        if net.frequencies is not None:
            # a wave crosses the room c·T/L times in the window: time needs that many more
            # oscillations per unit of the scaled box than space does
            net = eqx.tree_at(
                lambda n: n.frequencies, net, net.frequencies.at[:, -1].multiply(time_factor)
            )
        if source_features == "images":
            # the same trunk MLP with more inputs: DeepONet's own, built for them
            n_images = sum(map(len, image_orbits(d, image_order)))
            n_in = net.trunk.in_size + 3 * n_images + d
            wider = DeepONet(d, n_in, n_out=1, key=jax.random.fold_in(key, 1),
                             **dict(options, fourier_features=0))  # fmt: skip
            net = eqx.tree_at(lambda n: n.trunk, net, wider.trunk)
        self.deeponet = net
        self.lower, self.upper, self.p_scale = lower, upper, float(p_scale)
        self.time_factor = float(time_factor)
        self.source_features = source_features
        self.sound_speed, self.pulse_width = float(sound_speed), float(pulse_width)
        self.image_order = image_order
        self.options = tuple(sorted(options.items()))

    @property
    def ndim(self) -> int:
        return len(self.lower) - 1

    def _check(self, x0: Array, points: Array) -> None:
        d = self.ndim
        if x0.shape[-1:] != (d,) or points.ndim != 2 or points.shape[1] != d + 1:
            raise ValueError(
                f"expected x0 of shape ({d},) and points of shape (n, {d + 1}) holding "
                f"(x, y{', z' if d == 3 else ''}, t); got {x0.shape} and {points.shape}"
            )

    def source_relative(
        self, x0: Float[Array, " d"], point: Float[Array, " dp1"]
    ) -> Float[Array, " n_features"]:
        """The trunk's source-relative features at one point (x, t) for a source x0 (in
        metres and seconds): r_i/D for the images of `image_sources` (the distances of
        each orbit of `image_orbits` sorted, nearest first), then tanh(ρ_i/3), then
        exp(−ρ_i²) with ρ_i = (r_i − c t)/σ, then |x − x0|/L per axis."""
        d = self.ndim
        lo, hi = self.lower[:d], self.upper[:d]
        x, t = point[:d], point[d]
        sides = jnp.asarray(hi, x.dtype) - jnp.asarray(lo, x.dtype)
        diagonal = float(math.sqrt(sum((b - a) ** 2 for a, b in zip(lo, hi, strict=True))))
        images = image_sources(x0, lo, hi, self.image_order)
        # axis by axis: under vmap a (points, images, d) array with d last is slow on the CPU
        r = jnp.sqrt(sum(jnp.square(x[a] - images[:, a]) for a in range(d)))
        # sorting within an orbit of the mirror group makes the features invariant under
        # the box's mirrors applied to x and x0 together (they permute each orbit)
        parts, start = [], 0
        for orbit in image_orbits(d, self.image_order):
            k = len(orbit)
            parts.append(_sorted_small(r[start : start + k]))
            start += k
        r = jnp.concatenate(parts)
        rho = (r - self.sound_speed * t) / self.pulse_width
        feats = [r / diagonal, jnp.tanh(rho / 3.0), jnp.exp(-jnp.square(rho))]
        return jnp.concatenate([*feats, jnp.abs(x - x0) / sides])

    def _trunk(self, x0: Array, point: Array) -> Float[Array, " p"]:
        """Trunk basis at one point for the source x0 (unscaled, in metres/seconds)."""
        net, d = self.deeponet, self.ndim
        if self.source_features == "none":
            return net._trunk(scaled(point, self.lower, self.upper))[0]
        # folded coordinates |x − centre| on [−1, 1], and t on [−1, 1]: mirror invariant
        lo, hi = jnp.asarray(self.lower, point.dtype), jnp.asarray(self.upper, point.dtype)
        centre = 0.5 * (lo[:d] + hi[:d])
        folded = 4.0 * jnp.abs(point[:d] - centre) / (hi[:d] - lo[:d]) - 1.0
        z = jnp.concatenate([folded, scaled(point[d:], self.lower[d:], self.upper[d:])])
        if net.frequencies is not None:
            z = fourier_features(jax.lax.stop_gradient(net.frequencies), z)
        z = jnp.concatenate([z, self.source_relative(x0, point)])
        return net.trunk(z)

    def _branch(self, x0: Array) -> Float[Array, " p"]:
        d = self.ndim
        return self.deeponet._branch(scaled(x0, self.lower[:d], self.upper[:d]))[0]

    def __call__(
        self, x0: Float[Array, " d"], points: Float[Array, " n dp1"]
    ) -> Float[Array, " n"]:
        self._check(x0, points)
        if self.source_features == "none":  # the trunk once for all sources
            u = scaled(x0, self.lower[: self.ndim], self.upper[: self.ndim])
            return self.p_scale * self.deeponet(u, scaled(points, self.lower, self.upper))[0]
        t = jax.vmap(self._trunk, in_axes=(None, 0))(x0, points)
        return self.p_scale * (t @ self._branch(x0) + self.deeponet.bias[0])

    def evaluate(self, x0: Float[Array, " d"], point: Float[Array, " dp1"]) -> Float[Array, ""]:
        """The pressure (Pa) at one point (x, t) for one source."""
        value = jnp.dot(self._branch(x0), self._trunk(x0, point)) + self.deeponet.bias[0]
        return self.p_scale * value

    def pointwise(
        self, x0: Float[Array, " d"] | Float[Array, " n d"], points: Float[Array, " n dp1"]
    ) -> Float[Array, " n"]:
        """The same values point by point; `x0` may hold one source per point."""
        self._check(x0, points)
        if x0.ndim == 2 and x0.shape[0] != points.shape[0]:
            raise ValueError(f"one source per point needs x0 of shape ({points.shape[0]}, "
                             f"{self.ndim}), got {x0.shape}")  # fmt: skip
        return jax.vmap(self.evaluate, in_axes=(0 if x0.ndim == 2 else None, 0))(x0, points)


def train_surrogate(
    problem: RoomAcoustics,
    x0: Float[Array, " n_sources d"],
    fields: Float[Array, " n_sources time *grid"],
    *,
    key: PRNGKeyArray,
    epochs: int = 100,
    batch_points: int = 2048,
    learning_rate: float = 2e-3,
    source_features: str = "none",
    progress: bool = False,
    **options,
) -> tuple[SourceDeepONet, dict]:
    """Fit a `SourceDeepONet` to the pressure `fields` of sources `x0` with `training.fit`.

    With `source_features="none"` a training sample is one space-time point of the stored
    grid with the pressure of every training source there; a minibatch of `batch_points`
    random points evaluates the trunk once and every source's branch once (the Cartesian
    layout, Lu et al. 2021 §3). With `"images"` the trunk depends on the source, so a
    sample is one (source, point) pair and a minibatch holds `batch_points` random pairs:
    the trunk is evaluated once per pair and the branch once per training source, and an
    epoch passes over every pair once. The loss is the mean squared error in units of the
    data's RMS pressure. Adam with a cosine decay of the learning rate over all steps
    (and, for the pairs, gradients clipped to a global norm of 1).
    """
    from ...training import fit

    x0, fields = jnp.asarray(x0, jnp.float32), jnp.asarray(fields, jnp.float32)
    if x0.ndim != 2 or x0.shape[1] != problem.ndim or fields.shape[0] != x0.shape[0]:
        raise ValueError(
            f"expected x0 (n_sources, {problem.ndim}) and fields (n_sources, time, *grid) "
            f"with the same n_sources, got {x0.shape} and {fields.shape}"
        )
    scale = rms(fields)
    k_model, k_fit = jax.random.split(key)
    lower, upper = problem.bounds()
    factor = problem.c * problem.duration / max(problem.extent)
    if source_features != "none":
        options.update(sound_speed=problem.c, pulse_width=problem.sigma)
    model = SourceDeepONet(lower, upper, p_scale=scale, time_factor=factor,
                           source_features=source_features, key=k_model, **options)  # fmt: skip
    points = problem.space_time_points()
    p = jax.vmap(problem.to_points)(fields)  # (source, point)
    if source_features == "none":
        train = {"points": points, "p": p.T}

        def loss(m: SourceDeepONet, batch) -> Array:
            pred = jax.vmap(m, in_axes=(0, None))(x0, batch["points"])  # (source, point)
            return jnp.mean(jnp.square(pred - batch["p"].T)) / scale**2

    else:
        n_points = points.shape[0]
        train = {"pair": jnp.arange(p.size, dtype=jnp.int32), "p": p.reshape(-1)}

        def loss(m: SourceDeepONet, batch) -> Array:
            b = jax.vmap(m._branch)(x0)  # every source's coefficients, cheap
            source, point = batch["pair"] // n_points, batch["pair"] % n_points
            t = jax.vmap(m._trunk)(x0[source], points[point])
            pred = m.p_scale * (jnp.sum(b[source] * t, -1) + m.deeponet.bias[0])
            return jnp.mean(jnp.square(pred - batch["p"])) / scale**2

    n = train["p"].shape[0]
    n_steps = max(1, epochs * (n // min(batch_points, n)))
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, n_steps, alpha=0.02))
    if source_features != "none":
        # without clipping the 3-D benchmark's loss jumped fivefold at lr 3e-3 in epoch 4
        optimizer = optax.chain(optax.clip_by_global_norm(1.0), optimizer)
    return fit(model, loss, train, optimizer=optimizer, epochs=epochs,
               batch_size=batch_points, key=k_fit, progress=progress)  # fmt: skip
