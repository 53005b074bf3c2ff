"""`submit`: the Ray Data pipeline.  The only module of the package that imports ray.

    segment-archive submit jobs/demo.yaml [--address auto|ray://host:10001]

Driver: plan (manifest-aware) -> stream windows of pending units through
read (CPU tasks) -> predict (actor pool, one model per actor, GPU or CPU) ->
write (CPU tasks) -> commit each finished unit to the manifest -> pyramids ->
report.  CPU actors read and write their own units instead (`resources.io`).
Locally (no address) Ray starts in-process; with an address the same code runs
on a cluster.  Ray does not survive the driver's death; the manifest does, so a
new submit resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.cpumemory import malloc_env
from pipeline.errors import ConfigError
from pipeline.instancepass import InstancePass, relabel_unit, summarise_unit, write_object_table
from pipeline.io.archive import open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.manifest import INSTANCES_PREFIX, Manifest, UnitRecord
from pipeline.model.checkpoint import model_fingerprint
from pipeline.plan import WorkUnit, check_chunks
from pipeline.planner import ImagePlan, PlanSummary, pending_units, plan_job, provenance
from pipeline.report import RunReport, record_timeline
from pipeline.retry import windows, with_retries
from pipeline.runtime import load_model
from pipeline.spec import InstancesSpec, JobSpec
from pipeline.stages import PredictStage, ReadPredictWriteStage, StageContext, read_unit, write_unit

# Seconds between manifest commits; a kill loses at most this much finished work.
COMMIT_EVERY_S = float(os.environ.get("SEGMENT_ARCHIVE_COMMIT_EVERY_S", "2.0"))
# Rows per task of the instance pass: a task costs ~0.3 s of Ray overhead, a row of it ~0.05 s.
ROWS_PER_CPU_TASK = 16
# Ray starts its workers at niceness 15, below the driver and Ray's own processes.  The model
# is what every other worker waits for: its actor gets the driver's priority (as Ray's job
# supervisor does for its own actor), so readers, writers and Ray's start-up use the gaps.
PREDICTOR_PRIORITY = {"RAY_worker_niceness": "0"}
# Fault injection for the reliability tests: SIGKILL this driver after N committed units.
KILL_AFTER_UNITS = int(os.environ.get("SEGMENT_ARCHIVE_KILL_AFTER_UNITS", "0"))


ProgressHook = Callable[[int, int, float], None]  # (units finished, units total, megapixels so far)


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
        threads=max(1, int(spec.resources.cpus_per_actor)),
        skip_empty=spec.inference.skip_empty,
        instances=spec.output.instances,
        run_id=run_id,
    )


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, private cluster
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # A little over the core count, so reader and writer tasks run beside busy actors.
        # "local": a Ray of our own, even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=(os.cpu_count() or 1) + 2, **kwargs)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own bar and report say it all


def unit_rows(plans: list[ImagePlan], chunks: tuple[int, int]) -> Iterator[dict[str, Any]]:
    """Pending units as Ray rows, image after image (lazily: bounded driver memory)."""
    for plan in plans:
        for unit in pending_units(plan, chunks):
            coords = plan.plane_coords(unit.plane)
            yield {
                **unit.to_dict(),
                "t": coords.get("t", 0),
                "z": coords.get("z", 0),
                "scale": plan.scale,
                "offset": plan.offset,
                "input": plan.input,
                "out_axes": plan.out_axes,
                "error": "",
                "skipped": False,
            }


def run_window(rows: list[dict[str, Any]], ctx: StageContext, spec: JobSpec) -> Iterator[dict[str, Any]]:
    """Stream one window of units through read -> predict -> write; yield finished rows."""
    import ray

    r = spec.resources
    # A few units per block: each task costs Ray a fixed overhead that, on a small machine, the
    # model pays for (one unit per block: 0.70 of the bare model; two: 0.81); units are
    # committed as soon as their block is written.
    ds: Any = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // r.units_per_task))
    if r.io_in_actor():  # a call per task: Ray Data's cost per call is paid per task, not per unit
        yield from on_predictors(ds, ReadPredictWriteStage, ctx, spec, r.units_per_task).iter_rows()
        return
    # Reads must stay CPU tasks of their own, not fused into the predictor actors (the
    # model must not wait on decoding).  Ray Data fuses stages whose resource requests
    # are equal (ray-project/ray#54433), so a reader never asks for exactly an actor's CPUs.
    reader_cpus = r.cpus_per_reader if r.cpus_per_reader != r.cpus_per_actor else r.cpus_per_reader * 0.999
    ds = ds.map(read_unit, fn_kwargs={"ctx": ctx}, num_cpus=reader_cpus)
    ds = on_predictors(ds, PredictStage, ctx, spec, spec.inference.batch_size)
    # write_unit returns only the small columns: a select_columns stage here would be a
    # task of its own asking for a whole CPU, and stalled the stream until the end.
    ds = ds.map(write_unit, fn_kwargs={"ctx": ctx}, num_cpus=reader_cpus)
    yield from ds.iter_rows()


def on_predictors(ds: Any, stage: type[PredictStage], ctx: StageContext, spec: JobSpec, rows_per_call: int) -> Any:
    """`ds` mapped by `stage` on the pool of predictor actors (one model each), `rows_per_call` rows a call."""
    import ray

    r = spec.resources
    return ds.map_batches(
        stage,
        fn_constructor_kwargs={"ctx": ctx},
        batch_size=rows_per_call,
        batch_format="numpy",
        # Calls run on the actor's own thread, the one that built the model, not on a thread
        # of Ray Data's.  torch's OpenMP then has one team of threads, which spins at its
        # barriers; with a second team libgomp counts more threads than cores and sleeps at
        # every barrier instead (on 2 cores: 1,100 sleeps a second, each forward 3% slower).
        # One call at a time all the same: the actor's max_concurrency stays 1.
        compute=ray.data.ActorPoolStrategy(size=r.actors, enable_true_multi_threading=True),
        num_gpus=r.gpus_per_actor,
        num_cpus=r.cpus_per_actor,
        zero_copy_batch=True,
        # Set before the actor's first allocation: on a CPU, the model's forwards stop
        # page-faulting their activations in again (see pipeline.cpumemory).
        runtime_env={"env_vars": {**malloc_env(), **PREDICTOR_PRIORITY}},
    )


def map_rows(
    rows: list[dict[str, Any]], fn: Callable[..., dict[str, Any]], ctx: StageContext, spec: JobSpec
) -> Iterator[dict[str, Any]]:
    """Stream rows through one CPU stage (the instance pass); yield them as they finish."""
    import ray

    ds: Any = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // ROWS_PER_CPU_TASK))
    yield from ds.map(fn, fn_kwargs={"ctx": ctx}, num_cpus=spec.resources.cpus_per_reader).iter_rows()


class Committer:
    """Buffers finished units per image and commits them to the manifest in whole files."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.buffer: dict[str, list[UnitRecord]] = defaultdict(list)
        self.last = time.monotonic()
        self.committed = 0

    def add(self, key: str, record: UnitRecord) -> None:
        self.buffer[key].append(record)
        if time.monotonic() - self.last > COMMIT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        for key, records in self.buffer.items():
            self.manifest.commit_units(key, records)
            self.committed += len(records)
        self.buffer.clear()
        if KILL_AFTER_UNITS and self.committed >= KILL_AFTER_UNITS:
            os.kill(os.getpid(), signal.SIGKILL)
        self.manifest.heartbeat()
        self.last = time.monotonic()


