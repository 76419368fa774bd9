"""The README's Python example: Burgers data -> FNO -> test error, in about a minute."""

import jax
import optax

import surrogate
from surrogate.data import NormalizedModel, Normalizer
from surrogate.operators import FNO
from surrogate.problems import generate
from surrogate.training import fit, relative_l2

problem = surrogate.problems.get("burgers", resolution=128, viscosity=0.1)
ds = generate(problem, 240, seed=0)  # xarray Dataset, CF attributes
data = problem.from_dataset(ds)
x, y = problem.model_input(data), problem.model_target(data)  # (sample, channel, x)

xn, yn = Normalizer.fit(x[:200]), Normalizer.fit(y[:200])
net = FNO(1, 1, modes=12, width=32, n_layers=4, key=jax.random.key(0))


def loss(model, batch):
    pred = jax.vmap(lambda a: yn.decode(model(a)))(batch["x"])
    return relative_l2(pred, batch["y"])


train = {"x": jax.vmap(xn.encode)(x[:200]), "y": y[:200]}
net, history = fit(
    net,
    loss,
    train,
    optimizer=optax.adam(3e-3),
    epochs=40,
    batch_size=10,
    key=jax.random.key(1),
    progress=False,
)
model = NormalizedModel(net, xn, yn)  # physical units in and out
surrogate.save("quickstart.eqx", model)

pred = jax.vmap(surrogate.load("quickstart.eqx"))(x[200:])
print(problem.metrics(pred, y[200:]))  # relative_l2, rmse, max_error
