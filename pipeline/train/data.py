"""Labelled planes for training: loaded once, weight maps pre-computed, tiles sampled at random."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.io import open_archive
from pipeline.io.normalize import affine_for, normalize
from pipeline.model.geometry import NetGeometry
from pipeline.tiling import mirrored, reflect_indices
from pipeline.train.augment import AugmentSettings, augment
from pipeline.train.spec import TrainSpec
from pipeline.train.weights import instances_from_mask, weight_map


@dataclass
class Plane:
    key: str
    image: np.ndarray  # (C, H, W) float32, normalised
    target: np.ndarray  # (H, W) int64 class per pixel
    weights: np.ndarray  # (H, W) float32


def load_planes(spec: TrainSpec, classes: int) -> tuple[list[Plane], list[Plane]]:
    """(training planes, validation planes), split by the image keys in data.validation."""
    images = open_archive(spec.data.images, stack=spec.data.stack)
    labels = open_archive(spec.data.labels, stack=spec.data.stack)
    missing = [k for k in spec.data.validation if k.rsplit(":", 1)[0] not in images.entries]
    if missing:
        raise InputError(f"{spec.data.images}: validation keys {missing} are not images of the training data")
    train: list[Plane] = []
    val: list[Plane] = []
    for key in images.image_keys():
        if key not in labels.entries:
            raise InputError(f"{spec.data.labels}: no label image for {key!r}")
        image, label = images.open(key), labels.open(key)
        if image.plane_shape != label.plane_shape or image.n_planes != label.n_planes:
            raise InputError(f"{label.source}: label shape differs from its image {image.source}")
        scale, offset = affine_for(image, spec.data.normalize)
        rows, cols = slice(0, image.plane_shape[0]), slice(0, image.plane_shape[1])
        for plane in range(image.n_planes):
            pixels = normalize(image.read(plane, rows, cols), scale, offset, "reject", image.source)
            raw = label.read(plane, rows, cols)[0]
            foreground = raw == 0 if spec.data.foreground == "zero" else raw != 0
            target = foreground.astype(np.int64)
            # Objects for the border term: the regions the foreground separates (cells
            # between membranes), or the foreground objects themselves.
            objects = instances_from_mask(~foreground if spec.data.foreground == "zero" else foreground)
            weights = weight_map(target, objects, max(classes, 2), spec.loss.w0, spec.loss.sigma, spec.loss.balance)
            held_out = key in spec.data.validation or f"{key}:{plane}" in spec.data.validation
            (val if held_out else train).append(Plane(f"{key}:{plane}", pixels, target, weights))
    if not train:
        raise InputError(f"{spec.data.images}: no training planes left after holding out {spec.data.validation}")
    return train, val


def sample_batch(
    planes: list[Plane],
    batch_size: int,
    tile: int,
    geometry: NetGeometry,
    settings: AugmentSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random augmented tiles: inputs (B, C, T, T), targets and weights cropped to the output."""
    crop = geometry.output_offset
    out = tile - geometry.shrink
    xs, ys, ws = [], [], []
    for _ in range(batch_size):
        plane = planes[int(rng.integers(len(planes)))]
        h, w = plane.target.shape
        # Origins reach a quarter tile past each border: the net learns mirrored context too.
        y0 = int(rng.integers(-tile // 4, max(1, h - tile + tile // 4)))
        x0 = int(rng.integers(-tile // 4, max(1, w - tile + tile // 4)))
        iy, ix = reflect_indices(y0, y0 + tile, h), reflect_indices(x0, x0 + tile, w)
        image = mirrored(plane.image, iy, ix)
        target, weights = mirrored(plane.target, iy, ix), mirrored(plane.weights, iy, ix)
        image, target, weights = augment(image, target, weights, settings, rng)
        xs.append(image)
        ys.append(target[crop : crop + out, crop : crop + out])
        ws.append(weights[crop : crop + out, crop : crop + out])
    return np.stack(xs), np.stack(ys), np.stack(ws)
