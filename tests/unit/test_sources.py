"""Source mapping: a team's exports -> landing partitions, validated before anything is written."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dagster_project.lib.core.settings import MAPPING_MANIFEST
from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.ingestion.landing import landed_dates
from dagster_project.lib.ingestion.mapping.binding import validate
from dagster_project.lib.ingestion.mapping.spec import MAPPED_FILE, MappingError, load_mapping
from dagster_project.lib.ingestion.mapping.staging import stage_sources

TODAY = date(2024, 6, 1)
REPO = Path(__file__).resolve().parents[2]

# An "online retail" style export: semicolons, Latin-1, decimal commas, day-first dates,
# an invoice prefix that marks cancellations, amounts as quantity x price.
RETAIL = (
    "Invoice;StockCode;Description;Quantity;InvoiceDate;Price;Customer ID;Country\n"
    "489434;85048;ROSE CUSHION;12;01/12/2023 07:45;6,95;13085;Côte d'Ivoire\n"
    "489434;79323P;PINK LIGHTS;12;01/12/2023 07:45;6,75;13085;Côte d'Ivoire\n"
    "C489449;22087;PAPER BUNTING;-12;01/12/2023 10:10;2,95;16321;Australia\n"
    "489450;21871;SAVE THE PLANET MUG;24;02/12/2023 09:15;1.234,50;16321;Australia\n"
    "489451;10002;BROKEN DATE;1;31/02/2023 25:99;1,00;17000;France\n"
    "489452;10003;FUTURE;1;01/01/2099 10:00;1,00;17001;France\n"
)
RETAIL_MAPPING = """
version: 1
tables:
  orders:
    files: retail/*.csv
    delimiter: ";"
    encoding: latin-1
    decimal_separator: ","
    timestamp_format: "%d/%m/%Y %H:%M"
    columns:
      order_id: Invoice || '-' || StockCode
      user_id: Customer ID
      ordered_at: InvoiceDate
      amount: abs(num(Quantity) * num(Price))
      currency: {value: GBP}
      status: "case when Invoice like 'C%' then 'cancelled' else 'completed' end"
  order_items:
    files: retail/*.csv
    delimiter: ";"
    encoding: latin-1
    decimal_separator: ","
    columns:
      order_id: Invoice || '-' || StockCode
      product_id: StockCode
      quantity: abs(num(Quantity))
      unit_price: Price
  users:
    derive: first_order
    columns:
      country: {column: Country}
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def landed(landing: Path, table: str) -> pl.DataFrame:
    frames = [
        pl.read_parquet(p).with_columns(pl.lit(p.parent.name[5:]).alias("day"))
        for p in sorted((landing / table).glob(f"date=*/{MAPPED_FILE}"))
    ]
    return pl.concat(frames) if frames else pl.DataFrame()


@pytest.fixture
def retail(tmp_path: Path) -> tuple[Path, Path]:
    source = write(tmp_path / "src" / "retail" / "2023-12.csv", RETAIL, encoding="latin-1")
    mapping = write(tmp_path / "src" / "retail.yml", RETAIL_MAPPING)
    return mapping, source


