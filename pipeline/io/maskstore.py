"""The OME-Zarr mask store, one image-label per input image (NGFF 0.4 on Zarr v2, or 0.5 on Zarr v3).

    <output>/labels/<name>/0, 1, 2 ...   output.kind labels | mask (uint8), instances (uint32)
    <output>/probabilities/<name>/0 ...  output.kind probabilities (float32/16, c axis);
                                         for instances, the object probability (c = 1)
    <output>.job/objects/<name>.csv      output.kind instances: one row per object, beside the store
                                         (pipeline.jobrecords), so the store holds only Zarr nodes

`output.format` picks the layout (pipeline.io.ngff): ngff-0.4 writes one file per
chunk, a chunk per work unit; ngff-0.5 writes chunks inside shards of one work
unit each, so a unit writes one file.  Either way a unit writes whole files, never
another unit's, and each file write is atomic (LocalStore: temp file + rename;
object stores: one PUT).  Readers (workers, verify, report) find the format from
the store itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zarr
from zarr.core.array_spec import ArrayConfigParams

from pipeline.errors import OutputError
from pipeline.io import ngff
from pipeline.io.archive import natural_key
from pipeline.io.image import LazyImage
from pipeline.io.pyramid import update_levels, write_levels
from pipeline.names import image_name
from pipeline.outputkinds import OutputKind, store_kind
from pipeline.plan import plane_coords

# Images whose level-0 array a store keeps open for writing: reopening reads its metadata, 2 ms a block.
OPEN_FOR_WRITING = 8
# Every chunk is written, even all-background: a missing chunk then always means a lost one (pipeline.verify).
WRITE_EVERY_CHUNK: ArrayConfigParams = {"write_empty_chunks": True}


@dataclass(frozen=True)
class OutputLayout:
    """Shape, chunks, dtype and axes of one image's output level 0."""

    axes: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    shards: tuple[int, ...] | None = None  # ngff-0.5: one work unit
    label_values: int | None = None  # a class image's labels 0..n-1, coloured in its image-label

    @classmethod
    def for_image(
        cls,
        image: LazyImage,
        kind: OutputKind,
        classes: int,
        chunks: tuple[int, int],
        unit: tuple[int, int] | None = None,
    ) -> OutputLayout:
        """Level 0 of one image's array of `kind` (`classes` channels if it has a c axis); `unit`
        (ngff-0.5): the shard, in whole `chunks`."""
        layout = replace(cls._unsharded(image, kind, classes, chunks), label_values=kind.label_values(classes))
        if unit is None:
            return layout
        shards = tuple(
            unit[0] if a == "y" else unit[1] if a == "x" else c for a, c in zip(layout.axes, layout.chunks, strict=True)
        )
        return replace(layout, shards=shards)

    @classmethod
    def _unsharded(cls, image: LazyImage, kind: OutputKind, classes: int, chunks: tuple[int, int]) -> OutputLayout:
        plane_axes = image.plane_axes
        sizes = [image.size(a) for a in plane_axes]
        height, width = image.plane_shape
        if kind.per_class:
            axes = "".join(a for a in "tczyx" if a in plane_axes or a in "cyx")
            shape = tuple(
                classes if a == "c" else image.size(a) if a in "tz" else height if a == "y" else width for a in axes
            )
            chunk = tuple(
                classes if a == "c" else 1 if a in "tz" else chunks[0] if a == "y" else chunks[1] for a in axes
            )
            return cls(axes, shape, chunk, kind.dtype)
        return cls(plane_axes + "yx", (*sizes, height, width), (*[1] * len(sizes), *chunks), kind.dtype)


def plane_index(plane_coords: dict[str, int], layout_axes: str, rows: slice, cols: slice) -> tuple[Any, ...]:
    """Index of a region of one plane in an output array with axes `layout_axes`."""
    return tuple(plane_coords.get(a, slice(None)) if a in "tzc" else rows if a == "y" else cols for a in layout_axes)


