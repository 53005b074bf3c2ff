"""Connected components block by block, merged into labels equal to labelling the whole image.

Each block is labelled on its own (provisional ids: the block's number in
the high 32 bits, the local label in the low 32), the ids that touch across
a shared face or corner are merged (connected components of the touch graph,
scipy.sparse.csgraph: vectorised, millions of objects in seconds), and a
table maps provisional ids to final ids 1..N in raster order of their first
pixel, which is also the order skimage.measure.label numbers them in.  No
halo is needed: two blocks only meet on their borders.

Pure numpy/scipy; the block reads and writes (and their distribution) belong
to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.errors import ConfigError

LOCAL_BITS = 32
# Ids with the top bit set are global already (the same in every block that sees the object,
# e.g. a watershed region named by its first pixel): they are never merged with neighbours.
GLOBAL_BIT = np.uint64(1 << 63)


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of `block` pixels tiling a (height, width) plane, numbered row-major."""

    shape: tuple[int, int]
    block: tuple[int, int]

    def __post_init__(self) -> None:
        if min(self.block) < 1 or min(self.shape) < 1:
            raise ConfigError(f"block {self.block} and shape {self.shape} must be positive")

    @property
    def counts(self) -> tuple[int, int]:
        return -(-self.shape[0] // self.block[0]), -(-self.shape[1] // self.block[1])

    def slices(self, row: int, col: int) -> tuple[slice, slice]:
        (h, w), (bh, bw) = self.shape, self.block
        return slice(row * bh, min((row + 1) * bh, h)), slice(col * bw, min((col + 1) * bw, w))

    def blocks(self) -> Iterator[tuple[int, int, int]]:
        """(number, row, col) of every block."""
        rows, cols = self.counts
        for r in range(rows):
            for c in range(cols):
                yield r * cols + c, r, c


def structure(connectivity: int) -> np.ndarray:
    if connectivity not in (4, 8):
        raise ConfigError(f"connectivity {connectivity}: expected 4 or 8")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def label_block(mask: np.ndarray, number: int, connectivity: int) -> np.ndarray:
    """Provisional uint64 ids of one block's foreground (0 stays background)."""
    local, count = ndimage.label(mask > 0, structure=structure(connectivity))
    if count >= 1 << LOCAL_BITS:
        raise ConfigError(f"block {number}: {count} objects, more than one block can number")
    ids = local.astype(np.uint64)
    ids[local > 0] += np.uint64(number) << np.uint64(LOCAL_BITS)
    return ids


def touching_pairs(a: np.ndarray, b: np.ndarray, connectivity: int) -> np.ndarray:
    """(n, 2) id pairs that touch between two facing edges of equal length (a[i] faces b[i]).

    4-connectivity joins facing pixels; 8-connectivity also the diagonal ones.
    """
    shifts = (0,) if connectivity == 4 else (-1, 0, 1)
    pairs = []
    for s in shifts:
        x = a[max(0, -s) : len(a) - max(0, s)]
        y = b[max(0, s) : len(b) - max(0, -s)]
        both = (x > 0) & (y > 0)
        pairs.append(np.stack([x[both], y[both]], axis=1))
    return np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.uint64)


def corner_pair(a: np.uint64, b: np.uint64) -> np.ndarray:
    return np.array([[a, b]], np.uint64) if a and b else np.zeros((0, 2), np.uint64)


@dataclass(frozen=True)
class BlockEdges:
    """The provisional ids on a block's four borders: all that its neighbours need to merge with it."""

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def of(cls, ids: np.ndarray) -> BlockEdges:
        return cls(ids[0].copy(), ids[-1].copy(), ids[:, 0].copy(), ids[:, -1].copy())


def block_pairs(grid: BlockGrid, edges: Mapping[int, BlockEdges], connectivity: int) -> np.ndarray:
    """Provisional ids that touch across shared faces (and corners, for 8-connectivity).

    Global ids (GLOBAL_BIT set) are the same in every block and never merge.
    """
    rows, cols = grid.counts
    found = [np.zeros((0, 2), np.uint64)]
    for number, r, c in grid.blocks():
        here = edges[number]
        if c + 1 < cols:
            found.append(touching_pairs(here.right, edges[number + 1].left, connectivity))
        if r + 1 < rows:
            found.append(touching_pairs(here.bottom, edges[number + cols].top, connectivity))
        if connectivity == 8 and r + 1 < rows:
            if c + 1 < cols:
                found.append(corner_pair(here.bottom[-1], edges[number + cols + 1].top[0]))
            if c > 0:
                found.append(corner_pair(here.bottom[0], edges[number + cols - 1].top[-1]))
    pairs = np.concatenate(found)
    return pairs[((pairs & GLOBAL_BIT) == 0).all(axis=1)]


@dataclass(frozen=True)
class MergeTable:
    """Provisional ids (sorted) and the final id of each."""

    ids: np.ndarray
    final: np.ndarray

    def lookup(self, provisional: np.ndarray) -> np.ndarray:
        """Final ids of an array of provisional ids (0 stays 0)."""
        out = np.zeros(provisional.shape, np.uint32)
        known = provisional > 0
        out[known] = self.final[np.searchsorted(self.ids, provisional[known])]
        return out

    @property
    def objects(self) -> int:
        return int(self.final.max()) if len(self.final) else 0


def merge_table(ids_in_raster_order: np.ndarray, pairs: np.ndarray) -> MergeTable:
    """Merge provisional ids through `pairs`; number the objects 1..N by their first pixel."""
    ids = np.sort(ids_in_raster_order)
    if not len(ids):
        return MergeTable(ids, np.zeros(0, np.uint32))
    rows, cols = np.searchsorted(ids, pairs[:, 0]), np.searchsorted(ids, pairs[:, 1])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    # Number components by the raster position of their first pixel, as skimage does.
    order = component[np.searchsorted(ids, ids_in_raster_order)]
    _, first = np.unique(order, return_index=True)
    number = np.empty(component.max() + 1, np.uint32)
    number[order[np.sort(first)]] = np.arange(1, len(first) + 1, dtype=np.uint32)
    return MergeTable(ids, number[component])


def raster_order(ids: np.ndarray, first_positions: np.ndarray) -> np.ndarray:
    """Each id once, ordered by its earliest first-pixel position (an id may come from several blocks)."""
    ids = ids[np.argsort(first_positions, kind="stable")]
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)]
