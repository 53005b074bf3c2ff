"""End-to-end `submit` throughput on a synthetic archive, and its ratio to the bare model.

    python -m benchmarks.pipeline --images 8 --size 1024 --format zarr

Ray start-up is excluded (Ray is started before the clock).  The bare-model
figure is measured in the same run with the same config, tile and batch,
before and after every pipeline run, with Ray shut down (on a shared machine
the speed drifts: each run's ratio uses the mean of the bare figures on either
side of it).  `--repeats N` alternates N pipeline runs (each into a fresh
output) with N + 1 bare-model runs and reports the median ratios, and every
run's figures.  From each run's timeline: seconds until the first unit was
finished (actor start-up, model load, first read) and the steady-state rate
after it.  Also reports the peak RSS of the driver and of Ray's workers.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from benchmarks.model import model_throughput
from benchmarks.synthetic import make_archive
from benchmarks.workers import WorkerPeaks
from pipeline.spec import ResourcesSpec

BARE_SECONDS = 15


def timeline_figures(timeline: list[tuple[float, float]]) -> dict[str, float]:
    """Start-up (seconds to the first finished unit) and the rate after it, from (seconds, Mpx) samples."""
    finished = [(t, m) for t, m in timeline if m > 0]
    if len(finished) < 2:
        return {}
    (t0, m0), (t1, m1) = finished[0], finished[-1]
    return {
        "first_unit_seconds": round(t0, 2),
        "steady_megapixels_per_second": round((m1 - m0) / (t1 - t0), 4) if t1 > t0 else 0.0,
    }


def with_ratios(run: dict[str, Any], bare_before: float, bare_after: float) -> dict[str, Any]:
    """The run's figures with its ratios to the mean of the bare-model rates measured either side of it."""
    bare = (bare_before + bare_after) / 2
    ratios = {"model_megapixels_per_second": [bare_before, bare_after]}
    ratios["pipeline_to_model_ratio"] = round(run["pipeline_megapixels_per_second"] / bare, 3)
    if "steady_megapixels_per_second" in run:
        ratios["steady_to_model_ratio"] = round(run["steady_megapixels_per_second"] / bare, 3)
    return {**run, **ratios}


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(statistics.median(values), 4) if values else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--format", choices=["zarr", "tiff"], default="zarr")
    parser.add_argument("--config", default="configs/models/unet-small.yaml")
    parser.add_argument("--chunk", type=int, default=512, help="the work unit's side (a chunk, or a shard)")
    parser.add_argument("--output-format", choices=["ngff-0.4", "ngff-0.5"], default="ngff-0.4")
    parser.add_argument("--inner-chunk", type=int, default=256, help="ngff-0.5: the chunks inside each shard")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=lambda v: v if v == "auto" else float(v), default=2)
    parser.add_argument("--gpus-per-actor", type=float, help="default: 1 with --device cuda, else 0")
    parser.add_argument("--units-per-task", default=ResourcesSpec.model_fields["units_per_task"].default)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=1, help="pipeline runs, each between two bare-model runs")
    parser.add_argument("--skip-model", action="store_true", help="only the pipeline (memory runs)")
    parser.add_argument(
        "--default-resources",
        action="store_true",
        help="leave the job's resources section out, as a new user does (--actors, --cpus-per-actor and "
        "--units-per-task are then unused)",
    )
    return parser.parse_args()


def gpus_per_actor(args: argparse.Namespace) -> float:
    if args.gpus_per_actor is not None:
        return float(args.gpus_per_actor)
    return 1.0 if args.device == "cuda" else 0.0


def job_document(args: argparse.Namespace, archive: Path, output: Path) -> dict[str, Any]:
    document = {
        "name": "bench",
        "input": {"path": str(archive)},
        "model": {"config": str(Path(args.config).resolve())},
        "inference": {
            "tile": args.tile,
            "batch_size": args.batch_size,
            "device": args.device,
            "precision": args.precision,
        },
        "output": output_document(args, output),
        "resources": {
            "actors": args.actors,
            "cpus_per_actor": args.cpus_per_actor,
            "gpus_per_actor": gpus_per_actor(args),
            "units_per_task": args.units_per_task,
        },
    }
    if args.default_resources:
        del document["resources"]
    return document


def output_document(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    """ngff-0.4: a chunk per unit; ngff-0.5: chunks of --inner-chunk inside a shard per unit."""
    unit = [args.chunk, args.chunk]
    if args.output_format == "ngff-0.4":
        return {"path": str(output), "format": "ngff-0.4", "chunks": unit, "pyramid_levels": 0}
    inner = [args.inner_chunk, args.inner_chunk]
    return {"path": str(output), "format": "ngff-0.5", "chunks": inner, "unit": unit, "pyramid_levels": 0}


def pipeline_run(job_doc: dict[str, Any]) -> dict[str, Any]:
    """One `submit` of the job on a Ray started (and shut down) around it; the clock excludes Ray's start."""
    import ray

    from pipeline.driver import submit
    from pipeline.run import init_ray
    from pipeline.spec import JobSpec

    job = JobSpec.model_validate(job_doc)
    init_ray(None)
    with WorkerPeaks() as workers:
        start = time.perf_counter()
        report = submit(job)
        elapsed = time.perf_counter() - start
    ray.shutdown()  # the bare model gets the whole machine, as the actors had
    return {
        "megapixels": report.megapixels,
        "units": report.units_done,
        "seconds": round(elapsed, 2),
        "pipeline_megapixels_per_second": round(report.megapixels / elapsed, 4),
        **timeline_figures(report.timeline),
        **workers.figures(),
    }


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="sa-bench-"))
    archive = make_archive(work / "archive", args.images, args.size, args.format)

    def bare_model() -> dict[str, Any]:
        return model_throughput(
            args.config, args.chunk, args.tile, args.batch_size, args.device, args.precision, BARE_SECONDS
        )

    bare = [] if args.skip_model else [bare_model()]
    runs = []
    for i in range(args.repeats):
        runs.append(pipeline_run(job_document(args, archive, work / f"out{i}.zarr")))
        if not args.skip_model:
            bare.append(bare_model())
    rates = [b["output_megapixels_per_second"] for b in bare]
    if rates:
        runs = [with_ratios(run, rates[i], rates[i + 1]) for i, run in enumerate(runs)]
    figures: dict[str, Any] = {
        "archive": {
            "images": args.images,
            "size": args.size,
            "format": args.format,
            "megapixels": runs[0]["megapixels"],
        },
        "resources": "default"
        if args.default_resources
        else {"actors": args.actors, "cpus_per_actor": args.cpus_per_actor, "gpus_per_actor": gpus_per_actor(args)},
        **{key: median_of(runs, key) for key in runs[0] if key not in ("megapixels", "model_megapixels_per_second")},
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if bare:
        figures["model"] = {**bare[-1], "output_megapixels_per_second": median_of(bare, "output_megapixels_per_second")}
    if args.repeats > 1:
        figures["runs"] = runs
    emit("pipeline", figures)


if __name__ == "__main__":
    main()
