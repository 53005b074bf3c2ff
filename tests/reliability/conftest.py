"""The reliability suite: faults injected into running jobs, and hostile input.

    pytest tests/reliability                  # the quick subset (also part of the default run)
    pytest -m reliability tests/reliability   # all of it (about 15 min on 2 cores)

At the end pytest prints the suite's figures as one JSON line (also written
to $RELIABILITY_FIGURES when set): kills survived, faults injected, bad inputs
tried, units lost and bytes differing from the reference run (both must be 0).
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.faultkit import faults_env

FIGURES: Counter = Counter()


@pytest.fixture
def figures() -> Counter:
    return FIGURES


def submit_process(job: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`segment-archive submit JOB` as its own process (its own local Ray), killable; `env` from
    faultkit.faults_env (by default: no faults, commits every 0.2 s)."""
    full_env = {**os.environ, **(env or faults_env())}
    cmd = [sys.executable, "-m", "pipeline.cli", "submit", str(job), "--quiet"]
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_submit(job: Path, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, str]:
    proc = submit_process(job, env)
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def differing_bytes(a: dict[str, bytes], b: dict[str, bytes]) -> int:
    """Bytes that differ between two stores' files (a missing file counts whole)."""
    total = 0
    for name in a.keys() | b.keys():
        x, y = a.get(name, b""), b.get(name, b"")
        total += abs(len(x) - len(y)) + sum(p != q for p, q in zip(x, y, strict=False))
    return total


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    figures = {"units_lost": 0, "bytes_differing": 0, **dict(sorted(FIGURES.items()))}
    line = json.dumps({"reliability": figures})
    terminalreporter.write_line(line)
    if os.environ.get("RELIABILITY_FIGURES"):
        Path(os.environ["RELIABILITY_FIGURES"]).write_text(line + "\n")
