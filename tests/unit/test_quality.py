"""Unit tests for the GX suites in expectations/ and the runner in lib/quality/gx_suites.py.

GX is imported once per test process (lib/quality/gx_suites caches its ephemeral context), so the
whole module costs one GX import plus ~0.1-0.5 s per validation.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.lib.quality import gx_suites as quality
from dagster_project.lib.quality.gx_suites import (
    SuiteResult,
    SuiteSpecError,
    load_suite_spec,
    required_parameters,
    validate_frame,
)

REPO = Path(__file__).resolve().parents[2]
EXPECTATIONS = REPO / "expectations"
SUITES = [
    "raw_orders",
    "raw_order_items",
    "raw_users",
    "raw_events",
    "raw_campaign_exposures",
    "raw_partitions",
    "marts_fct_orders",
    "marts_fct_user_activity_daily",
    "marts_dim_users",
]
DAY = pd.Timestamp("2024-03-01")
WINDOW = {"partition_start": DAY, "partition_end": DAY + pd.Timedelta(days=1)}


@pytest.fixture(scope="module", autouse=True)
def one_gx_context():
    """The runner caches GX's context per process; prove the module built exactly one."""
    yield
    assert quality._runtime.cache_info().currsize == 1


def _ts(*values: str) -> pd.Series:
    """Timestamps typed as DuckDB 2 / pandas 3 return them (datetime64[us])."""
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def _int32(*values: int | None) -> pd.Series:
    dtype = "Int32" if None in values else "int32"
    return pd.Series(list(values), dtype=dtype)


def _raw(frame: pd.DataFrame, parent: bool = True) -> pd.DataFrame:
    """A raw frame as the check builds it: lineage, the row's day bounds, _parent_known."""
    n = len(frame)
    extra = {
        "_partition_date": _ts(*["2024-03-01"] * n),
        "_source_file": ["part-00000.csv"] * n,
        "_source_line": list(range(2, n + 2)),
        "_partition_start": _ts(*["2024-03-01"] * n),
        "_partition_end": _ts(*["2024-03-02"] * n),
    }
    if parent:
        extra["_parent_known"] = [True] * n
    return frame.drop(columns=[c for c in extra if c in frame.columns]).assign(**extra)


