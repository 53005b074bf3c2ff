"""Pyramid levels: rewriting only the chunks over stale units gives the bytes of levels made afresh."""

import numpy as np
import pytest
import zarr

from pipeline.io import ngff
from pipeline.io.maskstore import WRITE_EVERY_CHUNK
from pipeline.io.pyramid import down_shape, update_levels, write_levels


def image_group(path, axes: str, data: np.ndarray, chunks, fmt: str = "ngff-0.4", shards=None) -> zarr.Group:
    group = zarr.open_group(str(path), mode="w", zarr_format=ngff.ZARR_FORMAT[fmt])
    group.attrs.update(ngff.image_attrs(fmt, {"multiscales": [ngff.multiscales_attrs(fmt, "img", axes, {}, 1)]}, {}))
    settings = ngff.array_settings(fmt, chunks, shards, axes)
    level0 = group.create_array("0", shape=data.shape, dtype=data.dtype, config=WRITE_EVERY_CHUNK, **settings)
    level0[:] = data
    return group


def level_bytes(path, levels: int) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for level in range(1, levels + 1)
            for p in sorted((path / str(level)).rglob("*")) if p.is_file() and p.name != "zarr.json"}  # fmt: skip


@pytest.mark.parametrize(
    "axes, shape, chunks, dtype, fmt, shards",
    [
        ("zyx", (2, 150, 133), (1, 32, 32), "uint8", "ngff-0.4", None),
        ("czyx", (2, 2, 129, 97), (2, 1, 32, 32), "float32", "ngff-0.4", None),
        ("zyx", (2, 150, 133), (1, 16, 16), "uint8", "ngff-0.5", (1, 32, 32)),
        ("czyx", (2, 2, 129, 97), (2, 1, 16, 16), "float32", "ngff-0.5", (2, 1, 32, 32)),
    ],
    ids=["labels", "probabilities", "labels-sharded", "probabilities-sharded"],
)
def test_updating_the_stale_chunks_gives_the_bytes_of_a_fresh_pyramid(
    tmp_path, axes, shape, chunks, dtype, fmt, shards
):
    rng = np.random.default_rng(0)
    mean = dtype != "uint8"
    old = rng.random(shape).astype(dtype) if mean else rng.integers(0, 9, shape).astype(dtype)
    new = old.copy()
    grid = (shape[-3], -(-shape[-2] // 32), -(-shape[-1] // 32))  # planes, rows, cols of level-0 units
    stale = rng.random(grid) < 0.2
    for z, r, c in zip(*np.nonzero(stale), strict=True):  # the stale units were written again
        region = (..., z, slice(32 * r, 32 * r + 32), slice(32 * c, 32 * c + 32))
        new[region] = (rng.random(new[region].shape) * 9).astype(dtype)

    incremental = image_group(tmp_path / "a", axes, old, chunks, fmt, shards)
    write_levels(incremental, 3, mean, fmt, WRITE_EVERY_CHUNK)
    incremental["0"][:] = new
    assert update_levels(incremental, 3, mean, stale, WRITE_EVERY_CHUNK) == 3
    fresh = image_group(tmp_path / "b", axes, new, chunks, fmt, shards)
    write_levels(fresh, 3, mean, fmt, WRITE_EVERY_CHUNK)

    assert level_bytes(tmp_path / "a", 3) == level_bytes(tmp_path / "b", 3)
    assert incremental["1"].shape == down_shape(shape, mean)


def test_a_missing_level_makes_the_caller_build_afresh(tmp_path):
    group = image_group(tmp_path / "a", "zyx", np.zeros((1, 64, 64), np.uint8), (1, 32, 32))
    assert update_levels(group, 2, False, np.ones((1, 2, 2), bool), WRITE_EVERY_CHUNK) is None
