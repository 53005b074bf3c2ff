"""Driver and worker peak memory for two synthetic archives 4x apart: neither may grow with the archive.

    python -m benchmarks.memory --images 4 --size 1024

Each size runs `benchmarks.pipeline --skip-model` in a fresh process (so each
peak RSS is its own); the second archive has 4x the images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import emit

KEPT = (
    "archive",
    "units",
    "driver_peak_rss_mb",
    "predictor_peak_rss_mb",
    "other_worker_peak_rss_mb",
    "pipeline_megapixels_per_second",
)


def run(images: int, size: int) -> dict[str, object]:
    cmd = [sys.executable, "-m", "benchmarks.pipeline", "--images", str(images), "--size", str(size), "--skip-model"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, object] = json.loads(out[out.index("{") :])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    small, large = run(args.images, args.size), run(4 * args.images, args.size)
    figures: dict[str, object] = {
        name: {k: v for k, v in r.items() if k in KEPT} for name, r in (("small", small), ("large", large))
    }
    for process in ("driver", "predictor"):
        key = f"{process}_peak_rss_mb"
        if key in small and key in large:
            figures[f"{process}_growth_ratio"] = round(float(large[key]) / float(small[key]), 3)  # type: ignore[arg-type]
    emit("memory", figures)


if __name__ == "__main__":
    main()
