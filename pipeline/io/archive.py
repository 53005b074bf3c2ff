"""An archive: a store, file, folder, glob or URL holding many images, each with a stable key.

Enumerating keys never opens image contents, so one bad image cannot stop the
listing; `open` raises InputError for that image alone.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import fsspec
import zarr

from pipeline.changes import InputPieces
from pipeline.errors import InputError
from pipeline.io.formats import (
    SLICE_SUFFIXES,
    TIFF_SUFFIXES,
    open_slices,
    open_tiff,
    open_zarr_image,
    open_zarr_node,
)
from pipeline.io.image import LazyImage
from pipeline.io.stamps import slice_pieces, tiff_pieces, zarr_pieces
from pipeline.names import colliding, image_name

ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._\-/ ]+$")


def natural_key(name: str) -> list[Any]:
    """Sort '2.png' before '10.png'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def printable(name: str) -> str:
    """A file name as text that can always be printed and logged.

    Python keeps the bytes of a name that is not valid UTF-8 as lone
    surrogates, which no terminal or JSON encoder can write; they become
    backslash escapes (b'\\xff' -> '\\xff') here, once, where names enter.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_key(key: str, source: str) -> str:
    """A key is a relative path of plain characters: no '..', not absolute, valid UTF-8."""
    if "\\x" in key or printable(key) != key:  # escaped where listed, or raw surrogates
        raise InputError(f"{source}: image name is not valid UTF-8 ({printable(key)!r})")
    parts = key.split("/")
    if key.startswith("/") or ".." in parts or not _KEY_CHARS.match(key):
        raise InputError(f"{source}: image key {key!r} is not a plain relative name (letters, digits, . _ - / only)")
    return key


@dataclass(frozen=True)
class Entry:
    """One image of the archive: where it is and how to open it."""

    key: str
    kind: str  # "zarr" | "tiff" | "slices"
    paths: tuple[str, ...]


class Archive:
    def __init__(self, url: str, axes: str | None = None, stack: bool = False) -> None:
        self.url, self.axes, self.stack = url, axes, stack
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except Exception as exc:
            raise InputError(f"{url}: cannot open: {type(exc).__name__}: {exc}") from None
        self.is_glob = any(ch in url for ch in "*?[")

    # -- enumeration ------------------------------------------------------------------

    @cached_property
    def entries(self) -> dict[str, Entry]:
        found: dict[str, list[Entry]] = defaultdict(list)
        for entry in self._scan():
            found[entry.key].append(entry)
        if not found:
            raise InputError(f"{self.url}: no images found (expected Zarr stores, TIFF files or 2-D slices)")
        self._refuse_shared_names(found)
        return {key: entries[0] for key, entries in found.items()}

    def _refuse_shared_names(self, found: dict[str, list[Entry]]) -> None:
        """Inputs that would share a key or an output folder are refused by name: one would overwrite another."""
        groups = [entries for entries in found.values() if len(entries) > 1]
        groups += [[e for key in keys for e in found[key]] for keys in colliding(found)]
        if not groups:
            return
        clashes = "; ".join(
            " and ".join(self._where(e) for e in group)
            + f" (as {' / '.join(sorted({image_name(e.key) for e in group}))})"
            for group in groups
        )
        raise InputError(
            f"{self.url}: inputs that would share one output name: {clashes}; names must differ by more than their "
            "suffix, their case or '/' against '__': rename them, or point input.path at one of each"
        )

    def image_keys(self) -> list[str]:
        return sorted(self.entries, key=natural_key)

    def _is_zarr(self, path: str) -> bool:
        return any(self.fs.exists(f"{path}/{marker}") for marker in ZARR_MARKERS)

    def _scan(self) -> Iterator[Entry]:
        if self.is_glob:
            base = self.root.split("*")[0].rsplit("/", 1)[0]
            paths = sorted(self.fs.glob(self.root), key=natural_key)
            yield from self._entries_for(paths, base)
            return
        if not self.fs.exists(self.root):
            raise InputError(f"{self.url}: no such file or directory")
        if self.fs.isdir(self.root):
            if self._is_zarr(self.root):
                # Images inside the named store are keyed relative to it.
                yield from self._zarr_entries(self.root, self._key(self.root, self.root.rsplit("/", 1)[0]), prefix="")
            else:
                paths = sorted((p for p in self.fs.ls(self.root, detail=False)), key=natural_key)
                yield from self._entries_for(paths, self.root)
        else:
            yield from self._entries_for([self.root], self.root.rsplit("/", 1)[0])

    def _where(self, entry: Entry) -> str:
        """The entry's path below the archive's root, for messages."""
        path = entry.paths[0] if len(entry.paths) == 1 else entry.paths[0].rsplit("/", 1)[0] + "/*"
        return printable(path[len(self.root) :].lstrip("/") if path.startswith(self.root + "/") else path)

    @staticmethod
    def _name(path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[-1]

    def _key(self, path: str, base: str) -> str:
        rel = printable(path[len(base) :].lstrip("/") if path.startswith(base) else self._name(path))
        for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *TIFF_SUFFIXES, *SLICE_SUFFIXES, ".zarr"):
            if rel.lower().endswith(suffix):
                return rel[: -len(suffix)]
        return rel

    def _entries_for(self, paths: list[str], base: str) -> Iterator[Entry]:
        slices: list[str] = []
        for path in paths:
            name = self._name(path).lower()
            if name.startswith("."):
                continue
            if self.fs.isdir(path):
                if self._is_zarr(path):
                    key = self._key(path, base)
                    yield from self._zarr_entries(path, key, prefix=key + "/")
            elif self.stack and name.endswith(SLICE_SUFFIXES):
                slices.append(path)
            elif name.endswith(TIFF_SUFFIXES):
                yield Entry(self._key(path, base), "tiff", (path,))
            elif name.endswith(SLICE_SUFFIXES):
                yield Entry(self._key(path, base), "slices", (path,))
        if slices:
            yield Entry(self._name(base) or "stack", "slices", tuple(slices))

    def _zarr_node_kind(self, path: str) -> str:
        """ "array", "image" (OME-Zarr multiscales), "group", or "bad" (unreadable metadata).

        Reads only the node's own metadata file, so a corrupt sibling cannot stop the listing.
        """
        try:
            if self.fs.exists(f"{path}/zarr.json"):
                meta = json.loads(self.fs.cat_file(f"{path}/zarr.json"))
                attrs = meta.get("attributes", {})
                if meta.get("node_type") == "array":
                    return "array"
            elif self.fs.exists(f"{path}/.zarray"):
                return "array"
            else:
                attrs = json.loads(self.fs.cat_file(f"{path}/.zattrs")) if self.fs.exists(f"{path}/.zattrs") else {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            return "bad"
        return "image" if "multiscales" in attrs.get("ome", attrs) else "group"

    def _zarr_entries(self, path: str, key: str, prefix: str) -> Iterator[Entry]:
        """One entry per image in a Zarr store: an array, an OME-Zarr image, or each image below a plain group."""
        if self._zarr_node_kind(path) != "group":
            yield Entry(key, "zarr", (path,))  # a bad node is reported when it is opened, for itself alone
            return
        for child in sorted(self.fs.ls(path, detail=False), key=natural_key):
            name = self._name(child)
            if not name.startswith(".") and self.fs.isdir(child) and self._is_zarr(child):
                yield from self._zarr_entries(child, prefix + name, prefix + name + "/")

    def _zarr_store(self, path: str) -> Any:
        if self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol:
            return zarr.storage.LocalStore(path, read_only=True)
        return zarr.storage.FsspecStore.from_url(self.fs.unstrip_protocol(path), read_only=True)

    # -- opening ----------------------------------------------------------------------

    def open(self, key: str) -> LazyImage:
        """The image `key`, or an InputError naming its file and what is wrong."""
        entry = self.entries.get(key)
        if entry is None:
            raise InputError(f"{self.url}: no image with key {key!r}")
        source = printable(
            entry.paths[0] if len(entry.paths) == 1 else f"{self._name(entry.paths[0])}..{entry.paths[-1]}"
        )
        check_key(key, source)
        if entry.kind == "zarr":
            node = open_zarr_node(self._zarr_store(entry.paths[0]), "", source)
            opened = open_zarr_image(node, source, self.axes)
        elif entry.kind == "tiff":
            opened = open_tiff(self.fs, entry.paths[0], source, self.axes)
        else:
            opened = open_slices(self.fs, list(entry.paths), source, self.axes)
        return LazyImage(key, opened.array, opened.axes, source, opened.scale, opened.fingerprint)

    def pieces(self, key: str, image: LazyImage) -> InputPieces:
        """The stamps of the stored pieces `image` (opened from `key`) reads, from listings (pipeline.io.stamps)."""
        entry = self.entries[key]
        try:
            if entry.kind == "zarr":
                inner = str(getattr(image.array, "path", "") or "")
                return zarr_pieces(self.fs, "/".join(p for p in (entry.paths[0], inner) if p), image)
            if entry.kind == "tiff":
                return tiff_pieces(self.fs, entry.paths[0], image)
            return slice_pieces(self.fs, list(entry.paths), image)
        except OSError as exc:
            raise InputError(f"{image.source}: cannot list its stored pieces: {type(exc).__name__}: {exc}") from None


def open_archive(url: str, axes: str | None = None, stack: bool = False) -> Archive:
    return Archive(url, axes, stack)
