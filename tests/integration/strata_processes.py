"""Helpers for tests that run `strata` as a real process (kill -9, BI readers, own data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STRATA = [sys.executable, "-m", "dagster_project.cli"]
SALT = "integration-test-salt"


@contextmanager
def fast_directory(name: str) -> Iterator[Path]:
    """A scratch directory in RAM (/dev/shm) when there is one.

    Dagster's SQLite storage syncs the disk on every event and a catch-up over a year and a
    half records thousands (one per asset and day); on a RAM disk that costs nothing, as on a
    laptop's SSD it costs little. Falls back to the normal temporary directory.
    """
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=f"strata-{name}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def strata_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `strata` process working on `home` (its own Dagster instance)."""
    env = dict(os.environ)
    for name in ("STRATA_PARTITION_START", "STRATA_SOURCES", "STRATA_MAX_REJECT_SHARE"):
        env.pop(name, None)
    env.update(
        STRATA_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        STRATA_PII_SALT=SALT,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def run_strata(
    home: Path, *args: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STRATA, *args, "--home", str(home)],
        cwd=REPO,
        env=strata_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_strata(home: Path, *args: str, log: Path, **env: str) -> subprocess.Popen:
    """`strata` in the background, output to `log` (read it on failure)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [*STRATA, *args, "--home", str(home)],
            cwd=REPO,
            env=strata_env(home, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def wait_until(condition, process: subprocess.Popen, log: Path, timeout: float, poll: float):
    """Poll `condition` until true; fail with the process's log if it ends or time runs out."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"strata ended (rc {process.returncode}) too early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting; strata's log:\n{log.read_text()}")
        time.sleep(poll)
