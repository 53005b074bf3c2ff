"""Tile geometry: pure arithmetic, checked exhaustively on small cases."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import GeometryError
from pipeline.model import net_geometry
from pipeline.tiling import (
    axis_tiles,
    computed_pixels,
    extended_length,
    least_wasteful_tile,
    mirrored,
    plan_tiles,
    reflect_indices,
    source_span,
    tile_length,
)
from tests.conftest import model_config

PAPER = net_geometry(model_config("unet-paper"))
SAME = net_geometry(model_config("unet-bn"))


@given(n=st.integers(1, 40), before=st.integers(0, 120), after=st.integers(0, 120))
def test_reflect_indices_equal_numpy_reflect_padding_even_when_wider_than_the_axis(n, before, after):
    axis = np.arange(n)
    expected = np.pad(axis, (before, after), mode="reflect") if n > 1 else np.zeros(n + before + after, int)
    np.testing.assert_array_equal(reflect_indices(-before, n + after, n), expected)


@given(h=st.integers(2, 30), w=st.integers(2, 30), before=st.integers(0, 40), after=st.integers(0, 40))
def test_a_mirrored_window_equals_numpy_reflect_padding_of_each_channel(h, w, before, after):
    image = np.arange(2 * h * w, dtype=np.uint16).reshape(2, h, w)
    rows, cols = reflect_indices(-before, h + after, h), reflect_indices(-after, w + before, w)
    expected = np.stack([np.pad(c, ((before, after), (after, before)), mode="reflect") for c in image])
    np.testing.assert_array_equal(mirrored(image, rows, cols), expected)
    np.testing.assert_array_equal(mirrored(image[1], rows, cols), expected[1])  # a plane without channels


@given(n=st.integers(1, 50), start=st.integers(-100, 60), length=st.integers(1, 100))
def test_source_span_covers_exactly_the_mirrored_indices(n, start, length):
    lo, hi = source_span(start, start + length, n)
    idx = reflect_indices(start, start + length, n)
    assert (lo, hi) == (idx.min(), idx.max() + 1)


@pytest.mark.parametrize("geometry", [PAPER, SAME], ids=["valid", "same"])
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), extra=st.integers(0, 600))
def test_output_tiles_partition_the_axis_and_inputs_keep_the_margin(geometry, n, extra):
    length = tile_length(geometry.min_tile + extra, n, geometry)
    tiles = axis_tiles(n, length, geometry)
    assert tiles[0].output_start == 0 and tiles[-1].output_stop == n
    for a, b in zip(tiles, tiles[1:], strict=False):
        assert a.output_stop == b.output_start
    for t in tiles:
        assert t.input_stop - t.input_start == length
        assert t.output_start - t.input_start == geometry.margin
        # Phase: every tile starts on the pooling grid of the mirror-extended image.
        assert (t.input_start + geometry.margin) % geometry.factor == 0
        assert t.output_stop - t.output_start <= geometry.step(length)


def test_a_tile_larger_than_the_image_shrinks_to_one_covering_tile():
    grid = plan_tiles((37, 53), SAME, 4096)
    assert len(grid) == 1
    assert SAME.step(grid.tile_shape[0]) >= 37 and SAME.step(grid.tile_shape[1]) >= 53


def test_requested_tile_snaps_down_to_a_legal_size():
    assert tile_length(575, 10_000, PAPER) == 572
    assert tile_length(513, 10_000, SAME) == 512


def test_a_tile_below_the_smallest_useful_one_is_refused_naming_the_minimum():
    with pytest.raises(GeometryError, match=str(PAPER.min_tile)):
        plan_tiles((100, 100), PAPER, PAPER.min_tile - 1)


def test_mirror_padding_is_reported_per_tile():
    grid = plan_tiles((300, 300), PAPER, 572)
    (tile,) = list(grid)
    assert grid.tile_shape == (492, 492)  # smallest legal tile whose output covers 300 px
    assert tile.input_window == (slice(-92, 400), slice(-92, 400))
    assert tile.mirror_padding(300, 300) == ((92, 100), (92, 100))


def test_extended_length_is_legal_and_leaves_the_margin_on_both_sides():
    for n in (1, 15, 16, 17, 511, 512):
        m = extended_length(n, SAME)
        assert SAME.is_valid_input(m) and m >= n + 2 * SAME.margin


def test_planning_a_million_tiles_is_lazy_and_quick():
    start = time.perf_counter()
    grid = plan_tiles((336 * 1000, 336 * 1000), PAPER, 524)
    assert len(grid) == 1_000_000
    count = sum(1 for _ in grid)
    assert count == 1_000_000
    # Not a timing test: a generous bound that only catches accidental O(n^2) planning.
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("geometry", [PAPER, SAME], ids=["valid", "same"])
def test_tiles_are_balanced_so_the_last_one_wastes_little(geometry):
    for n in (100, 700, 2048, 5000):
        for requested in (geometry.min_tile, 700, 1024, 4096):
            if requested < geometry.min_tile:
                continue
            chosen = tile_length(requested, n, geometry)
            largest = requested - (requested - geometry.residue) % geometry.factor
            count = len(axis_tiles(n, chosen, geometry))
            assert chosen <= max(largest, geometry.min_tile)
            assert count == -(-n // geometry.step(max(largest, geometry.min_tile)))  # no more tiles than asked
            if chosen - geometry.factor >= geometry.min_tile:  # and no shorter legal tile would do
                assert len(axis_tiles(n, chosen - geometry.factor, geometry)) > count


@pytest.mark.parametrize("geometry", [PAPER, SAME], ids=["valid", "same"])
@pytest.mark.parametrize("block", [(512, 512), (2048, 2048), (256, 640)])
def test_the_least_wasteful_tile_computes_a_block_in_the_fewest_pixels(geometry, block):
    def cost(tile):
        return computed_pixels(tile, block[0], geometry) * computed_pixels(tile, block[1], geometry)

    best = least_wasteful_tile(block, geometry, 1024)
    assert geometry.is_valid_input(best) and best <= 1024 + geometry.factor
    assert all(cost(best) <= cost(t) for t in range(geometry.min_tile, 1025, geometry.factor))
    assert cost(best) < cost(512)  # a 512 tile pays the margin on every side of four or more tiles
