"""Import boundaries that keep the pipeline's workers light and the layers apart."""

import subprocess
import sys

import pytest


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "pipeline.stages",
        "pipeline.instances.instancepass",
        "pipeline.tiling",
        "pipeline.model.geometry",
        "pipeline.plan",
    ],
)
def test_reader_and_writer_code_does_not_import_torch(module):
    """Reader and writer workers start in a fraction of the time when they skip torch (seconds each on 2 cores)."""
    assert "torch" not in modules_after_import(module)


@pytest.mark.parametrize(
    "module",
    ["pipeline.cli", "pipeline.stages", "pipeline.instances.instancepass", "pipeline.model", "pipeline.train.loop"],
)
def test_only_the_pipeline_runner_imports_ray(module):
    assert "ray" not in modules_after_import(module)


def test_loading_a_job_file_imports_no_io_library():
    """`plan`, `status` and the CLI's validation read the job without zarr, tifffile or fsspec."""
    assert not {"zarr", "tifffile", "fsspec", "torch", "ray"} & modules_after_import("pipeline.spec")
