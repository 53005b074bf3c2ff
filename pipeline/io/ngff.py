"""OME-NGFF metadata and array layout of the mask store, per format (pure: dicts in, dicts out).

* `ngff-0.4`: Zarr v2, the NGFF keys at the top of `.zattrs`, one file per chunk.
* `ngff-0.5`: Zarr v3, the NGFF keys under `ome` in `zarr.json`, chunks inside
  shards (`sharding_indexed`) of one work unit each: a unit writes one file.

Spec: https://ngff.openmicroscopy.org/0.5/ (multiscales, labels, image-label).
"""

from __future__ import annotations

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
    fmt: str, name: str, axes: str, scale: dict[str, float], levels: int
) -> dict[str, Any]:  # fmt: skip
    """The `multiscales` entry of an image: one dataset per level, each halving y and x."""
    datasets = []
    for level in range(levels):
        factor = [2**level if a in "yx" else 1 for a in axes]
        base = [scale.get(a, 1.0) for a in axes]
        transform = {"type": "scale", "scale": [b * f for b, f in zip(base, factor, strict=True)]}
        datasets.append({"path": str(level), "coordinateTransformations": [transform]})
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


def image_label(fmt: str) -> dict[str, Any]:
    label: dict[str, Any] = {"source": {"image": "../../"}}
    return {"version": version(fmt), **label} if fmt == "ngff-0.4" else label


def labels_attrs(fmt: str, names: list[str]) -> dict[str, Any]:
    return {"labels": names} if fmt == "ngff-0.4" else {"ome": {"version": version(fmt), "labels": names}}


def ngff_keys(attrs: dict[str, Any]) -> dict[str, Any]:
    """The NGFF keys of a group's attributes, whichever the format (0.5 nests them under "ome")."""
    nested = attrs.get("ome")
    return nested if isinstance(nested, dict) else attrs


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
