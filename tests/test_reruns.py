"""Nightly reruns: a changed input redoes exactly the units whose window reads the change (pipeline.changes).

Each test changes an input the way an acquisition does (a chunk rewritten, planes
appended, a plane extended, a slice added, a TIFF rewritten), reruns the job, and
checks the units redone, the untouched chunks' bytes and times, and the result
against a fresh run on the new input, byte for byte.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.driver import submit
from pipeline.report import job_status
from pipeline.spec import JobSpec
from tests.jobs import make_job, records

pytestmark = pytest.mark.usefixtures("local_ray")

rng = np.random.default_rng(7)


def pixels(*shape: int) -> np.ndarray:
    return rng.integers(0, 255, shape, dtype=np.uint8)


def chunk_files(out: Path, key: str, level: int = 0) -> dict[str, int]:
    """Chunk files of one level of an image's labels, with their modification times (ns)."""
    folder = out / "labels" / key / str(level)
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name[0] != "."
    }


def chunk_bytes(out: Path, key: str, kind: str = "labels") -> dict[str, bytes]:
    """Every chunk file of every level of an image's output (not the metadata, which names the run)."""
    group = out / kind / key
    return {str(p.relative_to(group)): p.read_bytes() for p in group.rglob("*") if p.is_file() and p.name[0] != "."}


