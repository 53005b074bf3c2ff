"""Block-wise connected components equal skimage.measure.label of the whole mask, for every block size."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import label

from pipeline.errors import ConfigError
from pipeline.instances.fragments import label_plane
from pipeline.instances.merge import BlockGrid, merge_table, raster_order
from pipeline.outputspec import InstancesSpec


def label_blockwise(mask: np.ndarray, block: tuple[int, int], connectivity: int = 8) -> np.ndarray:
    rule = InstancesSpec.model_construct(**{**InstancesSpec().model_dump(), "connectivity": connectivity})
    return label_plane(mask.astype(np.float32), block, rule)[0]


def spiral(n: int) -> np.ndarray:
    """A one-pixel-wide square spiral with one-pixel gaps: one object that winds through
    every block many times, and whose ends connect only through far blocks."""
    mask = np.zeros((n, n), np.uint8)
    y, x, dy, dx = 0, 0, 0, 1
    mask[0, 0] = 1
    lengths = [n - 1, n - 1, n - 1] + [length for k in range(n - 3, 0, -2) for length in (k, k)]
    for length in lengths:
        for _ in range(length):
            y, x = y + dy, x + dx
            mask[y, x] = 1
        dy, dx = dx, -dy  # turn clockwise
    return mask


def snake(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[::4, :] = 1
    for i, r in enumerate(range(0, h - 4, 4)):
        col = w - 1 if i % 2 == 0 else 0
        mask[r : r + 5, col] = 1
    return mask


def comb_and_diagonals(n: int) -> np.ndarray:
    mask = np.zeros((n, n), np.uint8)
    mask[0, :] = 1
    mask[:, ::3] = 1  # teeth hanging from one spine
    np.fill_diagonal(mask[n // 2 :, n // 2 :], 1)  # touches only through corners
    np.fill_diagonal(np.fliplr(mask)[n // 2 :, : n // 2], 1)
    return mask


def rings(n: int) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    return ((r.astype(int) % 6) < 2).astype(np.uint8)


SHAPES = {"spiral": spiral(61), "snake": snake(50, 70), "comb": comb_and_diagonals(48), "rings": rings(57)}


def assert_same_objects(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to a permutation of ids (and here, with skimage's own numbering)."""
    assert got.max() == expected.max()
    pairs = np.unique(np.stack([got.ravel(), expected.ravel()]), axis=1)
    assert len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1]))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("block", [(1, 1), (3, 5), (7, 7), (16, 16), (64, 64)])
def test_adversarial_shapes_equal_whole_image_labelling(shape, connectivity, block):
    mask = SHAPES[shape]
    expected = label(mask, connectivity=1 if connectivity == 4 else 2)
    assert_same_objects(label_blockwise(mask, block, connectivity), expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    bh=st.integers(1, 17),
    bw=st.integers(1, 17),
    density=st.floats(0.2, 0.7),
    connectivity=st.sampled_from([4, 8]),
)
def test_random_masks_equal_whole_image_labelling(seed, h, w, bh, bw, density, connectivity):
    mask = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    expected = label(mask, connectivity=1 if connectivity == 4 else 2)
    assert_same_objects(label_blockwise(mask, (bh, bw), connectivity), expected)


def test_merge_table_numbers_objects_by_first_pixel():
    ids = np.array([5, 2, 9, 7], np.uint64)  # raster order of first pixels
    table = merge_table(ids, np.array([[9, 5]], np.uint64))
    np.testing.assert_array_equal(table.lookup(np.array([5, 2, 9, 7, 0], np.uint64)), [1, 2, 1, 3, 0])
    assert table.objects == 3


def test_raster_order_keeps_an_id_seen_in_several_blocks_once_at_its_earliest_pixel():
    ids = np.array([7, 3, 7, 5], np.uint64)
    np.testing.assert_array_equal(raster_order(ids, np.array([9.0, 4.0, 2.0, 6.0])), [7, 3, 5])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="connectivity 6"):
        label_blockwise(np.ones((4, 4)), (2, 2), connectivity=6)
    with pytest.raises(ConfigError, match="block"):
        BlockGrid((4, 4), (0, 2))
