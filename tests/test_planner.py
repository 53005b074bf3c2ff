"""Planning: an image whose normalised input lies far outside what the model was trained on is refused."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import ExitCode, InputError
from pipeline.planner import check_trained_range

ROOT = Path(__file__).resolve().parents[1]
TRAINED = {"normalize": {"mode": "scale", "scale": 1 / 255, "offset": 0.0}, "low": 0.1, "high": 0.8}


@pytest.mark.parametrize("got", [(0.1, 0.8), (0.0, 1.0), (-0.5, 2.0), (0.4, 0.4)], ids=str)
def test_input_in_or_near_the_trained_range_passes(got):
    check_trained_range("a.tif", got, TRAINED)  # a flat image's narrow range is legal too


@pytest.mark.parametrize("got", [(12.0, 250.0), (-3.0, 0.5)], ids=str)
def test_input_far_outside_the_trained_range_is_refused_with_the_numbers(got):
    with pytest.raises(InputError, match=r"a.tif: normalised input spans .* trained on \[0.1, 0.8\] \(normalize scale"):
        check_trained_range("a.tif", got, TRAINED)


def sixteen_bit_job(tmp_path: Path, normalize: str) -> Path:
    """The shipped model on a 16-bit EM-like slice, normalised as `normalize` says."""
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(3000, 60000, (96, 96)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in/slice16.tif", pixels)
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: sixteen\ninput: {{path: {tmp_path / 'in'}}}\n"
        f"model: {{checkpoint: {ROOT / 'models/unet-small-isbi2012/model.safetensors'}}}\n"
        f"inference: {{tile: 256, normalize: {normalize}}}\n"
        f"output: {{path: {tmp_path / 'out.zarr'}, chunks: [96, 96]}}\n"
    )
    return job


def test_sixteen_bit_input_scaled_for_eight_bit_is_refused_at_plan_naming_the_image(tmp_path):
    job = sixteen_bit_job(tmp_path, "{mode: scale, scale: 0.00392156862745098}")
    result = CliRunner().invoke(main, ["plan", str(job)])
    assert result.exit_code == ExitCode.INVALID, result.output
    assert "slice16.tif: normalised input spans [" in result.output
    assert "trained on [0.09412, 0.8353] (normalize scale 0.003922, offset 0)" in result.output


def test_the_same_input_normalised_by_percentiles_is_planned(tmp_path):
    result = CliRunner().invoke(main, ["plan", str(sixteen_bit_job(tmp_path, "{mode: percentile}"))])
    assert result.exit_code == ExitCode.OK, result.output
    assert "slice16: axes yx (inferred), uint16" in result.output
