"""Make a synthetic archive of a requested size (Zarr or TIFF) for the benchmarks.

python -m benchmarks.synthetic OUT --images 8 --size 2048 --format zarr
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_archive(out: Path, images: int, size: int, fmt: str = "zarr", seed: int = 0) -> Path:
    """`images` uint8 images of size x size with blob-like structure (not pure noise)."""
    from scipy import ndimage

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(images):
        image = ndimage.gaussian_filter(rng.random((size, size), dtype=np.float32), 4)
        image = ((image - image.min()) / (np.ptp(image) + 1e-6) * 255).astype(np.uint8)
        if fmt == "zarr":
            import zarr

            zarr.create_array(out / f"img{i:04d}.zarr", data=image, chunks=(512, 512), zarr_format=3)
        else:
            import tifffile

            tifffile.imwrite(out / f"img{i:04d}.tif", image, tile=(256, 256), compression="zlib")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--format", choices=["zarr", "tiff"], default="zarr")
    args = parser.parse_args()
    make_archive(args.out, args.images, args.size, args.format)


if __name__ == "__main__":
    main()
