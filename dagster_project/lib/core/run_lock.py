"""One `strata run` per data directory, and recovery after a run was killed.

A run that dies (kill -9, OOM, a closed laptop) leaves three things behind, none of which
may stop the next run:

- the warehouse: DuckDB replays or discards its write-ahead log on the next open, and every
  step writes in transactions (ingestion, snapshots, dbt models), so the file is usable;
- children that outlived their parent (a dbt process still building models, which closes and
  reopens the warehouse between them, so waiting for a free lock is not enough): every process
  a run starts inherits its owner mark (:data:`RUN_OWNER_ENV`), and the next holder of the run
  lock stops the processes marked by an earlier owner (:func:`stop_leftover_processes`);
- a DuckDB lock held by any other process: :func:`wait_for_warehouse` waits until it is free;
- the run lock below, which the kernel releases with the process (``flock``), so a dead
  holder never blocks anyone; the next holder knows any run still marked as in progress
  was abandoned (the CLI then marks it failed and frees its Dagster pool slot).

The serving file needs nothing: it is only ever replaced whole (see ``publish.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

LOCK_FILE = ".strata-run.lock"
# "<resolved home>|<pid of the run lock holder>", inherited by every process the run starts
RUN_OWNER_ENV = "STRATA_RUN_OWNER"
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
        os.environ[RUN_OWNER_ENV] = _owner_mark(self.path.parent, os.getpid())

    def release(self) -> None:
        if self._fd is not None:
            os.environ.pop(RUN_OWNER_ENV, None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner_mark(home: Path, pid: int) -> str:
    return f"{Path(home).resolve()}|{pid}"


def leftover_processes(home: Path) -> list[int]:
    """Live processes started by an earlier run on `home` (their owner mark names another pid).

    Reads /proc, so it finds nothing where there is none (macOS); a zombie has no environment
    left and is not listed.
    """
    prefix = f"{Path(home).resolve()}|".encode()
    mine = _owner_mark(home, os.getpid()).encode()
    key = f"{RUN_OWNER_ENV}=".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if entry.name == str(os.getpid()):
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or another user's process
            continue
        for item in environ.split(b"\0"):
            if item.startswith(key):
                mark = item[len(key) :]
                if mark.startswith(prefix) and mark != mine:
                    found.append(int(entry.name))
                break
    return sorted(found)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waits for a parent that may never reap it


def stop_leftover_processes(home: Path, grace: float = 20.0, poll: float = 0.1) -> list[int]:
    """Stop what an abandoned run on `home` left running: SIGTERM, then SIGKILL after `grace` s.

    Call it holding the run lock, so no live run owns them. Their work is discarded anyway:
    every step writes in transactions and the next run rebuilds what it needs.
    """
    pids = leftover_processes(home)
    _signal_all(pids, signal.SIGTERM)
    if not _ended(pids, grace, poll):
        _signal_all(pids, signal.SIGKILL)
        _ended(pids, 5.0, poll)
    return pids


def _ended(pids: list[int], timeout: float, poll: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_running(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


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
