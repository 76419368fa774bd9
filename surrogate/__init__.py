"""surrogate: surrogate models of physical systems in JAX.

Define a problem, generate reference data, train a neural operator / neural ODE /
state-space model on it, evaluate it, and put it back into a simulator.
"""

from . import data as data
from . import fields as fields
from . import operators as operators
from . import problems as problems
from . import training as training
from ._serialization import load as load
from ._serialization import save as save
from ._version import __version__ as __version__
