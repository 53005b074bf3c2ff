"""The net's pass: one Ray Data stream of every pending unit of the job, committed as it flows.

Each image is finished (pyramid, record) as its last unit commits; for
output.kind instances the instance pass (pipeline.instances.instancepass) follows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

from pipeline.committer import Committer
from pipeline.instances.instancepass import execute_instances
from pipeline.io.maskstore import MaskStore
from pipeline.manifest import NET_PASS, Manifest
from pipeline.outcome import UnitState
from pipeline.outputkinds import job_kind
from pipeline.passes import ProgressHook, counting, failed_units, finish_image, streamed
from pipeline.planner import ImagePlan, PlanSummary
from pipeline.report import RunReport, record_timeline
from pipeline.rows import ImageRows, Outcome
from pipeline.spec import JobSpec
from pipeline.stages import PredictorFactory, StageContext

NET_PHASE = "units"


def stage_context(spec: JobSpec, geometry: Any, run_id: str = "") -> StageContext:
    return StageContext(
        input_url=spec.input.path,
        axes=spec.input.axes,
        stack=spec.input.stack,
        output_url=spec.output.path,
        output=job_kind(spec),
        geometry=geometry,
        tile=spec.inference.tile,
        batch_size=spec.inference.batch_size,
        nonfinite=spec.inference.normalize.nonfinite,
        checkpoint=spec.model.checkpoint,
        config=spec.model.config,
        seed=spec.model.seed,
        device=spec.inference.device,
        precision=spec.inference.precision,
        threads=max(1, int(spec.resources.actor_cpus())),
        retries=spec.resources.retries,
        skip_empty=spec.inference.skip_empty,
        run_id=run_id,
    )


def image_rows(plan: ImagePlan) -> ImageRows:
    return ImageRows(plan.grid, plan.input, plan.out_axes, plan.scale, plan.offset, tuple(plan.plane_sizes.items()))


def pending_segments(plans: list[ImagePlan]) -> list[tuple[ImageRows, int, int]]:
    """The net's pass still to do, as a few unit ranges per image (what the stream's read tasks expand)."""
    segments = []
    for plan in plans:
        rows = image_rows(plan)
        segments += [(rows, start, stop) for start, stop in plan.pending_ranges(NET_PASS)]
    return segments


def execute(
    spec: JobSpec,
    model: Any,
    summary: PlanSummary,
    manifest: Manifest,
    store: MaskStore,
    report: RunReport,
    progress: ProgressHook | None,
    make_predictor: PredictorFactory | None = None,
) -> None:
    """The net's pass: one stream of every pending unit of the job; each image finished as its last unit commits."""
    from pipeline import run

    ctx = stage_context(spec, model.geometry, manifest.run_id)
    plans = {p.key: p for p in summary.images}
    remaining = {p.key: p.pending for p in summary.images}
    committer = Committer(manifest, plans)
    total = summary.pending_units
    instances = ctx.output.instance_pass
    tick = counting(progress, NET_PHASE, total)  # shows the plan's total while Ray and the actors start
    if total:
        run.init_ray(spec.resources.address)
        run.check_resources(spec.resources)
        report.timeline.append((0.0, 0.0))
    t0 = time.perf_counter()

    def stream() -> Iterator[dict[str, Any]]:
        segments = pending_segments([plans[k] for k in plans if remaining[k]])
        if not segments:
            return iter(())
        return run.unit_stream(segments, ctx, spec.resources, spec.inference.batch_size, make_predictor)

    def leftovers() -> Iterator[dict[str, Any]]:
        return (rows.row(i) for rows, a, b in pending_segments(list(plans.values())) for i in range(a, b))

    with committer.kept_on_interrupt():
        restart = partial(run.reconnect, spec.resources.address)
        for outcome in streamed(stream, spec.resources.retries, leftovers, restart):
            if not committer.add(NET_PASS, outcome):
                continue
            count_in(report, outcome)
            remaining[outcome.key] -= 1
            if remaining[outcome.key] == 0 and not instances:
                committer.flush()
                finish_image(plans[outcome.key], spec, manifest, store, report)
            tick(0.0 if outcome.failure else outcome.megapixels)  # the megapixels count_in counts
            record_timeline(report, time.perf_counter() - t0)
        if total:
            record_timeline(report, time.perf_counter() - t0, force=True)
        committer.flush()
        if instances:
            execute_instances(spec, ctx, summary.images, manifest, committer, report, progress)
            return
        for plan in summary.images:
            if plan.pending == 0 and plan.key not in report.images_completed and not failed_units(report, plan.key):
                finish_image(plan, spec, manifest, store, report)  # every unit was done before this run


def count_in(report: RunReport, outcome: Outcome) -> None:
    """A committed unit of the net's pass, in the run report: done (or skipped as empty), or quarantined."""
    if outcome.failure:
        report.units_quarantined[f"{outcome.key}:{outcome.unit.id}"] = outcome.failure.error
        return
    report.units_done += 1
    report.units_skipped += outcome.state is UnitState.SKIPPED
    report.megapixels += outcome.megapixels
