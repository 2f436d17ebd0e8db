"""Crash-safe publishing, with real processes.

- `strata run` killed with SIGKILL while dbt writes the warehouse, and again while the
  serving copy is being written, leaves serving/strata.duckdb byte-identical and the
  warehouse usable; the next run succeeds (it marks the abandoned Dagster runs failed and
  frees their pool slots).
- BI clients (another process: the duckdb driver and SQLAlchemy with duckdb-engine, as
  Superset connects) holding serving/strata.duckdb open read-only all along neither block nor
  break those runs and keep their consistent old view; a new connection sees the new data.
- Table-level problems (a required column missing, too many rejects) stop the run with a
  clear message and the serving file stays byte-identical.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from pipeline_sample import END
from strata_processes import (
    REPO,
    start_strata,
    strata_env,
    wait_until,
)

from dagster_project.cli import main
from dagster_project.lib.core.run_lock import wait_for_warehouse
from dagster_project.pipeline_run import LAUNCHED_BY_TAG

# A rerun of END republishes the same rows plus its own record in data_quality_runs, so the
# record count tells an old view from a new one.
SNAPSHOT_SQL = (
    "select (select count(*) from marts.data_quality_runs), "
    "(select count(*) from marts.user_segments_daily)"
)
# A BI client in its own process: the duckdb driver (DBeaver, the CLI) or SQLAlchemy with
# duckdb-engine, read only (Superset's settings in the README). argv: file, stop flag, driver.
READER = f"""
import json, os, sys, time

query = {SNAPSHOT_SQL!r}
if sys.argv[3] == "sqlalchemy":
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        "duckdb:///" + sys.argv[1], connect_args={{"read_only": True}}
    )
    bi = engine.connect()
    run = lambda: list(bi.execute(sqlalchemy.text(query)).fetchall()[0])
else:
    import duckdb

    con = duckdb.connect(sys.argv[1], read_only=True)
    run = lambda: list(con.execute(query).fetchall()[0])
print(json.dumps(run()), flush=True)
seen, queries, errors = set(), 0, []
while not os.path.exists(sys.argv[2]):
    try:
        seen.add(json.dumps(run()))
        queries += 1
    except Exception as exc:  # reported, not raised: the test asserts there are none
        errors.append(str(exc))
    time.sleep(0.02)
