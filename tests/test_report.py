"""`status`: what the manifest says is done, failed and in progress."""

import numpy as np

from pipeline.manifest import INSTANCE_PASS, NET_PASS, Manifest
from pipeline.report import job_status
from pipeline.spec import JobSpec


def job_on(output: str) -> JobSpec:
    return JobSpec.model_validate(
        {"name": "j", "input": {"path": "in/"}, "output": {"path": output}, "model": {"config": "unet-small"}}
    )


def a_job_manifest(tmp_path) -> tuple[str, Manifest]:
    out = str(tmp_path / "out.zarr")
    manifest = Manifest(out)
    manifest.set_job({"job_fingerprint": "f" * 64})
    return out, manifest


def commit(manifest: Manifest, key: str, states: list[int], pass_name: str = NET_PASS) -> None:
    manifest.commit_states(key, pass_name, "fp", np.array(states, np.uint8), [0])


def test_status_counts_the_units_of_an_image_a_killed_run_left_unfinished(tmp_path):
    out, manifest = a_job_manifest(tmp_path)
    manifest.set_image_record("a.tif", {"key": "a.tif", "state": "complete", "units": 4})
    # b.tif: the run was killed after three of its units; it has no image record yet
    commit(manifest, "b.tif", [1, 1, 3, 0])  # done, done, failed, pending
    lines = job_status(job_on(out)).splitlines()
    assert "  images: 1 complete, 1 in progress" in lines
    assert "  units: 6 done, 1 failed (pending: run `segment-archive plan`)" in lines


def test_status_counts_instance_pass_records_apart_from_the_model_units(tmp_path):
    out, manifest = a_job_manifest(tmp_path)
    manifest.set_image_record("a.tif", {"key": "a.tif", "state": "partial", "failed": 1})
    commit(manifest, "a.tif", [1, 3])
    commit(manifest, "a.tif", [1, 0], INSTANCE_PASS)
    lines = job_status(job_on(out)).splitlines()
    assert "  images: 1 partial" in lines
    assert "  units: 1 done, 1 failed (pending: run `segment-archive plan`)" in lines
    assert "  instance pass: 1 unit(s) done, 0 failed" in lines


def test_status_of_an_output_never_written(tmp_path):
    assert job_status(job_on(str(tmp_path / "none.zarr"))) == f"j: never run (no manifest at {tmp_path}/none.zarr)"


def test_status_reads_no_unit_states_of_complete_images(tmp_path, monkeypatch):
    # One file per image and run: on an object store, each is a request.
    out, manifest = a_job_manifest(tmp_path)
    commit(manifest, "a.tif", [1, 1, 1, 1])
    manifest.set_image_record("a.tif", {"key": "a.tif", "state": "complete", "units": 4})
    commit(manifest, "b.tif", [1, 0])
    read = []
    read_folder = Manifest.folder_unit_states
    monkeypatch.setattr(
        Manifest, "folder_unit_states", lambda self, name, *a: read.append(name) or read_folder(self, name, *a)
    )
    assert "  units: 5 done, 0 failed (pending: run `segment-archive plan`)" in job_status(job_on(out)).splitlines()
    assert read == ["b.tif"]


def test_status_during_a_live_run_names_the_lock_holder_and_what_it_has_committed(tmp_path):
    out, manifest = a_job_manifest(tmp_path)
    with manifest.lock():
        commit(manifest, "b.tif", [1, 1, 0, 0])
        lines = job_status(job_on(out)).splitlines()
    assert f"  running now: run {manifest.run_id}" in "\n".join(lines)
    assert "  units: 2 done, 0 failed (pending: run `segment-archive plan`)" in lines
    assert "running now" not in job_status(job_on(out))  # released


def test_change_lines_name_the_images_whose_input_changed_not_those_new_to_the_output():
    from pipeline.report import change_lines

    plan = {
        "changes": {
            "new": {"unchanged": 0, "changed": 0, "new": 9, "reason": "new image"},
            "other-job": {"unchanged": 0, "changed": 0, "new": 9, "reason": "no output of this job yet"},
            "same": {"unchanged": 9, "changed": 0, "new": 0, "reason": ""},
            "chunk": {"unchanged": 7, "changed": 2, "new": 0, "reason": ""},
            "grown": {"unchanged": 9, "changed": 0, "new": 3, "reason": "grown"},
            "tiff": {"unchanged": 0, "changed": 9, "new": 0, "reason": "a TIFF file is one piece"},
        }
    }
    assert change_lines(plan) == [
        "input changed: chunk: 7 unchanged, 2 changed, 0 new",
        "input changed: grown: 9 unchanged, 0 changed, 3 new (grown)",
        "input changed: tiff: 0 unchanged, 9 changed, 0 new (a TIFF file is one piece)",
    ]
