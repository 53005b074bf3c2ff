"""An image's key as the name of its folders (output group, manifest records), and keys that would share one.

Pure: no IO.  A key is a relative path ("scan", "plate1/A01"); its folder name is
the key with "/" as "__" (cut to 200 bytes and a digest if longer), the same in
the mask store and the manifest.  That
mapping, and the file systems and object-store consoles that fold case, can
give two inputs one name: `colliding` finds them, so that the archive refuses
them by name instead of one silently overwriting another.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

# File systems allow 255 bytes a name; the manifest adds suffixes (".json").  Longer names keep
# their start, readable, and end in a digest of the whole key, which keeps them distinct.
MAX_NAME_BYTES = 200


def image_name(key: str) -> str:
    """The folder name of `key` in the mask store and the manifest."""
    name = key.replace("/", "__")
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return name.encode()[: MAX_NAME_BYTES - 17].decode(errors="ignore") + "-" + digest


def colliding(keys: Iterable[str]) -> list[list[str]]:
    """Groups of distinct keys whose folder names are equal once case is folded; each group sorted."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        by_name[image_name(key).casefold()].add(key)
    return sorted(sorted(group) for group in by_name.values() if len(group) > 1)
