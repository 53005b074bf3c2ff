"""Reliability round 2: inputs that would share a name, the job lock, the output's place, lost output.

Each test failed on the code before this round: three inputs silently lost to a
fourth's key, a live run's lock taken on its heartbeat's age, an empty lock file
corrupt forever, a lock overwritten by a run that had lost it, and a user's
folder (or the input itself) overwritten by a submit, a lost chunk reported complete forever.
"""

import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from pipeline import joblock
from pipeline.cli import main
from pipeline.driver import submit as run_job
from pipeline.errors import ConfigError, ExitCode, InputError, JobLockedError
from pipeline.io import open_archive
from pipeline.manifest import Manifest
from pipeline.outputplace import check_output_place
from pipeline.spec import JobSpec
from tests.jobs import make_archive, make_job, manifest_dir, records, store_bytes, unit_chunk

pytestmark = pytest.mark.reliability


def submit(job) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["submit", str(job), "--quiet"])
    return result.exit_code, result.output


# -- 1. distinct inputs never share a name ------------------------------------------------


def test_inputs_that_would_share_a_key_are_refused_by_name_before_anything_runs(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    pixels = np.zeros((40, 40), np.uint8)
    for name in ("scan.tif", "scan.ome.tif", "A.TIF", "a.tif"):
        tifffile.imwrite(archive / name, pixels)
    zarr.create_array(archive / "scan.zarr", data=pixels)
    code, output = submit(make_job(tmp_path, archive))
    assert code == ExitCode.INVALID, output
    for name in ("scan.tif", "scan.ome.tif", "scan.zarr", "A.TIF", "a.tif"):
        assert name in output
    assert not (tmp_path / "out.zarr").exists()


# -- 2, 3. the lock is never taken from a live run -----------------------------------------


def lock_file(output):
    path = manifest_dir(output) / "lock.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_live_process_on_this_host_keeps_its_lock_however_old_its_heartbeat(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"host": socket.gethostname(), "pid": sleeper.pid, "run": "live", "heartbeat": time.time() - 7200}
        lock_file(tmp_path).write_text(json.dumps(record))
        with pytest.raises(JobLockedError, match="locked by run live"), Manifest(str(tmp_path)).lock():
            pass
        assert json.loads(lock_file(tmp_path).read_text())["run"] == "live"
    finally:
        sleeper.kill()


@pytest.mark.parametrize("content", [b"", b'{"host": ', b"\xff\xfe", b"[1, 2]"])
def test_an_empty_or_unreadable_lock_holds_nothing(tmp_path, content):
    lock_file(tmp_path).write_bytes(content)
    manifest = Manifest(str(tmp_path))
    with manifest.lock():
        assert json.loads(lock_file(tmp_path).read_text())["run"] == manifest.run_id
    assert not lock_file(tmp_path).exists()


def test_the_lock_heartbeats_for_the_whole_run_not_only_at_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(joblock, "HEARTBEAT_S", 0.05)
    with Manifest(str(tmp_path)).lock():
        first = json.loads(lock_file(tmp_path).read_text())["heartbeat"]
        time.sleep(0.3)  # a long plan: no unit commits
        assert json.loads(lock_file(tmp_path).read_text())["heartbeat"] > first


def test_a_run_that_lost_its_lock_stops_committing_and_leaves_the_winners_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(joblock, "HEARTBEAT_S", 0.05)
    manifest = Manifest(str(tmp_path))
    winner = {"host": "elsewhere", "pid": 1, "run": "winner", "heartbeat": time.time()}
    with manifest.lock():
        lock_file(tmp_path).write_text(json.dumps(winner))  # taken over while we were stalled
        time.sleep(0.3)
        with pytest.raises(JobLockedError, match="lost the job lock to run winner"):
            manifest.check_lock()
        assert json.loads(lock_file(tmp_path).read_text())["run"] == "winner"  # our heartbeat did not overwrite it
    assert json.loads(lock_file(tmp_path).read_text())["run"] == "winner"  # nor our exit remove it


def test_of_two_submits_taking_over_one_dead_lock_only_one_gets_it(tmp_path):
    dead = {"host": "elsewhere", "pid": 1, "run": "dead", "heartbeat": time.time() - 7200}
    lock_file(tmp_path).write_text(json.dumps(dead))
    first, second = Manifest(str(tmp_path)), Manifest(str(tmp_path))
    with first.lock():
        # The second judged the same dead lock stale before the first replaced it.
        taker = joblock.JobLock(second.fs, second._path("lock.json"), second.run_id, local=True)
        with pytest.raises(JobLockedError, match="took the job lock first"):
            taker._take_over(dead)
        assert json.loads(lock_file(tmp_path).read_text())["run"] == first.run_id


# -- 4. the output's place ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("archive", "is the input itself"),
        ("archive/masks.zarr", "lies inside input.path"),
        (".", "lies inside output.path"),
    ],
)
def test_an_output_on_in_or_around_the_input_is_refused(tmp_path, output, message):
    archive = make_archive(tmp_path / "archive")
    with pytest.raises(ConfigError, match=message):
        check_output_place(str(archive), str((tmp_path / output).resolve()))


