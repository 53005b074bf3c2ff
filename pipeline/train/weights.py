"""The paper's weight map: class balance plus a border term between touching objects.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances class frequencies; d1, d2 are the distances to the nearest and
second-nearest object.  The border term applies to background pixels, where
objects nearly touch; computed once per training image (as the paper does).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components


def instances_from_mask(foreground: np.ndarray) -> np.ndarray:
    """Instance labels (1..K, background 0) from a binary mask, 4-connected."""
    return np.asarray(connected_components(foreground.astype(bool), connectivity=1), dtype=np.int32)


def class_balance(target: np.ndarray, classes: int) -> np.ndarray:
    """Per-pixel weight N / (K * count_c): every class carries the same total weight."""
    counts = np.bincount(target.ravel(), minlength=classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(classes)
    per_class[present] = target.size / (present.sum() * counts[present])
    return per_class[target].astype(np.float32)


def two_nearest_distances(instances: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1 <= d2 to the two nearest objects, capped at `reach`.

    Each object's distance transform is computed only inside its bounding box
    grown by `reach`, so the cost is O(pixels near objects), not O(K * pixels).
    """
    d1 = np.full(instances.shape, reach, np.float32)
    d2 = np.full(instances.shape, reach, np.float32)
    r = int(np.ceil(reach))
    for index, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(0, s.start - r), min(n, s.stop + r)) for s, n in zip(box, instances.shape, strict=True))
        outside = instances[grown] != index
        d = np.minimum(ndimage.distance_transform_edt(outside), reach).astype(np.float32)
        a, b = d1[grown], d2[grown]
        d2[grown] = np.where(d < a, a, np.minimum(b, d))
        d1[grown] = np.minimum(a, d)
    return d1, d2


def weight_map(
    target: np.ndarray,
    instances: np.ndarray,
    classes: int,
    w0: float = 10.0,
    sigma: float = 5.0,
    balance: bool = True,
) -> np.ndarray:
    """The paper's w(x) for a class map `target` and its object `instances`."""
    weights = class_balance(target, classes) if balance else np.ones(target.shape, np.float32)
    if w0 > 0:
        d1, d2 = two_nearest_distances(instances, reach=6 * sigma)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        weights = weights + np.where(instances == 0, border, 0).astype(np.float32)
    return weights.astype(np.float32)
