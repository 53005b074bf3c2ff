"""The OME-Zarr mask store: NGFF 0.4 on Zarr v2, one image-label per input image.

    <output>/labels/<name>/0, 1, 2 ...   output.kind labels | mask (uint8), instances (uint32)
    <output>/probabilities/<name>/0 ...  output.kind probabilities (float32/16, c axis);
                                         for instances, the object probability (c = 1)
    <output>.job/objects/<name>.csv      output.kind instances: one row per object, beside the store
                                         (pipeline.jobrecords), so the store holds only Zarr nodes

NGFF 0.4 on Zarr v2 because that is what napari-ome-zarr, ome-zarr-py, Fiji
(MoBIE/n5-viewer) and neuroglancer all open today; 0.5 (Zarr v3) readers are
not yet everywhere.  Chunks are Blosc-zstd compressed and equal to the work
blocks, so one unit writes whole chunks (never a read-modify-write), and each
chunk write is atomic (LocalStore: temp file + rename; object stores: one PUT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.core.array_spec import ArrayConfigParams

from pipeline.errors import OutputError
from pipeline.io.archive import natural_key
from pipeline.io.image import LazyImage
from pipeline.io.pyramid import update_levels, write_levels
from pipeline.names import image_name
from pipeline.plan import plane_coords

COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
NGFF_VERSION = "0.4"
SPACE_AXES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# Images whose level-0 array a store keeps open for writing: reopening reads its metadata, 2 ms a block.
OPEN_FOR_WRITING = 8
# Every chunk is written, even all-background: a missing chunk then always means a lost one (pipeline.verify).
WRITE_EVERY_CHUNK: ArrayConfigParams = {"write_empty_chunks": True}


def semantic_kind(kind: str) -> str:
    """What the net's pass writes: instances are found later, from the stored object probability."""
    return "probabilities" if kind == "instances" else kind


@dataclass(frozen=True)
class OutputLayout:
    """Shape, chunks, dtype and axes of one image's output level 0."""

    axes: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str

    @classmethod
    def for_image(
        cls, image: LazyImage, kind: str, classes: int, chunks: tuple[int, int], probability_dtype: str
    ) -> OutputLayout:
        plane_axes = image.plane_axes
        sizes = [image.size(a) for a in plane_axes]
        height, width = image.plane_shape
        if kind == "probabilities":
            axes = "".join(a for a in "tczyx" if a in plane_axes or a in "cyx")
            shape = tuple(
                classes if a == "c" else image.size(a) if a in "tz" else height if a == "y" else width for a in axes
            )
            chunk = tuple(
                classes if a == "c" else 1 if a in "tz" else chunks[0] if a == "y" else chunks[1] for a in axes
            )
            return cls(axes, shape, chunk, probability_dtype)
        dtype = "uint32" if kind == "instances" else "uint8"
        return cls(plane_axes + "yx", (*sizes, height, width), (*[1] * len(sizes), *chunks), dtype)


def plane_index(plane_coords: dict[str, int], layout_axes: str, rows: slice, cols: slice) -> tuple[Any, ...]:
    """Index of a region of one plane in an output array with axes `layout_axes`."""
    return tuple(plane_coords.get(a, slice(None)) if a in "tzc" else rows if a == "y" else cols for a in layout_axes)


