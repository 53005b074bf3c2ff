"""The OME-Zarr mask store: layout readers understand, pyramids, atomic chunk writes."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from pipeline.io import open_archive
from pipeline.io.maskstore import MaskStore, OutputLayout
from pipeline.outputkinds import Labels, Probabilities


def _image(tmp_path, shape=(2, 100, 90)):
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", np.zeros(shape, np.uint8), photometric="minisblack")
    return open_archive(str(tmp_path / "img.tif")).open("img")


def test_labels_layout_pyramid_and_provenance_open_in_ome_zarr(tmp_path):
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    image = _image(tmp_path)
    store = MaskStore(str(tmp_path / "out.zarr"), "labels")
    layout = OutputLayout.for_image(image, Labels(), 2, (32, 32))
    assert layout.axes == "zyx" and layout.chunks == (1, 32, 32)
    store.create_image("img", layout, {"y": 0.5, "x": 0.5}, {"job": "t", "model_fingerprint": "abc"})
    store.list_labels(["img"])
    block = (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8)
    store.write_block("img", {"z": 1}, layout.axes, slice(32, 64), slice(0, 32), block)
    assert store.build_pyramid("img", 2) == 2
    (label,) = [n for n in Reader(parse_url(str(tmp_path / "out.zarr/labels/img"), fmt=FormatV04()))() if n.data]
    assert [d.shape for d in label.data] == [(2, 100, 90), (2, 50, 45), (2, 25, 23)]
    np.testing.assert_array_equal(np.asarray(label.data[1][1, 16:32, 0:16]), block[::2, ::2])  # nearest
    attrs = zarr.open_group(str(tmp_path / "out.zarr/labels/img"), mode="r").attrs
    assert attrs["segment-archive"]["model_fingerprint"] == "abc"
    assert attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]
    assert zarr.open_group(str(tmp_path / "out.zarr/labels"), mode="r").attrs["labels"] == ["img"]


def test_probabilities_use_ome_axis_order_and_mean_pyramids(tmp_path):
    image = _image(tmp_path)
    store = MaskStore(str(tmp_path / "p.zarr"), "probabilities")
    layout = OutputLayout.for_image(image, Probabilities("float16"), 3, (32, 32))
    assert layout.axes == "czyx" and layout.shape == (3, 2, 100, 90) and layout.dtype == "float16"
    store.create_image("img", layout, {}, {})
    store.write_block("img", {"z": 0}, layout.axes, slice(0, 32), slice(0, 32), np.ones((3, 32, 32), np.float16))
    store.build_pyramid("img", 1)
    level1 = zarr.open_array(str(tmp_path / "p.zarr/probabilities/img/1"), mode="r")
    assert level1.shape == (3, 2, 50, 45) and float(level1[0, 0, 0, 0]) == 1.0


def test_a_store_opens_an_image_array_once_for_all_its_blocks(tmp_path, monkeypatch):
    from pipeline.io import maskstore

    image = _image(tmp_path)
    store = MaskStore(str(tmp_path / "out.zarr"), "labels")
    layout = OutputLayout.for_image(image, Labels(), 2, (32, 32))
    store.create_image("img", layout, {}, {})
    opened, open_array = [], zarr.open_array
    monkeypatch.setattr(maskstore.zarr, "open_array", lambda *a, **k: opened.append(k["path"]) or open_array(*a, **k))
    for row in range(3):
        store.write_block(
            "img", {"z": 0}, layout.axes, slice(32 * row, 32 * row + 32), slice(0, 32), np.ones((32, 32), np.uint8)
        )
    assert opened == ["labels/img/0"]
    assert store.read_region("img", {"z": 0}, slice(0, 96), slice(0, 32)).all()


def test_an_image_recreated_through_the_store_gets_its_blocks_in_the_new_array(tmp_path):
    store = MaskStore(str(tmp_path / "out.zarr"), "labels")
    small = OutputLayout.for_image(_image(tmp_path, (2, 64, 64)), Labels(), 2, (32, 32))
    store.create_image("img", small, {}, {})
    store.write_block("img", {"z": 0}, small.axes, slice(0, 32), slice(0, 32), np.ones((32, 32), np.uint8))
    large = OutputLayout.for_image(_image(tmp_path, (2, 128, 128)), Labels(), 2, (32, 32))
    store.create_image("img", large, {}, {})  # a rerun whose input image grew
    store.write_block("img", {"z": 0}, large.axes, slice(96, 128), slice(96, 128), np.full((32, 32), 2, np.uint8))
    assert store.read_region("img", {"z": 0}, slice(96, 128), slice(96, 128)).min() == 2


NO_PYRAMID = """
import sys
from pipeline.io.maskstore import MaskStore, OutputLayout
store = MaskStore(sys.argv[1], "labels")
store.create_image("img", OutputLayout("yx", (64, 64), (32, 32), "uint8"), {}, {})
print(store.build_pyramid("img", 0), "dask" in sys.modules)
"""


def test_an_image_without_pyramid_levels_keeps_dask_out_of_the_driver(tmp_path):
    # Importing dask costs ~0.75 s of CPU: in the middle of a run, a CPU model loses it.
    run = subprocess.run([sys.executable, "-c", NO_PYRAMID, str(tmp_path / "out.zarr")], capture_output=True, text=True)
    assert run.stdout.split() == ["0", "False"], run.stderr
    attrs = zarr.open_group(str(tmp_path / "out.zarr/labels/img"), mode="r").attrs
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0"]


WRITER = """
import sys, numpy as np, zarr
arr = zarr.open_array(sys.argv[1], mode="r+")
i = 0
print("ready", flush=True)
while True:
    i += 1
    arr[:] = np.full(arr.shape, i % 250 + 1, dtype=np.uint8)