def test_a_csv_export_maps_onto_the_contract_with_its_reader_options(tmp_path, retail):
    mapping, source = retail
    landing = tmp_path / "home" / "landing"

    summary = stage_sources(mapping, landing, today=TODAY)

    orders = landed(landing, "orders").sort("_source_line")
    assert orders["order_id"].to_list()[:3] == ["489434-85048", "489434-79323P", "C489449-22087"]
    assert orders["status"].to_list()[:3] == ["completed", "completed", "cancelled"]
    # decimal commas and thousands dots, quantity x price, day-first timestamps
    assert orders["amount"].cast(pl.Float64).round(2).to_list()[:4] == [83.4, 81.0, 35.4, 29628.0]
    assert orders["ordered_at"][0] == "2023-12-01 07:45:00.000000"
    assert orders["currency"].unique().to_list() == ["GBP"]
    # lineage: the original export and its line (the header is line 1)
    assert orders["_source_file"].unique().to_list() == [str(source)]
    assert orders["_source_line"].to_list() == [2, 3, 4, 5, 6, 7]
    # an unreadable and a future timestamp land, as they came, in the latest real day
    assert dict(zip(orders["_source_line"], orders["day"], strict=True)) == {
        2: "2023-12-01",
        3: "2023-12-01",
        4: "2023-12-01",
        5: "2023-12-02",
        6: "2023-12-02",
        7: "2023-12-02",
    }
    assert orders.filter(pl.col("_source_line") == 6)["ordered_at"][0] == "31/02/2023 25:99"
    assert summary.tables["orders"].undated_rows == 2
    assert summary.first_day == date(2023, 12, 1)

    items = landed(landing, "order_items").sort("_source_line")
    assert items["unit_price"].to_list()[:4] == ["6.95", "6.75", "2.95", "1234.5"]
    assert items["quantity"].to_list()[:3] == ["12", "12", "12"]
    assert items["day"].to_list()[:4] == ["2023-12-01"] * 3 + ["2023-12-02"]

    users = landed(landing, "users").sort("user_id")
    assert users.select("user_id", "country", "_source_line").rows() == [
        ("13085", "CI", 2),  # country names become ISO codes
        ("16321", "AU", 4),
        ("17001", "FR", 7),  # signs up with its only (future) order: ingestion rejects it
    ]
    assert users["signup_at"][0] == "2023-12-01 07:45:00.000000"

    manifest = landing / MAPPING_MANIFEST
    assert manifest.exists()
    assert landed_dates(landing, "orders") == [date(2023, 12, 1), date(2023, 12, 2)]


def test_mapped_rows_are_all_accounted_for_by_ingestion(tmp_path, retail):
    mapping, source = retail
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)
    con = duckdb.connect()
    days = landed_dates(landing, "orders")
    stats = {
        table: ingest_partitions(con, landing, table, days, "r1")
        for table in ("users", "orders", "order_items")
    }

    landed_orders = sum(s.rows_landed for s in stats["orders"])
    assert landed_orders == 6  # every line of the export
    rejected = con.execute(
        "select _source_file, _source_line, _kind from quarantine.orders order by 2"
    ).fetchall()
    assert rejected == [
        (str(source), 6, "unparseable"),
        (str(source), 7, "future_timestamp"),
    ]
    accepted = sum(s.rows_accepted for s in stats["orders"])
    assert accepted + len(rejected) == landed_orders
    con.close()


def test_whitespace_files_without_header_and_parquet_files(tmp_path):
    write(
        tmp_path / "cd.txt",
        "  0001 19970101  1  11.77\r\n\r\n  0002 19970112  5   77.00\r\n",
    )
    pl.DataFrame(
        {
            "event": ["e1", "e2"],
            "who": ["0001", "0002"],
            "at": [datetime(1997, 1, 1, 10), datetime(1997, 1, 12, 11)],
        }
    ).write_parquet(tmp_path / "ev.parquet")
    mapping = write(
        tmp_path / "m.yml",
        """
tables:
  orders:
    files: cd.txt
    format: whitespace
    header: false
    names: [customer, day, cds, dollars]
    timestamp_format: "%Y%m%d"
    columns:
      order_id: customer || '-' || _line
      user_id: customer
      ordered_at: day
      amount: dollars
      currency: {value: USD}
      status: {value: completed}
  events:
    files: ev.parquet
    columns: {event_id: event, user_id: who, event_at: at, event_type: {value: page_view}}
""",
    )
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)

    orders = landed(landing, "orders").sort("_source_line")
    # blank lines are skipped but counted: the second row is on line 3
    assert orders.select("order_id", "amount", "_source_line", "day").rows() == [
        ("0001-1", "11.77", 1, "1997-01-01"),
        ("0002-3", "77.00", 3, "1997-01-12"),
    ]
    events = landed(landing, "events").sort("_source_line")
    assert events.select("event_at", "_source_line", "day").rows() == [
        ("1997-01-01 10:00:00.000000", 1, "1997-01-01"),
        ("1997-01-12 11:00:00.000000", 2, "1997-01-12"),
    ]


