"""Unit tests of the sample-data generator: the landing-file contract it promises ingestion
and the behavioural invariants the segmentation tests rely on (small data, runs in seconds)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from dagster_project.lib.ingestion.contract import ID_COLUMNS, PARENTS
from dagster_project.lib.sample.archetypes import (
    ARCHETYPES,
    CATEGORIES,
    COLUMNS,
    EVENT_TYPES,
    TABLES,
)
from dagster_project.lib.sample.generator import GenerationSummary, generate_sample
from dagster_project.lib.sample.tastes import FAVOURITE_CATEGORIES, archetype_tastes

USERS, DAYS, SEED = 200, 30, 42
END = date(2025, 3, 31)
START = END - timedelta(days=DAYS - 1)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
TS_COLUMN = {"orders": "ordered_at", "users": "signup_at", "events": "event_at"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    home = tmp_path_factory.mktemp("home")
    return home, generate_sample(home, users=USERS, days=DAYS, seed=SEED, end_date=END)


def _files(home: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()
    }


def _read(home: Path, table: str) -> pl.DataFrame:
    """All days of a table as strings, with the date of the file each row came from."""
    return pl.read_csv(
        home / "landing" / table / "*" / "part-00000.csv",
        infer_schema=False,
        include_file_paths="path",
    ).with_columns(file_date=pl.col("path").str.extract(r"date=(\d{4}-\d{2}-\d{2})").str.to_date())


def _ts(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(TS_FORMAT, strict=True)


def _cents(column: str) -> pl.Expr:
    return (pl.col(column).cast(pl.Float64) * 100).round().cast(pl.Int64)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
    sample: tuple[Path, GenerationSummary], tmp_path: Path
) -> None:
    home, summary = sample
    again = generate_sample(tmp_path / "a", users=USERS, days=DAYS, seed=SEED, end_date=END)
    other = generate_sample(tmp_path / "b", users=USERS, days=DAYS, seed=SEED + 1, end_date=END)
    assert again == summary
    assert _files(tmp_path / "a") == _files(home)
    assert _files(tmp_path / "b") != _files(home)
    assert other.rows != summary.rows


def test_summary_reports_window_and_row_counts(sample: tuple[Path, GenerationSummary]) -> None:
    home, summary = sample
    assert (summary.start_date, summary.end_date, summary.users) == (START, END, USERS)
    assert summary.rows == {t: _read(home, t).height for t in TABLES}
    assert all(summary.rows[t] > 0 for t in TABLES)


def test_layout_headers_and_no_file_outside_the_window(
    sample: tuple[Path, GenerationSummary],
) -> None:
    home, _ = sample
    assert sorted(p.name for p in (home / "landing").iterdir()) == sorted(TABLES)
    for table in TABLES:
        for part in (home / "landing" / table).iterdir():
            match = re.fullmatch(r"date=(\d{4}-\d{2}-\d{2})", part.name)
            assert match, part
            assert START <= date.fromisoformat(match.group(1)) <= END, part
            assert [p.name for p in part.iterdir()] == ["part-00000.csv"]
            header = (part / "part-00000.csv").read_text().splitlines()[0]
            assert header == ",".join(COLUMNS[table])
            assert len((part / "part-00000.csv").read_text().splitlines()) > 1  # no empty files
    assert (home / "truth" / "archetypes.parquet").is_file()


def test_values_follow_the_contract_formats(sample: tuple[Path, GenerationSummary]) -> None:
    home, _ = sample
    orders, items = _read(home, "orders"), _read(home, "order_items")
    users, events = _read(home, "users"), _read(home, "events")
    money = r"^\d+\.\d{2}$"
    assert orders["amount"].str.contains(money).all()
    assert items["unit_price"].str.contains(money).all()
    assert set(orders["currency"]) == {"USD"}
    assert set(orders["status"]) <= {"completed", "cancelled", "refunded"}
    assert (orders["status"] == "completed").mean() > 0.7
    assert set(events["event_type"]) <= set(EVENT_TYPES)
    for frame, column, pattern in [
        (users, "user_id", r"^u\d{6}$"),
        (orders, "order_id", r"^o\d+$"),
        (items, "product_id", r"^p\d+$"),
        (events, "event_id", r"^e\d+$"),
        (events, "session_id", r"^s\d+$"),
        (users, "email", r"^[a-z]+\.[a-z]+\d+@example\.com$"),
        (users, "phone", r"^\+1-555-\d{3}-\d{4}$"),
    ]:
        assert frame[column].str.contains(pattern).all(), column
    for frame, key in [(users, "user_id"), (orders, "order_id"), (events, "event_id")]:
        assert frame[key].is_unique().all(), key
    assert items["quantity"].cast(pl.Int64).min() >= 1


def test_timestamps_fall_on_their_files_date(sample: tuple[Path, GenerationSummary]) -> None:
    home, _ = sample
    for table, column in TS_COLUMN.items():
        df = _read(home, table).with_columns(_ts(column).alias("ts"))
        assert (df["ts"].dt.date() == df["file_date"]).all(), table
        assert df["ts"].dt.date().max() <= END
    orders = _read(home, "orders").select("order_id", order_date="file_date")
    items = _read(home, "order_items").join(orders, on="order_id", how="left")
    assert (items["file_date"] == items["order_date"]).all()


def test_order_users_have_profiles_signed_up_before_their_activity(
    sample: tuple[Path, GenerationSummary],
) -> None:
    home, _ = sample
    users = _read(home, "users").select("user_id", signup=_ts("signup_at"))
    for table, column in [("orders", "ordered_at"), ("events", "event_at")]:
        first = (
            _read(home, table)
            .group_by("user_id")
            .agg(first=_ts(column).min())
            .join(users, on="user_id", how="left")
        )
        assert first["signup"].null_count() == 0, table
        assert (first["signup"] <= first["first"]).all(), table


def test_items_sum_to_the_order_amount(sample: tuple[Path, GenerationSummary]) -> None:
    home, _ = sample
    lines = (
        _read(home, "order_items")
        .group_by("order_id")
        .agg(
            lines=pl.len(),
            total=(_cents("unit_price") * pl.col("quantity").cast(pl.Int64)).sum(),
        )
    )
    orders = _read(home, "orders").select("order_id", amount=_cents("amount"))
    joined = orders.join(lines, on="order_id", how="full", coalesce=True)
    assert joined["lines"].null_count() == 0 and joined["amount"].null_count() == 0
    assert joined["lines"].is_between(1, 4).all()
    assert (joined["total"] == joined["amount"]).all()


def test_truth_covers_every_user_once_and_browse_only_never_order(
    sample: tuple[Path, GenerationSummary],
) -> None:
    home, _ = sample
    truth = pl.read_parquet(home / "truth" / "archetypes.parquet")
    assert truth.columns == ["user_id", "archetype"]
    assert truth["user_id"].is_unique().all()
    assert set(truth["user_id"]) == set(_read(home, "users")["user_id"])
    assert set(truth["archetype"]) == {a.name for a in ARCHETYPES}
    buyers = set(_read(home, "orders")["user_id"])
    browse_only = set(truth.filter(pl.col("archetype") == "browse_only")["user_id"])
    assert browse_only and not buyers & browse_only
    assert browse_only & set(_read(home, "events")["user_id"])  # they do browse


def test_rerun_replaces_the_window_and_keeps_other_days(tmp_path: Path) -> None:
    stale = tmp_path / "landing" / "orders" / f"date={END.isoformat()}" / "stale.csv"
    outside = tmp_path / "landing" / "orders" / "date=2000-01-01" / "part-00000.csv"
    for path in (stale, outside):
        path.parent.mkdir(parents=True)
        path.write_text("x\n")
    generate_sample(tmp_path, users=50, days=7, seed=1, end_date=END)
    assert not stale.exists()
    assert outside.exists()


@pytest.mark.parametrize("days", [1, 7])
def test_tiny_windows_work(tmp_path: Path, days: int) -> None:
    summary = generate_sample(tmp_path, users=30, days=days, seed=3, end_date=END)
    assert summary.rows["users"] == 30
    dates = {p.name for t in TABLES for p in (tmp_path / "landing" / t).glob("date=*")}
    assert max(dates) <= f"date={END.isoformat()}"
    assert min(dates) >= f"date={(END - timedelta(days=days - 1)).isoformat()}"


def test_end_date_defaults_to_yesterday(tmp_path: Path) -> None:
    summary = generate_sample(tmp_path, users=10, days=3, seed=0)
    assert summary.end_date == datetime.now(UTC).date() - timedelta(days=1)


def test_parquet_lands_the_same_rows_as_csv(
    sample: tuple[Path, GenerationSummary], tmp_path: Path
) -> None:
    from dagster_project.lib.ingestion.landing import read_landing_file

    csv_home, _ = sample
    generate_sample(
        tmp_path, users=USERS, days=DAYS, seed=SEED, end_date=END, file_format="parquet"
    )
    assert not list((tmp_path / "landing").rglob("*.csv"))
    for table in TABLES:
        for day in (START, END):
            folder = f"date={day.isoformat()}"
            as_csv = read_landing_file(
                csv_home / "landing" / table / folder / "part-00000.csv", table
            )
            as_parquet = read_landing_file(
                tmp_path / "landing" / table / folder / "part-00000.parquet", table
            )
            content = [c for c in COLUMNS[table]]
            assert as_parquet.select(content).equals(as_csv.select(content)), (table, day)


def test_dirty_parquet_records_point_at_their_rows(tmp_path: Path) -> None:
    from dagster_project.lib.sample.defects import DEFECTS_FILE

    generate_sample(
        tmp_path,
        users=USERS,
        days=5,
        seed=SEED,
        end_date=END,
        dirty_rate=0.05,
        file_format="parquet",
    )
    injected = pl.read_parquet(tmp_path / "truth" / DEFECTS_FILE)
    assert injected.height > 0
    assert set(injected["table"]) == set(TABLES)
    for record in injected.iter_rows(named=True):
        rows = pl.read_parquet(tmp_path / record["file"])
        key = ID_COLUMNS.get(record["table"]) or PARENTS[record["table"]].column
        assert rows.row(record["line"] - 1, named=True)[key] == record["key"]


def test_an_unknown_format_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="csv, parquet"):
        generate_sample(tmp_path, users=10, days=2, seed=1, file_format="json")
    assert not (tmp_path / "landing").exists()


def test_archetypes_buy_their_favourite_categories_most(
    sample: tuple[Path, GenerationSummary],
) -> None:
    """The category signal the recommendations learn (lib/sample/tastes.py): each buying
    archetype's most bought category is its first favourite, and its favourites take most
    of its lines."""
    home, _ = sample
    truth = pl.read_parquet(home / "truth" / "archetypes.parquet")
    lines = (
        _read(home, "order_items")
        .join(_read(home, "orders").select("order_id", "user_id"), on="order_id")
        .join(truth, on="user_id")
    )
    for archetype, favourites in FAVOURITE_CATEGORIES.items():
        own = lines.filter(pl.col("archetype") == archetype)
        if own.height < 50:  # browse_only never buys; new users barely do in 30 days
            continue
        counts = own["category"].value_counts(sort=True)
        assert counts["category"][0] == favourites[0], archetype
        assert own["category"].is_in(favourites).mean() > 0.8, archetype


def test_archetype_tastes_are_distributions_ordered_by_favourite() -> None:
    tastes = archetype_tastes()
    assert tastes.shape == (len(ARCHETYPES), len(CATEGORIES))
    assert tastes.sum(axis=1) == pytest.approx(1.0)
    for code, archetype in enumerate(ARCHETYPES):
        favoured = [tastes[code, CATEGORIES.index(c)] for c in FAVOURITE_CATEGORIES[archetype.name]]
        assert favoured == sorted(favoured, reverse=True)
        assert min(favoured) > tastes[code].min()
