"""Neural operators: maps between fields `(channels, *grid)` -> `(channels_out, *grid)`."""

from ._pointwise import ChannelMLP as ChannelMLP
from ._pointwise import PointwiseLinear as PointwiseLinear
from ._spectral import SpectralConv as SpectralConv
from .fno import FNO as FNO
from .fno import grid_coordinates as grid_coordinates
