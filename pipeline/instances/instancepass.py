"""output.kind instances: numbered objects from the stored object probability, block by block.

After the net's pass has written an image's object probability:

1. summarise (CPU tasks): each block's provisional ids (pipeline.instances.fragments)
   shrink to a BlockSummary, sent to the driver;
2. merge (driver): once every block of a plane is in, its merge table and
   object measurements are saved to the manifest, and the summaries dropped;
3. relabel (CPU tasks): each block's ids again (deterministic), looked up in
   its plane's table, are written as final uint32 labels and committed to the
   manifest as `instances:<unit id>`;
4. finish (driver): the object table (CSV), pyramids, the image complete.

A killed job resumes at the first plane not merged and the first block not
relabelled.  Ids run 1..N over the whole image, plane after plane.  The
functions that workers run are plain (no Ray): pipeline.run streams them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import fsspec
import numpy as np

from pipeline.committer import Committer
from pipeline.errors import ConfigError, OutputError
from pipeline.instances.fragments import BlockWindow, block_ids, block_summary, halo_for, kept_whole, longest_sides
from pipeline.instances.merge import BlockGrid
from pipeline.instances.objects import (
    BlockSummary,
    ImageObjects,
    PlaneObjects,
    label_properties,
    merge_plane,
    objects_csv,
)
from pipeline.io.maskstore import MaskStore
from pipeline.jobrecords import OBJECTS, records_url
from pipeline.manifest import INSTANCE_PASS, Manifest
from pipeline.names import image_name
from pipeline.outputkinds import Instances
from pipeline.outputspec import InstancesSpec
from pipeline.passes import ProgressHook, counting, failed_units, finish_image, streamed_rows
from pipeline.plan import WorkUnit, image_units
from pipeline.planner import ImagePlan, pending_units
from pipeline.report import RunReport
from pipeline.rows import OUTCOME_COLUMNS, Outcome, fresh_columns
from pipeline.spec import JobSpec
from pipeline.stages import StageContext, attempted, output_store

FINISHED_COLUMNS = (*OUTCOME_COLUMNS, "cols", "summary")
SUMMARISE_PHASE, RELABEL_PHASE = "instance blocks summarised", "instance blocks relabelled"


def rule_of(ctx: StageContext) -> InstancesSpec:
    if not isinstance(ctx.output, Instances) or ctx.output.rule is None:
        raise ConfigError("the instance pass runs only for output.kind instances")
    return ctx.output.rule


def object_probability_window(row: dict[str, Any], ctx: StageContext) -> tuple[np.ndarray, BlockWindow]:
    """The stored object probability around the row's block (its halo, clipped to the plane)."""
    core = slice(int(row["y0"]), int(row["y1"])), slice(int(row["x0"]), int(row["x1"]))
    where = BlockWindow.around(core, (int(row["height"]), int(row["width"])), halo_for(rule_of(ctx)))
    coords = {"t": int(row["t"]), "z": int(row["z"])}
    window = output_store(ctx.output_url, "probabilities", ctx.run_id).read_region(row["key"], coords, *where.window)
    return np.asarray(window[0], np.float32), where


def block_number(row: dict[str, Any]) -> int:
    return int(row["row"]) * int(row["cols"]) + int(row["col"])


