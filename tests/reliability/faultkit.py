"""Faults for the reliability suite, installed at pipeline.faults' points in every process of a job.

A test asks for faults through `faults_env(...)`, the environment of the job's
process: PYTHONPATH then starts with faultsite/, whose sitecustomize calls
`install_from_env()` in the driver and in every Ray worker it starts.

    faults="read_exit:2,predict_exit:1,write_error:3"   at most that many of each, across the job
    folder=/tmp/faults                                  shared by every process of the job
    chance=1                                            fire at every call until the budget is spent

Each `fault:budget` fires at most `budget` times across all processes of a job:
a firing claims a token file in the folder (O_EXCL, so two workers never claim
the same one), and the folder's token count is the number of faults injected
(`injected`).  `*_exit` faults kill the process outright (os._exit, as the OOM
killer or a lost node would); `*_error` faults raise an OSError, as a flaky disk
or network would.  While `<folder>/disk-full` exists, every attempt at writing a
block raises ENOSPC.  `kill_after_units` SIGKILLs the driver at the first commit
after that many units.  `flaky://` is the local filesystem, except that opening a
file for reading fails while the `flaky_read` budget lasts.
"""

from __future__ import annotations

import errno
import os
import random
import signal
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline import faults

# fault -> the pipeline's point where it fires
FAULTS = {
    "read_exit": "read",
    "read_error": "read_attempt",
    "predict_exit": "predict",
    "write_exit": "write",
    "write_error": "write_attempt",
    "flaky_read": "open",  # FlakyFileSystem's own point
}
# Chance that a call at a configured point tries to fire: spreads the faults over the job.
FIRE_PROBABILITY = 0.3
SITE = Path(__file__).with_name("faultsite")
REPO = Path(__file__).parents[2]


def faults_env(
    folder: Path | None = None,
    faults: str = "",
    chance: float = FIRE_PROBABILITY,
    kill_after_units: int = 0,
    commit_every_s: float = 0.2,
) -> dict[str, str]:
    """Environment for a job's process (merged over os.environ) that installs these faults in all of it."""
    path = os.pathsep.join(filter(None, [str(SITE), str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = {"PYTHONPATH": path, "FAULTKIT_COMMIT_EVERY_S": str(commit_every_s)}
    if folder is not None:
        env |= {"FAULTKIT_DIR": str(folder), "FAULTKIT_FAULTS": faults, "FAULTKIT_CHANCE": str(chance)}
    if kill_after_units:
        env["FAULTKIT_KILL_AFTER_UNITS"] = str(kill_after_units)
    return env


def budgets(spec: str) -> dict[str, int]:
    found = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        fault, _, budget = item.partition(":")
        if fault not in FAULTS:
            raise ValueError(f"faults: unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        found[fault] = int(budget or 1)
    return found


def claim(folder: Path, fault: str, budget: int) -> bool:
    for n in range(budget):
        try:
            os.close(os.open(folder / f"{fault}-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            continue
    return False


def injected(folder: str | Path) -> dict[str, int]:
    """How many faults fired, per fault."""
    counts: dict[str, int] = {}
    for token in Path(folder).glob("*-*"):
        fault = token.name.rsplit("-", 1)[0]
        counts[fault] = counts.get(fault, 0) + 1
    return counts


class Faults:
    """The hook: fires the configured faults at their points."""

    def __init__(self, folder: Path, spec: str, chance: float) -> None:
        self.folder, self.budgets, self.chance = folder, budgets(spec), chance

    def __call__(self, point: str, **facts: int) -> None:
        if point == "write_attempt" and (self.folder / "disk-full").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)")
        for fault, budget in self.budgets.items():
            if FAULTS[fault] != point or random.random() >= self.chance:
                continue
            if not claim(self.folder, fault, budget):
                continue
            if fault.endswith("_exit"):
                os._exit(70)
            raise OSError(errno.EIO, f"injected {fault}")


def killer(after_units: int) -> faults.Hook:
    def kill_at_commit(point: str, units: int = 0, **facts: int) -> None:
        if point == "commit" and units >= after_units:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill_at_commit


class FlakyFileSystem(LocalFileSystem):
    protocol = ("flaky",)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("flaky://"))

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if "r" in mode:
            faults.inject("open")
        return super()._open(path, mode, *args, **kwargs)


def install_from_env() -> None:
    """Install what `faults_env` asked for in this process (the driver, or one of Ray's workers)."""
    from pipeline import committer

    committer.COMMIT_EVERY_S = float(os.environ.get("FAULTKIT_COMMIT_EVERY_S", committer.COMMIT_EVERY_S))
    if os.environ.get("FAULTKIT_DIR"):
        fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
        folder = Path(os.environ["FAULTKIT_DIR"])
        faults.install(Faults(folder, os.environ.get("FAULTKIT_FAULTS", ""), float(os.environ["FAULTKIT_CHANCE"])))
    if os.environ.get("FAULTKIT_KILL_AFTER_UNITS"):
        faults.install(killer(int(os.environ["FAULTKIT_KILL_AFTER_UNITS"])))
