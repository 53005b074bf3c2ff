"""What every pass of a job shares on the driver: a retried stream of outcomes, progress, finishing an image.

A pass (the net's, pipeline.netpass; the instance pass, pipeline.instances.instancepass)
hands Ray a stream of unit rows and reads back one `Outcome` per unit; when the
stream fails as a whole, the units still pending run again in a new one.  No ray
import here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pipeline.io.maskstore import MaskStore
from pipeline.manifest import PYRAMID, Manifest
from pipeline.outcome import FailureKind
from pipeline.planner import ImagePlan
from pipeline.report import RunReport
from pipeline.rows import Outcome
from pipeline.spec import JobSpec
from pipeline.stages import describe_failure

# (units finished, units total, megapixels so far, what is counted): the net's units, or the instance
# pass's blocks; each phase gets its own bar (pipeline.progress).
ProgressHook = Callable[[int, int, float, str], None]
Stream = Callable[[], Iterator[dict[str, Any]]]
log = logging.getLogger(__name__)


def counting(progress: ProgressHook | None, phase: str, total: int) -> Callable[[float], None]:
    """A tick(megapixels) for one phase of a pass: counts its units, and shows each on `progress` (if any)."""
    done, megapixels = 0, 0.0
    if progress and total:
        progress(0, total, 0.0, phase)

    def tick(unit_megapixels: float) -> None:
        nonlocal done, megapixels
        done, megapixels = done + 1, megapixels + unit_megapixels
        if progress:
            progress(done, total, megapixels, phase)

    return tick


def streamed(
    stream: Stream,
    retries: int,
    leftovers: Callable[[], Iterator[dict[str, Any]]],
    restart: Callable[[], None] | None = None,
) -> Iterator[Outcome]:
    """Outcomes of a pass's stream.  If the stream fails as a whole (Ray itself, a worker lost for good), a
    new one runs over the units still pending, up to `retries` times, each after `restart` (a fresh Ray
    connection, pipeline.run.reconnect); then `leftovers` fail with its error.

    Units retry their own transient failures inside the stream (pipeline.stages), so one failing unit
    never restarts the others.
    """
    error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            if attempt and restart:
                restart()
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


def streamed_rows(
    stream: Stream,
    retries: int,
    leftovers: Callable[[], Iterator[dict[str, Any]]],
    restart: Callable[[], None] | None = None,
) -> Iterator[tuple[Outcome, dict[str, Any]]]:
    """`streamed`, keeping each finished row beside its outcome (the instance pass reads its summary)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}

    def keeping() -> Iterator[dict[str, Any]]:
        for row in stream():
            rows[(str(row["key"]), int(row["index"]))] = row
            yield row

    for outcome in streamed(keeping, retries, leftovers, restart):
        yield outcome, rows.pop((outcome.key, outcome.index), {})


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
    store.build_pyramid(plan.key, spec.output.pyramid_levels, plan.stale_chunks())
    built = np.ones(plan.total, np.uint8)  # the levels are now up to date over every unit
    manifest.commit_all_states(plan.key, PYRAMID, plan.input, built)
    record = {"key": plan.key, "input": plan.input, "state": "complete", "units": plan.total}
    if plan.key in report.warnings:
        record["warning"] = report.warnings[plan.key]  # kept for report.html, and for status after this run
    manifest.set_image_record(plan.key, record)
    report.images_completed.append(plan.key)
