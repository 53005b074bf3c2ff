"""From a job and its manifest to the units still to do, image by image.

Opens each image once (shape, channels, fingerprint, normalisation), decides
skip / resume / redo, and creates the image's output when it is new or its
input changed.  Units are then generated lazily per image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import __version__
from pipeline.changes import Footprint, ImageChange, InputPieces, all_new, carried_states, compare
from pipeline.errors import InputError
from pipeline.io.archive import Archive
from pipeline.io.image import LazyImage
from pipeline.io.maskstore import MaskStore, OutputLayout
from pipeline.io.normalize import affine_for, sampled_range
from pipeline.manifest import INSTANCE_PASS, NET_PASS, PYRAMID, Manifest
from pipeline.names import image_name
from pipeline.outcome import UnitState
from pipeline.outputkinds import OutputKind, job_kind
from pipeline.plan import UnitGrid, WorkUnit, plane_coords, runs_of
from pipeline.spec import JobSpec, NormalizeSettings

if TYPE_CHECKING:
    from pipeline.model.unet import UNet  # the planner reads only its config: no torch in workers


# How far a job's normalised input may stray from the range the model was trained on, in widths of that
# range, before the image is refused: 16-bit input scaled by 1/255 lies about a hundred widths out; a
# stain's or a detector's drift stays within one.
RANGE_TOLERANCE = 2.0


def check_trained_range(source: str, got: tuple[float, float], trained: dict[str, Any]) -> None:
    """InputError when the normalised input lies far outside the range the model was trained on.

    `trained` is the checkpoint's record, {"normalize", "low", "high"} (pipeline.model.checkpoint.trained_on).
    Only "outside" counts: a narrow range is also what a flat image (resin, an empty tile) gives.
    """
    low, high = float(trained["low"]), float(trained["high"])
    width = max(high - low, 1e-6)
    if got[1] > high + RANGE_TOLERANCE * width or got[0] < low - RANGE_TOLERANCE * width:
        how = NormalizeSettings.model_validate(trained["normalize"]).describe()
        raise InputError(
            f"{source}: normalised input spans [{got[0]:.4g}, {got[1]:.4g}] (0.5th-99.5th percentile of a "
            f"sample), but the model was trained on [{low:.4g}, {high:.4g}] (normalize {how}); set "
            "inference.normalize so that the input matches (mode: percentile adapts to any range), or use a "
            "model trained on such data"
        )


def finished(states: np.ndarray) -> np.ndarray:
    """Boolean map of the units whose state is finished (done, or skipped as flat)."""
    return (states == UnitState.DONE) | (states == UnitState.SKIPPED)


@dataclass
class ImagePlan:
    """One image of the job: its unit grid and, per pass, the state of each unit (a byte a unit)."""

    key: str
    source: str
    input: str  # input fingerprint
    grid: UnitGrid
    out_axes: str  # axes of what the net's pass writes
    scale: float
    offset: float
    plane_sizes: dict[str, int] = field(default_factory=dict)  # {"t": n, "z": m} for the axes present
    states: dict[str, np.ndarray] = field(default_factory=dict)  # pass -> uint8 UnitState per unit
    axes: str = ""  # the input's axes, as read or as the job gave them (shown by `plan`)
    dtype: str = ""
    change: ImageChange | None = None  # what changed in the input since the units were computed
    # Per unit: its pyramid levels are out of date (written again at the finish); None: all of them.
    pyramid_stale: np.ndarray | None = None

    def stale_chunks(self) -> np.ndarray | None:
        """`pyramid_stale` over level 0's chunk grid: plane axes (t, z), then rows, cols."""
        if self.pyramid_stale is None:
            return None
        return self.pyramid_stale.reshape(*self.plane_sizes.values(), self.grid.rows, self.grid.cols)

    def __post_init__(self) -> None:
        for pass_name in (NET_PASS, INSTANCE_PASS):
            self.states.setdefault(pass_name, np.zeros(self.grid.size, np.uint8))

    @property
    def n_planes(self) -> int:
        return self.grid.n_planes

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def total(self) -> int:
        return self.grid.size

    def plane_coords(self, plane: int) -> dict[str, int]:
        return plane_coords(plane, self.plane_sizes)

    def pending_in(self, pass_name: str) -> int:
        return self.total - int(np.count_nonzero(finished(self.states[pass_name])))

    @property
    def pending(self) -> int:
        return self.pending_in(NET_PASS)

    def pending_ranges(self, pass_name: str = NET_PASS) -> list[tuple[int, int]]:
        """Unit numbers still to do in a pass, as [start, stop) ranges (few, whatever the image's size)."""
        return runs_of(self.states[pass_name] == UnitState.PENDING)


