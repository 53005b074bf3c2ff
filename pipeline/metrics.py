"""Segmentation measures of the ISBI 2012 challenge, and IoU/Dice.

* pixel error: fraction of pixels whose class differs from the truth.
* Rand error: 1 - the maximal foreground-restricted Rand F-score over
  thresholds of the boundary probability.  Objects are the 4-connected
  components of non-boundary pixels; truth boundary pixels are left out of the
  count (the foreground restriction), as in the challenge and SNEMI3D
  (`skimage.metrics.adapted_rand_error`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import label as connected_components
from skimage.metrics import adapted_rand_error

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))


def pixel_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(predicted != truth))


def rand_f_score(truth_objects: np.ndarray, predicted_objects: np.ndarray) -> float:
    """Foreground-restricted Rand F-score; truth label 0 (boundary) is ignored."""
    error, _, _ = adapted_rand_error(truth_objects, predicted_objects, ignore_labels=(0,))
    return 1.0 - float(error)


def rand_error(
    boundary_probability: np.ndarray, truth_boundary: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> tuple[float, float]:
    """(1 - max Rand F-score, best threshold) for one 2-D plane."""
    truth_objects = connected_components(~truth_boundary.astype(bool), connectivity=1)
    best, best_t = -1.0, float(thresholds[0])
    for t in thresholds:
        predicted_objects = connected_components(boundary_probability < t, connectivity=1)
        score = rand_f_score(truth_objects, predicted_objects)
        if score > best:
            best, best_t = score, float(t)
    return 1.0 - best, best_t


def iou_dice(predicted: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, list[float]]:
    """Per-class IoU and Dice; a class absent from both is scored 1."""
    iou, dice = [], []
    for c in range(classes):
        p, t = predicted == c, truth == c
        inter, union, total = np.sum(p & t), np.sum(p | t), np.sum(p) + np.sum(t)
        iou.append(float(inter / union) if union else 1.0)
        dice.append(float(2 * inter / total) if total else 1.0)
    return {"iou": iou, "dice": dice}
