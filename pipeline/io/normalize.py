"""Intensity normalisation, a job setting: none, fixed scale/offset, or per-image percentiles.

Percentiles come from a sample of the image (a strided subset of a few planes),
computed once on the driver, never from the whole image.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from pipeline.errors import InputError
from pipeline.io.image import LazyImage
from pipeline.settings import Settings


class NormalizeSettings(Settings):
    mode: Literal["none", "scale", "percentile"] = "scale"
    scale: float = Field(1 / 255, description="mode scale: x * scale + offset")
    offset: float = 0.0
    low: float = Field(1.0, ge=0, le=100, description="mode percentile: maps to 0")
    high: float = Field(99.0, ge=0, le=100, description="mode percentile: maps to 1")
    nonfinite: Literal["reject", "zero"] = Field("reject", description="NaN/inf pixels: quarantine the block, or use 0")

    @model_validator(mode="after")
    def _ordered(self) -> NormalizeSettings:
        if self.mode == "percentile" and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


def sample_percentiles(image: LazyImage, low: float, high: float, max_pixels: int = 1 << 20) -> tuple[float, float]:
    """Percentiles of a strided sample of up to 8 planes: bounded reads, deterministic."""
    height, width = image.plane_shape
    planes = np.unique(np.linspace(0, image.n_planes - 1, min(8, image.n_planes)).astype(int))
    stride = max(1, int(np.sqrt(height * width * len(planes) / max_pixels)))
    samples = [image.read(int(p), slice(0, height), slice(0, width))[:, ::stride, ::stride] for p in planes]
    values = np.concatenate([s.ravel() for s in samples]).astype(np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        raise InputError(f"{image.source}: no finite pixels in the sample used for percentile normalisation")
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1)


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
