"""One block's provisional object ids, from the object probability of a window around it.

Two methods (`output.instances.method`):

* `components`: connected components of `probability >= threshold`.  Needs no
  halo: blocks meet only on their borders, and pipeline.instances.merge joins ids
  that touch there.
* `watershed`: a seeded watershed on the boundary elevation `1 - probability`
  inside the thresholded mask, seeds being the components of
  `probability >= seed_threshold`; components without a seed stay whole.

The halo condition of `watershed`: a foreground component is split only if
its bounding box is at most `halo` pixels on each side.  Such a component,
seen from any block it touches, lies whole inside that block's window (the
block grown by `halo`), so every block computes the same regions; each region
is then named by its first pixel in the plane (a global id), and the result
does not depend on the block size.  Larger components are kept whole, as
`components` would label them, whatever the block size.

Pure numpy/scipy/scikit-image: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from pipeline.instances.merge import GLOBAL_BIT, BlockGrid, label_block, structure
from pipeline.instances.objects import BlockSummary, PlaneObjects, merge_plane, summarise_block

if TYPE_CHECKING:
    from pipeline.outputspec import InstancesSpec


@dataclass(frozen=True)
class BlockWindow:
    """A block of a plane (the core, written) and the window around it (read), in plane coordinates."""

    core: tuple[slice, slice]
    window: tuple[slice, slice]
    plane_shape: tuple[int, int]

    @classmethod
    def around(cls, core: tuple[slice, slice], plane_shape: tuple[int, int], halo: int) -> BlockWindow:
        (ys, xs), (h, w) = core, plane_shape
        window = (
            slice(max(0, ys.start - halo), min(h, ys.stop + halo)),
            slice(max(0, xs.start - halo), min(w, xs.stop + halo)),
        )
        return cls(core, window, plane_shape)

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        (ys, xs), (wy, wx) = self.core, self.window
        return slice(ys.start - wy.start, ys.stop - wy.start), slice(xs.start - wx.start, xs.stop - wx.start)

    @property
    def cut(self) -> tuple[bool, bool, bool, bool]:
        """Whether the window's top, bottom, left and right edges cut through the plane (not its border)."""
        (wy, wx), (h, w) = self.window, self.plane_shape
        return wy.start > 0, wy.stop < h, wx.start > 0, wx.stop < w


def halo_for(rule: InstancesSpec) -> int:
    """Pixels of probability a block's labels depend on around it."""
    return rule.halo if rule.method == "watershed" else 0


def longest_sides(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Each object's bounding-box height or width, whichever is larger (rows of a plane's object table)."""
    return np.maximum(columns["bbox_y1"] - columns["bbox_y0"], columns["bbox_x1"] - columns["bbox_x0"])


def kept_whole(columns: dict[str, np.ndarray], rule: InstancesSpec) -> np.ndarray:
    """Which objects of a plane (rows of its object table) the halo condition kept whole: wider or taller
    than `halo`, so never split by the watershed, however many seeds they hold."""
    if rule.method != "watershed":
        return np.zeros(len(columns["id"]), bool)
    return longest_sides(columns) > rule.halo


def block_ids(probability: np.ndarray, where: BlockWindow, number: int, rule: InstancesSpec) -> np.ndarray:
    """Provisional uint64 ids of the core block, from the (h, w) object probability of the window."""
    mask = probability >= rule.threshold
    core = where.core_in_window
    if rule.method == "components":
        return label_block(mask[core], number, rule.connectivity)
    split = splittable(mask, where, rule)
    ids = label_block(mask[core] & ~split[core], number, rule.connectivity)  # merged across blocks as components
    regions = watershed_regions(probability, split, rule)
    names = first_pixel_names(regions, where)
    inside = regions[core]
    ids[inside > 0] = names[inside[inside > 0]]
    return ids


def splittable(mask: np.ndarray, where: BlockWindow, rule: InstancesSpec) -> np.ndarray:
    """Pixels of the window's components that the halo condition lets the watershed split."""
    components, count = ndimage.label(mask, structure(rule.connectivity))
    height, width = mask.shape
    top, bottom, left, right = where.cut
    ok = np.zeros(count + 1, bool)
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        ys, xs = box
        small = ys.stop - ys.start <= rule.halo and xs.stop - xs.start <= rule.halo
        # A component that reaches a cut edge may go on outside the window: unknown size, never split.
        clipped = (
            (top and ys.start == 0)
            or (bottom and ys.stop == height)
            or (left and xs.start == 0)
            or (right and xs.stop == width)
        )
        ok[number] = small and not clipped
    return ok[components]


