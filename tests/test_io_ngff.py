"""NGFF metadata of the mask store: where each level's pixels lie, and how label values are shown."""

import numpy as np
import pytest

from pipeline.io import ngff
from pipeline.io.pyramid import downsample


def pixel_centres(dataset: dict, axis: int, count: int) -> np.ndarray:
    """Physical centre of each of `count` pixels along `axis` of one level, by its transformations."""
    scale, shift = 1.0, 0.0
    for transform in dataset["coordinateTransformations"]:
        if transform["type"] == "scale":
            scale = transform["scale"][axis]
        else:
            shift = transform["translation"][axis]
    return np.arange(count) * scale + shift


@pytest.mark.parametrize("mean", [True, False], ids=["mean", "nearest"])
@pytest.mark.parametrize("fmt", ngff.FORMATS)
def test_each_level_places_its_pixels_where_the_level_0_pixels_they_came_from_lie(fmt, mean):
    spacing = 0.25
    x = np.arange(64, dtype=np.float64)  # level 0: each pixel holds its own column
    block = np.broadcast_to(x, (16, 64)).copy()
    entry = ngff.multiscales_attrs(fmt, "img", "yx", {"y": spacing, "x": spacing}, levels=4, mean=mean)
    for dataset in entry["datasets"]:
        columns = block[0]  # what this level holds: the level-0 column (mean or nearest) of each pixel
        np.testing.assert_allclose(pixel_centres(dataset, 1, len(columns)), columns * spacing)
        block = downsample(block, mean, np.float64)


def test_only_mean_levels_are_translated_and_level_0_never():
    mean = ngff.multiscales_attrs("ngff-0.5", "img", "czyx", {"z": 2.0, "y": 0.5, "x": 0.5}, 3, mean=True)
    nearest = ngff.multiscales_attrs("ngff-0.5", "img", "zyx", {}, 3, mean=False)
    kinds = [[t["type"] for t in d["coordinateTransformations"]] for d in mean["datasets"]]
    assert kinds == [["scale"], ["scale", "translation"], ["scale", "translation"]]
    assert mean["datasets"][2]["coordinateTransformations"][1]["translation"] == [0.0, 0.0, 0.75, 0.75]
    assert all(len(d["coordinateTransformations"]) == 1 for d in nearest["datasets"])


def test_class_colors_show_the_background_through_and_each_class_in_its_own_colour():
    colors = ngff.class_colors(4)
    assert [c["label-value"] for c in colors] == [0, 1, 2, 3]
    assert colors[0]["rgba"] == [0, 0, 0, 0]
    opaque = [tuple(c["rgba"]) for c in colors[1:]]
    assert len(set(opaque)) == 3 and all(rgba[3] == 255 for rgba in opaque)


def test_object_colors_differ_between_neighbouring_ids():
    colors = ngff.object_colors(list(range(0, 200)))
    assert colors[0]["rgba"] == [0, 0, 0, 0]
    rgba = np.array([c["rgba"] for c in colors[1:]])
    assert (rgba[:, 3] == 255).all()
    assert (np.abs(np.diff(rgba[:, :3], axis=0)).sum(axis=1) > 60).all()  # consecutive ids told apart


@pytest.mark.parametrize("fmt", ngff.FORMATS)
def test_image_label_lists_colours_and_properties_of_the_same_values(fmt):
    pytest.importorskip("ome_zarr_models")
    from ome_zarr_models.common.image_label_types import LabelBase

    properties = [{"label-value": 0}, {"label-value": 7, "area": 12}]
    label = ngff.image_label(fmt, ngff.object_colors([0, 7]), properties)
    assert ("version" in label) == (fmt == "ngff-0.4")  # 0.5 keeps the version once, in "ome"
    LabelBase.model_validate(label)
    assert "colors" not in ngff.image_label(fmt) and "properties" not in ngff.image_label(fmt)


@pytest.mark.parametrize("fmt", ngff.FORMATS)
def test_ngff_update_sets_one_key_where_the_format_keeps_it(fmt):
    attrs = ngff.image_attrs(fmt, {"multiscales": [{"name": "img"}]}, {"job": "x"})
    updated = {**attrs, **ngff.ngff_update(fmt, attrs, "image-label", {"colors": []})}
    assert ngff.ngff_keys(updated)["image-label"] == {"colors": []}
    assert ngff.multiscale(updated) == {"name": "img"} and updated["segment-archive"] == {"job": "x"}
