"""Stage helpers: the empty-block rule, background blocks, and outputs per kind."""

import numpy as np

from pipeline.stages import background, is_flat, to_output


def test_a_block_is_flat_only_when_every_channel_is():
    flat = np.full((2, 16, 16), 0.5, np.float32)
    assert is_flat(flat, 0.01, 4)
    textured = flat.copy()
    textured[1, ::4, ::4] = np.linspace(0, 1, 16).reshape(4, 4)
    assert not is_flat(textured, 0.01, 4)


def test_texture_between_samples_is_not_seen():
    """The rule is a sample: detail finer than the stride can be missed (documented)."""
    stripes = np.zeros((1, 16, 16), np.float32)
    stripes[:, 1::4, :] = 1
    assert is_flat(stripes, 0.01, 4) and not is_flat(stripes, 0.01, 1)


def test_background_is_class_zero_in_every_kind():
    assert background(2, (3, 4), "labels", "float32").tolist() == [[0] * 4] * 3
    probabilities = background(3, (2, 2), "probabilities", "float16")
    assert probabilities.dtype == np.float16 and (probabilities[0] == 1).all() and (probabilities[1:] == 0).all()
    assert (background(1, (2, 2), "probabilities", "float32") == 0).all()  # one sigmoid class: p(foreground) = 0
    np.testing.assert_array_equal(
        to_output(background(2, (2, 2), "probabilities", "float32"), "labels", 0.5, "float32"), np.zeros((2, 2))
    )
