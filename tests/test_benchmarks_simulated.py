"""The stand-ins for the model that the ceiling and simulated-GPU benchmarks put into the predictor actors."""

import math
import time
import tracemalloc

import numpy as np
import pytest
import torch
import zarr

from benchmarks.ceiling import job_document
from benchmarks.simulated import SimulatedPredictor, busy_figures, simulated
from pipeline.driver import submit
from pipeline.model import UNet, UNetConfig
from pipeline.spec import JobSpec
from tests.conftest import model_config


@pytest.mark.parametrize("name", ["unet-paper", "unet-small"])
def test_a_simulated_forward_has_the_nets_output_shape_and_the_tiles_centre_as_foreground(name):
    config = model_config(name)
    net = UNet(config).eval()
    tile = net.geometry.valid_input_at_least(200)
    with torch.no_grad():
        real = net(torch.zeros(2, 1, tile, tile))
    tiles = np.random.default_rng(0).random((2, 1, tile, tile), dtype=np.float32)
    fake = SimulatedPredictor(net.geometry, config.classes, 0.0)(tiles)
    assert fake.shape == tuple(real.shape)
    crop = (tile - fake.shape[-1]) // 2
    np.testing.assert_array_equal(fake[:, 1], tiles[:, 0, crop : crop + fake.shape[-2], crop : crop + fake.shape[-1]])
    np.testing.assert_allclose(fake.sum(axis=1), 1.0, atol=1e-6)


def test_a_simulated_forward_takes_its_time_per_megapixel_and_logs_it(tmp_path):
    geometry = UNet(UNetConfig(depth=1, base=1, padding="same")).geometry
    predictor = SimulatedPredictor(geometry, 2, seconds_per_megapixel=1.0, log=tmp_path / "calls-1.log")
    start = time.perf_counter()
    predictor(np.zeros((2, 1, 200, 250), np.float32))  # 0.1 output megapixels: 0.1 s
    elapsed = time.perf_counter() - start
    assert 0.1 <= elapsed < 0.3
    figures = busy_figures(tmp_path, wall_seconds=1.0)
    assert figures["calls"] == 1
    assert figures["busy_fraction_of_wall"] == pytest.approx(0.1, abs=0.05)
    assert figures["busy_fraction_first_to_last_call"] == pytest.approx(1.0, abs=0.05)


def volume(tmp_path, planes, side=128):
    path = tmp_path / f"volume-{planes}.zarr"
    rng = np.random.default_rng(0)
    zarr.create_array(path, data=rng.integers(0, 255, (planes, side, side), dtype=np.uint8), chunks=(1, 32, 32))
    return path


def null_job(tmp_path, planes):
    doc = job_document(volume(tmp_path, planes), tmp_path / f"out-{planes}", 32, {"io": "tasks", "units_per_task": 8})
    doc["model"]["config"] = str(tmp_path / "model.yaml")
    doc["inference"]["tile"] = 64
    (tmp_path / "model.yaml").write_text("depth: 1\nbase: 1\npadding: same\n")
    return JobSpec.model_validate(doc)


@pytest.mark.usefixtures("local_ray")  # Ray is shut down after this module: its workers do not outlive it
def test_submit_runs_the_given_predictor_in_the_actors(tmp_path):
    log = tmp_path / "calls"
    log.mkdir()
    job = null_job(tmp_path, planes=2)
    report = submit(job, make_predictor=simulated(math.inf, log))
    assert report.units_done == 2 * 16
    assert busy_figures(log, 1.0)["calls"] > 0  # the actors called it: no model was loaded there
    labels = zarr.open_group(job.output.path, mode="r")["labels/volume-2/0"][:]
    pixels = zarr.open_array(job.input.path, mode="r")[:]
    # Its foreground probability is the tile's centre, so the mask is the input thresholded, stitched exactly.
    np.testing.assert_array_equal(labels, (pixels / 255 > 0.5).astype(np.uint8))


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_the_drivers_memory_stays_flat_in_the_number_of_units(tmp_path):
    """Python's allocations on the driver (numpy's included) peak alike for 8x the units."""
    peaks = []
    for planes in (4, 32):  # 64 and 512 units
        tracemalloc.start()
        report = submit(null_job(tmp_path, planes), make_predictor=simulated(math.inf))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report.units_done == planes * 16
    assert peaks[1] < 1.2 * peaks[0] + 2e6, f"driver peaks {peaks} bytes"
