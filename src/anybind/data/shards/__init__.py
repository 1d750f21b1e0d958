"""WebDataset tar shards: written from any source with the original encoded bytes, streamed
back per rank and worker with a seeded, epoch-dependent shuffle and an exact mid-epoch resume."""

from anybind.data.shards.index import INDEX_NAME, ShardIndex, read_index
from anybind.data.shards.stream import ShardReader, ShardStream
from anybind.data.shards.write import write_shards

__all__ = ["INDEX_NAME", "ShardIndex", "ShardReader", "ShardStream", "read_index", "write_shards"]
