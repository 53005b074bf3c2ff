"""A window's trip from reader to model: small integers as stored, anything else normalised, always as bytes."""

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io.normalize import normalize
from pipeline.windows import affine_of, packed, travelling, travels_raw, unpacked


@pytest.mark.parametrize("dtype", ["|u1", "|i1", "<u2", ">u2", "<i2", "<f4", ">f8"])
def test_a_packed_window_is_uint8_bytes_that_unpack_to_the_same_values(dtype):
    window = (np.arange(2 * 5 * 7) * 37 % 120).astype(dtype).reshape(2, 5, 7)[:, :, ::-1]  # not contiguous
    data, name = packed(window)
    itemsize = np.dtype(dtype).itemsize
    assert data.dtype == np.uint8 and data.shape == (2, 5, 7 * itemsize)
    back = unpacked(data, name)
    assert back.dtype.isnative and back.dtype.kind == np.dtype(dtype).kind and back.shape == (2, 5, 7)
    np.testing.assert_array_equal(back, window)


def test_8_and_16_bit_windows_travel_as_stored_and_the_rest_normalised():
    assert [travels_raw(np.dtype(d)) for d in ("u1", "i1", "u2", "i2")] == [True] * 4
    assert [travels_raw(np.dtype(d)) for d in ("u4", "i8", "f2", "f4", "f8", "?")] == [False] * 6
    raw = np.arange(12, dtype=np.uint16).reshape(1, 3, 4)
    assert travelling(raw, 0.5, 1.0, "reject", "w") is raw
    assert affine_of(raw, 0.5, 1.0) == (0.5, 1.0)
    floats = raw.astype(np.float64)
    normalised = travelling(floats, 0.5, 1.0, "reject", "w")
    assert normalised.dtype == np.float32 and affine_of(normalised, 0.5, 1.0) is None
    np.testing.assert_array_equal(normalised, normalize(floats, 0.5, 1.0, "reject", "w"))


def test_a_float_window_with_nan_is_refused_by_its_reader_naming_the_block():
    floats = np.ones((1, 4, 4), np.float32)
    floats[0, 1, 2] = np.nan
    with pytest.raises(InputError, match=r"img0 plane 3 block \(0, 1\): 1 NaN/inf"):
        travelling(floats, 1.0, 0.0, "reject", "img0 plane 3 block (0, 1)")
