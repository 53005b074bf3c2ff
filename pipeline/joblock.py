"""One submit at a time per output: the job lock (`<output>.job/manifest/lock.json`).

The lock file names its holder (host, pid, run) and a heartbeat that a thread
renews every `HEARTBEAT_S` seconds for the whole run (plan, units, pyramids).
Another submit may take the lock only from a dead holder:

* on the holder's own host, the holder's pid decides: alive is live, however old
  its heartbeat (a suspended laptop, a long plan);
* from another host, a heartbeat older than `stale_after` is dead;
* an empty or unreadable lock file (the disk filled as it was created) holds nothing.

Local disks: the lock appears whole or not at all (written aside, then hard-linked
into place, which fails if a lock exists), and a dead holder's lock is moved aside
by rename before a new one is made, so of two submits taking over the same dead
lock one wins and the other is refused.  Object stores: created with fsspec's
exclusive mode ("xb", a conditional PUT with If-None-Match on S3, GCS and Azure)
where the store offers it, else check-then-write (see docs/operations.md).

Every heartbeat first checks that the lock is still ours; a run that finds it
taken (`lost`) stops at its next commit, and a run never removes a lock it does
not hold.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pipeline.atomic import temporary_beside, write_whole
from pipeline.errors import JobLockedError

HEARTBEAT_S = 30.0
log = logging.getLogger(__name__)


class JobLock:
    def __init__(self, fs: Any, path: str, run_id: str, local: bool) -> None:
        self.fs, self.path, self.run_id, self.local = fs, path, run_id, local
        self.lost: dict[str, Any] | None = None  # the record that replaced ours, once one has

    def record(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "run": self.run_id, "heartbeat": time.time()}

    @contextmanager
    def held(self, stale_after: float) -> Iterator[None]:
        """Hold the lock for the body, heartbeating; JobLockedError if a live run holds it."""
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        if not self._create():
            other = self.holder()
            if other is not None and not is_stale(other, stale_after):
                raise JobLockedError(
                    f"{self.path}: job is locked by run {other.get('run')} (pid {other.get('pid')} on "
                    f"{other.get('host')}, last heartbeat {heartbeat_age(other):.0f} s ago); "
                    "wait for it to finish, or remove the lock file if that run is dead"
                )
            self._take_over(other)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(stop,), name="job-lock-heartbeat", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            if self.owned():
                self.fs.rm(self.path)

    def check(self) -> None:
        """Raise JobLockedError if another run has taken the lock from this one."""
        if self.lost is not None:
            raise JobLockedError(
                f"{self.path}: this run ({self.run_id}) lost the job lock to run {self.lost.get('run')} (pid "
                f"{self.lost.get('pid')} on {self.lost.get('host')}); stopping so that two runs never write one output"
            )

    def holder(self) -> dict[str, Any] | None:
        """The lock's record; None if there is no lock, or it is empty or unreadable."""
        try:
            with self.fs.open(self.path, "rb") as f:
                record = json.loads(f.read())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def owned(self) -> bool:
        holder = self.holder()
        return holder is not None and holder.get("run") == self.run_id

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                holder = self.holder()
                if holder is None or holder.get("run") != self.run_id:
                    self.lost = holder or {}
                    return
                self._write(self.path, self.record())
            except Exception as exc:  # a store's hiccup: the next beat tries again, well within stale_after
                log.warning("%s: heartbeat not written: %r", self.path, exc)

    def _write(self, path: str, record: dict[str, Any]) -> None:
        write_whole(self.fs, path, json.dumps(record).encode(), self.local)

    def _create(self) -> bool:
        """Make our lock if there is none; False if one exists."""
        if not self.local:
            return self._create_on_object_store()
        tmp = temporary_beside(self.path)
        self._write(tmp, self.record())
        try:
            os.link(tmp, self.path)  # fails if a lock exists: creation and content in one step
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then the content
            return self._create_exclusively()
        finally:
            os.unlink(tmp)

    def _create_exclusively(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.record(), f)
        return True

    def _create_on_object_store(self) -> bool:
        """Check, then create exclusively ("xb": If-None-Match on S3, GCS, Azure) where the store can."""
        if self.fs.exists(self.path):
            return False
        data = json.dumps(self.record()).encode()
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False  # another submit created it since our check
        except (ValueError, NotImplementedError, TypeError):  # no exclusive create here: best effort
            self.fs.pipe_file(self.path, data)
        return True

    def _take_over(self, dead: dict[str, Any] | None) -> None:
        """Replace the dead holder's lock with ours, unless another submit got there first."""
        if self.local:
            self._move_aside(dead)
        elif self.fs.exists(self.path):
            self.fs.rm(self.path)
        if not self._create():
            raise JobLockedError(f"{self.path}: another submit took the job lock first")

    def _move_aside(self, dead: dict[str, Any] | None) -> None:
        """Rename the dead lock away (one renamer wins); a live lock that replaced it meanwhile goes back."""
        aside = f"{self.path}.{self.run_id}.dead"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # removed by hand, or by another submit that moved it first
        moved = JobLock(self.fs, aside, "", local=True).holder()
        if moved != dead:
            with suppress(FileExistsError):
                os.link(aside, self.path)
            os.unlink(aside)
            raise JobLockedError(f"{self.path}: another submit took the job lock first")
        os.unlink(aside)


def is_stale(holder: dict[str, Any], stale_after: float) -> bool:
    """True when the lock's holder is dead: its pid, on this host; its heartbeat's age, from elsewhere."""
    if holder.get("host") == socket.gethostname():
        try:
            pid = int(holder.get("pid", 0))
            if pid <= 0:  # 0 and -1 would signal groups, not a process
                return True
            os.kill(pid, 0)
        except (ProcessLookupError, ValueError, TypeError, OverflowError):
            return True
        except PermissionError:
            return False  # alive, another user's
        return False
    return heartbeat_age(holder) > stale_after


def heartbeat_age(holder: dict[str, Any]) -> float:
    """Seconds since the holder's last heartbeat (infinite if it never wrote a readable one)."""
    try:
        return time.time() - float(holder.get("heartbeat", 0))
    except (TypeError, ValueError):
        return math.inf
