"""The Ray boundary: the only module of the package that imports ray (training's launcher aside).

One Ray Data stream per pass of a job: the pending units are made lazily in
Ray's read tasks from a few [start, stop) ranges per image (`PendingUnits`),
read -> predict -> write on an actor pool that starts once and stays loaded,
and the finished rows (no pixels) come back to the driver (`pipeline.driver`).
Locally (no address) Ray starts in-process; with an address the same code runs
on a cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import ray
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.cpumemory import malloc_env
from pipeline.errors import ConfigError
from pipeline.rows import ImageRows
from pipeline.spec import ResourcesSpec
from pipeline.stages import (
    PredictorFactory,
    PredictStage,
    ReadPredictWriteStage,
    StageContext,
    read_unit,
    write_unit,
)

log = logging.getLogger(__name__)

# Rows per task of the instance pass: a task costs ~0.3 s of Ray overhead, a row of it ~0.05 s.
ROWS_PER_CPU_TASK = 16
# Units a read task makes (lazily, a block at a time).  Few read tasks: each is a Ray task whose
# start costs the model CPU on a small machine (128 tasks of 2 units each took 0.93 -> 0.78 of the
# bare model on 2 cores), and the driver's list of them stays short whatever the archive.
MAX_UNITS_PER_READ = 4096
# Ray starts its workers at niceness 15, below the driver and Ray's own processes.  The model
# is what every other worker waits for: its actor gets the driver's priority (as Ray's job
# supervisor does for its own actor), so readers, writers and Ray's start-up use the gaps.
PREDICTOR_PRIORITY = {"RAY_worker_niceness": "0"}

Segment = tuple[ImageRows, int, int]  # the units [start, stop) of one image


def init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, private cluster
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.WARNING}
    # Ray's core worker installs its own SIGTERM handler (it aborts the process); the CLI's, which
    # commits, records and releases the lock first, is put back once Ray is up.
    sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, TimeoutError) as exc:  # nothing there, a wrong port, a bad scheme
            raise ConfigError(
                f"resources.address {address}: cannot connect to a Ray cluster there: {exc} "
                "(a head node's GCS is host:6379 or auto; a Ray Client server is ray://host:10001)"
            ) from None
    else:
        # A little over the core count, so reader and writer tasks run beside busy actors.
        # "local": a Ray of our own, even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=(os.cpu_count() or 1) + 2, **kwargs)
    if callable(sigterm) and threading.current_thread() is threading.main_thread():  # handlers live there only
        signal.signal(signal.SIGTERM, sigterm)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own bar and report say it all


def reconnect(address: str | None) -> None:
    """A fresh Ray connection (and, locally, a fresh Ray) before a failed stream runs again.

    A stream that failed as a whole (a node lost) can leave this driver's Ray worker holding
    references whose owners are gone; the next stream in the same connection then failed on them
    ("owner is unknown"), or hung, on a cluster that had lost a node.
    """
    ray.shutdown()
    init_ray(address)


def check_resources(r: ResourcesSpec) -> None:
    """ConfigError, naming the field, if a local Ray could never hold the actors asked for (they would wait forever).

    On a cluster (`resources.address`) an autoscaler may still add the nodes: a warning only.
    """
    try:
        refuse_unschedulable(r)
    except ConfigError as exc:
        if not r.address:
            raise
        log.warning("%s; waiting for the cluster's autoscaler to add nodes", exc)


def refuse_unschedulable(r: ResourcesSpec) -> None:
    have = ray.cluster_resources()
    cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
    if r.gpus_per_actor > gpus:
        raise ConfigError(f"resources.gpus_per_actor {r.gpus_per_actor:g}: the Ray cluster has {gpus:g} GPU(s)")
    if r.actors * r.gpus_per_actor > gpus:
        raise ConfigError(
            f"resources.actors {r.actors} x gpus_per_actor {r.gpus_per_actor:g}: the Ray cluster has {gpus:g} GPU(s)"
        )
    if r.actors * r.actor_cpus() > cpus:
        raise ConfigError(
            f"resources.actors {r.actors} x cpus_per_actor {r.actor_cpus():g}: the Ray cluster has {cpus:g} CPU(s)"
        )


def split_segments(segments: list[Segment], size: int) -> list[list[Segment]]:
    """Consecutive pieces of at most `size` units each, in unit order."""
    tasks: list[list[Segment]] = [[]]
    room = size
    for rows, start, stop in segments:
        while start < stop:
            if room == 0:
                tasks.append([])
                room = size
            end = min(stop, start + room)
            tasks[-1].append((rows, start, end))
            room -= end - start
            start = end
    return [t for t in tasks if t]


def units_per_read(total: int, rows_per_block: int) -> int:
    """Units a read task makes: a whole number of blocks, at most MAX_UNITS_PER_READ (about)."""
    per_task = max(1, min(MAX_UNITS_PER_READ, total))
    return -(-per_task // rows_per_block) * rows_per_block


def unit_blocks(segments: list[Segment], rows_per_block: int) -> Iterator[Any]:
    """Ray blocks of `rows_per_block` unit rows each, made from the segments as they are read."""
    batch: list[dict[str, Any]] = []
    for rows, start, stop in segments:
        for row in rows.rows(start, stop):
            batch.append(row)
            if len(batch) == rows_per_block:
                yield block_of(batch)
                batch = []
    if batch:
        yield block_of(batch)


def block_of(rows: list[dict[str, Any]]) -> Any:
    return BlockAccessor.batch_to_block({k: np.array([r[k] for r in rows]) for k in rows[0]})


class PendingUnits(Datasource):
    """The pending units of a pass as Ray Data rows, made in the read tasks: nothing per unit on the driver."""

    def __init__(self, segments: list[Segment], rows_per_block: int) -> None:
        self.segments, self.rows_per_block = segments, rows_per_block
        self.total = sum(stop - start for _, start, stop in segments)

    def estimate_inmemory_data_size(self) -> int:
        return self.total * 256

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list:
        size, per_block = units_per_read(self.total, self.rows_per_block), self.rows_per_block
        tasks = []
        for piece in split_segments(self.segments, size):
            units = sum(stop - start for _, start, stop in piece)
            meta = BlockMetadata(num_rows=units, size_bytes=units * 256, input_files=None, exec_stats=None)
            tasks.append(ReadTask(partial(unit_blocks, piece, per_block), meta))
        return tasks


def unit_stream(
    segments: list[Segment],
    ctx: StageContext,
    r: ResourcesSpec,
    batch_size: int,
    make_predictor: PredictorFactory | None = None,
) -> Iterator[Any]:
    """Finished rows of one stream of units through read -> predict -> write (by the job's model, by default)."""
    # A few units per block: each task or actor call costs Ray a fixed overhead that, on a small
    # machine, the model pays for (one unit per block: 0.70 of the bare model; two: 0.81).
    # Ray Data coalesces a read task's small blocks; asking for one block per `units_per_task`
    # units splits them again, so the actors get (and commits see) a few units at a time.
    units = r.task_units()
    source = PendingUnits(segments, units)
    ds: Any = ray.data.read_datasource(source, override_num_blocks=-(-source.total // units))
    if r.io_in_actor():  # a call per block: Ray Data's cost per call is paid per block, not per unit
        yield from on_predictors(ds, ReadPredictWriteStage, ctx, r, units, make_predictor).iter_rows()
        return
    # Reads must stay CPU tasks of their own, not fused into the predictor actors (the
    # model must not wait on decoding).  Ray Data fuses stages whose resource requests
    # are equal (ray-project/ray#54433), so a reader never asks for exactly an actor's CPUs.
    reader_cpus = r.cpus_per_reader if r.cpus_per_reader != r.actor_cpus() else r.cpus_per_reader * 0.999
    ds = ds.map(read_unit, fn_kwargs={"ctx": ctx}, num_cpus=reader_cpus)
    ds = on_predictors(ds, PredictStage, ctx, r, batch_size, make_predictor)
    # write_unit returns only the small columns: a select_columns stage here would be a
    # task of its own asking for a whole CPU, and stalled the stream until the end.
    ds = ds.map(write_unit, fn_kwargs={"ctx": ctx}, num_cpus=reader_cpus)
    yield from ds.iter_rows()


def on_predictors(
    ds: Any,
    stage: type[PredictStage],
    ctx: StageContext,
    r: ResourcesSpec,
    rows_per_call: int,
    make_predictor: PredictorFactory | None = None,
) -> Any:
    """`ds` mapped by `stage` on the pool of predictor actors (one model each), `rows_per_call` rows a call."""
    with warnings.catch_warnings():
        # max_restarts is passed as Ray Data documents it (actor_pool_map_operator: "map_batches(...,
        # max_restarts=0) to disable"), through the remote args it now calls deprecated; no named
        # parameter replaces it yet.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            stage,
            fn_constructor_kwargs={"ctx": ctx, "make_predictor": make_predictor},
            batch_size=rows_per_call,
            batch_format="numpy",
            # Calls run on the actor's own thread, the one that built the model, not on a thread
            # of Ray Data's.  torch's OpenMP then has one team of threads, which spins at its
            # barriers; with a second team libgomp counts more threads than cores and sleeps at
            # every barrier instead (on 2 cores: 1,100 sleeps a second, each forward 3% slower).
            # One call at a time all the same: the actor's max_concurrency stays 1.
            compute=ray.data.ActorPoolStrategy(size=r.actors, enable_true_multi_threading=True),
            num_gpus=r.gpus_per_actor,
            num_cpus=r.actor_cpus(),
            zero_copy_batch=True,
            # A lost actor fails the stream, and the driver streams the units still pending again
            # (passes.streamed).  Ray's own restart would rebuild the actor from constructor arguments
            # kept in the object store, which it warns of on the terminal at every start (ray#53727).
            max_restarts=0,
            # Set before the actor's first allocation: on a CPU, the model's forwards stop
            # page-faulting their activations in again (see pipeline.cpumemory).
            runtime_env={"env_vars": {**malloc_env(), **PREDICTOR_PRIORITY}},
        )


def cpu_stream(
    rows: list[dict[str, Any]], fn: Callable[..., dict[str, Any]], ctx: StageContext, cpus: float
) -> Iterator[dict[str, Any]]:
    """Rows through one stage of CPU tasks (the instance pass); yielded as they finish."""
    if not rows:
        return
    ds: Any = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // ROWS_PER_CPU_TASK))
    yield from ds.map(fn, fn_kwargs={"ctx": ctx}, num_cpus=cpus).iter_rows()
