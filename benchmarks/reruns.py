"""Planning a nightly rerun: an unchanged archive of 10^5 units, then the same with one chunk rewritten.

    python -m benchmarks.reruns --units 100000

A Zarr v3 volume of 1024 x 1024 planes in 64 x 64 chunks (one input chunk per
unit of 64 x 64: the most pieces a unit count can have) is given a manifest as a
finished job would leave it, through the project's own planning and commit calls
(no net runs).  Then `plan_job` plans the rerun as `segment-archive plan` does:
every chunk is listed and stamped (never read), and the image found up to date.
One chunk is then rewritten and the rerun planned again: the units whose window
reads it are found among all of them.  Target (#28.5): the unchanged rerun plans
in at most 10 s at 10^5 units.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from benchmarks.common import emit, machine

ROOT = Path(__file__).resolve().parents[1]
PLANE, CHUNK = 1024, 64


def make_volume(path: Path, planes: int) -> Any:
    """Every chunk written (zarr skips chunks of the fill value, which would leave nothing to stamp)."""
    volume = zarr.create_array(path, shape=(planes, PLANE, PLANE), chunks=(1, CHUNK, CHUNK), dtype="u1")
    plane = np.random.default_rng(0).integers(20, 220, (PLANE, PLANE), dtype=np.uint8)
    for z in range(planes):
        volume[z] = plane
    return volume


def job_for(tmp: str) -> Any:
    from pipeline.spec import JobSpec

    return JobSpec.model_validate(
        {
            "name": "reruns",
            "input": {"path": f"{tmp}/in"},
            "model": {"checkpoint": str(ROOT / "models/unet-small-isbi2012/model.safetensors")},
            "inference": {"tile": 256},
            "output": {"path": f"{tmp}/out.zarr", "format": "ngff-0.4", "chunks": [CHUNK, CHUNK], "pyramid_levels": 0},
        }
    )


def planned(job: Any, create: bool) -> tuple[float, Any]:
    """Seconds to plan the job as `submit` (create: with a store) or `plan` does, and the plan."""
    from pipeline import driver
    from pipeline.io.archive import open_archive
    from pipeline.planner import plan_job

    resolved = driver.resolve(job, overwrite=False, create=create)
    start = time.perf_counter()
    archive = open_archive(job.input.path)
    summary = plan_job(archive, resolved.planning())
    return time.perf_counter() - start, summary


def finish_as_a_run_would(job: Any, summary: Any) -> None:
    """Every unit done, its pyramid built, the image complete: what a finished run commits."""
    from pipeline.manifest import NET_PASS, PYRAMID, Manifest

    manifest = Manifest(job.output.path)
    for plan in summary.images:
        done = np.ones(plan.total, np.uint8)
        for pass_name in (NET_PASS, PYRAMID):
            manifest.commit_all_states(plan.key, pass_name, plan.input, done)
        manifest.set_image_record(plan.key, {"key": plan.key, "input": plan.input, "state": "complete"})


def measure(units: int) -> dict[str, Any]:
    planes = max(1, units // (PLANE // CHUNK) ** 2)
    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp) / "in" / "vol.zarr", planes)
        job = job_for(tmp)
        first_seconds, summary = planned(job, create=True)
        finish_as_a_run_would(job, summary)
        unchanged_seconds, unchanged = planned(job, create=False)
        time.sleep(0.01)
        volume[planes // 2, 512:576, 512:576] = 7
        changed_seconds, changed = planned(job, create=False)
    total = summary.images[0].total
    assert unchanged.images == [] and unchanged.skipped == ["vol"], unchanged.as_dict()
    return {
        "units": total,
        "input_chunks": total,
        "first_plan_seconds": round(first_seconds, 2),
        "unchanged_rerun_plan_seconds": round(unchanged_seconds, 2),
        "one_chunk_changed_plan_seconds": round(changed_seconds, 2),
        "units_to_redo_after_one_chunk": changed.pending_units,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[100_000])
    args = parser.parse_args()
    emit("reruns", {"machine": machine(), "runs": [measure(n) for n in args.units], "target_seconds": 10.0})


if __name__ == "__main__":
    main()