def test_restaging_rewrites_only_what_changed_and_drops_vanished_days(tmp_path, retail):
    mapping, source = retail
    landing = tmp_path / "landing"
    first = stage_sources(mapping, landing, today=TODAY)
    before = {p: p.stat().st_mtime_ns for p in landing.rglob(MAPPED_FILE)}

    again = stage_sources(mapping, landing, today=TODAY)
    assert (again.written, again.removed) == (0, 0)
    assert again.unchanged == first.written
    assert {p: p.stat().st_mtime_ns for p in landing.rglob(MAPPED_FILE)} == before

    # the export loses its 2 December rows (and the undated ones that followed them)
    source.write_text("\n".join(RETAIL.splitlines()[:4]) + "\n", encoding="latin-1")
    changed = stage_sources(mapping, landing, today=TODAY)
    assert changed.removed >= 2
    assert landed_dates(landing, "orders") == [date(2023, 12, 1)]


def test_a_landing_folder_with_other_files_is_refused_before_writing(tmp_path, retail):
    mapping, _ = retail
    landing = tmp_path / "landing"
    write(landing / "orders" / "date=2023-12-01" / "part-00000.csv", "order_id\n")
    with pytest.raises(MappingError, match="did not write"):
        stage_sources(mapping, landing, today=TODAY)
    assert not (landing / MAPPING_MANIFEST).exists()
    assert not list(landing.rglob(MAPPED_FILE))


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (("files: retail/*.csv", "files: nowhere/*.csv", 1), "tables.orders.files", "no file"),
        (("user_id: Customer ID", "user_id: Client", 1), "tables.orders.columns.user_id", ""),
        (
            ("amount: abs(num(Quantity) * num(Price))", "amount: num(Qty) *", 1),
            "tables.orders.columns.amount",
            "does not work",
        ),
        (
            ("amount: abs(num(Quantity) * num(Price))", "amount: Cost", 1),
            "tables.orders.columns.amount",
            "",
        ),
        (("      status:", "      state:", 1), "tables.orders.columns.state", "not a column"),
        (('    delimiter: ";"', '    delimeter: ";"', 1), "tables.orders.delimeter", "unknown"),
        (("      currency: {value: GBP}\n", "", 1), "tables.orders.columns.currency", "required"),
        (("  orders:", "  purchases:", 1), "tables.purchases", "not a contract table"),
        (("encoding: latin-1", "encoding: klingon", 1), "tables.orders.encoding", "unknown"),
        (
            ('timestamp_format: "%d/%m/%Y %H:%M"', 'timestamp_format: "%Y-%m-%d"', 1),
            "tables.orders.columns.ordered_at",
            "timestamp_format",
        ),
        (("country: {column: Country}", "country: {column: Land}", 1), "tables.users", ""),
    ],
    ids=[
        "missing_file",
        "missing_column",
        "bad_expression",
        "unknown_column_as_expression",
        "not_a_contract_column",
        "typo_in_option",
        "currency_not_mapped",
        "not_a_contract_table",
        "unknown_encoding",
        "wrong_timestamp_format",
        "derived_column_missing",
    ],
)
def test_a_wrong_mapping_fails_before_anything_is_written_naming_the_key(
    tmp_path, retail, edit, key, message
):
    mapping, _ = retail
    old, new, count = edit
    text = mapping.read_text()
    assert old in text
    mapping.write_text(text.replace(old, new, count))
    landing = tmp_path / "landing"

    with pytest.raises(MappingError) as error:
        stage_sources(mapping, landing, today=TODAY)

    assert str(error.value).startswith(key), str(error.value)
    assert message in str(error.value)
    assert not landing.exists()


