"""Peak resident memory of the Ray workers a local run starts (Linux: /proc VmHWM).

A worker's peak dies with it, so a thread polls its descendants while the run
lasts; the peak is monotonic, and a worker reaches it long before it exits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import psutil

# A sample walks every process in /proc (about 2 ms of CPU with Ray's dozen): on a 2-core
# machine, polled every 0.5 s it took 0.4% of a core from the run it measures.  A peak is
# reached within a worker's first calls, and the workers live for the whole run.
POLL_SECONDS = 2.0


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM), or None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class WorkerPeaks:
    """`with WorkerPeaks() as peaks:` around a run; then `peaks.figures()` (MB)."""

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.peaks: dict[int, tuple[str, float]] = {}  # pid -> (Ray's process title, peak MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> WorkerPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.poll_seconds):
                return

    def _sample(self) -> None:
        for child in psutil.Process().children(recursive=True):
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if not title.startswith("ray::"):  # Ray's own services (raylet, GCS), not workers
                continue
            peak = peak_rss_mb(child.pid)
            if peak is not None:  # VmHWM never falls: the latest reading is the peak so far
                self.peaks[child.pid] = (title, peak)

    def figures(self) -> dict[str, float]:
        """Peak RSS of the predictor actors (Ray Data's MapWorker) and of any other worker, in MB."""
        actors = [mb for title, mb in self.peaks.values() if "MapWorker" in title]
        others = [mb for title, mb in self.peaks.values() if "MapWorker" not in title]
        figures = {}
        if actors:
            figures["predictor_peak_rss_mb"] = round(max(actors), 1)
        if others:
            figures["other_worker_peak_rss_mb"] = round(max(others), 1)
        return figures
