"""Losses and the training loop."""

from ._fit import TrainingDiverged as TrainingDiverged
from ._fit import checkpoint_epoch as checkpoint_epoch
from ._fit import fit as fit
from ._losses import h1_norm as h1_norm
from ._losses import mse as mse
from ._losses import relative_h1 as relative_h1
from ._losses import relative_h1_per_sample as relative_h1_per_sample
from ._losses import relative_l2 as relative_l2
from ._losses import relative_l2_per_sample as relative_l2_per_sample
from ._losses import relative_lp as relative_lp
from ._losses import relative_lp_per_sample as relative_lp_per_sample
from ._run import build_model as build_model
from ._run import train_from_config as train_from_config
