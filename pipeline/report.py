"""Run reports: the summary printed at the end, the JSON next to the output, `status`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from pipeline.joblock import heartbeat_age
from pipeline.jobrecords import REPORT_JSON, adopt_earlier_layout, records_url
from pipeline.manifest import NET_PASS, PASS_PREFIXES, Manifest
from pipeline.names import image_name
from pipeline.outcome import UnitState
from pipeline.spec import JobSpec

MAX_LISTED = 20
TIMELINE_EVERY_S = 1.0


@dataclass
class RunReport:
    job: str
    run_id: str
    job_fingerprint: str
    plan: dict[str, Any]
    units_done: int = 0  # masks written, by the net or as background (units_skipped of them)
    units_skipped: int = 0
    objects: int = 0  # output.kind instances: objects in the images completed by this run
    units_quarantined: dict[str, str] = field(default_factory=dict)
    images_completed: list[str] = field(default_factory=list)
    images_quarantined: dict[str, str] = field(default_factory=dict)
    megapixels: float = 0.0
    seconds: float = 0.0
    # (seconds since Ray was ready, megapixels finished so far): throughput over time
    timeline: list[tuple[float, float]] = field(default_factory=list)
    dry_run: bool = False
    plan_lines: list[str] = field(default_factory=list)  # a dry run's per-image and tile lines
    verify_lines: list[str] = field(default_factory=list)  # --verify: what the output had lost
    interrupted: bool = False  # stopped by SIGINT or SIGTERM: what was committed stays, a submit resumes
    warnings: dict[str, str] = field(default_factory=dict)  # image -> why its output needs a look (exit 3)

    @property
    def status(self) -> str:
        if self.dry_run:
            return "dry-run"
        if self.interrupted:
            return "interrupted"
        if self.units_quarantined or self.images_quarantined:
            return "partial"
        return "warnings" if self.warnings else "complete"

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["status"] = self.status
        d["megapixels_per_second"] = round(self.megapixels / self.seconds, 3) if self.seconds else 0.0
        return d


def record_timeline(report: RunReport, elapsed: float, force: bool = False) -> None:
    """Sample (seconds, megapixels done) at most every TIMELINE_EVERY_S seconds."""
    if force or not report.timeline or elapsed - report.timeline[-1][0] >= TIMELINE_EVERY_S:
        report.timeline.append((round(elapsed, 2), round(report.megapixels, 4)))


def print_report(report: RunReport) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)
    d = report.as_dict()
    plan = d["plan"]
    console.print(f"[bold]{report.job}[/bold] ({report.status})  run {report.run_id}")
    console.print(
        f"  plan: {plan['images_to_process']} image(s) to process, {plan['images_up_to_date']} up to date, "
        f"{plan['images_quarantined']} quarantined; {plan['units_pending']} unit(s) pending, "
        f"{plan['megapixels_pending']} Mpx"
    )
    for i, line in enumerate(report.plan_lines):
        if i == MAX_LISTED:
            console.print(f"  ... and {len(report.plan_lines) - MAX_LISTED} more image(s)")
            break
        console.print(f"  {line}", highlight=False, markup=False)
    for line in report.verify_lines + ([] if report.dry_run else change_lines(plan)):
        console.print(f"  {line}", highlight=False, markup=False)
    if not report.dry_run:
        console.print(
            f"  done: {report.units_done} unit(s) ({report.units_skipped} empty, written as background), "
            f"{len(report.images_completed)} image(s) completed, "
            f"{report.megapixels:.2f} Mpx in {report.seconds:.1f} s ({d['megapixels_per_second']} Mpx/s)"
        )
        if report.objects:
            console.print(f"  objects: {report.objects} in the completed image(s) (tables in <output>.job/objects/)")
    for _, warning in sorted(report.warnings.items())[:MAX_LISTED]:
        console.print(f"  [yellow]warning[/yellow] {warning}", markup=True, highlight=False)
    for label, items in (("image", report.images_quarantined), ("unit", report.units_quarantined)):
        for i, (what, why) in enumerate(sorted(items.items())):
            if i == MAX_LISTED:
                console.print(f"  ... and {len(items) - MAX_LISTED} more quarantined {label}s (see the JSON report)")
                break
            console.print(f"  [red]quarantined {label}[/red] {what}: {why}", markup=True, highlight=False)


def change_lines(plan: dict[str, Any]) -> list[str]:
    """A line per image whose input changed since its units were computed (images new to the output are not)."""
    lines = []
    for key, c in sorted(plan.get("changes", {}).items()):
        if not c.get("changed") and (not c.get("new") or not c.get("unchanged")):
            continue
        reason = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(
            f"input changed: {key}: {c['unchanged']} unchanged, {c['changed']} changed, {c['new']} new{reason}"
        )
    if len(lines) > MAX_LISTED:
        lines = lines[:MAX_LISTED] + [f"... and {len(lines) - MAX_LISTED} more changed image(s) (see the JSON report)"]
    return lines


def write_report_json(output: str, report: RunReport) -> str:
    path = records_url(output) + "/" + REPORT_JSON
    with fsspec.open(path, "w") as f:
        json.dump(report.as_dict(), f, indent=2, sort_keys=True)
    return path


def tally(manifest: Manifest) -> tuple[Counter[str], Counter[str]]:
    """(images per state, units per state) from the manifest; the instance pass's units as "instances <state>"."""
    images: Counter[str] = Counter()
    units: Counter[str] = Counter(done=0, failed=0)
    state_of: dict[str, str] = {}
    for record in manifest.image_records():
        state_of[image_name(record["key"])] = record.get("state", "?")
        images[record.get("state", "?")] += 1
        if record.get("warning"):
            images["with a warning (see report.html)"] += 1
        if record.get("state") == "complete":
            units["done"] += int(record.get("units", 0))
    for pass_name, label in PASS_PREFIXES.items():
        prefix = f"{label} " if label else ""
        for folder in manifest.state_folders(pass_name):
            if state_of.get(folder) == "complete":
                continue  # counted from its image record, its states unread
            if folder not in state_of and pass_name == NET_PASS:
                images["in progress"] += 1  # a killed run's: image records are written when an image ends
            states = manifest.folder_unit_states(folder, pass_name)
            if states is not None:
                units[prefix + "done"] += int(np.count_nonzero(states == UnitState.DONE))
                units[prefix + "done"] += int(np.count_nonzero(states == UnitState.SKIPPED))
                units[prefix + "failed"] += int(np.count_nonzero(states == UnitState.FAILED))
    return images, units


