"""Training: a few steps on synthetic labelled slices, a resumed run, and evaluation."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.model import load_checkpoint
from pipeline.model.checkpoint import trained_on
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
    record = trained_on(out / "best.safetensors")  # what planning checks a job's input against
    assert record["normalize"]["mode"] == "scale" and 0 <= record["low"] < record["high"] <= 1


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
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)  # ours, not a `ray start` one
    try:
        train_distributed(spec, workers=2)
    finally:
        ray.shutdown()
    out = tmp_path / "out"
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert "module." not in next(iter(load_checkpoint(out / "best.safetensors").state_dict()))


def test_best_checkpoint_follows_the_selected_measure(tmp_path, monkeypatch):
    import pipeline.train.loop as loop

    saved_at: list[int] = []
    real_save = loop.save_checkpoint

    def spy(model, path, **extra):
        if str(path).endswith("best.safetensors"):
            saved_at.append(len(rows_so_far()))
        real_save(model, path, **extra)

    def rows_so_far():
        path = tmp_path / "out" / "metrics.jsonl"
        return path.read_text().splitlines() if path.exists() else []

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    spec = make_spec(tmp_path, 8)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"select": "pixel_error"})})
    rows = train(spec)
    errors = [r.pixel_error for r in rows]
    improved = [i + 1 for i, e in enumerate(errors) if e < min(errors[:i], default=float("inf"))]
    assert saved_at == improved  # saved exactly when held-out pixel error hit a new low


def test_valid_nets_train_on_label_crops_aligned_with_the_output(tmp_path):
    from pipeline.model import UNet, UNetConfig
    from pipeline.train.augment import AugmentSettings
    from pipeline.train.data import Plane, sample_batch

    geometry = UNet(UNetConfig(depth=2, base=4, padding="valid")).geometry
    tile = geometry.valid_input_at_least(60)
    yy, xx = np.mgrid[0:80, 0:90]
    coded = (yy * 90 + xx).astype(np.int64)  # every pixel knows where it came from
    plane = Plane("p", coded[None].astype(np.float32), coded, np.ones(coded.shape, np.float32))
    off = AugmentSettings(elastic=False, flips=False, rotations=False, intensity=0.0)
    x, y, w = sample_batch([plane], 3, tile, geometry, off, np.random.default_rng(0))
    crop, out = geometry.output_offset, tile - geometry.shrink
    assert x.shape == (3, 1, tile, tile) and y.shape == w.shape == (3, out, out)
    np.testing.assert_array_equal(y, x[:, 0, crop : crop + out, crop : crop + out].astype(np.int64))


def test_evaluate_a_mask_store_against_hand_counted_errors(tmp_path):
    from pipeline.io.maskstore import MaskStore, OutputLayout

    truth = np.zeros((8, 8), np.uint8)
    truth[:, 4:] = 255
    (tmp_path / "labels").mkdir()
    Image.fromarray(truth).save(tmp_path / "labels" / "a.png")
    mask = (truth > 0).astype(np.uint8)
    mask[0, :4] = 1  # four false positives
    store = MaskStore(str(tmp_path / "out.zarr"), "labels")
    store.create_image("a", OutputLayout("yx", (8, 8), (8, 8), "uint8"), {}, {})
    store.write_block("a", {}, "yx", slice(0, 8), slice(0, 8), mask)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--store",
            str(tmp_path / "out.zarr"),
            "--labels",
            str(tmp_path / "labels"),
            "--foreground",
            "nonzero",  # half of the pixels each: too close for auto
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert summary["foreground"] == "nonzero (given)"
    assert summary["pixel_error"] == 4 / 64
    assert summary["iou"][1] == 32 / 36  # foreground: 32 shared, 36 in the union


def test_evaluate_an_instance_store_scores_its_objects(tmp_path):
    """Truth: two cells split by a membrane column; objects that merge them score Rand F 1/2."""
    from pipeline.io.maskstore import MaskStore, OutputLayout

    truth = np.full((1, 5), 255, np.uint8)
    truth[0, 2] = 0  # membrane (class 1 with --foreground zero)
    (tmp_path / "labels").mkdir()
    Image.fromarray(truth).save(tmp_path / "labels" / "a.png")
    store = MaskStore(str(tmp_path / "out.zarr"), "instances")
    store.create_image("a", OutputLayout("yx", (1, 5), (1, 5), "uint32"), {}, {"output_kind": "instances"})
    store.write_block("a", {}, "yx", slice(0, 1), slice(0, 5), np.array([[3, 3, 3, 3, 3]], np.uint32))
    args = ["evaluate", "--store", str(tmp_path / "out.zarr"), "--labels", str(tmp_path / "labels")]
    result = CliRunner().invoke(main, [*args, "--foreground", "zero", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e.json").read_text())["summary"]
    assert summary["instance_rand_error"] == pytest.approx(1 / 2)  # as in tests/test_metrics.py
    assert (summary["objects"], summary["truth_objects"]) == (1, 2)


def test_a_second_run_starts_its_metrics_afresh_and_a_finished_run_has_nothing_to_resume(tmp_path):
    make_spec(tmp_path, 2)
    runner = CliRunner()
    for _ in range(2):  # the same training twice, without --resume
        assert runner.invoke(main, ["train", str(tmp_path / "train.yaml")]).exit_code == 0
    out = tmp_path / "out"
    assert len((out / "metrics.csv").read_text().splitlines()) == 2  # header and the one row of step 2
    result = runner.invoke(main, ["train", str(tmp_path / "train.yaml"), "--resume"])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output and "nan" not in result.output
    modes = {name: (out / name).stat().st_mode & 0o777 for name in ("best.safetensors", "last.pt")}
    assert modes["best.safetensors"] == modes["last.pt"], modes
