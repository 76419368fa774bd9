"""Laser ignition with your own Cantera-format mechanism: reference cases -> PNODE, ~2 min.

1. Write (here: copy and edit) a Cantera YAML mechanism file. Any ideal-gas phase works for
   the reactor; the ignition problem and the PNODE need the species H2, O2, N2, H2O and OH.
2. Point `Ignition(mechanism=path)` at it; solve one case and a small dataset.
3. Train a small PNODE (its thermodynamics read from the same file) through the stiff solve
   and compare its temperature histories with the reference and with the untrained prior.

Run: python examples/ignition_own_mechanism.py
"""

import importlib.resources
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from surrogate.applications.ignition import PNODE
from surrogate.problems import generate
from surrogate.problems.ignition import Ignition
from surrogate.solvers._mechanism import Mechanism
from surrogate.training import fit

jax.config.update("jax_enable_x64", True)  # stiff chemistry is integrated in float64

# 1. "Your" mechanism: the packaged GRI-Mech 3.0 H2/O2 subset with the main chain-branching
# step H + O2 <=> O + OH made 1.5 times faster. Replace `path` by your own file.
packaged = importlib.resources.files("surrogate.solvers") / "mechanisms" / "h2o2.yaml"
text = packaged.read_text().replace(
    "rate-constant: {A: 2.65e+16, b: -0.6707", "rate-constant: {A: 3.975e+16, b: -0.6707"
)
path = Path(tempfile.mkdtemp()) / "my_h2o2.yaml"
path.write_text(text)
mech = Mechanism.from_yaml(path)
print(f"{path.name}: {mech.n_species} species, {mech.n_reactions} reactions")

# 2. The problem on this mechanism (81 saved times over 2 ms), one reference case, a dataset.
problem = Ignition(mechanism=str(path), n_times=81)
case = {
    "laser_energy": 1.2e6, "pulse_time": 3e-4, "pulse_width": 2e-5, "equivalence_ratio": 1.0,
    "T0": 400.0, "p0": 101325.0, "mixing_rate": 1000.0,
}  # fmt: skip
out = jax.jit(problem.solve)({k: jnp.asarray(v) for k, v in case.items()})
print(
    f"reference case: max T {float(out['T'].max()):.0f} K, ignited {bool(out['ignited'])}, "
    f"ignition delay {1e6 * float(out['ignition_delay']):.0f} us"
)

ds = generate(problem, 32, seed=0)
data = problem.from_dataset(ds)
x = jnp.asarray(problem.model_input(data))  # (sample, 7) physical parameters
T = jnp.asarray(data["T"])  # (sample, time) K
x_train, T_train, x_test, T_test = x[:24], T[:24], x[24:], T[24:]
print(f"dataset: {int(data['ignited'].sum())} of {x.shape[0]} cases ignite")

# 3. PNODE: its networks give ln A, Ea/R, the pulse and the mixing rate of a one-step model.
model = PNODE(times=problem.times(), mechanism=str(path), width=16, key=jax.random.key(0))
prior = model  # the untrained PNODE is the physical prior


def loss(m, batch):
    pred = jax.vmap(m)(batch["x"])[:, 0]
    return jnp.mean(((pred - batch["T"]) / 1000.0) ** 2)


model, history = fit(
    model,
    loss,
    {"x": x_train, "T": T_train},
    optimizer=optax.adam(3e-3),
    epochs=6,
    batch_size=8,
    key=jax.random.key(1),
    progress=False,
)
print("training loss per epoch:", np.round(history["train_loss"], 5))

predict = eqx.filter_jit(lambda m, a: jax.vmap(m)(a)[:, 0])
for name, m in (("prior", prior), ("trained", model)):
    metrics = problem.metrics(predict(m, x_test), T_test)
    print(
        f"{name:>8}: T MAE {metrics['mae_T']:.0f} K, ignition accuracy "
        f"{metrics['ignition_accuracy']:.2f}, delay error {1e6 * metrics['delay_mae']:.0f} us"
    )
print("learned one-step parameters of the first test case:")
print({k: f"{float(v):.4g}" for k, v in model.physical_parameters(x_test[0]).items()})
