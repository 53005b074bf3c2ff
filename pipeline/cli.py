"""`segment-archive`: the command line.  Parses, calls a library function, prints.

Heavy modules (torch, ray, zarr) are imported inside the commands, so that
`segment-archive --help` answers at once.
"""

from __future__ import annotations

import signal
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
        except KeyboardInterrupt:
            click.echo(
                "interrupted: everything committed so far is kept; the same submit again (train: with --resume) "
                "continues where this run stopped",
                err=True,
            )
            sys.exit(ExitCode.INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's stop, `kill`) ends a run as Ctrl-C does: commit, record, release the lock."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="segment-archive")
def main() -> None:
    """Segment large microscopy archives (Zarr, TIFF) with U-Nets.

    \b
    Typical use:
      segment-archive plan jobs/demo.yaml       what would run
      segment-archive submit jobs/demo.yaml     run it (resumes if interrupted)
      segment-archive status jobs/demo.yaml     done / pending / failed units
      segment-archive report out/demo.zarr      rebuild the HTML report of an output
      segment-archive model info MODEL          config, parameters, tile geometry

    Exit codes: 0 complete, 2 invalid input, 3 partial (some units
    quarantined) or warned (the output needs a look), 4 job locked by another run, 130 interrupted (Ctrl-C or
    SIGTERM; submit again to resume), 1 unexpected failure.
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
    from pipeline.model.describe import describe_source

    click.echo(describe_source(source))


JOB = click.argument("job_path", metavar="JOB.yaml", type=click.Path(dir_okay=False))


@main.command()
@JOB
@click.option(
    "--address", help="Ray cluster: auto, or ray://head:10001 (default: the job's resources.address, else local Ray)."
)
@click.option("--dry-run", is_flag=True, help="Plan and print what would run; start nothing, write nothing.")
@click.option("--overwrite", is_flag=True, help="Replace masks written by a different job (model or settings changed).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--verify", is_flag=True, help="First check that every finished unit's chunk is in the output; redo the lost."
)
@reports_errors
def submit(job_path: str, address: str | None, dry_run: bool, overwrite: bool, quiet: bool, verify: bool) -> None:
    """Run the job JOB.yaml: plan, predict, write masks, record progress.

    Resumes where a killed run stopped; a rerun processes only new or changed
    images.  Exit status: 0 complete, 3 partial or warned (see the quarantined
    units and the warnings), 2 invalid job, 4 another run holds the lock, 130 interrupted (Ctrl-C or
    SIGTERM: finished units are committed and the lock released first).
    """
    from pipeline.driver import submit as run_job
    from pipeline.progress import unit_progress
    from pipeline.report import print_report, write_report_json
    from pipeline.spec import JobSpec

    stop_on_sigterm()
    spec = JobSpec.load(job_path)
    if address:
        spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"address": address})})

    with unit_progress(enabled=not quiet and not dry_run) as hook:
        report = run_job(spec, overwrite=overwrite, dry_run=dry_run, progress=hook, verify=verify)
    print_report(report)
    if not dry_run:
        write_report_json(spec.output.path, report)
        write_html_report(spec.output.path)
    sys.exit(ExitCode.PARTIAL if report.status in ("partial", "warnings") else ExitCode.OK)


def write_html_report(output: str) -> None:
    """The HTML report is a view of work already recorded: failing to draw it fails nothing."""
    from pipeline.htmlreport import build_report

    try:
        click.echo(f"report: {build_report(output)}")
    except Exception as exc:
        click.echo(f"warning: no HTML report: {type(exc).__name__}: {exc}", err=True)


@main.command()
@click.argument("output", metavar="OUTPUT")
@click.option("--samples", default=4, show_default=True, help="Planes shown large, mask over image.")
@click.option("--thumbnails", default=24, show_default=True, help="Images in the thumbnail grid.")
@reports_errors
def report(output: str, samples: int, thumbnails: int) -> None:
    """Rebuild OUTPUT.job/report.html from the job manifest beside OUTPUT.

    OUTPUT is the job's output.path (a folder or URL).  The report lists runs,
    images complete, partial and quarantined (with reasons), throughput over
    time, and mask-over-image pictures; it opens in any browser, offline.
    """
    from pipeline.htmlreport import build_report

    click.echo(build_report(output, samples, thumbnails))


@main.command()
@JOB
@reports_errors
def plan(job_path: str) -> None:
    """Show what `submit` would run: images, planes, units and megapixels pending."""
    from pipeline.driver import submit as run_job
    from pipeline.report import print_report
    from pipeline.spec import JobSpec

    print_report(run_job(JobSpec.load(job_path), dry_run=True))


@main.command()
@JOB
@click.option(
    "--verify", is_flag=True, help="Also list the output (no chunk is read) for finished units whose chunk was lost."
)
@reports_errors
def status(job_path: str, verify: bool) -> None:
    """Done / pending / failed units of the job, and its last run.

    Changes no work or record (an output of an earlier version has its records moved beside the store).
    """
    from pipeline.report import job_status
    from pipeline.spec import JobSpec

    click.echo(job_status(JobSpec.load(job_path), verify=verify))


@main.command()
@click.argument("spec_path", metavar="TRAIN.yaml", type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from last.pt in the output folder (after a kill).")
@click.option("--workers", type=int, default=0, help="Data-parallel workers under Ray Train (DDP); 0 = this process.")
@click.option("--gpu", is_flag=True, help="With --workers: one GPU per worker.")
@click.option("--address", help="With --workers: Ray cluster address (default: local Ray).")
@reports_errors
def train(spec_path: str, resume: bool, workers: int, gpu: bool, address: str | None) -> None:
    """Train a U-Net with the paper's recipe (weighted loss, elastic deformation).

    Writes last.pt, best.safetensors and metrics.csv/jsonl into the spec's output
    folder.  See jobs/train-isbi2012.yaml for every field.
    """
    from pipeline.progress import training_progress
    from pipeline.train.loop import train as run_training
    from pipeline.train.loop import trained_steps
    from pipeline.train.spec import TrainSpec

    spec = TrainSpec.load(spec_path)
    if workers:
        from pipeline.train.distributed import train_distributed

        train_distributed(spec, workers, use_gpu=gpu, resume=resume, address=address)
        click.echo(f"checkpoints and metrics in {spec.output}")
        return
    done = trained_steps(spec.output) if resume else 0
    if done >= spec.train.steps:
        click.echo(f"nothing to do: {spec.output} holds a run trained to step {done} of {spec.train.steps}")
        return
    with training_progress(spec.train.steps) as hook:
        rows = run_training(spec, resume=resume, progress=hook)
    for row in rows:
        click.echo(
            f"step {row.step}: pixel error {row.pixel_error:.4f}, Rand error {row.rand_error:.4f}, "
            f"IoU(fg) {row.iou_foreground:.4f}"
        )
    click.echo(f"checkpoints and metrics in {spec.output}")


@main.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Predict with this model ...")
@click.option("--images", help="... on these images (archive path), or")
@click.option("--store", help="score a mask store written by submit.")
@click.option("--labels", required=True, help="Ground-truth labels (archive path; same image keys).")
@click.option("--keys", help="Comma-separated image keys to score (default: all).")
@click.option(
    "--foreground",
    type=click.Choice(["auto", "nonzero", "zero"]),
    default="auto",
    show_default=True,
    help="Which label pixels are class 1 (ISBI membranes: zero); auto: the rarer value, refused if too close to call.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the scores as JSON here.")
@reports_errors
def evaluate(
    checkpoint: str | None,
    images: str | None,
    store: str | None,
    labels: str,
    keys: str | None,
    foreground: str,
    json_path: str | None,
) -> None:
    """Pixel error, Rand error (ISBI 2012) and IoU/Dice against ground truth.

    For a store of output.kind instances, the Rand error of its objects instead.
    """
    import json

    from pipeline.errors import ConfigError
    from pipeline.evaluate import evaluate_checkpoint, evaluate_store

    key_list = keys.split(",") if keys else None
    if store:
        result = evaluate_store(store, labels, key_list, foreground)
    elif checkpoint and images:
        result = evaluate_checkpoint(checkpoint, images, labels, key_list, foreground)
    else:
        raise ConfigError("give --store, or --checkpoint with --images")
    summary = result.summary()
    click.echo(json.dumps(summary, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result.as_dict(), f, indent=2)


if __name__ == "__main__":
    main()
