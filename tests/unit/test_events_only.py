"""Events-only sources: a clickstream without money, its purchase events as orders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml
from test_sources import landed, write

from dagster_project.lib.ingestion.ingest import ingest_partitions
from dagster_project.lib.ingestion.landing import landed_dates
from dagster_project.lib.ingestion.mapping.binding import validate
from dagster_project.lib.ingestion.mapping.spec import MappingError, load_mapping
from dagster_project.lib.ingestion.mapping.staging import stage_sources

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "sources" / "retailrocket.yml"
TODAY = date(2024, 6, 1)
JUNE_1 = 1433116800000  # 2015-06-01 00:00 UTC in milliseconds
HOUR = 3_600_000
# RetailRocket's events.csv layout: epoch milliseconds, one row per event, a transaction of two
# items is two rows with one transactionid; no money, no session id.
EVENTS = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    + "".join(
        f"{JUNE_1 + hours * HOUR},{visitor},{event},{item},{transaction}\n"
        for hours, visitor, event, item, transaction in (
            (1, 7, "view", 355908, ""),  # line 2: visitor 7 arrives
            (2, 7, "addtocart", 355908, ""),
            (3, 7, "transaction", 355908, 4000),  # line 4: order 4000, two items
            (3, 7, "transaction", 355909, 4000),
            (5, 9, "view", 1, ""),  # line 6: visitor 9 only browses
            (30, 7, "transaction", 12, 4001),  # line 7: order 4001 on June 2
            (31, 11, "view", 2, ""),
            (32, 11, "transaction", 2, 4002),  # line 9: order 4002
        )
    )
    + (
        f"{JUNE_1 + 33 * HOUR},,view,3,\n"  # line 10: an anonymous visit (a guest)
        "n/a,9,view,4,\n"  # line 11: an unreadable timestamp
    )
)


@pytest.fixture
def clickstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write(tmp_path / "src" / "events.csv", EVENTS)
    monkeypatch.setenv("RETAILROCKET_EVENTS", str(path))
    return path


def test_purchase_events_become_orders_without_money(tmp_path, clickstream):
    landing = tmp_path / "landing"
    summary = stage_sources(SHIPPED, landing, today=TODAY)

    orders = landed(landing, "orders").sort("_source_line")
    # one order per transaction, from its first row; the staged files carry no money at all
    assert orders.select("order_id", "user_id", "_source_line").rows() == [
        ("4000", "7", 4),
        ("4001", "7", 7),
        ("4002", "11", 9),
    ]
    assert "amount" not in orders.columns and "currency" not in orders.columns
    assert orders["ordered_at"][0] == "2015-06-01 03:00:00.000000"
    # every row is an event; visitors are users from their first event, browsers included
    assert summary.tables["events"].rows == 10
    users = landed(landing, "users").sort("user_id")
    assert users.select("user_id", "signup_at").rows() == [
        ("11", "2015-06-02 07:00:00.000000"),
        ("7", "2015-06-01 01:00:00.000000"),
        ("9", "2015-06-01 05:00:00.000000"),
    ]

    con = duckdb.connect()
    days = sorted(set(landed_dates(landing, "events")) | set(landed_dates(landing, "orders")))
    for table in ("users", "orders", "events"):
        ingest_partitions(con, landing, table, days, "r1")
    # nothing is rejected for the money the source does not have
    assert con.execute("select count(*) from quarantine.orders").fetchall() == [(0,)]
    assert con.execute(
        "select order_id, amount, currency from raw.orders order by 1"
    ).fetchall() == [("4000", None, None), ("4001", None, None), ("4002", None, None)]
    assert con.execute(
        "select event_type, count(*) from raw.events group by 1 order by 1"
    ).fetchall() == [("add_to_cart", 1), ("page_view", 3), ("purchase", 4)]
    # the guest and the undatable row are kept with their kind, file and line
    assert con.execute(
        "select _kind, _source_file, _source_line from quarantine.events order by 3"
    ).fetchall() == [
        ("no_user", str(clickstream), 10),
        ("missing_value", str(clickstream), 11),
    ]
    con.close()


def test_a_priced_file_still_rejects_an_order_without_its_amount(tmp_path):
    """`amount` is required in a file that has the column: only a file without it has no money."""
    landing = tmp_path / "landing"
    write(
        landing / "orders" / "date=2024-01-02" / "part.csv",
        "order_id,user_id,ordered_at,amount,currency,status\n"
        "o1,u1,2024-01-02 10:00:00,,USD,completed\n"
        "o2,u1,2024-01-02 11:00:00,5.00,USD,completed\n",
    )
    con = duckdb.connect()
    ingest_partitions(con, landing, "orders", [date(2024, 1, 2)], "r1")
    assert con.execute("select order_id, _kind from quarantine.orders").fetchall() == [
        ("o1", "missing_value")
    ]
    con.close()


def _shipped(**changes: object) -> str:
    spec = yaml.safe_load(SHIPPED.read_text())
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for name in parents:
            node = node[name]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    return yaml.safe_dump(spec)


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"tables__orders__money": "some"}, "tables.orders.money", "the only value is none"),
        ({"tables__events__money": "none"}, "tables.events.money", "only orders have money"),
        (
            {"tables__orders__columns__amount": "1"},
            "tables.orders.columns.amount",
            "not with money: none",
        ),
        (
            {"tables__orders__returns": "event = 'refund'"},
            "tables.orders.returns",
            "not with money: none",
        ),
        (
            {"tables__orders__items": {"product_id": "itemid"}},
            "tables.orders.items",
            "need a unit price",
        ),
        (
            {"tables__orders__money": None, "tables__orders__grain": None},
            "tables.orders.columns.amount",
            "required, not mapped",
        ),
        ({"tables__events": None}, "tables.users.derive", "first_event needs tables.events"),
        ({"tables__orders__where": ""}, "tables.orders.where", "a SQL condition"),
    ],
)
def test_a_wrong_events_only_mapping_names_its_key(tmp_path, clickstream, changes, key, message):
    mapping = write(tmp_path / "src" / "rr.yml", _shipped(**changes))
    with pytest.raises(MappingError, match=message) as error:
        load_mapping(mapping)
    assert str(error.value).startswith(key)


def test_a_where_condition_that_does_not_bind_names_its_key(tmp_path, clickstream):
    mapping = write(
        tmp_path / "src" / "rr.yml", _shipped(tables__orders__where="kind = 'transaction'")
    )
    with pytest.raises(MappingError, match=r"tables\.orders\.where: expression") as error:
        validate(load_mapping(mapping))
    assert "kind" in str(error.value)


def test_check_sources_counts_repeated_keys_among_the_rows_where_selects(tmp_path, clickstream):
    """At order grain, transaction 4000's two item rows repeat its key; the view rows, whose
    transactionid is empty, are not orders and repeat nothing."""
    from dagster_project.lib.ingestion.mapping.lines import repeated_order_keys

    mapping = write(tmp_path / "src" / "rr.yml", _shipped(tables__orders__grain=None))
    repeated = repeated_order_keys(load_mapping(mapping))
    assert (repeated.keys, repeated.rows, repeated.example) == (1, 1, "4000")
