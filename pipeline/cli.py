"""`segment-archive`: the command line.  Parses, calls a library function, prints.

Heavy modules (torch, ray, zarr) are imported inside the commands, so that
`segment-archive --help` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from pipeline import __version__
from pipeline.errors import ExitCode, JobLockedError, SegmentArchiveError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn user-facing errors into one clear message and a stable exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except JobLockedError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(ExitCode.LOCKED)
        except SegmentArchiveError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(ExitCode.INVALID)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="segment-archive")
def main() -> None:
    """Segment large microscopy archives (Zarr, TIFF) with U-Nets.

    \b
    Typical use:
      segment-archive plan jobs/demo.yaml       what would run
      segment-archive submit jobs/demo.yaml     run it (resumes if interrupted)
      segment-archive status jobs/demo.yaml     done / pending / failed units
      segment-archive model info MODEL          config, parameters, tile geometry

    Exit codes: 0 complete, 2 invalid input, 3 partial (some units
    quarantined), 4 job locked by another run, 1 unexpected failure.
    """


@main.group()
def model() -> None:
    """Inspect model configs and checkpoints."""


@model.command("info")
@click.argument("source", type=click.Path(dir_okay=False))
@reports_errors
def model_info(source: str) -> None:
    """Print config, parameter count and tile geometry of SOURCE.

    SOURCE is a checkpoint (.safetensors, .pt) or a model config (.yaml).
    """
    from pipeline.model.describe import describe_model, load_model_source

    click.echo(describe_model(load_model_source(source)))


if __name__ == "__main__":
    main()
