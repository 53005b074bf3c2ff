"""`LazyImage`: one image of an archive, read plane by plane and block by block.

Every source (Zarr, TIFF, a stack of slices) becomes an array-like with
`shape`, `dtype` and numpy-style `__getitem__`, plus its axes.  A LazyImage
maps those axes onto planes (every t, z), channels (c) and the 2-D plane (y, x)
the U-Net sees, and reads mirrored windows without touching the rest of the image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np

from pipeline.axes import axes_problem
from pipeline.errors import InputError, StorageError
from pipeline.io.blockcache import CACHE, MAX_BYTES, block_edge, bytes_to_keep, overlapping, source_chunks
from pipeline.plan import plane_coords
from pipeline.tiling import mirrored, reflect_indices, source_span

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)
_instances = itertools.count()  # a LazyImage's blocks in the cache are its own, never a reopened image's


class ArrayLike(Protocol):
    shape: tuple[int, ...]
    dtype: Any

    def __getitem__(self, key: Any) -> Any: ...


def check_axes(axes: str, ndim: int, source: str) -> str:
    """Lower-case axes, each of t c z y x at most once, y and x present, one per dimension."""
    axes = axes.lower()
    if len(axes) != ndim:
        raise InputError(f"{source}: axes {axes!r} name {len(axes)} dimensions but the array has {ndim}")
    problem = axes_problem(axes)
    if problem:
        raise InputError(f"{source}: {problem}")
    return axes


@dataclass
class LazyImage:
    key: str
    array: ArrayLike
    axes: str
    source: str
    scale: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""
    instance: int = field(default_factory=lambda: next(_instances), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.axes = check_axes(self.axes, len(self.array.shape), self.source)
        dtype = np.dtype(self.array.dtype)
        if dtype not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
            raise InputError(f"{self.source}: unsupported dtype {dtype}; expected one of uint8, uint16, int16, float32")
        if 0 in self.array.shape:
            raise InputError(f"{self.source}: empty image of shape {tuple(self.array.shape)}")

    def size(self, axis: str) -> int:
        return int(self.array.shape[self.axes.index(axis)]) if axis in self.axes else 1

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.array.dtype)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.size("y"), self.size("x")

    @property
    def channels(self) -> int:
        return self.size("c")

    @property
    def plane_axes(self) -> str:
        """The axes that index planes, in OME order (t before z)."""
        return "".join(a for a in "tz" if a in self.axes)

    @property
    def n_planes(self) -> int:
        return math.prod(self.size(a) for a in self.plane_axes)

    def plane_coords(self, plane: int) -> dict[str, int]:
        """{t: i, z: j} of plane number `plane` (row-major over t then z)."""
        return plane_coords(plane, {a: self.size(a) for a in self.plane_axes})

    def read(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        """Raw pixels (C, h, w) of an in-bounds region of one plane, in the source dtype."""
        coords = self.plane_coords(plane)
        key = tuple(coords.get(a, rows if a == "y" else cols if a == "x" else slice(None)) for a in self.axes)
        try:
            block = np.asarray(self.array[key])
        except (InputError, StorageError):
            raise
        except OSError as exc:  # a flaky disk or network: worth another try
            raise StorageError(
                f"{self.source}: cannot read plane {plane} rows {rows.start}:{rows.stop} "
                f"cols {cols.start}:{cols.stop}: {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:  # any other reader failure: the data is bad; name the file and block
            raise InputError(
                f"{self.source}: cannot read plane {plane} rows {rows.start}:{rows.stop} "
                f"cols {cols.start}:{cols.stop}: {type(exc).__name__}: {exc}"
            ) from None
        remaining = [a for a in self.axes if a in "cyx"]
        return block.transpose([remaining.index(a) for a in "cyx" if a in remaining]).reshape(
            self.channels, rows.stop - rows.start, cols.stop - cols.start
        )

    def read_window(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        """(C, h, w) of the mirror-extended plane: reads only the span the mirror needs."""
        height, width = self.plane_shape
        ry, rx = source_span(rows.start, rows.stop, height), source_span(cols.start, cols.stop, width)
        block = self.read_blocks(plane, slice(*ry), slice(*rx))
        if (ry, rx) == ((rows.start, rows.stop), (cols.start, cols.stop)):
            return block
        iy = reflect_indices(rows.start, rows.stop, height) - ry[0]
        ix = reflect_indices(cols.start, cols.stop, width) - rx[0]
        return mirrored(block, iy, ix)

    def read_blocks(self, plane: int, rows: slice, cols: slice) -> np.ndarray:
        """`read(plane, rows, cols)`, put together from whole blocks kept for the next units' windows.

        A block that cannot be read costs no window that misses its bad chunk: the
        window is then read by itself, and fails only where its own chunks do.
        """
        block_shape = self.block_shape
        keep = bytes_to_keep(block_shape[0], self.plane_shape[1], self.channels * self.dtype.itemsize)
        if keep <= MAX_BYTES:
            try:
                return self.assemble_blocks(plane, rows, cols, block_shape, keep)
            except (InputError, StorageError):
                pass
        return self.read(plane, rows, cols)

    def assemble_blocks(
        self, plane: int, rows: slice, cols: slice, block_shape: tuple[int, int], keep: int
    ) -> np.ndarray:
        """The region from cached blocks, reading those not cached; InputError where one cannot be read."""
        (by, bx), (height, width) = block_shape, self.plane_shape
        out = np.empty((self.channels, rows.stop - rows.start, cols.stop - cols.start), self.dtype)
        for iy in overlapping(rows.start, rows.stop, by):
            y0, y1 = iy * by, min((iy + 1) * by, height)
            for ix in overlapping(cols.start, cols.stop, bx):
                x0, x1 = ix * bx, min((ix + 1) * bx, width)
                load = partial(self.read, plane, slice(y0, y1), slice(x0, x1))
                block = CACHE.get((self.instance, plane, iy, ix), load, keep)
                ys, ye, xs, xe = max(y0, rows.start), min(y1, rows.stop), max(x0, cols.start), min(x1, cols.stop)
                out[:, ys - rows.start : ye - rows.start, xs - cols.start : xe - cols.start] = block[
                    :, ys - y0 : ye - y0, xs - x0 : xe - x0
                ]
        return out

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of the blocks `read_blocks` keeps: whole chunks of the source (pipeline.io.blockcache)."""
        chunks = source_chunks(self.array) or (None,) * len(self.axes)
        height, width = self.plane_shape
        return block_edge(chunks[self.axes.index("y")], height), block_edge(chunks[self.axes.index("x")], width)