print(json.dumps({{"seen": sorted(seen), "queries": queries, "errors": errors}}), flush=True)
"""


@pytest.fixture
def home(pipeline_copy) -> Path:
    """Each crash test breaks its own copy; its next `strata run --date END` rebuilds END."""
    return pipeline_copy


def serving(home: Path) -> Path:
    return home / "serving" / "strata.duckdb"


def assert_warehouse_usable(home: Path) -> None:
    # a process the killed run started may still hold the file for a moment
    wait_for_warehouse(home / "warehouse.duckdb", timeout=300)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        assert con.execute("select count(*) from raw.orders").fetchall()[0][0] > 0
        con.execute("checkpoint")


def test_kill_9_mid_run_and_mid_publish_with_bi_clients_reading_throughout(home):
    before = serving(home).read_bytes()
    stop = home.parent / "stop-reader"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(serving(home)), str(stop), driver],
            stdout=subprocess.PIPE,
            text=True,
        )
        for driver in ("duckdb", "sqlalchemy")
    ]
    try:
        first_views = [json.loads(reader.stdout.readline()) for reader in readers]
        kill_twice_then_run(home, before)
        stop.touch()
        reports = [json.loads(reader.stdout.readline()) for reader in readers]
        for reader in readers:
            reader.wait(timeout=60)
    finally:
        for reader in readers:  # a failed assertion above must not leave a reader behind
            if reader.poll() is None:
                reader.kill()
                reader.wait()
    first_view = first_views[0]
    assert first_views[1] == first_view
    for report in reports:
        assert report["errors"] == []
        assert report["queries"] > 10
        assert report["seen"] == [json.dumps(first_view)]  # one consistent, old view throughout
    with duckdb.connect(str(serving(home)), read_only=True) as con:  # a new connection
        records, segments = con.execute(SNAPSHOT_SQL).fetchall()[0]
    assert records > first_view[0]
    assert segments == first_view[1]


def dbt_is_building(home: Path, since: float) -> bool:
    """A dbt call of this run has started a model (its own dbt.log, under the home's target)."""
    for call_log in (home / "dbt_target").glob("*/dbt.log"):
        try:
            if call_log.stat().st_mtime >= since and "START sql" in call_log.read_text():
                return True
        except OSError:  # a call folder pruned meanwhile
            continue
    return False


def kill_twice_then_run(home: Path, before: bytes) -> None:
    """Kill `strata run` mid-dbt, then mid-publish; then run it to the end."""
    # 1. killed while dbt (inside the run's process) builds models in the warehouse
    log = home.parent / "kill-dbt.log"
    started = time.time()
    run = start_strata(home, "run", "--date", END.isoformat(), log=log)
    wait_until(lambda: dbt_is_building(home, started), run, log, timeout=600, poll=0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert serving(home).read_bytes() == before
    assert_warehouse_usable(home)

    # 2. killed while the serving copy is being written (its temporary file exists)
    log = home.parent / "kill-publish.log"
    run = start_strata(home, "run", "--date", END.isoformat(), log=log)
    # the Parquet exports are rewritten just before the serving copy: then poll fast
    exported = (
        home / "serving" / "parquet" / "user_segments_daily" / f"snapshot_date={END}"
    ) / "data.parquet"
    exported_at = exported.stat().st_mtime_ns
    wait_until(lambda: exported.stat().st_mtime_ns != exported_at, run, log, timeout=900, poll=0.02)
    temporary = lambda: next(serving(home).parent.glob(".strata.duckdb.*.tmp"), None)  # noqa: E731
    wait_until(lambda: temporary() is not None, run, log, timeout=120, poll=0.001)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert temporary() is not None  # it really died mid-publish
    assert serving(home).read_bytes() == before
    assert_warehouse_usable(home)

    # 3. the next run succeeds, with the reader still holding the old file
    assert main(["run", "--home", str(home), "--date", END.isoformat()]) == 0
    instance = dg.DagsterInstance.get()  # the copy's own instance (DAGSTER_HOME)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={LAUNCHED_BY_TAG: "cli"}))
    assert all(run.is_finished for run in runs)  # the killed runs were marked failed
    killed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
    assert len(killed) == 2
    assert serving(home).read_bytes() != before
    assert temporary() is None


def break_orders(home: Path, how: str) -> None:
    path = home / "landing" / "orders" / f"date={END}" / "part-00000.csv"
    orders = pl.read_csv(path, infer_schema=False)
    if how == "missing_column":
        orders = orders.drop("status")
    else:  # a third of the day's orders with negative amounts
        bad = pl.int_range(pl.len()) % 3 == 0
        orders = orders.with_columns(
            pl.when(bad).then(pl.lit("-1.00")).otherwise(pl.col("amount")).alias("amount")
        )
    orders.write_csv(path)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing_column", "required column(s) status missing"),
        ("too_many_rejects", "share of rejected rows per day at most"),
    ],
)
def test_a_table_level_problem_stops_the_run_and_serving_stays_byte_identical(
    home, capsys, how, message
):
    before = serving(home).read_bytes()
    break_orders(home, how)

    assert main(["run", "--home", str(home), "--date", END.isoformat()]) == 1

    output = capsys.readouterr().out
    assert message in output
    assert "RUN FAILED" in output
    assert serving(home).read_bytes() == before


def test_strata_refuses_a_second_run_on_the_same_data_directory(home):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from dagster_project.lib.core.run_lock "
            "import RunLock; RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True);"
            " time.sleep(60)",
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=strata_env(home),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"another strata run \\(pid {holder.pid}\\)"):
            main(["run", "--home", str(home), "--date", END.isoformat()])
    finally:
        holder.kill()
        holder.wait()
