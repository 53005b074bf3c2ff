"""Stand-ins for the model in the predictor actors: a simulated GPU, and a model that does (almost) no arithmetic.

Both enter through `submit(..., make_predictor=...)`, so everything around the
model (reading, mirroring, tiling, Ray's transfers, to-output, writing,
committing) is the pipeline's own code path.  A simulated forward takes a fixed
time per output megapixel, spent asleep, as a GPU's time is: the host's CPUs stay
free for the readers and writers.  Each call's start and end are appended to a
log (one file per actor process), from which `busy_figures` says how much of
the run the "GPU" was busy.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.model.config import UNetConfig
from pipeline.model.geometry import NetGeometry
from pipeline.stages import PredictorFactory, StageContext

# The paper net's speed on one modern GPU (output megapixels a second): the reference point.
PAPER_NET_GPU_MPX_S = 100.0


@dataclass
class SimulatedPredictor:
    """The tile's centre as the foreground probability, after `seconds_per_megapixel` per output megapixel.

    Masks then have the input's structure (thresholded at 0.5), so the writes cost what real masks
    cost; zeros would be all background, which Zarr does not write at all.
    """

    geometry: NetGeometry
    classes: int
    seconds_per_megapixel: float  # 0: returns at once (the ceiling's model without arithmetic)
    log: Path | None = None

    def __call__(self, batch: np.ndarray, affine: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        start = time.time()
        n, _, height, width = batch.shape
        out_h, out_w = self.geometry.raw_output_size(height), self.geometry.raw_output_size(width)
        if self.seconds_per_megapixel:
            time.sleep(n * out_h * out_w / 1e6 * self.seconds_per_megapixel)
        result = np.empty((n, self.classes, out_h, out_w), dtype=np.float32)
        top, left = (height - out_h) // 2, (width - out_w) // 2
        centre = batch[:, 0, top : top + out_h, left : left + out_w].astype(np.float32)
        if affine is not None:  # a GPU normalises on the device: only the centre it returns, here
            scale, offset = affine
            centre = centre * scale[:, None, None] + offset[:, None, None]
        result[:, -1] = centre
        if self.classes > 1:
            result[:, 0] = 1 - result[:, -1]
            result[:, 1:-1] = 0
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(f"{start:.6f} {time.time():.6f}\n")
        return result


def simulated_predictor(ctx: StageContext, megapixels_per_second: float, log_dir: str | None) -> SimulatedPredictor:
    """The job's net's output geometry and classes, at `megapixels_per_second` (inf: no time at all)."""
    if ctx.config is None:
        raise ValueError("the simulated predictor takes its classes from model.config; give the job one")
    log = Path(log_dir) / f"calls-{os.getpid()}.log" if log_dir else None
    seconds = 0.0 if math.isinf(megapixels_per_second) else 1.0 / megapixels_per_second
    return SimulatedPredictor(ctx.geometry, UNetConfig.from_yaml(ctx.config).classes, seconds, log)


def simulated(megapixels_per_second: float, log_dir: str | Path | None = None) -> PredictorFactory:
    """A factory for `submit(make_predictor=...)`: picklable, so Ray can ship it to the actors."""
    return partial(
        simulated_predictor, megapixels_per_second=megapixels_per_second, log_dir=str(log_dir) if log_dir else None
    )


def busy_figures(log_dir: str | Path, wall_seconds: float) -> dict[str, Any]:
    """How busy the simulated GPU(s) were: over the run's wall time, and from their first call to their last."""
    calls = [
        (float(start), float(end))
        for log in Path(log_dir).glob("calls-*.log")
        for start, end in (line.split() for line in log.read_text().splitlines())
    ]
    if not calls:
        return {"calls": 0}
    busy = sum(end - start for start, end in calls)
    span = max(end for _, end in calls) - min(start for start, _ in calls)
    return {
        "calls": len(calls),
        "busy_seconds": round(busy, 2),
        "busy_fraction_of_wall": round(busy / wall_seconds, 3),
        "busy_fraction_first_to_last_call": round(busy / span, 3) if span > 0 else None,
    }
