"""Block-wise connected components: cost of labelling, merging and relabelling many objects.

    python -m benchmarks.instances --size 4000 --block 512

The mask holds a grid of 2x2 squares every 4 px (size**2 / 16 objects: a
million at 4000 px) plus long bars that cross every block, so both the
number of ids and the number of cross-block merges are large.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import emit
from pipeline.instances.merge import BlockGrid, label_block
from pipeline.instances.objects import BlockSummary, merge_plane, summarise_block


def synthetic_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            mask[dy::4, dx::4] = 1
    mask[::64, :] = 1  # bars across every block: merges
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--connectivity", type=int, default=8, choices=[4, 8])
    args = parser.parse_args()
    mask = synthetic_mask(args.size)
    grid = BlockGrid(mask.shape, (args.block, args.block))
    t0 = time.perf_counter()
    labels = {n: label_block(mask[grid.slices(r, c)], n, args.connectivity) for n, r, c in grid.blocks()}
    t1 = time.perf_counter()
    # What workers send the driver: edges and per-id sums, as bytes (the pipeline's path).
    summaries = {}
    for n, r, c in grid.blocks():
        rows, cols = grid.slices(r, c)
        summaries[n] = summarise_block(labels[n], (rows.start, cols.start), args.size).to_bytes()
    t_summary = time.perf_counter()
    received = {n: BlockSummary.from_bytes(b) for n, b in summaries.items()}
    objects = merge_plane(grid, received, args.connectivity)
    table = objects.table
    t2 = time.perf_counter()
    for n, _, _ in grid.blocks():
        table.lookup(labels[n])
    t3 = time.perf_counter()
    from skimage.measure import label

    whole = label(mask, connectivity=1 if args.connectivity == 4 else 2)
    t4 = time.perf_counter()
    emit(
        "instances",
        {
            "size": args.size,
            "block": args.block,
            "blocks": len(labels),
            "provisional_ids": len(table.ids),
            "summaries_mb": round(sum(len(b) for b in summaries.values()) / 1e6, 1),
            "objects": table.objects,
            "objects_equal_skimage": table.objects == int(whole.max()),
            "label_blocks_seconds": round(t1 - t0, 2),
            "summarise_blocks_seconds": round(t_summary - t1, 2),
            "merge_seconds": round(t2 - t_summary, 2),
            "relabel_seconds": round(t3 - t2, 2),
            "skimage_whole_image_seconds": round(t4 - t3, 2),
            "merge_table_mb": round((table.ids.nbytes + table.final.nbytes) / 1e6, 1),
            "saved_plane_objects_mb": round(len(objects.to_bytes()) / 1e6, 1),
        },
    )


if __name__ == "__main__":
    main()
