"""Job -> deterministic work units: one unit is one output chunk of one plane of one image.

Pure arithmetic over image shapes; units are generated lazily, image by image,
so a planner never holds an archive's worth of units.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, GeometryError
from pipeline.model.geometry import NetGeometry
from pipeline.tiling import TileGrid, plan_tiles


@dataclass(frozen=True, slots=True)
class WorkUnit:
    key: str
    plane: int
    row: int  # chunk index along y
    col: int  # chunk index along x
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def id(self) -> str:
        return f"{self.plane}/{self.row}/{self.col}"

    @property
    def megapixels(self) -> float:
        return (self.y1 - self.y0) * (self.x1 - self.x0) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkUnit:
        return cls(str(d["key"]), *(int(d[k]) for k in ("plane", "row", "col", "y0", "y1", "x0", "x1")))


def check_chunks(chunks: tuple[int, int], geometry: NetGeometry, field: str = "output.chunks") -> None:
    """Block origins must sit on the pooling grid, so work units are multiples of the factor."""
    if any(c % geometry.factor for c in chunks):
        raise ConfigError(
            f"{field} {list(chunks)}: each must be a multiple of the model's down-sampling "
            f"factor {geometry.factor}, so that every block is predicted exactly"
        )


@dataclass(frozen=True, slots=True)
class UnitGrid:
    """The units of one image: planes x rows x cols of chunk-sized blocks, numbered plane by plane, row-major.

    A unit's number is its place in the manifest's one-byte-per-unit state map.
    """

    key: str
    n_planes: int
    shape: tuple[int, int]
    chunks: tuple[int, int]

    @property
    def rows(self) -> int:
        return -(-self.shape[0] // self.chunks[0])

    @property
    def cols(self) -> int:
        return -(-self.shape[1] // self.chunks[1])

    @property
    def size(self) -> int:
        return self.n_planes * self.rows * self.cols

    def index(self, unit: WorkUnit) -> int:
        return (unit.plane * self.rows + unit.row) * self.cols + unit.col

    def unit(self, index: int) -> WorkUnit:
        plane, rest = divmod(index, self.rows * self.cols)
        row, col = divmod(rest, self.cols)
        (height, width), (ch, cw) = self.shape, self.chunks
        y0, x0 = row * ch, col * cw
        return WorkUnit(self.key, plane, row, col, y0, min(y0 + ch, height), x0, min(x0 + cw, width))

    def units(self, start: int = 0, stop: int | None = None) -> Iterator[WorkUnit]:
        for index in range(start, self.size if stop is None else stop):
            yield self.unit(index)


def check_tile(tile: int, geometry: NetGeometry) -> None:
    """The requested tile must hold the net's margin on both sides and at least one pooling step of output."""
    if tile < geometry.min_tile:
        raise ConfigError(
            f"inference.tile {tile}: smaller than this model's smallest legal tile, {geometry.min_tile} "
            f"(a margin of {geometry.margin} px on each side plus {geometry.factor} output px); "
            f"set inference.tile to {geometry.min_tile} or more (larger tiles waste less)"
        )


def image_units(key: str, n_planes: int, shape: tuple[int, int], chunks: tuple[int, int]) -> Iterator[WorkUnit]:
    """Units of one image, plane by plane, row-major over chunks."""
    return UnitGrid(key, n_planes, shape, chunks).units()


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D boolean mask: pending units as a few ranges, not a list."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plane_coords(plane: int, sizes: dict[str, int]) -> dict[str, int]:
    """{t: i, z: j} of plane number `plane`, numbering planes row-major over `sizes` (t, then z)."""
    coords: dict[str, int] = {}
    rest = plane
    for axis in reversed(list(sizes)):
        rest, coords[axis] = divmod(rest, sizes[axis])
    return coords


def units_per_image(n_planes: int, shape: tuple[int, int], chunks: tuple[int, int]) -> int:
    return UnitGrid("", n_planes, shape, chunks).size


def unit_grid(unit: WorkUnit, geometry: NetGeometry, tile: int) -> tuple[TileGrid, slice, slice]:
    """Tiles of the unit's block and the window of the image they read (image coordinates)."""
    if unit.y0 % geometry.factor or unit.x0 % geometry.factor:
        raise GeometryError(f"unit {unit.key}:{unit.id} starts off the pooling grid (factor {geometry.factor})")
    grid = plan_tiles((unit.y1 - unit.y0, unit.x1 - unit.x0), geometry, tile)
    rows = slice(unit.y0 + grid.rows[0].input_start, unit.y0 + grid.rows[-1].input_stop)
    cols = slice(unit.x0 + grid.cols[0].input_start, unit.x0 + grid.cols[-1].input_stop)
    return grid, rows, cols
