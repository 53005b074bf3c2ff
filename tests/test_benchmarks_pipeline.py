"""The pipeline benchmark's job: valid as written, and on CUDA each actor asks Ray for a GPU."""

import sys

import pytest

from benchmarks.pipeline import job_document, parse_args
from pipeline.spec import JobSpec


@pytest.mark.parametrize(
    ("argv", "device", "gpus"),
    [
        ([], "cpu", 0.0),
        (["--device", "cuda"], "cuda", 1.0),
        (["--device", "cuda", "--gpus-per-actor", "0.5"], "cuda", 0.5),
    ],
)
def test_the_job_validates_and_cuda_actors_get_a_gpu(monkeypatch, tmp_path, argv, device, gpus):
    monkeypatch.setattr(sys, "argv", ["benchmarks.pipeline", *argv])
    job = JobSpec.model_validate(job_document(parse_args(), tmp_path / "archive", tmp_path / "out.zarr"))
    assert (job.inference.device, job.resources.gpus_per_actor) == (device, gpus)
