"""Whole-file writes: a reader sees the old version or the new one, never half of either.

Local disks: a temporary file beside the target, flushed to disk, then renamed over
it.  Object stores: one PUT, which is atomic per object.
"""

from __future__ import annotations

import os
import uuid
from typing import Any


def temporary_beside(path: str) -> str:
    """A temporary file's path in `path`'s folder, short whatever the length of `path`'s own name."""
    folder, _, _ = path.rpartition("/")
    return f"{folder}/.tmp-{uuid.uuid4().hex}"


def write_whole(fs: Any, path: str, data: bytes, local: bool) -> None:
    """Write `data` as the whole of `path` through `fs` (fsspec), atomically."""
    if not local:
        fs.pipe_file(path, data)
        return
    tmp = temporary_beside(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
