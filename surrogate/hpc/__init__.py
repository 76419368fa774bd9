"""Clusters: sharded dataset generation, Dask task runs, data-parallel training with
`jax.distributed`."""

from ._dask import dask_client as dask_client
from ._dask import generate_sharded as generate_sharded
from ._dask import require_distributed as require_distributed
from ._distributed import data_mesh as data_mesh
from ._distributed import fit_distributed as fit_distributed
from ._distributed import initialize_distributed as initialize_distributed
from ._shards import generate_shard as generate_shard
from ._shards import merge_shards as merge_shards
from ._shards import parse_shard as parse_shard
from ._shards import shard_indices as shard_indices
from ._shards import shard_path as shard_path
from ._shards import shard_status as shard_status
