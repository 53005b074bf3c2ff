"""`submit`: the driver of a job.  Plans, streams each pass once through Ray, commits, finishes images.

    segment-archive submit jobs/demo.yaml [--address auto|ray://host:10001]

check the output's place, the tile and chunks -> plan (manifest-aware) -> the
net's pass (pipeline.netpass: one stream of every pending unit through
`pipeline.run`, the Ray boundary, committed as it flows, images finished) -> for
output.kind instances, the instance pass (pipeline.instances.instancepass) -> report.  Ray
does not survive the driver's death; the manifest does, so a new submit resumes.
No ray import here: the passes see streams of rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.io.archive import Archive, open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.jobrecords import adopt_earlier_layout
from pipeline.manifest import Manifest
from pipeline.model.checkpoint import model_fingerprint, trained_on
from pipeline.netpass import execute
from pipeline.outputplace import check_output_place
from pipeline.outputspec import DEFAULT_FORMAT
from pipeline.passes import ProgressHook
from pipeline.plan import check_chunks, check_tile
from pipeline.planner import Planning, PlanSummary, plan_job, provenance
from pipeline.report import RunReport
from pipeline.runtime import load_model
from pipeline.spec import JobSpec
from pipeline.stages import PredictorFactory
from pipeline.tiling import computed_pixels, least_wasteful_tile, tile_length
from pipeline.verify import reopen_lost, verify_lines, verify_output

log = logging.getLogger(__name__)
# The largest tile `plan` suggests: one forward of a 1024 px tile of the paper net fits any GPU we target.
SUGGESTED_TILE_LIMIT = 1024


@dataclass(frozen=True)
class ResolvedJob:
    """A job checked and resolved on the driver before anything runs: its model, fingerprints and records.

    Resolving refuses (ConfigError, exit 2) an output in the wrong place or of another job or
    format, and an illegal unit or tile, so that nothing starts for a job that could only fail.
    """

    spec: JobSpec
    model: Any
    model_fingerprint: str
    job_fingerprint: str
    manifest: Manifest
    store: MaskStore | None  # None: a dry run, which writes nothing

    def planning(self) -> Planning:
        spec = self.spec
        trained = trained_on(spec.model.checkpoint) if spec.model.checkpoint else None
        prov = provenance(spec, self.job_fingerprint, self.model_fingerprint, "", "")
        return Planning(spec, self.model, self.manifest, self.store, prov, trained)

    def report(self, summary: PlanSummary, **fields: Any) -> RunReport:
        """The run's report, as planned so far."""
        return RunReport(
            self.spec.name,
            self.manifest.run_id,
            self.job_fingerprint,
            summary.as_dict(),
            images_quarantined=dict(summary.quarantined),
            **fields,
        )


def resolve(spec: JobSpec, overwrite: bool, create: bool) -> ResolvedJob:
    adopt_earlier_layout(spec.output.path)
    check_output_place(spec.input.path, spec.output.path)
    spec = with_store_format(spec)
    model = load_model(spec.model.checkpoint, spec.model.config, spec.model.seed)
    check_chunks(
        spec.unit_shape, model.geometry, "output.unit" if spec.output.store_format == "ngff-0.5" else "output.chunks"
    )
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
    store = MaskStore(spec.output.path, spec.output.kind, spec.output.format) if create else None
    return ResolvedJob(spec, model, model_fp, job_fp, manifest, store)


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
    job = resolve(spec, overwrite, create=not dry_run)  # from here on, job.spec: its format is resolved
    archive = open_archive(spec.input.path, spec.input.axes, spec.input.stack)
    archive.image_keys()  # a listing that cannot be used (no images, inputs sharing a name) stops us before any write
    if job.store is None:
        return dry_run_report(job, archive, verify)
    with job.manifest.lock():
        summary, report = start_run(job, archive, verify)
        try:
            execute(job.spec, job.model, summary, job.manifest, job.store, report, progress, make_predictor)
        except KeyboardInterrupt:  # SIGINT, or SIGTERM as the CLI raises it: record the run, then stop
            report.interrupted = True
            raise
        finally:
            report.seconds = time.perf_counter() - started
            job.manifest.write_run_report(report.as_dict())
    return report


