"""`submit`: the driver of a job.  Plans, streams each pass once through Ray, commits, finishes images.

    segment-archive submit jobs/demo.yaml [--address auto|ray://host:10001]

plan (manifest-aware) -> the net's pass: one stream of every pending unit
(`pipeline.run`, the Ray boundary) -> commit each finished unit to the
manifest -> pyramids -> for output.kind instances, the instance pass ->
report.  Ray does not survive the driver's death; the manifest does, so a new
submit resumes.  No ray import here: the driver sees streams of rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.committer import Committer
from pipeline.errors import ConfigError
from pipeline.instancepass import InstancePass, halo_warning, relabel_unit, summarise_unit, write_object_table
from pipeline.io.archive import open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.jobrecords import adopt_earlier_layout
from pipeline.manifest import INSTANCE_PASS, NET_PASS, Manifest
from pipeline.model.checkpoint import model_fingerprint, trained_on
from pipeline.outcome import FailureKind, UnitState
from pipeline.outputplace import check_output_place
from pipeline.plan import check_chunks, check_tile
from pipeline.planner import ImagePlan, PlanSummary, plan_job, provenance
from pipeline.report import RunReport, record_timeline
from pipeline.rows import ImageRows, Outcome
from pipeline.runtime import load_model
from pipeline.spec import InstancesSpec, JobSpec
from pipeline.stages import PredictorFactory, StageContext, describe_failure
from pipeline.tiling import tile_length
from pipeline.verify import reopen_lost, verify_lines, verify_output

ProgressHook = Callable[[int, int, float], None]  # (units finished, units total, megapixels so far)
Stream = Callable[[], Iterator[dict[str, Any]]]
log = logging.getLogger(__name__)


def stage_context(spec: JobSpec, geometry: Any, run_id: str = "") -> StageContext:
    return StageContext(
        input_url=spec.input.path,
        axes=spec.input.axes,
        stack=spec.input.stack,
        output_url=spec.output.path,
        kind=spec.output.kind,
        probability_dtype=spec.output.probability_dtype,
        threshold=spec.inference.threshold,
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
        instances=spec.output.instances,
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


def streamed(stream: Stream, retries: int, leftovers: Callable[[], Iterator[dict[str, Any]]]) -> Iterator[Outcome]:
    """Outcomes of a pass's stream.  If the stream fails as a whole (Ray itself, a worker lost for good), a
    new one runs over the units still pending, up to `retries` times; then `leftovers` fail with its error.

    Units retry their own transient failures inside the stream (pipeline.stages), so one failing unit
    never restarts the others.
    """
    error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            for row in stream():
                yield Outcome.of(row)
            return
        except Exception as exc:
            log.warning("the Ray Data stream failed (attempt %d of %d): %r", attempt + 1, retries + 1, exc)
            error = exc
    for row in leftovers():
        row.update(
            error=describe_failure(row, error or RuntimeError("stream failed")),
            failure=FailureKind.TRANSIENT.value,
            attempts=retries + 1,
        )
        yield Outcome.of(row)


def prepare(spec: JobSpec, overwrite: bool, create: bool) -> tuple[Any, str, str, Manifest, MaskStore | None]:
    adopt_earlier_layout(spec.output.path)
    check_output_place(spec.input.path, spec.output.path)
    model = load_model(spec.model.checkpoint, spec.model.config, spec.model.seed)
    check_chunks(spec.output.chunks, model.geometry)
    check_tile(spec.inference.tile, model.geometry)  # before Ray starts: a bad tile would fail every unit
    model_fp = model_fingerprint(model)
    job_fp = spec.fingerprint(model_fp)
    manifest = Manifest(spec.output.path)
    existing = manifest.job()
    if existing and existing.get("job_fingerprint") != job_fp and not overwrite:
        raise ConfigError(
            f"{spec.output.path}: holds masks of a different job (model or inference settings changed: "
            f"fingerprint {existing.get('job_fingerprint', '?')[:12]} vs {job_fp[:12]}); "
            "use --overwrite to replace them, or write to another output.path"
        )
    store = MaskStore(spec.output.path, spec.output.kind) if create else None
    return model, model_fp, job_fp, manifest, store


def submit(
    spec: JobSpec,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: ProgressHook | None = None,
    make_predictor: PredictorFactory | None = None,
    verify: bool = False,
) -> RunReport:
    """Run (or resume, or top up) the job; returns the run report (also written to the manifest).

    `verify` first checks the output against the manifest and redoes what was lost (pipeline.verify).
    `make_predictor` replaces the job's model in the predictor actors (benchmarks: a simulated GPU).
    """
    started = time.perf_counter()
    model, model_fp, job_fp, manifest, store = prepare(spec, overwrite, create=not dry_run)
    archive = open_archive(spec.input.path, spec.input.axes, spec.input.stack)
    archive.image_keys()  # a listing that cannot be used (no images, inputs sharing a name) stops us before any write
    prov = provenance(spec, job_fp, model_fp, "", "")
    trained = trained_on(spec.model.checkpoint) if spec.model.checkpoint else None
    if dry_run or store is None:
        summary = plan_job(archive, spec, model, manifest, None, prov, trained)
        refuse_if_nothing_can_run(summary)
        return RunReport(
            spec.name,
            manifest.run_id,
            job_fp,
            summary.as_dict(),
            images_quarantined=summary.quarantined,
            dry_run=True,
            plan_lines=[tile_line(spec, model.geometry), *summary.image_lines(spec.input.axes is not None)],
            verify_lines=verify_lines(verify_output(spec.output.path, spec.output.kind)) if verify else [],
        )
    with manifest.lock():
        existing = manifest.job()
        if existing and existing.get("job_fingerprint") != job_fp:
            manifest.reset()
        manifest.set_job(
            {
                "name": spec.name,
                "job_fingerprint": job_fp,
                "model_fingerprint": model_fp,
                "spec": spec.model_dump(mode="json"),
            }
        )
        checked = verify_output(spec.output.path, spec.output.kind) if verify else []
        reopen_lost(manifest, checked)
        summary = plan_job(archive, spec, model, manifest, store, prov, trained)
        if summary.all_refused() and not existing:
            manifest.reset()  # a corrected job file then starts afresh, without --overwrite
        refuse_if_nothing_can_run(summary)
        for key, reason in summary.quarantined.items():
            manifest.set_image_record(key, {"key": key, "state": "quarantined", "error": reason})
        report = RunReport(
            spec.name,
            manifest.run_id,
            job_fp,
            summary.as_dict(),
            images_quarantined=dict(summary.quarantined),
            verify_lines=verify_lines(checked) if verify else [],
        )
        try:
            execute(spec, model, summary, manifest, store, report, progress, make_predictor)
        except KeyboardInterrupt:  # SIGINT, or SIGTERM as the CLI raises it: record the run, then stop
            report.interrupted = True
            raise
        finally:
            report.seconds = time.perf_counter() - started
            manifest.write_run_report(report.as_dict())
    return report


def refuse_if_nothing_can_run(summary: PlanSummary) -> None:
    """ConfigError (exit 2) when every image was refused: a job-wide mistake (axes, channels), not bad images."""
    if not summary.all_refused():
        return
    reasons = list(summary.quarantined.values())
    shown = "\n  ".join(reasons[:3]) + (f"\n  ... and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    raise ConfigError(f"every image was refused, so nothing can run; check input.axes and the model:\n  {shown}")


def tile_line(spec: JobSpec, geometry: Any) -> str:
    """What the tile setting becomes for a full unit: the legal tile used, and the pixels of it kept."""
    height, width = spec.output.chunks
    used = (tile_length(spec.inference.tile, height, geometry), tile_length(spec.inference.tile, width, geometry))
    kept = (min(geometry.step(used[0]), height), min(geometry.step(used[1]), width))
    share = kept[0] * kept[1] / (used[0] * used[1])
    return (
        f"tile: {spec.inference.tile} asked, {used[0]} x {used[1]} px used for a unit of {height} x {width}, "
        f"{kept[0]} x {kept[1]} of it kept ({share:.0%}; the rest is the net's margin)"
    )


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
    total, finished = summary.pending_units, 0
    instances = spec.output.kind == "instances"
    if total:
        if progress:
            progress(0, total, 0.0)  # the total, from the plan, while Ray and the actors start
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
        for outcome in streamed(stream, spec.resources.retries, leftovers):
            if not committer.add(NET_PASS, outcome):
                continue
            finished += 1
            count_in(report, outcome)
            remaining[outcome.key] -= 1
            if remaining[outcome.key] == 0 and not instances:
                committer.flush()
                finish_image(plans[outcome.key], spec, manifest, store, report)
            if progress:
                progress(finished, total, report.megapixels)
            record_timeline(report, time.perf_counter() - t0)
        if total:
            record_timeline(report, time.perf_counter() - t0, force=True)
        committer.flush()
        if instances:
            execute_instances(spec, ctx, summary.images, manifest, committer, report)
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


def execute_instances(
    spec: JobSpec,
    ctx: StageContext,
    plans: list[ImagePlan],
    manifest: Manifest,
    committer: Committer,
    report: RunReport,
) -> None:
    """The instance pass of the images whose object probability is complete: summarise, merge, relabel, finish.

    One stream for the summaries of the whole job, one for the relabelling.  An image with a failed unit
    (of the net's pass, or a block that could not be summarised) is recorded partial.
    """
    from pipeline import run

    store = MaskStore(spec.output.path, "instances")
    work = InstancePass(
        [p for p in plans if not failed_units(report, p.key)],
        manifest,
        spec.output.chunks,
        spec.output.instances or InstancesSpec(),
    )
    retries, cpus = spec.resources.retries, spec.resources.cpus_per_reader

    def summaries() -> Iterator[dict[str, Any]]:
        rows = list(work.summary_rows())  # the blocks not yet summarised, this attempt
        if rows:
            run.init_ray(spec.resources.address)
        return run.cpu_stream(rows, summarise_unit, ctx, cpus)

    for outcome, row in streamed_rows(summaries, retries, work.summary_rows):
        if outcome.failure:
            committed_instance(committer, report, outcome)
        else:
            work.add_summary(row)
    ready = []
    for plan in plans:
        if failed_units(report, plan.key):
            finish_image(plan, spec, manifest, store, report)  # records it as partial
        else:
            ready.append(plan)  # every plane merged
    remaining = {plan.key: work.pending(plan) for plan in ready}
    for plan in ready:
        if remaining[plan.key] == 0:  # relabelled by an earlier run, killed before the finish
            finish_instances(plan, work, spec, manifest, store, report)

    def relabel_rows() -> Iterator[dict[str, Any]]:
        return (row for plan in ready if remaining[plan.key] for row in work.relabel_rows(plan))

    def relabels() -> Iterator[dict[str, Any]]:
        rows = list(relabel_rows())
        if rows:
            run.init_ray(spec.resources.address)
        return run.cpu_stream(rows, relabel_unit, ctx, cpus)

    for outcome, _ in streamed_rows(relabels, retries, relabel_rows):
        if not committed_instance(committer, report, outcome):
            continue  # delivered twice: counted already
        remaining[outcome.key] -= 1
        if remaining[outcome.key] == 0:
            committer.flush()
            finish_instances(work.plans[outcome.key], work, spec, manifest, store, report)
    committer.flush()


def streamed_rows(
    stream: Stream, retries: int, leftovers: Callable[[], Iterator[dict[str, Any]]]
) -> Iterator[tuple[Outcome, dict[str, Any]]]:
    """`streamed`, keeping each finished row beside its outcome (the instance pass reads its summary)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}

    def keeping() -> Iterator[dict[str, Any]]:
        for row in stream():
            rows[(str(row["key"]), int(row["index"]))] = row
            yield row

    for outcome in streamed(keeping, retries, leftovers):
        yield outcome, rows.pop((outcome.key, outcome.index), {})


