"""Open one stored image (Zarr array or OME-Zarr group, TIFF, 2-D slices) as an array-like.

Each opener returns (array, axes, scale, fingerprint) without reading pixels.
Bad files become InputError naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import tifffile
import zarr
import zarr.errors

from pipeline.errors import InputError
from pipeline.io.blockcache import source_chunks
from pipeline.io.ngff import ngff_keys

# A TIFF tile or strip decodes to at most this many bytes: a header that
# claims more is a decompression bomb, refused before anything is allocated.
MAX_SEGMENT_BYTES = 1 << 30
MAX_PIXELS = 1 << 44
TIFF_AXES = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x", "I": "z", "Q": "z"}
SLICE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


@dataclass
class Opened:
    array: Any
    axes: str
    scale: dict[str, float]
    fingerprint: str


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_stamp(fs: fsspec.AbstractFileSystem, path: str) -> tuple[Any, ...]:
    info = fs.info(path)
    return info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag")


class SqueezedArray:
    """A view of `array` without the dimensions listed in `drop` (all of size 1)."""

    def __init__(self, array: Any, drop: Sequence[int]) -> None:
        self.array, self.drop = array, tuple(drop)
        self.shape = tuple(s for i, s in enumerate(array.shape) if i not in self.drop)
        self.dtype = array.dtype

    def __getitem__(self, key: tuple[Any, ...]) -> Any:
        it = iter(key)
        full = tuple(0 if i in self.drop else next(it) for i in range(len(self.array.shape)))
        return self.array[full]

    @property
    def chunks(self) -> tuple[int, ...] | None:
        chunks = source_chunks(self.array)
        return None if chunks is None else tuple(c for i, c in enumerate(chunks) if i not in self.drop)


# -- Zarr ---------------------------------------------------------------------------------


def open_zarr_node(store: Any, path: str, source: str) -> Any:
    try:
        return zarr.open(store=store, path=path, mode="r")
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: corrupt Zarr metadata (not JSON): {exc}") from None
    except (zarr.errors.NodeNotFoundError, FileNotFoundError, KeyError) as exc:
        raise InputError(f"{source}: no Zarr array or group here ({type(exc).__name__})") from None
    except Exception as exc:
        raise InputError(f"{source}: cannot open as Zarr: {type(exc).__name__}: {exc}") from None


def ome_multiscale(node: Any) -> dict[str, Any] | None:
    """The first `multiscales` entry of an OME-Zarr image group (NGFF 0.4 or 0.5), if any."""
    multiscales = ngff_keys(dict(node.attrs)).get("multiscales")
    return multiscales[0] if isinstance(multiscales, list) and multiscales else None


def open_zarr_image(node: Any, source: str, axes: str | None) -> Opened:
    scale: dict[str, float] = {}
    array: Any
    if isinstance(node, zarr.Group):
        ms = ome_multiscale(node)
        if ms is None:
            raise InputError(f"{source}: a Zarr group without OME-Zarr multiscales metadata is not an image")
        level0 = ms["datasets"][0]
        array = node[level0["path"]]
        names = "".join(a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", []))
        axes = axes or names or None
        for transform in level0.get("coordinateTransformations", []):
            if transform.get("type") == "scale" and names:
                scale = dict(zip(names, map(float, transform["scale"]), strict=False))
    else:
        array = node
        dims = (node.metadata.dimension_names or ()) if node.metadata.zarr_format == 3 else ()
        axes = axes or ("".join(dims) if dims and all(dims) else None)
    if axes is None:
        axes = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}.get(array.ndim)
        if axes is None:
            raise InputError(f"{source}: cannot infer axes of a {array.ndim}-D array; set input.axes")
    meta = array.metadata.to_dict()
    return Opened(array, axes, scale, _digest(meta, dict(array.attrs)))


# -- TIFF ---------------------------------------------------------------------------------


def check_tiff(tif: tifffile.TiffFile, file_size: int, source: str) -> None:
    """Refuse truncated files, missing segments and headers that claim absurd sizes."""
    series = tif.series[0]
    if int(np.prod(series.shape, dtype=np.float64)) > MAX_PIXELS:
        raise InputError(f"{source}: header claims shape {series.shape}, larger than any plausible image")
    itemsize = np.dtype(series.dtype).itemsize
    pages: list[Any] = [p for p in series.pages if p is not None]
    for page in pages:
        key = page.keyframe  # a TiffFrame shares its geometry with its key page
        seg = (key.tilewidth or key.imagewidth) * (key.tilelength or key.rowsperstrip or key.imagelength)
        if seg * key.samplesperpixel * itemsize * max(key.tiledepth, 1) > MAX_SEGMENT_BYTES:
            raise InputError(f"{source}: a tile/strip would decode to more than {MAX_SEGMENT_BYTES} bytes")
        offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
        if not len(offsets) or not len(counts):
            continue
        if min(counts) == 0 or min(offsets) == 0:
            raise InputError(f"{source}: page {page.index} has missing strips/tiles (zero offset or byte count)")
        end = max(o + c for o, c in zip(offsets, counts, strict=False))
        if end > file_size:
            raise InputError(
                f"{source}: truncated: page {page.index} needs bytes up to {end} but the file has {file_size}"
            )


class _Complaints(logging.Handler):
    """Collects what tifffile logs: it reports damaged files in the log, not by raising."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def tifffile_strict(source: str) -> Iterator[None]:
    """Turn tifffile's logged warnings and errors into an InputError naming the file."""
    complaints = _Complaints()
    logger = logging.getLogger("tifffile")
    logger.addHandler(complaints)
    try:
        yield
    finally:
        logger.removeHandler(complaints)
    if complaints.messages:
        raise InputError(f"{source}: truncated or corrupt TIFF: {complaints.messages[0]}")


