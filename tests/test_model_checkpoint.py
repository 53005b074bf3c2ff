"""Checkpoints: config travels with the weights; loading never executes code."""

import json
import pickle
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import CheckpointError
from pipeline.model import load_checkpoint, model_fingerprint, save_checkpoint
from pipeline.model.checkpoint import FORMAT, trained_on
from pipeline.model.unet import UNet
from pipeline.predict import predict_image
from tests.conftest import model_config, random_model


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_keeps_config_weights_and_predictions(tmp_path, suffix):
    model = random_model(model_config("unet-small", base=4))
    path = save_checkpoint(model, tmp_path / f"m{suffix}")
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert model_fingerprint(loaded) == model_fingerprint(model)
    image = np.random.default_rng(0).random((1, 40, 40), dtype=np.float32)
    np.testing.assert_array_equal(predict_image(loaded, image, device="cpu"), predict_image(model, image, device="cpu"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_checkpoint_says_what_it_was_trained_on_if_it_was_told(tmp_path, suffix):
    model = random_model(model_config("unet-small", base=4))
    record = {"normalize": {"mode": "scale", "scale": 0.5, "offset": 0.0}, "low": 0.1, "high": 0.9}
    assert trained_on(save_checkpoint(model, tmp_path / f"a{suffix}", record)) == record
    assert trained_on(save_checkpoint(model, tmp_path / f"b{suffix}")) is None
    bad = save_checkpoint(model, tmp_path / f"c{suffix}", {"low": "x"})
    with pytest.raises(CheckpointError, match="trained_on record is not"):
        trained_on(bad)


def test_pt_checkpoints_carry_training_state(tmp_path):
    model = random_model(model_config("unet-small", base=4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.99)
    model(torch.rand(1, 1, 16, 16)).sum().backward()
    optimizer.step()
    save_checkpoint(model, tmp_path / "m.pt", optimizer=optimizer.state_dict(), step=7)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["step"] == 7 and "state" in payload["optimizer"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_is_refused_without_being_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"format": "segment-archive/unet/1", "config": {}, "state_dict": _Payload(str(marker))}, f)
    with pytest.raises(CheckpointError, match="nothing in it was executed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_weights_that_do_not_match_the_config_are_named(tmp_path):
    model = random_model(model_config("unet-small", base=4))
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["base"] = 8
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError,
        match=r"m\.pt: weights do not match the stored config \(.*weights \(8, 4, 3, 3\) vs config \(16, 8, 3, 3\)",
    ):
        load_checkpoint(path)


def test_a_safetensors_file_without_our_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="plain.safetensors.*metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_a_missing_or_corrupt_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_fingerprint_changes_with_any_weight():
    model = UNet(model_config("unet-small", base=4))
    before = model_fingerprint(model)
    with torch.no_grad():
        model.head.bias[0] += 1e-3
    assert model_fingerprint(model) != before


def test_a_tiny_file_whose_config_claims_a_huge_net_is_refused_before_the_net_is_built(tmp_path):
    path = tmp_path / "bomb.safetensors"
    config = {"in_channels": 1, "classes": 2, "depth": 7, "base": 1024}  # about 10^11 parameters
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": FORMAT, "config": json.dumps(config)})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="weights do not match the stored config"):
        load_checkpoint(path)
    assert time.perf_counter() - start < 5
