"""The job manifest: what is done, what failed, and for which inputs; resume and lock.

Lives in `<output>/.manifest/` through fsspec, so it works on local disks and
object stores alike, and never appends in place:

* `job.json`: the job fingerprint; a different job is refused on this output.
* `units/<image>/<run>-<seq>.jsonl`: immutable batches of unit records
  {unit, state, attempts, error, input}; each file is written whole (local
  disk: temp file + rename; object stores: one PUT).
* `images/<image>.json`: written once an image is complete (or quarantined),
  so a rerun skips it without reading its unit records.
* `instances/<image>/<plane>.npz`: output.kind instances, a plane's merge
  table and objects, written once every block of the plane is summarised.
* `lock.json`: one submit at a time; a lock whose heartbeat is older than
  `stale_after` seconds (or whose process is gone, on this host) is stale.

Memory: the planner reads the records of one image at a time.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec

from pipeline.errors import JobLockedError, OutputError

MANIFEST_DIR = ".manifest"
FINISHED_STATES = ("done", "skipped")
INSTANCES_PREFIX = "instances:"  # unit records of the instance pass: "instances:<plane>/<row>/<col>"


def image_dir_name(key: str) -> str:
    return key.replace("/", "__")


@dataclass
class UnitRecord:
    unit: str
    state: str  # "done" | "skipped" (empty: written as background) | "failed"
    attempts: int
    input: str
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass
class Manifest:
    url: str
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.url.rstrip("/") + "/" + MANIFEST_DIR)
        self._seq = 0
        self.local = "file" in self.fs.protocol

    # -- small JSON documents -------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file so that readers see the old or the new version, never half."""
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            if self.local:
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            else:
                self.fs.pipe_file(path, data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the manifest: {exc}") from None

    def read_json(self, path: str) -> Any:
        try:
            with self.fs.open(path, "r") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise OutputError(f"{path}: manifest file is corrupt: {exc}") from None

    # -- job ----------------------------------------------------------------------------

    def job(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.read_json(self._path("job.json"))
        return result

    def set_job(self, record: dict[str, Any]) -> None:
        self.write_text(self._path("job.json"), json.dumps(record, indent=2, sort_keys=True))

    def reset(self) -> None:
        """Forget everything recorded (for --overwrite)."""
        for sub in ("units", "images", "instances", "job.json"):
            path = self._path(sub)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    # -- images -------------------------------------------------------------------------

    def image_record(self, key: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.read_json(self._path("images", image_dir_name(key) + ".json"))
        return result

    def set_image_record(self, key: str, record: dict[str, Any]) -> None:
        self.write_text(self._path("images", image_dir_name(key) + ".json"), json.dumps(record, sort_keys=True))

    def image_records(self) -> Iterator[dict[str, Any]]:
        folder = self._path("images")
        if not self.fs.exists(folder):
            return
        for path in sorted(self.fs.ls(folder, detail=False)):
            if path.endswith(".json"):
                record = self.read_json(path)
                if record:
                    yield record

    # -- units --------------------------------------------------------------------------

    def unit_records(self, key: str) -> dict[str, UnitRecord]:
        """Latest record per unit of one image (files in name order: run id, then sequence)."""
        return self.folder_unit_records(image_dir_name(key))

    def unit_folders(self) -> list[str]:
        """`image_dir_name` of every image with unit records, without reading them.

        An image a killed run left unfinished has records here but no image record.
        """
        folder = self._path("units")
        if not self.fs.exists(folder):
            return []
        return sorted(path.rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(folder, detail=False))

    def folder_unit_records(self, dir_name: str) -> dict[str, UnitRecord]:
        """`unit_records` of the image whose `image_dir_name` is `dir_name`."""
        folder = self._path("units", dir_name)
        latest: dict[str, UnitRecord] = {}
        if not self.fs.exists(folder):
            return latest
        for path in sorted(self.fs.ls(folder, detail=False)):
            if not path.endswith(".jsonl"):
                continue  # temp files of a killed writer
            with self.fs.open(path, "r") as f:
                for line in f:
                    if line.strip():
                        record = UnitRecord(**json.loads(line))
                        latest[record.unit] = record
        return latest

    def commit_units(self, key: str, records: list[UnitRecord]) -> None:
        """Record a batch of finished units of one image, in one immutable file."""
        if not records:
            return
        self._seq += 1
        path = self._path("units", image_dir_name(key), f"{self.run_id}-{self._seq:08d}.jsonl")
        self.write_text(path, "".join(r.to_json() + "\n" for r in records))

    def forget_image(self, key: str) -> None:
        """Drop an image's records (its input changed: every unit is pending again)."""
        name = image_dir_name(key)
        for path in (self._path("units", name), self._path("images", name + ".json"), self._path("instances", name)):
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    # -- instances ------------------------------------------------------------------------

    def _plane_path(self, key: str, plane: int) -> str:
        return self._path("instances", image_dir_name(key), f"{plane}.npz")

    def save_plane_objects(self, key: str, plane: int, data: bytes) -> None:
        self.write_bytes(self._plane_path(key, plane), data)

    def has_plane_objects(self, key: str, plane: int) -> bool:
        return bool(self.fs.exists(self._plane_path(key, plane)))

    def plane_objects(self, key: str, plane: int) -> bytes | None:
        """The saved merge table and objects of one plane, or None if it is not merged yet."""
        try:
            data: bytes = self.fs.cat_file(self._plane_path(key, plane))
        except FileNotFoundError:
            return None
        return data

    # -- runs ---------------------------------------------------------------------------

    def write_run_report(self, report: dict[str, Any]) -> None:
        self.write_text(self._path("runs", f"{self.run_id}.json"), json.dumps(report, indent=2, sort_keys=True))

    def run_report_paths(self) -> list[str]:
        """Reports of earlier runs, oldest first (run ids start with their start time)."""
        folder = self._path("runs")
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))

    def run_reports(self) -> Iterator[dict[str, Any]]:
        for path in self.run_report_paths():
            report = self.read_json(path)
            if report:
                yield report

    def last_run_report(self) -> dict[str, Any] | None:
        runs = self.run_report_paths()
        result: dict[str, Any] | None = self.read_json(runs[-1]) if runs else None
        return result

    # -- lock ---------------------------------------------------------------------------

    @contextmanager
    def lock(self, stale_after: float = 600.0) -> Iterator[None]:
        """Hold the job lock for the body; refuse if another live run holds it."""
        path = self._path("lock.json")
        self.fs.makedirs(self.root, exist_ok=True)
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "run": self.run_id, "heartbeat": time.time()}
        if not self._try_create(path, mine):
            other = self.read_json(path) or {}
            if not self._is_stale(other, stale_after):
                raise JobLockedError(
                    f"{path}: job is locked by run {other.get('run')} (pid {other.get('pid')} on "
                    f"{other.get('host')}, last heartbeat {time.time() - other.get('heartbeat', 0):.0f} s ago); "
                    "wait for it to finish, or remove the lock file if that run is dead"
                )
            self.write_text(path, json.dumps(mine))
        try:
            yield
        finally:
            current = self.read_json(path) or {}
            if current.get("run") == self.run_id:
                self.fs.rm(path)

    def heartbeat(self) -> None:
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "run": self.run_id, "heartbeat": time.time()}
        self.write_text(self._path("lock.json"), json.dumps(mine))

    def _try_create(self, path: str, record: dict[str, Any]) -> bool:
        if self.local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            return True
        # Object stores: check, then write (best effort; see docs/operations.md).
        if self.fs.exists(path):
            return False
        self.write_text(path, json.dumps(record))
        return True

    @staticmethod
    def _is_stale(other: dict[str, Any], stale_after: float) -> bool:
        if time.time() - float(other.get("heartbeat", 0)) > stale_after:
            return True
        if other.get("host") == socket.gethostname():
            try:
                os.kill(int(other.get("pid", 0)), 0)
            except (ProcessLookupError, ValueError):
                return True
            except PermissionError:
                return False
        return False
