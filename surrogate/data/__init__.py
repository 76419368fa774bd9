"""Datasets on disk (CF netCDF), normalizers and batching."""

from ._generate import generate as generate
from ._netcdf import problem_from_dataset as problem_from_dataset
from ._netcdf import problem_of_dataset as problem_of_dataset
from ._netcdf import problem_to_dataset as problem_to_dataset
from ._netcdf import read_dataset as read_dataset
from ._netcdf import write_dataset as write_dataset
from ._normalize import NormalizedModel as NormalizedModel
from ._normalize import Normalizer as Normalizer
from ._normalize import minibatches as minibatches