def prepare(spec: JobSpec, overwrite: bool, create: bool) -> tuple[Any, str, str, Manifest, MaskStore | None]:
    model = load_model(spec.model.checkpoint, spec.model.config, spec.model.seed)
    check_chunks(spec.output.chunks, model.geometry)
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
    spec: JobSpec, overwrite: bool = False, dry_run: bool = False, progress: ProgressHook | None = None
) -> RunReport:
    """Run (or resume, or top up) the job; returns the run report (also written to the manifest)."""
    started = time.perf_counter()
    model, model_fp, job_fp, manifest, store = prepare(spec, overwrite, create=not dry_run)
    archive = open_archive(spec.input.path, spec.input.axes, spec.input.stack)
    prov = provenance(spec, job_fp, model_fp, "", "")
    if dry_run:
        summary = plan_job(archive, spec, model, manifest, None, prov)
        return RunReport(
            spec.name, manifest.run_id, job_fp, summary.as_dict(), images_quarantined=summary.quarantined, dry_run=True
        )
    assert store is not None
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
        summary = plan_job(archive, spec, model, manifest, store, prov)
        for key, reason in summary.quarantined.items():
            manifest.set_image_record(key, {"key": key, "state": "quarantined", "error": reason})
        report = RunReport(
            spec.name, manifest.run_id, job_fp, summary.as_dict(), images_quarantined=dict(summary.quarantined)
        )
        execute(spec, model, summary, manifest, store, report, progress)
        report.seconds = time.perf_counter() - started
        manifest.write_run_report(report.as_dict())
    return report


