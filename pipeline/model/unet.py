"""`UNet(UNetConfig(...))`: one configurable U-Net for every variant.

`forward` returns logits (what losses want); `activate` maps them to what the
config's head promises (softmax/sigmoid probabilities, tanh, or raw scores).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.config import UNetConfig
from pipeline.model.geometry import NetGeometry, net_geometry
from pipeline.model.parts import DoubleConv, Down, Head, Up


class UNet(nn.Module):
    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.geometry: NetGeometry = net_geometry(config)
        self.inc = DoubleConv(config, config.in_channels, config.base)
        self.downs = nn.ModuleList(
            nn.Sequential(
                Down(config, config.channels(i - 1)), DoubleConv(config, config.channels(i - 1), config.channels(i))
            )
            for i in range(1, config.depth + 1)
        )
        self.ups = nn.ModuleList(
            Up(config, config.channels(i + 1), config.channels(i)) for i in reversed(range(config.depth))
        )
        self.head = Head(config, config.base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        logits: torch.Tensor = self.head(x)
        return logits

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        head = self.config.head
        if head == "softmax":
            return torch.softmax(logits, dim=1)
        if head == "sigmoid":
            return torch.sigmoid(logits)
        if head == "tanh":
            return torch.tanh(logits)
        return logits


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
