"""Human-readable summary of a model: what `segment-archive model info` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.model.checkpoint import load_checkpoint, model_fingerprint, trained_on
from pipeline.model.config import UNetConfig
from pipeline.model.unet import UNet, parameter_count
from pipeline.spec import NormalizeSettings


def load_model_source(source: str | Path) -> UNet:
    """A checkpoint's model, or a randomly initialised one for a config YAML."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        return UNet(UNetConfig.from_yaml(str(path))).eval()
    return load_checkpoint(path)


def describe_source(source: str | Path) -> str:
    """What `model info SOURCE` prints: the model, and for a checkpoint what it was trained on."""
    path = Path(source)
    checkpoint = path.suffix not in (".yaml", ".yml")
    return describe_model(load_model_source(path), trained_on(path) if checkpoint else None, checkpoint)


def trained_on_line(record: dict[str, Any] | None, checkpoint: bool) -> str:
    if record is None:
        return "trained on: not recorded" + ("" if checkpoint else " (a config: random weights)")
    return (
        f"trained on: normalize {NormalizeSettings.model_validate(record['normalize']).describe()}; "
        f"normalised pixels in "
        f"[{record['low']:.4g}, {record['high']:.4g}] (0.5th-99.5th percentile); jobs whose input "
        "lies far outside are refused at planning"
    )


def describe_model(model: UNet, trained: dict[str, Any] | None = None, checkpoint: bool = False) -> str:
    g = model.geometry
    config = "\n".join(f"  {key}: {value}" for key, value in model.config.model_dump().items())
    example = g.valid_input_at_least(512)
    return "\n".join(
        [
            "config:",
            config,
            f"parameters: {parameter_count(model):,}",
            f"fingerprint: {model_fingerprint(model)[:16]}",
            "geometry:",
            f"  down-sampling factor: {g.factor}",
            f"  receptive-field radius: {g.radius} px",
            f"  margin (context kept per side): {g.margin} px",
            f"  legal input sizes: {g.first_input} + k*{g.factor}",
            f"  smallest useful tile: {g.min_tile} px -> {g.step(g.min_tile)} px of output",
            f"  example: {example} px in -> {g.raw_output_size(example)} px raw out, "
            f"{g.step(example)} px kept per tile",
            trained_on_line(trained, checkpoint),
        ]
    )
