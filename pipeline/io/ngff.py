"""OME-NGFF metadata and array layout of the mask store, per format (pure: dicts in, dicts out).

* `ngff-0.4`: Zarr v2, the NGFF keys at the top of `.zattrs`, one file per chunk.
* `ngff-0.5`: Zarr v3, the NGFF keys under `ome` in `zarr.json`, chunks inside
  shards (`sharding_indexed`) of one work unit each: a unit writes one file.

Spec: https://ngff.openmicroscopy.org/0.5/ (multiscales, labels, image-label).
"""

from __future__ import annotations

import colorsys
from typing import Any, Literal

import numcodecs
from zarr.codecs import BloscCodec

FORMATS = ("ngff-0.4", "ngff-0.5")
ZarrFormat = Literal[2, 3]
NgffFormat = Literal["ngff-0.4", "ngff-0.5"]
ZARR_FORMAT: dict[str, ZarrFormat] = {"ngff-0.4": 2, "ngff-0.5": 3}
SPACE_AXES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# Blosc-zstd, bit-shuffled: the same compression in both formats (v2 numcodecs, v3 codec).
COMPRESSOR_V2 = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
COMPRESSOR_V3 = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def version(fmt: str) -> str:
    return fmt.removeprefix("ngff-")


def multiscales_attrs(
    fmt: str, name: str, axes: str, scale: dict[str, float], levels: int, mean: bool = False
) -> dict[str, Any]:  # fmt: skip
    """The `multiscales` entry of an image: one dataset per level, each halving y and x.

    `mean`: levels are means of 2 x 2 pixels, so a level's pixel centre lies between those it
    averages, half a level-0 pixel on from the first of them per halving: (factor - 1) / 2
    level-0 pixels.  Nearest levels keep every other pixel, centred on it: no translation.
    """
    datasets = []
    base = [scale.get(a, 1.0) for a in axes]
    for level in range(levels):
        factor = [2**level if a in "yx" else 1 for a in axes]
        transforms: list[dict[str, Any]] = [
            {"type": "scale", "scale": [b * f for b, f in zip(base, factor, strict=True)]}
        ]
        if mean and level:
            shift = [b * (f - 1) / 2 for b, f in zip(base, factor, strict=True)]
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    entry: dict[str, Any] = {"name": name, "axes": [{"name": a, "type": SPACE_AXES[a]} for a in axes]}
    if fmt == "ngff-0.4":
        entry["version"] = version(fmt)  # 0.5 keeps the version once, in "ome"
    entry["datasets"] = datasets
    return entry


def image_attrs(fmt: str, ngff: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """An image group's attributes: the NGFF keys where the format wants them, and our provenance beside."""
    if fmt == "ngff-0.4":
        return {**ngff, "segment-archive": provenance}
    return {"ome": {"version": version(fmt), **ngff}, "segment-archive": provenance}


def image_label(
    fmt: str, colors: list[dict[str, Any]] | None = None, properties: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `image-label` entry; `colors` and `properties` list the same label values when both are given."""
    label: dict[str, Any] = {"source": {"image": "../../"}}
    if colors:
        label["colors"] = colors
    if properties:
        label["properties"] = properties
    return {"version": version(fmt), **label} if fmt == "ngff-0.4" else label


# tab10's colours: classes told apart at a glance, in the order most viewers use.
CLASS_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def class_colors(values: int) -> list[dict[str, Any]]:
    """`image-label` colors of a class image of `values` labels: background (0) transparent, classes opaque."""
    colors = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    for value in range(1, values):
        colors.append({"label-value": value, "rgba": [*CLASS_COLORS[(value - 1) % len(CLASS_COLORS)], 255]})
    return colors


def object_colors(values: list[int]) -> list[dict[str, Any]]:
    """`image-label` colors of objects: background (0) transparent, each object opaque, with hues a golden
    ratio apart so that neighbours (close ids, numbered in raster order) differ."""
    colors = []
    for value in values:
        r, g, b = colorsys.hsv_to_rgb((value * 0.6180339887) % 1.0, 0.75, 1.0)
        rgba = [round(r * 255), round(g * 255), round(b * 255), 255] if value else [0, 0, 0, 0]
        colors.append({"label-value": value, "rgba": rgba})
    return colors


def labels_attrs(fmt: str, names: list[str]) -> dict[str, Any]:
    return {"labels": names} if fmt == "ngff-0.4" else {"ome": {"version": version(fmt), "labels": names}}


def ngff_keys(attrs: dict[str, Any]) -> dict[str, Any]:
    """The NGFF keys of a group's attributes, whichever the format (0.5 nests them under "ome")."""
    nested = attrs.get("ome")
    return nested if isinstance(nested, dict) else attrs


def ngff_update(fmt: str, attrs: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The attributes update that sets one NGFF key of a group whose attributes are `attrs`."""
    if fmt == "ngff-0.4":
        return {key: value}
    return {"ome": {**attrs.get("ome", {}), key: value}}


def listed_labels(attrs: dict[str, Any]) -> list[str]:
    return list(ngff_keys(attrs).get("labels", []))


def multiscale(attrs: dict[str, Any]) -> dict[str, Any]:
    """The first multiscales entry of an image group's attributes."""
    entry: dict[str, Any] = ngff_keys(attrs)["multiscales"][0]
    return entry


def array_settings(fmt: str, chunks: tuple[int, ...], shards: tuple[int, ...] | None, axes: str) -> dict[str, Any]:
    """Keyword arguments of zarr's create_array for a level of the store."""
    if fmt == "ngff-0.4":
        return {
            "chunks": chunks,
            "compressors": COMPRESSOR_V2,
            "fill_value": 0,
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
        }
    return {
        "chunks": chunks,
        "shards": shards,
        "compressors": COMPRESSOR_V3,
        "fill_value": 0,
        "dimension_names": list(axes),
    }
