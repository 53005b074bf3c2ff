"""Resume state at archive scale: commit every unit of one huge image, then time what a resume and `status` read.

    python -m benchmarks.manifest --units 100000 1000000

The manifest is made through the project's own commit path (`committer.Committer`,
one `Outcome` per unit, flushed as a run flushes), with no net and no Ray.  Then,
as a fresh process would: the planner's resume read (each pass's committed states,
`planner.pending_again`)
and `segment-archive status` (`report.job_status`), each timed, with the peak of
the memory they allocate (tracemalloc, which numpy reports to) and the files the
manifest holds.  Targets (issue #32): 10^6 units read in <= 5 s and <= 300 MB;
files grow with units / 10^4, not with commits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from pipeline.committer import Committer
from pipeline.jobrecords import MANIFEST, RECORDS_SUFFIX
from pipeline.manifest import INSTANCE_PASS, NET_PASS, Manifest
from pipeline.outcome import UnitState
from pipeline.plan import UnitGrid
from pipeline.planner import ImagePlan, pending_again
from pipeline.report import job_status
from pipeline.rows import Outcome
from pipeline.spec import JobSpec

UNITS_PER_PLANE = 1000  # 25 x 40 chunks of 512 px


def fabricate(out: str, units: int) -> tuple[UnitGrid, float, int]:
    """Commit `units` units (one in 1000 failed) of one image; (grid, seconds, flushes)."""
    grid = UnitGrid("volume", units // UNITS_PER_PLANE, (25 * 512, 40 * 512), (512, 512))
    manifest = Manifest(out)
    manifest.set_job({"job_fingerprint": "f" * 64})
    plan = ImagePlan("volume", "volume.zarr", "fp", grid, "zyx", 1.0, 0.0, {"z": grid.n_planes})
    committer = Committer(manifest, {"volume": plan})
    flushes = 0
    start = time.perf_counter()
    for index in range(grid.size):
        state = UnitState.FAILED if index % 1000 == 999 else UnitState.DONE
        committer.add(NET_PASS, Outcome("volume", index, grid.unit(index), state, 1, None))
        if index % 50_000 == 49_999:  # a run's commits every few seconds, many units each
            committer.flush()
            flushes += 1
    committer.flush()
    return grid, time.perf_counter() - start, flushes + 1


def resume_states(manifest: Manifest, key: str) -> dict[str, Any]:
    """What planning reads to resume an unchanged image: each pass's states, failed units pending again."""
    found = {p: manifest.unit_states(key, p) for p in (NET_PASS, INSTANCE_PASS)}
    return {p: pending_again(states) for p, states in found.items() if states is not None}


def timed(fn):
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, round(seconds, 3), round(peak / 1e6, 1)


def measure(units: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "out.zarr")
        grid, commit_seconds, flushes = fabricate(out, units)
        manifest = Manifest(out)  # a fresh process's view
        states, resume_s, resume_mb = timed(lambda: resume_states(manifest, "volume"))
        spec = JobSpec.model_validate(
            {"name": "bench", "input": {"path": "in"}, "output": {"path": out}, "model": {"config": "c.yaml"}}
        )
        status, status_s, status_mb = timed(lambda: job_status(spec))
        files = sum(1 for p in Path(out + RECORDS_SUFFIX, MANIFEST).rglob("*") if p.is_file())
        return {
            "units": grid.size,
            "commit_seconds": round(commit_seconds, 2),
            "flushes": flushes,
            "manifest_files": files,
            "resume_read_seconds": resume_s,
            "resume_read_peak_mb": resume_mb,
            "resume_units_pending": int((states[NET_PASS] == UnitState.PENDING).sum()),
            "status_seconds": status_s,
            "status_peak_mb": status_mb,
            "status_units_line": next(line.strip() for line in status.splitlines() if "units:" in line),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    emit("manifest", {"runs": [measure(n) for n in args.units]})


if __name__ == "__main__":
    main()
