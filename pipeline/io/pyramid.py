"""An image's multiscale levels: each level down-samples the one before by 2 in y and x.

Nearest for labels (they keep their values), the mean of 2 x 2 for probabilities.
A whole pyramid is written block-wise with dask.  After an incremental rerun only
the chunks over redone units are written again (`update_levels`): the others keep
their bytes and their file times, as level 0's do.  Both paths compute a chunk with
the same numpy call, so their bytes are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr
from zarr.core.array_spec import ArrayConfigParams

from pipeline.io import ngff


def stored_block(array: Any) -> tuple[int, ...]:
    """The shape of one stored object of an array: its shard (Zarr v3 sharding), else its chunk."""
    return tuple(getattr(array, "shards", None) or array.chunks)


def level_settings(fmt: str, source: Any, shape: tuple[int, ...], axes: str) -> dict[str, Any]:
    """A level's layout: ngff-0.4 chunks no larger than the level; ngff-0.5 level 0's chunks and shards."""
    if fmt == "ngff-0.4":
        return ngff.array_settings(fmt, tuple(min(c, s) for c, s in zip(source.chunks, shape, strict=True)), None, axes)
    return ngff.array_settings(fmt, tuple(source.chunks), stored_block(source), axes)


def down_shape(shape: tuple[int, ...], mean: bool) -> tuple[int, ...]:
    """A level's shape from the one before: the mean drops an odd last row/column, nearest keeps it."""
    halve = (lambda n: n // 2) if mean else (lambda n: -(-n // 2))
    return (*shape[:-2], halve(shape[-2]), halve(shape[-1]))


def downsample(block: np.ndarray, mean: bool, dtype: Any) -> np.ndarray:
    """One level down of a block whose y, x start on even pixels (the last two axes)."""
    if not mean:
        return block[..., ::2, ::2]
    h, w = (block.shape[-2] // 2) * 2, (block.shape[-1] // 2) * 2
    block = block[..., :h, :w]
    # dask.array.coarsen's reshape and axes exactly, so that both paths give the same bytes
    factors = [1] * (block.ndim - 2) + [2, 2]
    shape = [n for size, f in zip(block.shape, factors, strict=True) for n in (size // f, f)]
    return np.mean(block.reshape(shape), axis=tuple(range(1, block.ndim * 2, 2))).astype(dtype)


def write_levels(group: zarr.Group, levels: int, mean: bool, fmt: str, config: ArrayConfigParams) -> int:
    """Levels 1..`levels` of `group`, made afresh block-wise with dask, each from the one before; how many.

    Each dask task writes whole stored objects (shards in ngff-0.5), so no two write one file.
    """
    import dask.array as da

    source: Any = group["0"]
    attrs: Any = dict(group.attrs)
    axes = "".join(a["name"] for a in ngff.multiscale(attrs)["axes"])
    built = 0
    current: Any = da.from_zarr(source)
    for level in range(1, levels + 1):
        if min(current.shape[-2:]) < 2:
            break
        down = current.map_blocks(
            downsample, mean, source.dtype, dtype=source.dtype, chunks=_block_chunks(current, mean)
        )
        settings = level_settings(fmt, source, down.shape, axes)
        target: Any = group.create_array(
            str(level), shape=down.shape, dtype=source.dtype, overwrite=True, config=config, **settings
        )
        da.store(down.rechunk(stored_block(target)), target, lock=False)
        current = da.from_zarr(target)
        built = level
    return built


def _block_chunks(current: Any, mean: bool) -> tuple[tuple[int, ...], ...]:
    """The chunks of `current` down-sampled block by block (blocks start on even pixels: even chunk sizes)."""
    halve = (lambda n: n // 2) if mean else (lambda n: -(-n // 2))
    return (*current.chunks[:-2], *(tuple(halve(n) for n in axis) for axis in current.chunks[-2:]))


def stale_above(stale: np.ndarray, below: Any, above: Any) -> np.ndarray:
    """Which chunks of level `above` cover a stale chunk of level `below` (two zarr arrays, one level apart).

    `stale` is over `below`'s chunk grid without the channel axis (plane axes, then y, x).
    """
    for axis in (-2, -1):
        step, chunk, size = stored_block(above)[axis], stored_block(below)[axis], below.shape[axis]
        count = -(-above.shape[axis] // step)
        spans = [(2 * i * step // chunk, -(-min(2 * (i + 1) * step, size) // chunk)) for i in range(count)]
        stale = np.stack([np.take(stale, range(a, b), axis=axis).any(axis=axis) for a, b in spans], axis=axis)
    return stale


def update_levels(
    group: zarr.Group, levels: int, mean: bool, stale: np.ndarray, config: ArrayConfigParams
) -> int | None:
    """Rewrite only the chunks of levels 1..`levels` over `stale` level-0 chunks (plane axes, y, x);
    None when a level is missing or laid out otherwise, so that the caller makes them afresh."""
    attrs: Any = dict(group.attrs)
    axes = "".join(a["name"] for a in ngff.multiscale(attrs)["axes"])
    spatial = [i for i, a in enumerate(axes) if a != "c"]
    previous: Any = group["0"]
    built = 0
    for level in range(1, levels + 1):
        shape = down_shape(previous.shape, mean)
        if min(previous.shape[-2:]) < 2:
            break
        if str(level) not in group:
            return None
        target: Any = group[str(level)].with_config(config)  # type: ignore[union-attr]
        if tuple(target.shape) != shape:
            target.resize(shape)
        stale = stale_above(stale, previous, target)
        for index in zip(*np.nonzero(stale), strict=True):
            _write_chunk(previous, target, axes, spatial, index, mean)
        previous, built = target, level
    return built


def _write_chunk(previous: Any, target: Any, axes: str, spatial: list[int], index: tuple[int, ...], mean: bool) -> None:
    """One chunk of `target` from the region of `previous` under it."""
    there, below = [], []
    for i, a in enumerate(axes):
        if a == "c":
            there.append(slice(None))
            below.append(slice(None))
            continue
        k = index[spatial.index(i)]
        block = stored_block(target)[i]
        start, stop = k * block, min((k + 1) * block, target.shape[i])
        there.append(slice(start, stop))
        below.append(slice(2 * start, 2 * stop) if a in "yx" else slice(start, stop))
    target[tuple(there)] = downsample(np.asarray(previous[tuple(below)]), mean, previous.dtype)
