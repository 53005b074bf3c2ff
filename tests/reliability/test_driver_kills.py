"""kill -9 of the driver at random instants: nothing lost, nothing computed twice, bytes identical."""

import random
import time

import pytest

from pipeline.manifest import INSTANCE_PASS, NET_PASS, Manifest
from tests.jobs import committed_units, make_archive, make_job, rewritten_after, store_bytes, unit_chunk
from tests.reliability.conftest import differing_bytes, run_submit, submit_process
from tests.reliability.faultkit import faults_env

pytestmark = pytest.mark.reliability
SIZES = ((256, 256), (256, 192), (192, 256), (96, 300))  # 64 + 48 + 48 + 30 = 190 units of 32x32


def manifest_is_readable(out) -> None:
    manifest = Manifest(str(out))
    manifest.job()
    for record in manifest.image_records():
        manifest.unit_states(record["key"])
    for key in ("img0", "img1", "img2", "img3"):
        for pass_name in (NET_PASS, INSTANCE_PASS):
            manifest.unit_states(key, pass_name)
            manifest.failures(key, pass_name)


def kill_at(job, seconds: float | None = None, after_units: int = 0) -> int:
    proc = submit_process(job, faults_env(kill_after_units=after_units))
    if seconds is not None:
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    proc.communicate(timeout=600)
    return proc.returncode


def kill_repeatedly(job, kills: int, seed: int, finished: tuple[int, ...] = (0,)) -> int:
    """`kills` runs of the job, each killed after a few committed units; how many the kill caught
    (a run may finish first, with an exit code in `finished`)."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        code = kill_at(job, after_units=rng.randint(2, 8))
        assert code == -9 or code in finished, f"a run ended with {code}"
        killed += code == -9
    return killed


def kill_and_resume(tmp_path, kills: int, seed: int, figures) -> None:
    archive = make_archive(tmp_path / "in", sizes=SIZES)
    reference = tmp_path / "ref"
    reference.mkdir()
    code, output = run_submit(make_job(reference, archive))
    assert code == 0, output
    job = make_job(tmp_path, archive)
    rng = random.Random(seed)
    killed = 0
    snapshots = []  # (time, units committed by then): none of their chunks may be written after it
    for i in range(kills):
        # One in three at a random instant of the first seconds (Ray start-up, planning,
        # the lock, the first commits); the others right after a random number of
        # committed units, so that every kill lands while work is left.
        if i % 3 == 0:
            code = kill_at(job, seconds=rng.uniform(0.5, 8.0))
        else:
            code = kill_at(job, after_units=rng.randint(1, 6))
        killed += code == -9
        assert code in (-9, 0), f"run {i} ended with {code}"
        manifest_is_readable(tmp_path / "out.zarr")
        snapshots.append((time.time(), committed_units(tmp_path / "out.zarr")))
    code, output = run_submit(job)
    assert code == 0, output
    out, shapes = tmp_path / "out.zarr", {f"img{i}": size for i, size in enumerate(SIZES)}
    recomputed = rewritten_after(snapshots, lambda key, index: unit_chunk(out, "labels", key, index, shapes[key]))
    planned = 2 * sum(-(-h // 32) * -(-w // 32) for h, w in SIZES)  # two planes per image
    lost = planned - len(committed_units(out))
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), store_bytes(reference / "out.zarr"))
    figures["driver_kills"] += killed
    figures["units_recomputed_after_commit"] += recomputed
    figures["units_lost"] += lost
    figures["bytes_differing"] += differing
    assert killed >= kills - kills // 3, f"only {killed} of {kills} runs were killed before they finished"
    assert (recomputed, lost, differing) == (0, 0, 0)


def test_three_kills_at_random_instants(tmp_path, figures):
    kill_and_resume(tmp_path, kills=3, seed=7, figures=figures)


@pytest.mark.slow
def test_twenty_kills_at_random_instants(tmp_path, figures):
    kill_and_resume(tmp_path, kills=20, seed=2026, figures=figures)


@pytest.mark.slow  # 40 s; test_instancepass resumes lost instance work in the quick run
def test_kills_during_the_instance_pass_resume_it_exactly(tmp_path, figures):
    """kind instances: kill -9 while blocks are being relabelled, twice; the end is the reference, byte for byte."""
    sizes = ((96, 128), (64, 64))
    semantic_units = 2 * (3 * 4 + 2 * 2)  # two planes per image, 32 x 32 chunks
    # halo 128, the planes' width: no object is kept whole for the halo, so no warning and exit 0
    instances = "{method: watershed, threshold: 0.473, seed_threshold: 0.4745, halo: 128}"
    archive = make_archive(tmp_path / "in", sizes=sizes)
    reference = tmp_path / "ref"
    reference.mkdir()
    code, output = run_submit(make_job(reference, archive, kind="instances", instances=instances))
    assert code == 0, output
    job = make_job(tmp_path, archive, kind="instances", instances=instances)
    out, shapes = tmp_path / "out.zarr", {f"img{i}": size for i, size in enumerate(sizes)}
    net, relabel = [], []  # (time, units committed by then) of each pass
    for after_units in (semantic_units + 3, 6):  # the first run dies after the net's pass, the second at once
        assert kill_at(job, after_units=after_units) == -9
        manifest_is_readable(out)
        net.append((time.time(), committed_units(out)))
        relabel.append((time.time(), committed_units(out, INSTANCE_PASS)))
    assert relabel[0][1], "the first run died before relabelling anything"
    code, output = run_submit(job)
    assert code == 0, output
    assert len(committed_units(out, INSTANCE_PASS)) == semantic_units  # every block relabelled ...
    recomputed = rewritten_after(  # ... and nothing twice
        net, lambda key, index: unit_chunk(out, "probabilities", key, index, shapes[key])
    ) + rewritten_after(relabel, lambda key, index: unit_chunk(out, "labels", key, index, shapes[key]))
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), store_bytes(reference / "out.zarr"))
    figures["driver_kills"] += 2
    figures["units_recomputed_after_commit"] += recomputed
    figures["bytes_differing"] += differing
    assert (recomputed, differing) == (0, 0)