def open_tiff(fs: fsspec.AbstractFileSystem, path: str, source: str, axes: str | None) -> Opened:
    stamp = file_stamp(fs, path)
    if not stamp[0]:
        raise InputError(f"{source}: empty file (0 bytes)")
    try:
        handle = fs.open(path, "rb")
        with tifffile_strict(source):
            tif = tifffile.TiffFile(handle, name=path.rsplit("/", 1)[-1])
            if not tif.series:
                raise InputError(f"{source}: TIFF without image data")
            if len(tif.series) > 1:
                shapes = ", ".join(f"{s.axes} {tuple(s.shape)}" for s in tif.series[:4])
                raise InputError(
                    f"{source}: TIFF holds {len(tif.series)} series ({shapes}{', ...' if len(tif.series) > 4 else ''}); "
                    "only one is read per file, and none is chosen silently: save each series as a file of its own"
                )
            series = tif.series[0]
            check_tiff(tif, int(stamp[0]), source)
            array: Any = zarr.open(series.aszarr(), mode="r")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{source}: not a readable TIFF: {type(exc).__name__}: {exc}") from None
    native = "".join(TIFF_AXES.get(a, "?") for a in series.axes)
    if axes is None:
        drop = [i for i, a in enumerate(native) if a == "?" and series.shape[i] == 1]
        kept = "".join(a for i, a in enumerate(native) if i not in drop)
        if "?" in kept or len(set(kept)) != len(kept):
            raise InputError(f"{source}: cannot map TIFF axes {series.axes!r} to t,c,z,y,x; set input.axes")
        if drop:
            array = SqueezedArray(array, drop)
        axes = kept
    return Opened(array, axes, {}, _digest(stamp, series.shape, str(series.dtype)))


# -- 2-D slices -------------------------------------------------------------------------


class SliceStack:
    """Files of 2-D slices (PNG, TIFF, JPEG) as a lazy (z, y, x[, c]) array; one file per read."""

    def __init__(self, fs: fsspec.AbstractFileSystem, paths: list[str], source: str) -> None:
        self.fs, self.paths, self.source = fs, paths, source
        first = self._load(0)
        self.shape = (len(paths), *first.shape)
        self.dtype = first.dtype

    def _load(self, i: int) -> np.ndarray:
        from PIL import Image

        path = self.paths[i]
        try:
            with self.fs.open(path, "rb") as f:
                if path.lower().endswith(TIFF_SUFFIXES):
                    return np.asarray(tifffile.imread(f))
                with Image.open(f) as im:
                    im.load()
                    return np.asarray(im.convert("L") if im.mode in ("P", "1") else im)
        except Exception as exc:
            raise InputError(f"{path}: cannot read slice: {type(exc).__name__}: {exc}") from None

    def __getitem__(self, key: tuple[Any, ...]) -> np.ndarray:
        z, *rest = key
        plane = self._load(int(z))
        if plane.shape != self.shape[1:] or plane.dtype != self.dtype:
            raise InputError(
                f"{self.paths[int(z)]}: slice of shape {plane.shape} {plane.dtype} in a stack of "
                f"{self.shape[1:]} {self.dtype}"
            )
        return plane[tuple(rest)]


def open_slices(fs: fsspec.AbstractFileSystem, paths: list[str], source: str, axes: str | None) -> Opened:
    for path in paths:
        if not file_stamp(fs, path)[0]:
            raise InputError(f"{path}: empty file (0 bytes)")
    stack = SliceStack(fs, paths, source)
    native = "zyx" if len(stack.shape) == 3 else "zyxc"
    array: Any = stack
    if len(paths) == 1:
        array, native = SqueezedArray(stack, [0]), native[1:]
    return Opened(array, axes or native, {}, _digest([file_stamp(fs, p) for p in paths]))
