"""Training configurations in TOML: every key has a default, an unknown key is an error.

```toml
[data]
path = "demo/burgers.nc"   # any netCDF file (or .zarr store), split into train/valid/test
n_train = 800
n_valid = 100              # the rest (up to n_test) is the test set
n_test = 100
# for a file that surrogate did not write (or to choose other variables):
# inputs = ["a"]           # variables stacked as input channels
# targets = ["u"]          # variables stacked as output channels
# sample_dim = "sample"    # only when the first dimension is not the sample axis
# test_path = "test.nc"    # a held-out file instead of the last part of `path`
# problem = "my_pkg.heat:Heat"  # a module:Class problem whose metrics to use

[model]
type = "fno"               # a name of `surrogate list`, or "package.module:Class"
modes = [16]
width = 64
n_layers = 4

[training]
epochs = 100
batch_size = 20
learning_rate = 1e-3
schedule = "step"          # "constant", "step" (× gamma every step_epochs) or "cosine"
step_epochs = 100
gamma = 0.5
weight_decay = 1e-4
loss = "relative_l2"       # or "mse", "h1" (relative H1)
seed = 0

[output]
dir = "runs/burgers_fno"
```
Relative paths are taken from the current directory. Every number has a range (`_RANGES`:
e.g. step_epochs >= 1, 0 < gamma <= 1, 0 <= weight_decay <= 1, seed < 2**32), and a value
outside it is refused with a message naming the key, the value and the range.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class DataConfig:
    path: str = ""
    n_train: int = 0  # 0: 80% of the file
    n_valid: int = 0  # 0: 10% of the file
    n_test: int = 0  # 0: the rest
    inputs: list = dataclasses.field(default_factory=list)
    targets: list = dataclasses.field(default_factory=list)
    sample_dim: str = ""
    test_path: str = ""
    problem: str = ""


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 20
    learning_rate: float = 1e-3
    schedule: str = "step"
    step_epochs: int = 100
    gamma: float = 0.5
    weight_decay: float = 1e-4
    loss: str = "relative_l2"
    seed: int = 0


@dataclasses.dataclass
class OutputConfig:
    dir: str = "runs/run"


@dataclasses.dataclass
class Config:
    data: DataConfig
    model: dict[str, Any]
    training: TrainingConfig
    output: OutputConfig
    source: str = ""


_SCHEDULES = ("constant", "step", "cosine")
_LOSSES = ("relative_l2", "mse", "h1")

#: the range of every numeric key, (low, high, low is open): checked with a message naming
#: the key, its value and the range. Seeds stop at 2**32 - 1 because without float64 JAX
#: keeps only the low 32 bits of a seed, so a larger one would silently repeat a smaller.
MAX_SEED = 2**32 - 1
_RANGES: dict[tuple[str, str], tuple[float, float, bool]] = {
    ("data", "n_train"): (0, 2**40, False),
    ("data", "n_valid"): (0, 2**40, False),
    ("data", "n_test"): (0, 2**40, False),
    ("training", "epochs"): (0, 10**7, False),
    ("training", "batch_size"): (1, 2**31, False),
    ("training", "learning_rate"): (0, 10.0, True),
    ("training", "step_epochs"): (1, 10**7, False),
    # a step schedule multiplies by gamma: in (0, 1] it decays (1: constant)
    ("training", "gamma"): (0, 1.0, True),
    # AdamW's decoupled decay p <- p - lr * weight_decay * p
    ("training", "weight_decay"): (0, 1.0, False),
    ("training", "seed"): (0, MAX_SEED, False),
}


def _check_range(section: str, key: str, value) -> None:
    low, high, open_low = _RANGES[section, key]
    inside = (low < value if open_low else low <= value) and value <= high
    if not inside:  # also NaN, which TOML allows
        raise ValueError(
            f"[{section}] {key} must be {'>' if open_low else '>='} {low} and <= {high}, "
            f"got {value!r}"
        )


def _section(cls, raw: dict, name: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{name}]; allowed: {sorted(fields)}")
    values = {}
    for k, v in raw.items():
        f = fields[k]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = type(default)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool) != (kind is bool):
            raise ValueError(f"[{name}] {k} should be {kind.__name__}, got {v!r}")
        if kind is list and not all(isinstance(item, str) and item for item in v):
            raise ValueError(f"[{name}] {k} should be a list of variable names, got {v!r}")
        values[k] = v
    return cls(**values)


def parse_config(raw: dict, source: str = "") -> Config:
    unknown = sorted(set(raw) - {"data", "model", "training", "output"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: data, model, training, output")
    data = _section(DataConfig, raw.get("data", {}), "data")
    training = _section(TrainingConfig, raw.get("training", {}), "training")
    output = _section(OutputConfig, raw.get("output", {}), "output")
    model = dict(raw.get("model", {}))
    if not data.path:
        raise ValueError("[data] path is required: the netCDF dataset to train on")
    if "type" not in model:
        raise ValueError('[model] type is required (e.g. type = "fno")')
    for section, key in _RANGES:
        _check_range(section, key, getattr(data if section == "data" else training, key))
    if training.schedule not in _SCHEDULES:
        raise ValueError(f"[training] schedule {training.schedule!r} unknown; use {_SCHEDULES}")
    if training.loss not in _LOSSES:
        raise ValueError(f"[training] loss {training.loss!r} unknown; use {_LOSSES}")
    if bool(data.inputs) != bool(data.targets):
        raise ValueError("[data] needs both inputs and targets, or neither")
    return Config(data, model, training, output, source)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such config file: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    return parse_config(raw, str(path))
