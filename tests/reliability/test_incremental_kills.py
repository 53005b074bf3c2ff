"""kill -9 of the driver during an incremental rerun: the resumed rerun ends bit-identical to a fresh run."""

import time

import numpy as np
import pytest
import zarr

from tests.jobs import make_job, store_bytes
from tests.reliability.conftest import differing_bytes, run_submit
from tests.reliability.test_driver_kills import kill_repeatedly

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # minutes: scripts/reliability.sh runs it


def test_kills_during_an_incremental_rerun_resume_it_bit_identically(tmp_path, figures):
    rng = np.random.default_rng(5)
    archive = tmp_path / "in"
    volume = zarr.create_array(archive / "vol.zarr", shape=(2, 192, 192), chunks=(1, 64, 64), dtype="u1")
    volume[:] = rng.integers(0, 255, (2, 192, 192), dtype=np.uint8)
    job = make_job(tmp_path, archive)
    assert run_submit(job)[0] == 0
    time.sleep(0.02)
    volume[0, 64:128, 64:128] = rng.integers(0, 255, (64, 64), dtype=np.uint8)  # a chunk re-acquired
    volume.resize((3, 192, 192))  # and a plane appended overnight
    volume[2] = rng.integers(0, 255, (192, 192), dtype=np.uint8)

    killed = kill_repeatedly(job, 3, seed=11)
    code, output = run_submit(job)
    assert code == 0, output

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert run_submit(make_job(fresh, archive))[0] == 0
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), store_bytes(fresh / "out.zarr"))
    figures["driver_kills"] += killed
    figures["bytes_differing"] += differing
    assert killed >= 2 and differing == 0
