"""Source mapping and ingestion throughput, without Dagster: staging + ingesting every day.

    .venv/bin/python benchmarks/own_data_ingest.py [--rows 2000000] [--days 365]

Part 1 stages the shipped CDNOW mapping (69,659 lines, 546 days) and ingests every day of
users, orders and items in one call per table, as the catch-up run does. Part 2 writes a
synthetic semicolon/decimal-comma export of --rows order lines over --days days (1 % of them
bad), maps it with quantity x price, a cancellation prefix and derived users, and ingests it.
Part 3 writes --rows lines in UCI Online Retail II's layout (about 4 lines per invoice, 2 %
credit notes, 20 % guest lines) and stages and ingests them with the shipped line-grain
mapping sources/online_retail.yml: the cost of building orders from lines.
Prints seconds and rows per second per stage, and the quarantine by kind. Dagster's own
bookkeeping (one event per asset and day) comes on top in a real run; see README.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.ingestion.landing import landed_dates
from dagster_project.lib.ingestion.mapping.staging import stage_sources

REPO = Path(__file__).resolve().parents[1]
TABLES = ("users", "orders", "order_items")
MAPPING = """
tables:
  orders:
    files: export.csv
    delimiter: ";"
    decimal_separator: ","
    timestamp_format: "%d.%m.%Y %H:%M"
    columns:
      order_id: Invoice
      user_id: Customer
      ordered_at: Date
      amount: abs(num(Quantity) * num(Price))
      currency: {value: EUR}
      status: "case when Invoice like 'C%' then 'cancelled' else 'completed' end"
  order_items:
    files: export.csv
    delimiter: ";"
    decimal_separator: ","
    columns: {order_id: Invoice, product_id: Sku, quantity: abs(num(Quantity)), unit_price: Price}
  users:
    derive: first_order
"""


def timed(label: str, rows: int, work):
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    print(f"  {label:<34} {seconds:8.2f} s  {rows / seconds:>12,.0f} rows/s")
    return result


def stage_and_ingest(mapping: Path, home: Path, rows: int) -> None:
    landing = home / "landing"
    timed("stage (read, map, write days)", rows, lambda: stage_sources(mapping, landing))
    days = landed_dates(landing, "orders")
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    for table in TABLES:
        timed(
            f"ingest {table} ({len(days)} days)",
            rows,
            lambda t=table: ingest_partitions(con, landing, t, days, "bench"),
        )
    for table in TABLES:
        kinds = con.execute(
            f"select _kind, count(*) from quarantine.{table} group by 1 order by 1"
        ).fetchall()
        print(f"  quarantine.{table:<12} {kinds or 'empty'}")
    con.close()


def synthetic_export(path: Path, rows: int, days: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    start = date(2023, 1, 1)
    day = rng.integers(0, days, rows)
    minute = rng.integers(0, 24 * 60, rows)
    stamps = [
        f"{(start + timedelta(days=int(d))):%d.%m.%Y} {m // 60:02d}:{m % 60:02d}"
        for d, m in zip(day, minute, strict=True)
    ]
    invoice = np.char.add(np.where(rng.random(rows) < 0.03, "C", ""), np.arange(rows).astype(str))
    price = np.char.replace(np.round(rng.gamma(2.0, 8.0, rows), 2).astype(str), ".", ",")
    bad = rng.random(rows) < 0.01
    pl.DataFrame(
        {
            "Invoice": invoice,
            "Sku": rng.integers(1, 5000, rows).astype(str),
            "Quantity": rng.integers(1, 6, rows).astype(str),
            "Date": np.where(bad, "n/a", np.array(stamps)),
            "Price": price,
            "Customer": rng.integers(1, max(rows // 8, 2), rows).astype(str),
        }
    ).write_csv(path, separator=";")


def online_retail_export(path: Path, lines: int, days: int, seed: int = 2) -> None:
    """Invoice lines as Online Retail II's CSV export has them (sources/online_retail.yml)."""
    rng = np.random.default_rng(seed)
    invoices = max(lines // 4, 1)
    invoice = np.sort(rng.integers(0, invoices, lines))
    minutes = invoice * (days * 24 * 60) // invoices  # invoices in time order, as the file is
    stamps = pl.Series(
        (np.datetime64("2009-12-01T07:45") + minutes.astype("timedelta64[m]")).astype(
            "datetime64[us]"
        )
    ).dt.strftime("%-m/%-d/%Y %-H:%M")
    credit = rng.random(invoices) < 0.02
    guest = rng.random(invoices) < 0.2
    customer = rng.integers(12000, 18000, invoices).astype(str)
    quantity = rng.integers(1, 13, lines)
    pl.DataFrame(
        {
            "Invoice": np.char.add(np.where(credit[invoice], "C", ""), invoice.astype(str)),
            "StockCode": rng.integers(20000, 24000, lines).astype(str),
            "Description": "ITEM",
            "Quantity": np.where(credit[invoice], -quantity, quantity).astype(str),
            "InvoiceDate": stamps,
            "Price": rng.choice(["0.85", "1.25", "2.95", "6.75", "12.50"], lines),
            "Customer ID": np.where(guest[invoice], "", np.char.add(customer[invoice], ".0")),
            "Country": rng.choice(["United Kingdom", "EIRE", "France", "Germany"], lines),
        }
    ).write_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="strata-bench-") as tmp:
        print("CDNOW (sources/cdnow.yml):")
        stage_and_ingest(REPO / "sources" / "cdnow.yml", Path(tmp) / "cdnow", 69_659)

        folder = Path(tmp) / "synthetic"
        folder.mkdir()
        print(f"synthetic export: {args.rows:,} lines over {args.days} days")
        timed(
            "write the export",
            args.rows,
            lambda: synthetic_export(folder / "export.csv", args.rows, args.days),
        )
        (folder / "mapping.yml").write_text(MAPPING)
        stage_and_ingest(folder / "mapping.yml", folder / "home", args.rows)

        retail = Path(tmp) / "online_retail"
        retail.mkdir()
        print(f"Online Retail II layout: {args.rows:,} invoice lines over {args.days} days")
        export = retail / "online_retail_II.csv"
        timed(
            "write the export",
            args.rows,
            lambda: online_retail_export(export, args.rows, args.days),
        )
        os.environ["ONLINE_RETAIL_CSV"] = str(export)
        stage_and_ingest(REPO / "sources" / "online_retail.yml", retail / "home", args.rows)


if __name__ == "__main__":
    main()
