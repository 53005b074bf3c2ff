"""Job -> deterministic work units: one unit is one output chunk of one plane of one image.

Pure arithmetic over image shapes; units are generated lazily, image by image,
so a planner never holds an archive's worth of units.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

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
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def check_chunks(chunks: tuple[int, int], geometry: NetGeometry) -> None:
    """Block origins must sit on the pooling grid, so chunks are multiples of the factor."""
    if any(c % geometry.factor for c in chunks):
        raise ConfigError(
            f"output.chunks {list(chunks)}: each must be a multiple of the model's down-sampling "
            f"factor {geometry.factor}, so that every block is predicted exactly"
        )


def image_units(key: str, n_planes: int, shape: tuple[int, int], chunks: tuple[int, int]) -> Iterator[WorkUnit]:
    """Units of one image, plane by plane, row-major over chunks."""
    height, width = shape
    ch, cw = chunks
    for plane in range(n_planes):
        for r, y0 in enumerate(range(0, height, ch)):
            for c, x0 in enumerate(range(0, width, cw)):
                yield WorkUnit(key, plane, r, c, y0, min(y0 + ch, height), x0, min(x0 + cw, width))


def plane_coords(plane: int, sizes: dict[str, int]) -> dict[str, int]:
    """{t: i, z: j} of plane number `plane`, numbering planes row-major over `sizes` (t, then z)."""
    coords: dict[str, int] = {}
    rest = plane
    for axis in reversed(list(sizes)):
        rest, coords[axis] = divmod(rest, sizes[axis])
    return coords


def units_per_image(n_planes: int, shape: tuple[int, int], chunks: tuple[int, int]) -> int:
    return n_planes * -(-shape[0] // chunks[0]) * -(-shape[1] // chunks[1])


def unit_grid(unit: WorkUnit, geometry: NetGeometry, tile: int) -> tuple[TileGrid, slice, slice]:
    """Tiles of the unit's block and the window of the image they read (image coordinates)."""
    if unit.y0 % geometry.factor or unit.x0 % geometry.factor:
        raise GeometryError(f"unit {unit.key}:{unit.id} starts off the pooling grid (factor {geometry.factor})")
    grid = plan_tiles((unit.y1 - unit.y0, unit.x1 - unit.x0), geometry, tile)
    rows = slice(unit.y0 + grid.rows[0].input_start, unit.y0 + grid.rows[-1].input_stop)
    cols = slice(unit.x0 + grid.cols[0].input_start, unit.x0 + grid.cols[-1].input_stop)
    return grid, rows, cols
