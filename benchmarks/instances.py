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
from pipeline.instances import BlockGrid, block_pairs, label_block, merge_table, raster_first_ids


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
    pairs = block_pairs(grid, labels, args.connectivity)
    table = merge_table(raster_first_ids(grid, labels), pairs)
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
            "cross_block_pairs": len(pairs),
            "objects": table.objects,
            "objects_equal_skimage": table.objects == int(whole.max()),
            "label_blocks_seconds": round(t1 - t0, 2),
            "merge_seconds": round(t2 - t1, 2),
            "relabel_seconds": round(t3 - t2, 2),
            "skimage_whole_image_seconds": round(t4 - t3, 2),
            "merge_table_mb": round((table.ids.nbytes + table.final.nbytes) / 1e6, 1),
        },
    )


if __name__ == "__main__":
    main()
