"""Export a trained model for a host that is not Python: a `jax.export` artifact for one
input shape, and a small C ABI (`capi/surrogate.h`) that a Fortran or C model links."""

from ._export import build_c_library as build_c_library
from ._export import export_model as export_model
from ._export import load_export as load_export
