"""`segment-archive evaluate`: score predictions against ground truth with the ISBI 2012 measures.

Predictions come from a checkpoint (predicted here) or from a mask store
written by `submit` (labels, mask or probabilities).  For instances, the
objects themselves are scored: their foreground-restricted Rand error against
the truth's objects (the 4-connected components of non-boundary pixels).  Ground truth is any
labelled archive pipeline.io reads; `foreground` says which label pixels are
class 1 (ISBI: membrane is black, `zero`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import InputError
from pipeline.io import open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.io.normalize import affine_for, normalize
from pipeline.metrics import connected_components, iou_dice, pixel_error, rand_error, rand_f_score
from pipeline.outputkinds import OutputKind
from pipeline.spec import NormalizeSettings


@dataclass
class PlaneScore:
    key: str
    plane: int
    pixel_error: float
    rand_error: float
    rand_threshold: float
    iou: list[float]
    dice: list[float]


@dataclass
class InstanceScore:
    key: str
    plane: int
    rand_error: float
    objects: int
    truth_objects: int


@dataclass
class Evaluation:
    planes: list[PlaneScore] = field(default_factory=list)
    instances: list[InstanceScore] = field(default_factory=list)
    foreground: dict[str, str] = field(default_factory=dict)  # "key:plane" -> the label polarity used

    def summary(self) -> dict[str, Any]:
        used = sorted(set(self.foreground.values()))
        return {**self.scores(), "foreground": used[0] if len(used) == 1 else used}

    def scores(self) -> dict[str, Any]:
        if self.instances:
            return {
                "planes": len(self.instances),
                "instance_rand_error": float(np.mean([s.rand_error for s in self.instances])),
                "objects": sum(s.objects for s in self.instances),
                "truth_objects": sum(s.truth_objects for s in self.instances),
            }
        if not self.planes:
            return {"planes": 0}

        def mean(name: str) -> float:
            return float(np.mean([getattr(p, name) for p in self.planes]))

        classes = len(self.planes[0].iou)
        return {
            "planes": len(self.planes),
            "pixel_error": mean("pixel_error"),
            "rand_error": mean("rand_error"),
            "iou": [float(np.mean([p.iou[c] for p in self.planes])) for c in range(classes)],
            "dice": [float(np.mean([p.dice[c] for p in self.planes])) for c in range(classes)],
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "planes": [asdict(p) for p in self.planes or self.instances]}


def score_plane(key: str, plane: int, foreground_probability: np.ndarray, truth: np.ndarray) -> PlaneScore:
    """Scores of one plane: `truth` is the (H, W) class map, 1 = foreground (boundary)."""
    predicted = (foreground_probability >= 0.5).astype(np.int64)
    rand, threshold = rand_error(foreground_probability, truth.astype(bool))
    overlap = iou_dice(predicted, truth, 2)
    return PlaneScore(key, plane, pixel_error(predicted, truth), rand, threshold, overlap["iou"], overlap["dice"])


def score_instances(key: str, plane: int, objects: np.ndarray, truth: np.ndarray) -> InstanceScore:
    """Rand error of (H, W) object ids against the truth's objects; `truth` is the class map, 1 = boundary."""
    truth_objects = connected_components(truth == 0, connectivity=1)
    error = 1.0 - rand_f_score(truth_objects, objects)
    return InstanceScore(key, plane, error, len(np.unique(objects[objects > 0])), int(truth_objects.max()))


# With --foreground auto, the label value that is the foreground is the rarer one, unless they
# are too close to call (membranes, nuclei and lesions are the minority of their images).
AMBIGUOUS_SHARE = 0.4


