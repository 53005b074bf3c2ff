"""The U-Net family: config, geometry, layers, wiring and checkpoints.

Knows nothing of Ray or of archives.
"""

from pipeline.model.checkpoint import load_checkpoint, model_fingerprint, save_checkpoint
from pipeline.model.config import UNetConfig
from pipeline.model.geometry import NetGeometry, net_geometry
from pipeline.model.unet import UNet, parameter_count

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
