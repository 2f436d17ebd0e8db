"""Dirty-data mode: every kind of bad row at the rate asked, each one recorded where it is."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.ingestion.landing import landed_dates
from dagster_project.lib.sample.defects import DEFECTS_FILE, kinds_for
from dagster_project.lib.sample.defects import TABLES as DIRTY_TABLES
from dagster_project.lib.sample.generator import generate_sample

END = date(2024, 4, 30)
USERS, DAYS, SEED, RATE = 150, 20, 3, 0.05
INGEST_ORDER = ("users", "orders", "order_items", "events")


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> tuple[Path, Path]:
    clean = tmp_path_factory.mktemp("clean")
    dirty = tmp_path_factory.mktemp("dirty")
    generate_sample(clean, users=USERS, days=DAYS, seed=SEED, end_date=END)
    generate_sample(dirty, users=USERS, days=DAYS, seed=SEED, end_date=END, dirty_rate=RATE)
    return clean, dirty


def clean_rows(home: Path, table: str) -> int:
    return sum(
        pl.read_csv(p, infer_schema=False).height
        for p in (home / "landing" / table).glob("date=*/part-00000.csv")
    )


def test_the_rate_is_the_share_of_each_tables_rows_spread_over_the_kinds(homes):
    clean, dirty = homes
    injected = pl.read_parquet(dirty / "truth" / DEFECTS_FILE)
    assert not (clean / "truth" / DEFECTS_FILE).exists()

    for table in DIRTY_TABLES:  # every table the sample writes without campaigns
        rows = clean_rows(clean, table)
        counts = dict(injected.filter(pl.col("table") == table).group_by("kind").len().rows())
        assert set(counts) == set(kinds_for(table)), table
        # Poisson(rows x RATE / (1 - RATE)) bad rows: bad / (clean + bad) is RATE on average
        expected = rows * RATE / (1 - RATE)
        total = sum(counts.values())
        assert abs(total - expected) <= 5 * expected**0.5 + 1, (table, total, expected)
        share = expected / len(counts)  # each kind an equal share of them
        for kind, count in counts.items():
            assert abs(count - share) <= 5 * share**0.5 + 1, (table, kind, count, share)


def test_per_kind_rates_inject_each_kind_at_the_rate(tmp_path):
    generate_sample(
        tmp_path,
        users=USERS,
        days=DAYS,
        seed=SEED,
        end_date=END,
        dirty_rate=RATE,
        dirty_per_kind=True,
    )
    injected = pl.read_parquet(tmp_path / "truth" / DEFECTS_FILE)
    for table in ("orders", "events"):
        rows = clean_rows(tmp_path, table) - injected.filter(pl.col("table") == table).height
        for kind, count in injected.filter(pl.col("table") == table).group_by("kind").len().rows():
            sd = (rows * RATE * (1 - RATE)) ** 0.5  # Binomial(rows, RATE)
            assert abs(count - rows * RATE) <= 5 * sd + 1, (table, kind, count, rows)


def test_clean_rows_are_untouched_and_each_record_points_at_its_row(homes):
    clean, dirty = homes
    injected = pl.read_parquet(dirty / "truth" / DEFECTS_FILE)
    for path in (clean / "landing").glob("*/date=*/part-00000.csv"):
        clean_lines = path.read_text().splitlines()
        dirty_lines = (dirty / path.relative_to(clean)).read_text().splitlines()
        assert dirty_lines[: len(clean_lines)] == clean_lines
    for record in injected.sample(n=min(200, injected.height), seed=1).iter_rows(named=True):
        lines = (dirty / record["file"]).read_text().splitlines()
        assert record["key"] in lines[record["line"] - 1].split(","), record


def test_quarantine_holds_exactly_the_injected_rows_by_kind(homes):
    _, dirty = homes
    landing = dirty / "landing"
    con = duckdb.connect()
    days = landed_dates(landing, "orders")
    for table in INGEST_ORDER:
        ingest_partitions(con, landing, table, days, "r1")
    found = pl.concat(
        con.sql(
            f"select '{table}' as table, _kind as kind, _source_file as file, "
            f"_source_line as line from quarantine.{table}"
        ).pl()
        for table in INGEST_ORDER
    ).with_columns(pl.col("file").str.replace(f"^{landing.parent}/", ""))
    injected = pl.read_parquet(dirty / "truth" / DEFECTS_FILE).select(found.columns)

    key = ["table", "kind", "file", "line"]
    assert found.sort(key).equals(injected.sort(key))
    con.close()
