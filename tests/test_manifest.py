"""The manifest: unit states a byte a unit in whole files, failure reasons, and the job lock."""

import json
import os
import time

import numpy as np
import pytest

from pipeline.errors import JobLockedError
from pipeline.manifest import INSTANCE_PASS, NET_PASS, STATE_CHUNK, FailureRecord, Manifest
from pipeline.outcome import UnitState
from tests.jobs import manifest_dir


def test_committed_states_are_read_back_per_image_and_pass(tmp_path):
    m = Manifest(str(tmp_path / "out.zarr"))
    states = np.zeros(3, np.uint8)
    states[:2] = [UnitState.FAILED, UnitState.DONE]
    m.commit_states("a/b", NET_PASS, "fp", states, [0])
    m.commit_failures("a/b", NET_PASS, [FailureRecord("0/0/0", 0, "input", 1, "boom")])
    assert list(Manifest(m.url).unit_states("a/b")) == [UnitState.FAILED, UnitState.DONE, UnitState.PENDING]
    assert Manifest(m.url).failures("a/b")["0/0/0"].error == "boom"
    assert m.unit_states("a/b", INSTANCE_PASS) is None and m.unit_states("other") is None
    assert m.unit_states("a/b", input_fp="another input") is None  # states of another input are not this one's


def test_a_commit_rewrites_only_the_state_files_its_units_fall_in(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    states = np.zeros(3 * STATE_CHUNK, np.uint8)
    m.commit_states("k", NET_PASS, "fp", states, [0, 1, 2])
    folder = manifest_dir(tmp_path / "o") / "states" / NET_PASS / "k"
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.u8")}
    states[STATE_CHUNK + 5] = UnitState.DONE
    m.commit_states("k", NET_PASS, "fp", states, [1])
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.u8")}
    assert sorted(after) == ["0.u8", "1.u8", "2.u8"]  # files grow with units / STATE_CHUNK, not with commits
    assert [n for n in after if after[n] != before[n]] == ["1.u8"]
    assert np.flatnonzero(m.unit_states("k")).tolist() == [STATE_CHUNK + 5]


def test_a_killed_writer_leaves_only_a_temp_file_that_readers_ignore(tmp_path):
    m = Manifest(str(tmp_path / "out.zarr"))
    m.commit_states("k", NET_PASS, "fp", np.ones(2, np.uint8), [0])
    folder = manifest_dir(tmp_path / "out.zarr") / "states" / NET_PASS / "k"
    (folder / "0.u8.abc.tmp").write_bytes(b"\x03")  # a half-written replacement
    assert m.unit_states("k").tolist() == [1, 1]


def test_a_corrupt_failure_record_is_an_error_naming_its_file_and_line(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    m.commit_failures("k", NET_PASS, [FailureRecord("0/0/0", 0, "input", 1, "boom")])
    path = next((manifest_dir(tmp_path / "o") / "failures" / NET_PASS / "k").glob("*.jsonl"))
    path.write_text(path.read_text() + '{"unit": "0/0/1", "sta\n')
    with pytest.raises(Exception, match=r"\.jsonl:2: manifest record is corrupt"):
        m.failures("k")


def test_forget_image_drops_its_records(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    m.commit_states("k", NET_PASS, "fp", np.ones(2, np.uint8), [0])
    m.commit_states("k", INSTANCE_PASS, "fp", np.ones(2, np.uint8), [0])
    m.set_image_record("k", {"key": "k", "state": "complete"})
    m.forget_image("k")
    assert m.unit_states("k") is None and m.unit_states("k", INSTANCE_PASS) is None and m.image_record("k") is None
    m.commit_states("k", NET_PASS, "fp2", np.ones(2, np.uint8), [0])  # the next run describes it again
    assert m.unit_states("k", input_fp="fp2") is not None


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    first, second = Manifest(str(tmp_path / "o")), Manifest(str(tmp_path / "o"))
    with first.lock(), pytest.raises(JobLockedError, match="job is locked by run"), second.lock():
        pass
    with second.lock():  # released
        pass


def test_a_lock_of_a_dead_process_or_an_old_heartbeat_is_stale(tmp_path):
    m = Manifest(str(tmp_path / "o"))
    lock = manifest_dir(tmp_path / "o") / "lock.json"
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
    (manifest_dir(tmp_path / "o") / "job.json").write_text("{")
    with pytest.raises(Exception, match=r"job\.json: manifest file is corrupt"):
        m.job()