def test_a_users_folder_is_never_overwritten(tmp_path):
    archive = make_archive(tmp_path / "archive")
    job = make_job(tmp_path, archive)
    (tmp_path / "out.zarr" / "labels" / "t").mkdir(parents=True)
    (tmp_path / "out.zarr" / "labels" / "t" / "notes.txt").write_text("mine")
    (tmp_path / "out.zarr" / "report.html").write_text("mine too")
    code, output = submit(job)
    assert code == ExitCode.INVALID, output
    assert "not a segment-archive store" in output
    assert (tmp_path / "out.zarr" / "labels" / "t" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "out.zarr" / "report.html").read_text() == "mine too"


def test_a_tilde_in_a_path_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_archive(tmp_path / "archive")
    job = make_job(tmp_path, tmp_path / "archive")
    job.write_text(job.read_text().replace(f"path: {tmp_path}/archive", "path: ~/archive"))
    assert JobSpec.load(job).input.path == str(tmp_path / "archive")


# -- every error a message ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("batch_size: 2}", "batch_size: 2, threshold: .nan}", "inference.threshold"),
        ("batch_size: 2}", "batch_size: 2, threshold: .inf}", "inference.threshold"),
        ("seed: 3}", "seed: 99999999999999999999999}", "model.seed"),
        ("seed: 3}", "seed: -1}", "model.seed"),
    ],
)
def test_a_non_finite_or_out_of_range_number_is_a_config_error_naming_the_field(tmp_path, old, new, message):
    job = make_job(tmp_path, make_archive(tmp_path / "archive"))
    job.write_text(job.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=message):
        JobSpec.load(job)


def test_a_nul_byte_in_a_path_is_a_config_error_naming_the_field(tmp_path):
    job = make_job(tmp_path, make_archive(tmp_path / "archive"))
    job.write_text(job.read_text().replace("input: {path: ", 'input: {path: "\\0'))
    job.write_text(job.read_text().replace("archive}", 'archive"}', 1))
    with pytest.raises(ConfigError, match="input.path: a path cannot hold a NUL"):
        JobSpec.load(job)


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: nested too deeply"):
        JobSpec.load(path)


@pytest.mark.usefixtures("local_ray")
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("actors: 1,", "actors: 10000,", "resources.actors 10000 x cpus_per_actor 1: the Ray cluster has"),
        ("cpus_per_actor: 1,", "cpus_per_actor: 1, gpus_per_actor: 1,", "resources.gpus_per_actor 1: the Ray"),
    ],
)
def test_resources_the_cluster_can_never_give_are_refused_naming_the_field(tmp_path, old, new, message):
    job = make_job(tmp_path, make_archive(tmp_path / "archive"))
    job.write_text(job.read_text().replace(old, new))
    code, output = submit(job)
    assert code == ExitCode.INVALID, output
    assert message in output


