"""ISBI measures on small cases computed by hand."""

import numpy as np
import pytest

from pipeline.metrics import iou_dice, pixel_error, rand_error, rand_f_score


def test_pixel_error_counts_wrong_pixels():
    truth = np.array([[0, 1], [1, 1]])
    assert pixel_error(np.array([[0, 1], [0, 0]]), truth) == 0.5


def test_iou_and_dice_per_class_by_hand():
    truth = np.array([[1, 1, 0, 0]])
    predicted = np.array([[1, 0, 0, 0]])
    scores = iou_dice(predicted, truth, 2)
    assert scores["iou"] == pytest.approx([2 / 3, 1 / 2])
    assert scores["dice"] == pytest.approx([4 / 5, 2 / 3])


def test_rand_f_score_of_a_perfect_split_and_of_a_merge():
    truth = np.array([[1, 1, 0, 2, 2]])  # two objects, boundary pixel ignored
    assert rand_f_score(truth, np.array([[5, 5, 0, 7, 7]])) == pytest.approx(1.0)
    # All four foreground pixels merged into one object.  Ordered pairs of distinct
    # pixels: together in the truth 2 + 2 = 4, together in the prediction 4 * 3 = 12,
    # together in both 4.  Precision 4/12, recall 4/4 -> F = 2 * (1/3) / (4/3) = 1/2.
    assert rand_f_score(truth, np.array([[3, 3, 3, 3, 3]])) == pytest.approx(1 / 2)


def test_rand_error_takes_the_best_threshold():
    truth_boundary = np.array([[0, 0, 1, 0, 0]], dtype=bool)
    probability = np.array([[0.1, 0.2, 0.6, 0.3, 0.1]])
    error, threshold = rand_error(probability, truth_boundary, thresholds=(0.25, 0.5, 0.7))
    assert error == pytest.approx(0.0) and threshold == 0.5
