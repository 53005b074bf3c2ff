"""One device, one model: tiled prediction that equals the untiled definition.

`predict_image` is what users call on an in-memory (C, H, W) image; the
distributed actors call `predict_windows` on the mirrored windows reader tasks
cut for their units (8 and 16 bit windows as stored, normalised here on the
device: `Predictor`'s affine).  Both share `TileGrid` geometry, so the stitched
result equals `predict_untiled` (the net on the whole mirror-extended image)
to float32 round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np
import torch

from pipeline.cpumemory import keep_freed_memory
from pipeline.errors import ConfigError, GeometryError
from pipeline.model.unet import UNet
from pipeline.tiling import TileGrid, extended_length, mirrored, plan_tiles, reflect_indices

Precision = Literal["fp32", "bf16", "fp16", "auto"]
# normalised = raw * scale + offset in float32: the normalisation of a window that travelled as stored
# integers (pipeline.windows), applied where the model runs.
Affine = tuple[float, float]
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """`auto` is the first CUDA device where there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device here")
    return torch.device(device)


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """`auto`: bf16 on a CUDA device that supports it, fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


class TilePredictor(Protocol):
    """What tiled prediction needs of a model: its number of classes and a forward over a batch of tiles.

    `Predictor` is the real one; benchmarks bring others (a simulated GPU, a model that does no arithmetic).
    """

    @property
    def classes(self) -> int: ...

    def __call__(self, batch: np.ndarray, affine: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(B, C, h, w) -> (B, classes, h', w'); `affine`: each tile's (scale, offset) to apply first."""
        ...


@dataclass
class Predictor:
    """A model placed on a device, mapping input batches to activated outputs."""

    model: UNet
    device: torch.device
    precision: str

    @classmethod
    def create(cls, model: UNet, device: str = "auto", precision: Precision = "fp32") -> Predictor:
        dev = resolve_device(device)
        # channels_last pays on both: cuDNN tensor cores, and oneDNN on CPUs (about 2x here).
        model = model.to(dev).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if dev.type == "cpu":
            keep_freed_memory()  # activations are reused every forward: no page faults for them
        return cls(model=model, device=dev, precision=resolve_precision(precision, dev))

    @property
    def classes(self) -> int:
        return self.model.config.classes

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, affine: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(B, C, h, w) -> (B, classes, h', w') float32 after the head's activation.

        `affine`: (B,) scales and offsets that normalise a batch of stored integers: applied on the
        device (a multiply, then an add, in float32, as `normalize` does), so that 8-bit tiles cross
        to a GPU as 8 bits.
        """
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.to(torch.float32)
        if affine is not None:
            scale, offset = (torch.from_numpy(a).to(self.device).view(-1, 1, 1, 1) for a in affine)
            x = x * scale + offset
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = _AUTOCAST.get(self.precision)
        autocast = torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
        with self.backend_flags(), autocast:
            y = self.model.activate(self.model(x))
        return y.float().cpu().numpy()

    def backend_flags(self) -> AbstractContextManager[object]:
        return cudnn_flags(self.precision) if self.device.type == "cuda" else nullcontext()


def cudnn_flags(precision: str) -> AbstractContextManager[object]:
    """cuDNN's settings for a forward: autotuned kernels, and `fp32` meaning IEEE fp32.

    cuDNN's default for fp32 convolutions on Ampere and later is TF32, which rounds
    inputs to 10 mantissa bits (relative error ~1e-3): tiles would then differ from
    the untiled definition by far more than float32 round-off.  bf16 and fp16 are
    the fast modes, with their stated tolerance.
    Scoped to the forward: the process's own settings are back afterwards.
    """
    exact = precision == "fp32"
    return torch.backends.cudnn.flags(
        enabled=True, benchmark=True, allow_tf32=not exact, fp32_precision="ieee" if exact else "none"
    )


def mirrored_window(image: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """image[:, rows, cols] of the mirror-extended image (numpy 'reflect', repeated)."""
    _, height, width = image.shape
    inside = rows.start >= 0 and rows.stop <= height and cols.start >= 0 and cols.stop <= width
    if inside:
        return image[:, rows, cols]
    return mirrored(
        image, reflect_indices(rows.start, rows.stop, height), reflect_indices(cols.start, cols.stop, width)
    )


def grid_window(grid: TileGrid) -> tuple[slice, slice]:
    """The region of the mirror-extended image that the tiles of `grid` read."""
    return (
        slice(grid.rows[0].input_start, grid.rows[-1].input_stop),
        slice(grid.cols[0].input_start, grid.cols[-1].input_stop),
    )


T = TypeVar("T")


def predict_windows(
    predictor: TilePredictor,
    jobs: list[tuple[TileGrid, np.ndarray]],
    batch_size: int,
    affines: list[Affine | None] | None = None,
) -> list[np.ndarray]:
    """Stitch the tiles of several (grid, window) pairs; tiles of all windows share batches.

    Each window holds the mirror-extended image over `grid_window(grid)`; each
    result is (classes, H, W) float32 for its grid.  `affines[i]`: the
    normalisation job i's window still needs (its stored integers), or None.
    """
    todo = affines or [None] * len(jobs)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    outs = []
    for grid, window in jobs:
        rows, cols = grid_window(grid)
        expected = (rows.stop - rows.start, cols.stop - cols.start)
        if window.shape[1:] != expected:
            raise GeometryError(f"window of shape {window.shape[1:]} does not match the tile grid's {expected}")
        outs.append(np.empty((predictor.classes, grid.height, grid.width), dtype=np.float32))

    # Tiles of one batch must share a shape and a dtype; windows of edge blocks have smaller tiles.
    def batch_key(i: int) -> tuple[tuple[int, int], str, bool]:
        return jobs[i][0].tile_shape, jobs[i][1].dtype.str, todo[i] is None

    in_order = sorted(range(len(jobs)), key=batch_key)
    tiles = ((i, tile) for i in in_order for tile in jobs[i][0])
    for batch in _shape_batches(tiles, batch_size, lambda item: batch_key(item[0])):
        inputs = []
        for i, tile in batch:
            grid, window = jobs[i]
            rows, cols = grid_window(grid)
            inputs.append(window[:, _shift(tile.input_window[0], rows.start), _shift(tile.input_window[1], cols.start)])
        results = predictor(np.stack(inputs), batch_affine([todo[i] for i, _ in batch]))
        for (i, tile), result in zip(batch, results, strict=True):
            crop = jobs[i][0].crop
            oy, ox = tile.output_window
            h, w = oy.stop - oy.start, ox.stop - ox.start
            outs[i][:, oy, ox] = result[:, crop : crop + h, crop : crop + w]
    return outs


def batch_affine(affines: list[Affine | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """The (scales, offsets) of a batch's tiles as float32 arrays; None if none needs normalising."""
    if affines[0] is None:
        return None
    scales, offsets = zip(*(a for a in affines if a is not None), strict=True)
    return np.array(scales, np.float32), np.array(offsets, np.float32)


