"""End-to-end `submit` throughput on a synthetic archive, and its ratio to the bare model.

    python -m benchmarks.pipeline --images 8 --size 1024 --format zarr

Ray start-up is excluded (Ray is started before the clock).  The bare-model
figure is measured in the same run with the same config, tile and batch, once
before and once after the pipeline (on a shared machine the speed drifts;
the ratio uses their mean, and both are printed).  From the run's timeline:
seconds until the first unit was finished (actor start-up, model load, first
read) and the steady-state rate after it.  Also reports the driver's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from benchmarks.model import model_throughput
from benchmarks.synthetic import make_archive


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--format", choices=["zarr", "tiff"], default="zarr")
    parser.add_argument("--config", default="configs/models/unet-small.yaml")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus-per-actor", type=float, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--skip-model", action="store_true", help="only the pipeline (memory runs)")
    args = parser.parse_args()

    from pipeline.run import init_ray, submit
    from pipeline.spec import JobSpec

    work = Path(tempfile.mkdtemp(prefix="sa-bench-"))
    archive = make_archive(work / "archive", args.images, args.size, args.format)
    job = JobSpec.model_validate(
        {
            "name": "bench",
            "input": {"path": str(archive)},
            "model": {"config": str(Path(args.config).resolve())},
            "inference": {
                "tile": args.tile,
                "batch_size": args.batch_size,
                "device": args.device,
                "precision": args.precision,
            },
            "output": {"path": str(work / "out.zarr"), "chunks": [args.chunk, args.chunk], "pyramid_levels": 0},
            "resources": {"actors": args.actors, "cpus_per_actor": args.cpus_per_actor},
        }
    )

    def bare_model() -> dict[str, Any]:
        return model_throughput(args.config, args.chunk, args.tile, args.batch_size, args.device, args.precision, 15)

    before = None if args.skip_model else bare_model()
    init_ray(None)
    start = time.perf_counter()
    report = submit(job)
    elapsed = time.perf_counter() - start
    pipeline_mpx = report.megapixels / elapsed
    figures = {
        "archive": {"images": args.images, "size": args.size, "format": args.format, "megapixels": report.megapixels},
        "units": report.units_done,
        "seconds": round(elapsed, 2),
        "pipeline_megapixels_per_second": round(pipeline_mpx, 4),
        **timeline_figures(report.timeline),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not args.skip_model:
        import ray

        ray.shutdown()  # the bare model gets the whole machine, as the actor had
        after = bare_model()
        rates = [m["output_megapixels_per_second"] for m in (before, after) if m]
        bare_mpx = sum(rates) / len(rates)
        figures["model"] = {**after, "output_megapixels_per_second": round(bare_mpx, 4), "before_and_after": rates}
        figures["pipeline_to_model_ratio"] = round(pipeline_mpx / bare_mpx, 3)
        if "steady_megapixels_per_second" in figures:
            figures["steady_to_model_ratio"] = round(figures["steady_megapixels_per_second"] / bare_mpx, 3)
    emit("pipeline", figures)


if __name__ == "__main__":
    main()
