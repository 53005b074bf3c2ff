"""Intensity normalisation: fixed, per-image percentiles from a sample, NaN/inf handling."""

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io.image import LazyImage
from pipeline.io.normalize import affine_for, normalize, sample_percentiles
from pipeline.spec import NormalizeSettings


def _image(data, axes="zyx"):
    return LazyImage("k", data, axes, "img.tif")


def test_percentiles_come_from_a_bounded_sample_and_map_to_zero_and_one():
    data = np.random.default_rng(0).integers(100, 4000, (20, 300, 300)).astype(np.uint16)
    lo, hi = sample_percentiles(_image(data), 1, 99, max_pixels=20_000)
    assert abs(lo - np.percentile(data, 1)) < 60 and abs(hi - np.percentile(data, 99)) < 60
    scale, offset = affine_for(_image(data), NormalizeSettings(mode="percentile"))
    lo, hi = sample_percentiles(_image(data), 1, 99)  # what affine_for sampled
    assert lo * scale + offset == pytest.approx(0) and hi * scale + offset == pytest.approx(1)


class CountingArray:
    """An image's array that remembers the regions read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append(block.size)
        return block


def test_percentiles_read_bounded_windows_of_huge_planes():
    data = np.broadcast_to(np.arange(6000, dtype=np.uint16), (4, 6000, 6000))  # 36 Mpx planes, no memory
    array = CountingArray(data)
    lo, hi = sample_percentiles(LazyImage("k", array, "zyx", "big.zarr"), 1, 99)
    assert max(array.reads) <= 256 * 256  # never a whole plane
    assert sum(array.reads) <= 1.1 * (1 << 20)
    assert abs(lo - 60) < 200 and abs(hi - 5940) < 200  # windows spread over the whole plane


def test_scale_and_none_modes():
    data = np.full((1, 4, 4), 255, np.uint8)
    assert affine_for(_image(data), NormalizeSettings()) == (1 / 255, 0.0)
    assert affine_for(_image(data), NormalizeSettings(mode="none")) == (1.0, 0.0)


def test_nonfinite_pixels_are_rejected_naming_the_block_or_replaced():
    block = np.array([[[1.0, np.nan], [np.inf, 2.0]]], np.float32)
    with pytest.raises(InputError, match=r"img\.tif plane 3: 2 NaN/inf pixel\(s\)"):
        normalize(block, 1.0, 0.0, "reject", "img.tif plane 3")
    np.testing.assert_array_equal(normalize(block, 1.0, 0.0, "zero", "x"), [[[1.0, 0.0], [0.0, 2.0]]])
