"""The record of the `make run` in this checkout: CACHE_DIR/run/instance.json, locked (flock) while it runs.

scripts/serve.py takes the lock before it touches anything, so a second `make run` in the same checkout
finds the first and leaves it alone (its logs, its Redis and the append-only file that Redis writes). The
lock goes with the process that holds it, so a record left by a run that died counts for nothing. The CLI
reads the record to find the running instance's Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Instance:
    """A running `make run`: its pid, its Redis and its API."""

    pid: int
    redis_url: str
    api_url: str


class AlreadyRunning(Exception):
    """Another `make run` holds this checkout's lock; `instance` is its record (None while it starts)."""

    def __init__(self, instance: Instance | None) -> None:
        super().__init__("make run is already running here")
        self.instance = instance


def record_path(cache_dir: Path) -> Path:
    return cache_dir / "run" / "instance.json"


def claim(cache_dir: Path) -> IO[str]:
    """Take this checkout's lock and return its open file (the lock lasts while the file is open in this
    process or one it is passed to); AlreadyRunning when another process holds it. Writes nothing."""
    path = record_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held open for the life of the run
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise AlreadyRunning(_read(path)) from None
    return f


def publish(lock: IO[str], instance: Instance) -> None:
    """Write the running instance's record into the locked file."""
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps(asdict(instance)))
    lock.flush()
    os.fsync(lock.fileno())


def running_instance(cache_dir: Path) -> Instance | None:
    """The `make run` running in this checkout now, or None (no record, or nobody holds its lock)."""
    path = record_path(cache_dir)
    try:
        f = open(path)  # noqa: SIM115 - closed below
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(path)
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def _read(path: Path) -> Instance | None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        return Instance(**json.loads(path.read_text()))
    return None
