"""Intensity normalisation: fixed, per-image percentiles from a sample, NaN/inf handling."""

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io.image import LazyImage
from pipeline.io.normalize import NormalizeSettings, affine_for, normalize, sample_percentiles


def _image(data, axes="zyx"):
    return LazyImage("k", data, axes, "img.tif")


def test_percentiles_come_from_a_bounded_sample_and_map_to_zero_and_one():
    data = np.random.default_rng(0).integers(100, 4000, (20, 300, 300)).astype(np.uint16)
    lo, hi = sample_percentiles(_image(data), 1, 99, max_pixels=20_000)
    assert abs(lo - np.percentile(data, 1)) < 60 and abs(hi - np.percentile(data, 99)) < 60
    scale, offset = affine_for(_image(data), NormalizeSettings(mode="percentile"))
    lo, hi = sample_percentiles(_image(data), 1, 99)  # what affine_for sampled
    assert lo * scale + offset == pytest.approx(0) and hi * scale + offset == pytest.approx(1)


def test_scale_and_none_modes():
    data = np.full((1, 4, 4), 255, np.uint8)
    assert affine_for(_image(data), NormalizeSettings()) == (1 / 255, 0.0)
    assert affine_for(_image(data), NormalizeSettings(mode="none")) == (1.0, 0.0)


def test_nonfinite_pixels_are_rejected_naming_the_block_or_replaced():
    block = np.array([[[1.0, np.nan], [np.inf, 2.0]]], np.float32)
    with pytest.raises(InputError, match=r"img\.tif plane 3: 2 NaN/inf pixel\(s\)"):
        normalize(block, 1.0, 0.0, "reject", "img.tif plane 3")
    np.testing.assert_array_equal(normalize(block, 1.0, 0.0, "zero", "x"), [[[1.0, 0.0], [0.0, 2.0]]])
