"""Does the output still hold what the manifest says was written?  (`status --verify`, `submit --verify`)

The manifest records a unit as done once its chunk is written; a chunk lost later
(a disk repaired, a bucket lifecycle rule, a hand `rm`) would otherwise be reported
complete forever.  Verification lists each image's output arrays (listings only,
no chunk is read), finds the finished units without a level-0 chunk, and the
pyramid levels with fewer chunks than their grid.  `submit --verify` then makes
exactly those units pending again (and a lost pyramid or label group makes its
image unfinished), so the run redoes them and nothing else.

Every finished unit writes its chunk, even an all-background one
(`write_empty_chunks`), so "no chunk" always means "lost".  Stores written by
earlier versions left such chunks out: their first verification redoes them once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr

from pipeline import outputkinds
from pipeline.errors import OutputError
from pipeline.io import ngff
from pipeline.io.maskstore import MaskStore
from pipeline.io.pyramid import stored_block
from pipeline.manifest import INSTANCE_PASS, NET_PASS, PYRAMID, Manifest
from pipeline.plan import UnitGrid, plane_coords
from pipeline.planner import finished


@dataclass
class ImageCheck:
    """What one image's output lacks: the units (per pass) whose chunk is gone, and damage that needs a finish."""

    name: str  # the image's folder name in the store and the manifest
    lost_units: dict[str, np.ndarray] = field(default_factory=dict)  # pass -> unit numbers
    lost_group: str = ""  # the store group that is gone, if one is: the image is redone whole
    lost_levels: list[str] = field(default_factory=list)  # pyramid levels missing chunks

    @property
    def intact(self) -> bool:
        return not self.lost_group and not self.lost_levels and not any(len(u) for u in self.lost_units.values())

    def describe(self) -> str:
        if self.lost_group:
            return f"{self.name}: its output group {self.lost_group} is gone; the whole image will be redone"
        parts = []
        for pass_name, units in self.lost_units.items():
            if len(units):
                label = "" if pass_name == NET_PASS else f" of the {pass_name} pass"
                parts.append(f"{len(units)} finished unit(s){label} without a chunk (units {unit_list(units)})")
        if self.lost_levels:
            parts.append(f"pyramid level(s) {', '.join(self.lost_levels)} incomplete")
        return f"{self.name}: " + "; ".join(parts)


def unit_list(units: np.ndarray, shown: int = 5) -> str:
    head = ", ".join(str(int(u)) for u in units[:shown])
    return head + (f", ... {len(units) - shown} more" if len(units) > shown else "")


def store_kinds(kind: str) -> dict[str, str]:
    """Which store kind each pass writes: the net its semantic output, the instance pass the instances."""
    output = outputkinds.store_kind(kind)
    kinds = {NET_PASS: output.net_output.name}
    if output.instance_pass:
        kinds[INSTANCE_PASS] = output.name
    return kinds


def present_chunks(fs: Any, folder: str) -> set[str]:
    """Chunk keys (relative to the array's folder) that exist: one listing, no chunk read."""
    fs.invalidate_cache(folder)  # object-store file systems cache listings; workers wrote since
    if not fs.exists(folder):
        return set()
    return {
        path[len(folder) + 1 :]
        for path in fs.find(folder)
        if not path.rsplit("/", 1)[-1].startswith(".") and not path.endswith("zarr.json")
    }


def chunk_key(array: Any, axes: str, grid: UnitGrid, index: int) -> str:
    """The level-0 file that unit `index` writes (a unit is one chunk, or one shard, of one plane)."""
    unit = grid.unit(index)
    planes = {a: n for a, n in zip(axes, array.shape, strict=True) if a in "tz"}
    where = plane_coords(unit.plane, planes)
    coords = tuple(where[a] if a in "tz" else 0 if a == "c" else unit.row if a == "y" else unit.col for a in axes)
    return str(array.metadata.encode_chunk_key(coords))


def multiscale(group: zarr.Group) -> dict[str, Any]:
    """The image's NGFF multiscales entry (axes, datasets), in either format."""
    return ngff.multiscale(dict(group.attrs))


