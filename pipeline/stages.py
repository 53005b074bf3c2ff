"""What Ray's workers do to one work unit, as plain functions (no Ray here).

read_unit (CPU task) -> PredictStage (actor, one model) -> write_unit (CPU task),
or, for CPU actors, all three in the actor: ReadPredictWriteStage.  A window
travels as `pipeline.windows` packs it (8 and 16 bit images as stored).
A unit's failure never raises out of a stage: it travels as `error` (and its
`failure` kind) in the row, since Ray Data would otherwise fail the whole
dataset, and later stages pass it on.  A transient failure is tried again in
place, up to `resources.retries` times, so a retry never restarts the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.faults import inject
from pipeline.io.archive import Archive, open_archive
from pipeline.io.image import LazyImage
from pipeline.io.maskstore import MaskStore
from pipeline.io.normalize import normalize
from pipeline.model.geometry import NetGeometry
from pipeline.outcome import FailureKind, failure_kind, failure_message
from pipeline.outputkinds import OutputKind
from pipeline.plan import WorkUnit, unit_grid
from pipeline.rows import OUTCOME_COLUMNS
from pipeline.spec import SkipEmpty
from pipeline.windows import affine_of, packed, travelling, travels_raw, unpacked

if TYPE_CHECKING:
    from pipeline.predict import TilePredictor


@dataclass(frozen=True)
class StageContext:
    """Plain, picklable settings every worker needs."""

    input_url: str
    axes: str | None
    stack: bool
    output_url: str
    output: OutputKind  # what the net's pass turns probabilities into (JobSpec.output_kind)
    geometry: NetGeometry
    tile: int
    batch_size: int
    nonfinite: str
    checkpoint: str | None
    config: str | None
    seed: int
    device: str
    precision: str
    threads: int = 1
    retries: int = 2  # further attempts at a unit whose failure is transient
    skip_empty: SkipEmpty | None = None  # flat blocks skip the net
    # Worker caches of opened images are per run: a rerun must see the archive as it is now.
    run_id: str = ""


# Makes the predictor of an actor from the job's settings; top-level (picklable), since Ray ships it to the actor.
PredictorFactory = Callable[[StageContext], "TilePredictor"]


def empty_window(ctx: StageContext) -> tuple[np.ndarray, str]:
    """Placeholder window of a failed unit, packed (uint8 bytes and a dtype) as a real one is.

    Ray Data stores a column as one Arrow tensor type, so placeholders must not
    change the column's dtype or number of dimensions.
    """
    return packed(np.zeros((1, 0, 0), dtype=np.uint8))


def empty_block(ctx: StageContext) -> np.ndarray:
    return ctx.output.empty_block()


def describe_failure(unit: dict[str, Any], exc: BaseException) -> str:
    return failure_message(f"{unit['key']} plane {unit['plane']} block ({unit['row']}, {unit['col']})", exc)


def record_failure(row: dict[str, Any], exc: BaseException, attempts: int) -> None:
    row["error"] = describe_failure(row, exc)
    row["failure"] = failure_kind(exc).value
    row["attempts"] = max(int(row["attempts"]), attempts)


def retry_pause(attempt: int) -> float:
    """Seconds before another try: short, doubling (a store's brief hiccup, not an outage)."""
    return min(2.0, 0.05 * 2**attempt)


def attempted(rows: list[dict[str, Any]], work: Callable[[], None], retries: int) -> None:
    """Do one stage's work on units (one, or a batch the work serves together); a transient failure
    is tried again up to `retries` times.  A final failure is recorded in each row, never raised.
    """
    for attempt in range(1, retries + 2):
        try:
            work()
            for row in rows:
                row["attempts"] = max(int(row["attempts"]), attempt)
            return
        except Exception as exc:
            if failure_kind(exc) is not FailureKind.TRANSIENT or attempt > retries:
                for row in rows:
                    record_failure(row, exc, attempt)
                return
            time.sleep(retry_pause(attempt))


@lru_cache(maxsize=4)
def _archive(url: str, axes: str | None, stack: bool, run_id: str) -> Archive:
    return open_archive(url, axes, stack)


@lru_cache(maxsize=32)
def _image(ctx: StageContext, key: str) -> LazyImage:
    return _archive(ctx.input_url, ctx.axes, ctx.stack, ctx.run_id).open(key)


def is_flat(pixels: np.ndarray, std_below: float, stride: int) -> bool:
    """True when every channel of (C, h, w) pixels, sampled every `stride` px, varies less than `std_below`."""
    sample = pixels[:, ::stride, ::stride]
    return bool(sample.size) and float(sample.reshape(sample.shape[0], -1).std(axis=1).max()) < std_below


def read_unit(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Add the unit's mirrored input window (C, h, w), packed to travel (`pipeline.windows`), or mark the
    unit skipped."""
    row["window"], row["window_dtype"] = empty_window(ctx)
    if not row["error"]:
        inject("read")
        attempted([row], lambda: read_into(row, ctx), ctx.retries)
    return row


def read_into(row: dict[str, Any], ctx: StageContext) -> None:
    inject("read_attempt")
    unit = WorkUnit.from_dict(row)
    image = _image(ctx, unit.key)
    _, rows, cols = unit_grid(unit, ctx.geometry, ctx.tile)
    raw = image.read_window(unit.plane, rows, cols)
    where = f"{image.source} plane {unit.plane} block ({unit.row}, {unit.col})"
    window = travelling(raw, row["scale"], row["offset"], ctx.nonfinite, where)
    if ctx.skip_empty:
        block = window[:, unit.y0 - rows.start : unit.y1 - rows.start, unit.x0 - cols.start : unit.x1 - cols.start]
        if travels_raw(block.dtype):  # flat is judged on what the model would see
            block = normalize(block, row["scale"], row["offset"], ctx.nonfinite, where)
        if is_flat(block, ctx.skip_empty.std_below, ctx.skip_empty.stride):
            row["skipped"] = True
            return
    row["window"], row["window_dtype"] = packed(window)


def background(classes: int, shape: tuple[int, int], ctx: StageContext) -> np.ndarray:
    """What the store holds for a block of pure background (class 0 everywhere)."""
    probabilities = np.zeros((classes, *shape), dtype=np.float32)
    probabilities[0] = 1 if classes > 1 else 0
    return to_output(probabilities, ctx)


def to_output(probabilities: np.ndarray, ctx: StageContext) -> np.ndarray:
    """(classes, h, w) probabilities -> what the net's pass stores for the job's output kind."""
    return ctx.output.from_probabilities(probabilities)


def job_predictor(ctx: StageContext) -> TilePredictor:
    """The job's model on the job's device (the predictor actors' default)."""
    import torch

    from pipeline.predict import Predictor
    from pipeline.runtime import load_model

    torch.set_num_threads(ctx.threads)
    return Predictor.create(load_model(ctx.checkpoint, ctx.config, ctx.seed), ctx.device, ctx.precision)  # type: ignore[arg-type]


class PredictStage:
    """One model on one device; predicts the blocks of a batch of units, tiles batched across units."""

    def __init__(self, ctx: StageContext, make_predictor: PredictorFactory | None = None) -> None:
        self.ctx = ctx
        self.predictor = (make_predictor or job_predictor)(ctx)
        self.classes = self.predictor.classes

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = batch_rows(batch)
        self.predict_rows(rows)
        return rows_batch(rows, batch)

    def predict_rows(self, rows: list[dict[str, Any]]) -> None:
        """Give each read row its `block` (or its `error`); windows are dropped."""
        from pipeline.predict import predict_windows

        inject("predict")
        todo = [r for r in rows if not r["error"] and not r["skipped"]]
        for r in rows:
            if r["skipped"] and not r["error"]:
                shape = (int(r["y1"] - r["y0"]), int(r["x1"] - r["x0"]))
                r["block"] = background(self.classes, shape, self.ctx)
        jobs, affines = [], []
        for r in todo:
            grid, _, _ = unit_grid(WorkUnit.from_dict(r), self.ctx.geometry, self.ctx.tile)
            window = unpacked(r["window"], r["window_dtype"])
            jobs.append((grid, window))
            affines.append(affine_of(window, r["scale"], r["offset"]))

        def predict() -> None:  # the batch succeeds or fails whole (e.g. out of memory): each unit says so
            outputs = predict_windows(self.predictor, jobs, self.ctx.batch_size, affines)
            for r, probabilities in zip(todo, outputs, strict=True):
                r["block"] = to_output(probabilities, self.ctx)

        attempted(todo, predict, self.ctx.retries)
        for r in rows:
            r["window"], r["window_dtype"] = empty_window(self.ctx)
            if r["error"] or "block" not in r:
                r["block"] = empty_block(self.ctx)


class ReadPredictWriteStage(PredictStage):
    """A CPU actor's whole unit: read, predict and write in the actor (`ResourcesSpec.io_in_actor`).

    Only the small columns travel through Ray: no window or block in the object store.
    """

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [read_unit(row, self.ctx) for row in batch_rows(batch)]
        self.predict_rows(rows)
        return rows_batch([write_unit(row, self.ctx) for row in rows], batch)


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Data's batch of columns as a list of rows."""
    return [{k: batch[k][i] for k in batch} for i in range(len(batch["key"]))]


def rows_batch(rows: list[dict[str, Any]], empty: dict[str, Any]) -> dict[str, Any]:
    """Rows back as a batch of columns (`empty`, an empty batch, has none to give)."""
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else empty


@lru_cache(maxsize=2)
def output_store(url: str, kind: str, run_id: str) -> MaskStore:
    """The worker's handle on one kind of output of the run (it keeps the arrays it writes open)."""
    return MaskStore(url, kind)


FINISHED_COLUMNS = (*OUTCOME_COLUMNS, "skipped")


def write_unit(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Write the unit's block into the mask store (whole chunks, atomic per chunk).

    Returns only what the driver needs to commit the unit (no pixels).
    """
    if not row["error"]:
        inject("write")
        attempted([row], lambda: write_from(row, ctx), ctx.retries)
    return {k: row[k] for k in FINISHED_COLUMNS}


def write_from(row: dict[str, Any], ctx: StageContext) -> None:
    inject("write_attempt")
    unit = WorkUnit.from_dict(row)
    coords = {"t": int(row["t"]), "z": int(row["z"])}
    rows, cols = slice(unit.y0, unit.y1), slice(unit.x0, unit.x1)
    output_store(ctx.output_url, ctx.output.net_output.name, ctx.run_id).write_block(
        unit.key, coords, row["out_axes"], rows, cols, row["block"]
    )