class MaskStore:
    """Create per-image outputs, write blocks, build pyramids; only the driver creates."""

    def __init__(self, url: str, kind: str) -> None:
        self.url, self.kind = url, kind
        self.group_name = "probabilities" if kind == "probabilities" else "labels"
        self._writing: dict[str, zarr.Array] = {}
        self._kind_group: zarr.Group | None = None  # labels/ or probabilities/, opened once
        self._other_kinds: dict[str, MaskStore] = {}

    def _store(self, read_only: bool = False) -> Any:
        if "://" in self.url and not self.url.startswith("file://"):
            return zarr.storage.FsspecStore.from_url(self.url, read_only=read_only)
        return zarr.storage.LocalStore(self.url.removeprefix("file://"), read_only=read_only)

    def root(self) -> zarr.Group:
        try:
            return zarr.open_group(self._store(), mode="a", zarr_format=2)
        except Exception as exc:
            raise OutputError(f"{self.url}: cannot open the mask store: {type(exc).__name__}: {exc}") from None

    def of_kind(self, kind: str) -> MaskStore:
        """The store of `kind` at the same URL (instances also keep their probability), made once."""
        if kind == self.kind:
            return self
        return self._other_kinds.setdefault(kind, MaskStore(self.url, kind))

    def create_image(self, key: str, layout: OutputLayout, scale: dict[str, float], provenance: dict[str, Any]) -> None:
        """(Re)create the level-0 array of `key`, empty, with its OME metadata.

        The group is made with its attributes, and the kind's group opened once per store: planning
        10^4 images costs a few milliseconds an image, not a read-modify-write of attributes each.
        """
        self._writing.pop(key, None)
        if self._kind_group is None:
            self._kind_group = self.root().require_group(self.group_name)
        attributes = self._image_attrs(key, layout, scale, levels=1, provenance=provenance)
        image = self._kind_group.create_group(image_name(key), overwrite=True, attributes=attributes)
        image.create_array(
            "0",
            shape=layout.shape,
            chunks=layout.chunks,
            dtype=layout.dtype,
            compressors=COMPRESSOR,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )

    def grow_image(self, key: str, layout: OutputLayout, provenance: dict[str, Any]) -> None:
        """Resize the image's level 0 in place to `layout` (its input grew or shrank); chunks inside both stay.

        The pyramid is rebuilt when the image is finished again (`build_pyramid`).
        """
        self._writing.pop(key, None)
        level0 = self.level0(key)
        if tuple(level0.shape) != layout.shape:
            level0.resize(layout.shape)
        group = zarr.open_group(self._store(), path=f"{self.group_name}/{image_name(key)}", mode="r+", zarr_format=2)
        group.attrs["segment-archive"] = provenance

    def list_labels(self, keys: list[str]) -> None:
        """Add the images to the labels group's list (NGFF), in one write for all of them.

        Once per plan, not per image: a list rewritten per image made planning quadratic in images.
        """
        if self.kind == "probabilities" or not keys:
            return
        group = self.root().require_group(self.group_name)
        listed: list[str] = list(group.attrs.get("labels", []))  # type: ignore[arg-type]
        names = sorted(set(listed) | {image_name(k) for k in keys}, key=natural_key)
        if names != listed:
            group.attrs["labels"] = names

    def _image_attrs(
        self, key: str, layout: OutputLayout, scale: dict[str, float], levels: int, provenance: dict[str, Any]
    ) -> dict[str, Any]:
        axes = [{"name": a, "type": SPACE_AXES[a]} for a in layout.axes]
        datasets = []
        for level in range(levels):
            factor = [2**level if a in "yx" else 1 for a in layout.axes]
            base = [scale.get(a, 1.0) for a in layout.axes]
            datasets.append(
                {
                    "path": str(level),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [b * f for b, f in zip(base, factor, strict=True)]}
                    ],
                }
            )
        attrs: dict[str, Any] = {
            "multiscales": [{"version": NGFF_VERSION, "name": key, "axes": axes, "datasets": datasets}],
            "segment-archive": provenance,
        }
        if self.kind != "probabilities":
            attrs["image-label"] = {"version": NGFF_VERSION, "source": {"image": "../../"}}
        return attrs

    def level0(self, key: str, mode: str = "r+") -> zarr.Array:
        try:
            return zarr.open_array(
                self._store(), path=f"{self.group_name}/{image_name(key)}/0", mode=mode, zarr_format=2
            )
        except Exception as exc:
            raise OutputError(f"{self.url}: output of {key!r} is missing or unreadable: {exc}") from None

    def image_attrs(self, key: str) -> dict[str, Any] | None:
        try:
            group = self.image_group(image_name(key))
        except OutputError:
            return None
        return dict(group.attrs)

    def image_group(self, name: str) -> zarr.Group:
        """The output group of the image whose `image_name` is `name`, read-only; OutputError if it is gone."""
        try:
            return zarr.open_group(self._store(read_only=True), path=f"{self.group_name}/{name}", mode="r")
        except Exception as exc:
            raise OutputError(f"{self.url}: no output group {self.group_name}/{name}: {exc}") from None

    def write_block(
        self, key: str, plane_coords: dict[str, int], layout_axes: str, rows: slice, cols: slice, block: np.ndarray
    ) -> None:
        """Write one unit's block: (H, W) labels or (classes, H, W) probabilities.

        The image's array stays open for the next blocks, so a store must not outlive the
        arrays it writes: workers keep one per run, and a run's arrays are all created
        before its stream starts.
        """
        self.writable(key)[plane_index(plane_coords, layout_axes, rows, cols)] = block

    def writable(self, key: str) -> zarr.Array:
        """The image's level-0 array, opened once for all the blocks this store writes into it."""
        if key not in self._writing:
            if len(self._writing) >= OPEN_FOR_WRITING:
                self._writing.clear()
            self._writing[key] = self.level0(key).with_config(WRITE_EVERY_CHUNK)
        return self._writing[key]

    def read_region(self, key: str, plane_coords: dict[str, int], rows: slice, cols: slice) -> np.ndarray:
        """(H, W) labels or (classes, H, W) probabilities of a region of one plane (slices may step)."""
        axes = self.layout_axes(key)
        return np.asarray(self.level0(key, mode="r")[plane_index(plane_coords, axes, rows, cols)])

    def read_plane(self, key: str, plane: int) -> np.ndarray:
        """One whole plane (numbered as the input's: row-major over t, then z), reading no other plane."""
        axes, level0 = self.layout_axes(key), self.level0(key, mode="r")
        coords = plane_coords(plane, {a: n for a, n in zip(axes, level0.shape, strict=True) if a in "tz"})
        return np.asarray(level0[plane_index(coords, axes, slice(None), slice(None))])

    def layout_axes(self, key: str) -> str:
        attrs = self.image_attrs(key)
        if attrs is None:
            raise OutputError(f"{self.url}: no output for image {key!r}")
        return "".join(a["name"] for a in attrs["multiscales"][0]["axes"])

    def build_pyramid(self, key: str, levels: int, stale: np.ndarray | None = None) -> int:
        """Down-sample level 0 by 2 per level (pipeline.io.pyramid); returns the levels built.

        `stale`: the level-0 chunks (plane axes, then rows, cols) written since the levels were last
        built; only the chunks above them are written again.  None: every level is made afresh.
        """
        group = zarr.open_group(self._store(), path=f"{self.group_name}/{image_name(key)}", mode="r+", zarr_format=2)
        source: Any = group["0"]
        attrs: dict[str, Any] = dict(group.attrs)
        axes = [a["name"] for a in attrs["multiscales"][0]["axes"]]
        mean = self.kind == "probabilities"
        built = update_levels(group, levels, mean, stale, WRITE_EVERY_CHUNK) if stale is not None and levels else None
        if built is None:
            # Only this imports dask: ~0.75 s of the driver's CPU, which a CPU model would lose beside it.
            built = write_levels(group, levels, mean, COMPRESSOR, WRITE_EVERY_CHUNK) if levels else 0
        scale = {
            a: s
            for a, s in zip(
                axes, attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"], strict=True
            )
        }
        layout_axes = "".join(axes)
        new = self._image_attrs(
            key,
            OutputLayout(layout_axes, source.shape, source.chunks, str(source.dtype)),
            scale,
            built + 1,
            attrs.get("segment-archive", {}),
        )
        group.attrs.update(new)
        return built
