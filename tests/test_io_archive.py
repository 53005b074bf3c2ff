"""Archive IO: every format opens lazily and reads the same mirrored windows."""

import json

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from pipeline.errors import InputError
from pipeline.io import open_archive
from pipeline.io.formats import MAX_SEGMENT_BYTES

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012_em"


def _volume(shape=(3, 50, 70), dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def _window_reference(volume, plane, rows, cols):
    plane_data = volume[plane][None] if volume.ndim == 3 else volume[None]
    pad = (
        (0, 0),
        (max(0, -rows.start), max(0, rows.stop - plane_data.shape[1])),
        (max(0, -cols.start), max(0, cols.stop - plane_data.shape[2])),
    )
    padded = np.pad(plane_data, pad, mode="reflect")
    r0, c0 = rows.start + pad[1][0], cols.start + pad[2][0]
    return padded[:, r0 : r0 + rows.stop - rows.start, c0 : c0 + cols.stop - cols.start]


def _check_reads(image, volume):
    assert image.n_planes == volume.shape[0]
    for rows, cols in [(slice(-7, 20), slice(60, 80)), (slice(0, 50), slice(0, 70)), (slice(10, 12), slice(-3, 2))]:
        np.testing.assert_array_equal(image.read_window(1, rows, cols), _window_reference(volume, 1, rows, cols))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_arrays_in_a_group_are_images_with_stable_keys(tmp_path, zarr_format):
    volume = _volume()
    root = zarr.open_group(tmp_path / "a.zarr", mode="w", zarr_format=zarr_format)
    root.create_array("b", data=volume, chunks=(1, 16, 16))
    root.create_array("a", data=volume[:, :20], chunks=(1, 16, 16))
    archive = open_archive(str(tmp_path / "a.zarr"))
    assert archive.image_keys() == ["a", "b"]
    image = archive.open("b")
    assert image.axes == "zyx" and image.plane_shape == (50, 70)
    _check_reads(image, volume)


def test_ome_zarr_multiscale_reads_level_0_with_its_axes_and_scale(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    volume = _volume((2, 3, 50, 70))
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    write_image(volume, group, axes="czyx", fmt=__import__("ome_zarr.format", fromlist=["FormatV04"]).FormatV04())
    del parse_url
    image = open_archive(str(tmp_path / "img.ome.zarr")).open("img")
    assert image.axes == "czyx" and image.channels == 2 and image.n_planes == 3
    np.testing.assert_array_equal(image.read(1, slice(0, 50), slice(0, 70)), volume[:, 1])


def test_multipage_tiff_and_bigtiff_tiled(tmp_path):
    volume = _volume()
    tifffile.imwrite(tmp_path / "plain.tif", volume, photometric="minisblack")
    tifffile.imwrite(tmp_path / "tiled.tif", volume, bigtiff=True, tile=(16, 16), photometric="minisblack")
    archive = open_archive(str(tmp_path))
    assert archive.image_keys() == ["plain", "tiled"]
    for key in archive.image_keys():
        _check_reads(archive.open(key), volume)


def test_imagej_hyperstack_maps_t_z_c(tmp_path):
    data = _volume((2, 3, 2, 40, 30), np.uint8)  # TZCYX
    tifffile.imwrite(tmp_path / "hyper.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    image = open_archive(str(tmp_path / "hyper.tif")).open("hyper")
    assert image.axes == "tzcyx" and image.n_planes == 6 and image.channels == 2
    np.testing.assert_array_equal(image.read(4, slice(0, 40), slice(0, 30)), data[1, 1])


def test_ome_tiff(tmp_path):
    data = _volume((3, 40, 30))
    tifffile.imwrite(tmp_path / "x.ome.tif", data, metadata={"axes": "ZYX"}, photometric="minisblack")
    image = open_archive(str(tmp_path / "x.ome.tif")).open("x")
    assert image.axes == "zyx"
    np.testing.assert_array_equal(image.read(2, slice(0, 40), slice(0, 30))[0], data[2])


def test_folder_of_slices_as_one_stack_in_numeric_order(tmp_path):
    volume = _volume((12, 20, 25), np.uint8)
    for i, plane in enumerate(volume):
        Image.fromarray(plane).save(tmp_path / f"{i}.png")
    stack = open_archive(str(tmp_path), stack=True)
    (key,) = stack.image_keys()
    image = stack.open(key)
    assert image.n_planes == 12
    np.testing.assert_array_equal(image.read(10, slice(0, 20), slice(0, 25))[0], volume[10])
    glob = open_archive(str(tmp_path / "1*.png"))
    assert glob.image_keys() == ["1", "10", "11"]


def test_isbi_slices_from_shared_data_read_as_uint8_images():
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside this checkout")
    archive = open_archive(str(SHARED / "train" / "image"))
    assert archive.image_keys()[:3] == ["0", "1", "2"] and len(archive.image_keys()) == 24
    image = archive.open("7")
    assert image.plane_shape == (512, 512) and image.dtype == np.uint8
    assert image.read_window(0, slice(-92, 604), slice(-92, 604)).shape == (1, 696, 696)


# -- bad input: each names the file and what is wrong; the other images stay readable -------------


def test_truncated_tiff_is_detected_not_read_as_zeros(tmp_path):
    tifffile.imwrite(tmp_path / "good.tif", _volume(), photometric="minisblack")
    tifffile.imwrite(tmp_path / "cut.tif", _volume(), photometric="minisblack")
    data = (tmp_path / "cut.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    archive = open_archive(str(tmp_path))
    with pytest.raises(InputError, match=r"cut\.tif.*truncated"):
        archive.open("cut")
    assert archive.open("good").n_planes == 3


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.tif: empty file"):
        open_archive(str(tmp_path)).open("empty")


def test_tiff_header_claiming_a_huge_tile_is_refused_before_allocation(tmp_path):
    side = int(np.sqrt(MAX_SEGMENT_BYTES)) + 1024
    # A real tiny file whose header claims one enormous strip.
    tifffile.imwrite(tmp_path / "bomb.tif", np.zeros((1, 1), np.uint8))
    raw = bytearray((tmp_path / "bomb.tif").read_bytes())
    tif = tifffile.TiffFile(tmp_path / "bomb.tif")
    page = tif.pages[0]
    for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
        t = page.tags[tag]
        fmt = "<I" if t.dtype == 4 else "<H"
        __import__("struct").pack_into(fmt, raw, t.valueoffset, side)
    tif.close()
    (tmp_path / "bomb.tif").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"bomb\.tif"):
        open_archive(str(tmp_path)).open("bomb")


def test_corrupt_zarr_metadata_is_named(tmp_path):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    root.create_array("ok", data=_volume(), chunks=(1, 16, 16))
    root.create_array("bad", data=_volume(), chunks=(1, 16, 16))
    (tmp_path / "s.zarr" / "bad" / "zarr.json").write_text("{not json")
    archive = open_archive(str(tmp_path / "s.zarr"))
    with pytest.raises(InputError, match="bad.*(corrupt|cannot open|no Zarr)"):
        archive.open("bad")
    assert archive.open("ok").n_planes == 3


def test_a_missing_zarr_chunk_reads_as_fill_value_like_zarr_says(tmp_path):
    arr = zarr.open_array(
        tmp_path / "m.zarr", mode="w", shape=(2, 32, 32), chunks=(1, 16, 16), dtype="uint8", fill_value=0, zarr_format=3
    )
    arr[:] = 7
    (tmp_path / "m.zarr" / "c" / "1" / "0" / "0").unlink()
    image = open_archive(str(tmp_path / "m.zarr")).open("m")
    block = image.read(1, slice(0, 32), slice(0, 32))[0]
    assert (block[:16, :16] == 0).all() and (block[16:, 16:] == 7).all()


def test_unsupported_dtype(tmp_path):
    tifffile.imwrite(tmp_path / "f64.tif", np.zeros((10, 10), np.float64))
    with pytest.raises(InputError, match=r"f64\.tif: unsupported dtype float64"):
        open_archive(str(tmp_path)).open("f64")


def test_wrong_axes(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", _volume(), photometric="minisblack")
    with pytest.raises(InputError, match=r"v\.tif: axes 'yx' name 2 dimensions but the array has 3"):
        open_archive(str(tmp_path), axes="yx").open("v")


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="no images found"):
        open_archive(str(tmp_path)).image_keys()
    with pytest.raises(InputError, match="no such file or directory"):
        open_archive(str(tmp_path / "nope")).image_keys()


def test_path_traversal_and_odd_keys_are_refused_for_that_image_only(tmp_path):
    from pipeline.io.archive import check_key

    with pytest.raises(InputError, match="not a plain relative name"):
        check_key("../etc/passwd", "x")
    with pytest.raises(InputError, match="not valid UTF-8"):
        check_key("bad\udcff", "x")
    assert check_key("plate 1/well-A1.ome", "x") == "plate 1/well-A1.ome"


def test_a_slice_of_another_shape_in_a_stack_is_named(tmp_path):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((20, 21), np.uint8)).save(tmp_path / "1.png")
    image = open_archive(str(tmp_path), stack=True).open(open_archive(str(tmp_path), stack=True).image_keys()[0])
    with pytest.raises(InputError, match=r"1\.png: slice of shape \(20, 21\)"):
        image.read(1, slice(0, 20), slice(0, 20))


def test_corrupt_json_attrs_do_not_hide_the_file(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "array"}))
    archive = open_archive(str(tmp_path))
    with pytest.raises(InputError, match="x.zarr"):
        archive.open("x")
