"""The rows that carry work units through Ray Data, and what the driver reads back from them (no Ray here).

One codec both ways: `ImageRows` makes a unit's row on the way out (in Ray's read
tasks, from a unit number); `Outcome.of` reads a finished row on the way back.
Rows stay plain dicts of numpy-friendly scalars because that is what Ray Data's
blocks hold; every column is named here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.manifest import FailureRecord
from pipeline.outcome import FailureKind, UnitState
from pipeline.plan import UnitGrid, WorkUnit, plane_coords

# Columns every finished row brings back to the driver (no pixels).
OUTCOME_COLUMNS = ("key", "index", "plane", "row", "col", "y0", "y1", "x0", "x1", "error", "failure", "attempts")


def fresh_columns() -> dict[str, Any]:
    """A unit's outcome columns before any stage has run."""
    return {"error": "", "failure": "", "attempts": 0, "skipped": False}


@dataclass(frozen=True)
class ImageRows:
    """What every row of one image carries besides its unit; small, so that Ray's read tasks carry it whole."""

    grid: UnitGrid
    input: str  # input fingerprint
    out_axes: str
    scale: float
    offset: float
    plane_sizes: tuple[tuple[str, int], ...] = ()

    def row(self, index: int) -> dict[str, Any]:
        unit = self.grid.unit(index)
        coords = plane_coords(unit.plane, dict(self.plane_sizes))
        return {
            **unit.to_dict(),
            "index": index,
            "t": coords.get("t", 0),
            "z": coords.get("z", 0),
            "scale": self.scale,
            "offset": self.offset,
            "input": self.input,
            "out_axes": self.out_axes,
            **fresh_columns(),
        }

    def rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        for index in range(start, stop):
            yield self.row(index)


@dataclass(frozen=True)
class Outcome:
    """A finished row as the driver commits it."""

    key: str
    index: int
    unit: WorkUnit
    state: UnitState
    attempts: int
    failure: FailureRecord | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Outcome:
        unit = WorkUnit.from_dict(row)
        attempts = max(1, int(row["attempts"]))
        if row["error"]:
            kind = str(row["failure"] or FailureKind.BUG.value)
            failure = FailureRecord(unit.id, int(row["index"]), kind, attempts, str(row["error"]))
            return cls(unit.key, int(row["index"]), unit, UnitState.FAILED, attempts, failure)
        state = UnitState.SKIPPED if row.get("skipped") else UnitState.DONE
        return cls(unit.key, int(row["index"]), unit, state, attempts, None)

    @property
    def megapixels(self) -> float:
        return self.unit.megapixels if self.state.finished else 0.0
