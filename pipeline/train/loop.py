"""The training loop: the paper's weighted loss on augmented tiles, validation, checkpoints.

    segment-archive train jobs/train-isbi2012.yaml [--resume]

Writes into the spec's output folder: `last.pt` (model, optimizer, step, RNG:
what `--resume` continues from), `best.safetensors` (lowest validation
`train.select` so far), `metrics.csv` and `metrics.jsonl` (one row per validation).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.cpumemory import keep_freed_memory
from pipeline.errors import ConfigError
from pipeline.io.normalize import value_range
from pipeline.metrics import iou_dice, pixel_error, rand_error
from pipeline.model import UNet, UNetConfig, load_checkpoint, save_checkpoint
from pipeline.model.checkpoint import model_from_payload, read_checkpoint
from pipeline.predict import predict_image
from pipeline.train.augment import AugmentSettings
from pipeline.train.data import Plane, load_planes, sample_batch
from pipeline.train.spec import TrainSpec

VALIDATION_TILE = 4096


@dataclass
class Validation:
    step: int
    loss: float
    pixel_error: float
    rand_error: float
    iou_foreground: float
    seconds: float


def weighted_loss(model: UNet, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy (binary for one-class heads), weighted by the paper's w(x)."""
    if model.config.classes == 1:
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, target, reduction="none")
    return (per_pixel * weights).sum() / weights.sum()


def build_model(spec: TrainSpec) -> UNet:
    if spec.model.checkpoint:
        return load_checkpoint(spec.model.checkpoint).train()
    if spec.model.config:
        return UNet(UNetConfig.from_yaml(spec.model.config))
    raise ConfigError(f"{spec.name}: model.config or model.checkpoint is required")


def build_optimizer(spec: TrainSpec, model: UNet) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def foreground_probability(model: UNet, probabilities: np.ndarray) -> np.ndarray:
    return probabilities[0] if model.config.classes == 1 else probabilities[1]


def validate(model: UNet, planes: list[Plane], step: int) -> Validation:
    """Pixel error, Rand error (foreground = boundary class) and IoU on whole held-out planes."""
    start = time.perf_counter()
    model.eval()
    pix, rand, iou, losses = [], [], [], []
    for plane in planes:
        # One tile covering the plane: the fastest exact prediction on a CPU.
        probs = predict_image(model, plane.image, tile=VALIDATION_TILE, batch_size=1, device=str(model_device(model)))
        fg = foreground_probability(model, probs)
        predicted = (fg >= 0.5).astype(np.int64)
        pix.append(pixel_error(predicted, plane.target))
        rand.append(rand_error(fg, plane.target.astype(bool))[0])
        iou.append(iou_dice(predicted, plane.target, 2)["iou"][1])
        p = np.clip(fg, 1e-6, 1 - 1e-6)
        losses.append(float(-np.mean(np.where(plane.target == 1, np.log(p), np.log(1 - p)))))
    model.train()
    return Validation(
        step,
        float(np.mean(losses)),
        float(np.mean(pix)),
        float(np.mean(rand)),
        float(np.mean(iou)),
        time.perf_counter() - start,
    )


def append_metrics(folder: Path, row: Validation) -> None:
    record = asdict(row)
    with (folder / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    csv_path = folder / "metrics.csv"
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)


def keep_metrics_up_to(folder: Path, step: int) -> None:
    """Drop the metrics rows after `step` (all of them for a fresh start): a rerun never duplicates rows."""
    jsonl, csv_path = folder / "metrics.jsonl", folder / "metrics.csv"
    if not jsonl.exists():
        csv_path.unlink(missing_ok=True)
        return
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    kept = [row for row in rows if int(row["step"]) <= step]
    jsonl.unlink()
    csv_path.unlink(missing_ok=True)
    for row in kept:
        append_metrics(folder, Validation(**row))


def trained_steps(output: str) -> int:
    """The step the run in `output` has reached (its last.pt), 0 if none."""
    last = Path(output) / "last.pt"
    return int(read_checkpoint(last).get("step", 0)) if last.exists() else 0


