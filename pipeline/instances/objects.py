"""Objects of one plane: per-block summaries, their merge, and the object table.

A block's provisional ids (pipeline.instances.fragments) shrink to a `BlockSummary`:
its four edges and, per id, the first pixel and running sums (area, centroid,
bounding box, probability).  `merge_plane` joins the summaries of every block
of a plane into the merge table and the per-object measurements, without ever
holding the plane's pixels: memory is O(perimeter + objects).

Pure numpy; the summaries travel between workers and the driver as bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.instances.merge import BlockEdges, BlockGrid, MergeTable, block_pairs, merge_table, raster_order

# Columns of BlockSummary.stats, one row per provisional id.
FIRST, AREA, SUM_Y, SUM_X, MIN_Y, MIN_X, MAX_Y, MAX_X, SUM_P = range(9)
OBJECT_COLUMNS = (
    "id",
    "area",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "mean_probability",
)


@dataclass(frozen=True)
class BlockSummary:
    """What the merge needs from one block: its edges, and per provisional id its first pixel and sums."""

    edges: BlockEdges
    ids: np.ndarray  # (n,) uint64, unique, no 0
    stats: np.ndarray  # (n, 9) float64, columns FIRST .. SUM_P (plane coordinates)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        e = self.edges
        np.savez(buffer, top=e.top, bottom=e.bottom, left=e.left, right=e.right, ids=self.ids, stats=self.stats)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockSummary:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            edges = BlockEdges(f["top"], f["bottom"], f["left"], f["right"])
            return cls(edges, f["ids"], f["stats"])


def summarise_block(
    ids: np.ndarray, origin: tuple[int, int], plane_width: int, probability: np.ndarray | None = None
) -> BlockSummary:
    """Summary of a block of provisional ids whose top-left pixel is `origin` in the plane."""
    flat = ids.ravel()
    values, first, inverse, area = np.unique(flat, return_index=True, return_inverse=True, return_counts=True)
    ys, xs = np.divmod(np.arange(flat.size), ids.shape[1])
    ys, xs = ys + origin[0], xs + origin[1]
    stats = np.zeros((len(values), 9))
    stats[:, FIRST] = ys[first] * plane_width + xs[first]
    stats[:, AREA] = area
    stats[:, SUM_Y] = np.bincount(inverse, ys, len(values))
    stats[:, SUM_X] = np.bincount(inverse, xs, len(values))
    stats[:, MIN_Y] = ys[first]  # raster order: an id's first pixel is on its top row
    _, last = np.unique(flat[::-1], return_index=True)
    stats[:, MAX_Y] = ys[flat.size - 1 - last]
    stats[:, MIN_X], stats[:, MAX_X] = np.inf, -np.inf
    np.minimum.at(stats[:, MIN_X], inverse, xs)
    np.maximum.at(stats[:, MAX_X], inverse, xs)
    if probability is not None:
        stats[:, SUM_P] = np.bincount(inverse, probability.ravel().astype(np.float64), len(values))
    keep = values > 0
    return BlockSummary(BlockEdges.of(ids), values[keep], stats[keep])


@dataclass(frozen=True)
class PlaneObjects:
    """The merge table of one plane and its objects' measurements (one row per final id, in id order)."""

    table: MergeTable
    columns: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return len(self.columns["id"])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, table_ids=self.table.ids, table_final=self.table.final, **self.columns)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PlaneObjects:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return cls(MergeTable(f["table_ids"], f["table_final"]), {c: f[c] for c in OBJECT_COLUMNS})


def merge_plane(
    grid: BlockGrid, summaries: Mapping[int, BlockSummary], connectivity: int, min_size: int = 0
) -> PlaneObjects:
    """Merge the summaries of every block of a plane; objects under `min_size` pixels are dropped."""
    pairs = block_pairs(grid, {n: s.edges for n, s in summaries.items()}, connectivity)
    ids = np.concatenate([s.ids for s in summaries.values()] + [np.zeros(0, np.uint64)])
    stats = np.concatenate([s.stats for s in summaries.values()] + [np.zeros((0, 9))])
    table = merge_table(raster_order(ids, stats[:, FIRST]), pairs)
    final = table.lookup(ids).astype(np.int64)
    n = table.objects + 1  # index 0: background, unused

    def total(column: int) -> np.ndarray:
        return np.bincount(final, stats[:, column], n)

    def extreme(column: int, ufunc: np.ufunc, start: float) -> np.ndarray:
        out = np.full(n, start)
        ufunc.at(out, final, stats[:, column])
        return out

    area = total(AREA)
    kept = area >= max(min_size, 1)
    kept[0] = False
    renumber = np.zeros(n, np.uint32)
    renumber[kept] = np.arange(1, kept.sum() + 1, dtype=np.uint32)
    table = MergeTable(table.ids, renumber[table.final])
    a = area[kept]
    columns = {
        "id": renumber[kept].astype(np.uint64),
        "area": a.astype(np.int64),
        "centroid_y": total(SUM_Y)[kept] / a,
        "centroid_x": total(SUM_X)[kept] / a,
        "bbox_y0": extreme(MIN_Y, np.minimum, np.inf)[kept].astype(np.int64),
        "bbox_x0": extreme(MIN_X, np.minimum, np.inf)[kept].astype(np.int64),
        "bbox_y1": extreme(MAX_Y, np.maximum, -np.inf)[kept].astype(np.int64) + 1,
        "bbox_x1": extreme(MAX_X, np.maximum, -np.inf)[kept].astype(np.int64) + 1,
        "mean_probability": total(SUM_P)[kept] / a,
    }
    return PlaneObjects(table, columns)


# An image's objects: (plane coordinates, id offset, the plane's objects) for each plane.
ImageObjects = list[tuple[dict[str, int], int, PlaneObjects]]


# Objects listed in an image's image-label (NGFF), each with its colour and measurements: about 130
# bytes of JSON an object, so 1.3 MB at most in the attributes every viewer reads; past it, the
# object table (objects_csv) alone lists them.
LISTED_OBJECTS = 10_000


def label_properties(planes: ImageObjects) -> list[dict[str, Any]]:
    """The image-label `properties` of an image's objects, background first; [] past LISTED_OBJECTS."""
    if sum(objects.count for _, _, objects in planes) > LISTED_OBJECTS:
        return []
    listed: list[dict[str, Any]] = [{"label-value": 0}]
    for coords, offset, objects in planes:
        c = objects.columns
        for i in range(objects.count):
            listed.append(
                {
                    "label-value": int(c["id"][i]) + offset,
                    **coords,
                    "area": int(c["area"][i]),
                    "centroid_y": round(float(c["centroid_y"][i]), 2),
                    "centroid_x": round(float(c["centroid_x"][i]), 2),
                    "mean_probability": round(float(c["mean_probability"][i]), 4),
                }
            )
    return listed


def objects_csv(planes: ImageObjects) -> str:
    """The object table of an image as CSV: (plane coordinates, id offset, objects) per plane."""
    lines = [",".join(("t", "z", *OBJECT_COLUMNS))]
    for coords, offset, objects in planes:
        c = objects.columns
        prefix = f"{coords.get('t', 0)},{coords.get('z', 0)}"
        for i in range(objects.count):
            lines.append(
                f"{prefix},{int(c['id'][i]) + offset},{c['area'][i]},{c['centroid_y'][i]:.2f},"
                f"{c['centroid_x'][i]:.2f},{c['bbox_y0'][i]},{c['bbox_x0'][i]},{c['bbox_y1'][i]},"
                f"{c['bbox_x1'][i]},{c['mean_probability'][i]:.4f}"
            )
    return "\n".join(lines) + "\n"
