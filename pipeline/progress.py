"""Progress bars (rich) with throughput and ETA for long work."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _progress(*columns: TextColumn) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


@contextmanager
def training_progress(total: int) -> Iterator[Callable[[int, float, float], None]]:
    """A hook(step, loss, samples_per_s) that drives a bar with loss and throughput."""
    with _progress(TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} tiles/s")) as bar:
        task = bar.add_task("train", total=total, loss=float("nan"), rate=0.0)

        def hook(step: int, loss: float, rate: float) -> None:
            bar.update(task, completed=step, loss=loss, rate=rate)

        yield hook


# Without a terminal (cron, a scheduler's log) a bar draws nothing until the end: a line this often instead.
LOG_EVERY_S = 30.0


# hook(done, total, megapixels, phase): the net's "units", or a phase of the instance pass.
Hook = Callable[[int, int, float, str], None]
DEFAULT_PHASE = "units"  # what a hook called without a phase counts: the net's units (netpass.NET_PHASE)


@contextmanager
def unit_progress(enabled: bool = True, terminal: bool | None = None) -> Iterator[Hook | None]:
    """A hook showing units, Mpx/s and ETA, a bar per phase on a terminal, else a line every 30 s.

    The driver calls it with done 0 before Ray starts, so the total is known from the plan at once.
    """
    if not enabled:
        yield None
        return
    if not (sys.stderr.isatty() if terminal is None else terminal):
        yield progress_lines(sys.stderr)
        return
    with _progress(TextColumn("{task.fields[rate]:.2f} Mpx/s")) as bar:
        tasks: dict[str, tuple[TaskID, float]] = {}

        def hook(done: int, total: int, megapixels: float, phase: str = DEFAULT_PHASE) -> None:
            if phase not in tasks:  # the first phase waits for Ray and the actors to start
                waiting = "starting Ray and the actors" if not tasks else phase
                tasks[phase] = (bar.add_task(waiting, total=None, rate=0.0), time.perf_counter())
            task, start = tasks[phase]
            elapsed = time.perf_counter() - start
            rate = megapixels / elapsed if elapsed else 0.0
            bar.update(task, completed=done, total=total, rate=rate, description=phase if done else None)

        yield hook


def progress_lines(stream: TextIO, every: float = LOG_EVERY_S) -> Hook:
    """A progress hook that writes one line every `every` seconds per phase, and one when its last unit is done."""
    started: dict[str, float] = {}
    last: dict[str, float] = {}

    def hook(done: int, total: int, megapixels: float, phase: str = DEFAULT_PHASE) -> None:
        now = time.perf_counter()
        elapsed = now - started.setdefault(phase, now)
        if elapsed - last.get(phase, -every) < every and done < total:
            return
        last[phase] = elapsed
        rate = done / elapsed if elapsed and done else 0.0
        eta = f"{(total - done) / rate / 60:.1f} min" if rate else "unknown"
        stream.write(
            f"progress: {done}/{total} {phase} ({done / max(total, 1):.0%}), "
            f"{megapixels / elapsed if elapsed else 0.0:.2f} Mpx/s, {elapsed / 60:.1f} min so far, eta {eta}\n"
        )
        stream.flush()

    return hook
