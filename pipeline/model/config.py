"""`UNetConfig`: every U-Net variant users bring, as one typed, validated value.

The paper's net is the default: valid 3x3 convs, 64 base channels, depth 4,
max-pool down, 2x2 transposed-conv up, 1x1 head, two classes, softmax.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from pipeline.settings import Settings


class UNetConfig(Settings):
    in_channels: int = Field(1, ge=1, le=64, description="channels of the input image")
    classes: int = Field(2, ge=1, le=1024, description="output channels")
    depth: int = Field(4, ge=1, le=7, description="number of down-sampling steps")
    base: int = Field(64, ge=1, le=1024, description="channels at full resolution; doubled at each level")
    padding: Literal["valid", "same"] = "valid"
    norm: Literal["batch", "none"] = "none"
    down: Literal["maxpool", "conv"] = "maxpool"
    up: Literal["transpose", "bilinear"] = "transpose"
    up_kernel: Literal[2, 3] = Field(2, description="transposed conv: 2 (k2 s2) or 3 (k3 s2 p1, output_padding 1)")
    up_activation: bool = Field(False, description="norm (if any) and ReLU after the up-sampling conv")
    head: Literal["softmax", "sigmoid", "tanh", "none"] = "softmax"
    head_kernel: Literal[1, 3] = 1

    @model_validator(mode="after")
    def _combinations_are_buildable(self) -> Self:
        if self.padding == "valid" and self.down == "conv":
            raise ValueError("down: conv (k3 s2 p1) pads its input; use it with padding: same")
        if self.padding == "valid" and self.up_kernel == 3:
            raise ValueError("up_kernel: 3 (k3 s2 p1 output_padding 1) pads; use it with padding: same")
        if self.padding == "valid" and self.head_kernel == 3:
            raise ValueError("head_kernel: 3 is a padded conv here; use it with padding: same")
        if self.up == "bilinear" and self.up_kernel != 2:
            raise ValueError("up_kernel applies to up: transpose only; leave it at 2 with up: bilinear")
        if self.head == "softmax" and self.classes < 2:
            raise ValueError("head: softmax needs classes >= 2; use head: sigmoid for one class")
        return self

    def channels(self, level: int) -> int:
        """Feature channels at `level` (0 = full resolution)."""
        return self.base << level

    @property
    def factor(self) -> int:
        """Total down-sampling factor: tile origins must be multiples of it."""
        return 1 << self.depth
