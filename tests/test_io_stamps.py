"""Stamps of an image's stored pieces, from listings: each piece changes alone, and only when it is rewritten."""

import time

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from pipeline.io import open_archive


def stamped(url: str, key: str, stack: bool = False):
    archive = open_archive(url, stack=stack)
    return archive.pieces(key, archive.open(key))


def changed_pieces(before, after) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in index) for index in zip(*np.nonzero(before.digests != after.digests), strict=True)]


@pytest.mark.parametrize(
    "options, piece",
    [
        ({"zarr_format": 2}, (1, 32, 32)),
        ({"zarr_format": 3}, (1, 32, 32)),
        ({"zarr_format": 3, "shards": (1, 64, 64)}, (1, 64, 64)),  # a shard is the stored piece
    ],
    ids=["v2", "v3", "v3-sharded"],
)
def test_a_rewritten_zarr_chunk_changes_its_piece_alone(tmp_path, options, piece):
    volume = zarr.create_array(
        tmp_path / "in" / "vol.zarr", shape=(2, 128, 96), chunks=(1, 32, 32), dtype="u1", **options
    )
    volume[:] = 9
    before = stamped(str(tmp_path / "in"), "vol")
    assert before.piece == piece and before.digests.shape == (2, 128 // piece[1], -(-96 // piece[2]))
    assert before.digests.all() and not before.whole
    time.sleep(0.01)
    volume[1, 40:50, 70:80] = 3

    after = stamped(str(tmp_path / "in"), "vol")

    assert changed_pieces(before, after) == [(1, 40 // piece[1], 70 // piece[2])]
    assert after.layout == before.layout and after.fingerprint != before.fingerprint
    assert stamped(str(tmp_path / "in"), "vol").fingerprint == after.fingerprint  # stable while untouched


def test_an_unwritten_chunk_stamps_as_absent(tmp_path):
    volume = zarr.create_array(tmp_path / "in" / "vol.zarr", shape=(1, 64, 64), chunks=(1, 32, 32), dtype="u1")
    volume[0, :32, :32] = 1  # the other chunks were never written: they read as the fill value
    assert (stamped(str(tmp_path / "in"), "vol").digests != 0).sum() == 1


def test_each_slice_of_a_stack_is_a_piece_and_a_new_slice_grows_the_grid(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(3):
        Image.fromarray(np.full((40, 30), z, np.uint8)).save(folder / f"s{z}.png")
    before = stamped(str(folder), "slices", stack=True)
    time.sleep(0.01)
    Image.fromarray(np.full((40, 30), 7, np.uint8)).save(folder / "s1.png")
    Image.fromarray(np.full((40, 30), 8, np.uint8)).save(folder / "s3.png")

    after = stamped(str(folder), "slices", stack=True)

    assert after.piece == (1, 40, 30) and after.digests.shape == (4, 1, 1)
    assert np.flatnonzero(after.digests[:3] != before.digests).tolist() == [1]


def test_a_tiff_is_one_piece_that_cannot_be_localised(tmp_path):
    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((3, 32, 32), np.uint8), photometric="minisblack")
    pieces = stamped(str(tmp_path / "scan.tif"), "scan")
    assert pieces.digests.shape == (1, 1, 1) and "TIFF" in pieces.whole and pieces.comparable