def watershed_regions(probability: np.ndarray, split: np.ndarray, rule: InstancesSpec) -> np.ndarray:
    """Watershed regions (1..n) of the splittable pixels; a component without a seed is one region."""
    footprint = structure(rule.connectivity)
    seeds, n_seeds = ndimage.label(split & (probability >= rule.seed_threshold), footprint)
    elevation = tie_free(1.0 - probability.astype(np.float32), split)
    regions = watershed(elevation, markers=seeds, mask=split, connectivity=1 if rule.connectivity == 4 else 2)
    seedless = split & (regions == 0)
    if seedless.any():
        components, _ = ndimage.label(seedless, footprint)
        regions[seedless] = components[seedless] + n_seeds
    return regions


def tie_free(elevation: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rank of each masked pixel by (elevation, raster position): no two pixels level.

    The watershed floods equal elevations in the order its heap happens to hold them, and the
    heap holds every component of the window: two windows around one component could split it
    differently where its probability is flat.  Raster order within a window is raster order in
    the plane, so these ranks order a component's pixels alike in every window that holds it.
    """
    order = np.argsort(elevation[mask], kind="stable")
    ranks = np.empty(order.size, np.float64)
    ranks[order] = np.arange(order.size, dtype=np.float64)
    out = np.zeros(elevation.shape, np.float64)
    out[mask] = ranks
    return out


def first_pixel_names(regions: np.ndarray, where: BlockWindow) -> np.ndarray:
    """Global id of each region: GLOBAL_BIT | its first pixel's raster position in the plane."""
    values, first = np.unique(regions.ravel(), return_index=True)
    ys, xs = np.divmod(first, regions.shape[1])
    position = (ys + where.window[0].start) * where.plane_shape[1] + xs + where.window[1].start
    names = np.zeros(int(values.max()) + 1, np.uint64)
    names[values] = GLOBAL_BIT | position.astype(np.uint64)
    names[0] = 0
    return names


def block_summary(ids: np.ndarray, where: BlockWindow, probability: np.ndarray) -> BlockSummary:
    """The core block's summary, from its ids and the object probability of its window."""
    origin = where.core[0].start, where.core[1].start
    return summarise_block(ids, origin, where.plane_shape[1], probability[where.core_in_window])


def label_plane(
    probability: np.ndarray, block: tuple[int, int], rule: InstancesSpec
) -> tuple[np.ndarray, PlaneObjects]:
    """Instances of a whole (H, W) probability plane, computed block by block as the pipeline does.

    The in-memory reference of the distributed pass (tests, benchmarks, evaluation).
    """
    grid = BlockGrid(probability.shape, block)
    halo = halo_for(rule)
    ids, summaries = {}, {}
    for n, r, c in grid.blocks():
        where = BlockWindow.around(grid.slices(r, c), grid.shape, halo)
        window = probability[where.window]
        ids[n] = block_ids(window, where, n, rule)
        summaries[n] = block_summary(ids[n], where, window)
    objects = merge_plane(grid, summaries, rule.connectivity, rule.min_size)
    out = np.zeros(probability.shape, np.uint32)
    for n, r, c in grid.blocks():
        out[grid.slices(r, c)] = objects.table.lookup(ids[n])
    return out, objects
