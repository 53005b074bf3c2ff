"""The HTML report beside the output: what ran, what was skipped or failed and why,
throughput over time, and mask-over-image pictures of a sample of planes.

    segment-archive report OUTPUT      (submit also writes it at the end of each run)

Built from the manifest alone (job, image records, run reports), so it can be
rebuilt at any time.  One self-contained file, `<output>.job/report.html`, with the
pictures embedded as PNG data URIs: it can be mailed, archived, or served from
the object store as it is; no server, no JavaScript.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import fsspec
from pydantic import ValidationError

from pipeline.errors import OutputError, SegmentArchiveError
from pipeline.io.archive import open_archive
from pipeline.io.maskstore import MaskStore
from pipeline.jobrecords import MANIFEST, REPORT_HTML, adopt_earlier_layout, records_url
from pipeline.manifest import PASS_PREFIXES, Manifest
from pipeline.names import image_name
from pipeline.outcome import UnitState
from pipeline.preview import Preview, render_preview
from pipeline.spec import JobSpec

MAX_FAILURES_LISTED = 200
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00}.ok{color:#070}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
figure{margin:0}figcaption{font-size:12px;color:#555;word-break:break-all}
.overlays{display:flex;flex-wrap:wrap;gap:16px}.overlays img{max-width:512px;width:100%}
svg text{font-size:11px;fill:#444}
"""


@dataclass
class ReportData:
    """What the manifest says about a job: its spec, runs, and the state of every image."""

    output: str
    spec: JobSpec
    job_fingerprint: str
    runs: list[dict[str, Any]]
    images: list[dict[str, Any]]
    unit_failures: dict[str, str] = field(default_factory=dict)
    in_progress: int = 0  # images a stopped run had started but not finished (no image record yet)

    def count(self, state: str) -> int:
        return sum(1 for r in self.images if r.get("state") == state)

    def keys(self, state: str) -> list[str]:
        return [r["key"] for r in self.images if r.get("state") == state]


def collect(output: str) -> ReportData:
    """Read the job's manifest for the store at `output`; OutputError if there is none."""
    adopt_earlier_layout(output)
    manifest = Manifest(output)
    job = manifest.job()
    where = f"{records_url(output)}/{MANIFEST}"
    if job is None:
        raise OutputError(f"{output}: no job manifest beside it ({where}/job.json); is this a segment-archive output?")
    try:
        spec = JobSpec.model_validate(job["spec"])
    except (KeyError, TypeError, ValidationError) as exc:
        raise OutputError(f"{where}/job.json: the job it records is missing or not valid: {exc}") from None
    images = list(manifest.image_records())
    if any("key" not in record for record in images):
        raise OutputError(f"{where}/images: an image record without its key; the manifest is damaged")
    failures: dict[str, str] = {}
    for record in images:
        if record.get("state") == "partial":
            failures.update(failed_units(manifest, record["key"]))
    # A stopped run's unfinished images have unit states but no image record yet.
    in_progress = len(set(manifest.state_folders()) - {image_name(r["key"]) for r in images})
    runs = list(manifest.run_reports())
    return ReportData(output, spec, job.get("job_fingerprint", ""), runs, images, failures, in_progress)


def failed_units(manifest: Manifest, key: str) -> dict[str, str]:
    """`image:unit` -> why, for the units of an image whose committed state is failed (both passes)."""
    failed = {}
    for pass_name, label in PASS_PREFIXES.items():
        prefix = f"{label}:" if label else ""
        states = manifest.unit_states(key, pass_name)
        if states is None or not (states == UnitState.FAILED).any():
            continue
        for unit, record in manifest.failures(key, pass_name).items():
            if record.index < len(states) and states[record.index] == UnitState.FAILED:  # not since redone
                failed[f"{key}:{prefix}{unit}"] = record.error
    return failed


