"""Scoring a mask store: each stored plane against the truth's plane of the same number."""

import numpy as np
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
    result = evaluate_store(str(tmp_path / "out.zarr"), str(tmp_path / "a.tif"))
    assert [(p.plane, p.pixel_error) for p in result.planes] == [(0, 0.0), (1, 0.0)]
