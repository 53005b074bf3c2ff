"""Where a job's output may go: never on, in or around its input, and never over a folder that is not a store of ours.

A submit rewrites whole groups of its store, so an output over the input, or over
a user's folder, would delete what is there.  Checked on the driver before
anything is written; the error names the field and both paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import fsspec

from pipeline.errors import ConfigError
from pipeline.jobrecords import MANIFEST, check_records_place, records_url

_WILDCARD = re.compile(r"[*?\[]")


def _location(url: str) -> tuple[str, PurePosixPath]:
    """(protocol, path) of a URL or local path, the path without a glob's wildcard part."""
    fs, path = fsspec.core.url_to_fs(url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    fixed = _WILDCARD.split(path, maxsplit=1)[0]
    if fixed != path:  # a glob: the folder its matches lie in
        fixed = fixed.rsplit("/", 1)[0] or "/"
    return ("file" if protocol in ("file", "local") else protocol), PurePosixPath(fixed.rstrip("/") or "/")


def check_output_place(input_url: str, output_url: str) -> None:
    """ConfigError if the output is the input, lies inside it or holds it, or is a non-empty folder not ours."""
    (in_protocol, source), (out_protocol, target) = _location(input_url), _location(output_url)
    if in_protocol == out_protocol:
        if target == source:
            raise ConfigError(f"output.path {output_url} is the input itself (input.path {input_url})")
        if source in target.parents:
            raise ConfigError(
                f"output.path {output_url} lies inside input.path {input_url}: choose a folder outside it"
            )
        if target in source.parents:
            raise ConfigError(
                f"input.path {input_url} lies inside output.path {output_url}: choose an output beside it"
            )
    check_records_place(output_url)
    check_ours(output_url)


def check_ours(output_url: str) -> None:
    """ConfigError if the output, or its records folder beside it, is a folder with contents but no manifest
    beside the store (someone else's files), or if the store links out."""
    fs, path = fsspec.core.url_to_fs(output_url)
    _, records = fsspec.core.url_to_fs(records_url(output_url))
    if "file" in fs.protocol:
        check_no_links(Path(path), output_url)
    ours = fs.exists(f"{records}/{MANIFEST}")
    for folder, what in ((path, "output.path"), (records, "the records folder beside it,")):
        if not fs.isdir(folder):
            if fs.exists(folder):
                raise ConfigError(f"{what} {folder} is a file, not a folder")
            continue
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))
        if names and not ours:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise ConfigError(
                f"{what} {folder} is a folder that is not a segment-archive store's (it holds {shown}); "
                "a submit would overwrite what is there: choose an empty or new folder"
            )


def check_no_links(root: Path, output_url: str) -> None:
    """A store's groups must lie inside it: a linked group would have a submit write (and delete) elsewhere."""
    if not root.is_dir():
        return
    for entry in groups_and_images(root):
        if entry.is_symlink():
            raise ConfigError(
                f"output.path {output_url}: {entry.relative_to(root)} is a symbolic link; a store's folders "
                "must lie inside it (a submit rewrites them): replace the link with the folder itself"
            )


def groups_and_images(root: Path) -> Iterator[Path]:
    """The store's top two levels (labels/, labels/<image> ...), links not followed."""
    for child in root.iterdir():
        yield child
        if child.is_dir() and not child.is_symlink():
            yield from child.iterdir()
