"""The job YAML as typed, validated settings: `JobSpec.load("job.yaml")`.

Validated once at the edge (unknown keys, wrong types, missing files, all
reported with `file:line` and the field), then trusted everywhere else.
Relative paths are relative to the YAML file.  Credentials never live here:
object stores take them from the environment (AWS_*, GOOGLE_*).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from pipeline.axes import axes_problem
from pipeline.errors import ConfigError
from pipeline.outputspec import OutputSpec, StoreFormat
from pipeline.settings import Settings
from pipeline.yamlfile import YamlDocument, read_yaml


class NormalizeSettings(Settings):
    mode: Literal["none", "scale", "percentile"] = Field(
        "scale", description="none: raw values; scale: x * scale + offset; percentile: low..high of a sample to 0..1"
    )
    scale: float = Field(1 / 255, description="mode scale: x * scale + offset")
    offset: float = Field(0.0, description="mode scale: added after scaling")
    low: float = Field(1.0, ge=0, le=100, description="mode percentile: maps to 0")
    high: float = Field(99.0, ge=0, le=100, description="mode percentile: maps to 1")
    nonfinite: Literal["reject", "zero"] = Field("reject", description="NaN/inf pixels: quarantine the block, or use 0")

    @model_validator(mode="after")
    def _ordered(self) -> NormalizeSettings:
        if self.mode == "percentile" and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def describe(self) -> str:
        """`scale 0.003922, offset 0` or `percentile 1-99`: as a person reads it."""
        if self.mode == "scale":
            return f"scale {self.scale:.4g}, offset {self.offset:.4g}"
        if self.mode == "percentile":
            return f"percentile {self.low:g}-{self.high:g}"
        return "none"


class InputSpec(Settings):
    path: str = Field(description="store, file, folder, glob or URL (s3://, gs://, file://)")
    axes: str | None = Field(None, description="axes of every image, e.g. zyx or tczyx; inferred if absent")
    stack: bool = Field(False, description="treat the matched 2-D slices as one z-stack")

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: str | None) -> str | None:
        problem = axes_problem(v.lower()) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v.lower() if v else v


class ModelSpec(Settings):
    checkpoint: str | None = Field(None, description="a .safetensors or .pt checkpoint")
    config: str | None = Field(None, description="a model config YAML: random weights, for testing")
    seed: int = Field(0, ge=0, lt=2**63, description="seed for random weights (model.config only)")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.checkpoint is None) == (self.config is None):
            raise ValueError("give exactly one of model.checkpoint or model.config")
        return self


class SkipEmpty(Settings):
    """Blocks with nothing in them are written as background without running the net.

    A block is empty when the standard deviation of its normalised pixels,
    sampled every `stride` pixels, is below `std_below` (flat resin, empty
    slide, padding).  Judged on the block's own pixels from the window the
    reader fetched anyway: no extra read.
    """

    std_below: float = Field(gt=0, description="normalised standard deviation below which a block is empty")
    stride: int = Field(4, ge=1, le=64, description="sample every stride-th pixel along y and x")


class InferenceSpec(Settings):
    tile: int = Field(
        1024, ge=16, description="input tile size requested (snapped to a legal size, shrunk to one block)"
    )
    batch_size: int = Field(4, ge=1, le=4096, description="tiles per forward of the net")
    normalize: NormalizeSettings = Field(
        NormalizeSettings(), description="intensities into the range the net was trained on"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA where the actor has a GPU")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32", description="fp32 is exact to round-off; bf16/fp16 are faster on GPUs; auto: bf16 where supported"
    )
    threshold: float = Field(0.5, description="output.kind mask: foreground where its probability >= this")
    skip_empty: SkipEmpty | None = Field(None, description="write flat blocks as background, without the net")


class ResourcesSpec(Settings):
    address: str | None = Field(None, description="Ray address: auto, ray://host:10001; none = local Ray")
    actors: int = Field(1, ge=1, description="predictor actors (one model each)")
    gpus_per_actor: float = Field(0.0, ge=0, description="0 = CPU actors; 1 = one GPU per actor")
    cpus_per_actor: float | Literal["auto"] = Field(
        "auto",
        description="CPUs per predictor actor (its torch threads on a CPU); auto: CPU actors on a local Ray share "
        "the machine's cores, others take 1",
    )
    cpus_per_reader: float = Field(0.5, gt=0, description="CPUs per read and per write task")
    io: Literal["auto", "tasks", "actor"] = Field(
        "auto",
        description="who reads and writes the units: CPU tasks of their own (tasks), or the predictor actor itself "
        "(actor); auto = actor for CPU actors (gpus_per_actor 0), tasks for GPU actors",
    )
    retries: int = Field(2, ge=0, description="attempts after the first before a unit is quarantined")
    window: int | None = Field(
        None, ge=1, description="deprecated and ignored: every pass of a job is one stream, whatever its size"
    )
    units_per_task: int | Literal["auto"] = Field(
        "auto",
        description="units per read and write task (per actor call with io: actor): more amortise Ray's cost per "
        "task; auto: 2 where the actor does its own IO (a CPU model is slow), 16 with reader tasks (a GPU is fast)",
    )

    @field_validator("cpus_per_actor")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if v != "auto" and float(v) <= 0:
            raise ValueError("must be greater than 0, or auto")
        return v

    @field_validator("units_per_task")
    @classmethod
    def _units(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= int(v) <= 64:
            raise ValueError("must be 1 to 64, or auto")
        return v

    def task_units(self) -> int:
        """Units per task, `auto` resolved (with a null model, reader tasks of 2 units fed 9 Mpx/s, of 32: 15)."""
        if self.units_per_task != "auto":
            return int(self.units_per_task)
        return 2 if self.io_in_actor() else 16

    def actor_cpus(self) -> float:
        """CPUs per predictor actor, `auto` resolved: the cores a local machine has, shared by its CPU actors."""
        if self.cpus_per_actor != "auto":
            return float(self.cpus_per_actor)
        if self.gpus_per_actor == 0 and not self.address:
            return float(max(1, (os.cpu_count() or 1) // self.actors))
        return 1.0  # a GPU actor's host thread; on a cluster the nodes' sizes are not known here

    def io_in_actor(self) -> bool:
        """True when the predictor actor reads and writes its own units.

        A GPU waits on one reader at a time, so GPU actors are fed by reader tasks on
        other cores.  A CPU actor's model uses the cores those tasks would take, and
        each task costs Ray's per-task overhead on top: on the 2-core benchmark
        machine the actor doing its own IO finished 8 images in 51 s vs 57-60 s.
        """
        return self.io == "actor" or (self.io == "auto" and self.gpus_per_actor == 0)


class JobSpec(Settings):
    name: str = Field(min_length=1, max_length=200, description="the job's name, in reports and the manifest")
    input: InputSpec = Field(description="the images to segment")
    model: ModelSpec = Field(description="the U-Net: a checkpoint, or a config with random weights")
    inference: InferenceSpec = Field(InferenceSpec(), description="how the net is run over the images")
    output: OutputSpec = Field(description="the mask store and what it holds")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="Ray: where and with how many actors")

    @model_validator(mode="after")
    def _cuda_actors_have_gpus(self) -> Self:
        # Ray hides every GPU from a worker that asked for none (CUDA_VISIBLE_DEVICES=""):
        # each actor would fail to start, after the job had begun.
        if self.inference.device == "cuda" and self.resources.gpus_per_actor == 0:
            raise ValueError(
                "inference.device is 'cuda' but resources.gpus_per_actor is 0, and Ray shows no GPU to an actor "
                "that asks for none: set resources.gpus_per_actor (1 = a GPU per actor), or device: auto"
            )
        return self

    @classmethod
    def load(cls, path: str | Path) -> JobSpec:
        """Parse and validate a job file; relative paths resolve against its folder."""
        doc = read_yaml(path)
        spec = cls.from_yaml_document(doc)
        # absolute(), not resolve(): a job file that is a symlink (a Kubernetes ConfigMap
        # mount) names paths relative to where it appears, not to its hidden target.
        return spec.resolved(Path(path).absolute().parent, doc)

    def resolved(self, base: Path, doc: YamlDocument | None = None) -> JobSpec:
        def local(p: str | None) -> str | None:
            return p if p is None or "://" in p else str((base / Path(p).expanduser()).resolve())

        for field_path, value in (
            (("input", "path"), self.input.path),
            (("output", "path"), self.output.path),
            (("model", "checkpoint"), self.model.checkpoint),
            (("model", "config"), self.model.config),
        ):
            if value is not None and "\x00" in value:
                where = doc.where(field_path) if doc else "job"
                raise ConfigError(f"{where}: {'.'.join(field_path)}: a path cannot hold a NUL character")

        spec = self.model_copy(
            update={
                "input": self.input.model_copy(update={"path": local(self.input.path)}),
                "model": self.model.model_copy(
                    update={"checkpoint": local(self.model.checkpoint), "config": local(self.model.config)}
                ),
                "output": self.output.model_copy(update={"path": local(self.output.path)}),
            }
        )
        for field, value in (("checkpoint", spec.model.checkpoint), ("config", spec.model.config)):
            if value is not None and "://" not in value and not Path(value).is_file():
                where = doc.where(("model", field)) if doc else "job"
                raise ConfigError(f"{where}: model.{field}: no such file {value}")
        return spec

    def with_format(self, fmt: StoreFormat) -> JobSpec:
        """The job with output.format set (the driver: to the format of the store already there)."""
        return self.model_copy(update={"output": self.output.model_copy(update={"format": fmt})})

    @property
    def unit_shape(self) -> tuple[int, int]:
        """The work unit: output.unit resolved (its default depends on GPU actors)."""
        return self.output.unit_shape(self.resources.gpus_per_actor > 0)

    def output_layout_settings(self) -> dict[str, Any]:
        """The output settings the masks depend on.  An ngff-0.4 job leaves out the fields it does not
        use, so that its fingerprint is the one earlier versions recorded."""
        settings = self.output.fingerprint_settings()
        if self.output.store_format != "ngff-0.4":
            settings.update(
                format=self.output.store_format, chunks=list(self.output.chunk_shape), unit=list(self.unit_shape)
            )
        return settings

    def fingerprint(self, model_fingerprint: str) -> str:
        """What the masks depend on: model, normalisation, precision, tile, output kind and layout.

        Not batch size, device or resources: those change speed, not the result
        beyond float round-off.
        """
        settings: dict[str, Any] = {
            "model": model_fingerprint,
            "normalize": self.inference.normalize.model_dump(mode="json"),
            "precision": self.inference.precision,
            "tile": self.inference.tile,
            "threshold": self.inference.threshold if self.output.kind == "mask" else None,
            "skip_empty": self.inference.skip_empty.model_dump() if self.inference.skip_empty else None,
            "output": self.output_layout_settings(),
            "axes": self.input.axes,
            "stack": self.input.stack,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
