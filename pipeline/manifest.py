"""The job manifest: what is done, what failed, and for which inputs; resume and lock.

Lives in `<output>.job/manifest/` (pipeline.jobrecords: beside the store, not
in it) through fsspec, so it works on local disks and object stores alike, and
never appends in place:

* `job.json`: the job fingerprint; a different job is refused on this output.
* `states/<pass>/<image>/meta.json` and `<c>.u8`: the state of every unit of an
  image in one pass (`net`, `instances`), one byte per unit (`outcome.UnitState`),
  in files of `STATE_CHUNK` units.  A commit rewrites the files its units fall
  in, each whole (local disk: temp file + rename; object stores: one PUT), so the
  number of files grows with units / 10^4, not with commits, and a resume reads
  an image of 10^6 units in 100 small files.
* `failures/<pass>/<image>/<run>-<seq>.jsonl`: why units failed (immutable batches).
* `inputs/<image>.npz`: the stamps of the input pieces the image's committed units
  were computed from (pipeline.changes); a rerun redoes only the units whose
  window reads a piece that changed since.
* `images/<image>.json`: written once an image is complete (or quarantined),
  so a rerun skips it without reading its states.
* `instances/<image>/<plane>.npz`: output.kind instances, a plane's merge
  table and objects, written once every block of the plane is summarised.
* `lock.json`: one submit at a time (pipeline.joblock).

Memory: the planner reads the states of one image at a time, a byte a unit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np

from pipeline.atomic import write_whole
from pipeline.changes import InputPieces
from pipeline.errors import OutputError
from pipeline.joblock import JobLock
from pipeline.jobrecords import MANIFEST, records_url
from pipeline.names import image_name
from pipeline.outcome import UnitState

STATE_CHUNK = 10_000  # units per state file: 10 KB, rewritten whole by a commit that touches it
NET_PASS, INSTANCE_PASS = "net", "instances"
# Not a pass of units: per level-0 unit, 1 if the pyramid levels above it are up to date (pipeline.io.pyramid).
PYRAMID = "pyramid"
# How reports name each pass's units: the net's plainly, the instance pass's with a prefix.
PASS_PREFIXES = {NET_PASS: "", INSTANCE_PASS: "instances"}


@dataclass(frozen=True)
class FailureRecord:
    """Why one unit failed: the failure's kind (`outcome.FailureKind`), attempts made, and the message."""

    unit: str  # "<plane>/<row>/<col>"
    index: int  # the unit's number: its place in the state map
    kind: str
    attempts: int
    error: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Manifest:
    url: str
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(records_url(self.url) + "/" + MANIFEST)
        self._seq = 0
        self._described: set[str] = set()  # state folders whose meta.json this run wrote
        self.local = "file" in self.fs.protocol
        self._lock: JobLock | None = None

    # -- small JSON documents -------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file so that readers see the old or the new version, never half."""
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            write_whole(self.fs, path, data, self.local)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the manifest: {exc}") from None

    def read_json(self, path: str) -> dict[str, Any] | None:
        """A manifest document (always a JSON object), or None if absent; OutputError naming it if damaged."""
        try:
            with self.fs.open(path, "rb") as f:
                record = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OutputError(f"{path}: manifest file is corrupt: {exc}") from None
        if not isinstance(record, dict):
            raise OutputError(
                f"{path}: manifest file is corrupt: expected a JSON object, found {type(record).__name__}"
            )
        return record

    # -- job ----------------------------------------------------------------------------

    def job(self) -> dict[str, Any] | None:
        return self.read_json(self._path("job.json"))

    def set_job(self, record: dict[str, Any]) -> None:
        self.write_text(self._path("job.json"), json.dumps(record, indent=2, sort_keys=True))

    def reset(self) -> None:
        """Forget everything recorded (for --overwrite)."""
        self._described.clear()
        for sub in ("states", "failures", "units", "images", "instances", "inputs", "job.json"):
            path = self._path(sub)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    # -- images -------------------------------------------------------------------------

    def image_record(self, key: str) -> dict[str, Any] | None:
        return self.image_record_of(image_name(key))

    def image_record_of(self, name: str) -> dict[str, Any] | None:
        """The record of the image whose `image_name` is `name`."""
        return self.read_json(self._path("images", name + ".json"))

    def set_image_record(self, key: str, record: dict[str, Any]) -> None:
        self.write_text(self._path("images", image_name(key) + ".json"), json.dumps(record, sort_keys=True))

    def image_records(self) -> Iterator[dict[str, Any]]:
        folder = self._path("images")
        if not self.fs.exists(folder):
            return
        for path in sorted(self.fs.ls(folder, detail=False)):
            if path.endswith(".json"):
                record = self.read_json(path)
                if record:
                    yield record

    # -- unit states -----------------------------------------------------------------------

    def _states_dir(self, pass_name: str, key: str) -> str:
        return self._path("states", pass_name, image_name(key))

    def unit_states(self, key: str, pass_name: str = NET_PASS, input_fp: str | None = None) -> np.ndarray | None:
        """The image's committed unit states (uint8, one per unit), or None if none are (or for another input)."""
        return self.folder_unit_states(image_name(key), pass_name, input_fp)

    def folder_unit_states(
        self, dir_name: str, pass_name: str = NET_PASS, input_fp: str | None = None
    ) -> np.ndarray | None:
        """`unit_states` of the image whose `image_name` is `dir_name`."""
        folder = self._path("states", pass_name, dir_name)
        meta = self.read_json(folder + "/meta.json")
        if not isinstance(meta, dict) or (input_fp is not None and meta.get("input") != input_fp):
            return None
        states = np.zeros(int(meta["units"]), np.uint8)
        for path in self.fs.ls(folder, detail=False):
            name = path.rsplit("/", 1)[-1]
            if name.endswith(".u8") and name[:-3].isdigit():  # not the temp files of a killed writer
                start = int(name[:-3]) * STATE_CHUNK
                data = np.frombuffer(self.fs.cat_file(path), np.uint8)[: len(states) - start]
                states[start : start + len(data)] = data
        return states

    def state_folders(self, pass_name: str = NET_PASS) -> list[str]:
        """`image_name` of every image with committed states in a pass, without reading them.

        An image a killed run left unfinished has states here but no image record.
        """
        folder = self._path("states", pass_name)
        if not self.fs.exists(folder):
            return []
        return sorted(path.rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(folder, detail=False))

    def commit_states(self, key: str, pass_name: str, input_fp: str, states: np.ndarray, chunks: Iterable[int]) -> None:
        """Write the state files `chunks` (numbers of STATE_CHUNK-unit spans) of one image, each whole."""
        folder = self._states_dir(pass_name, key)
        if folder not in self._described:
            meta = {"input": input_fp, "units": int(len(states)), "chunk": STATE_CHUNK}
            self.write_text(folder + "/meta.json", json.dumps(meta, sort_keys=True))
            self._described.add(folder)
        for c in sorted(chunks):
            self.write_bytes(f"{folder}/{c}.u8", states[c * STATE_CHUNK : (c + 1) * STATE_CHUNK].tobytes())

    def commit_all_states(self, key: str, pass_name: str, input_fp: str, states: np.ndarray) -> None:
        """`commit_states` of every state file of one image (its grid or its whole map changed)."""
        self.commit_states(key, pass_name, input_fp, states, range(-(-len(states) // STATE_CHUNK)))

    def commit_failures(self, key: str, pass_name: str, records: list[FailureRecord]) -> None:
        """Record why a batch of units of one image failed, in one immutable file."""
        if not records:
            return
        self._seq += 1
        path = self._path("failures", pass_name, image_name(key), f"{self.run_id}-{self._seq:08d}.jsonl")
        self.write_text(path, "".join(r.to_json() + "\n" for r in records))

    def failures(self, key: str, pass_name: str = NET_PASS) -> dict[str, FailureRecord]:
        """The latest failure record per unit of one image (files in name order: run id, then sequence)."""
        folder = self._path("failures", pass_name, image_name(key))
        latest: dict[str, FailureRecord] = {}
        if not self.fs.exists(folder):
            return latest
        for path in sorted(self.fs.ls(folder, detail=False)):
            if not path.endswith(".jsonl"):
                continue  # temp files of a killed writer
            with self.fs.open(path, "rb") as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        record = self._failure_record(path, number, line)
                        latest[record.unit] = record
        return latest

    @staticmethod
    def _failure_record(path: str, number: int, line: bytes) -> FailureRecord:
        try:
            return FailureRecord(**json.loads(line.decode("utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise OutputError(f"{path}:{number}: manifest record is corrupt: {exc}") from None

    def forget_image(self, key: str) -> None:
        """Drop an image's records (its input changed: every unit is pending again)."""
        self.forget_folder(image_name(key))

    def forget_folder(self, name: str) -> None:
        """`forget_image` of the image whose `image_name` is `name`."""
        paths = [self._path("images", name + ".json"), self._path("instances", name), self._input_path(name)]
        for pass_name in (NET_PASS, INSTANCE_PASS, PYRAMID):
            self._described.discard(self._path("states", pass_name, name))
            paths += [self._path("states", pass_name, name), self._path("failures", pass_name, name)]
        for path in paths:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    def forget_states(self, name: str, pass_name: str) -> None:
        """Drop one pass's states of the image whose `image_name` is `name` (all its units unknown again)."""
        folder = self._path("states", pass_name, name)
        self._described.discard(folder)
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

    def reopen_units(self, name: str, pass_name: str, units: np.ndarray) -> None:
        """Make units of the image whose `image_name` is `name` pending again (their output was lost),
        and the image unfinished, so that the next submit redoes exactly those units."""
        states = self.folder_unit_states(name, pass_name)
        if states is None or not len(units):
            return
        states[units] = UnitState.PENDING
        folder = self._path("states", pass_name, name)
        for c in np.unique(units // STATE_CHUNK):
            self.write_bytes(f"{folder}/{c}.u8", states[c * STATE_CHUNK : (c + 1) * STATE_CHUNK].tobytes())
        self.unfinish(name)

    def unfinish(self, name: str) -> None:
        """Drop the image record of `name`, so that the next submit plans it and finishes it again."""
        record = self._path("images", name + ".json")
        if self.fs.exists(record):
            self.fs.rm(record)

    # -- inputs ---------------------------------------------------------------------------

    def _input_path(self, name: str) -> str:
        return self._path("inputs", name + ".npz")

    def input_pieces(self, key: str) -> InputPieces | None:
        """The stamps of the input the image's committed units were computed from, or None if never recorded."""
        path = self._input_path(image_name(key))
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return InputPieces.from_bytes(data, path)

    def set_input_pieces(self, key: str, pieces: InputPieces) -> None:
        self.write_bytes(self._input_path(image_name(key)), pieces.to_bytes())

    # -- instances ------------------------------------------------------------------------

    def _plane_path(self, key: str, plane: int) -> str:
        return self._path("instances", image_name(key), f"{plane}.npz")

    def save_plane_objects(self, key: str, plane: int, data: bytes) -> None:
        self.write_bytes(self._plane_path(key, plane), data)

    def forget_planes(self, key: str, planes: Iterable[int]) -> None:
        """Drop the merged objects of these planes (their probabilities changed: merge them again)."""
        for plane in planes:
            path = self._plane_path(key, int(plane))
            if self.fs.exists(path):
                self.fs.rm(path)

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
        return self.read_json(runs[-1]) if runs else None

    # -- lock ---------------------------------------------------------------------------

    @contextmanager
    def lock(self, stale_after: float = 600.0) -> Iterator[None]:
        """Hold the job lock for the body (pipeline.joblock); JobLockedError if a live run holds it."""
        self._lock = JobLock(self.fs, self._path("lock.json"), self.run_id, self.local)
        with self._lock.held(stale_after):
            yield

    def lock_holder(self) -> dict[str, Any] | None:
        """The record of the run holding the job lock now, if any (what `status` shows)."""
        return JobLock(self.fs, self._path("lock.json"), self.run_id, self.local).holder()

    def check_lock(self) -> None:
        """Raise JobLockedError if another run has taken this run's lock (checked before every commit)."""
        if self._lock is not None:
            self._lock.check()
