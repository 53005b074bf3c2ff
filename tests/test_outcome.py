"""What becomes of a failing unit: only transient failures are tried again."""

import errno

import pytest

from pipeline.errors import CheckpointError, InputError, StorageError
from pipeline.outcome import FailureKind, UnitState, failure_kind, failure_message


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (StorageError("s3: 503"), FailureKind.TRANSIENT),
        (OSError(errno.EIO, "disk hiccup"), FailureKind.TRANSIENT),
        (MemoryError(), FailureKind.TRANSIENT),
        (InputError("a.tif: truncated"), FailureKind.INPUT),
        (CheckpointError("m.pt: mismatched"), FailureKind.INPUT),
        (ZeroDivisionError("x"), FailureKind.BUG),
    ],
)
def test_each_exception_has_a_failure_kind(exc, kind):
    assert failure_kind(exc) is kind


def test_a_bug_keeps_its_exception_type_in_the_message():
    assert (
        failure_message("a.tif plane 0 block (1, 2)", KeyError("k"))
        == "a.tif plane 0 block (1, 2): unexpected KeyError: 'k'"
    )
    assert failure_message("a.tif plane 0", InputError("a.tif: bad")) == "a.tif plane 0: a.tif: bad"


def test_only_done_and_skipped_units_are_finished():
    assert [s.name for s in UnitState if s.finished] == ["DONE", "SKIPPED"]
