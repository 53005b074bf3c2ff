"""How a unit's input window travels from its reader to the model (no Ray, no torch here).

A window of small integers (8 or 16 bit: most EM and light microscopy) travels as
stored, 2 to 4 times fewer bytes than float32 through Ray's object store, and the
model's device applies the image's affine normalisation to each tile
(`pipeline.predict`): the same float32 multiply and add as `normalize`, so the
values are the same bit for bit.  Any other window is normalised by its reader,
where NaN and inf are found and named.  Either way a window travels as bytes
(C, h, w * itemsize) with its dtype beside it: Ray Data holds a column as one
tensor type, and the images of one archive may differ in dtype.
"""

from __future__ import annotations

import numpy as np

from pipeline.io.normalize import normalize


def travels_raw(dtype: np.dtype) -> bool:
    """True for integers narrower than float32: their window is normalised on the model's device."""
    return dtype.kind in "ui" and dtype.itemsize < 4


def travelling(raw: np.ndarray, scale: float, offset: float, nonfinite: str, where: str) -> np.ndarray:
    """The window as it travels: as stored where `travels_raw`, else normalised (InputError naming `where`)."""
    return raw if travels_raw(raw.dtype) else normalize(raw, scale, offset, nonfinite, where)


def packed(window: np.ndarray) -> tuple[np.ndarray, str]:
    """(C, h, w) of any dtype as (C, h, w * itemsize) uint8 in native byte order, and that dtype's name."""
    native = np.ascontiguousarray(window, dtype=window.dtype.newbyteorder("="))
    return native.view(np.uint8), native.dtype.str


def unpacked(data: np.ndarray, dtype: str) -> np.ndarray:
    """The (C, h, w) window that `packed` gave `data` and `dtype` for."""
    return np.ascontiguousarray(data).view(np.dtype(dtype))


def affine_of(window: np.ndarray, scale: float, offset: float) -> tuple[float, float] | None:
    """(scale, offset) still to apply to a travelled window on the model's device; None when its reader did."""
    return (float(scale), float(offset)) if travels_raw(window.dtype) else None
