"""The README's snippets do what it says they do."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.driver import submit
from pipeline.spec import JobSpec
from tests.jobs import make_archive, make_job

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(marker: str) -> str:
    """The fenced Python block that follows `<!-- marker ... -->` in the README."""
    found = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no {marker!r} block"
    return found.group(1)


@pytest.mark.usefixtures("local_ray")
def test_the_ome_zarr_snippet_opens_the_labels_without_a_warning(tmp_path):
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in", sizes=((64, 64),)), format=None))
    submit(job)  # the default format, as the demo's
    code = snippet("ome-zarr snippet").replace("out/demo.zarr/labels/0", f"{job.output.path}/labels/img0")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(2, 64, 64), (2, 32, 32)]"
    assert "mismatch" not in result.stdout + result.stderr
