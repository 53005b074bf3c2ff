"""The manifest: immutable unit batches, latest record wins, and the job lock."""

import json
import os
import time

import pytest

from pipeline.errors import JobLockedError
from pipeline.manifest import Manifest, UnitRecord


def test_committed_units_are_read_back_per_image_latest_wins(tmp_path):
    m = Manifest(str(tmp_path / "out.zarr"))
    m.commit_units("a/b", [UnitRecord("0/0/0", "failed", 1, "fp", "boom"), UnitRecord("0/0/1", "done", 1, "fp")])
    m.commit_units("a/b", [UnitRecord("0/0/0", "done", 2, "fp")])
    records = m.unit_records("a/b")
    assert {u: r.state for u, r in records.items()} == {"0/0/0": "done", "0/0/1": "done"}
    assert m.unit_records("other") == {}


def test_a_killed_writer_leaves_only_a_temp_file_that_readers_ignore(tmp_path):
    m = Manifest(str(tmp_path / "out.zarr"))
    m.commit_units("k", [UnitRecord("0/0/0", "done", 1, "fp")])
    folder = tmp_path / "out.zarr" / ".manifest" / "units" / "k"
    (folder / "run-x.jsonl.abc.tmp").write_text('{"unit": "0/0/1", "sta')  # half a record
    assert set(m.unit_records("k")) == {"0/0/0"}


def test_forget_image_drops_its_records(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    m.commit_units("k", [UnitRecord("0/0/0", "done", 1, "fp")])
    m.set_image_record("k", {"key": "k", "state": "complete"})
    m.forget_image("k")
    assert m.unit_records("k") == {} and m.image_record("k") is None


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    first, second = Manifest(str(tmp_path / "o")), Manifest(str(tmp_path / "o"))
    with first.lock(), pytest.raises(JobLockedError, match="job is locked by run"), second.lock():
        pass
    with second.lock():  # released
        pass


def test_a_lock_of_a_dead_process_or_an_old_heartbeat_is_stale(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    lock = tmp_path / "o" / ".manifest" / "lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(
        json.dumps({"host": os.uname().nodename, "pid": 2**22 + 7, "run": "dead", "heartbeat": time.time()})
    )
    with m.lock():
        assert json.loads(lock.read_text())["run"] == m.run_id
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "run": "old", "heartbeat": time.time() - 3600}))
    with m.lock(stale_after=600):
        pass
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "run": "live", "heartbeat": time.time()}))
    with pytest.raises(JobLockedError), m.lock():
        pass


def test_a_corrupt_manifest_file_is_an_error_naming_it(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    m.set_job({"job_fingerprint": "x"})
    (tmp_path / "o" / ".manifest" / "job.json").write_text("{")
    with pytest.raises(Exception, match=r"job\.json: manifest file is corrupt"):
        m.job()
