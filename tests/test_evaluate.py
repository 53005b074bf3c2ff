"""Scoring a mask store: each stored plane against the truth's plane of the same number."""

import numpy as np
import pytest
import tifffile

from pipeline.evaluate import evaluate_store
from pipeline.io.maskstore import MaskStore, OutputLayout


def test_a_time_series_of_probabilities_is_scored_plane_by_plane(tmp_path):
    """Probabilities are stored t, c, y, x: plane t is read from its own time point."""
    truth = np.zeros((2, 8, 8), np.uint8)
    truth[0, :, :4] = 255  # plane 0: left half foreground
    truth[1, :4, :] = 255  # plane 1: top half
    tifffile.imwrite(tmp_path / "a.tif", truth, photometric="minisblack")
    store = MaskStore(str(tmp_path / "out.zarr"), "probabilities")
    layout = OutputLayout("tcyx", (2, 2, 8, 8), (1, 2, 8, 8), "float32")
    store.create_image("a", layout, {}, {})
    for t in range(2):
        foreground = (truth[t] > 0).astype(np.float32)
        probabilities = np.stack([1 - foreground, foreground])
        store.write_block("a", {"t": t}, layout.axes, slice(0, 8), slice(0, 8), probabilities)
    result = evaluate_store(str(tmp_path / "out.zarr"), str(tmp_path / "a.tif"), foreground="nonzero")
    assert [(p.plane, p.pixel_error) for p in result.planes] == [(0, 0.0), (1, 0.0)]


def labels_of(tmp_path, plane):
    tifffile.imwrite(tmp_path / "labels.tif", plane, photometric="minisblack")
    return str(tmp_path / "labels.tif")


def test_the_foreground_is_the_rarer_label_value_and_the_summary_says_which(tmp_path):
    from pipeline.evaluate import truth_planes

    membranes = np.full((10, 10), 255, np.uint8)
    membranes[:, 4] = 0  # ISBI-like: membranes (0) are the rarer value
    chosen = {}
    ((_, _, truth),) = truth_planes(labels_of(tmp_path, membranes), None, "auto", chosen)
    np.testing.assert_array_equal(truth, (membranes == 0).astype(np.int64))
    assert chosen == {"labels:0": "zero (auto: the rarer value)"}


@pytest.mark.parametrize(
    ("plane", "message"),
    [
        (np.repeat(np.array([0, 255], np.uint8), 50).reshape(10, 10), "cannot tell which label value"),
        (np.arange(100, dtype=np.uint8).reshape(10, 10) % 3, "labels hold 3 distinct values"),
    ],
)
def test_ambiguous_or_non_binary_labels_are_refused_naming_the_file(tmp_path, plane, message):
    from pipeline.errors import InputError
    from pipeline.evaluate import truth_planes

    with pytest.raises(InputError, match=f"labels.tif plane 0: {message}"):
        list(truth_planes(labels_of(tmp_path, plane), None, "auto"))
