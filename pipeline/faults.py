"""Named points of a job where a test may make it fail: inert unless a test installs a hook.

The pipeline calls `inject(point, **facts)` at each of POINTS.  Nothing here reads
the environment or fails by itself: the reliability suite's kit
(tests/reliability/faultkit.py) installs hooks that exit the process or raise, as
a lost worker, a flaky disk or a full one would, in every process of a job.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS = {
    "read": "a worker is about to read a unit's window (outside the unit's retries)",
    "read_attempt": "each attempt at reading a unit's window",
    "predict": "a predictor actor was handed a batch of units",
    "write": "a worker is about to write a unit's block (outside the unit's retries)",
    "write_attempt": "each attempt at writing a unit's block",
    "commit": "the driver committed finished units to the manifest (facts: units, committed so far this run)",
}
Hook = Callable[..., None]
_hooks: list[Hook] = []


def install(hook: Hook) -> None:
    """Call `hook(point, **facts)` at every point of this process from now on."""
    _hooks.append(hook)


def uninstall(hook: Hook) -> None:
    _hooks.remove(hook)


def inject(point: str, **facts: int) -> None:
    """The pipeline passes `point`: the hooks a test installed may raise or exit here."""
    for hook in _hooks:
        hook(point, **facts)