"""


def test_a_writer_killed_mid_write_leaves_whole_chunks_never_torn(tmp_path):
    path = str(tmp_path / "a.zarr")
    zarr.create_array(path, shape=(512, 512), chunks=(64, 64), dtype="uint8", fill_value=0, zarr_format=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = zarr.open_array(path, mode="r")[:]  # every chunk decodes
        for y in range(0, 512, 64):
            for x in range(0, 512, 64):
                assert len(np.unique(data[y : y + 64, x : x + 64])) == 1, "a torn chunk"


def test_read_plane_numbers_planes_as_the_input_does_and_reads_no_other_plane(tmp_path):
    store = MaskStore(str(tmp_path / "out.zarr"), "probabilities")
    layout = OutputLayout("tczyx", (2, 2, 3, 8, 8), (1, 2, 1, 8, 8), "float32")
    store.create_image("img", layout, {}, {})
    for plane in range(6):  # row-major over t, then z: plane 4 is t=1, z=1
        block = np.full((2, 8, 8), plane + 1, np.float32)  # never the fill value: every chunk is written
        store.write_block("img", {"t": plane // 3, "z": plane % 3}, layout.axes, slice(0, 8), slice(0, 8), block)
    (tmp_path / "out.zarr/probabilities/img/0/0/0/0/0/0").write_bytes(b"not a chunk")  # plane 0's
    np.testing.assert_array_equal(store.read_plane("img", 4), np.full((2, 8, 8), 5, np.float32))
    with pytest.raises(RuntimeError, match="blosc"):
        store.read_plane("img", 0)


def test_the_labels_list_is_written_once_for_many_images(tmp_path):
    """Planning stays linear in images: the NGFF labels list is one write for all of a plan's images."""
    store = MaskStore(str(tmp_path / "out.zarr"), "labels")
    for key in ("b", "a/1", "a/10", "a/2"):
        store.create_image(key, OutputLayout("yx", (8, 8), (8, 8), "uint8"), {}, {})
    group = zarr.open_group(str(tmp_path / "out.zarr/labels"), mode="r")
    assert "labels" not in group.attrs  # not rewritten per image
    store.list_labels(["b", "a/1", "a/10", "a/2"])
    store.list_labels(["c"])  # a later plan adds to the list
    group = zarr.open_group(str(tmp_path / "out.zarr/labels"), mode="r")
    assert group.attrs["labels"] == ["a__1", "a__2", "a__10", "b", "c"]
