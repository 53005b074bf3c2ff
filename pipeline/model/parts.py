"""The U-Net's building blocks, each a small nn.Module; `unet.py` wires them."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.config import UNetConfig
from pipeline.model.geometry import up_edge_crop


def _norm_act(cfg: UNetConfig, channels: int) -> list[nn.Module]:
    norm: list[nn.Module] = [nn.BatchNorm2d(channels)] if cfg.norm == "batch" else []
    return [*norm, nn.ReLU(inplace=True)]


def centre_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The middle `height` x `width` of x (valid nets crop skips to the up path)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class DoubleConv(nn.Sequential):
    """(3x3 conv [-> BN] -> ReLU) x 2; unpadded for valid nets, padded for same."""

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int) -> None:
        pad = 0 if cfg.padding == "valid" else 1
        bias = cfg.norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=pad, bias=bias),
            *_norm_act(cfg, out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=pad, bias=bias),
            *_norm_act(cfg, out_channels),
        )


class Down(nn.Sequential):
    """Halve the resolution: 2x2 max-pool, or a learned 3x3 stride-2 conv."""

    def __init__(self, cfg: UNetConfig, channels: int) -> None:
        if cfg.down == "maxpool":
            super().__init__(nn.MaxPool2d(2))
        else:
            conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=cfg.norm == "none")
            super().__init__(conv, *_norm_act(cfg, channels))


class UpSample(nn.Sequential):
    """Double the resolution and halve the channels."""

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int) -> None:
        bias = not (cfg.up_activation and cfg.norm == "batch")
        layers: list[nn.Module]
        if cfg.up == "bilinear":
            layers = [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            ]
        elif cfg.up_kernel == 2:
            layers = [nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=bias)]
        else:
            layers = [
                nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=bias)
            ]
        if cfg.up_activation:
            layers += _norm_act(cfg, out_channels)
        super().__init__(*layers)
        self.edge_crop = up_edge_crop(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        c = self.edge_crop
        return x[..., c : x.shape[-2] - c, c : x.shape[-1] - c] if c else x


class Up(nn.Module):
    """Up-sample, concatenate the (centre-cropped) skip feature, DoubleConv."""

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = UpSample(cfg, in_channels, out_channels)
        self.conv = DoubleConv(cfg, 2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = centre_crop(skip, x.shape[-2], x.shape[-1])
        out: torch.Tensor = self.conv(torch.cat([skip, x], dim=1))
        return out


class Head(nn.Conv2d):
    """Class scores (logits); the activation is applied by `UNet.activate`."""

    def __init__(self, cfg: UNetConfig, in_channels: int) -> None:
        k = cfg.head_kernel
        super().__init__(in_channels, cfg.classes, k, padding=k // 2)
