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
from typing import Any

from pipeline.errors import ConfigError
from pipeline.io.archive import open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.jobrecords import adopt_earlier_layout
from pipeline.manifest import Manifest
from pipeline.model.checkpoint import model_fingerprint, trained_on
from pipeline.netpass import execute
from pipeline.outputplace import check_output_place
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


def prepare(spec: JobSpec, overwrite: bool, create: bool) -> tuple[Any, str, str, Manifest, MaskStore | None]:
    adopt_earlier_layout(spec.output.path)
    check_output_place(spec.input.path, spec.output.path)
    model = load_model(spec.model.checkpoint, spec.model.config, spec.model.seed)
    check_chunks(
        spec.unit_shape, model.geometry, "output.unit" if spec.output.format == "ngff-0.5" else "output.chunks"
    )
    check_tile(spec.inference.tile, model.geometry)  # before Ray starts: a bad tile would fail every unit
    model_fp = model_fingerprint(model)
    job_fp = spec.fingerprint(model_fp)
    check_output_format(spec)
    manifest = Manifest(spec.output.path)
    existing = manifest.job()
    if existing and existing.get("job_fingerprint") != job_fp and not overwrite:
        raise ConfigError(
            f"{spec.output.path}: holds masks of a different job (model or inference settings changed: "
            f"fingerprint {existing.get('job_fingerprint', '?')[:12]} vs {job_fp[:12]}); "
            "use --overwrite to replace them, or write to another output.path"
        )
    store = MaskStore(spec.output.path, spec.output.kind, spec.output.format) if create else None
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
        summary = plan_job(archive, Planning(spec, model, manifest, None, prov, trained))
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
        summary = plan_job(archive, Planning(spec, model, manifest, store, prov, trained))
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


def check_output_format(spec: JobSpec) -> None:
    """ConfigError when the store already at output.path is of the other format (one store, one format)."""
    found = MaskStore(spec.output.path, spec.output.kind).existing_format()
    if found is not None and found != spec.output.format:
        raise ConfigError(
            f"{spec.output.path}: holds an {found} store, but output.format is {spec.output.format}; set "
            f"output.format: {found} to keep writing it, or write to another output.path"
        )


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
