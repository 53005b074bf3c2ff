"""keep_freed_memory: a freed activation-sized buffer stays in the process, ready for the next forward."""

import os
import platform
import subprocess
import sys

import pytest

from pipeline import cpumemory

# In a fresh interpreter: allocate and touch N MB, free it, report how much resident memory went away.
RELEASED_MB = """
import sys
from pipeline.cpumemory import keep_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "keep":
    assert keep_freed_memory()
buffer = bytearray(int(sys.argv[2]) << 20)  # zero-filled: every page touched
before = resident_mb()
del buffer
print(before - resident_mb())
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings"
)


def released_mb(mode: str, env: dict[str, str] | None = None, mb: int = 24) -> float:
    command = [sys.executable, "-c", RELEASED_MB, mode, str(mb)]
    return float(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)


@glibc_only
def test_freed_memory_stays_in_the_process():
    assert released_mb("default") > 20  # glibc's default: the buffer was mmapped, and unmapped on free
    assert released_mb("keep") < 4


@glibc_only
def test_a_freed_block_above_any_mmap_threshold_stays_too():
    """glibc mmaps blocks of 32 MB and more whatever the threshold: a 736 px tile's activations are up to 69 MB."""
    assert released_mb("default", mb=96) > 90
    assert released_mb("keep", mb=96) < 4
    assert released_mb("env", {**os.environ, **cpumemory.malloc_env()}, mb=96) < 4


@glibc_only
def test_a_process_started_with_the_malloc_env_keeps_freed_memory():
    """How the predictor actors get the settings: in their environment, before the first allocation."""
    assert released_mb("env", {**os.environ, **cpumemory.malloc_env()}) < 4


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(cpumemory.platform, "libc_ver", lambda: ("", ""))
    assert cpumemory.keep_freed_memory() is False
