"""surrogate: surrogate models of physical systems in JAX.

Define a problem (or bring your own netCDF data), generate reference data, train a neural
operator / neural ODE / state-space model on it, evaluate it, and put it back into a
simulator.
"""

from . import data as data
from . import fields as fields
from . import metrics as metrics
from . import operators as operators
from . import problems as problems
from . import training as training
from ._serialization import Traits as Traits
from ._serialization import load as load
from ._serialization import savable as savable
from ._serialization import save as save
from ._serialization import traits as traits
from ._train import train as train
from ._train import train_from_config as train_from_config
from ._version import __version__ as __version__
from .problems import generate as generate