def summarise_unit(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Pass 1: the block's summary, as bytes in `summary`."""

    def summarise() -> None:
        probability, where = object_probability_window(row, ctx)
        ids = block_ids(probability, where, block_number(row), rule_of(ctx))
        row["summary"] = block_summary(ids, where, probability).to_bytes()

    attempted([row], summarise, ctx.retries)
    return {k: row[k] for k in FINISHED_COLUMNS}


@lru_cache(maxsize=4)
def _plane_objects(output_url: str, key: str, plane: int, run_id: str) -> PlaneObjects:
    data = Manifest(output_url).plane_objects(key, plane)
    if data is None:
        raise OutputError(f"{output_url}: the objects of {key!r} plane {plane} were not merged")
    return PlaneObjects.from_bytes(data)


def relabel_unit(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Pass 3: the block's final labels, written into the instance store."""
    attempted([row], lambda: relabel_into_store(row, ctx), ctx.retries)
    return {k: row[k] for k in FINISHED_COLUMNS}


def relabel_into_store(row: dict[str, Any], ctx: StageContext) -> None:
    probability, where = object_probability_window(row, ctx)
    ids = block_ids(probability, where, block_number(row), rule_of(ctx))
    labels = _plane_objects(ctx.output_url, row["key"], int(row["plane"]), ctx.run_id).table.lookup(ids)
    labels[labels > 0] += np.uint32(row["offset"])
    coords = {"t": int(row["t"]), "z": int(row["z"])}
    output_store(ctx.output_url, "instances", ctx.run_id).write_block(
        row["key"], coords, row["out_axes"], *where.core, labels
    )


class InstancePass:
    """The driver's side: which blocks to summarise and relabel, the merges, and each image's objects."""

    def __init__(self, plans: list[ImagePlan], manifest: Manifest, chunks: tuple[int, int], rule: InstancesSpec):
        self.plans = {p.key: p for p in plans}
        self.manifest, self.chunks, self.rule = manifest, chunks, rule
        self.summaries: dict[tuple[str, int], dict[int, BlockSummary]] = defaultdict(dict)
        self.objects: dict[str, ImageObjects] = {}  # read until the finish

    def grid(self, plan: ImagePlan) -> BlockGrid:
        return BlockGrid(plan.shape, self.chunks)

    def row(self, plan: ImagePlan, unit: WorkUnit, offset: int = 0) -> dict[str, Any]:
        coords = plan.plane_coords(unit.plane)
        return {
            **unit.to_dict(),
            "index": plan.grid.index(unit),
            "t": coords.get("t", 0),
            "z": coords.get("z", 0),
            "height": plan.shape[0],
            "width": plan.shape[1],
            "cols": self.grid(plan).counts[1],
            "out_axes": plan.out_axes.replace("c", ""),  # the labels have no channel axis
            "offset": offset,
            "input": plan.input,
            "summary": b"",
            **fresh_columns(),
        }

    def summary_rows(self) -> Iterator[dict[str, Any]]:
        """Blocks not summarised yet, of every plane whose objects are not merged yet."""
        for plan in self.plans.values():
            unmerged = {p for p in range(plan.n_planes) if not self.manifest.has_plane_objects(plan.key, p)}
            for unit in image_units(plan.key, plan.n_planes, plan.shape, self.chunks):
                if (
                    unit.plane in unmerged
                    and unit.row * plan.grid.cols + unit.col not in self.summaries[(plan.key, unit.plane)]
                ):
                    yield self.row(plan, unit)

    def add_summary(self, row: dict[str, Any]) -> None:
        """Keep a block's summary; merge and save its plane once all of the plane's blocks are in."""
        plan, plane = self.plans[row["key"]], int(row["plane"])
        grid = self.grid(plan)
        blocks = self.summaries[(plan.key, plane)]
        blocks[block_number(row)] = BlockSummary.from_bytes(row["summary"])
        if len(blocks) == grid.counts[0] * grid.counts[1]:
            objects = merge_plane(grid, blocks, self.rule.connectivity, self.rule.min_size)
            self.manifest.save_plane_objects(plan.key, plane, objects.to_bytes())
            del self.summaries[(plan.key, plane)]

    def plane_objects(self, plan: ImagePlan) -> ImageObjects:
        """(plane coordinates, id offset, objects) of each plane: ids continue from plane to plane.

        Read once: the relabel rows take their offsets from it, the image's finish its table.
        """
        if plan.key not in self.objects:
            self.objects[plan.key] = self.read_plane_objects(plan)
        return self.objects[plan.key]

    def forget(self, plan: ImagePlan) -> None:
        """The image is finished: its objects need not stay in memory."""
        self.objects.pop(plan.key, None)

    def read_plane_objects(self, plan: ImagePlan) -> ImageObjects:
        planes, offset = [], 0
        for plane in range(plan.n_planes):
            data = self.manifest.plane_objects(plan.key, plane)
            if data is None:
                raise OutputError(f"{plan.key}: plane {plane} has no merged objects")
            objects = PlaneObjects.from_bytes(data)
            planes.append((plan.plane_coords(plane), offset, objects))
            offset += objects.count
        return planes

    def relabel_rows(self, plan: ImagePlan) -> Iterator[dict[str, Any]]:
        offsets = [offset for _, offset, _ in self.plane_objects(plan)]
        for unit in pending_units(plan, INSTANCE_PASS):
            yield self.row(plan, unit, offsets[unit.plane])

    def pending(self, plan: ImagePlan) -> int:
        return plan.pending_in(INSTANCE_PASS)


def halo_warning(key: str, planes: ImageObjects, rule: InstancesSpec) -> str:
    """What to tell the user when the watershed left objects whole because they exceed the halo ("" if none)."""
    counts, areas, largest, foreground = 0, 0, 0, 0
    for _, _, objects in planes:
        c = objects.columns
        whole = kept_whole(c, rule)
        counts += int(whole.sum())
        areas += int(c["area"][whole].sum())
        foreground += int(c["area"].sum())
        largest = max(largest, int(longest_sides(c)[whole].max(initial=0)))
    if not counts:
        return ""
    return (
        f"{key}: {counts} object(s) wider or taller than output.instances.halo ({rule.halo} px) were kept whole, "
        f"never split by the watershed ({areas / max(foreground, 1):.0%} of the objects' area, the largest "
        f"{largest} px across); set output.instances.halo to {largest} to split them (a block then reads "
        f"that much around it), or raise output.instances.threshold so that objects are cell-sized"
    )


def write_object_table(output_url: str, key: str, planes: ImageObjects) -> str:
    """Write `<output>.job/objects/<image>.csv` (beside the store, pipeline.jobrecords); returns its path."""
    fs, root = fsspec.core.url_to_fs(records_url(output_url))
    path = f"{root}/{OBJECTS}/{image_name(key)}.csv"
    try:
        fs.makedirs(f"{root}/{OBJECTS}", exist_ok=True)
        fs.pipe_file(path, objects_csv(planes).encode())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the object table: {exc}") from None
    return path


def execute_instances(
    spec: JobSpec,
    ctx: StageContext,
    plans: list[ImagePlan],
    manifest: Manifest,
    committer: Committer,
    report: RunReport,
    progress: ProgressHook | None = None,
) -> None:
    """The instance pass of the images whose object probability is complete: summarise, merge, relabel, finish.

    One stream for the summaries of the whole job, one for the relabelling, each with its own progress bar.
    An image with a failed unit (of the net's pass, or a block that could not be summarised) is recorded
    partial.
    """
    work = InstancePass([p for p in plans if not failed_units(report, p.key)], manifest, spec.unit_shape, rule_of(ctx))
    instance_run = InstanceRun(spec, ctx, work, committer, report, MaskStore(spec.output.path, "instances"), progress)
    summarise_blocks(instance_run)
    ready = []
    for plan in plans:
        if failed_units(report, plan.key):
            finish_image(plan, spec, manifest, instance_run.store, report)  # records it as partial
        else:
            ready.append(plan)  # every plane merged
    relabel_blocks(instance_run, ready)
    committer.flush()


@dataclass(frozen=True)
class InstanceRun:
    """The instance pass of one run, on the driver: the job, the pass's work, and where outcomes go."""

    spec: JobSpec
    ctx: StageContext
    work: InstancePass
    committer: Committer
    report: RunReport
    store: MaskStore  # the instances
    progress: ProgressHook | None

    def outcomes(
        self, rows: Callable[[], Iterator[dict[str, Any]]], fn: Any
    ) -> Iterator[tuple[Outcome, dict[str, Any]]]:
        """(outcome, row) of `fn` as CPU tasks over the rows still to do; a failed stream runs again over
        what is left, on a fresh Ray connection."""
        from pipeline import run

        resources = self.spec.resources

        def stream() -> Iterator[dict[str, Any]]:
            todo = list(rows())
            if todo:
                run.init_ray(resources.address)
            return run.cpu_stream(todo, fn, self.ctx, resources.cpus_per_reader)

        return streamed_rows(stream, resources.retries, rows, partial(run.reconnect, resources.address))

    def commit(self, outcome: Outcome) -> bool:
        """Commit an instance-pass unit; a failed one leaves its image partial.  False if it was counted already."""
        if not self.committer.add(INSTANCE_PASS, outcome):
            return False
        if outcome.failure:
            self.report.units_quarantined[f"{outcome.key}:instances:{outcome.unit.id}"] = outcome.failure.error
        return True


def summarise_blocks(instance_run: InstanceRun) -> None:
    """Every block not yet summarised, in one stream; a block that fails is committed as failed."""
    work = instance_run.work
    tick = counting(instance_run.progress, SUMMARISE_PHASE, sum(1 for _ in work.summary_rows()))
    for outcome, row in instance_run.outcomes(work.summary_rows, summarise_unit):
        tick(outcome.megapixels)
        if outcome.failure:
            instance_run.commit(outcome)
        else:
            work.add_summary(row)


def relabel_blocks(instance_run: InstanceRun, ready: list[ImagePlan]) -> None:
    """Every block of the ready images relabelled by its plane's merge, in one stream; each image finished
    as its last block commits."""
    work = instance_run.work
    remaining = {plan.key: work.pending(plan) for plan in ready}
    for plan in ready:
        if remaining[plan.key] == 0:  # relabelled by an earlier run, killed before the finish
            finish_instances(instance_run, plan)

    def relabel_rows() -> Iterator[dict[str, Any]]:
        return (row for plan in ready if remaining[plan.key] for row in work.relabel_rows(plan))

    tick = counting(instance_run.progress, RELABEL_PHASE, sum(remaining.values()))
    for outcome, _ in instance_run.outcomes(relabel_rows, relabel_unit):
        if not instance_run.commit(outcome):
            continue  # delivered twice: counted already
        tick(outcome.megapixels)
        remaining[outcome.key] -= 1
        if remaining[outcome.key] == 0:
            instance_run.committer.flush()
            finish_instances(instance_run, work.plans[outcome.key])


def finish_instances(instance_run: InstanceRun, plan: ImagePlan) -> None:
    """Every block of the image was relabelled (or failed): its object table and pyramids, then its record."""
    spec, work, report, store = instance_run.spec, instance_run.work, instance_run.report, instance_run.store
    if not failed_units(report, plan.key):
        planes = work.plane_objects(plan)
        write_object_table(spec.output.path, plan.key, planes)
        store.label_objects(plan.key, label_properties(planes))
        warning = halo_warning(plan.key, planes, work.rule)
        if warning:
            report.warnings[plan.key] = warning
        store.of_kind("probabilities").build_pyramid(plan.key, spec.output.pyramid_levels)
        report.objects += sum(objects.count for _, _, objects in planes)
    work.forget(plan)
    finish_image(plan, spec, work.manifest, store, report)  # complete, or partial
