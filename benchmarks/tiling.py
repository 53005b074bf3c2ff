"""Exact overlap-tile (predict_image) against MONAI's sliding_window_inference.

    python -m benchmarks.tiling [--size 2048] [--config configs/models/unet-bn.yaml --base 16]

Same image, same model: time, and max abs difference to the exact definition
(the net on the whole mirror-extended image, `predict_untiled`).  Prints JSON.
MONAI blends overlapping windows with gaussian weights (overlap 0.25) and pads
with zeros-like constants at the border, so it cannot equal the definition.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import best_of, emit
from pipeline.model import UNet, UNetConfig
from pipeline.predict import predict_image, predict_untiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--config", default="configs/models/unet-bn.yaml")
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument(
        "--tile", type=int, default=512, help="MONAI roi size (and predict_image's, for a like-for-like run)"
    )
    parser.add_argument(
        "--our-tile", type=int, default=1280, help="predict_image tile (balanced: 4 tiles of 1248 px for 2048 px)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="MONAI's windows per batch")
    parser.add_argument("--our-batch-size", type=int, default=1, help="predict_image's tiles per batch")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    config = UNetConfig.from_yaml(args.config).model_copy(update={"base": args.base})
    model = UNet(config).eval()
    image = np.random.default_rng(0).random((config.in_channels, args.size, args.size), dtype=np.float32)
    exact = predict_untiled(model, image, device=args.device)

    def ours(tile: int) -> dict[str, float]:
        seconds, result = best_of(
            lambda: predict_image(model, image, tile=tile, batch_size=args.our_batch_size, device=args.device),
            args.repeats,
        )
        return {
            "tile": tile,
            "seconds": round(seconds, 3),
            "max_abs_diff_to_definition": float(np.abs(result - exact).max()),
        }

    model_on = model.to(args.device).to(memory_format=torch.channels_last)

    def monai() -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(image)[None].to(args.device)
            y = sliding_window_inference(
                x,
                (args.tile, args.tile),
                args.batch_size,
                # The memory format predict_image uses, so that only the tiling differs.
                lambda t: model_on.activate(model_on(t.contiguous(memory_format=torch.channels_last))),
                overlap=0.25,
                mode="gaussian",
            )
        return y[0].cpu().numpy()

    monai_s, theirs = best_of(monai, args.repeats)
    emit(
        "tiling",
        {
            "image": [args.size, args.size],
            "config": args.config,
            "base": args.base,
            "tile": args.tile,
            "batch_size": args.batch_size,
            "predict_image": ours(args.our_tile),
            "predict_image_same_tile_as_monai": ours(args.tile),
            "monai_sliding_window_gaussian_0.25": {
                "seconds": round(monai_s, 3),
                "max_abs_diff_to_definition": float(np.abs(theirs - exact).max()),
            },
        },
    )


if __name__ == "__main__":
    main()
