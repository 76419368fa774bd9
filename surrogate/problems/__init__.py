"""Problems: a sampler, a reference solver, a dataset layout and the field's metrics.

`Problem` is the abstract base a user's own problem subclasses; `get(name, **options)`
finds a built-in, plugin or `module:Class` problem; `generate` runs its solver into a CF
`xr.Dataset`.
"""

from ._base import Coordinate as Coordinate
from ._base import Problem as Problem
from ._base import Variable as Variable
from ._base import check_option as check_option
from ._dataset import problem_from_dataset as problem_from_dataset
from ._dataset import problem_of_dataset as problem_of_dataset
from ._dataset import problem_to_dataset as problem_to_dataset
from ._generate import generate as generate
from ._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._registry import available as available
from ._registry import get as get
from ._registry import option_types as option_types
from ._registry import problem_class as problem_class
