"""Planning cost per image, as `submit` plans: many small images, each opened, checked and given its output.

    python -m benchmarks.planning --images 1000 10000

For each count, a folder of that many 64 x 64 uint8 TIFFs is planned with the
shipped model (so each image is also sampled against the range the model was
trained on) and a store: `plan_job` as the driver calls it, through the
driver's own `prepare`.  Reports seconds, milliseconds per image, and the ratio
of the per-image cost between the largest and the smallest count (1.0: linear).
The target (#31.10): linear, and at most 20 ms an image at 10^4 images.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from benchmarks.common import emit, machine

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        tifffile.imwrite(folder / f"img{i:05d}.tif", rng.integers(20, 220, (64, 64), dtype=np.uint8))


def measure(count: int) -> dict[str, Any]:
    from pipeline import driver
    from pipeline.io.archive import open_archive
    from pipeline.planner import plan_job
    from pipeline.spec import JobSpec

    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp) / "in", count)
        checkpoint = ROOT / "models/unet-small-isbi2012/model.safetensors"
        job = JobSpec.model_validate(
            {
                "name": "planning",
                "input": {"path": f"{tmp}/in"},
                "model": {"checkpoint": str(checkpoint)},
                "inference": {"tile": 256},
                "output": {"path": f"{tmp}/out.zarr", "format": "ngff-0.4", "chunks": [64, 64], "pyramid_levels": 0},
            }
        )
        resolved = driver.resolve(job, overwrite=False, create=True)
        start = time.perf_counter()
        archive = open_archive(job.input.path)
        summary = plan_job(archive, resolved.planning())
        seconds = time.perf_counter() - start
    assert len(summary.images) == count, summary.quarantined
    return {"images": count, "seconds": round(seconds, 2), "ms_per_image": round(1000 * seconds / count, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    runs = [measure(n) for n in args.images]
    figures: dict[str, Any] = {"machine": machine(), "runs": runs}
    figures["per_image_ratio_largest_to_smallest"] = round(runs[-1]["ms_per_image"] / runs[0]["ms_per_image"], 3)
    emit("planning", figures)


if __name__ == "__main__":
    main()
