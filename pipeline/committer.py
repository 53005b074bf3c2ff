"""Committing finished units to the manifest as the stream delivers them (on the driver; no Ray here).

States are committed a file of STATE_CHUNK units at a time, at most every
COMMIT_EVERY_S seconds (a kill loses at most that much finished work), failure
reasons in batches beside them, and the job lock is checked before each commit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pipeline.faults import inject
from pipeline.manifest import STATE_CHUNK, FailureRecord, Manifest
from pipeline.outcome import UnitState
from pipeline.rows import Outcome

if TYPE_CHECKING:
    from pipeline.planner import ImagePlan

# Seconds between manifest commits; a kill loses at most this much finished work.
COMMIT_EVERY_S = 2.0


class Committer:
    """Commits finished units to the manifest: their states a file of STATE_CHUNK units at a time, failures in batches.

    A unit counts once: a row Ray delivers twice (a retried task) is committed once.
    """

    def __init__(self, manifest: Manifest, plans: dict[str, ImagePlan]) -> None:
        self.manifest, self.plans = manifest, plans
        self.dirty: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.failures: dict[tuple[str, str], list[FailureRecord]] = defaultdict(list)
        self.last = time.monotonic()
        self.committed = 0

    def add(self, pass_name: str, outcome: Outcome) -> bool:
        """Record the unit's outcome; False if it already had one this run."""
        states = self.plans[outcome.key].states[pass_name]
        if states[outcome.index] != UnitState.PENDING:
            return False
        states[outcome.index] = outcome.state
        self.dirty[(pass_name, outcome.key)].add(outcome.index // STATE_CHUNK)
        if outcome.failure:
            self.failures[(pass_name, outcome.key)].append(outcome.failure)
        self.committed += 1
        if time.monotonic() - self.last > COMMIT_EVERY_S:
            self.flush()
        return True

    @contextmanager
    def kept_on_interrupt(self) -> Iterator[None]:
        """If the run is interrupted (SIGINT, SIGTERM) in the body, the units finished so far are committed first."""
        try:
            yield
        except KeyboardInterrupt:
            self.flush()
            raise

    def flush(self) -> None:
        # Reasons first: a failed state on disk always has its reason beside it.
        for (pass_name, key), records in self.failures.items():
            self.manifest.commit_failures(key, pass_name, records)
        for (pass_name, key), chunks in self.dirty.items():
            plan = self.plans[key]
            self.manifest.commit_states(key, pass_name, plan.input, plan.states[pass_name], chunks)
        self.failures.clear()
        self.dirty.clear()
        inject("commit", units=self.committed)
        self.manifest.check_lock()  # never commit for a run that lost its lock
        self.last = time.monotonic()