def _shape_batches(items: Iterable[T], size: int, shape_of: Callable[[T], object]) -> Iterator[list[T]]:
    """Batches of up to `size` consecutive items, never mixing two shapes."""
    batch: list[T] = []
    for item in items:
        if batch and (len(batch) == size or shape_of(item) != shape_of(batch[0])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def predict_tiles(predictor: TilePredictor, grid: TileGrid, window: np.ndarray, batch_size: int) -> np.ndarray:
    """Stitch the outputs of every tile of `grid` into (classes, H, W) float32."""
    return predict_windows(predictor, [(grid, window)], batch_size)[0]


def _shift(s: slice, origin: int) -> slice:
    return slice(s.start - origin, s.stop - origin)


def check_image(model: UNet, image: np.ndarray) -> np.ndarray:
    """The image as float32 (C, H, W), or a clear error about its shape."""
    if image.ndim != 3:
        raise GeometryError(f"expected an image of shape (C, H, W), got shape {image.shape}")
    if image.shape[0] != model.config.in_channels:
        raise GeometryError(
            f"image has {image.shape[0]} channel(s) but the model expects in_channels={model.config.in_channels}"
        )
    return image.astype(np.float32, copy=False)


def predict_image(
    model: UNet,
    image: np.ndarray,
    tile: int | tuple[int, int] = 512,
    batch_size: int = 4,
    device: str = "auto",
    precision: Precision = "fp32",
) -> np.ndarray:
    """(C, H, W) image -> (classes, H, W) float32, by exact overlap-tile prediction."""
    image = check_image(model, image)
    grid = plan_tiles(image.shape[1:], model.geometry, tile)
    predictor = Predictor.create(model, device, precision)
    return predict_tiles(predictor, grid, mirrored_window(image, *grid_window(grid)), batch_size)


def predict_untiled(model: UNet, image: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The definition tiled prediction must equal: the net on the whole mirror-extended image.

    Mirror by `margin` before and by `margin` plus what the net needs after,
    run the net once, crop back to (H, W).  Memory grows with the image: for
    tests and benchmarks, not for archives.
    """
    image = check_image(model, image)
    geometry = model.geometry
    _, height, width = image.shape
    before = geometry.margin
    rows = slice(-before, -before + extended_length(height, geometry))
    cols = slice(-before, -before + extended_length(width, geometry))
    predictor = Predictor.create(model, device, "fp32")
    raw = predictor(mirrored_window(image, rows, cols)[None])[0]
    crop = geometry.margin - geometry.output_offset
    out: np.ndarray = raw[:, crop : crop + height, crop : crop + width]
    return out
