"""`submit` end to end on local Ray: exact, resumable, incremental, and bad input quarantined."""

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.driver import submit
from pipeline.errors import ConfigError, ExitCode
from pipeline.spec import JobSpec, SkipEmpty
from tests.jobs import FORMATS, expected_outputs, make_archive, make_job, stored

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("local_ray")


@pytest.mark.parametrize(
    ("actors", "batch_size", "chunks", "io"),
    [(1, 1, (32, 32), "actor"), (2, 3, (48, 40), "actor"), (2, 3, (48, 40), "tasks")],
    ids=["1-actor", "2-actors", "2-actors-fed-by-tasks"],
)
def test_distributed_probabilities_equal_predict_image(tmp_path, actors, batch_size, chunks, io):
    job = JobSpec.load(
        make_job(
            tmp_path,
            make_archive(tmp_path / "in"),
            kind="probabilities",
            actors=actors,
            batch_size=batch_size,
            chunks=chunks,
            io=io,
        )
    )
    report = submit(job)
    assert report.status == "complete" and report.units_done == report.plan["units_total"]
    for key, probabilities in expected_outputs(job).items():
        got = stored(job, key)  # OME order: (c, z, y, x)
        assert got.shape == (2, probabilities.shape[0], *probabilities.shape[2:])
        got = got.swapaxes(0, 1)
        assert np.abs(got - probabilities).max() <= 1e-4


def test_8_bit_16_bit_and_float_images_in_one_stream_equal_predict_image_on_their_normalised_pixels(tmp_path):
    """Reader tasks ship 8 and 16 bit windows as stored and the actor normalises them, float windows
    normalised: one Ray column carries all three, and each image keeps its own percentile affine."""
    from pipeline.io.archive import open_archive
    from pipeline.io.normalize import affine_for, normalize
    from pipeline.predict import predict_image
    from pipeline.runtime import load_model

    archive = tmp_path / "in"
    archive.mkdir()
    rng = np.random.default_rng(1)
    for name, pixels in {
        "a8.tif": rng.integers(200, 255, (40, 50)).astype(np.uint8),  # far from 0: offsets of -3.6 and -1.5
        "b16.tif": rng.integers(30000, 50000, (40, 50)).astype(np.uint16),
        "c32.tif": rng.normal(3.0, 2.0, (40, 50)).astype(np.float32),
    }.items():
        tifffile.imwrite(archive / name, pixels, photometric="minisblack")
    path = make_job(tmp_path, archive, kind="probabilities", chunks=(16, 16), io="tasks", batch_size=4)
    path.write_text(path.read_text().replace("inference: {", "inference: {normalize: {mode: percentile}, "))
    job = JobSpec.load(path)
    assert submit(job).status == "complete"
    model = load_model(job.model.checkpoint, job.model.config, job.model.seed)
    images = open_archive(str(archive))
    for key in images.image_keys():
        image = images.open(key)
        scale, offset = affine_for(image, job.inference.normalize)
        plane = normalize(image.read(0, slice(0, 40), slice(0, 50)), scale, offset, "reject", key)
        expected = predict_image(model, plane, tile=job.inference.tile, device="cpu")
        assert np.abs(stored(job, key) - expected).max() <= 1e-4, key  # (c, y, x)


def test_distributed_labels_equal_argmax_exactly_and_open_in_ome_zarr(tmp_path):
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in"), chunks=(16, 24)))
    submit(job)
    for key, probabilities in expected_outputs(job).items():
        np.testing.assert_array_equal(stored(job, key), probabilities.argmax(axis=1).astype(np.uint8))
    (label,) = [n for n in Reader(parse_url(f"{job.output.path}/labels/img0", fmt=FormatV04()))() if n.data]
    assert [d.shape for d in label.data] == [(2, 70, 90), (2, 35, 45)]
    assert label.metadata["name"] == "img0" and "Label" in [type(s).__name__ for s in label.specs]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_rerun_of_a_grown_archive_processes_only_new_images(tmp_path, fmt):
    archive = make_archive(tmp_path / "in")
    job = JobSpec.load(make_job(tmp_path, archive, **FORMATS[fmt]))
    first = submit(job)
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (tmp_path / "out.zarr" / "labels" / "img0").rglob("*")
        if p.is_file()
    }
    tifffile.imwrite(archive / "img9.tif", np.zeros((1, 40, 40), np.uint8), photometric="minisblack")
    second = submit(job)
    assert second.plan["images_up_to_date"] == 2 and second.plan["images_to_process"] == 1
    assert second.units_done == 4 and first.units_done > second.units_done
    after = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (tmp_path / "out.zarr" / "labels" / "img0").rglob("*")
        if p.is_file()
    }
    assert before == after
    assert submit(job).units_done == 0
    status = CliRunner().invoke(main, ["status", str(tmp_path / "job.yaml")])
    assert status.exit_code == 0 and "3 complete" in status.output and "units: 30 done, 0 failed" in status.output


