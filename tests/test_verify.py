"""`status --verify` and `submit --verify`: output lost after a complete run is found and redone, exactly."""

import shutil

import numpy as np
import pytest
import tifffile
import zarr

from pipeline.driver import submit
from pipeline.plan import UnitGrid
from pipeline.spec import JobSpec, SkipEmpty
from pipeline.verify import chunk_key, verify_output
from tests.jobs import make_archive, make_job, store_bytes, unit_chunk

pytestmark = pytest.mark.usefixtures("local_ray")

SHAPE = (70, 90)  # img0 of make_archive: 2 planes, 3 x 3 units of 32 px each


def completed_job(tmp_path, **sections):
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in"), **sections))
    assert submit(job).status == "complete"
    return job


def test_a_unit_is_one_level0_chunk_named_as_zarr_names_it(tmp_path):
    array = zarr.create_array(
        tmp_path / "a.zarr",
        shape=(2, 3, 70, 90),
        chunks=(2, 1, 32, 32),
        dtype="f4",
        zarr_format=2,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    grid = UnitGrid("k", 3, (70, 90), (32, 32))
    assert chunk_key(array, "czyx", grid, 0) == "0/0/0/0"
    assert chunk_key(array, "czyx", grid, 9 + 3 + 2) == "0/1/1/2"  # plane 1, row 1, col 2


def test_every_chunk_is_written_even_all_background(tmp_path):
    archive = tmp_path / "in"
    archive.mkdir()
    tifffile.imwrite(archive / "resin.tif", np.full((2, 45, 33), 200, np.uint8), photometric="minisblack")
    job = JobSpec.load(make_job(tmp_path, archive))
    job = job.model_copy(
        update={"inference": job.inference.model_copy(update={"skip_empty": SkipEmpty(std_below=0.01, stride=2)})}
    )
    assert submit(job).units_skipped == 8  # 2 planes of 2 x 2 flat units: all background, all zero
    level0 = tmp_path / "out.zarr/labels/resin/0"
    assert len([p for p in level0.rglob("*") if p.is_file() and p.name[0] != "."]) == 8
    assert all(c.intact for c in verify_output(job.output.path, job.output.kind))


def test_a_lost_label_group_redoes_its_image_and_only_it(tmp_path):
    job = completed_job(tmp_path)
    out = tmp_path / "out.zarr"
    before = store_bytes(out)
    shutil.rmtree(out / "labels/img1")
    report = submit(job, verify=True)
    assert any("labels/img1 is gone" in line for line in report.verify_lines)
    assert report.units_done == 8 and report.images_completed == ["img1"]
    assert store_bytes(out) == before


def test_instances_lost_in_either_pass_are_redone_to_the_same_labels(tmp_path):
    job = completed_job(tmp_path, kind="instances", instances="{method: components}")
    out = tmp_path / "out.zarr"
    before = store_bytes(out)
    unit_chunk(out, "labels", "img0", 4, SHAPE).unlink()
    unit_chunk(out, "probabilities", "img0", 5, SHAPE).unlink()
    checks = {c.name: c for c in verify_output(job.output.path, job.output.kind)}
    assert {p: list(u) for p, u in checks["img0"].lost_units.items()} == {"net": [5], "instances": [4]}
    assert submit(job, verify=True).status == "complete"
    assert store_bytes(out) == before
    assert np.all([c.intact for c in verify_output(job.output.path, job.output.kind)])