def good_frames() -> dict[str, pd.DataFrame]:
    """One clean partition (2024-03-01) per suite, with the dtypes DuckDB's .df() produces."""
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3"],
            "user_id": ["u1", "u2", "u1"],
            "ordered_at": _ts("2024-03-01 00:00:00", "2024-03-01 12:30:00", "2024-03-01 23:59:59"),
            "amount": [10.5, 0.0, 99.99],
            "currency": ["USD", "EUR", "CNY"],
            "status": ["completed", "cancelled", "refunded"],
            "_partition_date": _ts("2024-03-01", "2024-03-01", "2024-03-01"),
        }
    )
    fct_orders = orders.drop(columns="_partition_date").assign(
        order_date=_ts("2024-03-01", "2024-03-01", "2024-03-01"),
        is_completed=[True, False, False],
        item_count=_int32(2, 0, 1),
        line_count=_int32(1, 0, 1),
    )
    counts = [
        "sessions",
        "page_views",
        "searches",
        "add_to_carts",
        "reviews",
        "support_contacts",
        "other_events",
    ]
    activity = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "activity_date": _ts("2024-03-01", "2024-03-01"),
            "orders": _int32(2, 1),
            "completed_orders": _int32(1, 0),
            "revenue": [10.5, 0.0],
            **{c: _int32(1, 0) for c in counts},
            "events_total": _int32(7, 0),
        }
    )
    partitions = pd.DataFrame(
        {
            "partition_date": _ts("2024-03-01", "2024-03-02"),
            "run_id": ["r1", "r1"],
            "rows_landed": [100, 0],
            "rows_accepted": [95, 0],
            "rows_quarantined": [5, 0],
            "unaccounted_rows": [0, 0],
            "raw_rows": [95, 0],
            "quarantine_rows": [5, 0],
            "reject_share": [0.05, 0.0],
            "reject_share_lower": [0.02, 0.0],
            "guest_rows": [0, 0],
            "latest_at": _ts("2024-03-01 23:00:00", "2024-03-01 23:00:00"),
            "staleness_days": [1 / 24, 1 + 1 / 24],
        }
    )
    return {
        "raw_orders": _raw(orders),
        "raw_partitions": partitions,
        "raw_order_items": pd.DataFrame(
            {
                "order_id": ["o1", "o1", "o3"],
                "product_id": ["p1", "p2", "p1"],
                "category": ["books", None, "books"],
                "quantity": _int32(1, 1, 1),
                "unit_price": [5.25, 5.25, 99.99],
            }
        ).pipe(_raw),
        "raw_users": pd.DataFrame(
            {
                "user_id": ["u1", "u2"],
                "signup_at": _ts("2024-03-01 08:00:00", "2024-03-01 09:00:00"),
                "country": ["CN", "US"],
                "channel": ["organic", "ads"],
                "birth_year": _int32(1990, None),
                "gender": ["f", None],
                "email": ["a@example.com", None],
                "phone": [None, "+1 555 0100"],
            }
        ).pipe(_raw, parent=False),
        "raw_events": pd.DataFrame(
            {
                "event_id": ["e1", "e2", "e3"],
                "user_id": ["u1", "u1", "u2"],
                "event_at": _ts(
                    "2024-03-01 10:00:00", "2024-03-01 10:01:00", "2024-03-01 11:00:00"
                ),
                "event_type": ["session_start", "page_view", "support_contact"],
                "session_id": ["s1", "s1", None],
            }
        ).pipe(_raw),
        "raw_campaign_exposures": pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u1"],
                "campaign_id": ["c1", "c1", "c2"],
                "arm": ["treatment", "control", "Treatment"],
                "exposed_at": _ts(
                    "2024-03-01 06:00:00", "2024-03-01 06:00:00", "2024-03-01 23:00:00"
                ),
                "channel": ["email", "email", None],
                "cost": [0.05, 0.0, None],
            }
        ).pipe(_raw),
        "marts_fct_orders": fct_orders,
        "marts_fct_user_activity_daily": activity,
        "marts_dim_users": pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u3"],
                "signup_at": _ts("2024-02-01 08:00:00", "2024-03-01 09:00:00", None),
                "first_seen_at": _ts("2024-02-01 08:00:00", "2024-03-01 09:00:00", "2024-02-10"),
                "country": ["CN", "US", None],
                "channel": ["organic", "ads", None],
                "birth_year": _int32(1990, None, None),
                "gender": ["f", None, None],
                "email_hash": ["9f86d081884c7d65", None, None],
                "phone_hash": [None, "60303ae22b998861", None],
                "first_order_at": _ts("2024-02-03 10:00:00", None, "2024-02-10"),
                "has_profile": [True, True, False],
            }
        ),
    }


def contract_columns(suite: str) -> list[str]:
    spec = load_suite_spec(suite, EXPECTATIONS)
    (columns,) = [
        e["kwargs"]["column_set"]
        for e in spec["expectations"]
        if e["type"] == "expect_table_columns_to_match_set"
    ]
    return columns


def only_failure(result: SuiteResult, expectation: str, column: str | None):
    matches = [f for f in result.failed if f.expectation == expectation and f.column == column]
    assert matches, f"{expectation} on {column} did not fail: {result.to_metadata()}"
    return matches[0]


# ------------------------------------------------------------------------------ suite files


def test_suite_files_are_exactly_one_per_table() -> None:
    assert sorted(p.stem for p in EXPECTATIONS.glob("*.json")) == sorted(SUITES)


@pytest.mark.parametrize("suite", SUITES)
def test_suite_loads_and_empty_partition_passes(suite: str) -> None:
    spec = load_suite_spec(suite, EXPECTATIONS)
    assert spec["name"] == suite
    assert required_parameters(spec) <= {"partition_start", "partition_end"}
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in contract_columns(suite)})

    result = validate_frame(empty, suite, EXPECTATIONS, WINDOW)

    # every expectation was built and evaluated by GX without raising
    assert result.evaluated == len(spec["expectations"])
    assert result.success and not result.failed, result.to_metadata()


