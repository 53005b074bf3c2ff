"""The worker's cache of decoded input blocks: block geometry, eviction, and reads equal to direct ones."""

import numpy as np
import pytest
import tifffile
import zarr

from pipeline.errors import InputError
from pipeline.io import open_archive
from pipeline.io.blockcache import BlockCache, block_edge, overlapping, source_chunks
from pipeline.io.formats import SqueezedArray
from pipeline.io.image import LazyImage
from pipeline.plan import image_units


def test_blocks_are_whole_chunks_at_least_256_px_and_never_past_the_axis():
    assert block_edge(512, 2048) == 512
    assert block_edge(100, 2048) == 300  # three chunks
    assert block_edge(1, 2048) == 256  # a TIFF's one-row strips
    assert block_edge(512, 300) == 300
    assert block_edge(None, 700) == 700  # unchunked: the whole axis


def test_a_window_overlaps_the_blocks_it_touches_and_no_others():
    assert overlapping(400, 1136, 512) == range(0, 3)
    assert overlapping(512, 1024, 512) == range(1, 2)
    assert overlapping(0, 1, 512) == range(0, 1)


def test_the_cache_keeps_the_bytes_asked_for_and_drops_the_least_recently_used():
    cache, loads = BlockCache(), []

    def block(name):
        return lambda: loads.append(name) or np.zeros(100, np.uint8)

    for name in "abc":
        cache.get(name, block(name), keep_bytes=300)
    cache.get("a", block("a"), keep_bytes=300)  # a hit: "a" is now the most recent
    cache.get("d", block("d"), keep_bytes=300)  # evicts "b", the least recently used
    assert list(cache.blocks) == ["c", "a", "d"] and cache.nbytes == 300
    cache.get("b", block("b"), keep_bytes=300)
    assert loads == ["a", "b", "c", "d", "b"]


def test_chunk_shapes_come_from_regularly_chunked_sources_only(tmp_path):
    array = zarr.create_array(tmp_path / "a.zarr", shape=(1, 64, 64), chunks=(1, 32, 16), dtype="uint8")
    assert source_chunks(array) == (1, 32, 16)
    assert source_chunks(SqueezedArray(array, [0])) == (32, 16)
    assert source_chunks(np.zeros((4, 4))) is None


class CountingArray:
    """A chunked array that counts the pixels read from it."""

    def __init__(self, data, chunks):
        self.data, self.chunks, self.shape, self.dtype = data, chunks, data.shape, data.dtype
        self.pixels_read = 0

    def __getitem__(self, key):
        out = self.data[key]
        self.pixels_read += out.size
        return out


def test_units_in_raster_order_read_each_pixel_once():
    """Neighbouring windows overlap: without the cache each pixel would be read about (736 / 512)² times."""
    data = np.random.default_rng(0).integers(0, 255, (2048, 1536)).astype(np.uint8)
    array = CountingArray(data, (512, 512))
    image = LazyImage("k", array, "yx", "img.zarr")
    padded = np.pad(data, 112, mode="reflect")
    for unit in image_units("k", 1, (2048, 1536), (512, 512)):
        rows, cols = slice(unit.y0 - 112, unit.y1 + 112), slice(unit.x0 - 112, unit.x1 + 112)
        window = image.read_window(0, rows, cols)
        np.testing.assert_array_equal(
            window[0], padded[rows.start + 112 : rows.stop + 112, cols.start + 112 : cols.stop + 112]
        )
    assert array.pixels_read == data.size


@pytest.mark.parametrize("fmt", ["zarr", "tiff"])
def test_windows_through_the_cache_equal_direct_reads(tmp_path, fmt):
    volume = np.random.default_rng(1).integers(0, 4000, (2, 700, 900)).astype(np.uint16)
    if fmt == "zarr":
        zarr.create_array(tmp_path / "img.zarr", data=volume, chunks=(1, 128, 384))
    else:
        tifffile.imwrite(tmp_path / "img.tif", volume, tile=(128, 128), photometric="minisblack")
    image = open_archive(str(tmp_path)).open("img")
    assert image.block_shape == ((256, 384) if fmt == "zarr" else (256, 256))
    rng = np.random.default_rng(2)
    for _ in range(20):
        y, x = int(rng.integers(0, 700)), int(rng.integers(0, 900))
        rows, cols = (
            slice(y, min(700, y + int(rng.integers(1, 500)))),
            slice(x, min(900, x + int(rng.integers(1, 500)))),
        )
        np.testing.assert_array_equal(image.read_window(1, rows, cols), image.read(1, rows, cols))
        np.testing.assert_array_equal(image.read_window(1, rows, cols), volume[1:2, rows, cols])


def test_a_bad_chunk_fails_only_the_windows_that_read_it(tmp_path):
    """Blocks are 256 px here, chunks 64: a window beside a corrupt chunk in its block still reads."""
    data = np.random.default_rng(3).integers(0, 255, (512, 512)).astype(np.uint8)
    zarr.create_array(tmp_path / "img.zarr", data=data, chunks=(64, 64))
    (tmp_path / "img.zarr" / "c" / "0" / "0").write_bytes(b"not zstd")
    image = open_archive(str(tmp_path)).open("img")
    assert image.block_shape == (256, 256)
    beside = image.read_window(0, slice(100, 200), slice(100, 200))
    np.testing.assert_array_equal(beside[0], data[100:200, 100:200])
    with pytest.raises(InputError, match="img.zarr"):
        image.read_window(0, slice(0, 50), slice(0, 50))
