"""Dagster's SQLite instance storage (the default under DAGSTER_HOME), made cheap per event.

A 120-day catch-up records thousands of events: one materialization per asset and day, plus
the checks. Upstream pays three avoidable costs on each, which were a quarter of a 300-user
`strata run`:

- a wait for the disk per commit (SQLite's synchronous=FULL): see sync_sqlite_at_checkpoints;
- a WAL checkpoint whenever its last connection to a file closes: see _keep_open;
- a new SQLAlchemy engine and SQLite connection per statement, which sets up the dialect and
  runs the connection's pragmas again and compiles every statement afresh (the
  compiled-statement cache belongs to the engine): see StrataSqliteEventLogStorage, which
  `strata` names in the dagster.yaml it writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import Connection, Engine, create_engine, event


def sync_sqlite_at_checkpoints() -> None:
    """Dagster's SQLite storage (the default under DAGSTER_HOME) commits every event on its own
    and, in WAL mode at SQLite's default synchronous=FULL, waits for the disk each time: a
    120-day catch-up records one materialization per asset and day, thousands of waits (12 s
    of a 300-user run). synchronous=NORMAL syncs the WAL at checkpoints only: no event is lost
    when a process crashes or is killed, and the file cannot be corrupted; a power cut may drop
    the last events (the warehouse, a DuckDB file, is not affected).

    Dagster also opens and closes a connection for every statement, and SQLite checkpoints the
    WAL into the database and removes it whenever the last connection to a file closes: every
    event paid for a checkpoint (about 1.5 ms of the 2 ms a connection costs). One idle
    connection per file, kept open (:data:`_KEPT_OPEN`, the most recent files), leaves the WAL
    in place; SQLite still checkpoints it as it grows, and when the process ends.

    Applies to every SQLite connection a process opens afterwards; other databases are left
    alone."""
    if event.contains(Engine, "connect", _normal_sqlite_sync):
        return
    event.listen(Engine, "connect", _normal_sqlite_sync)


# database file -> an idle connection that keeps its WAL open; a webserver reads one file per
# run, so only the most recent few stay open
_KEPT_OPEN: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_KEEP_AT_MOST = 16
_KEPT_OPEN_LOCK = threading.Lock()


def _normal_sqlite_sync(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.execute("pragma synchronous = normal")
    files = [row[2] for row in dbapi_connection.execute("pragma database_list") if row[1] == "main"]
    if files and files[0]:
        _keep_open(files[0])


def _keep_open(database: str) -> None:
    with _KEPT_OPEN_LOCK:
        if database in _KEPT_OPEN:
            _KEPT_OPEN.move_to_end(database)
            return
        idle = sqlite3.connect(database, check_same_thread=False)
        # it opens the file, and the WAL's index, on its first statement; a file not yet in
        # WAL mode (Dagster switches a new one after connecting) is kept on a later connection
        if idle.execute("pragma journal_mode").fetchone()[0] != "wal":
            idle.close()
            return
        _KEPT_OPEN[database] = idle
        while len(_KEPT_OPEN) > _KEEP_AT_MOST:
            _KEPT_OPEN.popitem(last=False)[1].close()


# engines (each with its open connection) kept per database file: a webserver reads many
# runs' files, a run writes two
_ENGINES_AT_MOST = 32


class StrataSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with one SQLAlchemy engine per database file for the life of
    the storage instead of one per statement, and one connection per file kept open.

    Upstream creates an engine, and with it a new connection, for every statement (NullPool).
    Here each file's engine keeps its cache of compiled statements and one idle connection
    between statements: in WAL mode an idle connection holds no lock, so other processes (the
    webserver, the daemon, another run) read and write the files as before. Tables, once
    there, stay there: `has_table` remembers a yes. The files, their schema and their location
    (`base_dir`, by default $DAGSTER_HOME/history/runs, where the default storage keeps them)
    are upstream's, so a home can switch between the two.
    """

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        sync_sqlite_at_checkpoints()
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        # not upstream's _db_lock, which a caller of has_table may hold
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()
        if base_dir is None:
            base_dir = os.path.join(os.environ["DAGSTER_HOME"], "history", "runs")
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> StrataSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    # one connection stays open; more at a time (threads) are closed after use
                    pool_size=1,
                    max_overflow=-1,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                self._engines[shard] = engine
                while len(self._engines) > _ENGINES_AT_MOST:
                    self._engines.popitem(last=False)[1].dispose()
            else:
                self._engines.move_to_end(shard)
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # upstream's _connect, with the engine kept
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def has_table(self, table_name: str) -> bool:
        if table_name not in self._tables:
            engine = self._engine(INDEX_SHARD_NAME)
            with engine.connect() as connection:
                if engine.dialect.has_table(connection, table_name):
                    self._tables.add(table_name)
        return table_name in self._tables
