"""The HTML report: built at the end of submit, rebuilt by `segment-archive report`, safe to open."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ExitCode
from pipeline.htmlreport import collect, evenly_spaced, rates, summary_section, throughput_svg
from pipeline.manifest import NET_PASS, FailureRecord, Manifest
from pipeline.spec import JobSpec
from tests.jobs import make_archive, make_job, records

pytestmark = pytest.mark.usefixtures("local_ray")
ROOT = Path(__file__).resolve().parents[1]


class Page(HTMLParser):
    """Headings, embedded images and table cells of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[bytes] = []
        self.cells: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "td"):
            self._in = tag
        src = dict(attrs).get("src", "")
        if tag == "img" and src.startswith("data:image/png;base64,"):
            self.images.append(base64.b64decode(src.split(",", 1)[1]))

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.headings.append(data)
        elif self._in == "td":
            self.cells.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def partial_job(tmp_path_factory):
    """A job whose archive has two good images and one that cannot be read."""
    tmp_path = tmp_path_factory.mktemp("report")
    archive = make_archive(tmp_path / "in")
    (archive / "broken.tif").write_bytes(b"II*\x00garbage")
    job = make_job(tmp_path, archive)
    result = CliRunner().invoke(main, ["submit", str(job), "--quiet"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    return tmp_path / "out.zarr", result.output


def test_submit_writes_a_report_with_every_section(partial_job):
    out, output = partial_job
    assert f"report: {out}.job/report.html" in output
    page = parse(records(out) / "report.html")
    for heading in ("Summary", "Runs", "Throughput over time", "Quarantined", "Mask over image (sampled planes)"):
        assert heading in page.headings
    assert "broken" in page.cells and any("broken.tif" in c for c in page.cells)


def test_run_report_has_a_timeline_from_zero_to_all_megapixels(partial_job):
    out, _ = partial_job
    report = json.loads((records(out) / "run-report.json").read_text())
    seconds, megapixels = zip(*report["timeline"], strict=True)
    assert report["timeline"][0] == [0.0, 0.0] and list(seconds) == sorted(seconds)
    assert report["megapixels"] > 0 and megapixels[-1] == pytest.approx(report["megapixels"], abs=1e-3)


def test_report_pictures_are_pngs_of_the_completed_images(partial_job):
    out, _ = partial_job
    pictures = [Image.open(io.BytesIO(png)) for png in parse(records(out) / "report.html").images]
    # two completed images, each once large and once as a thumbnail
    assert len(pictures) == 4 and {p.format for p in pictures} == {"PNG"}
    assert sorted(p.size for p in pictures)[-1] == (90, 70)  # small planes are shown whole


def test_report_command_rebuilds_it_from_the_manifest(partial_job):
    out, _ = partial_job
    (records(out) / "report.html").unlink()
    result = CliRunner().invoke(main, ["report", str(out), "--samples", "1", "--thumbnails", "0"])
    assert result.exit_code == 0, result.output
    assert len(parse(records(out) / "report.html").images) == 1


def test_report_of_a_folder_that_is_no_output_says_so(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == ExitCode.INVALID
    assert "no job manifest" in result.output and "Traceback" not in result.output


def test_hostile_file_names_are_quarantined_and_escaped_in_the_report(tmp_path):
    archive = tmp_path / "in"
    archive.mkdir()
    tifffile.imwrite(archive / "<script>x.tif", np.zeros((1, 20, 20), np.uint8))
    tifffile.imwrite(archive / "good.tif", np.zeros((1, 20, 20), np.uint8))  # not every image refused: exit 3
    result = CliRunner().invoke(main, ["submit", str(make_job(tmp_path, archive)), "--quiet"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    text = (records(tmp_path / "out.zarr") / "report.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;x.tif" in text


def killed_run_output(tmp_path) -> str:
    """An output where a.tif was finished and a run was killed in the middle of b.tif."""
    out = str(tmp_path / "out.zarr")
    spec = {"name": "j", "input": {"path": "in/"}, "output": {"path": out}, "model": {"config": "unet-small"}}
    manifest = Manifest(out)
    manifest.set_job({"job_fingerprint": "f" * 64, "spec": JobSpec.model_validate(spec).model_dump(mode="json")})
    manifest.commit_states("a.tif", NET_PASS, "fp", np.ones(4, np.uint8), [0])
    manifest.set_image_record("a.tif", {"key": "a.tif", "state": "complete", "units": 4})
    manifest.commit_states("b.tif", NET_PASS, "fp", np.array([1, 0], np.uint8), [0])  # killed before its record
    return out


def test_summary_counts_the_images_a_killed_run_left_unfinished(tmp_path):
    page = Page()
    page.feed(summary_section(collect(killed_run_output(tmp_path))))
    row = page.cells.index("images in progress (a run stopped before they were finished)")
    assert page.cells[row + 1] == "1" and page.cells[page.cells.index("images complete") + 1] == "1"


def test_collecting_the_report_reads_the_image_records_once(tmp_path, monkeypatch):
    # One file per image: on an object store, every extra pass over them is a request per image.
    out = killed_run_output(tmp_path)
    passes = []
    read_records = Manifest.image_records
    monkeypatch.setattr(Manifest, "image_records", lambda self: passes.append(1) or read_records(self))
    assert collect(out).in_progress == 1 and len(passes) == 1


def test_collecting_the_report_reads_failures_of_partial_images_only(tmp_path, monkeypatch):
    out = killed_run_output(tmp_path)
    Manifest(out).set_image_record("c.tif", {"key": "c.tif", "state": "partial", "failed": 1})
    manifest = Manifest(out)
    manifest.commit_failures("c.tif", NET_PASS, [FailureRecord("0/0/0", 0, "input", 1, "c.tif: unreadable")])
    manifest.commit_failures("c.tif", NET_PASS, [FailureRecord("0/0/1", 1, "transient", 3, "since redone")])
    manifest.commit_states("c.tif", NET_PASS, "fp", np.array([3, 1], np.uint8), [0])
    read = []
    read_failures = Manifest.failures
    monkeypatch.setattr(Manifest, "failures", lambda self, key, *a: read.append(key) or read_failures(self, key, *a))
    data = collect(out)
    assert data.unit_failures == {"c.tif:0/0/0": "c.tif: unreadable"} and data.in_progress == 1
    assert read == ["c.tif"]


def test_throughput_chart_follows_the_rate_between_samples():
    assert rates([[0, 0], [1, 2], [3, 4]]) == [(1, 2.0), (3, 1.0)]
    svg = throughput_svg([(1, 2.0), (3, 1.0)])
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert len(points) == 2 and float(points[0].split(",")[1]) < float(points[1].split(",")[1])  # higher rate, higher


def test_evenly_spaced_keeps_the_ends():
    assert evenly_spaced(list("abcdefg"), 3) == ["a", "d", "g"]
    assert evenly_spaced(list("ab"), 5) == ["a", "b"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(partial_job, tmp_path):
    out, _ = partial_job
    png = tmp_path / "shot.png"
    subprocess.run([str(ROOT / "scripts" / "screenshot-report.sh"), str(out), str(png)], check=True, timeout=120)
    shot = np.asarray(Image.open(png).convert("RGB"))
    assert shot.shape[1] == 1200 and shot.std() > 10  # drawn, not blank
