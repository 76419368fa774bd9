"""State-space sequence models: S4D/DSS (diagonal), S5 (MIMO diagonal), S4 (DPLR), Hydra
(bidirectional selective, quasiseparable); initialisations, kernels, layers, stacks.

Sequences are unbatched `(length, channels)` arrays, time first; batch with `jax.vmap`.
"""

from ._blocks import LAYERS as LAYERS
from ._blocks import SSMBlock as SSMBlock
from ._blocks import SSMStack as SSMStack
from ._discretize import DiscreteSSM as DiscreteSSM
from ._discretize import discretize as discretize
from ._hydra import Hydra as Hydra
from ._hydra import HydraSteps as HydraSteps
from ._init import DiagonalInit as DiagonalInit
from ._init import dss_exp as dss_exp
from ._init import dss_softmax as dss_softmax
from ._init import hippo_legs as hippo_legs
from ._init import legs_nplr as legs_nplr
from ._init import s4d_inv as s4d_inv
from ._init import s4d_legs as s4d_legs
from ._init import s4d_lin as s4d_lin
from ._kernels import causal_conv as causal_conv
from ._kernels import ssm_assoc as ssm_assoc
from ._kernels import ssm_fft as ssm_fft
from ._kernels import ssm_kernel as ssm_kernel
from ._kernels import ssm_scan as ssm_scan
from ._kernels import ssm_step as ssm_step
from ._layer import BidirectionalSSM as BidirectionalSSM
from ._layer import DiagonalSSM as DiagonalSSM
from ._layer import select_kernel as select_kernel
from ._s4 import S4 as S4
from ._s4 import dplr_kernel as dplr_kernel
from ._s5 import S5 as S5
from ._s5 import select_s5_kernel as select_s5_kernel
