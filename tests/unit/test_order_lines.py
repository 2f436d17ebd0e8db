"""Line-grain sources: orders and their order_items built from one export of invoice lines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from test_sources import landed, write

from dagster_project.lib.ingestion.audit import partition_audit_query
from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.ingestion.landing import landed_dates
from dagster_project.lib.ingestion.mapping.spec import MappingError, load_mapping
from dagster_project.lib.ingestion.mapping.staging import stage_sources

TODAY = date(2024, 6, 1)
HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
# Online Retail II's layout: one row per invoice line, Customer ID written as a float.
DECEMBER = HEADER + (
    "489434,85048,CUSHION,3,12/1/2023 7:50,0.10,13085.0,United Kingdom\n"  # line 2
    "489434,79323P,LIGHTS,1,12/1/2023 7:45,0.20,13085.0,United Kingdom\n"  # 3: earliest
    "489434,79323P,LIGHTS,1,12/1/2023 7:45,0.20,13085.0,United Kingdom\n"  # 4: exact duplicate
    "489435,22087,BUNTING,2,12/2/2023 10:10,2.95,,United Kingdom\n"  # 5: a guest (no user)
    "489436,21871,MUG,many,12/2/2023 11:00,1.25,16321.0,Australia\n"  # 6: unreadable quantity
    "489436,21872,MUG LID,1,12/2/2023 11:00,0.75,16321.0,Australia\n"  # 7
    ",21873,NO INVOICE,1,12/2/2023 11:00,0.75,16321.0,Australia\n"  # 8: no order key
    "489437,21874,SPLIT,1,12/2/2023 12:00,1.00,16321.0,Australia\n"  # 9: continues below
)
JANUARY = HEADER + "489437,21875,SPLIT TOO,2,1/3/2024 9:00,1.50,16321.0,Australia\n"
MAPPING = """
version: 1
tables:
  orders:
    files: retail/*.csv
    grain: line
    timestamp_format: "%m/%d/%Y %H:%M"
    columns:
      order_id: Invoice
      user_id: "cast(try_cast(\\"Customer ID\\" as double) as bigint)"
      ordered_at: InvoiceDate
      amount: num(Quantity) * num(Price)
      currency: {value: GBP}
      status: {value: completed}
    items:
      product_id: StockCode
      category: Description
      quantity: Quantity
      unit_price: Price
"""


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path, Path]:
    december = write(tmp_path / "src" / "retail" / "2023-12.csv", DECEMBER)
    january = write(tmp_path / "src" / "retail" / "2024-01.csv", JANUARY)
    return write(tmp_path / "src" / "retail.yml", MAPPING), december, january


def test_one_order_per_invoice_with_the_exact_sum_of_its_lines(tmp_path, export):
    mapping, december, january = export
    landing = tmp_path / "landing"

    summary = stage_sources(mapping, landing, today=TODAY)

    orders = landed(landing, "orders").sort("order_id", nulls_last=True)
    by_invoice = {row["order_id"]: row for row in orders.iter_rows(named=True)}
    assert list(by_invoice) == ["489434", "489435", "489436", "489437", None]
    first = by_invoice["489434"]
    # 3 x 0.10 + 0.20 + 0.20 exactly (a float sum gives 0.7000000000000001), duplicate included
    assert first["amount"] == "0.700000"
    assert first["ordered_at"] == "2023-12-01 07:45:00.000000"  # the earliest line
    assert (first["user_id"], first["_source_line"], first["day"]) == ("13085", 2, "2023-12-01")
    assert by_invoice["489435"]["user_id"] is None  # ingestion accounts for the guest
    # the order with an unreadable line keeps that line's value and lineage
    broken = by_invoice["489436"]
    assert (broken["amount"], broken["_source_line"]) == (None, 6)
    # lines of one invoice in two files: one order, dated by its first line
    split = by_invoice["489437"]
    assert (split["amount"], split["_source_file"], split["day"]) == (
        "4.000000",
        str(december),
        "2023-12-02",
    )
    assert by_invoice[None]["_source_line"] == 8  # no order key: a row of its own

    items = landed(landing, "order_items").sort("_source_file", "_source_line")
    assert items.height == 9  # every line, the exact duplicate too
    assert items.select("_source_line").to_series().to_list() == [2, 3, 4, 5, 6, 7, 8, 9, 2]
    assert items.filter(pl.col("order_id") == "489434")["product_id"].to_list() == [
        "85048",
        "79323P",
        "79323P",
    ]
    # items belong to their order's day, also the January line of a December order
    assert items.filter(pl.col("order_id") == "489437")["day"].to_list() == ["2023-12-02"] * 2
    assert summary.tables["orders"].rows == 5
    assert summary.tables["order_items"].rows == 9
    assert summary.tables["orders"].files == {str(december): 8, str(january): 1}


def test_every_line_is_ingested_or_quarantined_with_its_file_and_line(tmp_path, export):
    mapping, _, _ = export
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)
    con = duckdb.connect()
    days = landed_dates(landing, "orders")
    for table in ("orders", "order_items"):
        ingest_partitions(con, landing, table, days, "r1")

    rejected = con.execute(
        "select _source_line, _kind from quarantine.orders order by 1"
    ).fetchall()
    # the guest, the unreadable quantity, the line without an invoice
    assert rejected == [(5, "no_user"), (6, "missing_value"), (8, "missing_value")]
    accepted = con.execute("select order_id, amount from raw.orders order by 1").fetchall()
    assert [(o, float(a)) for o, a in accepted] == [
        ("489434", 0.7),
        ("489437", 4.0),
    ]
    item_kinds = con.execute(
        "select _source_line, _kind from quarantine.order_items order by 1"
    ).fetchall()
    # the guest's line is a guest's too; the unreadable quantity; the other line of the
    # quarantined order is an orphan; the line without an invoice misses its order id
    assert item_kinds == [(5, "no_user"), (6, "unparseable"), (7, "orphan"), (8, "missing_value")]
    lines = (
        con.execute("select count(*) from raw.order_items").fetchall()[0][0]
        + con.execute("select count(*) from quarantine.order_items").fetchall()[0][0]
    )
    assert lines == 9

    # on 2023-12-02, 4 orders landed: the guest is kept apart, 2 of 4 are rejects
    day = date(2023, 12, 2)
    audit = con.sql(partition_audit_query("orders"), params={"first": day, "last": day}).pl()
    assert audit.select("rows_landed", "rows_quarantined", "guest_rows").row(0) == (4, 3, 1)
    assert audit.select("reject_share", "guest_share").row(0) == (0.5, 0.25)
    con.close()


WRONG_MAPPINGS = {
    "no item quantity": MAPPING.replace("      quantity: Quantity\n", ""),
    "unknown grain": MAPPING.replace("grain: line", "grain: lines"),
    "items at order grain": MAPPING.replace("    grain: line\n", ""),
    "a grain on users": MAPPING + "  users:\n    derive: first_order\n    grain: line\n",
    "order_items besides lines": MAPPING + "  order_items:\n    files: retail/*.csv\n",
}


@pytest.mark.parametrize(
    ("case", "key", "message"),
    [
        ("no item quantity", "tables.orders.items.quantity", "required, not mapped"),
        ("unknown grain", "tables.orders.grain", "must be one of order, line"),
        ("items at order grain", "tables.orders.items", "only at grain: line"),
        ("a grain on users", "tables.users.grain", "only orders have a grain"),
        ("order_items besides lines", "tables.order_items", "comes from the order lines"),
    ],
)
def test_a_wrong_line_grain_mapping_names_its_key(tmp_path, export, case, key, message):
    mapping, _, _ = export
    mapping.write_text(WRONG_MAPPINGS[case])
    with pytest.raises(MappingError, match=message) as raised:
        load_mapping(mapping)
    assert str(raised.value).startswith(key)


def test_check_sources_warns_when_order_keys_repeat_at_order_grain(tmp_path, export, capsys):
    from dagster_project.cli import main

    mapping, _, _ = export
    assert main(["check-sources", str(mapping)]) == 0
    assert "order lines" in capsys.readouterr().out

    mapping.write_text(MAPPING.replace("    grain: line\n", "").split("    items:")[0])
    assert main(["check-sources", str(mapping)]) == 0
    output = capsys.readouterr().out
    # 489434 three times, 489436 and 489437 twice: 3 keys, 4 rows beyond their first
    assert "warning: 3 order key(s) repeat on 4 more row(s) (e.g. '489434')" in output
    assert "grain: line" in output


def test_country_names_become_iso_codes_and_unknown_ones_are_reported_once(tmp_path, export):
    mapping, _, january = export
    january.write_text(
        HEADER
        + "489438,21876,A,1,1/3/2024 9:30,1.00,17000.0,EIRE\n"
        + "489439,21877,B,1,1/3/2024 9:40,1.00,17001.0,European Community\n"
        + "489440,21878,C,1,1/3/2024 9:50,1.00,17002.0,European Community\n"
        + "489441,21879,D,1,1/3/2024 9:55,1.00,17003.0,gb\n"
    )
    users = "  users:\n    derive: first_order\n    columns:\n      country: Country\n"
    mapping.write_text(MAPPING + users)
    landing = tmp_path / "landing"

    summary = stage_sources(mapping, landing, today=TODAY)

    countries = dict(landed(landing, "users").select("user_id", "country").rows())
    assert countries == {
        "13085": "GB",  # United Kingdom
        "16321": "AU",
        "17000": "IE",  # EIRE
        "17001": None,
        "17002": None,
        "17003": "GB",  # a code already
    }
    assert summary.tables["users"].unknown_countries == {"European Community": 2}


RETURNS_EXPORT = HEADER + (
    "489434,85048,CUSHION,12,12/1/2023 7:45,6.95,13085.0,United Kingdom\n"
    "489434,79323P,LIGHTS,12,12/1/2023 7:45,6.75,13085.0,United Kingdom\n"
    "C489449,85048,CUSHION,-2,12/3/2023 10:10,6.95,13085.0,United Kingdom\n"  # a credit note
    "C489449,79323P,LIGHTS,-1,12/3/2023 10:10,6.75,13085.0,United Kingdom\n"
    "489450,22087,BUNTING,4,12/3/2023 11:00,2.95,13085.0,United Kingdom\n"
)


def test_credit_notes_become_returns_that_take_their_money_back(tmp_path, export):
    mapping, december, january = export
    december.write_text(RETURNS_EXPORT)
    january.unlink()
    mapping.write_text(
        MAPPING.replace("    grain: line\n", "    grain: line\n    returns: Invoice like 'C%'\n")
    )
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)

    orders = landed(landing, "orders").sort("order_id")
    assert orders.select("order_id", "status", "amount").rows() == [
        ("489434", "completed", "164.400000"),
        ("489450", "completed", "11.800000"),
        ("C489449", "returned", "20.650000"),  # the money given back, positive
    ]
    items = landed(landing, "order_items").filter(pl.col("order_id") == "C489449")
    assert items["quantity"].to_list() == ["2", "1"]  # the quantities returned

    con = duckdb.connect()
    days = landed_dates(landing, "orders")
    stats = {t: ingest_partitions(con, landing, t, days, "r1") for t in ("orders", "order_items")}
    assert sum(s.rows_quarantined for t in stats for s in stats[t]) == 0
    con.close()


def test_a_return_refers_to_its_original_order_when_the_source_says_which(tmp_path, export):
    """A source that names the invoice a credit note reverses maps it to refers_to_order_id
    (kept through raw and staging onto marts.fct_orders); other orders leave it NULL."""
    mapping, december, january = export
    december.write_text(RETURNS_EXPORT)
    january.unlink()
    reference = "      refers_to_order_id: \"case when Invoice like 'C%' then '489434' end\"\n"
    mapping.write_text(
        MAPPING.replace(
            "    grain: line\n", "    grain: line\n    returns: Invoice like 'C%'\n"
        ).replace(
            "      status: {value: completed}\n", "      status: {value: completed}\n" + reference
        )
    )
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)
    con = duckdb.connect()
    ingest_partitions(con, landing, "orders", landed_dates(landing, "orders"), "r1")
    assert con.execute(
        "select order_id, status, refers_to_order_id from raw.orders order by 1"
    ).fetchall() == [
        ("489434", "completed", None),
        ("489450", "completed", None),
        ("C489449", "returned", "489434"),
    ]
    con.close()


def test_guests_count_as_rejects_when_the_mapping_says_so(tmp_path, export):
    """`guests_count_as_rejects: true` puts guests back into the reject share (the guard,
    IngestStats and the partition audit); the default keeps them apart."""
    mapping, _, _ = export
    shares = {}
    for option in (None, True):
        text = MAPPING if option is None else MAPPING + "guests_count_as_rejects: true\n"
        landing = tmp_path / f"landing-{option}"
        stage_sources(write(tmp_path / "src" / f"retail-{option}.yml", text), landing, TODAY)
        con = duckdb.connect()
        day = date(2023, 12, 2)
        (stats,) = [
            s
            for s in ingest_partitions(con, landing, "orders", landed_dates(landing), "r1")
            if s.partition_date == day
        ]
        query = partition_audit_query("orders", guests_are_rejects=bool(option))
        audit = con.sql(query, params={"first": day, "last": day}).pl()
        shares[option] = (stats.reject_share, audit["reject_share"][0], audit["guest_rows"][0])
        con.close()
    # 4 orders landed on 2023-12-02: a guest and two rejects
    assert shares == {None: (0.5, 0.5, 1), True: (0.75, 0.75, 1)}
    assert load_mapping(mapping).guests_count_as_rejects is False
    wrong = write(tmp_path / "src" / "wrong.yml", MAPPING + "guests_count_as_rejects: yes please\n")
    with pytest.raises(MappingError, match="must be true or false"):
        load_mapping(wrong)
