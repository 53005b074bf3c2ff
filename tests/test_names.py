"""Inputs never share a name: from file to key, and from key to output and manifest folder."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.io import open_archive
from pipeline.names import colliding, image_name

SEGMENT = st.text(alphabet="aAbB_.-1", min_size=1, max_size=5).filter(lambda s: s not in {".", ".."})
KEYS = st.lists(st.lists(SEGMENT, min_size=1, max_size=3).map("/".join), max_size=8)


@given(KEYS)
def test_keys_that_pass_have_distinct_folder_names_even_where_case_is_folded(keys):
    groups = colliding(keys)
    clashing = {key for group in groups for key in group}
    kept = set(keys) - clashing
    assert len({image_name(k).casefold() for k in kept}) == len(kept)
    for group in groups:  # every group is a real clash, of distinct keys
        assert len(set(group)) == len(group) > 1
        assert len({image_name(k).casefold() for k in group}) == 1


def test_a_slash_and_a_double_underscore_clash():
    assert colliding(["plate/A01", "plate__A01", "plate/A02"]) == [["plate/A01", "plate__A01"]]


SUFFIXES = [".tif", ".TIF", ".tiff", ".ome.tif", ".png", ".zarr"]


def write(folder: Path, name: str) -> None:
    pixels = np.zeros((8, 8), np.uint8)
    if name.endswith(".zarr"):
        zarr.create_array(folder / name, data=pixels)
    elif name.lower().endswith(".png"):
        from PIL import Image

        Image.fromarray(pixels).save(folder / name)
    else:
        tifffile.imwrite(folder / name, pixels)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.tuples(st.sampled_from(["scan", "Scan", "a", "b_c"]), st.sampled_from(SUFFIXES)), min_size=1))
def test_every_input_file_is_an_image_of_its_own_or_refused_by_name(files):
    names = {stem + suffix for stem, suffix in files}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in names:
            write(folder, name)
        try:
            keys = open_archive(str(folder)).image_keys()
        except InputError as exc:
            assert "would share one output name" in str(exc)
            return
        assert len(keys) == len(names)  # no file lost to another's key
        assert not colliding(keys)


def test_the_collision_message_names_every_file(tmp_path):
    for name in ("scan.tif", "scan.ome.tif", "scan.zarr", "scan.png", "A.TIF", "a.tif", "ok.tif"):
        write(tmp_path, name)
    with pytest.raises(InputError) as error:
        open_archive(str(tmp_path)).image_keys()
    for name in ("scan.tif", "scan.ome.tif", "scan.zarr", "scan.png", "A.TIF", "a.tif"):
        assert name in str(error.value)
    assert "ok.tif" not in str(error.value)


def test_a_name_too_long_for_the_manifest_keeps_its_start_and_ends_in_a_digest():
    long_a, long_b = "x" * 239 + "a", "x" * 239 + "b"
    assert len(image_name(long_a).encode()) == 200
    assert image_name(long_a).startswith("x" * 150)
    assert image_name(long_a) != image_name(long_b)
    assert image_name("short/key") == "short__key"  # names that fit are unchanged