@dataclass
class PlanSummary:
    images: list[ImagePlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # complete with the same input
    quarantined: dict[str, str] = field(default_factory=dict)  # key -> reason

    @property
    def pending_units(self) -> int:
        return sum(p.pending for p in self.images)

    @property
    def pending_megapixels(self) -> float:
        return sum(p.pending / max(p.total, 1) * p.n_planes * p.shape[0] * p.shape[1] / 1e6 for p in self.images)

    def all_refused(self) -> bool:
        """True when every image of the archive was quarantined at planning: nothing could run."""
        return bool(self.quarantined) and not self.images and not self.skipped

    def image_lines(self, axes_given: bool) -> list[str]:
        """One line per image to process, for `plan`: what was read and what will run."""
        how = "from the job" if axes_given else "inferred"
        return [
            f"{p.key}: axes {p.axes} ({how}), {p.dtype}, {p.n_planes} plane(s) of {p.shape[0]} x {p.shape[1]}, "
            f"{p.pending} of {p.total} unit(s) pending" + (f"; input: {p.change.describe()}" if p.change else "")
            for p in self.images
        ]

    def changes(self) -> dict[str, dict[str, Any]]:
        """Per image planned: its units unchanged / changed / new since they were computed, and why."""
        return {p.key: {**p.change.counts, "reason": p.change.reason} for p in self.images if p.change is not None}

    def as_dict(self) -> dict[str, Any]:
        return {
            "images_to_process": len(self.images),
            "images_up_to_date": len(self.skipped),
            "images_quarantined": len(self.quarantined),
            "planes": sum(p.n_planes for p in self.images),
            "units_pending": self.pending_units,
            "units_total": sum(p.total for p in self.images),
            "megapixels_pending": round(self.pending_megapixels, 3),
            "units_changed": sum(p.change.counts["changed"] for p in self.images if p.change),
            "units_new": sum(p.change.counts["new"] for p in self.images if p.change),
            "changes": self.changes(),
        }


def provenance(spec: JobSpec, job_fingerprint: str, model_fingerprint: str, key: str, input_fp: str) -> dict[str, Any]:
    return {
        "job": spec.name,
        "job_fingerprint": job_fingerprint,
        "model_fingerprint": model_fingerprint,
        "inference": spec.inference.model_dump(mode="json", exclude={"batch_size", "device"}),
        "output_kind": spec.output.kind,
        "source_key": key,
        "input_fingerprint": input_fp,
        "version": __version__,
    }


@dataclass(frozen=True)
class Planning:
    """What planning an image needs besides the image: the job, the model, the records, where to write."""

    spec: JobSpec
    model: UNet  # its config (channels, classes) only
    manifest: Manifest
    store: MaskStore | None  # None: plan only (plan, --dry-run), create nothing
    provenance: dict[str, Any]
    trained: dict[str, Any] | None = None  # the checkpoint's trained_on record, if it has one

    @cached_property
    def kind(self) -> OutputKind:
        """The job's output kind, made once per plan."""
        return job_kind(self.spec)


def plan_image(key: str, archive: Archive, planning: Planning) -> ImagePlan | None:
    """The image's plan, or None if it is complete with the same input.  Raises InputError for a bad image,
    and for one whose normalised input lies far outside what the model was trained on.

    Units whose input changed since they were computed are pending again (pipeline.changes).  With a
    store, creates the image's output if it is new (or changed beyond localising), grows it if the
    image grew, and records the input the units will be computed from.
    """
    spec, model, manifest, store = planning.spec, planning.model, planning.manifest, planning.store
    image = archive.open(key)
    if image.channels != model.config.in_channels:
        raise InputError(
            f"{image.source}: image has {image.channels} channel(s) (axes {image.axes!r}) but the model "
            f"expects in_channels={model.config.in_channels}; set input.axes if the axes were misread"
        )
    pieces = archive.pieces(key, image)
    record = manifest.image_record(key)
    if record and record.get("state") == "complete" and record.get("input") == pieces.fingerprint and pieces.comparable:
        return None
    scale, offset = affine_for(image, spec.inference.normalize)
    if planning.trained is not None and (got := sampled_range(image, scale, offset)) is not None:
        check_trained_range(image.source, got, planning.trained)
    kind = planning.kind
    layouts = output_layouts(image, spec, kind, model.config.classes)
    footprint = Footprint.of(pieces, key, spec.unit_shape, model.geometry, spec.inference.tile)
    change = image_change(planning, key, pieces, footprint)
    states = {
        p: pending_again(carried_states(committed(manifest, key, p, change), change, UnitState.PENDING)) for p in PASSES
    }
    if change.any:  # instance ids run on from plane to plane: every block is numbered again
        states[INSTANCE_PASS][:] = UnitState.PENDING
    out_axes = layouts[kind.net_output.name].axes
    sizes = dict(footprint.plane_sizes)
    plan = ImagePlan(key, image.source, pieces.fingerprint, footprint.grid, out_axes, scale, offset, sizes, states)
    plan.axes, plan.dtype, plan.change = image.axes, str(image.dtype), change
    if not kind.instance_pass:  # instance ids run across planes: their levels are made afresh
        plan.pyramid_stale = stale_pyramid(committed(manifest, key, PYRAMID, change), change, states[NET_PASS])
    if store is not None:
        record_change(planning, image, pieces, layouts, plan)
    return plan


PASSES = (NET_PASS, INSTANCE_PASS)


def committed(manifest: Manifest, key: str, pass_name: str, change: ImageChange) -> np.ndarray | None:
    """The states committed for the image in a pass; not read when nothing of them can be kept."""
    return None if change.whole else manifest.unit_states(key, pass_name)


def pending_again(states: np.ndarray) -> np.ndarray:
    """A resume's states: finished units stay finished; failed ones are pending again."""
    return np.where(finished(states), states, np.uint8(UnitState.PENDING)).astype(np.uint8)


def stale_pyramid(built: np.ndarray | None, change: ImageChange, net: np.ndarray) -> np.ndarray | None:
    """Units whose pyramid levels are out of date: not built over since their input changed, or about to
    be computed.  None when no levels were built over units that can be kept (make them afresh)."""
    if built is None:
        return None
    return (carried_states(built, change, 0) == 0) | (net == UnitState.PENDING)


def image_change(planning: Planning, key: str, pieces: InputPieces, footprint: Footprint) -> ImageChange:
    """What changed since the image's committed units were computed; every unit new if nothing was."""
    previous = planning.manifest.input_pieces(key)
    if previous is None:
        return all_new(footprint.grid, "new image")
    if planning.store is not None and not output_matches(planning, key):
        return all_new(footprint.grid, "no output of this job yet")
    spec, geometry = planning.spec, planning.model.geometry
    before = Footprint.of(previous, key, spec.unit_shape, geometry, spec.inference.tile)
    return compare(previous, before, pieces, footprint)


def output_matches(planning: Planning, key: str) -> bool:
    """The store holds this image's output, made by this job."""
    assert planning.store is not None
    written = (planning.store.image_attrs(key) or {}).get("segment-archive", {})
    return bool(written) and written.get("job_fingerprint") == planning.provenance["job_fingerprint"]


def record_change(
    planning: Planning, image: LazyImage, pieces: InputPieces, layouts: dict[str, OutputLayout], plan: ImagePlan
) -> None:
    """Make the output and the manifest agree with the image's input before any unit runs.

    States first, the input record last: a kill in between leaves the old record, against
    which the next run finds the same change again.
    """
    manifest, store, change, key = planning.manifest, planning.store, plan.change, plan.key
    assert store is not None and change is not None
    prov = {**planning.provenance, "source_key": key, "input_fingerprint": pieces.fingerprint}
    if change.whole:
        manifest.forget_image(key)
        for kind, layout in layouts.items():
            store.of_kind(kind).create_image(key, layout, image.scale, prov)
    elif change.any:
        for kind, layout in layouts.items():
            store.of_kind(kind).grow_image(key, layout, prov)
        for pass_name in PASSES:
            manifest.commit_all_states(key, pass_name, pieces.fingerprint, plan.states[pass_name])
        manifest.forget_planes(key, change.planes_touched(plan.grid))
        manifest.unfinish(image_name(key))
    if plan.pyramid_stale is not None and plan.pyramid_stale.any():  # before any unit rewrites level 0
        manifest.commit_all_states(key, PYRAMID, pieces.fingerprint, (~plan.pyramid_stale).astype(np.uint8))
    if change.recorded != pieces.fingerprint:
        manifest.set_input_pieces(key, pieces)


def output_layouts(image: LazyImage, spec: JobSpec, kind: OutputKind, classes: int) -> dict[str, OutputLayout]:
    """The arrays a job of `kind` writes per image, by store kind: instances also keep their object probability."""
    o = spec.output
    unit = spec.unit_shape if o.store_format == "ngff-0.5" else None  # a shard per unit
    return {
        name: OutputLayout.for_image(image, array_kind, channels, o.chunk_shape, unit)
        for name, (array_kind, channels) in kind.arrays(classes).items()
    }


def plan_job(archive: Archive, planning: Planning) -> PlanSummary:
    """Every image of the archive planned (or skipped as complete, or quarantined with the reason)."""
    store = planning.store
    summary = PlanSummary()
    for key in archive.image_keys():
        try:
            plan = plan_image(key, archive, planning)
        except InputError as exc:
            summary.quarantined[key] = str(exc)
            continue
        if plan is None:
            summary.skipped.append(key)
        elif plan.pending or store is not None:
            summary.images.append(plan)
    if store is not None:
        store.list_labels([plan.key for plan in summary.images])
    return summary


def pending_units(plan: ImagePlan, pass_name: str = NET_PASS) -> Iterator[WorkUnit]:
    for start, stop in plan.pending_ranges(pass_name):
        yield from plan.grid.units(start, stop)
