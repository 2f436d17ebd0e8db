"""The shipped source mappings, end to end on real files, through the real `strata` command.

Each runs as its own process, as a user would: the daily partitions then start from the
data's first day (CDNOW: 1997), which a process that already loaded the definitions (this
test session's starts in 2020) could not do. Ingestion covers the whole history in one
run; only the last day gets a snapshot. Both runs start together (each is mostly one busy
core: Python, then a dbt process), which halves the wall time on two cores.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from strata_processes import REPO, fast_directory, start_strata

CDNOW_ORDERS, CDNOW_CUSTOMERS = 69_659, 23_570
CDNOW_LAST_DAY = date(1998, 6, 30)


def cdnow_file() -> Path:
    # the package folder without importing lifetimes (or its datasets module)
    (folder,) = importlib.util.find_spec("lifetimes").submodule_search_locations
    return Path(folder) / "datasets" / "CDNOW_master.txt"


def scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchall()[0][0]


def check_accounting(warehouse: Path, table: str, landed: int) -> None:
    """Every row of the source is in raw or in quarantine, day by day."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert (
            scalar(
                con,
                "select sum(rows_landed) from audit.ingested_partitions "
                f"where table_name = '{table}'",
            )
            == landed
        )
        unbalanced = scalar(
            con,
            "select count(*) from audit.ingested_partitions "
            "where rows_landed <> rows_accepted + rows_quarantined",
        )
        stored = scalar(
            con,
            f"select (select count(*) from raw.{table}) + (select count(*) from "
            f"quarantine.{table})",
        )
    assert unbalanced == 0
    assert stored == landed


@dataclass
class Run:
    home: Path
    returncode: int
    output: str
    data: Path | None = None  # the generated input files (jaffle shop)


def jafgen(folder: Path) -> Path:
    executable = shutil.which("jafgen") or str(REPO / ".venv" / "bin" / "jafgen")
    subprocess.run([executable, "1"], cwd=folder, check=True, capture_output=True, timeout=300)
    return folder / "jaffle-data"


@pytest.fixture(scope="module")
def shipped_runs() -> Iterator[dict[str, Run]]:
    """`strata run --sources` for CDNOW and for a fresh jafgen data set, side by side."""
    with fast_directory("cdnow") as cdnow, fast_directory("jaffle") as jaffle:
        processes = {
            "cdnow": start_strata(
                cdnow, "run", "--sources", "sources/cdnow.yml", log=cdnow / "out.log"
            )
        }
        data = jafgen(jaffle)
        processes["jaffle"] = start_strata(
            jaffle / "home",
            "run",
            "--sources",
            "sources/jaffle_shop.yml",
            log=jaffle / "out.log",
            JAFFLE_DATA=str(data),
        )
        logs = {"cdnow": cdnow / "out.log", "jaffle": jaffle / "out.log"}
        homes = {"cdnow": cdnow, "jaffle": jaffle / "home"}
        runs = {
            name: Run(homes[name], process.wait(timeout=1200), logs[name].read_text())
            for name, process in processes.items()
        }
        runs["jaffle"].data = data
        yield runs


def test_cdnow_runs_end_to_end_from_the_shipped_mapping(shipped_runs):
    run = shipped_runs["cdnow"]
    home = run.home
    assert run.returncode == 0, run.output
    assert "ingesting 545 landed day(s) 1997-01-01 .. 1998-06-29 in one run" in run.output
    assert f"building snapshot {CDNOW_LAST_DAY}" in run.output

    check_accounting(home / "warehouse.duckdb", "orders", CDNOW_ORDERS)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        # lineage points at the original file and line (line 2: the first purchase)
        assert con.execute(
            "select _source_file, _source_line from raw.orders where order_id = '00001-2'"
        ).fetchall() == [(str(cdnow_file()), 2)]
        assert scalar(con, "select count(*) from raw.users") == CDNOW_CUSTOMERS

    with duckdb.connect(str(home / "serving" / "strata.duckdb"), read_only=True) as con:
        assert scalar(con, "select count(*) from marts.fct_orders") == CDNOW_ORDERS
        assert scalar(con, "select count(*) from marts.dim_users") == CDNOW_CUSTOMERS
        assert scalar(con, "select min(order_date) from marts.fct_orders") == date(1997, 1, 1)
        snapshot = con.execute(
            "select snapshot_date, count(*), count(distinct user_id) "
            "from marts.user_segments_daily group by 1"
        ).fetchall()
        assert snapshot == [(CDNOW_LAST_DAY, CDNOW_CUSTOMERS, CDNOW_CUSTOMERS)]
        scored = scalar(
            con,
            f"select count(*) from marts.user_value_daily where snapshot_date = "
            f"'{CDNOW_LAST_DAY}' and p_alive between 0 and 1",
        )
        assert scored == CDNOW_CUSTOMERS
        runs = scalar(
            con,
            "select count(distinct run_id) from marts.data_quality_runs "
            "where relation = 'raw.orders' and suites_passed",
        )
        assert runs == 2  # the catch-up and the snapshot day


def test_jaffle_shop_runs_end_to_end_from_the_shipped_mapping(shipped_runs):
    run = shipped_runs["jaffle"]
    jaffle_data = run.data
    orders = pl.read_csv(jaffle_data / "raw_orders.csv", infer_schema=False)
    items = pl.read_csv(jaffle_data / "raw_items.csv", infer_schema=False)
    tweets = pl.read_csv(jaffle_data / "raw_tweets.csv", infer_schema=False)
    last_day = date.fromisoformat(orders["ordered_at"].max()[:10])

    home = run.home
    assert run.returncode == 0, run.output
    assert f"building snapshot {last_day}" in run.output

    warehouse = home / "warehouse.duckdb"
    check_accounting(warehouse, "orders", orders.height)
    check_accounting(warehouse, "order_items", items.height)
    check_accounting(warehouse, "events", tweets.height)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # amounts in cents become currency units; categories and prices come from products
        assert scalar(con, "select sum(amount)::double from raw.orders") == pytest.approx(
            orders["order_total"].cast(pl.Int64).sum() / 100
        )
        assert set(
            r[0] for r in con.execute("select distinct category from raw.order_items").fetchall()
        ) == {"jaffle", "beverage"}
        assert scalar(con, "select count(*) from raw.order_items where unit_price <= 0") == 0
        assert scalar(con, "select count(distinct channel) from raw.users") >= 1

    with duckdb.connect(str(home / "serving" / "strata.duckdb"), read_only=True) as con:
        assert scalar(con, "select count(*) from marts.fct_orders") == orders.height
        assert scalar(con, "select count(*) from marts.dim_users") == orders["customer"].n_unique()
        assert scalar(con, "select sum(reviews) from marts.fct_user_activity_daily") == (
            tweets.height
        )
        assert (
            scalar(
                con,
                f"select count(*) from marts.user_segments_daily where snapshot_date = "
                f"'{last_day}'",
            )
            == orders["customer"].n_unique()
        )