def polarity(raw: np.ndarray, foreground: str, where: str) -> str:
    """ "zero" or "nonzero": which pixels of a binary label plane are the foreground; InputError if unusable."""
    values = np.unique(raw)
    if len(values) > 2:
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise InputError(
            f"{where}: labels hold {len(values)} distinct values ({shown}); evaluate scores binary labels "
            "(foreground and background): give a binary mask per plane"
        )
    zero_share = float(np.mean(raw == 0))
    if foreground == "auto":
        if AMBIGUOUS_SHARE < zero_share < 1 - AMBIGUOUS_SHARE:
            raise InputError(
                f"{where}: cannot tell which label value is the foreground ({zero_share:.0%} of pixels are 0, "
                f"{1 - zero_share:.0%} are not): give --foreground zero or --foreground nonzero"
            )
        return "zero" if zero_share < 0.5 else "nonzero"
    return foreground


def truth_planes(
    labels: str, keys: list[str] | None, foreground: str, chosen: dict[str, str] | None = None
) -> Iterator[tuple[str, int, np.ndarray]]:
    """(key, plane, class map with 1 = foreground) of the labels; `chosen` gets the polarity each plane used."""
    archive = open_archive(labels)
    for key in keys or archive.image_keys():
        image = archive.open(key)
        h, w = image.plane_shape
        for plane in range(image.n_planes):
            raw = image.read(plane, slice(0, h), slice(0, w))[0]
            used = polarity(raw, foreground, f"{image.source} plane {plane}")
            if chosen is not None:
                how = "auto: the rarer value" if foreground == "auto" else "given"
                chosen[f"{key}:{plane}"] = f"{used} ({how})"
            yield key, plane, (raw == 0 if used == "zero" else raw != 0).astype(np.int64)


def evaluate_checkpoint(
    checkpoint: str,
    images: str,
    labels: str,
    keys: list[str] | None = None,
    foreground: str = "auto",
    normalize_settings: NormalizeSettings | None = None,
    tile: int = 4096,
) -> Evaluation:
    from pipeline.model import load_checkpoint
    from pipeline.predict import predict_image

    model = load_checkpoint(checkpoint)
    settings = normalize_settings or NormalizeSettings()
    archive = open_archive(images)
    result = Evaluation()
    for key, plane, truth in truth_planes(labels, keys, foreground, result.foreground):
        image = archive.open(key)
        h, w = image.plane_shape
        scale, offset = affine_for(image, settings)
        pixels = normalize(image.read(plane, slice(0, h), slice(0, w)), scale, offset, "reject", image.source)
        probabilities = predict_image(model, pixels, tile=tile, batch_size=1)
        fg = probabilities[0] if model.config.classes == 1 else probabilities[1]
        result.planes.append(score_plane(key, plane, fg, truth))
    return result


def stored_foreground(stored: np.ndarray) -> np.ndarray:
    """Foreground of one stored plane: binary for (H, W) labels/mask, class 1 of (classes, H, W) probabilities."""
    if stored.ndim == 2:
        return (stored >= 1).astype(np.float32)
    return stored[min(1, stored.shape[0] - 1)]


def evaluate_store(store: str, labels: str, keys: list[str] | None = None, foreground: str = "auto") -> Evaluation:
    """Score a mask store written by `submit`, one plane in memory at a time."""
    result = Evaluation()
    groups = (MaskStore(store, "labels"), MaskStore(store, "probabilities"))
    outputs: dict[str, tuple[MaskStore, OutputKind]] = {}  # each image's group and kind, looked up once
    for key, plane, truth in truth_planes(labels, keys, foreground, result.foreground):
        if key not in outputs:
            output = next((g for g in groups if g.image_attrs(key) is not None), None)
            if output is None:
                raise InputError(f"{store}: no output for image {key!r}")
            outputs[key] = output, output.written_kind(key)
        output, kind = outputs[key]
        stored = output.read_plane(key, plane)
        if kind.instance_pass:  # numbered objects
            result.instances.append(score_instances(key, plane, stored, truth))
        else:
            result.planes.append(score_plane(key, plane, stored_foreground(stored), truth))
    return result