def test_a_changed_model_is_refused_unless_overwrite(tmp_path):
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 40),))))
    submit(job)
    changed = job.model_copy(update={"model": job.model.model_copy(update={"seed": 4})})
    with pytest.raises(ConfigError, match="different job.*--overwrite"):
        submit(changed)
    assert submit(changed, overwrite=True).status == "complete"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_images_are_quarantined_and_the_rest_completes_with_exit_code_partial(tmp_path, fmt):
    archive = make_archive(tmp_path / "in")
    (archive / "empty.tif").write_bytes(b"")
    tifffile.imwrite(archive / "nan.tif", np.full((1, 40, 40), np.nan, np.float32))
    result = CliRunner().invoke(main, ["submit", str(make_job(tmp_path, archive, **FORMATS[fmt])), "--quiet"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "empty.tif: empty file" in result.output and "NaN/inf" in result.output
    job = JobSpec.load(tmp_path / "job.yaml")
    assert stored(job, "img0").shape == (2, 70, 90)


def test_dry_run_and_plan_write_nothing(tmp_path):
    job = str(make_job(tmp_path, make_archive(tmp_path / "in")))
    for args in (["submit", job, "--dry-run"], ["plan", job]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "2 image(s) to process" in result.output and "26 unit(s) pending" in result.output
        # per image: what was read (axes and how they were found, dtype, size) and its units
        assert "img0: axes zyx (inferred), uint8, 2 plane(s) of 70 x 90, 18 of 18 unit(s) pending" in result.output
        assert "tile: 64 asked, " in result.output
    assert not (tmp_path / "out.zarr").exists()


def test_plan_suggests_the_tile_that_wastes_least_for_the_model(tmp_path):
    job = make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 40),)), tile=512, chunks=(512, 512))
    job.write_text(job.read_text().replace(str(tmp_path / "model.yaml"), str(ROOT / "configs/models/unet-bn.yaml")))
    result = CliRunner().invoke(main, ["plan", str(job)])
    assert result.exit_code == 0, result.output
    # a margin of 112 px: four tiles of 480 a unit, each keeping 256 x 256, where one tile of 736 does
    assert "480 x 480 px used for a unit of 512 x 512, 256 x 256 of it kept (28%" in result.output
    assert "inference.tile: 736 would keep 48% of the pixels the net computes, not 28%" in result.output


def test_mask_output_and_a_channel_mismatch_quarantined_by_name(tmp_path):
    archive = make_archive(tmp_path / "in", sizes=((40, 40),))
    tifffile.imwrite(archive / "rgb.tif", np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    job = JobSpec.load(make_job(tmp_path, archive, kind="mask"))
    report = submit(job)
    assert report.status == "partial"
    assert "rgb.tif: image has 3 channel(s)" in report.images_quarantined["rgb"]
    probabilities = expected_outputs(
        job.model_copy(update={"input": job.input.model_copy(update={"path": str(archive / "img0.tif")})})
    )["img0"]
    np.testing.assert_array_equal(stored(job, "img0"), (probabilities[:, 1] >= 0.5).astype(np.uint8))


def test_a_second_submit_while_the_first_holds_the_lock_exits_locked(tmp_path):
    from pipeline.manifest import Manifest

    job_path = make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 40),)))
    with Manifest(str(tmp_path / "out.zarr")).lock():  # a live run of the same job
        result = CliRunner().invoke(main, ["submit", str(job_path), "--quiet"])
    assert result.exit_code == ExitCode.LOCKED, result.output
    assert "job is locked by run" in result.output


def test_flat_blocks_are_skipped_as_background_and_the_rest_is_unchanged(tmp_path):
    archive = tmp_path / "in"
    archive.mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (1, 64, 96), dtype=np.uint8)
    pixels[:, :, :64] = 200  # four 32x32 blocks of flat resin
    tifffile.imwrite(archive / "half.tif", pixels, photometric="minisblack")
    reference = tmp_path / "ref"
    reference.mkdir()
    plain = JobSpec.load(make_job(reference, archive, kind="probabilities"))
    submit(plain)
    job = JobSpec.load(make_job(tmp_path, archive, kind="probabilities"))
    job = job.model_copy(
        update={"inference": job.inference.model_copy(update={"skip_empty": SkipEmpty(std_below=0.01, stride=2)})}
    )
    report = submit(job)
    assert (report.units_done, report.units_skipped) == (6, 4)
    got, full = stored(job, "half"), stored(plain, "half")
    np.testing.assert_array_equal(got[..., 64:], full[..., 64:])  # blocks with content: as without the rule
    assert (got[0, :, :, :64] == 1).all() and (got[1, :, :, :64] == 0).all()  # skipped: background, class 0
    assert submit(job).units_done == 0, "skipped units are finished: a rerun has nothing to do"


