"""The command line, driven through click's CliRunner as a user would."""

from click.testing import CliRunner

from pipeline import __version__
from pipeline.cli import main
from pipeline.errors import ExitCode
from pipeline.model import save_checkpoint
from tests.conftest import ROOT, model_config, random_model


def test_help_explains_the_commands_and_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "submit" in result.output and "Exit codes" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_model_info_on_a_config_prints_parameters_and_geometry():
    result = CliRunner().invoke(main, ["model", "info", str(ROOT / "configs/models/unet-paper.yaml")])
    assert result.exit_code == 0, result.output
    assert "31,030,658" in result.output and "margin (context kept per side): 92 px" in result.output


def test_model_info_on_a_checkpoint(tmp_path):
    path = save_checkpoint(random_model(model_config("unet-small", base=4)), tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["model", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "base: 4" in result.output
    assert "trained on: not recorded" in result.output


def test_model_info_on_the_shipped_model_says_what_it_was_trained_on():
    result = CliRunner().invoke(main, ["model", "info", str(ROOT / "models/unet-small-isbi2012/model.safetensors")])
    assert "trained on: normalize scale 0.003922, offset 0; normalised pixels in [0.09412, 0.8353]" in result.output


def test_a_missing_checkpoint_is_one_clear_line_and_exit_code_invalid(tmp_path):
    result = CliRunner().invoke(main, ["model", "info", str(tmp_path / "missing.pt")])
    assert result.exit_code == ExitCode.INVALID
    assert "missing.pt: no such checkpoint file" in result.output
    assert "Traceback" not in result.output


def test_a_tile_below_the_models_smallest_is_invalid_before_anything_runs(tmp_path):
    from tests.jobs import make_archive, make_job

    job = make_job(tmp_path, make_archive(tmp_path / "in", sizes=((40, 50),)), tile=16)
    result = CliRunner().invoke(main, ["submit", str(job), "--quiet"])
    assert result.exit_code == ExitCode.INVALID, result.output
    assert "inference.tile 16: smaller than this model's smallest legal tile, 52" in result.output
    assert not (tmp_path / "out.zarr").exists()  # nothing was planned or written


def test_a_quiet_submit_prints_its_summary_and_nothing_of_rays(tmp_path):
    """Ray's C++ core worker writes to the process's stderr, past click: only a real process shows it."""
    import subprocess
    import sys

    from tests.jobs import make_archive, make_job

    job = make_job(tmp_path, make_archive(tmp_path / "in"), actors=2)
    cmd = [sys.executable, "-m", "pipeline.cli", "submit", str(job), "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stderr == "", result.stderr  # no core_worker.cc line, no progress, no Ray log
    assert result.stdout.startswith("test-job (complete)")
    assert result.stdout.splitlines()[-1] == f"report: {tmp_path}/out.zarr.job/report.html"