def evenly_spaced(items: list[str], n: int) -> list[str]:
    """At most n items spread over the whole list, first and last included."""
    if len(items) <= n:
        return list(items)
    if n <= 1:
        return items[:n]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def render_previews(data: ReportData, keys: list[str], pixels: int) -> tuple[list[Preview], list[str]]:
    """Pictures of the middle plane of each image; problems become notes, not failures."""
    pictures: list[Preview] = []
    notes: list[str] = []
    if not keys:
        return pictures, notes
    store = MaskStore(data.output, data.spec.output.kind)
    try:
        archive = open_archive(data.spec.input.path, data.spec.input.axes, data.spec.input.stack)
    except SegmentArchiveError as exc:
        return pictures, [f"input not readable, no pictures: {exc}"]
    for key in keys:
        try:
            image = archive.open(key)
            pictures.append(render_preview(image, store, image.n_planes // 2, pixels))
        except SegmentArchiveError as exc:
            notes.append(f"{key}: no picture: {exc}")
    return pictures, notes


def rates(timeline: list[list[float]]) -> list[tuple[float, float]]:
    """(seconds, Mpx/s over the interval ending there) from cumulative (seconds, Mpx) samples."""
    points = []
    for (t0, m0), (t1, m1) in pairwise(timeline):
        if t1 > t0:
            points.append((t1, (m1 - m0) / (t1 - t0)))
    return points


def throughput_svg(points: list[tuple[float, float]], width: int = 640, height: int = 180) -> str:
    """A line chart of Mpx/s over seconds, as inline SVG."""
    if not points:
        return "<p>No throughput samples (the run did no work, or ran for under a second).</p>"
    pad = 40
    t_max = max(t for t, _ in points) or 1.0
    r_max = max(r for _, r in points) or 1.0
    xy = [(pad + t / t_max * (width - 2 * pad), height - pad + 10 - r / r_max * (height - pad - 10)) for t, r in points]
    polyline = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base = height - pad + 10
    return (
        f'<svg width="{width}" height="{height + 10}" role="img" aria-label="throughput over time">'
        f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#999"/>'
        f'<line x1="{pad}" y1="10" x2="{pad}" y2="{base}" stroke="#999"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{polyline}"/>'
        + "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1f77b4"/>' for x, y in xy)
        + f'<text x="{pad}" y="{base + 16}">0 s</text>'
        f'<text x="{width - pad}" y="{base + 16}" text-anchor="end">{t_max:.0f} s</text>'
        f'<text x="{pad - 4}" y="16" text-anchor="end">{r_max:.2f}</text>'
        f'<text x="{pad - 4}" y="{base}" text-anchor="end">0</text>'
        f'<text x="{width / 2}" y="{base + 16}" text-anchor="middle">Mpx/s over the last run</text></svg>'
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure(picture: Preview, width: int) -> str:
    caption = html.escape(picture.caption)
    return f'<figure><img src="{data_uri(picture.png)}" width="{width}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, (int, float)) else f"<td>{html.escape(str(v))}</td>" for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_section(data: ReportData) -> str:
    rows = [
        ["images complete", data.count("complete")],
        ["images partial (some units quarantined)", data.count("partial")],
        ["images quarantined", data.count("quarantined")],
        ["images in progress (a run stopped before they were finished)", data.in_progress],
        ["units quarantined", len(data.unit_failures)],
        ["images with a warning", sum(1 for r in data.images if r.get("warning"))],
        ["runs recorded", len(data.runs)],
    ]
    return "<h2>Summary</h2>" + table(["", "count"], rows)


def runs_section(data: ReportData) -> str:
    rows = [
        [
            r.get("run_id", "?"),
            r.get("status", "?"),
            r.get("plan", {}).get("units_pending", 0),
            r.get("units_done", 0),
            r.get("units_skipped", 0),
            len(r.get("units_quarantined", {})),
            len(r.get("images_completed", [])),
            round(float(r.get("megapixels", 0.0)), 2),
            round(float(r.get("seconds", 0.0)), 1),
            r.get("megapixels_per_second", 0.0),
        ]
        for r in data.runs
    ]
    header = [
        "run",
        "status",
        "units planned",
        "done",
        "skipped empty",
        "quarantined",
        "images completed",
        "Mpx",
        "s",
        "Mpx/s",
    ]
    last = next((r for r in reversed(data.runs) if r.get("timeline")), None)
    chart = throughput_svg(rates(last["timeline"])) if last else throughput_svg([])
    return "<h2>Runs</h2>" + table(header, rows) + "<h2>Throughput over time</h2>" + chart


def failures_section(data: ReportData) -> str:
    items = [(r["key"], r.get("error", "")) for r in data.images if r.get("state") == "quarantined"]
    items += sorted(data.unit_failures.items())
    if not items:
        return '<h2>Quarantined</h2><p class="ok">Nothing quarantined.</p>'
    shown = items[:MAX_FAILURES_LISTED]
    more = f"<p>... and {len(items) - len(shown)} more (see run-report.json).</p>" if len(items) > len(shown) else ""
    return '<h2 class="bad">Quarantined</h2>' + table(["image or unit", "reason"], [list(i) for i in shown]) + more


def warnings_section(data: ReportData) -> str:
    """Images whose output needs a look (the warning their run recorded); nothing when there are none."""
    items = [[r["key"], r["warning"]] for r in data.images if r.get("warning")]
    if not items:
        return ""
    return '<h2 class="bad">Warnings</h2>' + table(["image", "warning"], items[:MAX_FAILURES_LISTED])


def render_html(data: ReportData, overlays: list[Preview], thumbnails: list[Preview], notes: list[str]) -> str:
    spec = data.spec
    title = html.escape(f"segment-archive report: {spec.name}")
    meta = (
        f"<p>Output <code>{html.escape(data.output)}</code>, input <code>{html.escape(spec.input.path)}</code>, "
        f"output kind <b>{html.escape(spec.output.kind)}</b>, job {html.escape(data.job_fingerprint[:12])}; "
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>"
    )
    pictures = "".join(figure(p, 512) for p in overlays) or "<p>No completed images yet.</p>"
    grid = "".join(figure(p, 160) for p in thumbnails)
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>{meta}"
        f"{summary_section(data)}{runs_section(data)}{failures_section(data)}{warnings_section(data)}"
        f'<h2>Mask over image (sampled planes)</h2><div class="overlays">{pictures}</div>'
        f'<h2>Thumbnails</h2><div class="grid">{grid}</div>'
        + (f"<h2>Notes</h2><ul>{note_html}</ul>" if notes else "")
        + "</body></html>"
    )


def build_report(output: str, samples: int = 4, thumbnails: int = 24) -> str:
    """Write `<output>.job/report.html` from the manifest; returns its path."""
    data = collect(output)
    complete = data.keys("complete")
    overlays, notes = render_previews(data, evenly_spaced(complete, samples), 512)
    thumbs, more_notes = render_previews(data, evenly_spaced(complete, thumbnails), 160)
    path = records_url(output) + "/" + REPORT_HTML
    try:
        with fsspec.open(path, "w", encoding="utf-8") as f:
            f.write(render_html(data, overlays, thumbs, notes + more_notes))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report: {exc}") from None
    return path
