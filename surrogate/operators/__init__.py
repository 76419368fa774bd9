"""Neural operators: maps between fields `(channels, *grid)` -> `(channels_out, *grid)`."""

from ._multigrid import v_cycle as v_cycle
from ._pointwise import ChannelMLP as ChannelMLP
from ._pointwise import PointwiseLinear as PointwiseLinear
from ._spectral import SpectralConv as SpectralConv
from .deeponet import ConvBranch as ConvBranch
from .deeponet import DeepONet as DeepONet
from .deeponet import DeepONetOperator as DeepONetOperator
from .deeponet import resample as resample
from .fno import FNO as FNO
from .fno import grid_coordinates as grid_coordinates
from .mgno import MgConv as MgConv
from .mgno import MgNO as MgNO
from .mgno import MgNOLayer as MgNOLayer
from .pod_deeponet import PODDeepONet as PODDeepONet
from .pod_deeponet import pod_basis as pod_basis
