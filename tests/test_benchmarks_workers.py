"""The memory benchmark's worker peaks: a child that held 200 MB is reported at 200 MB or more."""

import subprocess
import sys
import time

import pytest

from benchmarks.workers import WorkerPeaks

HOLD_200_MB = "import time; block = bytearray(200 << 20); time.sleep(3)"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_workers_peak_is_kept_after_it_exits_and_actors_are_told_from_other_workers():
    with WorkerPeaks(poll_seconds=0.5) as peaks:
        # argv[0] as Ray titles its workers: the benchmark tells predictor actors from other workers by it
        worker = subprocess.Popen(["ray::MapWorker(test)", "-c", HOLD_200_MB], executable=sys.executable)
        other = subprocess.Popen(["ray::IDLE", "-c", "import time; time.sleep(3)"], executable=sys.executable)
        time.sleep(2)
        worker.wait(), other.wait()
    figures = peaks.figures()
    assert figures["predictor_peak_rss_mb"] >= 200
    assert figures["other_worker_peak_rss_mb"] < 100
