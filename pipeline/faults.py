"""Fault injection for the reliability suite (tests/reliability/); inert unless configured.

    SEGMENT_ARCHIVE_FAULTS="read_exit:2,predict_exit:1,write_error:3"
    SEGMENT_ARCHIVE_FAULTS_DIR=/tmp/faults      (shared by every worker of the job)
    SEGMENT_ARCHIVE_FAULTS_P=1                  (optional: fire at every call until the budget is spent)

Each `site:budget` fires at most `budget` times across all processes of a
job: a firing claims a token file in the faults folder (O_EXCL, so two
workers never claim the same one), and the folder's token count is the
number of faults injected.  `*_exit` sites kill the worker process outright
(os._exit, as the OOM killer or a lost node would); `*_error` sites raise an
OSError, as a flaky disk or network would.  While `<dir>/disk-full` exists,
`write_full` raises ENOSPC on every block write.

`flaky://` is the local filesystem through fsspec, except that opening a
file for reading fails (OSError) while the `flaky_read` budget lasts: an
input archive on a flaky network filesystem.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

SITES = ("read_exit", "read_error", "predict_exit", "write_exit", "write_error", "write_full", "flaky_read")
# Chance that a call at a configured site tries to fire: spreads the faults over the job.
FIRE_PROBABILITY = 0.3


def configured() -> dict[str, int]:
    spec = os.environ.get("SEGMENT_ARCHIVE_FAULTS", "")
    budgets = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        site, _, budget = item.partition(":")
        if site not in SITES:
            raise ValueError(f"SEGMENT_ARCHIVE_FAULTS: unknown site {site!r}; expected one of {', '.join(SITES)}")
        budgets[site] = int(budget or 1)
    return budgets


def _claim(folder: Path, site: str, budget: int) -> bool:
    for n in range(budget):
        try:
            os.close(os.open(folder / f"{site}-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            continue
    return False


def inject(site: str) -> None:
    """Maybe fail here (only under SEGMENT_ARCHIVE_FAULTS); a no-op in normal runs."""
    folder = os.environ.get("SEGMENT_ARCHIVE_FAULTS_DIR")
    if not folder:
        return
    if site == "write_full" and (Path(folder) / "disk-full").exists():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)")
    budget = configured().get(site, 0)
    chance = float(os.environ.get("SEGMENT_ARCHIVE_FAULTS_P", FIRE_PROBABILITY))
    if not budget or random.random() >= chance or not _claim(Path(folder), site, budget):
        return
    if site.endswith("_exit"):
        os._exit(70)
    raise OSError(errno.EIO, f"injected {site}")


class FlakyFileSystem(LocalFileSystem):
    protocol = ("flaky",)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("flaky://"))

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if "r" in mode:
            inject("flaky_read")
        return super()._open(path, mode, *args, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


def injected(folder: str | Path) -> dict[str, int]:
    """How many faults fired per site."""
    counts: dict[str, int] = {}
    for token in Path(folder).glob("*-*"):
        site = token.name.rsplit("-", 1)[0]
        counts[site] = counts.get(site, 0) + 1
    return counts