@pytest.mark.parametrize("suite", SUITES)
def test_good_partition_passes_without_warnings(suite: str) -> None:
    result = validate_frame(good_frames()[suite], suite, EXPECTATIONS, WINDOW)
    assert result.success and not result.has_warning, result.to_metadata()
    assert result.failed == []


# ------------------------------------------------------------------------------ defects


def test_campaign_exposures_with_an_unknown_arm_or_a_negative_cost_fail() -> None:
    frame = good_frames()["raw_campaign_exposures"].copy()
    frame.loc[1, "arm"] = "holdout"
    frame.loc[0, "cost"] = -1.0
    result = validate_frame(frame, "raw_campaign_exposures", EXPECTATIONS, WINDOW)
    assert not result.success
    only_failure(result, "expect_column_values_to_be_in_set", "arm")
    only_failure(result, "expect_column_values_to_be_between", "cost")


def _orders(**changes: object) -> pd.DataFrame:
    df = good_frames()["raw_orders"].copy()
    for column, (row, value) in changes.items():
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return df.astype({"ordered_at": "datetime64[us]", "amount": "float64", "_parent_known": bool})


@pytest.mark.parametrize(
    ("frame", "expectation", "column", "sample"),
    [
        (_orders(order_id=(1, None)), "expect_column_values_to_not_be_null", "order_id", [None]),
        (_orders(user_id=(0, None)), "expect_column_values_to_not_be_null", "user_id", [None]),
        (
            _orders(status=(2, "shipped")),
            "expect_column_values_to_be_in_set",
            "status",
            ["shipped"],
        ),
        (_orders(amount=(1, -5.0)), "expect_column_values_to_be_between", "amount", [-5.0]),
        (_orders(currency=(0, "usd")), "expect_column_values_to_be_in_set", "currency", ["usd"]),
        (
            _orders(ordered_at=(2, pd.Timestamp("2024-03-02 00:00:00"))),
            "expect_column_pair_values_a_to_be_greater_than_b",
            "_partition_end,ordered_at",
            [["2024-03-02T00:00:00", "2024-03-02T00:00:00"]],
        ),
        (  # beyond pandas' ns range: the runner keeps datetime64[us] and still compares
            _orders(ordered_at=(0, pd.Timestamp("2300-01-01 00:00:00"))),
            "expect_column_pair_values_a_to_be_greater_than_b",
            "_partition_end,ordered_at",
            [["2024-03-02T00:00:00", "2300-01-01T00:00:00"]],
        ),
        (
            _orders(_parent_known=(1, False)),
            "expect_column_values_to_be_in_set",
            "_parent_known",
            [False],
        ),
        (
            good_frames()["raw_orders"].drop(columns="status"),
            "expect_table_columns_to_match_set",
            None,
            ["status"],
        ),
    ],
    ids=[
        "null_key",
        "null_user",
        "bad_status",
        "negative_amount",
        "bad_currency",
        "future_ts",
        "far_future_ts",
        "orphan",
        "missing_column",
    ],
)
def test_raw_orders_defect_fails_with_evidence(
    frame: pd.DataFrame, expectation: str, column: str | None, sample: list
) -> None:
    result = validate_frame(frame, "raw_orders", EXPECTATIONS, WINDOW)

    assert not result.success and result.has_error
    failure = only_failure(result, expectation, column)
    assert failure.severity == "error"
    assert failure.unexpected_sample == sample
    json.dumps(result.to_metadata())  # Dagster metadata must serialise
    if expectation == "expect_table_columns_to_match_set":
        assert failure.observed == "missing columns ['status']"


def test_future_timestamp_is_named_by_its_description() -> None:
    frame = _orders(ordered_at=(0, pd.Timestamp("2024-03-05 10:00:00")))
    result = validate_frame(frame, "raw_orders", EXPECTATIONS, WINDOW)
    (failure,) = [f for f in result.failed if f.column == "_partition_end,ordered_at"]
    assert "no data from the future" in (failure.description or "")
    assert failure.observed.startswith("1 of 3 rows unexpected")


