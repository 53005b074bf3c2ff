"""The shell scripts: each parses, and the GPU check does its CPU smoke run where there is no CUDA."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the GPU checks (minutes)")
def test_the_gpu_check_says_there_is_no_cuda_and_runs_its_cpu_smoke_checks(tmp_path):
    script = next(p for p in SCRIPTS if p.name == "gpu-check.sh")
    result = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no CUDA device here" in result.stdout
    figures = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(figures) == ["ceiling-smoke.json", "model-cpu.json"]
    assert figures["model-cpu.json"]["output_megapixels_per_second"] > 0
