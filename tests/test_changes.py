"""Which units a rerun redoes: pure arithmetic over piece stamps, checked against a unit-by-unit definition."""

import numpy as np
import pytest

from pipeline.changes import (
    Footprint,
    InputPieces,
    UnitChange,
    carried_states,
    compare,
    stamp_digest,
)
from pipeline.errors import OutputError
from pipeline.model import net_geometry
from pipeline.plan import UnitGrid, unit_grid
from pipeline.tiling import reflect_indices, source_span
from tests.conftest import model_config

PAPER = net_geometry(model_config("unet-paper"))
CHUNKS = (64, 64)
TILE = 300


def pieces(shape, piece, seed=0, axes="zyx", layout="L") -> InputPieces:
    grid = tuple(-(-s // p) for s, p in zip(shape, piece, strict=True))
    digests = np.random.default_rng(seed).integers(1, 2**62, grid).astype(np.uint64)
    return InputPieces(axes, tuple(shape), tuple(piece), digests, layout)


def footprint(p: InputPieces) -> Footprint:
    return Footprint.of(p, "img", CHUNKS, PAPER, TILE)


def expected(old: InputPieces, new: InputPieces) -> np.ndarray:
    """The rule, unit by unit: new if it had no old unit; unchanged iff same block, same mirror, no changed piece."""
    fo, fn = footprint(old), footprint(new)
    result = []
    for unit in fn.grid.units():
        z = unit.plane
        if z >= fo.grid.n_planes or unit.row >= fo.grid.rows or unit.col >= fo.grid.cols:
            result.append(UnitChange.NEW)
            continue
        before = fo.grid.unit(fo.grid.index(unit.__class__("img", z, unit.row, unit.col, 0, 0, 0, 0)))
        _, rows, cols = unit_grid(unit, PAPER, TILE)
        _, rows_before, cols_before = unit_grid(before, PAPER, TILE)
        same = (before.y0, before.y1, before.x0, before.x1) == (unit.y0, unit.y1, unit.x0, unit.x1)
        same &= np.array_equal(reflect_indices(rows.start, rows.stop, fn.grid.shape[0]),
                               reflect_indices(rows_before.start, rows_before.stop, fo.grid.shape[0]))  # fmt: skip
        same &= np.array_equal(reflect_indices(cols.start, cols.stop, fn.grid.shape[1]),
                               reflect_indices(cols_before.start, cols_before.stop, fo.grid.shape[1]))  # fmt: skip
        (y0, y1), (x0, x1) = (
            source_span(rows.start, rows.stop, fn.grid.shape[0]),
            source_span(cols.start, cols.stop, fn.grid.shape[1]),
        )
        py, px = new.piece[1], new.piece[2]
        for iy in range(y0 // py, (y1 - 1) // py + 1):
            for ix in range(x0 // px, (x1 - 1) // px + 1):
                index = (z // new.piece[0], iy, ix)
                inside = all(i < n for i, n in zip(index, old.digests.shape, strict=True))
                same &= inside and old.digests[index] == new.digests[index]
        result.append(UnitChange.UNCHANGED if same else UnitChange.CHANGED)
    return np.array(result, np.uint8)


def test_an_unchanged_input_redoes_nothing():
    p = pieces((3, 500, 400), (1, 128, 128))
    change = compare(p, footprint(p), p, footprint(p))
    assert not change.any and change.counts == {"unchanged": 3 * 8 * 7, "changed": 0, "new": 0}


def test_a_rewritten_chunk_redoes_exactly_the_units_whose_window_reads_it():
    old = pieces((3, 500, 400), (1, 128, 128))
    digests = old.digests.copy()
    digests[1, 2, 1] += np.uint64(2)
    new = InputPieces(old.axes, old.shape, old.piece, digests, old.layout)
    change = compare(old, footprint(old), new, footprint(new))
    assert np.array_equal(change.units, expected(old, new))
    redone = np.flatnonzero(change.units).tolist()
    grid = footprint(new).grid
    assert {grid.unit(i).plane for i in redone} == {1}  # a 2-D net: other planes never read it
    assert 4 < len(redone) < grid.size // 3  # the chunk's units and the margin's neighbours, not the plane


def test_appended_planes_are_new_and_the_old_ones_keep_their_results():
    old = pieces((3, 300, 260), (1, 128, 128))
    grown = pieces((5, 300, 260), (1, 128, 128))
    grown.digests[:3] = old.digests
    change = compare(old, footprint(old), grown, footprint(grown))
    per_plane = change.units.reshape(5, -1)
    assert (per_plane[:3] == UnitChange.UNCHANGED).all() and (per_plane[3:] == UnitChange.NEW).all()
    kept = per_plane[:3].size
    assert np.array_equal(change.old_index[:kept], np.arange(kept)) and (change.old_index[kept:] == -1).all()


def test_a_plane_extended_in_x_redoes_the_units_whose_mirror_moved():
    old = pieces((2, 256, 300), (1, 128, 128))
    wider = pieces((2, 256, 460), (1, 128, 128))
    wider.digests[:, :, :3] = old.digests  # the chunks that held the old pixels were not rewritten
    change = compare(old, footprint(old), wider, footprint(wider))
    assert np.array_equal(change.units, expected(old, wider))
    assert change.counts["new"] > 0 and change.counts["changed"] > 0 and change.counts["unchanged"] > 0
    cols = change.units.reshape(2, 4, -1)
    assert (cols[:, :, 0] == UnitChange.UNCHANGED).all()  # far from the old border


def test_a_new_chunk_where_there_was_only_fill_value_counts_as_changed():
    old = pieces((1, 256, 256), (1, 128, 128))
    old.digests[0, 1, 1] = 0  # never written: reads as the fill value
    new = pieces((1, 256, 256), (1, 128, 128))
    new.digests[:] = old.digests
    new.digests[0, 1, 1] = stamp_digest(100, 1.5)
    change = compare(old, footprint(old), new, footprint(new))
    assert np.array_equal(change.units, expected(old, new)) and change.counts["changed"] > 0


@pytest.mark.parametrize(
    "new, reason",
    [
        (pieces((3, 300, 300), (1, 128, 128), layout="uint16"), "dtype"),
        (pieces((3, 300, 300), (1, 64, 64)), "chunking"),
        (pieces((3, 300, 300), (3, 300, 300), axes="zyx").__class__(
            "zyx", (3, 300, 300), (3, 300, 300), np.ones((1, 1, 1), np.uint64), "L", "a TIFF file is one piece"
        ), "TIFF"),
    ],
    ids=["dtype", "chunks", "tiff"],
)  # fmt: skip
def test_changes_that_cannot_be_localised_redo_the_whole_image_and_say_why(new, reason):
    old = pieces((3, 300, 300), (1, 128, 128)) if reason != "TIFF" else InputPieces(
        "zyx", (3, 300, 300), (3, 300, 300), np.full((1, 1, 1), 7, np.uint64), "L", "a TIFF file is one piece"
    )  # fmt: skip
    change = compare(old, footprint(old), new, footprint(new))
    assert change.whole and change.counts["changed"] == len(change.units) and reason in change.reason


def test_a_store_without_stamps_is_redone_every_run():
    p = pieces((1, 128, 128), (1, 64, 64))
    unstamped = InputPieces(p.axes, p.shape, p.piece, p.digests, p.layout, "no modification times", comparable=False)
    change = compare(unstamped, footprint(p), unstamped, footprint(p))
    assert change.whole and "no modification times" in change.reason


def test_carried_states_keep_unchanged_units_and_make_the_rest_pending():
    old = pieces((2, 128, 128), (1, 128, 128))
    grown = pieces((3, 128, 128), (1, 128, 128))
    grown.digests[:2] = old.digests
    grown.digests[1] += np.uint64(2)
    change = compare(old, footprint(old), grown, footprint(grown))
    states = np.array([1, 2, 1, 1, 3, 1, 1, 1], np.uint8)  # 2 planes of 2 x 2 units
    carried = carried_states(states, change, 0)
    assert carried.tolist() == [1, 2, 1, 1] + [0] * 8


def test_input_pieces_round_trip_and_a_damaged_record_names_its_file():
    p = pieces((2, 300, 200), (1, 128, 128))
    back = InputPieces.from_bytes(p.to_bytes(), "inputs/a.npz")
    assert back.fingerprint == p.fingerprint and np.array_equal(back.digests, p.digests)
    with pytest.raises(OutputError, match="inputs/a.npz: input record is corrupt"):
        InputPieces.from_bytes(b"not an npz", "inputs/a.npz")


def test_footprint_grid_follows_the_image_axes():
    p = InputPieces("tzyx", (2, 3, 100, 90), (1, 1, 64, 64), np.ones((2, 3, 2, 2), np.uint64), "L")
    fp = footprint(p)
    assert fp.grid == UnitGrid("img", 6, (100, 90), CHUNKS) and fp.plane_sizes == {"t": 2, "z": 3}
