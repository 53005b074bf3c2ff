"""The training YAML as typed settings (see jobs/train-isbi2012.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.settings import Settings
from pipeline.spec import NormalizeSettings
from pipeline.yamlfile import read_yaml


class LossSettings(Settings):
    w0: float = Field(10.0, ge=0)
    sigma: float = Field(5.0, gt=0)
    balance: bool = True


class AugmentSection(Settings):
    elastic: bool = True
    grid: int = Field(3, ge=2)
    sigma: float = Field(10.0, ge=0)
    flips: bool = True
    rotations: bool = True
    intensity: float = Field(0.1, ge=0, le=1)


class TrainData(Settings):
    images: str
    labels: str
    stack: bool = False
    foreground: Literal["nonzero", "zero"] = Field("nonzero", description="label pixels that are class 1")
    validation: list[str] = Field(
        default_factory=list, description="held out for validation: image keys, or 'key:plane' for single planes"
    )
    normalize: NormalizeSettings = NormalizeSettings()


class TrainModel(Settings):
    config: str | None = None
    checkpoint: str | None = None


class TrainLoop(Settings):
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(4, ge=1)
    tile: int = Field(256, ge=16)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    validate_every: int = Field(250, ge=1)
    select: Literal["rand_error", "pixel_error"] = Field(
        "rand_error", description="validation measure that picks best.safetensors (lowest wins)"
    )
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default)")


class TrainSpec(Settings):
    name: str
    model: TrainModel
    data: TrainData
    train: TrainLoop = TrainLoop()
    loss: LossSettings = LossSettings()
    augment: AugmentSection = AugmentSection()
    output: str

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        """Read the YAML; relative paths are relative to the YAML file."""
        path = Path(path)
        spec = cls.from_yaml_document(read_yaml(path))
        base = path.absolute().parent  # as for job files: relative to where the file appears

        def rel(p: str | None) -> str | None:
            return p if p is None or "://" in p else str((base / p).resolve())

        return spec.model_copy(
            update={
                "model": spec.model.model_copy(
                    update={"config": rel(spec.model.config), "checkpoint": rel(spec.model.checkpoint)}
                ),
                "data": spec.data.model_copy(update={"images": rel(spec.data.images), "labels": rel(spec.data.labels)}),
                "output": rel(spec.output),
            }
        )
