"""Loading the job's model the same way on the driver and on every worker."""

from __future__ import annotations

import torch

from pipeline.model import UNet, UNetConfig, load_checkpoint


def load_model(checkpoint: str | None, config: str | None, seed: int = 0) -> UNet:
    """The checkpoint's model, or seeded random weights for a config (testing)."""
    if checkpoint:
        return load_checkpoint(checkpoint)
    assert config is not None  # JobSpec guarantees exactly one
    torch.manual_seed(seed)
    return UNet(UNetConfig.from_yaml(config)).eval()
