"""What the pipeline can feed: `submit` with a model that does no arithmetic, against a raw copy of the same data.

    python -m benchmarks.ceiling --units 20000 100000          # the issue's sizes: about an hour on 2 cores
    python -m benchmarks.ceiling --units 20000 --simulate 25   # and a simulated GPU at 25 Mpx/s
    python -m benchmarks.ceiling --units 64 --unit 128          # a smoke run (seconds)

For each size, a Zarr v3 volume of at least `--units` chunks of `--unit` px
(blosc lz4, EM-like texture, 64 chunks a plane) and, each in a fresh process
so that peaks and caches are its own:

* the raw copy rate: one process, zarr-python alone, reads each unit's window
  (the same window, halo included, that the pipeline reads) and writes its
  chunk to a Zarr array with the same codec: what a single core can move;
* `submit` through the predictor actors of the job's net (the paper's geometry
  and tile), whose forward is replaced by one that returns the tile's centre as
  its probability at once (`benchmarks.simulated`: masks with the input's
  structure, written as real masks are): e2e Mpx/s and units/s (Ray started before the
  clock), Mpx/s per CPU core, and the driver's peak RSS;
* where a unit's time goes: read, mirror, tiling (and normalise), Ray's
  transfer of its window and block, to-output, write and commit, timed on a
  sample of units with the pipeline's own functions; Ray's own share is what
  is left of the e2e CPU-seconds per unit.

With `--simulate MPX_S`, one more run on `--simulate-units` units has the
actor's forward sleep as a GPU at that rate would (no CPU), fed by reader and
writer tasks (`resources.io: tasks`): the fraction of the time it is busy.
Targets (issue #32): ceiling per core >= 0.5 of the raw copy rate; time per
unit at the two sizes within 10%; driver peak RSS ratio <= 1.05; simulated
GPU busy >= 0.9 where the CPUs can feed it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit

UNITS_ACROSS = 8  # a plane is 8 x 8 units
CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "models" / "unet-paper.yaml")


def make_volume(path: Path, units: int, unit: int, seed: int = 0) -> tuple[int, int]:
    """A (planes, side, side) uint8 volume of at least `units` chunks; returns (planes, side)."""
    import zarr
    from scipy import ndimage
    from zarr.codecs import BloscCodec

    side, planes = unit * UNITS_ACROSS, math.ceil(units / UNITS_ACROSS**2)
    if (path / "zarr.json").exists() and zarr.open_array(path, mode="r").shape == (planes, side, side):
        return planes, side  # made by an earlier run (--work): the same seed, the same pixels
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).random((side, side), dtype=np.float32), 3)
    texture = ((texture - texture.min()) / (np.ptp(texture) + 1e-6) * 255).astype(np.uint8)
    array = zarr.create_array(
        path, shape=(planes, side, side), chunks=(1, unit, unit), dtype="uint8", compressors=BloscCodec(cname="lz4")
    )
    for plane in range(planes):
        array[plane] = np.roll(texture, 7 * plane, axis=1)
    return planes, side


def job_document(volume: Path, output: Path, unit: int, resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "ceiling",
        "input": {"path": str(volume), "axes": "zyx"},
        "model": {"config": CONFIG},
        "inference": {"tile": 2 * unit, "batch_size": 4, "device": "cpu"},
        "output": {"path": str(output), "format": "ngff-0.4", "chunks": [unit, unit], "pyramid_levels": 0},
        "resources": resources,
    }


def unit_windows(planes: int, side: int, unit: int, tile: int) -> list[tuple[int, slice, slice, slice, slice]]:
    """(plane, window rows, window cols, block rows, block cols) of every unit, the window clamped to the plane."""
    from pipeline.model.config import UNetConfig
    from pipeline.model.geometry import net_geometry
    from pipeline.plan import UnitGrid, unit_grid

    geometry = net_geometry(UNetConfig.from_yaml(CONFIG))
    grid = UnitGrid("volume", planes, (side, side), (unit, unit))
    windows = []
    for index in range(grid.size):
        u = grid.unit(index)
        _, rows, cols = unit_grid(u, geometry, tile)
        clamp = lambda s: slice(max(s.start, 0), min(s.stop, side))  # noqa: E731
        windows.append((u.plane, clamp(rows), clamp(cols), slice(u.y0, u.y1), slice(u.x0, u.x1)))
    return windows


def raw_copy(volume: str, out: str, unit: int, tile: int, seconds: float) -> dict[str, Any]:
    """zarr alone, one process: read each unit's window, write its chunk; for `seconds` or all units."""
    import zarr
    from zarr.codecs import BloscCodec

    source = zarr.open_array(volume, mode="r")
    planes, side, _ = source.shape
    target = zarr.create_array(
        out, shape=source.shape, chunks=(1, unit, unit), dtype="uint8", compressors=BloscCodec(cname="lz4")
    )
    done, start = 0, time.perf_counter()
    for plane, rows, cols, block_rows, block_cols in unit_windows(planes, side, unit, tile):
        window = np.asarray(source[plane, rows, cols])
        target[plane, block_rows, block_cols] = window[
            block_rows.start - rows.start : block_rows.stop - rows.start,
            block_cols.start - cols.start : block_cols.stop - cols.start,
        ]
        done += 1
        if time.perf_counter() - start > seconds:
            break
    elapsed = time.perf_counter() - start
    return {
        "units": done,
        "seconds": round(elapsed, 2),
        "raw_copy_megapixels_per_second": round(done * unit * unit / 1e6 / elapsed, 2),
    }