def dry_run_report(job: ResolvedJob, archive: Archive, verify: bool) -> RunReport:
    """What a submit would do (`plan`, `submit --dry-run`): the plan, and what verify finds; nothing written."""
    summary = plan_job(archive, job.planning())
    refuse_if_nothing_can_run(summary)
    spec = job.spec
    return job.report(
        summary,
        dry_run=True,
        plan_lines=[tile_line(spec, job.model.geometry), *summary.image_lines(spec.input.axes is not None)],
        verify_lines=verify_lines(verify_output(spec.output.path, spec.output.kind)) if verify else [],
    )


def start_run(job: ResolvedJob, archive: Archive, verify: bool) -> tuple[PlanSummary, RunReport]:
    """Under the job's lock: record the job, reopen what verify finds lost, plan, and quarantine refused images."""
    spec, manifest = job.spec, job.manifest
    existing = manifest.job()
    if existing and existing.get("job_fingerprint") != job.job_fingerprint:
        manifest.reset()
    manifest.set_job(
        {
            "name": spec.name,
            "job_fingerprint": job.job_fingerprint,
            "model_fingerprint": job.model_fingerprint,
            "spec": spec.model_dump(mode="json"),
        }
    )
    checked = verify_output(spec.output.path, spec.output.kind) if verify else []
    reopen_lost(manifest, checked)
    summary = plan_job(archive, job.planning())
    if summary.all_refused() and not existing:
        manifest.reset()  # a corrected job file then starts afresh, without --overwrite
    refuse_if_nothing_can_run(summary)
    for key, reason in summary.quarantined.items():
        manifest.set_image_record(key, {"key": key, "state": "quarantined", "error": reason})
    return summary, job.report(summary, verify_lines=verify_lines(checked) if verify else [])


def with_store_format(spec: JobSpec) -> JobSpec:
    """The job with output.format set: as the job file says, else as the store already at output.path is
    (a job submitted before ngff-0.5 became the default goes on writing its ngff-0.4 store), else the default.

    ConfigError when the store is of another format than the job file's (one store, one format).
    """
    found = MaskStore(spec.output.path, spec.output.kind).existing_format()
    if spec.output.format is None:
        if found == "ngff-0.4" and spec.output.unit is not None:
            raise ConfigError(
                f"{spec.output.path}: holds an ngff-0.4 store, whose work unit is its chunk; output.unit "
                f"{list(spec.output.unit)} needs output.format: ngff-0.5 and another output.path"
            )
        return spec.with_format(found or DEFAULT_FORMAT)
    if found is not None and found != spec.output.format:
        raise ConfigError(
            f"{spec.output.path}: holds an {found} store, but output.format is {spec.output.format}; set "
            f"output.format: {found} to keep writing it, or write to another output.path"
        )
    return spec


def refuse_if_nothing_can_run(summary: PlanSummary) -> None:
    """ConfigError (exit 2) when every image was refused: a job-wide mistake (axes, channels), not bad images."""
    if not summary.all_refused():
        return
    reasons = list(summary.quarantined.values())
    shown = "\n  ".join(reasons[:3]) + (f"\n  ... and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    raise ConfigError(f"every image was refused, so nothing can run; check input.axes and the model:\n  {shown}")


def tile_line(spec: JobSpec, geometry: Any) -> str:
    """What the tile setting becomes for a full unit: the legal tile used, and the pixels of it kept;
    and the tile that would waste least, where it keeps clearly more."""
    height, width = spec.unit_shape
    used = (tile_length(spec.inference.tile, height, geometry), tile_length(spec.inference.tile, width, geometry))
    kept = (min(geometry.step(used[0]), height), min(geometry.step(used[1]), width))
    share = kept[0] * kept[1] / (used[0] * used[1])
    line = (
        f"tile: {spec.inference.tile} asked, {used[0]} x {used[1]} px used for a unit of {height} x {width}, "
        f"{kept[0]} x {kept[1]} of it kept ({share:.0%}; the rest is the net's margin)"
    )
    best = least_wasteful_tile((height, width), geometry, SUGGESTED_TILE_LIMIT)
    now, then = (height * width / pixels_computed(t, (height, width), geometry) for t in (spec.inference.tile, best))
    if then > now + 0.05:
        line += f"; inference.tile: {best} would keep {then:.0%} of the pixels the net computes, not {now:.0%}"
    return line


def pixels_computed(tile: int, block: tuple[int, int], geometry: Any) -> int:
    return computed_pixels(tile, block[0], geometry) * computed_pixels(tile, block[1], geometry)
