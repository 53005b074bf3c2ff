"""Shared fixtures: model configs from configs/models, small random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.model import UNet, UNetConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((ROOT / "configs" / "models").glob("*.yaml"))


def model_config(name: str, **overrides: object) -> UNetConfig:
    config = UNetConfig.from_yaml(str(ROOT / "configs" / "models" / f"{name}.yaml"))
    return config.model_copy(update=overrides)


def random_model(config: UNetConfig, seed: int = 0) -> UNet:
    """A model in eval mode whose BatchNorm layers have non-trivial running stats."""
    torch.manual_seed(seed)
    model = UNet(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(params=[p.stem for p in MODEL_CONFIGS])
def config_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for a test module (starting Ray costs seconds)."""
    from pipeline.run import init_ray

    init_ray(None)
    yield
    import ray

    ray.shutdown()
