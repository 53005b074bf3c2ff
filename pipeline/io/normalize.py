"""Intensity normalisation, a job setting: none, fixed scale/offset, or per-image percentiles.

Percentiles come from a sample of the image (windows spread over a few planes),
computed once on the driver, never from the whole image.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import InputError
from pipeline.io.image import LazyImage

if TYPE_CHECKING:
    from pipeline.spec import NormalizeSettings


# Percentiles are read from windows of this side, spread over a few planes: each read is bounded,
# whatever the plane's size (whole 12,000^2 planes took 876 MB on the driver).
SAMPLE_WINDOW = 256


def sample_windows(height: int, width: int, count: int) -> list[tuple[slice, slice]]:
    """Up to `count` windows of SAMPLE_WINDOW px (the plane, if smaller) on an even grid over the plane."""
    side_y, side_x = min(SAMPLE_WINDOW, height), min(SAMPLE_WINDOW, width)
    across = max(1, math.isqrt(max(count, 1)))
    ys = np.unique(np.linspace(0, height - side_y, min(across, max(1, height // side_y))).astype(int))
    xs = np.unique(np.linspace(0, width - side_x, min(across, max(1, width // side_x))).astype(int))
    return [(slice(int(y), int(y) + side_y), slice(int(x), int(x) + side_x)) for y in ys for x in xs]


def sampled_values(image: LazyImage, max_pixels: int) -> np.ndarray:
    """The finite pixels of windows spread over up to 8 planes, about `max_pixels` in all: bounded reads,
    deterministic."""
    height, width = image.plane_shape
    planes = np.unique(np.linspace(0, image.n_planes - 1, min(8, image.n_planes)).astype(int))
    per_plane = max(1, max_pixels // (len(planes) * SAMPLE_WINDOW * SAMPLE_WINDOW))
    windows = sample_windows(height, width, per_plane)
    samples = [image.read(int(p), rows, cols) for p in planes for rows, cols in windows]
    values = np.concatenate([s.ravel() for s in samples]).astype(np.float64)
    return values[np.isfinite(values)]


def sample_percentiles(image: LazyImage, low: float, high: float, max_pixels: int = 1 << 20) -> tuple[float, float]:
    """Percentiles of `sampled_values`."""
    values = sampled_values(image, max_pixels)
    if not values.size:
        raise InputError(f"{image.source}: no finite pixels in the sample used for percentile normalisation")
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1)


# The share of a sample's values below and above the range it is summed up by (robust to outliers).
RANGE_PERCENTILES = (0.5, 99.5)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """The (0.5th, 99.5th) percentiles of the finite values: the range most of them lie in."""
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 0.0
    lo, hi = np.percentile(values, RANGE_PERCENTILES)
    return float(lo), float(hi)


def sampled_range(image: LazyImage, scale: float, offset: float) -> tuple[float, float] | None:
    """`value_range` of the image's normalised pixels, from one window on each of up to 8 planes;
    None if the sample has no finite pixel (inference.normalize.nonfinite decides about those)."""
    values = sampled_values(image, 8 * SAMPLE_WINDOW * SAMPLE_WINDOW)
    return value_range(values * scale + offset) if values.size else None


def affine_for(image: LazyImage, settings: NormalizeSettings) -> tuple[float, float]:
    """(scale, offset) such that normalised = raw * scale + offset, for this image."""
    if settings.mode == "none":
        return 1.0, 0.0
    if settings.mode == "scale":
        return settings.scale, settings.offset
    lo, hi = sample_percentiles(image, settings.low, settings.high)
    return 1.0 / (hi - lo), -lo / (hi - lo)


def normalize(block: np.ndarray, scale: float, offset: float, nonfinite: str, where: str) -> np.ndarray:
    """float32 block * scale + offset; NaN/inf rejected (InputError naming `where`) or set to 0."""
    out = block.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        if nonfinite == "reject":
            bad = int((~np.isfinite(out)).sum())
            raise InputError(f"{where}: {bad} NaN/inf pixel(s) (set inference.normalize.nonfinite: zero to replace)")
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out
