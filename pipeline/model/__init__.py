"""The U-Net family: config, geometry, layers, wiring and checkpoints.

Knows nothing of Ray or of archives.  Names are imported on first use: the
pure modules (config, geometry) must not drag torch into processes that only
read and write pixels (the pipeline's reader and writer workers start faster).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.model.checkpoint import load_checkpoint, model_fingerprint, save_checkpoint
    from pipeline.model.config import UNetConfig
    from pipeline.model.geometry import NetGeometry, net_geometry
    from pipeline.model.unet import UNet, parameter_count

_HOME = {
    "NetGeometry": "geometry",
    "net_geometry": "geometry",
    "UNetConfig": "config",
    "UNet": "unet",
    "parameter_count": "unet",
    "load_checkpoint": "checkpoint",
    "model_fingerprint": "checkpoint",
    "save_checkpoint": "checkpoint",
}
__all__ = [
    "NetGeometry",
    "UNet",
    "UNetConfig",
    "load_checkpoint",
    "model_fingerprint",
    "net_geometry",
    "parameter_count",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'pipeline.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.model.{_HOME[name]}"), name)
