"""Laser ignition of H2/air (`surrogate.problems.Ignition`): the PNODE, a one-step global
reaction whose kinetics, heat source and mixing come from networks and which is trained
through its stiff solve, and its kernel-ridge and MLP baselines."""

from ._baselines import KernelRidge as KernelRidge
from ._baselines import TrajectoryMLP as TrajectoryMLP
from ._baselines import log_features as log_features
from ._baselines import select_kernel_ridge as select_kernel_ridge
from ._pnode import DEFAULT_RANGES as DEFAULT_RANGES
from ._pnode import PARAMETER_NAMES as PARAMETER_NAMES
from ._pnode import PNODE as PNODE
from ._pnode import composition as composition
from ._pnode import unburnt_and_burnt as unburnt_and_burnt
