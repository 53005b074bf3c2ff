"""The one rule for an image's axes, shared by the job file and the image readers (pure).

Axes are letters of `tczyx`, each at most once, with y and x: the plane.
"""

from __future__ import annotations

AXES = "tczyx"


def axes_problem(axes: str) -> str | None:
    """What is wrong with `axes` (lower case), or None if they are usable."""
    if set(axes) - set(AXES) or len(set(axes)) != len(axes) or not {"y", "x"} <= set(axes):
        return f"axes {axes!r} must use each of t, c, z, y, x at most once and include y and x"
    return None