def pipeline_run(
    volume: str, output: str, unit: int, resources: dict[str, Any], rate: float, log: str | None, split: int
) -> dict[str, Any]:
    """One `submit` with the simulated predictor at `rate` Mpx/s (inf: no time); Ray started before the clock."""
    import ray

    from benchmarks.simulated import simulated
    from pipeline.driver import submit
    from pipeline.run import init_ray
    from pipeline.spec import JobSpec

    job = JobSpec.model_validate(job_document(Path(volume), Path(output), unit, resources))
    init_ray(None)
    cores = len(os.sched_getaffinity(0))  # the machine's, not Ray's logical CPUs (a few more than the cores)
    start = time.perf_counter()
    report = submit(job, make_predictor=simulated(rate, log))
    wall = time.perf_counter() - start
    figures: dict[str, Any] = {
        "units": report.units_done,
        "failed": len(report.units_quarantined),
        "seconds": round(wall, 2),
        "cores": cores,
        "units_per_second": round(report.units_done / wall, 2),
        "megapixels_per_second": round(report.megapixels / wall, 2),
        "megapixels_per_second_per_core": round(report.megapixels / wall / cores, 3),
        "seconds_per_unit": round(wall / max(report.units_done, 1), 5),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if split:
        figures["split_ms_per_unit"] = unit_split(job, figures, split)
    ray.shutdown()
    return figures


def unit_split(job: Any, e2e: dict[str, Any], sample: int) -> dict[str, float]:
    """Milliseconds per unit in each step, timed on `sample` consecutive units with the pipeline's functions."""
    import ray

    from benchmarks.manifest import fabricate
    from benchmarks.simulated import SimulatedPredictor
    from pipeline import driver, netpass, stages
    from pipeline.io.archive import open_archive
    from pipeline.plan import WorkUnit, unit_grid
    from pipeline.planner import plan_job
    from pipeline.predict import predict_windows
    from pipeline.windows import affine_of, packed, travelling

    # An output of its own: the run's is complete, and would plan nothing.
    job = job.model_copy(update={"output": job.output.model_copy(update={"path": job.output.path + "-split"})})
    resolved = driver.resolve(job, overwrite=False, create=True)
    model = resolved.model
    archive = open_archive(job.input.path, job.input.axes, job.input.stack)
    plan = plan_job(archive, resolved.planning()).images[0]
    ctx = netpass.stage_context(job, model.geometry, "split")
    null = SimulatedPredictor(model.geometry, model.config.classes, 0.0)
    steps = dict.fromkeys(("read", "mirror", "tiling", "transfer", "to_output", "write"), 0.0)
    rows = list(netpass.image_rows(plan).rows(0, min(sample, plan.total)))
    image = stages._image(ctx, plan.key)
    height, width = image.plane_shape
    for row in rows:
        unit = WorkUnit.from_dict(row)
        grid, wr, wc = unit_grid(unit, ctx.geometry, ctx.tile)
        t0 = time.perf_counter()
        raw = image.read_blocks(
            unit.plane, slice(max(wr.start, 0), min(wr.stop, height)), slice(max(wc.start, 0), min(wc.stop, width))
        )
        t1 = time.perf_counter()
        window = travelling(image.read_window(unit.plane, wr, wc), row["scale"], row["offset"], ctx.nonfinite, "split")
        t2 = time.perf_counter()
        affine = affine_of(window, row["scale"], row["offset"])
        (probabilities,) = predict_windows(null, [(grid, window)], ctx.batch_size, [affine])
        t3 = time.perf_counter()
        row["block"] = stages.to_output(probabilities, ctx)
        t4 = time.perf_counter()
        if not job.resources.io_in_actor():  # reader tasks: the window and the block cross the object store
            ray.get(ray.put(packed(window))), ray.get(ray.put(row["block"]))
        t5 = time.perf_counter()
        stages.write_from(row, ctx)
        t6 = time.perf_counter()
        del raw
        # read_window read the blocks again (from the cache): its mirror is t2 - t1 less a cache hit.  An 8 or 16 bit
        # window travels as stored; the model normalises it (pipeline.windows), here in `tiling`.
        for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t5 - t4, t4 - t3, t6 - t5), strict=True):
            steps[name] += seconds
    split = {name: round(1000 * seconds / len(rows), 3) for name, seconds in steps.items()}
    with tempfile.TemporaryDirectory() as tmp:
        _, commit_seconds, _ = fabricate(tmp, 100_000)
    split["commit"] = round(1000 * commit_seconds / 100_000, 4)
    cpu_ms = 1000 * e2e["seconds"] * e2e["cores"] / max(e2e["units"], 1)
    split["e2e_cpu"] = round(cpu_ms, 3)
    split["ray_and_rest"] = round(cpu_ms - sum(v for k, v in split.items() if k != "e2e_cpu"), 3)
    return split


