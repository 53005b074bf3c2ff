"""An image's key as the name of its folders (output group, manifest records), and keys that would share one.

Pure: no IO.  A key is a relative path ("scan", "plate1/A01"); its folder name is
the key with "/" as "__", the same in the mask store and the manifest.  That
mapping, and the file systems and object-store consoles that fold case, can
give two inputs one name: `colliding` finds them, so that the archive refuses
them by name instead of one silently overwriting another.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def image_name(key: str) -> str:
    """The folder name of `key` in the mask store and the manifest."""
    return key.replace("/", "__")


def colliding(keys: Iterable[str]) -> list[list[str]]:
    """Groups of distinct keys whose folder names are equal once case is folded; each group sorted."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        by_name[image_name(key).casefold()].add(key)
    return sorted(sorted(group) for group in by_name.values() if len(group) > 1)
