"""pipeline.outputkinds: each output.kind as a class owning its arrays, its conversion and its pyramid rule."""

import numpy as np
import pytest

from pipeline.outputkinds import (
    KINDS,
    Instances,
    Labels,
    Mask,
    Probabilities,
    job_kind,
    most_probable_class,
    store_kind,
)
from pipeline.outputspec import InstancesSpec
from pipeline.spec import JobSpec
from tests.jobs import make_archive, make_job


def test_labels_are_the_argmax_class_ties_going_to_the_lower():
    rng = np.random.default_rng(0)
    for classes in (2, 3):
        probabilities = rng.random((classes, 32, 32)).astype(np.float32)
        probabilities[:, :4] = 0.5  # ties
        labels = Labels().from_probabilities(probabilities)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, probabilities.argmax(axis=0))
        assert (labels[:4] == 0).all()
    assert most_probable_class(np.array([[[0.4, 0.6]], [[0.6, 0.4]]], np.float32)).tolist() == [[1, 0]]


def test_a_mask_is_the_foreground_at_its_threshold():
    probabilities = np.array([[[0.7, 0.4, 0.2]], [[0.3, 0.6, 0.8]]], np.float32)  # 2 classes, 3 pixels
    assert Mask(0.5).from_probabilities(probabilities).tolist() == [[0, 1, 1]]
    assert Mask(0.7).from_probabilities(probabilities).tolist() == [[0, 0, 1]]
    sigmoid = probabilities[1:]  # one class: its own probability is the foreground's
    assert Mask(0.5).from_probabilities(sigmoid).tolist() == Labels().from_probabilities(sigmoid).tolist()


def test_probabilities_keep_every_class_at_the_stored_precision():
    probabilities = np.random.default_rng(1).random((3, 4, 4)).astype(np.float32)
    stored = Probabilities("float16").from_probabilities(probabilities)
    assert stored.dtype == np.float16 and stored.shape == (3, 4, 4)


def test_instances_store_the_object_probability():
    probabilities = np.array([[[0.2]], [[0.5]], [[0.3]]], np.float32)  # 3 classes, one pixel
    foreground = Instances(InstancesSpec(), "float16").from_probabilities(probabilities)
    assert foreground.dtype == np.float16 and foreground.shape == (1, 1, 1)
    assert foreground[0, 0, 0] == np.float16(0.8)
    interior = Instances(InstancesSpec(objects="background")).from_probabilities(probabilities)
    np.testing.assert_allclose(interior[0, 0, 0], 0.2, rtol=1e-6)


def test_each_kind_names_its_group_dtype_pyramid_rule_and_the_arrays_a_job_writes():
    facts = {
        name: (k.group, k.dtype, k.per_class, k.mean_pyramid, k.instance_pass, k.net_output.name, sorted(k.arrays(3)))
        for name, k in ((n, store_kind(n)) for n in KINDS)
    }
    assert facts == {
        "labels": ("labels", "uint8", False, False, False, "labels", ["labels"]),
        "mask": ("labels", "uint8", False, False, False, "mask", ["mask"]),
        "probabilities": ("probabilities", "float32", True, True, False, "probabilities", ["probabilities"]),
        "instances": ("labels", "uint32", False, False, True, "probabilities", ["instances", "probabilities"]),
    }
    assert Instances().arrays(3) == {"instances": (Instances(), 1), "probabilities": (Probabilities(), 1)}


def test_class_images_count_their_label_values_for_their_colours():
    counts = {name: [store_kind(name).label_values(c) for c in (1, 2, 5)] for name in KINDS}
    # a one-class net's labels are its mask; instances are numbered per image, not per class
    assert counts == {"labels": [2, 2, 5], "mask": [2, 2, 2], "probabilities": [None] * 3, "instances": [None] * 3}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_failed_units_placeholder_has_the_dtype_and_rank_of_a_real_block(kind):
    output = store_kind(kind)
    real = output.from_probabilities(np.full((2, 4, 4), 0.5, np.float32))
    placeholder = output.empty_block()
    assert placeholder.dtype == real.dtype and placeholder.ndim == real.ndim and placeholder.size == 0


def test_the_job_makes_its_kind_with_the_settings_that_kind_uses(tmp_path):
    archive = make_archive(tmp_path / "in", sizes=((32, 32),))
    job = JobSpec.load(make_job(tmp_path, archive))

    def with_output(**changes):
        document = job.model_dump(mode="json", exclude={"output"})
        output = {"path": job.output.path, **changes}
        return JobSpec.model_validate({**document, "inference": {"threshold": 0.8}, "output": output})

    assert job_kind(with_output(kind="labels")) == Labels()
    assert job_kind(with_output(kind="mask")) == Mask(0.8)
    assert job_kind(with_output(kind="probabilities", probability_dtype="float16")) == Probabilities("float16")
    rule = InstancesSpec(objects="background")
    assert job_kind(with_output(kind="instances", instances={"objects": "background"})) == Instances(rule, "float32")