def test_rows_are_bounded_by_their_own_day_in_a_multi_day_window() -> None:
    # a row of 2024-03-01 stamped on 03-02 passes a 2-day window's bounds, not its own day's
    frame = _orders(ordered_at=(0, pd.Timestamp("2024-03-02 10:00:00")))
    window = {"partition_start": DAY, "partition_end": DAY + pd.Timedelta(days=2)}
    result = validate_frame(frame, "raw_orders", EXPECTATIONS, window)
    assert not result.success
    only_failure(
        result, "expect_column_pair_values_a_to_be_greater_than_b", "_partition_end,ordered_at"
    )


def test_partition_audit_defects_fail() -> None:
    frame = good_frames()["raw_partitions"].copy()
    frame.loc[0, "reject_share_lower"] = 0.25  # above the 10 % default
    frame.loc[1, "unaccounted_rows"] = 3  # rows lost between landing and raw/quarantine
    frame.loc[0, "raw_rows"] = 94  # raw does not hold what ingestion accepted
    frame.loc[1, "staleness_days"] = 9.0
    result = validate_frame(frame, "raw_partitions", EXPECTATIONS, WINDOW)
    assert not result.success
    assert only_failure(result, "expect_column_values_to_be_between", "reject_share_lower")
    assert only_failure(result, "expect_column_values_to_be_between", "unaccounted_rows")
    assert only_failure(result, "expect_column_pair_values_to_be_equal", "raw_rows,rows_accepted")
    assert only_failure(result, "expect_column_values_to_be_between", "staleness_days")
    relaxed = validate_frame(
        frame.assign(raw_rows=[95, 0], unaccounted_rows=[0, 0]),
        "raw_partitions",
        EXPECTATIONS,
        {**WINDOW, "max_reject_share": 0.3, "max_staleness_days": 10},
    )
    assert relaxed.success, relaxed.to_metadata()


def test_duplicate_id_blocks_in_mart_and_in_raw() -> None:
    frames = good_frames()
    mart = frames["marts_fct_orders"].copy()
    mart.loc[2, "order_id"] = "o2"
    raw = frames["raw_orders"].copy()
    raw.loc[2, "order_id"] = "o2"

    mart_result = validate_frame(mart, "marts_fct_orders", EXPECTATIONS, WINDOW)
    raw_result = validate_frame(raw, "raw_orders", EXPECTATIONS, WINDOW)

    failure = only_failure(mart_result, "expect_column_values_to_be_unique", "order_id")
    assert (failure.severity, failure.unexpected_sample) == ("error", ["o2"])
    assert not mart_result.success
    # ingestion quarantines duplicate ids, so one in raw is a defect (per day: ids may not
    # repeat within a partition)
    failure = only_failure(
        raw_result, "expect_compound_columns_to_be_unique", "order_id,_partition_date"
    )
    assert failure.severity == "error"
    assert not raw_result.success


def test_mart_consistency_defects() -> None:
    frames = good_frames()
    orders = frames["marts_fct_orders"].copy()
    unflagged = orders.copy()
    orders.loc[1, "is_completed"] = True  # cancelled but flagged completed
    unflagged.loc[0, "is_completed"] = False  # completed but not flagged
    activity = frames["marts_fct_user_activity_daily"].copy()
    activity.loc[1, "user_id"] = "u1"  # two rows for one user-day
    activity.loc[0, "completed_orders"] = 5  # more completed than orders
    dim = frames["marts_dim_users"].copy()
    dim.loc[0, "email_hash"] = "leaked@example.com"

    for frame, description, flag in (
        (orders, "is_completed is false for every other status", True),
        (unflagged, "is_completed is true when status is completed", False),
    ):
        failure = only_failure(
            validate_frame(frame, "marts_fct_orders", EXPECTATIONS, WINDOW),
            "expect_column_values_to_be_in_set",
            "is_completed",
        )
        assert failure.description.startswith(description)
        assert failure.unexpected_sample == [flag]
    result = validate_frame(activity, "marts_fct_user_activity_daily", EXPECTATIONS, WINDOW)
    failure = only_failure(result, "expect_compound_columns_to_be_unique", "user_id,activity_date")
    assert {"user_id": "u1", "activity_date": "2024-03-01T00:00:00"} in failure.unexpected_sample
    only_failure(
        result, "expect_column_pair_values_a_to_be_greater_than_b", "orders,completed_orders"
    )
    failure = only_failure(
        validate_frame(dim, "marts_dim_users", EXPECTATIONS, WINDOW),
        "expect_column_values_to_not_match_regex",
        "email_hash",
    )
    assert failure.unexpected_sample == ["leaked@example.com"]


