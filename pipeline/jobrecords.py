"""Where a job keeps what is not masks: beside its store, outside the Zarr hierarchy.

    out/demo.zarr/          the OME-Zarr store: Zarr groups and arrays only, so zarr-python,
                            ome-zarr-py and napari open it without a warning
    out/demo.zarr.job/      manifest/ (unit states, failures, the lock), report.html,
                            run-report.json, objects/<image>.csv (output.kind instances)

A store and its records travel together: copy or move both.  Outputs written by
earlier versions kept the records inside the store (`.manifest/`, `report.html`
...): `adopt_earlier_layout` moves them out, once, the next time the driver opens
the output.
"""

from __future__ import annotations

import logging

import fsspec

from pipeline.errors import ConfigError

RECORDS_SUFFIX = ".job"
MANIFEST = "manifest"
REPORT_JSON = "run-report.json"
REPORT_HTML = "report.html"
OBJECTS = "objects"
# Earlier versions' names inside the store -> names in the records folder.
EARLIER_LAYOUT = {".manifest": MANIFEST, OBJECTS: OBJECTS, REPORT_JSON: REPORT_JSON, REPORT_HTML: REPORT_HTML}
log = logging.getLogger(__name__)


def records_url(output_url: str) -> str:
    """The folder of the job's records for the store at `output_url`: the same path, `.job` appended."""
    return output_url.rstrip("/") + RECORDS_SUFFIX


def check_records_place(output_url: str) -> None:
    """ConfigError for a store at a bucket's root: its records could not lie beside it."""
    fs, path = fsspec.core.url_to_fs(output_url)
    if "file" not in fs.protocol and "/" not in path.strip("/"):
        raise ConfigError(
            f"output.path {output_url} is a bucket's root; name a folder inside it (for example "
            f"{output_url.rstrip('/')}/masks.zarr), so that the job's records can lie beside the store"
        )


def adopt_earlier_layout(output_url: str) -> list[str]:
    """Move the records an earlier version kept inside the store out beside it; returns what moved."""
    fs, store = fsspec.core.url_to_fs(output_url.rstrip("/"))
    _, records = fsspec.core.url_to_fs(records_url(output_url))
    if not fs.exists(f"{store}/.manifest") or fs.exists(f"{records}/{MANIFEST}"):
        return []
    moved = []
    fs.makedirs(records, exist_ok=True)
    for old, new in EARLIER_LAYOUT.items():
        if fs.exists(f"{store}/{old}"):
            fs.mv(f"{store}/{old}", f"{records}/{new}", recursive=True)
            moved.append(old)
    log.warning("%s: moved the job's records (%s) out of the store to %s", output_url, ", ".join(moved), records)
    return moved
