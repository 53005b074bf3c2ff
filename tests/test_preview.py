"""Report pictures: bounded reads, contrast, and colours only where the mask says so."""

import numpy as np
from PIL import Image

from pipeline.preview import PREVIEW_SPAN, as_labels, centred_span, grey8, overlay, stride_for


def test_centred_span_is_the_whole_axis_or_its_middle():
    assert centred_span(300) == (0, 300)
    start, stop = centred_span(10_000)
    assert stop - start == PREVIEW_SPAN and start == (10_000 - PREVIEW_SPAN) // 2


def test_stride_brings_the_longer_side_within_the_limit():
    assert stride_for(512, 512, 512) == 1
    assert stride_for(2048, 100, 512) == 4
    assert -(-2049 // stride_for(2049, 10, 512)) <= 512


def test_grey8_stretches_percentiles_and_survives_nan():
    raw = np.linspace(0, 1000, 100 * 100, dtype=np.float32).reshape(1, 100, 100)
    raw[0, 0, 0] = np.nan
    grey = grey8(raw)
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255


def test_probabilities_become_their_argmax_class():
    p = np.zeros((3, 2, 2), np.float32)
    p[2, 0, 0] = p[1, 1, 1] = 1
    np.testing.assert_array_equal(as_labels(p), [[2, 0], [0, 1]])
    np.testing.assert_array_equal(as_labels(np.array([[[0.2, 0.7]]])), [[0, 1]])


def test_overlay_tints_labelled_pixels_only():
    grey = np.full((4, 4), 100, np.uint8)
    labels = np.zeros((4, 4), np.uint8)
    labels[1, 2] = 1
    picture = np.asarray(overlay(grey, labels))
    assert isinstance(overlay(grey, labels), Image.Image) and picture.shape == (4, 4, 3)
    assert (picture[0, 0] == 100).all()
    assert picture[1, 2, 0] > 100 and picture[1, 2, 2] < 100  # red-ish
