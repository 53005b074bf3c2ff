"""Augmentation for training tiles: elastic deformation (the paper's), flips, rotations, intensity.

Elastic: random displacement vectors on a coarse 3x3 grid (sigma 10 px), made
smooth by bicubic interpolation to full resolution; the image is resampled
bicubically, weights linearly, labels by nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentSettings:
    elastic: bool = True
    grid: int = 3
    sigma: float = 10.0
    flips: bool = True
    rotations: bool = True
    intensity: float = 0.1


def displacement_field(shape: tuple[int, int], grid: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(2, H, W) smooth displacements from (2, grid, grid) N(0, sigma) vectors, bicubic-upsampled."""
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    zoom = (shape[0] / grid, shape[1] / grid)
    return np.stack([ndimage.zoom(c, zoom, order=3, mode="nearest", grid_mode=True) for c in coarse])


def elastic(
    image: np.ndarray, target: np.ndarray, weights: np.ndarray, field: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp (C, H, W) image, (H, W) target and weights by one displacement field."""
    h, w = target.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([yy + field[0], xx + field[1]])
    warped = np.stack([ndimage.map_coordinates(c, coords, order=3, mode="reflect") for c in image])
    return (
        warped.astype(np.float32),
        ndimage.map_coordinates(target, coords, order=0, mode="reflect"),
        ndimage.map_coordinates(weights, coords, order=1, mode="reflect").astype(np.float32),
    )


def augment(
    image: np.ndarray, target: np.ndarray, weights: np.ndarray, settings: AugmentSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random augmentation of a (C, H, W) tile with its (H, W) target and weights."""
    if settings.elastic:
        field = displacement_field(target.shape, settings.grid, settings.sigma, rng)
        image, target, weights = elastic(image, target, weights, field)
    if settings.flips and rng.random() < 0.5:
        image, target, weights = image[..., ::-1], target[..., ::-1], weights[..., ::-1]
    if settings.rotations:
        k = int(rng.integers(4))
        image, target, weights = (np.rot90(a, k, axes=(-2, -1)) for a in (image, target, weights))
    if settings.intensity:
        gain = 1 + rng.uniform(-settings.intensity, settings.intensity)
        image = image * gain + rng.uniform(-settings.intensity, settings.intensity)
    return (np.ascontiguousarray(a) for a in (image, target, weights))  # type: ignore[return-value]
