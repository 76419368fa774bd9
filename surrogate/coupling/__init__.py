"""Coupling learned closures back into simulators: the `Parameterization` contract and
online rollouts that report when a coupled run went unstable. Export for C/Fortran hosts
is `surrogate.export`."""

from ._parameterization import AbstractParameterization as AbstractParameterization
from ._parameterization import Parameterization as Parameterization
from ._parameterization import ZeroParameterization as ZeroParameterization
from ._parameterization import check_tendencies as check_tendencies
from ._rollout import RolloutResult as RolloutResult
from ._rollout import ensemble_rollout as ensemble_rollout
from ._rollout import rollout as rollout