def lost_units(fs: Any, root: str, store: MaskStore, name: str, states: np.ndarray) -> np.ndarray | None:
    """Finished units whose level-0 chunk is gone; None when the image's group is gone."""
    group_path = f"{store.group_name}/{name}"
    try:
        group = store.image_group(name)
        array: Any = group["0"]
    except (OutputError, KeyError):
        return None
    axes = "".join(a["name"] for a in multiscale(group)["axes"])
    planes = math.prod(n for a, n in zip(axes, array.shape, strict=True) if a in "tz")
    unit = stored_block(array)  # a unit: a chunk, or a shard
    grid = UnitGrid(name, planes, (array.shape[-2], array.shape[-1]), (unit[-2], unit[-1]))
    if grid.size != len(states):
        return np.arange(0)  # the planner sees the input changed and redoes the image anyway
    present = present_chunks(fs, f"{root}/{group_path}/0")
    done = np.flatnonzero(finished(states))
    return np.array([i for i in done if chunk_key(array, axes, grid, int(i)) not in present], dtype=np.int64)


def incomplete_levels(fs: Any, root: str, store: MaskStore, name: str) -> list[str]:
    """Pyramid levels (1, 2 ...) listed in the image's multiscales with fewer chunks than their grid."""
    group_path = f"{store.group_name}/{name}"
    group = store.image_group(name)
    lost = []
    for dataset in multiscale(group)["datasets"][1:]:
        level = str(dataset["path"])
        try:
            array: Any = group[level]
        except KeyError:
            lost.append(level)
            continue
        stored = math.prod(-(-n // b) for n, b in zip(array.shape, stored_block(array), strict=True))
        if len(present_chunks(fs, f"{root}/{group_path}/{level}")) < stored:
            lost.append(level)
    return lost


def check_image(fs: Any, root: str, manifest: Manifest, name: str, kind: str) -> ImageCheck:
    check = ImageCheck(name)
    for pass_name, store_kind in store_kinds(kind).items():
        states = manifest.folder_unit_states(name, pass_name)
        if states is None or not finished(states).any():
            continue
        store = MaskStore(manifest.url, store_kind)
        lost = lost_units(fs, root, store, name, states)
        if lost is None:
            check.lost_group = f"{store.group_name}/{name}"
            return check
        check.lost_units[pass_name] = lost
        if manifest.image_record_of(name) is not None:  # a finished image: its pyramid was built
            check.lost_levels += [f"{store.group_name} {level}" for level in incomplete_levels(fs, root, store, name)]
    return check


def verify_output(output_url: str, kind: str) -> list[ImageCheck]:
    """Every image with finished units in the manifest, checked against the store's listings."""
    manifest = Manifest(output_url)
    fs, root = fsspec.core.url_to_fs(output_url.rstrip("/"))
    return [check_image(fs, root, manifest, name, kind) for name in manifest.state_folders(NET_PASS)]


def reopen_lost(manifest: Manifest, checks: list[ImageCheck]) -> None:
    """Make the next run redo what verification found lost, and only that."""
    for check in checks:
        if check.lost_group:
            manifest.forget_folder(check.name)
            continue
        for pass_name, units in check.lost_units.items():
            manifest.reopen_units(check.name, pass_name, units)
        if check.lost_levels:
            manifest.forget_states(check.name, PYRAMID)  # every level is made afresh
            manifest.unfinish(check.name)


def verify_lines(checks: list[ImageCheck]) -> list[str]:
    """What `status --verify` prints: a line per damaged image, then the verdict."""
    damaged = [c for c in checks if not c.intact]
    lines = [c.describe() for c in damaged]
    if damaged:
        lines.append(
            f"verify: {len(damaged)} of {len(checks)} image(s) lost output; "
            "`segment-archive submit --verify JOB` redoes exactly what is missing"
        )
    else:
        lines.append(f"verify: every finished unit of {len(checks)} image(s) has its chunk")
    return lines
