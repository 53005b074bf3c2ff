"""The job file's `output` section: one settings class per output.kind (a tagged union).

Every kind has the store's place, format, chunks, work unit and pyramid
(`OutputSettings`); only `probabilities` and `instances` have a stored precision,
and only `instances` how its objects are found.  A setting of another kind is
refused by name at load.  `pipeline.outputkinds` turns these settings into what
a kind stores and how.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from pipeline.settings import Settings

KIND_DESCRIPTION = (
    "labels: most probable class; mask: 0/1; probabilities: per class; instances: objects (each kind has only "
    "the settings it uses)"
)
PRECISION_DESCRIPTION = "stored precision of the probabilities (of instances: of the object probability)"
Precision = Literal["float32", "float16"]


class InstancesSpec(Settings):
    """How output.kind instances turns the object probability into numbered objects (per 2-D plane).

    Objects are the `foreground` classes (1..N), or the `background` (class 0) for
    membrane models, whose objects are the cells that the membranes enclose.
    """

    method: Literal["components", "watershed"] = Field(
        "components", description="components: connected pixels; watershed: touching objects split at seeds"
    )
    objects: Literal["foreground", "background"] = Field(
        "foreground", description="objects are the foreground classes, or class 0 (membrane models: the cells)"
    )
    threshold: float = Field(0.5, gt=0, le=1, description="object pixels: object probability >= this")
    connectivity: Literal[4, 8] = Field(8, description="4: edge neighbours only; 8: corners too")
    min_size: int = Field(0, ge=0, description="drop objects with fewer pixels (0: keep all)")
    seed_threshold: float = Field(0.9, gt=0, le=1, description="watershed seeds: object probability >= this")
    halo: int = Field(
        256, ge=1, le=4096, description="watershed: components up to halo x halo px are split; larger stay whole"
    )

    @model_validator(mode="after")
    def _seeds_inside(self) -> Self:
        if self.seed_threshold < self.threshold:
            raise ValueError(f"seed_threshold {self.seed_threshold} must be >= threshold {self.threshold}")
        return self


# ngff-0.5 defaults: chunks a viewer reads quickly, inside shards of one work unit each; the CPU unit is the
# size the pipeline benchmark runs best at on CPU, the GPU unit keeps a GPU's batches full.
SHARDED_CHUNKS = (256, 256)
SHARDED_UNIT_CPU, SHARDED_UNIT_GPU = 512, 2048
StoreFormat = Literal["ngff-0.4", "ngff-0.5"]
# A new store's format when output.format is not set; a store already at output.path keeps its own.
DEFAULT_FORMAT: StoreFormat = "ngff-0.5"


class OutputSettings(Settings):
    """What every output.kind has: the store, its format and chunks, the work unit, the pyramid."""

    path: str = Field(description="the OME-Zarr mask store (local path or URL)")
    kind: str = Field("labels", description=KIND_DESCRIPTION)
    format: StoreFormat | None = Field(
        None,
        description="ngff-0.5: Zarr v3, chunks inside shards of one work unit each, a file per unit (napari, "
        "ome-zarr-py, neuroglancer); ngff-0.4: Zarr v2, a file per chunk, a chunk per work unit (Fiji/MoBIE read "
        "it). Default: the format of the store already at output.path, else ngff-0.5",
    )
    chunks: tuple[int, int] = Field(
        (512, 512),
        description="chunk height and width: what a viewer reads at a time; with ngff-0.4 also the work unit "
        "(ngff-0.5 default: 256 x 256)",
    )
    unit: tuple[int, int] | None = Field(
        None,
        description="ngff-0.5: the work unit, one shard of the store, in whole chunks (default: 2048 x 2048 with "
        "GPU actors, 512 x 512 on CPU); ngff-0.4: the unit is the chunk",
    )
    pyramid_levels: int = Field(3, ge=0, le=10, description="down-sampled levels after level 0")

    @field_validator("chunks")
    @classmethod
    def _chunks(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16:
            raise ValueError("chunks must be at least 16 x 16")
        return v

    @property
    def store_format(self) -> StoreFormat:
        """output.format, or the default for a new store (the driver sets an existing store's; JobSpec.with_format)."""
        return self.format or DEFAULT_FORMAT

    @property
    def chunk_shape(self) -> tuple[int, int]:
        """The store's chunks (a viewer's read)."""
        if self.store_format == "ngff-0.5" and "chunks" not in self.model_fields_set:
            return SHARDED_CHUNKS
        return self.chunks

    def unit_shape(self, gpu: bool) -> tuple[int, int]:
        """The work unit: a chunk (ngff-0.4) or a shard (ngff-0.5) of the store."""
        if self.store_format == "ngff-0.4":
            return self.chunks
        if self.unit is not None:
            return self.unit
        side = SHARDED_UNIT_GPU if gpu else SHARDED_UNIT_CPU
        h, w = self.chunk_shape
        return max(h, side // h * h), max(w, side // w * w)

    @model_validator(mode="after")
    def _unit_in_whole_chunks(self) -> Self:
        if self.unit is None:
            return self
        if self.store_format == "ngff-0.4" and self.unit != self.chunks:
            raise ValueError(
                f"output.unit {list(self.unit)} needs output.format: ngff-0.5 (NGFF 0.4 on Zarr v2 has no shards: "
                "its work unit is one chunk, output.chunks)"
            )
        if any(u % c for u, c in zip(self.unit, self.chunk_shape, strict=True)):
            raise ValueError(
                f"output.unit {list(self.unit)} must hold whole chunks of {list(self.chunk_shape)} "
                f"(a multiple of output.chunks each side)"
            )
        return self

    def fingerprint_settings(self) -> dict[str, Any]:
        """The kind's settings its masks depend on, under the keys earlier versions recorded for every
        kind (instances and probability_dtype at their old defaults where the kind has none)."""
        return {
            "kind": self.kind,
            "instances": None,
            "chunks": list(self.chunks),
            "probability_dtype": "float32",
            "pyramid_levels": self.pyramid_levels,
        }


class LabelsOutput(OutputSettings):
    """output.kind labels: the most probable class of each pixel (uint8)."""

    kind: Literal["labels"] = Field("labels", description=KIND_DESCRIPTION)


class MaskOutput(OutputSettings):
    """output.kind mask: 1 where the foreground probability reaches inference.threshold, else 0 (uint8)."""

    kind: Literal["mask"] = Field(description=KIND_DESCRIPTION)


class ProbabilitiesOutput(OutputSettings):
    """output.kind probabilities: every class's probability (a c axis), at probability_dtype."""

    kind: Literal["probabilities"] = Field(description=KIND_DESCRIPTION)
    probability_dtype: Precision = Field("float32", description=PRECISION_DESCRIPTION)

    def fingerprint_settings(self) -> dict[str, Any]:
        return {**super().fingerprint_settings(), "probability_dtype": self.probability_dtype}


class InstancesOutput(OutputSettings):
    """output.kind instances: numbered objects (uint32), found in the object probability it keeps beside."""

    kind: Literal["instances"] = Field(description=KIND_DESCRIPTION)
    instances: InstancesSpec = Field(InstancesSpec(), description="how objects are found")
    probability_dtype: Precision = Field("float32", description=PRECISION_DESCRIPTION)

    def fingerprint_settings(self) -> dict[str, Any]:
        settings = {**super().fingerprint_settings(), "probability_dtype": self.probability_dtype}
        return {**settings, "instances": self.instances.model_dump(mode="json")}


def output_kind_tag(value: Any) -> str:
    """Which kind's settings an output section is: its kind, labels when it names none."""
    if isinstance(value, dict):
        return str(value.get("kind", "labels"))
    return str(getattr(value, "kind", "labels"))


# One settings class per kind, told apart by output.kind: a kind has only the settings it uses.
OutputSpec = Annotated[
    Annotated[LabelsOutput, Tag("labels")]
    | Annotated[MaskOutput, Tag("mask")]
    | Annotated[ProbabilitiesOutput, Tag("probabilities")]
    | Annotated[InstancesOutput, Tag("instances")],
    Discriminator(
        output_kind_tag,
        custom_error_type="output_kind",
        custom_error_message="Input should be 'labels', 'mask', 'probabilities' or 'instances'",
        custom_error_context={"tag_field": "kind"},
    ),
]
