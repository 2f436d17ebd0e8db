"""One `strata run` per data directory, and recovery after a run was killed.

A run that dies (kill -9, OOM, a closed laptop) leaves three things behind, none of which
may stop the next run:

- the warehouse: DuckDB replays or discards its write-ahead log on the next open, and every
  step writes in transactions (ingestion, snapshots, dbt models), so the file is usable;
- a DuckDB lock held by a child that outlived its parent (a dbt process finishing a model):
  :func:`wait_for_warehouse` waits until the lock is released;
- the run lock below, which the kernel releases with the process (``flock``), so a dead
  holder never blocks anyone; the next holder knows any run still marked as in progress
  was abandoned (the CLI then marks it failed and frees its Dagster pool slot).

The serving file needs nothing: it is only ever replaced whole (see ``publish.py``).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

LOCK_FILE = ".strata-run.lock"
_LOCK_HOLDER = re.compile(r"PID (\d+)")


class RunLockBusy(RuntimeError):
    """Another live `strata run` holds the data directory."""


class RunLock:
    """An exclusive advisory lock on `<home>/.strata-run.lock` (released when the process ends)."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, poll: float = 0.5) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise RunLockBusy(
                        f"another strata run (pid {holder or '?'}) is using {self.path.parent}"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def warehouse_lock_holder(path: Path) -> int | None:
    """The pid holding the warehouse's DuckDB lock, or None when it can be opened."""
    if not path.exists():
        return None
    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        match = _LOCK_HOLDER.search(str(exc))
        return int(match.group(1)) if match else -1
    return None


def wait_for_warehouse(
    path: Path,
    timeout: float = 600.0,
    poll: float = 1.0,
    on_wait: Callable[[int], None] | None = None,
) -> None:
    """Wait until no other process holds the warehouse (e.g. a dbt child of a killed run).

    Raises TimeoutError naming the holder when it does not let go within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    told = False
    while (holder := warehouse_lock_holder(path)) is not None:
        if not told and on_wait is not None:
            on_wait(holder)
            told = True
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{path} is still locked by process {holder} after {timeout:.0f} s; "
                "stop that process (a BI tool must open serving/strata.duckdb instead)"
            )
        time.sleep(poll)
