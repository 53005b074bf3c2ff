"""Reading a sharded Zarr v3 input: shards aligned with the work units against shards that are not.

    python -m benchmarks.sharded_input --size 4096 --planes 2

Three copies of one volume (blosc-zstd, inner chunks of 256 px): unsharded; in
shards of 512 px, aligned with the 512 px units; and in shards of 768 px, which
no unit boundary follows.  Every unit's mirrored window (the shipped model's
margin, tile 736) is read as a worker reads it (`LazyImage.read_window`, through
the block cache) in raster order, one process.  Reports seconds, Mpx/s, the
unaligned/aligned ratio (target #29.4: at most 1.2) and how many times each
inner chunk was fetched from the store (1.0: each decoded once).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from benchmarks.common import emit, machine

ROOT = Path(__file__).resolve().parents[1]
UNIT, INNER, TILE = 512, 256, 736


def make_copy(path: Path, volume: np.ndarray, shards: int | None) -> None:
    layout: dict[str, Any] = {"chunks": (1, INNER, INNER)}
    if shards:
        layout["shards"] = (1, shards, shards)
    compressor = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
    array = zarr.create_array(path, shape=volume.shape, dtype=volume.dtype, compressors=compressor, **layout)
    array[:] = volume


def read_every_window(url: str) -> tuple[float, int, Counter[str]]:
    """Seconds to read every unit's window of the image at `url`, pixels read, and store reads per key."""
    from pipeline.io.archive import open_archive
    from pipeline.io.blockcache import CACHE
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.plan import UnitGrid, unit_grid

    geometry = load_checkpoint(str(ROOT / "models/unet-small-isbi2012/model.safetensors")).geometry
    archive = open_archive(url)
    key = archive.image_keys()[0]
    image = archive.open(key)
    reads: Counter[str] = Counter()
    store = image.array.store
    original = type(store).get

    async def counted(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        reads[path] += 1
        return await original(self, path, *args, **kwargs)

    type(store).get = counted  # type: ignore[method-assign]
    CACHE.blocks.clear()
    CACHE.nbytes = 0
    grid = UnitGrid(key, image.n_planes, image.plane_shape, (UNIT, UNIT))
    pixels = 0
    start = time.perf_counter()
    try:
        for unit in grid.units():
            _, rows, cols = unit_grid(unit, geometry, TILE)
            pixels += image.read_window(unit.plane, rows, cols).size
    finally:
        type(store).get = original  # type: ignore[method-assign]
    return time.perf_counter() - start, pixels, reads


def measure(size: int, planes: int) -> dict[str, Any]:
    volume = np.random.default_rng(0).integers(0, 255, (planes, size, size), dtype=np.uint8)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shards in (("unsharded", None), ("aligned", UNIT), ("unaligned", 3 * INNER)):
            make_copy(Path(tmp) / name / "vol.zarr", volume, shards)
            read_every_window(f"{tmp}/{name}")  # warm the page cache: every copy read from memory
            seconds, pixels, reads = read_every_window(f"{tmp}/{name}")
            chunk_reads = [n for key, n in reads.items() if key.startswith("c/")]
            runs[name] = {
                "shards": shards,
                "seconds": round(seconds, 3),
                "window_mpx_per_s": round(pixels / seconds / 1e6, 1),
                "store_reads": sum(chunk_reads),
                "reads_per_stored_object": round(sum(chunk_reads) / max(len(chunk_reads), 1), 2),
            }
    inner = planes * (size // INNER) ** 2
    for run in runs.values():
        run["store_reads_per_inner_chunk"] = round(run["store_reads"] / inner, 2)
    return {
        "size": size,
        "planes": planes,
        "units": planes * (size // UNIT) ** 2,
        "runs": runs,
        "unaligned_over_aligned": round(runs["unaligned"]["seconds"] / runs["aligned"]["seconds"], 3),
        "target_ratio": 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--planes", type=int, default=2)
    args = parser.parse_args()
    emit("sharded_input", {"machine": machine(), **measure(args.size, args.planes)})


if __name__ == "__main__":
    main()
