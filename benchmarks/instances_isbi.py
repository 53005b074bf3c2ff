"""Rand error of instances on the held-out ISBI 2012 slices, through `submit` (components vs watershed).

    python -m benchmarks.instances_isbi [--data ../shared/data/isbi2012_em/train]

Runs jobs/demo-instances.yaml on the 30 training-volume slices with each
setting below, then scores the objects of slices 20-23 (never trained on)
with `evaluate --store`: the foreground-restricted Rand error of the objects
against the truth's cells.  Needs the labelled data beside the checkout
(../shared, not shipped with the project).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit
from pipeline.driver import submit
from pipeline.evaluate import evaluate_store
from pipeline.outputspec import InstancesOutput
from pipeline.spec import JobSpec

HELD_OUT = ["20", "21", "22", "23"]
JOB = Path(__file__).parent.parent / "jobs" / "demo-instances.yaml"
# Changes to the demo job's instance settings (objects: background, connectivity 4, min_size 20, halo 512).
SETTINGS = {
    "components_t0.5": {"method": "components", "threshold": 0.5},
    "watershed_t0.5_s0.8": {"method": "watershed", "threshold": 0.5, "seed_threshold": 0.8},
    "watershed_demo": {},  # threshold 0.1, seed_threshold 0.8
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).parent.parent.parent / "shared/data/isbi2012_em/train"))
    args = parser.parse_args()
    demo = JobSpec.load(JOB)
    assert isinstance(demo.output, InstancesOutput)  # jobs/demo-instances.yaml is an instances job
    figures: dict[str, object] = {"slices": HELD_OUT, "demo_instances": demo.output.instances.model_dump()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in SETTINGS.items():
            rule = demo.output.instances.model_copy(update=changes)
            output = demo.output.model_copy(update={"path": f"{tmp}/{name}.zarr", "instances": rule})
            job = demo.model_copy(
                update={"input": demo.input.model_copy(update={"path": f"{args.data}/image"}), "output": output}
            )
            start = time.perf_counter()
            report = submit(job)
            seconds = time.perf_counter() - start
            scores = evaluate_store(output.path, f"{args.data}/label", HELD_OUT, foreground="zero").summary()
            figures[name] = {**scores, "objects_all_30_slices": report.objects, "submit_seconds": round(seconds, 1)}
    emit("instances_isbi", figures)


if __name__ == "__main__":
    main()
