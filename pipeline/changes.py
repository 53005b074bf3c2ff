"""What changed in an image's input since its units were computed, unit by unit (pure arithmetic, no IO).

An input is stored in pieces: the chunk (or shard) files of a Zarr array, the
files of a slice stack, or a TIFF file as one piece.  `InputPieces` keeps a
stamp digest per piece (size and modification time or ETag, from a listing:
never pixels).  A unit's output depends on exactly the pixels of its mirrored
window, so a rerun redoes a unit if and only if

* it is new (the image grew), or
* its output block or its window's mirror changed (the border moved), or
* a piece under its window changed.

Comparing piece digests at plan time is the same as keeping a fingerprint per
unit over the pieces its window reads, at a byte per piece instead of a hash
per unit.  What cannot be localised (dtype, channels, axes, the piece grid, a
store without stamps) changes the whole image, with the reason.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import OutputError
from pipeline.model.geometry import NetGeometry
from pipeline.plan import UnitGrid, plane_coords, unit_grid
from pipeline.tiling import reflect_indices, source_span


class UnitChange(enum.IntEnum):
    UNCHANGED = 0
    CHANGED = 1
    NEW = 2


def stamp_digest(*parts: object) -> int:
    """A piece's stamp as a nonzero 64-bit number (0 means "no such piece": it reads as the fill value)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1


