"""Neural ordinary and stochastic differential equations and hybrid physics + network models,
on diffrax; their trajectory and ensemble losses; continuous-discrete state-space models of
irregularly sampled, gappy series."""

from ._cdssm import LinearCDSSM as LinearCDSSM
from ._cdssm import NeuralCDSSM as NeuralCDSSM
from ._hybrid import ConditionedParameters as ConditionedParameters
from ._hybrid import HybridField as HybridField
from ._hybrid import PhysicalParameters as PhysicalParameters
from ._losses import energy_distance as energy_distance
from ._losses import energy_score as energy_score
from ._losses import gaussian_mmd as gaussian_mmd
from ._losses import moment_loss as moment_loss
from ._losses import sliding_windows as sliding_windows
from ._losses import time_windows as time_windows
from ._losses import trajectory_loss as trajectory_loss
from ._ode import MLPField as MLPField
from ._ode import NeuralODE as NeuralODE
from ._sde import NeuralSDE as NeuralSDE