def test_a_tiff_of_several_series_is_refused_by_name_not_read_as_its_first(tmp_path):
    tifffile.imwrite(tmp_path / "multi.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(tmp_path / "multi.tif", np.zeros((16, 48), np.uint8), append=True)
    tifffile.imwrite(tmp_path / "good.tif", np.zeros((32, 32), np.uint8))
    archive = open_archive(str(tmp_path))
    with pytest.raises(InputError, match=r"multi.tif: TIFF holds 2 series \(YX \(32, 32\), YX \(16, 48\)\)"):
        archive.open("multi")
    assert archive.open("good").plane_shape == (32, 32)


@pytest.mark.usefixtures("local_ray")
def test_a_file_name_near_the_file_systems_limit_is_segmented_like_any_other(tmp_path):
    archive = make_archive(tmp_path / "archive")
    (archive / "img0.tif").rename(archive / ("n" * 236 + ".tif"))  # 240 characters
    code, output = submit(make_job(tmp_path, archive))
    assert code == ExitCode.OK, output
    report = json.loads((records(tmp_path / "out.zarr") / "run-report.json").read_text())
    assert len(report["images_completed"]) == 2


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("job.json", b"\xff\xfe\x00binary"),
        ("job.json", b"[1, 2, 3]"),
        ("job.json", b'{"name": "test-job"}'),
        ("failures/net/img0/run-0.jsonl", b'{"unit": "0/0/0", "index": 0, "colour": "red"}\n'),
        ("failures/net/img0/run-0.jsonl", b"\xff\xfe\n"),
    ],
)
def test_a_damaged_manifest_record_is_a_message_naming_the_file(tmp_path, name, content):
    job = make_job(tmp_path, make_archive(tmp_path / "archive"))
    manifest = manifest_dir(tmp_path / "out.zarr")
    (manifest / "job.json").parent.mkdir(parents=True)
    spec = JobSpec.load(job).model_dump(mode="json")
    (manifest / "job.json").write_text(json.dumps({"name": "test-job", "spec": spec}))
    (manifest / "images").mkdir()
    (manifest / "images" / "img0.json").write_text('{"key": "img0", "state": "partial", "failed": 1}')
    (manifest / "states" / "net" / "img0").mkdir(parents=True)
    (manifest / "states" / "net" / "img0" / "meta.json").write_text('{"input": "x", "units": 1}')
    (manifest / "states" / "net" / "img0" / "0.u8").write_bytes(bytes([3]))  # one failed unit: its reason is read
    (manifest / name).parent.mkdir(parents=True, exist_ok=True)
    (manifest / name).write_bytes(content)
    result = CliRunner().invoke(main, ["report", str(tmp_path / "out.zarr")])
    assert result.exit_code == ExitCode.INVALID, result.output
    assert name.rsplit("/", 1)[-1] in result.output
    assert "corrupt" in result.output or "not valid" in result.output


def test_a_linked_label_group_in_the_output_is_refused_naming_it(tmp_path):
    archive = make_archive(tmp_path / "archive")
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (manifest_dir(tmp_path / "out.zarr")).mkdir(parents=True)
    (tmp_path / "out.zarr" / "labels").mkdir(parents=True)
    (tmp_path / "out.zarr" / "labels" / "img0").symlink_to(elsewhere)
    code, output = submit(make_job(tmp_path, archive))
    assert code == ExitCode.INVALID, output
    assert "labels/img0 is a symbolic link" in output
    assert (elsewhere / "keep.txt").read_text() == "mine"


