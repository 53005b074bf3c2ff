"""The paper's weight map and elastic augmentation."""

import numpy as np
import pytest

from pipeline.train.augment import AugmentSettings, augment, displacement_field
from pipeline.train.weights import class_balance, instances_from_mask, two_nearest_distances, weight_map


def test_class_balance_gives_each_class_the_same_total_weight():
    target = np.array([[0, 0, 0, 1]])
    w = class_balance(target, 2)
    assert w[target == 0].sum() == pytest.approx(w[target == 1].sum())
    assert w.mean() == pytest.approx(1.0)


def test_border_term_is_high_in_a_narrow_gap_between_two_objects_and_low_far_away():
    mask = np.zeros((20, 40), bool)
    mask[5:15, 5:18] = True
    mask[5:15, 20:35] = True  # 2-pixel gap at columns 18, 19
    instances = instances_from_mask(mask)
    assert instances.max() == 2
    weights = weight_map(mask.astype(np.int64), instances, 2, w0=10, sigma=5, balance=False)
    # gap pixel: d1 = 1, d2 = 2 -> 1 + 10*exp(-9/50)
    assert weights[10, 18] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-5)
    assert weights[0, 0] < 1.5 and weights[10, 10] == pytest.approx(1.0)


def test_two_nearest_distances_by_hand():
    instances = np.array([[1, 0, 0, 2]])
    d1, d2 = two_nearest_distances(instances, reach=10)
    assert d1[0, 1] == 1 and d2[0, 1] == 2


def test_displacements_are_smooth_and_of_the_asked_scale():
    rng = np.random.default_rng(0)
    fields = np.stack([displacement_field((64, 64), 3, 10.0, rng) for _ in range(50)])
    assert 5 < fields.std() < 15
    assert np.abs(np.diff(fields, axis=-1)).max() < 5  # no jumps between neighbours


def test_augment_keeps_labels_as_labels_and_shapes():
    rng = np.random.default_rng(1)
    image = rng.random((1, 32, 32), dtype=np.float32)
    target = (rng.random((32, 32)) > 0.5).astype(np.int64)
    weights = np.ones((32, 32), np.float32)
    x, y, w = augment(image, target, weights, AugmentSettings(), rng)
    assert x.shape == (1, 32, 32) and y.shape == (32, 32) and w.shape == (32, 32)
    assert set(np.unique(y)) <= {0, 1}
