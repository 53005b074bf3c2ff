"""Instances from an object probability, block by block: the watershed's halo condition, and the object table."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.measure import label, regionprops
from skimage.morphology import remove_small_objects
from skimage.segmentation import relabel_sequential

import pipeline.instances.objects as instance_objects
from pipeline.instances.fragments import kept_whole, label_plane
from pipeline.instances.objects import BlockSummary, PlaneObjects, summarise_block
from pipeline.outputspec import InstancesSpec


def smooth_field(seed: int, shape: tuple[int, int], sigma: float, levels: int = 0) -> np.ndarray:
    """Random blobs in [0, 1]; with `levels`, quantised so that the watershed meets many ties."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    return np.round(field * levels) / levels if levels else field


def two_cells_with_a_leak(gap: int = 40) -> np.ndarray:
    """Two bright discs joined by a dim neck: one component, two seeds."""
    yy, xx = np.mgrid[:64, :120]
    p = np.zeros((64, 120), np.float32)
    for cx in (30, 30 + gap):
        p = np.maximum(p, np.clip(1.2 - np.hypot(yy - 32, xx - cx) / 15, 0, 1))
    p[30:34, 30 : 30 + gap] = np.maximum(p[30:34, 30 : 30 + gap], 0.6)
    return p


def watershed_rule(**changes) -> InstancesSpec:
    return InstancesSpec(**{"method": "watershed", "threshold": 0.5, "seed_threshold": 0.8, **changes})


@settings(max_examples=25, deadline=None)
@example(seed=27, bh=5, bw=5, halo=26, levels=6, connectivity=4)  # a flat top the heap's ties once split unlike
@given(
    seed=st.integers(0, 2**32 - 1),
    bh=st.integers(5, 70),
    bw=st.integers(5, 70),
    halo=st.integers(4, 80),
    levels=st.sampled_from([0, 6]),
    connectivity=st.sampled_from([4, 8]),
)
def test_watershed_does_not_depend_on_the_block_size(seed, bh, bw, halo, levels, connectivity):
    probability = smooth_field(seed, (90, 110), sigma=3.0, levels=levels)
    rule = watershed_rule(halo=halo, connectivity=connectivity, seed_threshold=0.7)
    whole, _ = label_plane(probability, probability.shape, rule)
    blockwise, _ = label_plane(probability, (bh, bw), rule)
    np.testing.assert_array_equal(blockwise, whole)


def test_watershed_splits_cells_joined_by_a_leak_that_components_merge():
    probability = two_cells_with_a_leak()
    components, _ = label_plane(probability, (16, 16), InstancesSpec(threshold=0.5))
    split, _ = label_plane(probability, (16, 16), watershed_rule(halo=96))
    assert components.max() == 1
    assert split.max() == 2
    assert split[32, 30] != split[32, 70]


def test_a_component_larger_than_the_halo_stays_whole_whatever_the_block_size():
    probability = two_cells_with_a_leak()  # the joined cells span 72 px
    for block in [(16, 16), (64, 120)]:
        labels, _ = label_plane(probability, block, watershed_rule(halo=60))
        np.testing.assert_array_equal(labels, label(probability >= 0.5))


def test_the_objects_the_halo_kept_whole_are_the_ones_wider_or_taller_than_it():
    probability = two_cells_with_a_leak()  # the joined cells span 72 x 31 px
    _, objects = label_plane(probability, (16, 16), watershed_rule(halo=60))
    assert kept_whole(objects.columns, watershed_rule(halo=60)).tolist() == [True]
    _, split = label_plane(probability, (16, 16), watershed_rule(halo=96))
    assert kept_whole(split.columns, watershed_rule(halo=96)).tolist() == [False, False]
    assert not kept_whole(objects.columns, InstancesSpec(threshold=0.5)).any()  # components split nothing


def test_a_component_without_a_seed_is_one_object():
    probability = two_cells_with_a_leak() * 0.75  # nothing reaches the seed threshold
    labels, _ = label_plane(probability, (16, 16), watershed_rule(halo=96))
    np.testing.assert_array_equal(labels, label(probability >= 0.5))


def test_object_table_matches_regionprops():
    probability = smooth_field(3, (70, 90), sigma=2.5)
    rule = InstancesSpec(threshold=0.6, connectivity=4)
    labels, objects = label_plane(probability, (16, 23), rule)
    c = objects.columns
    props = regionprops(labels, intensity_image=probability)
    assert objects.count == len(props) == labels.max() > 5
    for i, p in enumerate(props):
        assert c["id"][i] == p.label
        assert c["area"][i] == p.area
        np.testing.assert_allclose([c["centroid_y"][i], c["centroid_x"][i]], p.centroid)
        assert (c["bbox_y0"][i], c["bbox_x0"][i], c["bbox_y1"][i], c["bbox_x1"][i]) == p.bbox
        np.testing.assert_allclose(c["mean_probability"][i], p.intensity_mean)


def test_min_size_drops_small_objects_and_numbers_the_rest_in_raster_order():
    probability = smooth_field(5, (80, 80), sigma=1.5)
    rule = InstancesSpec(threshold=0.6, min_size=12)
    labels, objects = label_plane(probability, (9, 13), rule)
    expected, _, _ = relabel_sequential(remove_small_objects(label(probability >= 0.6), max_size=11))
    np.testing.assert_array_equal(labels, expected)
    assert objects.count == expected.max() and objects.columns["area"].min() >= 12


def test_label_properties_list_every_object_of_every_plane_with_its_plane_and_id_offset(monkeypatch):
    _, first = label_plane(smooth_field(3, (70, 90), sigma=2.5), (16, 23), InstancesSpec(threshold=0.6))
    _, second = label_plane(smooth_field(4, (70, 90), sigma=2.5), (16, 23), InstancesSpec(threshold=0.6))
    planes = [({"z": 0}, 0, first), ({"z": 1}, first.count, second)]
    listed = instance_objects.label_properties(planes)
    assert listed[0] == {"label-value": 0}  # the background, as its colour is listed too
    assert [p["label-value"] for p in listed[1:]] == list(range(1, first.count + second.count + 1))
    assert [p["z"] for p in listed[1:]] == [0] * first.count + [1] * second.count
    assert [p["area"] for p in listed[1:]] == [*first.columns["area"], *second.columns["area"]]
    monkeypatch.setattr(instance_objects, "LISTED_OBJECTS", first.count + second.count - 1)
    assert instance_objects.label_properties(planes) == []  # past the limit only the object table lists them


def test_summaries_and_plane_objects_travel_as_bytes():
    ids = np.array([[0, 5, 5], [7, 7, 0]], np.uint64)
    summary = summarise_block(ids, (10, 20), plane_width=100, probability=np.full((2, 3), 0.5))
    again = BlockSummary.from_bytes(summary.to_bytes())
    np.testing.assert_array_equal(again.ids, [5, 7])
    np.testing.assert_array_equal(again.stats, summary.stats)
    np.testing.assert_array_equal(again.edges.right, [5, 0])
    _, objects = label_plane(smooth_field(1, (30, 30), 2), (8, 8), InstancesSpec())
    restored = PlaneObjects.from_bytes(objects.to_bytes())
    np.testing.assert_array_equal(restored.table.final, objects.table.final)
    assert restored.columns.keys() == objects.columns.keys()


@pytest.mark.parametrize("changes", [{"seed_threshold": 0.3, "threshold": 0.5}, {"halo": 0}, {"connectivity": 6}])
def test_bad_instance_settings_are_refused(changes):
    with pytest.raises(ValueError):
        InstancesSpec(**changes)
