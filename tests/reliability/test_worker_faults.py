"""Workers die and storage fails under a running job: it completes, with the reference's bytes."""

import pytest

from tests.jobs import make_archive, make_job, store_bytes
from tests.reliability.conftest import differing_bytes, run_submit
from tests.reliability.faultkit import faults_env, injected

pytestmark = pytest.mark.reliability
SIZES = ((128, 160), (96, 96))  # 20 + 9 units of 32x32
RETRIES = 6  # resources.retries: a unit may meet every error budget below and still finish


def job_with_retries(folder, archive):
    path = make_job(folder, archive)
    path.write_text(path.read_text().replace("resources: {", f"resources: {{retries: {RETRIES}, "))
    return path


@pytest.fixture
def reference(tmp_path):
    archive = make_archive(tmp_path / "in", sizes=SIZES)
    (tmp_path / "ref").mkdir()
    code, output = run_submit(job_with_retries(tmp_path / "ref", archive))
    assert code == 0, output
    return archive, store_bytes(tmp_path / "ref" / "out.zarr")


def run_with_faults(tmp_path, archive, faults: str, submits: int = 1):
    folder = tmp_path / "faults"
    folder.mkdir()
    env = faults_env(folder, faults)
    job = job_with_retries(tmp_path, archive)
    for _ in range(submits):
        code, output = run_submit(job, env)
        if code == 0:
            break
    return code, output, injected(folder)


def test_a_fault_installed_by_the_kit_fires_in_a_ray_worker_and_the_unit_is_retried(tmp_path, figures):
    archive = make_archive(tmp_path / "in", sizes=((64, 64),))
    folder = tmp_path / "faults"
    folder.mkdir()
    code, output = run_submit(job_with_retries(tmp_path, archive), faults_env(folder, "read_error:1", chance=1))
    assert code == 0, output
    assert injected(folder) == {"read_error": 1}
    figures["faults_injected"] += 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "faults",
    [
        "read_exit:2,predict_exit:1,write_exit:2",  # processes killed mid-unit (OOM killer, lost node)
        "read_error:3,write_error:3",  # IO errors inside a unit: retried by the driver
    ],
    ids=["worker-exits", "io-errors"],
)
def test_job_completes_identically_under_worker_faults(tmp_path, reference, faults, figures):
    archive, expected = reference
    code, output, fired = run_with_faults(tmp_path, archive, faults)
    assert code == 0, output
    budgets = {site: int(n) for site, n in (f.split(":") for f in faults.split(","))}
    assert fired == budgets, f"faults fired {fired}, budgets {budgets}"
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), expected)
    figures["faults_injected"] += sum(fired.values())
    figures["bytes_differing"] += differing
    assert differing == 0


@pytest.mark.slow
def test_flaky_input_filesystem_costs_at_most_a_rerun(tmp_path, reference, figures):
    """Reads through a flaky fsspec filesystem fail: planning-time failures quarantine the image for
    that run only (every image: exit 2, nothing could run), unit-time failures are retried.

    The first 4 opens fail, whichever process makes them (a chance of 0.3 a call left runs where none
    fired, since readers cache opened files): both images' planning in the first submit, one in the
    second, and then a worker's read."""
    archive, expected = reference
    job = job_with_retries(tmp_path, archive)
    job.write_text(job.read_text().replace(f"path: {archive}", f"path: flaky://{archive}"))
    folder = tmp_path / "faults"
    folder.mkdir()
    env = faults_env(folder, "flaky_read:4", chance=1)
    codes = []
    # A failed submit has used at least one of the 4 faults: at most 5 submits finish the job.
    for _ in range(5):
        code, output = run_submit(job, env)
        codes.append(code)
        if code == 0:
            break
    assert codes[-1] == 0 and set(codes) <= {0, 2, 3}, (codes, output)
    fired = injected(folder).get("flaky_read", 0)
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), expected)
    figures["faults_injected"] += fired
    figures["bytes_differing"] += differing
    assert fired == 4 and differing == 0, codes


@pytest.mark.slow
def test_disk_full_fails_units_clearly_and_a_rerun_after_freeing_space_completes(tmp_path, reference, figures):
    from pipeline.manifest import Manifest

    archive, expected = reference
    folder = tmp_path / "faults"
    folder.mkdir()
    (folder / "disk-full").touch()
    env = faults_env(folder)
    job = job_with_retries(tmp_path, archive)
    code, output = run_submit(job, env)
    assert code == 3, output
    assert "No space left on device" in output and "img0 plane 0 block" in output
    manifest = Manifest(str(tmp_path / "out.zarr"))
    assert {r["state"] for r in manifest.image_records()} == {"partial"}
    assert set(manifest.unit_states("img0").tolist()) == {3}  # every unit failed (UnitState.FAILED)
    assert {r.kind for r in manifest.failures("img0").values()} == {"transient"}
    (folder / "disk-full").unlink()  # space freed
    code, output = run_submit(job, env)
    assert code == 0, output
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), expected)
    figures["faults_injected"] += 1
    figures["bytes_differing"] += differing
    assert differing == 0
