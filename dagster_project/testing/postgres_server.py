"""A throwaway PostgreSQL server for `make test-postgres`: Debian's binaries, a new cluster in a
temporary directory, listening on 127.0.0.1 at a free port (and a unix socket in that
directory), trust authentication, removed again when the context exits.

initdb refuses to run as root: as root the cluster belongs to the `postgres` user that Debian's
package creates (commands through `runuser`); otherwise to the user running the tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "strata"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (install Debian's `postgresql`)."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    data_dir: Path

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        con = psycopg2.connect(self.dsn())
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'create database "{name}"')
        finally:
            con.close()


def server_binaries() -> Path:
    """The folder of initdb and pg_ctl: Debian's /usr/lib/postgresql/<newest>/bin, else PATH."""
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if debian:
        return Path(debian[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "no PostgreSQL server found (initdb): install Debian's postgresql package "
        "(`make test-postgres` does when it runs as root or with sudo)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    pwd.getpwnam("postgres")  # KeyError: Debian's package creates this user
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], cwd: Path, log: Path | None = None) -> None:
    """Run a server command as the cluster's owner; fail with its output and the server log."""
    done = subprocess.run(_as_owner(command), capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace") if log and log.exists() else ""
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr}{server_log}"
        )


@contextmanager
def throwaway_postgres(host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """Start a new cluster; yield how to reach it; stop it and delete its files."""
    bin_dir = server_binaries()
    # not under pytest's tmp_path: that is private to the test's user, and as root the server
    # runs as `postgres`
    base = Path(tempfile.mkdtemp(prefix="strata-postgres-"))
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
    port = free_port(host)
    # a test server: no durability (fsync off), the socket in its own folder
    options = (
        f"-c listen_addresses={host} -p {port} -k {base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        _run([*initdb, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], base)
        _run([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "60", "start"], base, log)
        started = True
        yield PostgresServer(host=host, port=port, user=SUPERUSER, data_dir=data)
    finally:
        if started:
            _run([*pg_ctl, "-m", "immediate", "stop"], base)
        shutil.rmtree(base, ignore_errors=True)