def execute(
    spec: JobSpec,
    model: Any,
    summary: PlanSummary,
    manifest: Manifest,
    store: MaskStore,
    report: RunReport,
    progress: ProgressHook | None,
) -> None:
    ctx = stage_context(spec, model.geometry, manifest.run_id)
    plans = {p.key: p for p in summary.images}
    remaining = {p.key: p.pending for p in summary.images}
    committer = Committer(manifest)
    total = summary.pending_units
    finished = 0
    if total:
        init_ray(spec.resources.address)
        report.timeline.append((0.0, 0.0))
    t0 = time.perf_counter()
    instances = spec.output.kind == "instances"
    for window in windows(unit_rows(summary.images, spec.output.chunks), spec.resources.window):
        for row, attempts in with_retries(window, lambda todo: run_window(todo, ctx, spec), spec.resources.retries):
            key, uid = row["key"], WorkUnit.from_dict(row).id
            state = "failed" if row["error"] else "skipped" if row["skipped"] else "done"
            committer.add(key, UnitRecord(uid, state, attempts, row["input"], row["error"]))
            finished += 1
            if state == "failed":
                report.units_quarantined[f"{key}:{uid}"] = row["error"]
            else:
                report.units_done += 1
                report.units_skipped += state == "skipped"
                report.megapixels += (row["y1"] - row["y0"]) * (row["x1"] - row["x0"]) / 1e6
            remaining[key] -= 1
            if remaining[key] == 0 and not instances:
                committer.flush()
                finish_image(plans[key], spec, manifest, store, report)
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
        if plan.pending == 0:  # every unit was done before this run (killed before its pyramid)
            finish_image(plan, spec, manifest, store, report)


def execute_instances(
    spec: JobSpec,
    ctx: StageContext,
    plans: list[ImagePlan],
    manifest: Manifest,
    committer: Committer,
    report: RunReport,
) -> None:
    """The instance pass of the images whose object probability is complete: summarise, merge, relabel, finish.

    An image with a failed unit (of the net's pass, or a block that could not be summarised) is recorded partial.
    """
    store = MaskStore(spec.output.path, "instances")
    work = InstancePass(
        [p for p in plans if not failed_units(report, p.key)],
        manifest,
        spec.output.chunks,
        spec.output.instances or InstancesSpec(),
    )
    retries = spec.resources.retries
    for window in windows(work.summary_rows(), spec.resources.window):
        init_ray(spec.resources.address)
        for row, attempts in with_retries(window, lambda todo: map_rows(todo, summarise_unit, ctx, spec), retries):
            if row["error"]:
                quarantine(committer, report, row, attempts)
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
    rows = (row for plan in ready for row in work.relabel_rows(plan))
    for window in windows(rows, spec.resources.window):
        init_ray(spec.resources.address)
        for row, attempts in with_retries(window, lambda todo: map_rows(todo, relabel_unit, ctx, spec), retries):
            key = row["key"]
            if row["error"]:
                quarantine(committer, report, row, attempts)
            else:
                committer.add(
                    key, UnitRecord(INSTANCES_PREFIX + WorkUnit.from_dict(row).id, "done", attempts, row["input"])
                )
            remaining[key] -= 1
            if remaining[key] == 0:
                committer.flush()
                finish_instances(work.plans[key], work, spec, manifest, store, report)
    committer.flush()


def finish_instances(
    plan: ImagePlan, work: InstancePass, spec: JobSpec, manifest: Manifest, store: MaskStore, report: RunReport
) -> None:
    """Every block of the image was relabelled (or failed): its object table and pyramids, then its record."""
    if not failed_units(report, plan.key):
        planes = work.plane_objects(plan)
        write_object_table(spec.output.path, plan.key, planes)
        MaskStore(spec.output.path, "probabilities").build_pyramid(plan.key, spec.output.pyramid_levels)
        report.objects += sum(objects.count for _, _, objects in planes)
    work.forget(plan)
    finish_image(plan, spec, manifest, store, report)  # complete, or partial


def quarantine(committer: Committer, report: RunReport, row: dict[str, Any], attempts: int) -> None:
    uid = INSTANCES_PREFIX + WorkUnit.from_dict(row).id
    committer.add(row["key"], UnitRecord(uid, "failed", attempts, row["input"], row["error"]))
    report.units_quarantined[f"{row['key']}:{uid}"] = row["error"]


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
    manifest.set_image_record(
        plan.key, {"key": plan.key, "input": plan.input, "state": "complete", "units": plan.total}
    )
    report.images_completed.append(plan.key)