@dataclass(frozen=True, eq=False)
class InputPieces:
    """The stored pieces of one image's input: their grid over the image's axes and a stamp digest each.

    `whole` says why changes inside this input cannot be localised ("" when they can): a
    TIFF file is one piece, and a store without modification stamps cannot be compared at all.
    """

    axes: str
    shape: tuple[int, ...]
    piece: tuple[int, ...]  # shape of one piece, along `axes`
    digests: np.ndarray  # uint64, shape = the piece grid
    layout: str  # digest of what cannot be localised: dtype, channels, codecs, piece shape, attributes
    whole: str = ""
    comparable: bool = True  # False: no usable stamps, so the input must be taken as changed every run

    def __post_init__(self) -> None:
        grid = tuple(-(-s // p) for s, p in zip(self.shape, self.piece, strict=True))
        if self.digests.shape != grid or self.digests.dtype != np.uint64:
            raise ValueError(
                f"piece digests of shape {self.digests.shape} {self.digests.dtype}, expected {grid} uint64"
            )

    @property
    def fingerprint(self) -> str:
        """The whole input's fingerprint: equal iff nothing changed (what an image's 'complete' record keeps)."""
        h = hashlib.sha256(json.dumps([self.axes, self.shape, self.piece, self.layout, self.whole]).encode())
        h.update(self.digests.tobytes())
        if not self.comparable:
            h.update(b"unstamped")
        return h.hexdigest()[:32]

    def to_bytes(self) -> bytes:
        meta = {"axes": self.axes, "shape": self.shape, "piece": self.piece, "layout": self.layout,
                "whole": self.whole, "comparable": self.comparable}  # fmt: skip
        buffer = io.BytesIO()
        np.savez_compressed(buffer, digests=self.digests, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> InputPieces:
        """Read back `to_bytes` (no pickles); OutputError naming `where` if damaged."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode())
                digests = np.asarray(npz["digests"], np.uint64)
            return cls(
                str(meta["axes"]), tuple(meta["shape"]), tuple(meta["piece"]), digests,
                str(meta["layout"]), str(meta["whole"]), bool(meta["comparable"]),
            )  # fmt: skip
        except Exception as exc:
            raise OutputError(f"{where}: input record is corrupt: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Footprint:
    """How one image's units read their input: the unit grid, the plane axes' sizes, and the net's window rule."""

    grid: UnitGrid
    plane_sizes: dict[str, int]
    geometry: NetGeometry
    tile: int

    @classmethod
    def of(cls, pieces: InputPieces, key: str, chunks: tuple[int, int], geometry: NetGeometry, tile: int) -> Footprint:
        """The footprint of the image `pieces` describes (its shape and axes are all it takes)."""
        size = dict(zip(pieces.axes, pieces.shape, strict=True))
        plane_sizes = {a: size[a] for a in "tz" if a in size}
        n_planes = int(np.prod(list(plane_sizes.values()), dtype=np.int64))
        return cls(UnitGrid(key, n_planes, (size["y"], size["x"]), chunks), plane_sizes, geometry, tile)

    def windows(self, axis: int) -> list[tuple[int, int]]:
        """[start, stop) of the (unmirrored) window of each unit row (axis 0) or column (axis 1)."""
        count, step = (self.grid.rows, self.grid.cols) if axis == 0 else (self.grid.cols, 1)
        spans = []
        for i in range(count):
            _, rows, cols = unit_grid(self.grid.unit(i * step), self.geometry, self.tile)
            window = rows if axis == 0 else cols
            spans.append((int(window.start), int(window.stop)))
        return spans


@dataclass
class ImageChange:
    """Per unit of the new grid: unchanged, changed or new; where it was in the old grid; and why."""

    units: np.ndarray  # uint8 UnitChange per unit
    old_index: np.ndarray  # int64: the unit's number in the old grid, -1 if it had none
    reason: str = ""
    whole: bool = False  # nothing of the old output can be kept: the image's output is made afresh
    recorded: str = ""  # the fingerprint of the input record compared against ("" when there was none)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {c.name.lower(): int(np.count_nonzero(self.units == c)) for c in UnitChange}

    @property
    def any(self) -> bool:
        return self.counts["unchanged"] != len(self.units)

    def planes_touched(self, grid: UnitGrid) -> np.ndarray:
        """Plane numbers with a unit that is not unchanged (their instance pass must merge again)."""
        per_plane = (self.units != UnitChange.UNCHANGED).reshape(grid.n_planes, -1)
        return np.flatnonzero(per_plane.any(axis=1))

    def describe(self) -> str:
        c = self.counts
        text = f"{c['unchanged']} unchanged, {c['changed']} changed, {c['new']} new"
        return f"{text} ({self.reason})" if self.reason else text


def all_new(grid: UnitGrid, reason: str) -> ImageChange:
    return ImageChange(
        np.full(grid.size, UnitChange.NEW, np.uint8), np.full(grid.size, -1, np.int64), reason, whole=True
    )


def all_changed(grid: UnitGrid, reason: str) -> ImageChange:
    return ImageChange(np.full(grid.size, UnitChange.CHANGED, np.uint8), np.full(grid.size, -1, np.int64), reason, True)


def whole_image_reason(old: InputPieces, new: InputPieces) -> str:
    """Why every unit must be redone, or "" when the change can be localised to units."""
    if not new.comparable:
        return new.whole or "the input's store gives no modification stamps, so changes cannot be detected"
    if old.axes != new.axes:
        return f"axes changed ({old.axes} -> {new.axes})"
    if old.layout != new.layout or old.piece != new.piece:
        return "dtype, channels, chunking, codecs or attributes of the input changed"
    if new.whole and not np.array_equal(old.digests, new.digests):
        return new.whole
    return ""


def changed_pieces(old: InputPieces, new: InputPieces) -> np.ndarray:
    """Bool over the new piece grid: a piece whose stamp differs, or that the old grid did not have."""
    changed = np.ones(new.digests.shape, bool)
    common = tuple(slice(0, min(a, b)) for a, b in zip(old.digests.shape, new.digests.shape, strict=True))
    changed[common] = old.digests[common] != new.digests[common]
    return changed


def _plane_pieces(changed: np.ndarray, pieces: InputPieces, fp: Footprint) -> np.ndarray:
    """(planes, piece rows, piece cols): a changed piece under each plane's (y, x) piece grid."""
    axes = pieces.axes
    other = tuple(i for i, a in enumerate(axes) if a not in "tzyx")  # channels: any channel changed counts
    reduced = np.asarray(changed.any(axis=other) if other else changed)
    kept = [a for a in axes if a in "tzyx"]
    order = [a for a in "tzyx" if a in kept]  # plane axes first, then y, x, whatever the input's order
    reduced = reduced.transpose([kept.index(a) for a in order])
    coords = [plane_coords(p, fp.plane_sizes) for p in range(fp.grid.n_planes)]
    index = tuple(np.array([c.get(a, 0) // pieces.piece[axes.index(a)] for c in coords]) for a in order if a in "tz")
    per_plane = reduced[index] if index else reduced[None]
    return per_plane.reshape(fp.grid.n_planes, reduced.shape[-2], reduced.shape[-1])


def _spans(windows: list[tuple[int, int]], n: int, piece: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last piece each window reads (mirrored into [0, n))."""
    lo, hi = zip(*(source_span(a, b, n) for a, b in windows), strict=True)
    return np.array(lo) // piece, (np.array(hi) - 1) // piece + 1


def _same_mirror(old: list[tuple[int, int]], old_n: int, new: list[tuple[int, int]], new_n: int) -> np.ndarray:
    """Per new row/column present in both grids: the same window, read through the same mirror."""
    same = np.zeros(len(new), bool)
    for i in range(min(len(old), len(new))):
        if old[i] == new[i]:
            same[i] = np.array_equal(reflect_indices(*old[i], old_n), reflect_indices(*new[i], new_n))
    return same


def compare(old: InputPieces, old_fp: Footprint, new: InputPieces, new_fp: Footprint) -> ImageChange:
    """Which of the new grid's units must be redone, given the input their committed results were made from."""
    reason = whole_image_reason(old, new)
    if reason:
        return all_changed(new_fp.grid, reason)  # made afresh: its new record is written whatever the old
    grid, old_grid = new_fp.grid, old_fp.grid
    height, width = grid.shape
    rows_new, cols_new = new_fp.windows(0), new_fp.windows(1)
    y_axis, x_axis = new.axes.index("y"), new.axes.index("x")
    # Changed pieces under each unit's mirrored window: a 2-D prefix sum per plane, read at each unit's span.
    per_plane = _plane_pieces(changed_pieces(old, new), new, new_fp).astype(np.int64)
    sums = np.pad(per_plane.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    r0, r1 = _spans(rows_new, height, new.piece[y_axis])
    c0, c1 = _spans(cols_new, width, new.piece[x_axis])
    hits = (
        sums[:, r1[:, None], c1[None, :]]
        - sums[:, r0[:, None], c1[None, :]]
        - sums[:, r1[:, None], c0[None, :]]
        + sums[:, r0[:, None], c0[None, :]]
    )
    # Where each new unit was in the old grid: same plane coordinates, row and column.
    old_plane = _old_planes(old_fp, new_fp)
    rows_old, cols_old = old_fp.windows(0), old_fp.windows(1)
    same_rows = _same_mirror(rows_old, old_grid.shape[0], rows_new, height) & _same_blocks(old_grid, grid, 0)
    same_cols = _same_mirror(cols_old, old_grid.shape[1], cols_new, width) & _same_blocks(old_grid, grid, 1)
    r = np.arange(grid.rows)[None, :, None]
    c = np.arange(grid.cols)[None, None, :]
    p = old_plane[:, None, None]
    existed = (p >= 0) & (r < old_grid.rows) & (c < old_grid.cols)
    old_index = np.where(existed, (p * old_grid.rows + r) * old_grid.cols + c, -1).reshape(-1)
    same = same_rows[None, :, None] & same_cols[None, None, :] & (hits == 0)
    units = np.where(~existed, UnitChange.NEW, np.where(same, UnitChange.UNCHANGED, UnitChange.CHANGED))
    resized = grid.size != old_grid.size or grid.shape != old_grid.shape
    reason = ("grown" if grid.size >= old_grid.size else "shrunk") if resized else ""
    return ImageChange(units.reshape(-1).astype(np.uint8), old_index.astype(np.int64), reason, recorded=old.fingerprint)


def _same_blocks(old: UnitGrid, new: UnitGrid, axis: int) -> np.ndarray:
    """Per new row/column: the old grid had it, with the same extent (the last one may have been cut short)."""
    n_new, n_old = (new.rows, old.rows) if axis == 0 else (new.cols, old.cols)
    chunk, new_len, old_len = new.chunks[axis], new.shape[axis], old.shape[axis]
    i = np.arange(n_new)
    same: np.ndarray = (i < n_old) & (np.minimum((i + 1) * chunk, new_len) == np.minimum((i + 1) * chunk, old_len))
    return same


def _old_planes(old: Footprint, new: Footprint) -> np.ndarray:
    """Per new plane: its number in the old image (same t, z coordinates), or -1 if the old one had none."""
    result = np.full(new.grid.n_planes, -1, np.int64)
    for plane in range(new.grid.n_planes):
        coords = plane_coords(plane, new.plane_sizes)
        if all(coords.get(a, 0) < old.plane_sizes.get(a, 1) for a in new.plane_sizes):
            number = 0
            for a in old.plane_sizes:
                number = number * old.plane_sizes[a] + coords.get(a, 0)
            result[plane] = number
    return result


def carried_states(states: np.ndarray | None, change: ImageChange, pending: int) -> np.ndarray:
    """The new grid's states: an unchanged unit keeps its old state, every other one is `pending`."""
    result = np.full(len(change.units), pending, np.uint8)
    if states is None:
        return result
    keep = (change.units == UnitChange.UNCHANGED) & (change.old_index >= 0) & (change.old_index < len(states))
    result[keep] = states[change.old_index[keep]]
    return result
