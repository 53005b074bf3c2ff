"""Progress bars (rich) with throughput and ETA for long work."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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


@contextmanager
def unit_progress(enabled: bool = True) -> Iterator[Callable[[int, int, float], None] | None]:
    """A hook(done, total, megapixels) that drives a bar with Mpx/s and ETA."""
    if not enabled:
        yield None
        return
    with _progress(TextColumn("{task.fields[rate]:.2f} Mpx/s")) as bar:
        task = bar.add_task("units", total=None, rate=0.0)
        start = time.perf_counter()

        def hook(done: int, total: int, megapixels: float) -> None:
            elapsed = time.perf_counter() - start
            bar.update(task, completed=done, total=total, rate=megapixels / elapsed if elapsed else 0.0)

        yield hook