# -- SIGINT and SIGTERM (issue #30) ---------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_the_run_cleanly_and_a_submit_resumes(tmp_path, signum):
    from tests.reliability.conftest import run_submit, submit_process

    archive = make_archive(tmp_path / "in", sizes=((256, 256), (256, 192), (192, 256)))
    job = make_job(tmp_path, archive)
    states = manifest_dir(tmp_path / "out.zarr") / "states"
    proc = submit_process(job)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not any(states.glob("**/*.u8")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until units are being committed
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, output
    assert "the same submit again" in output and "continues where this run stopped" in output
    assert "Traceback" not in output
    assert not (manifest_dir(tmp_path / "out.zarr") / "lock.json").exists()
    assert Manifest(str(tmp_path / "out.zarr")).last_run_report()["status"] == "interrupted"
    code, output = run_submit(job)
    assert code == ExitCode.OK, output


@pytest.mark.usefixtures("local_ray")
def test_a_job_whose_every_image_is_refused_is_invalid_and_a_corrected_job_then_runs(tmp_path):
    archive = make_archive(tmp_path / "archive")  # 2-plane, 1-channel images; the model takes 1 channel
    job = make_job(tmp_path, archive)
    text = job.read_text()
    job.write_text(text.replace(f"input: {{path: {archive}}}", f"input: {{path: {archive}, axes: cyx}}"))
    for command in (["plan", str(job)], ["submit", str(job), "--quiet"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == ExitCode.INVALID, result.output
        assert "every image was refused" in result.output and "channel" in result.output
    job.write_text(text)  # axes fixed: no --overwrite needed
    code, output = submit(job)
    assert code == ExitCode.OK, output


@pytest.mark.slow  # the Ray Client's connection timeout: 30 s
def test_an_address_with_no_ray_cluster_is_a_config_error_naming_the_field(tmp_path):
    # Its own process: a Ray this one runs would be used whatever the address, and a failed Ray Client
    # connection leaves state behind that breaks the next ray.init of the process.
    job = make_job(tmp_path, make_archive(tmp_path / "archive"))
    cmd = [sys.executable, "-m", "pipeline.cli", "submit", str(job), "--quiet", "--address", "ray://127.0.0.1:9"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == ExitCode.INVALID, result.stdout + result.stderr
    assert "resources.address ray://127.0.0.1:9: cannot connect" in result.stdout + result.stderr


def test_the_lock_works_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(joblock.os, "link", no_links)
    first, second = Manifest(str(tmp_path)), Manifest(str(tmp_path))
    with first.lock():
        assert json.loads(lock_file(tmp_path).read_text())["run"] == first.run_id
        with pytest.raises(JobLockedError), second.lock():
            pass


# -- 9. output lost after it was written ----------------------------------------------------


@pytest.mark.usefixtures("local_ray")
def test_output_lost_after_a_complete_run_is_named_by_status_and_redone_by_submit_verify(tmp_path):
    """#31.9: a store that lost a chunk and a pyramid chunk was reported complete forever."""
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in")))
    assert run_job(job).status == "complete"
    out = tmp_path / "out.zarr"
    before = store_bytes(out)
    unit_chunk(out, "labels", "img0", 9 + 4, (70, 90)).unlink()  # plane 1, the middle unit
    pyramid_chunk = next(p for p in (out / "labels/img1/1").rglob("*") if p.is_file() and p.name[0] != ".")
    pyramid_chunk.unlink()
    runner = CliRunner()

    status = runner.invoke(main, ["status", str(tmp_path / "job.yaml"), "--verify"])
    assert status.exit_code == 0, status.output
    assert "img0: 1 finished unit(s) without a chunk (units 13)" in status.output
    assert "img1: pyramid level(s) labels 1 incomplete" in status.output
    assert "2 of 2 image(s) lost output" in status.output

    assert run_job(job).units_done == 0  # without --verify the manifest is trusted: nothing to do
    assert not unit_chunk(out, "labels", "img0", 13, (70, 90)).exists()

    result = runner.invoke(main, ["submit", str(tmp_path / "job.yaml"), "--verify", "--quiet"])
    assert result.exit_code == ExitCode.OK, result.output
    assert "done: 1 unit(s)" in result.output  # exactly the lost unit, and img1's pyramid rebuilt
    assert store_bytes(out) == before
    again = runner.invoke(main, ["status", str(tmp_path / "job.yaml"), "--verify"])
    assert "every finished unit of 2 image(s) has its chunk" in again.output
