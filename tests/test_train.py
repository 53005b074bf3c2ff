"""Training: a few steps on synthetic labelled slices, a resumed run, and evaluation."""

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.model import load_checkpoint
from pipeline.train.loop import train
from pipeline.train.spec import TrainSpec


def make_dataset(folder, n=4, size=48):
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    (folder / "lab").mkdir(parents=True)
    for i in range(n):
        label = np.full((size, size), 255, np.uint8)
        label[:, rng.integers(5, size - 5)] = 0  # a membrane line
        label[rng.integers(5, size - 5), :] = 0
        image = (label * 0.7 + rng.normal(0, 20, label.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "img" / f"{i}.png")
        Image.fromarray(label).save(folder / "lab" / f"{i}.png")


def make_spec(tmp_path, steps):
    make_dataset(tmp_path / "data") if not (tmp_path / "data").exists() else None
    (tmp_path / "model.yaml").write_text("depth: 2\nbase: 4\npadding: same\nnorm: batch\n")
    path = tmp_path / "train.yaml"
    path.write_text(
        f"""
name: tiny
model: {{config: model.yaml}}
data: {{images: data/img, labels: data/lab, foreground: zero, validation: ["3"]}}
train: {{steps: {steps}, batch_size: 2, tile: 32, validate_every: 2, lr: 0.01}}
output: out
"""
    )
    return TrainSpec.load(path)


def test_training_writes_checkpoints_and_metrics_and_resumes_where_it_stopped(tmp_path):
    rows = train(make_spec(tmp_path, 4))
    assert [r.step for r in rows] == [2, 4]
    out = tmp_path / "out"
    assert (out / "best.safetensors").exists() and (out / "metrics.csv").exists()
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    resumed = train(make_spec(tmp_path, 6), resume=True)
    assert [r.step for r in resumed] == [6]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6]
    assert load_checkpoint(out / "best.safetensors").config.base == 4


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    train(make_spec(a, 4))
    train(make_spec(b, 2))
    train(make_spec(b, 4), resume=True)
    wa = torch.load(a / "out" / "last.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "out" / "last.pt", weights_only=True)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5)


def test_cli_train_and_evaluate(tmp_path):
    spec = make_spec(tmp_path, 2)
    result = CliRunner().invoke(main, ["train", str(tmp_path / "train.yaml")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            f"{spec.output}/best.safetensors",
            "--images",
            spec.data.images,
            "--labels",
            spec.data.labels,
            "--keys",
            "3",
            "--foreground",
            "zero",
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert scores["planes"] == 1 and 0 <= scores["pixel_error"] <= 1 and 0 <= scores["rand_error"] <= 1


def test_ray_train_ddp_with_two_cpu_workers_writes_the_same_outputs(tmp_path):
    import ray

    from pipeline.train.distributed import train_distributed

    spec = make_spec(tmp_path, 4)
    ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        train_distributed(spec, workers=2)
    finally:
        ray.shutdown()
    out = tmp_path / "out"
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert "module." not in next(iter(load_checkpoint(out / "best.safetensors").state_dict()))
