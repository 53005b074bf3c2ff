"""The stamps of an image's stored pieces, from listings only (never pixels): what `pipeline.changes` compares.

* Zarr: one piece per stored chunk object (per shard in a sharded v3 array), its
  key's size and modification time (local) or ETag / LastModified (object stores);
  one listing of the array, paginated by the store, however many units read it.
* A stack of slices: one piece per file (name, size, time), one listing per folder.
* TIFF: the file is one piece.  Its pages' offsets and byte counts say where a page
  lies, not whether its pixels changed (a page rewritten in place keeps both), so a
  changed TIFF is redone whole, and the plan says why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import fsspec
import numpy as np

from pipeline.changes import InputPieces, stamp_digest
from pipeline.io.image import LazyImage

TIFF_WHOLE = "a TIFF file is one piece: which of its pages changed cannot be told without reading them"


def _layout(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def modified(info: dict[str, Any]) -> object:
    """A listing entry's change stamp: mtime (local), ETag or LastModified (object stores); None if it has none."""
    return info.get("mtime") or info.get("ETag") or info.get("LastModified") or info.get("etag")


def listing(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, dict[str, Any]]:
    """Every file below `folder`, by its path relative to it, with its listing entry (one recursive listing)."""
    prefix = folder.rstrip("/") + "/"
    found = fs.find(folder, detail=True)
    return {path[len(prefix) :] if path.startswith(prefix) else path: info for path, info in found.items()}


def zarr_pieces(fs: fsspec.AbstractFileSystem, folder: str, image: LazyImage) -> InputPieces:
    """One piece per stored chunk (or shard) of the Zarr array `image` reads, stored at `folder`."""
    array: Any = image.array
    piece = tuple(int(c) for c in (getattr(array, "shards", None) or array.chunks))
    shape = tuple(int(s) for s in array.shape)
    files = listing(fs, folder)
    grid = tuple(-(-s // p) for s, p in zip(shape, piece, strict=True))
    digests = np.zeros(grid, np.uint64)
    comparable = True
    for coords in np.ndindex(*grid):
        info = files.get(array.metadata.encode_chunk_key(coords))
        if info is not None:
            stamp = modified(info)
            comparable &= stamp is not None
            digests[coords] = stamp_digest(info.get("size"), stamp)
    meta = {k: v for k, v in array.metadata.to_dict().items() if k != "shape"}
    whole = "" if comparable else f"{image.source}: the store gives no modification time or ETag for its chunks"
    return InputPieces(image.axes, shape, piece, digests, _layout(meta, dict(array.attrs)), whole, comparable)


def slice_pieces(fs: fsspec.AbstractFileSystem, paths: list[str], image: LazyImage) -> InputPieces:
    """One piece per slice file (a plane of the stack), from one listing of each folder holding them."""
    infos: dict[str, dict[str, Any]] = {}
    for folder in sorted({path.rsplit("/", 1)[0] for path in paths}):
        infos.update({fs._strip_protocol(info["name"]): info for info in fs.ls(folder, detail=True)})
    found = [infos.get(fs._strip_protocol(path), {}) for path in paths]
    stamps = [
        (path.rsplit("/", 1)[-1], info.get("size"), modified(info)) for path, info in zip(paths, found, strict=True)
    ]
    comparable = all(stamp[2] is not None for stamp in stamps)
    shape = tuple(int(s) for s in image.array.shape)
    if len(paths) == 1:  # a single slice is a 2-D image: one piece
        piece, grid = shape, (1,) * len(shape)
    else:
        piece, grid = (1, *shape[1:]), (len(paths), *[1] * (len(shape) - 1))
    digests = np.array([stamp_digest(*stamp) for stamp in stamps], np.uint64).reshape(grid)
    whole = "" if comparable else f"{image.source}: the store gives no modification time or ETag for its files"
    return InputPieces(image.axes, shape, piece, digests, _layout(str(image.dtype), shape[1:]), whole, comparable)


def tiff_pieces(fs: fsspec.AbstractFileSystem, path: str, image: LazyImage) -> InputPieces:
    """The TIFF file as one piece (see the module's docstring)."""
    info = fs.info(path)
    stamp = modified(info)
    shape = tuple(int(s) for s in image.array.shape)
    digests = np.full((1,) * len(shape), stamp_digest(info.get("size"), stamp), np.uint64)
    layout = _layout(str(image.dtype), image.axes, image.channels)
    return InputPieces(image.axes, shape, shape, digests, layout, TIFF_WHOLE, stamp is not None)
