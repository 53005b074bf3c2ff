"""Decoded input blocks kept in a worker between units: neighbouring windows share their chunks.

A unit's window (its 512 px block and the net's context on each side) spans
3 x 3 chunks of 512 px, and each chunk is read by the 9 units around it; zarr
and tifffile decode a chunk again on every read (a 736 px window cost 3.3 ms to
read, one chunk 0.6 ms).  Units come in raster order, so keeping the last three
rows of blocks of the plane being read (and the next row's, as it fills) decodes
each chunk once for all its units.
zarr's own cache (CacheStore) keeps encoded bytes, not decoded ones, and is
experimental.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

# A block is whole chunks of the source, at least this long a side: a TIFF's strips of
# one row would otherwise cost a read a row.
MIN_BLOCK_EDGE = 256
# A worker keeps ROWS_KEPT rows of blocks of the plane it reads, but never more than this;
# a plane too wide for it is read without the cache.
MAX_BYTES = 256 << 20
# A window's three rows of blocks (the one above its own, its own, the one below) stay
# in use for a whole row of units; the blocks of the row after them come in meanwhile.
ROWS_KEPT = 4


def block_edge(chunk: int | None, length: int) -> int:
    """Length of a block along an axis of `length` px: whole chunks, at least MIN_BLOCK_EDGE, at most the axis.

    An unchunked source (`chunk` None) is read whole.
    """
    if chunk is None:
        return length
    return min(length, chunk * -(-MIN_BLOCK_EDGE // chunk))


def source_chunks(array: Any) -> tuple[int, ...] | None:
    """The chunk shape of a regularly chunked source (zarr, a TIFF through zarr), else None."""
    try:
        chunks = getattr(array, "chunks", None)
    except NotImplementedError:  # zarr's irregular chunk grids
        return None
    if not isinstance(chunks, tuple) or not all(isinstance(c, int) for c in chunks):
        return None
    return chunks


def overlapping(start: int, stop: int, edge: int) -> range:
    """Indices of the blocks of length `edge` that overlap [start, stop)."""
    return range(start // edge, -(-stop // edge))


def bytes_to_keep(block_rows: int, width: int, pixel_bytes: int) -> int:
    """What ROWS_KEPT rows of blocks of a plane `width` px wide hold."""
    return ROWS_KEPT * block_rows * width * pixel_bytes


class BlockCache:
    """The most recently used blocks, evicted oldest first beyond the bytes the caller keeps."""

    def __init__(self) -> None:
        self.blocks: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], np.ndarray], keep_bytes: int) -> np.ndarray:
        """The block under `key`, from `load()` on a miss; then no more than `keep_bytes` stay."""
        with self.lock:
            block = self.blocks.get(key)
            if block is not None:
                self.blocks.move_to_end(key)
                return block
        block = load()
        with self.lock:
            if key not in self.blocks:
                self.blocks[key] = block
                self.nbytes += block.nbytes
            while self.nbytes > keep_bytes and len(self.blocks) > 1:
                _, evicted = self.blocks.popitem(last=False)
                self.nbytes -= evicted.nbytes
        return block


CACHE = BlockCache()  # one per worker process
