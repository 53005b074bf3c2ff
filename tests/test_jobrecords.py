"""The store holds only Zarr nodes; the job's records lie beside it, and an earlier layout is moved there."""

import shutil
import warnings

import pytest
import zarr
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.driver import submit
from pipeline.errors import ConfigError
from pipeline.jobrecords import EARLIER_LAYOUT, check_records_place
from pipeline.spec import JobSpec
from tests.jobs import make_archive, make_job, records, store_bytes

pytestmark = pytest.mark.usefixtures("local_ray")


def test_the_store_opens_in_zarr_without_a_warning_and_the_records_lie_beside_it(tmp_path):
    job = make_job(tmp_path, make_archive(tmp_path / "in"), kind="instances")
    result = CliRunner().invoke(main, ["submit", str(job), "--quiet"])  # the CLI writes the reports too
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.zarr"
    assert f"report: {out}.job/report.html" in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns of every object in the store that is not a node
        members = dict(zarr.open_group(out, mode="r").members(max_depth=None))
    assert {"labels", "probabilities", "labels/img0/0", "probabilities/img1/1"} <= set(members)
    beside = sorted(p.name for p in records(out).iterdir())
    assert beside == ["manifest", "objects", "report.html", "run-report.json"]


def test_an_output_of_the_earlier_layout_keeps_its_work_and_its_records_move_out(tmp_path):
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in")))
    submit(job)
    out = tmp_path / "out.zarr"
    masks = store_bytes(out)
    for old, new in EARLIER_LAYOUT.items():  # as an earlier version wrote it: records inside the store
        if (records(out) / new).exists():
            shutil.move(records(out) / new, out / old)
    report = submit(job)
    assert report.units_done == 0 and report.plan["images_up_to_date"] == 2  # the manifest was found
    assert not (out / ".manifest").exists() and (records(out) / "manifest" / "job.json").exists()
    assert store_bytes(out) == masks


def test_a_store_at_a_buckets_root_is_refused_its_records_could_not_lie_beside_it():
    with pytest.raises(ConfigError, match="bucket's root; name a folder inside it"):
        check_records_place("s3://bucket")
    check_records_place("s3://bucket/masks.zarr")
