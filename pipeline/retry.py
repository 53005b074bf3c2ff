"""Attempts of work units streamed through Ray Data, window by window (no Ray here).

A unit's own failure comes back as its row's `error`; the stream failing as a
whole (a worker or Ray itself raising out of the dataset) costs only the units
it had not finished.  Either way a unit runs again, as planned, up to the job's
`resources.retries` times, and is then quarantined with its reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.plan import WorkUnit
from pipeline.stages import describe_failure

Row = dict[str, Any]
Stream = Callable[[list[Row]], Iterator[Row]]

log = logging.getLogger(__name__)


def unit_of(row: Row) -> tuple[str, str]:
    return row["key"], WorkUnit.from_dict(row).id


def with_retries(rows: list[Row], stream: Stream, retries: int) -> Iterator[tuple[Row, int]]:
    """(final row, attempts) of each unit: a failed unit runs again, as planned, up to `retries` times."""
    attempts: dict[tuple[str, str], int] = defaultdict(int)
    todo = rows
    while todo:
        planned = {unit_of(r): r for r in todo}  # without a failed attempt's error
        retry = []
        for row in rows_or_failures(stream, planned):
            unit = unit_of(row)
            attempts[unit] += 1
            if row["error"] and attempts[unit] <= retries:
                retry.append(planned[unit])
                continue
            yield row, attempts.pop(unit)
        todo = retry


def rows_or_failures(stream: Stream, planned: dict[tuple[str, str], Row]) -> Iterator[Row]:
    """The stream's rows; if the stream raises as a whole, a failed row for each unit it had not yielded."""
    unfinished = dict(planned)  # ordered, as planned
    try:
        for row in stream(list(planned.values())):
            unfinished.pop(unit_of(row), None)
            yield row
    except Exception as exc:  # what the stream finished stays finished
        log.warning("Ray Data stream failed with %d units unfinished: %r", len(unfinished), exc)
        for row in unfinished.values():
            yield {**row, "error": describe_failure(row, exc)}


def windows(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    """Lists of `size` rows (the last may be shorter); each becomes one Ray dataset."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
