"""output.format ngff-0.5: kill -9 of the driver, a bad image, and the store still ends byte-identical."""

import pytest

from tests.jobs import make_archive, make_job, store_bytes
from tests.reliability.conftest import differing_bytes, run_submit
from tests.reliability.test_driver_kills import kill_repeatedly

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # minutes: scripts/reliability.sh runs it
SIZES = ((160, 160), (96, 130))
SHARDED = {"chunks": (16, 16), "unit": (32, 32), "format": "ngff-0.5"}


def test_kills_of_a_sharded_run_resume_it_bit_identically(tmp_path, figures):
    archive = make_archive(tmp_path / "in", sizes=SIZES)
    (archive / "broken.tif").write_bytes(b"II*\x00 not a tiff")  # quarantined by name, costs nothing else
    reference = tmp_path / "ref"
    reference.mkdir()
    assert run_submit(make_job(reference, archive, **SHARDED))[0] == 3  # partial: the broken image
    job = make_job(tmp_path, archive, **SHARDED)
    killed = kill_repeatedly(job, 3, seed=3, finished=(3,))  # 3: the broken image
    code, output = run_submit(job)
    assert code == 3 and "broken" in output, output
    differing = differing_bytes(store_bytes(tmp_path / "out.zarr"), store_bytes(reference / "out.zarr"))
    figures["driver_kills"] += killed
    figures["bytes_differing"] += differing
    assert killed >= 2 and differing == 0