def test_warn_severity_does_not_fail_the_suite() -> None:
    events = good_frames()["raw_events"].copy()
    events.loc[0, "event_type"] = "wishlist"  # unknown types are counted as other_events
    users = good_frames()["raw_users"].copy()
    users["birth_year"] = _int32(1850, None)

    for suite, frame, column, sample in [
        ("raw_events", events, "event_type", ["wishlist"]),
        ("raw_users", users, "birth_year", [1850]),
    ]:
        result = validate_frame(frame, suite, EXPECTATIONS, WINDOW)
        assert result.success and result.has_warning and not result.has_error
        (failure,) = result.failed
        assert (failure.column, failure.severity, failure.unexpected_sample) == (
            column,
            "warn",
            sample,
        )
        assert result.to_metadata()["warnings"] == 1


def test_sample_is_distinct_and_capped() -> None:
    items = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(30)],
            "product_id": "p1",
            "category": "books",
            "quantity": _int32(*[-(i % 15) - 1 for i in range(30)]),
            "unit_price": 1.0,
        }
    )
    failure = only_failure(
        validate_frame(items, "raw_order_items", EXPECTATIONS),
        "expect_column_values_to_be_between",
        "quantity",
    )
    assert failure.unexpected_sample == [-(i + 1) for i in range(10)]
    assert failure.observed.startswith("30 of 30 rows unexpected")


# ------------------------------------------------------------------------------ parameters


def test_missing_partition_parameter_is_an_error() -> None:
    # raw suites bound rows by their own day (columns the check adds); marts use the window
    with pytest.raises(SuiteSpecError, match="partition_end"):
        validate_frame(
            good_frames()["marts_fct_orders"],
            "marts_fct_orders",
            EXPECTATIONS,
            {"partition_start": DAY},
        )


def test_dagster_style_window_parameters_are_normalised() -> None:
    # Dagster's partition_time_window is tz-aware; a plain date works for the start.
    params = {
        "partition_start": dt.date(2024, 3, 1),
        "partition_end": dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
    }
    result = validate_frame(good_frames()["raw_orders"], "raw_orders", EXPECTATIONS, params)
    assert result.success and not result.failed, result.to_metadata()


def test_max_rows_default_can_be_overridden() -> None:
    result = validate_frame(
        good_frames()["raw_orders"], "raw_orders", EXPECTATIONS, {**WINDOW, "max_rows": 2}
    )
    failure = only_failure(result, "expect_table_row_count_to_be_between", None)
    assert (failure.severity, failure.observed) == ("warn", "observed 3")
    assert result.success


# ------------------------------------------------------------------------------ spec loading