def finish_instances(
    plan: ImagePlan, work: InstancePass, spec: JobSpec, manifest: Manifest, store: MaskStore, report: RunReport
) -> None:
    """Every block of the image was relabelled (or failed): its object table and pyramids, then its record."""
    if not failed_units(report, plan.key):
        planes = work.plane_objects(plan)
        write_object_table(spec.output.path, plan.key, planes)
        warning = halo_warning(plan.key, planes, spec.output.instances or InstancesSpec())
        if warning:
            report.warnings[plan.key] = warning
        MaskStore(spec.output.path, "probabilities").build_pyramid(plan.key, spec.output.pyramid_levels)
        report.objects += sum(objects.count for _, _, objects in planes)
    work.forget(plan)
    finish_image(plan, spec, manifest, store, report)  # complete, or partial


def committed_instance(committer: Committer, report: RunReport, outcome: Outcome) -> bool:
    """Commit an instance-pass unit; a failed one leaves its image partial.  False if it was counted already."""
    if not committer.add(INSTANCE_PASS, outcome):
        return False
    if outcome.failure:
        report.units_quarantined[f"{outcome.key}:instances:{outcome.unit.id}"] = outcome.failure.error
    return True


def failed_units(report: RunReport, key: str) -> list[str]:
    return [u for u in report.units_quarantined if u.startswith(f"{key}:")]


def finish_image(plan: ImagePlan, spec: JobSpec, manifest: Manifest, store: MaskStore, report: RunReport) -> None:
    """All units of the image were attempted: build its pyramid and record it (complete or not)."""
    failed = failed_units(report, plan.key)
    if failed:
        manifest.set_image_record(
            plan.key, {"key": plan.key, "input": plan.input, "state": "partial", "failed": len(failed)}
        )
        return
    store.build_pyramid(plan.key, spec.output.pyramid_levels)
    record = {"key": plan.key, "input": plan.input, "state": "complete", "units": plan.total}
    if plan.key in report.warnings:
        record["warning"] = report.warnings[plan.key]  # kept for report.html, and for status after this run
    manifest.set_image_record(plan.key, record)
    report.images_completed.append(plan.key)