def resume_state(
    folder: Path, model: UNet, optimizer: torch.optim.Optimizer
) -> tuple[int, float, dict[str, Any] | None]:
    """(next step, best validation score, RNG state) from `last.pt`, restoring model and optimizer."""
    payload = read_checkpoint(folder / "last.pt")
    restored = model_from_payload(payload, str(folder / "last.pt"))
    model.load_state_dict(restored.state_dict())
    optimizer.load_state_dict(payload["optimizer"])
    return int(payload["step"]), float(payload["best_score"]), json.loads(payload["rng"])


ProgressHook = Callable[[int, float, float], None]


@dataclass(frozen=True)
class Replica:
    """Where this copy of the loop runs: rank 0 of 1 alone, or one DDP worker of many.

    `wrap` turns the model into what the forward pass goes through (DDP under
    Ray Train); only rank 0 validates and writes checkpoints and metrics.
    """

    rank: int = 0
    world: int = 1
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None


def trained_on_record(spec: TrainSpec, planes: list[Plane]) -> dict[str, Any]:
    """What the checkpoints record the model was trained on: the normalisation, and the range most of the
    normalised training pixels lie in (every 7th pixel: the range of a sample, as planning measures a job's)."""
    low, high = value_range(np.concatenate([p.image.ravel()[::7] for p in planes]))
    return {"normalize": spec.data.normalize.model_dump(mode="json"), "low": low, "high": high}


def train(
    spec: TrainSpec, resume: bool = False, progress: ProgressHook | None = None, replica: Replica = Replica()
) -> list[Validation]:
    """Train to `spec.train.steps`; returns the validation rows of this call."""
    t = spec.train
    if t.threads:
        torch.set_num_threads(t.threads)
    keep_freed_memory()  # each step frees and reallocates the same activations
    folder = Path(spec.output)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)
    model = build_model(spec).train()
    optimizer = build_optimizer(spec, model)
    rng = np.random.default_rng(t.seed + replica.rank)
    step, best = 0, float("inf")
    if resume and (folder / "last.pt").exists():
        step, best, rng_state = resume_state(folder, model, optimizer)
        if rng_state and replica.rank == 0:
            rng.bit_generator.state = rng_state
        elif replica.rank:
            rng = np.random.default_rng([t.seed, replica.rank, step])
    forward = replica.wrap(model) if replica.wrap else model
    main_replica = replica.rank == 0
    if main_replica:
        keep_metrics_up_to(folder, step)  # rows of a killed run after its last checkpoint, or of an earlier run
    train_planes, val_planes = load_planes(spec, model.config.classes)
    trained = trained_on_record(spec, train_planes)
    geometry = model.geometry
    tile = geometry.valid_input_at_least(max(t.tile, geometry.first_input))
    aug = AugmentSettings(**spec.augment.model_dump())
    rows: list[Validation] = []
    started = time.perf_counter()
    while step < t.steps:
        x, y, w = sample_batch(train_planes, t.batch_size, tile, geometry, aug, rng)
        device = model_device(model)  # Ray Train's prepare_model may have moved it to a GPU
        logits = forward(torch.from_numpy(x).to(device))
        loss = weighted_loss(model, logits, torch.from_numpy(y).to(device), torch.from_numpy(w).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress:
            progress(step, loss.item(), (step * t.batch_size * replica.world) / (time.perf_counter() - started))
        if main_replica and (step % t.validate_every == 0 or step == t.steps):
            row = validate(model, val_planes or train_planes[:2], step)
            rows.append(row)
            append_metrics(folder, row)
            score = getattr(row, t.select)
            if score < best:
                best = score
                save_checkpoint(model, folder / "best.safetensors", trained_on=trained)
            save_checkpoint(
                model,
                folder / "last.pt",
                trained_on=trained,
                optimizer=optimizer.state_dict(),
                step=step,
                best_score=best,
                rng=json.dumps(rng.bit_generator.state),
            )
    return rows
