"""What became of a work unit: its state, and for a failure its kind (pure, no IO).

A failure's kind decides what happens next: only a `transient` failure (an I/O
error, a store or network hiccup, memory) is tried again; `input` (the image or
block is bad) and `bug` (anything unexpected) are quarantined at once, with the
image, plane and block named.
"""

from __future__ import annotations

import enum
import traceback

from pipeline.errors import SegmentArchiveError, StorageError


class UnitState(enum.IntEnum):
    """A unit's state as the manifest keeps it: one byte per unit."""

    PENDING = 0
    DONE = 1
    SKIPPED = 2  # flat block, written as background without the net
    FAILED = 3

    @property
    def finished(self) -> bool:
        return self in (UnitState.DONE, UnitState.SKIPPED)


class FailureKind(str, enum.Enum):
    INPUT = "input"  # the image or block is bad: quarantined at once
    TRANSIENT = "transient"  # may pass on a second try: retried up to resources.retries
    BUG = "bug"  # unexpected: quarantined, with the exception's last line


def failure_kind(exc: BaseException) -> FailureKind:
    """How a unit's exception is treated: retried (transient) or quarantined (input, bug)."""
    if isinstance(exc, (StorageError, OSError, MemoryError, TimeoutError)):
        return FailureKind.TRANSIENT
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return FailureKind.TRANSIENT
    if isinstance(exc, SegmentArchiveError):
        return FailureKind.INPUT
    return FailureKind.BUG


def failure_message(where: str, exc: BaseException) -> str:
    """`where: message` for the manifest and report; a bug keeps the exception's type."""
    if isinstance(exc, SegmentArchiveError):
        return f"{where}: {exc}"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"{where}: unexpected {last}"