def test_orders_are_required_and_environment_variables_are_named(tmp_path, monkeypatch):
    write(tmp_path / "u.csv", "id,at\n1,2024-01-01\n")
    no_orders = write(
        tmp_path / "a.yml",
        "tables:\n  users:\n    files: u.csv\n    columns: {user_id: id, signup_at: at}\n",
    )
    with pytest.raises(MappingError, match=r"^tables\.orders: required"):
        load_mapping(no_orders)

    monkeypatch.delenv("SHOP_EXPORTS", raising=False)
    env = write(
        tmp_path / "b.yml",
        RETAIL_MAPPING.replace("files: retail/*.csv", 'files: "${SHOP_EXPORTS}/*.csv"', 1),
    )
    with pytest.raises(MappingError, match=r"^tables\.orders\.files: .*SHOP_EXPORTS is not set"):
        load_mapping(env)
    write(tmp_path / "exports" / "x.csv", RETAIL, encoding="latin-1")
    write(tmp_path / "retail" / "x.csv", RETAIL, encoding="latin-1")
    monkeypatch.setenv("SHOP_EXPORTS", str(tmp_path / "exports"))
    assert load_mapping(env).tables["orders"].files == (tmp_path / "exports" / "x.csv",)


def test_the_shipped_cdnow_mapping_is_valid():
    mapping = load_mapping(REPO / "sources" / "cdnow.yml")
    validate(mapping)
    (path,) = mapping.tables["orders"].files
    assert path.name == "CDNOW_master.txt" and "lifetimes" in path.parts
    assert mapping.tables["users"].derive == "first_order"


def test_cdnow_file_names_another_copy_of_cdnow(tmp_path, monkeypatch):
    copy = tmp_path / "cdnow_slice.txt"
    copy.write_text(" customer_id  date number_of_cds  dollar_value\n 00001 19970101  1   11.77\n")
    monkeypatch.setenv("CDNOW_FILE", str(copy))
    mapping = load_mapping(REPO / "sources" / "cdnow.yml")
    assert mapping.tables["orders"].files == (copy,)
    assert mapping.tables["order_items"].files == (copy,)


def test_campaign_exposures_map_like_the_other_tables(tmp_path):
    write(tmp_path / "src" / "orders.csv", "id,who,at,total\n1,c7,2024-01-05 10:00,12.5\n")
    write(
        tmp_path / "src" / "sends.csv",
        "member;mailing;group;sent;cost_eur\n"
        "c7;spring;A;05.01.2024 08:00;0,04\n"
        "c8;spring;B;05.01.2024 08:00;0\n",
    )
    mapping = write(
        tmp_path / "src" / "shop.yml",
        """
version: 1
tables:
  orders:
    files: orders.csv
    columns: {order_id: id, user_id: who, ordered_at: at, amount: total,
              currency: {value: EUR}, status: {value: completed}}
  campaign_exposures:
    files: sends.csv
    delimiter: ";"
    decimal_separator: ","
    timestamp_format: "%d.%m.%Y %H:%M"
    columns:
      user_id: member
      campaign_id: mailing
      arm: "case when \\"group\\" = 'A' then 'treatment' else 'control' end"
      exposed_at: sent
      channel: {value: email}
      cost: cost_eur
""",
    )
    landing = tmp_path / "landing"
    stage_sources(mapping, landing, today=TODAY)
    exposures = landed(landing, "campaign_exposures").sort("_source_line")
    assert exposures.select("user_id", "arm", "cost", "day").rows() == [
        ("c7", "treatment", "0.04", "2024-01-05"),
        ("c8", "control", "0.0", "2024-01-05"),
    ]
    con = duckdb.connect()
    ingest_partitions(
        con, landing, "campaign_exposures", landed_dates(landing, "campaign_exposures"), "r1"
    )
    assert con.execute("select count(*) from raw.campaign_exposures").fetchall() == [(2,)]