def in_fresh_process(fn: Any, *args: Any) -> Any:
    """fn(*args) in a new process: its memory peak, caches and Ray are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def resources(args: argparse.Namespace, io: str) -> dict[str, Any]:
    actors = args.actors or (len(os.sched_getaffinity(0)) if io == "actor" else 1)
    return {"io": io, "actors": actors, "cpus_per_actor": args.cpus_per_actor, "units_per_task": args.units_per_task}


def one_size(work: Path, units: int, args: argparse.Namespace) -> dict[str, Any]:
    volume = work / f"volume-{units}.zarr"
    t = time.perf_counter()
    planes, side = in_fresh_process(make_volume, volume, units, args.unit)
    made = round(time.perf_counter() - t, 1)
    raw = in_fresh_process(
        raw_copy, str(volume), str(work / f"raw-{units}.zarr"), args.unit, 2 * args.unit, args.raw_seconds
    )
    run = in_fresh_process(
        pipeline_run,
        str(volume),
        str(work / f"out-{units}"),
        args.unit,
        resources(args, args.io),
        math.inf,
        None,
        args.split,
    )
    per_core = run["megapixels_per_second_per_core"] / raw["raw_copy_megapixels_per_second"]
    return {
        "units": planes * UNITS_ACROSS**2,
        "volume": {"shape": [planes, side, side], "chunks": [1, args.unit, args.unit], "seconds_to_make": made},
        "raw_copy": raw,
        "pipeline": run,
        "ceiling_per_core_to_raw_copy": round(per_core, 3),
    }


def simulated_gpu(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    volume, log = work / "volume-gpu.zarr", work / "gpu-calls"
    log.mkdir()
    in_fresh_process(make_volume, volume, args.simulate_units, args.unit)
    run = in_fresh_process(
        pipeline_run,
        str(volume),
        str(work / "out-gpu"),
        args.unit,
        resources(args, "tasks"),
        args.simulate,
        str(log),
        0,
    )
    from benchmarks.simulated import busy_figures

    return {"megapixels_per_second_simulated": args.simulate, **run, **busy_figures(log, run["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[20_000])
    parser.add_argument("--unit", type=int, default=512, help="chunk and work unit side, px")
    parser.add_argument(
        "--io", choices=["tasks", "actor"], default="actor", help="resources.io: actor (CPU nodes), tasks (GPU feeding)"
    )
    parser.add_argument("--actors", type=int, help="predictor actors (default: one a core with --io actor, else 1)")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--units-per-task", type=int, default=32, help="resources.units_per_task")
    parser.add_argument("--split", type=int, default=256, help="units sampled for the time split (0: none)")
    parser.add_argument("--raw-seconds", type=float, default=60, help="cap on the raw copy's time")
    parser.add_argument("--simulate", type=float, help="also run a simulated GPU at this many output Mpx/s")
    parser.add_argument("--simulate-units", type=int, default=2048)
    parser.add_argument("--work", type=Path, help="folder for the volumes (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sa-ceiling-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = []
    for units in args.units:
        sizes.append(one_size(work, units, args))
        print(json.dumps(sizes[-1]), file=sys.stderr, flush=True)  # kept if a later size fails
    figures: dict[str, Any] = {"resources": resources(args, args.io), "sizes": sizes}
    if len(sizes) > 1:
        first, last = sizes[0]["pipeline"], sizes[-1]["pipeline"]
        figures["seconds_per_unit_ratio"] = round(last["seconds_per_unit"] / first["seconds_per_unit"], 3)
        figures["driver_peak_rss_ratio"] = round(last["driver_peak_rss_mb"] / first["driver_peak_rss_mb"], 3)
    if args.simulate:
        gpu = simulated_gpu(work, args)
        figures["simulated_gpu"] = gpu
    ceiling = sizes[0]["pipeline"]["megapixels_per_second_per_core"]
    figures["cores_per_gpu_for_paper_net_at_100_mpx_s"] = round(100 / ceiling, 1) if ceiling else None
    emit("ceiling", figures)


if __name__ == "__main__":
    main()
