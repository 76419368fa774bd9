"""Datasets on disk (CF netCDF, Zarr), input/target pairs of any dataset, normalizers and
batching. Knows no problem: generation and the problem <-> dataset layout are
`surrogate.problems`'."""

from ._netcdf import SAMPLE as SAMPLE
from ._netcdf import read_dataset as read_dataset
from ._netcdf import write_dataset as write_dataset
from ._normalize import NormalizedModel as NormalizedModel
from ._normalize import Normalizer as Normalizer
from ._normalize import minibatches as minibatches
from ._pairs import Layout as Layout
from ._pairs import Pairs as Pairs
from ._pairs import pairs as pairs