@pytest.fixture
def stage_calls(monkeypatch):
    """(function or class name, keyword arguments) of every map and map_batches stage submit builds."""
    import ray.data

    calls = []
    for method in ("map", "map_batches"):
        original = getattr(ray.data.Dataset, method)

        def recording(self, fn, *args, _original=original, **kwargs):
            calls.append((fn.__name__, kwargs))
            return _original(self, fn, *args, **kwargs)

        monkeypatch.setattr(ray.data.Dataset, method, recording)
    return calls


def test_the_predictor_actor_starts_with_kept_memory_and_the_drivers_priority(tmp_path, stage_calls):
    """Both must be in the actor's environment before it starts (see pipeline.cpumemory, run.PREDICTOR_PRIORITY)."""
    from pipeline.cpumemory import malloc_env

    submit(JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 50),)))))
    (predictor,) = [kwargs for _, kwargs in stage_calls if "runtime_env" in kwargs]
    assert predictor["runtime_env"]["env_vars"] == {**malloc_env(), "RAY_worker_niceness": "0"}


@pytest.mark.parametrize(
    ("io", "stages", "rows_per_call"),
    [
        ("auto", ["ReadPredictWriteStage"], "units_per_task"),  # a task's units in one call
        ("tasks", ["read_unit", "PredictStage", "write_unit"], "batch_size"),  # a batch of blocks
    ],
)
def test_cpu_actors_read_and_write_their_own_units_unless_told_otherwise(
    tmp_path, stage_calls, io, stages, rows_per_call
):
    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 50),)), io=io, batch_size=3))
    assert submit(job).status == "complete"
    assert [name for name, _ in stage_calls] == stages
    (predictor,) = [kwargs for name, kwargs in stage_calls if name.endswith("Stage")]
    expected = job.resources.task_units() if rows_per_call == "units_per_task" else job.inference.batch_size
    assert predictor["batch_size"] == expected


class ThreadProbe:
    """A stand-in predictor stage: says whether each call ran on the thread that built it."""

    def __init__(self, ctx, make_predictor=None):
        self.built_on = threading.get_ident()

    def __call__(self, batch):
        return {"on_building_thread": [threading.get_ident() == self.built_on] * len(batch["item"])}


def test_the_predictor_is_called_on_the_thread_that_built_its_model(tmp_path):
    """One thread for the model: torch's OpenMP keeps one team of threads (see run.on_predictors)."""
    import ray.data

    from pipeline.netpass import stage_context
    from pipeline.run import on_predictors

    job = JobSpec.load(make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 50),))))
    ds = on_predictors(
        ray.data.from_items(list(range(6)), override_num_blocks=3),
        ThreadProbe,
        stage_context(job, None),
        job.resources,
        2,
    )
    assert [row["on_building_thread"] for row in ds.take_all()] == [True] * 6


def test_a_stream_makes_its_units_in_read_tasks_from_a_few_ranges():
    """The driver hands Ray ranges, not units: a read task expands its piece into blocks of rows lazily."""
    from pipeline.plan import UnitGrid
    from pipeline.rows import ImageRows
    from pipeline.run import split_segments, unit_blocks, units_per_read

    rows = ImageRows(UnitGrid("a", 2, (70, 90), (32, 32)), "fp", "zyx", 1.0, 0.0, (("z", 2),))
    segments = [(rows, 0, 5), (rows, 7, 18)]  # units 5 and 6 are done
    pieces = split_segments(segments, 4)
    assert [[(a, b) for _, a, b in piece] for piece in pieces] == [[(0, 4)], [(4, 5), (7, 10)], [(10, 14)], [(14, 18)]]
    blocks = list(unit_blocks(pieces[1], rows_per_block=2))
    assert [list(b["index"].to_pylist()) for b in blocks] == [[4, 7], [8, 9]]
    assert units_per_read(3_200_000, 2) == 4096 and units_per_read(13, 2) == 14  # 782 read tasks; one