def job_status(spec: JobSpec, verify: bool = False) -> str:
    """What `status` prints: images and units per state, the lock's holder, the last run; with `verify`,
    what the output has lost since (pipeline.verify)."""
    adopt_earlier_layout(spec.output.path)
    manifest = Manifest(spec.output.path)
    job = manifest.job()
    if job is None:
        return f"{spec.name}: never run (no manifest at {spec.output.path})"
    images, units = tally(manifest)
    last: dict[str, Any] = manifest.last_run_report() or {}
    lines = [
        f"{spec.name}: job {str(job.get('job_fingerprint', 'unrecorded'))[:12]}",
        "  images: " + ", ".join(f"{n} {s}" for s, n in sorted(images.items()))
        if images
        else "  images: none recorded",
        f"  units: {units['done']} done, {units['failed']} failed (pending: run `segment-archive plan`)",
    ]
    if units["instances done"] or units["instances failed"]:
        lines.append(f"  instance pass: {units['instances done']} unit(s) done, {units['instances failed']} failed")
    holder = manifest.lock_holder()
    if holder:
        age = heartbeat_age(holder)
        lines.append(
            f"  running now: run {holder.get('run')} (pid {holder.get('pid')} on {holder.get('host')}, "
            f"heartbeat {age:.0f} s ago); the unit counts above are what it has committed so far"
        )
    if last:
        lines.append(
            f"  last run {last.get('run_id')}: {last.get('status')}, {last.get('units_done')} unit(s), "
            f"{last.get('megapixels_per_second')} Mpx/s"
        )
        changed = change_lines(last.get("plan", {}))
        lines += [f"  {line}" for line in changed]
        if changed:
            lines.append("  (what the last run found; `segment-archive plan` compares the input as it is now)")
    if verify:
        from pipeline.verify import verify_lines, verify_output

        lines += ["  " + line for line in verify_lines(verify_output(spec.output.path, spec.output.kind))]
    return "\n".join(lines)
