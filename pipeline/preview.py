"""Small pictures of an input plane with its mask on top, for the HTML report.

Reads are bounded whatever the image size: a plane larger than PREVIEW_SPAN
on a side is previewed by its central PREVIEW_SPAN x PREVIEW_SPAN region, read
with a stride, so a report over a terabyte archive reads a few megapixels per
sampled plane.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.io.image import LazyImage
from pipeline.io.maskstore import MaskStore

PREVIEW_SPAN = 2048
# Label colours (label 0, background, stays transparent): tab10 without its grey.
PALETTE = np.array(
    [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194)],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class Preview:
    key: str
    plane: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    png: bytes

    @property
    def caption(self) -> str:
        return f"{self.key}, plane {self.plane}, rows {self.rows[0]}:{self.rows[1]}, cols {self.cols[0]}:{self.cols[1]}"


def centred_span(size: int, span: int = PREVIEW_SPAN) -> tuple[int, int]:
    """[start, stop) of the central `span` pixels of an axis of `size` (the whole axis if shorter)."""
    if size <= span:
        return 0, size
    start = (size - span) // 2
    return start, start + span


def stride_for(height: int, width: int, pixels: int) -> int:
    """Smallest step that brings the longer side to at most `pixels`."""
    return max(1, -(-max(height, width) // pixels))


def grey8(raw: np.ndarray) -> np.ndarray:
    """(C, h, w) pixels of any dtype -> (h, w) uint8, contrast from the 1st to 99th percentile."""
    plane = raw.astype(np.float32).mean(axis=0)
    finite = plane[np.isfinite(plane)]
    low, high = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(plane, nan=low) - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def as_labels(mask: np.ndarray) -> np.ndarray:
    """Labels (h, w) as stored, or the arg-max class of stored (classes, h, w) probabilities."""
    if mask.ndim == 2:
        return mask
    if mask.shape[0] == 1:
        return (mask[0] >= 0.5).astype(np.uint8)
    return np.argmax(mask, axis=0).astype(np.uint8)


def overlay(grey: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Grey image with each non-zero label tinted in its palette colour."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    labelled = labels > 0
    colours = PALETTE[(labels[labelled].astype(np.int64) - 1) % len(PALETTE)].astype(np.float32)
    rgb[labelled] = (1 - alpha) * rgb[labelled] + alpha * colours
    return Image.fromarray(rgb.astype(np.uint8), mode="RGB")


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_preview(image: LazyImage, store: MaskStore, plane: int, pixels: int) -> Preview:
    """PNG of the plane's central region, at most `pixels` on a side, mask over image."""
    height, width = image.plane_shape
    (y0, y1), (x0, x1) = centred_span(height), centred_span(width)
    step = stride_for(y1 - y0, x1 - x0, pixels)
    raw = image.read(plane, slice(y0, y1), slice(x0, x1))[:, ::step, ::step]
    mask = store.read_region(image.key, image.plane_coords(plane), slice(y0, y1, step), slice(x0, x1, step))
    picture = overlay(grey8(raw), as_labels(mask))
    return Preview(image.key, plane, (y0, y1), (x0, x1), png_bytes(picture))