def _write(tmp_path: Path, name: str, spec: dict) -> Path:
    (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    return tmp_path


def test_spec_name_must_match_file(tmp_path: Path) -> None:
    exp = {"type": "expect_column_to_exist", "kwargs": {"column": "a"}}
    _write(tmp_path, "t", {"name": "other", "expectations": [exp]})
    with pytest.raises(SuiteSpecError, match="must equal"):
        load_suite_spec("t", tmp_path)


def test_spec_severity_aliases_and_meta_fallback(tmp_path: Path) -> None:
    exps = [
        {"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "b"}, "severity": "warn"},
        {"type": "expect_column_to_exist", "kwargs": {"column": "c"}, "meta": {"severity": "warn"}},
    ]
    spec = load_suite_spec("t", _write(tmp_path, "t", {"name": "t", "expectations": exps}))
    assert [e["severity"] for e in spec["expectations"]] == ["critical", "warning", "warning"]

    result = validate_frame(pd.DataFrame({"a": [1]}), "t", tmp_path)
    assert [(f.column, f.severity) for f in result.failed] == [("b", "warn"), ("c", "warn")]
    assert result.success

    bad = [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}, "severity": "fatal"}]
    _write(tmp_path, "bad", {"name": "bad", "expectations": bad})
    with pytest.raises(SuiteSpecError, match="unknown severity"):
        load_suite_spec("bad", tmp_path)


def test_only_the_failed_of_two_alike_expectations_is_reported_with_its_evidence(
    tmp_path: Path,
) -> None:
    # failures are found in a pass/fail pass and validated again for their evidence: two
    # expectations of one type on one column, without descriptions, must not be mixed up
    exps = [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min_value": 0}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "max_value": 2}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
    ]
    _write(tmp_path, "t", {"name": "t", "expectations": exps})
    result = validate_frame(pd.DataFrame({"a": [1, 2, 3, 5, 5]}), "t", tmp_path)
    assert result.evaluated == 3
    assert [(f.column, f.observed, f.unexpected_sample) for f in result.failed] == [
        ("a", "3 of 5 rows unexpected (60.00%)", [3, 5])
    ]


def test_invalid_expectation_is_reported_not_dropped(tmp_path: Path) -> None:
    # GX's ExpectationSuite(expectations=[...]) logs and drops invalid entries; we raise.
    exps = [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "a"}}]
    _write(tmp_path, "t", {"name": "t", "expectations": exps})
    with pytest.raises(SuiteSpecError, match="invalid expect_column_values_to_be_between"):
        validate_frame(pd.DataFrame({"a": [1]}), "t", tmp_path)


def test_importing_the_runner_does_not_import_gx() -> None:
    code = (
        "import sys, dagster_project.lib.quality.gx_suites; "
        "assert 'great_expectations' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_large_window_is_validated_on_a_stable_sample_that_still_sees_a_broken_column() -> None:
    import duckdb

    from dagster_project.lib.quality.sampling import plan_sample, sampled_query

    base = good_frames()["raw_orders"]
    n = 6000
    frame = _raw(pd.concat([base] * (n // len(base)), ignore_index=True))
    frame["order_id"] = [f"o{i}" for i in range(n)]
    frame["amount"] = frame["amount"].astype("float64")
    frame.loc[frame.index % 20 == 0, "amount"] = -1.0  # a systematic defect: 5% of rows
    key = "_source_file, _source_line"
    con = duckdb.connect()
    con.register("frame_view", frame)
    con.execute("create table raw_rows as select * from frame_view")
    con.execute("create table shuffled as select * from raw_rows order by random()")

    sample = plan_sample(n, 600, key)
    assert 0 < sample.share < 0.2
    picked = con.sql(sampled_query("select * from raw_rows", key, sample)).df()
    assert 400 <= len(picked) <= 800
    # the same rows whatever order the scan meets them in (a rerun validates the same sample)
    again = con.sql(sampled_query("select * from shuffled", key, sample)).df()
    assert sorted(again["order_id"]) == sorted(picked["order_id"])

    result = validate_frame(
        picked.astype({"ordered_at": "datetime64[us]"}), "raw_orders", EXPECTATIONS, WINDOW
    )
    failure = only_failure(result, "expect_column_values_to_be_between", "amount")
    assert failure.unexpected_sample == [-1.0]

    # a window that fits, or a check without a key, is validated whole
    assert plan_sample(n, n, key).threshold is None
    assert plan_sample(n, 600, None).threshold is None
    whole = sampled_query("select * from raw_rows", key, plan_sample(n, n, key))
    assert con.sql(f"select count(*) from ({whole})").fetchall()[0][0] == n
