"""Bare model throughput: exact output megapixels per second on random tiles.

    python -m benchmarks.model --config configs/models/unet-small.yaml --block 512 --tile 1024 --batch-size 1

The tile and batch are what the pipeline would use for blocks (chunks) of
`--block` px: the counted output is the kept, exact part of each tile.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import emit
from pipeline.model import UNet, UNetConfig
from pipeline.predict import Predictor
from pipeline.tiling import tile_length


def model_throughput(
    config_path: str, block: int, tile: int, batch_size: int, device: str, precision: str, seconds: float
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = UNet(UNetConfig.from_yaml(config_path)).eval()
    g = model.geometry
    length = tile_length(tile, block, g)
    kept = min(g.step(length), block)
    predictor = Predictor.create(model, device, precision)  # type: ignore[arg-type]
    batch = np.random.default_rng(0).random((batch_size, model.config.in_channels, length, length), dtype=np.float32)
    predictor(batch)  # warm-up (cudnn.benchmark, allocator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        predictor(batch)
        count += 1
    elapsed = time.perf_counter() - start
    return {
        "config": config_path,
        "device": str(predictor.device),
        "precision": predictor.precision,
        "tile": length,
        "kept_per_tile": kept,
        "batch_size": batch_size,
        "batches": count,
        "output_megapixels_per_second": round(count * batch_size * kept * kept / 1e6 / elapsed, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/models/unet-small.yaml")
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    emit(
        "model",
        model_throughput(
            args.config, args.block, args.tile, args.batch_size, args.device, args.precision, args.seconds
        ),
    )


if __name__ == "__main__":
    main()