def fresh_run_equals(tmp_path: Path, archive: Path, rerun: Path, key: str, **sections) -> None:
    """A fresh job over the changed input writes the same bytes as the incremental rerun."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    report = submit(JobSpec.load(make_job(fresh, archive, **sections)))
    assert report.status == "complete"
    assert chunk_bytes(fresh / "out.zarr", key) == chunk_bytes(rerun, key)


def segmented_volume(tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], **sections):
    """A Zarr volume of random pixels at `tmp_path/in`, and its job after a first run: (volume, job, report)."""
    volume = zarr.create_array(tmp_path / "in" / "vol.zarr", shape=shape, chunks=chunks, dtype="u1")
    volume[:] = pixels(*shape)
    job = JobSpec.load(make_job(tmp_path, tmp_path / "in", **sections))
    return volume, job, submit(job)


def later() -> None:
    time.sleep(0.02)  # file times must be able to tell a rewrite from the first write


def test_a_chunk_rewritten_in_place_redoes_exactly_the_units_that_read_it(tmp_path):
    archive, out = tmp_path / "in", tmp_path / "out.zarr"
    volume, job, first = segmented_volume(tmp_path, (3, 128, 128), (1, 64, 64))
    assert first.units_done == 48
    before, level1 = chunk_files(out, "vol"), chunk_files(out, "vol", level=1)
    later()
    volume[1, 64:128, 0:64] = pixels(64, 64)  # one chunk of plane 1, re-acquired

    report = submit(job)

    change = report.plan["changes"]["vol"]
    assert (change["changed"], change["new"]) == (report.units_done, 0)
    assert 4 <= report.units_done < 16  # the chunk's 4 units and the neighbours whose margin reads it
    after = chunk_files(out, "vol")
    rewritten = {name for name in after if after[name] != before[name]}
    assert len(rewritten) == report.units_done and all(name.startswith("1/") for name in rewritten)
    above = {f"{p}/{int(r) // 2}/{int(c) // 2}" for p, r, c in (name.split("/") for name in rewritten)}
    after = chunk_files(out, "vol", level=1)  # a level-1 chunk lies over 2 x 2 units
    assert {name for name in after if after[name] != level1[name]} == above
    counts = f"{change['unchanged']} unchanged, {change['changed']} changed, 0 new"
    assert f"  input changed: vol: {counts}" in job_status(job).splitlines()
    fresh_run_equals(tmp_path, archive, out, "vol")
    assert submit(job).plan["images_up_to_date"] == 1  # and the next night, nothing


def test_appended_planes_compute_only_the_new_planes(tmp_path):
    archive, out = tmp_path / "in", tmp_path / "out.zarr"
    volume, job, _ = segmented_volume(tmp_path, (2, 96, 96), (1, 48, 48))
    before = chunk_files(out, "vol")
    later()
    volume.resize((3, 96, 96))
    volume[2] = pixels(96, 96)

    report = submit(job)

    assert report.units_done == 9 and report.plan["changes"]["vol"]["new"] == 9  # one plane of 3 x 3 units
    after = chunk_files(out, "vol")
    assert {n: t for n, t in after.items() if n in before} == before
    assert zarr.open_array(out / "labels" / "vol" / "0").shape == (3, 96, 96)
    fresh_run_equals(tmp_path, archive, out, "vol")


@pytest.mark.slow  # the mirror rule itself: tests/test_changes.py
def test_a_plane_extended_in_x_redoes_the_old_border_and_computes_the_new_columns(tmp_path):
    archive, out = tmp_path / "in", tmp_path / "out.zarr"
    volume, job, _ = segmented_volume(tmp_path, (1, 64, 96), (1, 64, 32))
    before = chunk_files(out, "vol")
    later()
    volume.resize((1, 64, 160))
    volume[0, :, 96:] = pixels(64, 64)

    report = submit(job)

    change = report.plan["changes"]["vol"]
    assert change["new"] == 4 and change["changed"] >= 2 and change["unchanged"] >= 2
    assert report.units_done == change["new"] + change["changed"]
    after = chunk_files(out, "vol")
    kept = {n for n in before if after[n] == before[n]}
    assert len(kept) == change["unchanged"] and "0/0/0" in kept  # far from the old border
    fresh_run_equals(tmp_path, archive, out, "vol")


def stack_job(tmp_path: Path, archive: Path) -> JobSpec:
    path = make_job(tmp_path, archive)
    path.write_text(path.read_text().replace(f"input: {{path: {archive}}}", f"input: {{path: {archive}, stack: true}}"))
    return JobSpec.load(path)


@pytest.mark.slow  # a slice per piece: tests/test_io_stamps.py
def test_a_new_slice_in_a_stack_folder_computes_only_its_plane(tmp_path):
    archive = tmp_path / "slices"
    archive.mkdir()
    for z in range(3):
        Image.fromarray(pixels(64, 64)).save(archive / f"s{z:03d}.png")
    job = stack_job(tmp_path, archive)
    submit(job)
    later()
    Image.fromarray(pixels(64, 64)).save(archive / "s003.png")

    report = submit(job)

    assert report.plan["changes"]["slices"] == {"unchanged": 12, "changed": 0, "new": 4, "reason": "grown"}
    assert report.units_done == 4
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    submit(stack_job(fresh, archive))
    assert chunk_bytes(fresh / "out.zarr", "slices") == chunk_bytes(tmp_path / "out.zarr", "slices")


def test_a_rewritten_tiff_is_redone_whole_and_the_report_says_why(tmp_path):
    archive = tmp_path / "in"
    archive.mkdir()
    stack = pixels(3, 64, 64)
    tifffile.imwrite(archive / "scan.tif", stack, photometric="minisblack")
    job = JobSpec.load(make_job(tmp_path, archive))
    submit(job)
    later()
    stack[1, :32, :32] = pixels(32, 32)  # one page's corner: same size, same page offsets
    tifffile.imwrite(archive / "scan.tif", stack, photometric="minisblack")

    report = submit(job)

    change = report.plan["changes"]["scan"]
    assert report.units_done == change["changed"] == 12 and "TIFF" in change["reason"]
    fresh_run_equals(tmp_path, archive, tmp_path / "out.zarr", "scan")


def test_plan_shows_units_unchanged_changed_and_new_per_image(tmp_path):
    archive = tmp_path / "in"
    volume = zarr.create_array(archive / "vol.zarr", shape=(2, 64, 64), chunks=(1, 64, 64), dtype="u1")
    volume[:] = pixels(2, 64, 64)
    job = make_job(tmp_path, archive)
    submit(JobSpec.load(job))
    later()
    volume.resize((3, 64, 64))
    volume[2] = pixels(64, 64)
    os.utime(archive / "vol.zarr" / "c" / "0" / "0" / "0")  # touched: its stamp changed

    for command in (["plan", str(job)], ["submit", str(job), "--dry-run"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
        assert "8 of 12 unit(s) pending; input: 4 unchanged, 4 changed, 4 new (grown)" in result.output


def test_instances_after_a_chunk_rewrite_equal_a_fresh_run(tmp_path):
    archive = tmp_path / "in"
    rule = "{method: components, threshold: 0.473}"  # inside the random test net's probabilities
    volume, job, _ = segmented_volume(tmp_path, (2, 64, 96), (1, 32, 32), kind="instances", instances=rule)
    later()
    volume[0, 32:64, 32:64] = pixels(32, 32)  # plane 0: the ids of plane 1 follow its objects

    report = submit(job)

    assert report.status == "complete"
    assert report.plan["changes"]["vol"] == {"unchanged": 6, "changed": 6, "new": 0, "reason": ""}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    submit(JobSpec.load(make_job(fresh, archive, kind="instances", instances=rule)))
    for group in ("labels", "probabilities"):
        mine, theirs = tmp_path / "out.zarr" / group / "vol", fresh / "out.zarr" / group / "vol"
        assert chunk_bytes(mine.parent.parent, "vol", group) == chunk_bytes(theirs.parent.parent, "vol", group)
    tables = [records(p / "out.zarr") / "objects" / "vol.csv" for p in (tmp_path, fresh)]
    assert tables[0].read_text() == tables[1].read_text()