class MaskStore:
    """Create per-image outputs, write blocks, build pyramids; only the driver creates."""

    def __init__(self, url: str, kind: str, format: str | None = None) -> None:
        """`format`: the store's (output.format) when creating it; None: whatever the store already is."""
        self.url, self.kind, self._format = url, kind, format
        self.facts = store_kind(kind)  # its group, class axis and pyramid rule
        self.group_name = self.facts.group
        self._writing: dict[str, zarr.Array] = {}
        self._kind_group: zarr.Group | None = None  # labels/ or probabilities/, opened once
        self._other_kinds: dict[str, MaskStore] = {}

    @property
    def format(self) -> str:
        """The store's format: as given, else as found at the URL (looked at once), else ngff-0.4."""
        if self._format is None:
            self._format = self.existing_format() or "ngff-0.4"
        return self._format

    @property
    def zarr_format(self) -> ngff.ZarrFormat:
        return ngff.ZARR_FORMAT[self.format]

    def existing_format(self) -> ngff.NgffFormat | None:
        """The format of the store already at this URL, or None if there is none."""
        try:
            root = zarr.open_group(self._store(read_only=True), mode="r")
        except Exception:
            return None
        return "ngff-0.5" if root.metadata.zarr_format == 3 else "ngff-0.4"

    def _store(self, read_only: bool = False) -> Any:
        if "://" in self.url and not self.url.startswith("file://"):
            return zarr.storage.FsspecStore.from_url(self.url, read_only=read_only)
        return zarr.storage.LocalStore(self.url.removeprefix("file://"), read_only=read_only)

    def root(self) -> zarr.Group:
        try:
            return zarr.open_group(self._store(), mode="a", zarr_format=self.zarr_format)
        except Exception as exc:
            raise OutputError(f"{self.url}: cannot open the mask store: {type(exc).__name__}: {exc}") from None

    def of_kind(self, kind: str) -> MaskStore:
        """The store of `kind` at the same URL (instances also keep their probability), made once."""
        if kind == self.kind:
            return self
        return self._other_kinds.setdefault(kind, MaskStore(self.url, kind, self.format))

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
        settings = ngff.array_settings(self.format, layout.chunks, layout.shards, layout.axes)
        image.create_array("0", shape=layout.shape, dtype=layout.dtype, overwrite=True, **settings)

    def grow_image(self, key: str, layout: OutputLayout, provenance: dict[str, Any]) -> None:
        """Resize the image's level 0 in place to `layout` (its input grew or shrank); chunks inside both stay.

        The pyramid is rebuilt when the image is finished again (`build_pyramid`).
        """
        self._writing.pop(key, None)
        level0 = self.level0(key)
        if tuple(level0.shape) != layout.shape:
            level0.resize(layout.shape)
        self.open_image(key).attrs["segment-archive"] = provenance

    def open_image(self, key: str) -> zarr.Group:
        """The image's output group, to write."""
        path = f"{self.group_name}/{image_name(key)}"
        return zarr.open_group(self._store(), path=path, mode="r+", zarr_format=self.zarr_format)

    def list_labels(self, keys: list[str]) -> None:
        """Add the images to the labels group's list (NGFF), in one write for all of them.

        Once per plan, not per image: a list rewritten per image made planning quadratic in images.
        """
        if not self.facts.ngff_label or not keys:
            return
        group = self.root().require_group(self.group_name)
        listed = ngff.listed_labels(dict(group.attrs))
        names = sorted(set(listed) | {image_name(k) for k in keys}, key=natural_key)
        if names != listed:
            group.attrs.update(ngff.labels_attrs(self.format, names))

    def label_objects(self, key: str, properties: list[dict[str, Any]]) -> None:
        """List an image's objects in its image-label, each with a colour and `properties` ([]: list none)."""
        group = self.open_image(key)
        colors = ngff.object_colors([p["label-value"] for p in properties])
        label = ngff.image_label(self.format, colors, properties)
        group.attrs.update(ngff.ngff_update(self.format, dict(group.attrs), "image-label", label))

    def _image_attrs(
        self,
        key: str,
        layout: OutputLayout,
        scale: dict[str, float],
        levels: int,
        provenance: dict[str, Any],
        label: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An image group's attributes; `label`: its image-label as it stands (else made for `layout`)."""
        multiscales = ngff.multiscales_attrs(self.format, key, layout.axes, scale, levels, self.facts.mean_pyramid)
        keys: dict[str, Any] = {"multiscales": [multiscales]}
        if self.facts.ngff_label:
            colors = ngff.class_colors(layout.label_values) if layout.label_values else None
            keys["image-label"] = label if label is not None else ngff.image_label(self.format, colors)
        return ngff.image_attrs(self.format, keys, provenance)

    def level0(self, key: str, mode: str = "r+") -> zarr.Array:
        try:
            path = f"{self.group_name}/{image_name(key)}/0"
            return zarr.open_array(self._store(), path=path, mode=mode, zarr_format=self.zarr_format)
        except Exception as exc:
            raise OutputError(f"{self.url}: output of {key!r} is missing or unreadable: {exc}") from None

    def image_attrs(self, key: str) -> dict[str, Any] | None:
        try:
            group = self.image_group(image_name(key))
        except OutputError:
            return None
        return dict(group.attrs)

    def written_kind(self, key: str) -> OutputKind:
        """The kind of the image's arrays in this store's group, from the provenance written with them:
        the job's output kind, or (in probabilities/) the object probability an instances job keeps."""
        provenance = (self.image_attrs(key) or {}).get("segment-archive", {})
        job_kind = store_kind(provenance.get("output_kind", self.kind))
        return job_kind if job_kind.group == self.group_name else job_kind.net_output

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
        return "".join(a["name"] for a in ngff.multiscale(attrs)["axes"])

    def build_pyramid(self, key: str, levels: int, stale: np.ndarray | None = None) -> int:
        """Down-sample level 0 by 2 per level (pipeline.io.pyramid); returns the levels built.

        `stale`: the level-0 units (plane axes, then rows, cols) written since the levels were last
        built; only the chunks above them are written again.  None: every level is made afresh.
        """
        group = self.open_image(key)
        source: Any = group["0"]
        attrs: dict[str, Any] = dict(group.attrs)
        entry = ngff.multiscale(attrs)
        axes = "".join(a["name"] for a in entry["axes"])
        mean = self.facts.mean_pyramid
        built = update_levels(group, levels, mean, stale, WRITE_EVERY_CHUNK) if stale is not None and levels else None
        if built is None:
            # Only this imports dask: ~0.75 s of the driver's CPU, which a CPU model would lose beside it.
            built = write_levels(group, levels, mean, self.format, WRITE_EVERY_CHUNK) if levels else 0
        scale = dict(zip(axes, entry["datasets"][0]["coordinateTransformations"][0]["scale"], strict=True))
        layout = OutputLayout(axes, source.shape, source.chunks, str(source.dtype))
        label = ngff.ngff_keys(attrs).get("image-label")
        group.attrs.update(self._image_attrs(key, layout, scale, built + 1, attrs.get("segment-archive", {}), label))
        return built
