"""Losses and the training loop (fit, checkpoints, resume, NaN stop); knows no problem and
no model family. The per-sample errors are `surrogate.metrics`'; they are re-exported here
for code written against earlier versions."""

from ..metrics import h1_norm as h1_norm
from ..metrics import relative_h1_per_sample as relative_h1_per_sample
from ..metrics import relative_l2_per_sample as relative_l2_per_sample
from ..metrics import relative_lp_per_sample as relative_lp_per_sample
from ._fit import TrainingDiverged as TrainingDiverged
from ._fit import checkpoint_epoch as checkpoint_epoch
from ._fit import fit as fit
from ._losses import mse as mse
from ._losses import relative_h1 as relative_h1
from ._losses import relative_l2 as relative_l2
from ._losses import relative_lp as relative_lp
