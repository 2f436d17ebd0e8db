"""The run lock dies with its holder; a warehouse held by another process is waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.core.run_lock import (
    RUN_OWNER_ENV,
    RunLock,
    RunLockBusy,
    leftover_processes,
    stop_leftover_processes,
    wait_for_warehouse,
    warehouse_lock_holder,
)

HOLD_LOCK = """
import sys, time
from pathlib import Path
from dagster_project.lib.core.run_lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""
HOLD_DUCKDB = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(code: str, *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_killed_holder_releases_the_run_lock(tmp_path: Path):
    holder = hold(HOLD_LOCK, str(tmp_path))
    try:
        with pytest.raises(RunLockBusy, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire(timeout=0.2, poll=0.05)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / ".strata-run.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_waits_for_another_process_to_release_the_warehouse(tmp_path: Path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold(HOLD_DUCKDB, str(path), "1.5")
    waited_for = []
    try:
        assert warehouse_lock_holder(path) == holder.pid
        start = time.monotonic()
        wait_for_warehouse(path, timeout=30, poll=0.1, on_wait=waited_for.append)
        assert time.monotonic() - start > 0.5
    finally:
        holder.wait()
    assert waited_for == [holder.pid]
    assert warehouse_lock_holder(path) is None

    holder = hold(HOLD_DUCKDB, str(path), "30")
    try:
        with pytest.raises(TimeoutError, match=str(holder.pid)):
            wait_for_warehouse(path, timeout=0.3, poll=0.1)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


SLEEP = """
import time
print("locked", flush=True)
time.sleep(60)
"""
# A child inherits an ignored SIGTERM: after any Dagster run in an xdist worker (which ignores
# SIGINT), Dagster has mapped SIGTERM to SIGINT's handler, SIG_IGN. Each child sets its own.
DEFAULT_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_DFL)\n" + SLEEP
IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEP


def test_the_next_run_stops_what_a_killed_run_left_running(tmp_path: Path):
    home, other_home = tmp_path / "home", tmp_path / "other"

    def start(code: str, mark: str) -> subprocess.Popen:
        env = {**os.environ, RUN_OWNER_ENV: mark}
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
        assert process.stdout.readline().strip() == b"locked"
        return process

    # children of a dead run on `home` (one ignores SIGTERM, like a busy child may), one of a
    # run on another home, and one of the current holder
    leftovers = [
        start(DEFAULT_TERM, f"{home.resolve()}|1"),
        start(IGNORE_TERM, f"{home.resolve()}|2"),
    ]
    others = [start(IGNORE_TERM, f"{other_home.resolve()}|1")]
    lock = RunLock(home)
    lock.acquire()
    try:
        assert os.environ[RUN_OWNER_ENV] == f"{home.resolve()}|{os.getpid()}"
        others.append(start(IGNORE_TERM, os.environ[RUN_OWNER_ENV]))
        assert leftover_processes(home) == sorted(p.pid for p in leftovers)

        start_time = time.monotonic()
        assert stop_leftover_processes(home, grace=0.5, poll=0.05) == sorted(
            p.pid for p in leftovers
        )
        assert time.monotonic() - start_time < 10
        assert [p.wait(timeout=5) for p in leftovers] == [-signal.SIGTERM, -signal.SIGKILL]
        assert all(p.poll() is None for p in others)
        assert leftover_processes(home) == []
    finally:
        lock.release()
        for process in others:
            process.kill()
            process.wait()
    assert RUN_OWNER_ENV not in os.environ
