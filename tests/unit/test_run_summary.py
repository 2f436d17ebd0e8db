"""What the run summary says about a failed step."""

import sys

import polars as pl
from dagster._utils.error import serializable_error_info_from_exc_info

from dagster_project.pipeline_run import root_cause_message


def test_a_failed_step_is_summarised_by_its_own_error_not_dagsters_wrapper():
    try:
        try:
            raise OSError('IO Error: Could not set lock on file "warehouse.duckdb": PID 42')
        except OSError as exc:
            raise RuntimeError('Error occurred while executing op "ingest_users":') from exc
    except RuntimeError:
        error = serializable_error_info_from_exc_info(sys.exc_info())

    assert root_cause_message(error) == (
        'OSError: IO Error: Could not set lock on file "warehouse.duckdb": PID 42'
    )
    assert root_cause_message(None) == "failed"


def test_the_summary_names_the_quality_figures_below_their_bar(tmp_path, capsys):
    """Only each model's newest promoted version counts; a missed minimum says what it
    left NULL."""
    from datetime import date

    import duckdb

    from dagster_project.cli import _print_model_quality
    from dagster_project.lib.core.warehouse import replace_rows
    from dagster_project.lib.model_store.quality import at_least, at_most, quality_frame, reported

    con = duckdb.connect(str(tmp_path / "serving.duckdb"))
    versions = [
        ("customer_value", "cv-old", date(2024, 3, 1), True),
        ("customer_value", "cv-new", date(2024, 3, 8), True),
        ("customer_value", "cv-refused", date(2024, 3, 9), False),
    ]
    for name, version, as_of, promoted in versions:
        replace_rows(
            con,
            "marts.model_versions",
            pl.DataFrame(
                {
                    "model_name": [name],
                    "model_version": [version],
                    "trained_as_of": [as_of],
                    "fitted_at": ["2024-03-10T00:00:00"],
                    "promoted": [promoted],
                }
            ),
            {"model_version": version},
        )
        figures = [
            at_least("customers", 12 if version == "cv-new" else 500, 20, "minimum_data", "CLV"),
            at_most("churn_calibration_error", 0.04, 0.1, "internal_holdout"),
            reported("holdout_customers", 300, "internal_holdout"),
        ]
        replace_rows(
            con,
            "marts.model_quality",
            quality_frame(name, version, as_of, figures),
            {"model_version": version},
        )
    _print_model_quality(con)
    out = capsys.readouterr().out
    assert "cv-new: 1 of 2 passed" in out
    assert "below the bar: customers 12 < 20 (CLV)" in out
    assert "cv-old" not in out and "cv-refused" not in out


def test_the_summary_says_when_orders_have_no_money():
    from dagster_project.cli import money_note

    assert money_note(120, 120) is None
    assert money_note(0, 0) is None
    none = money_note(120, 0)
    assert none.startswith("money: none of the 120 orders has an amount")
    assert "CLV and the simple LTV are NULL" in none and "BG/NBD, P(alive) and churn work" in none
    assert money_note(120, 100).startswith("money: 20 of 120 orders have no amount")


def test_the_summary_says_when_the_newest_snapshot_was_too_small_to_cluster(capsys):
    """Only the newest snapshot counts: clusters on an earlier day do not hide the skip."""
    import duckdb

    from dagster_project.cli import _print_clusters_skipped

    reason = "too few users to cluster: 12 < min_users (50)"
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.user_segments_daily as select * from (values "
        "('u1', date '2024-03-30', 1, null), "
        "('u1', date '2024-03-31', null, ?), ('u2', date '2024-03-31', null, ?)"
        ") as t(user_id, snapshot_date, cluster_id, cluster_reason)",
        [reason, reason],
    )
    _print_clusters_skipped(con)
    assert capsys.readouterr().out == (
        f"clusters: skipped on 2024-03-31, cluster_id is NULL ({reason})\n"
    )
    con.execute("update marts.user_segments_daily set cluster_id = 2 where user_id = 'u2'")
    _print_clusters_skipped(con)
    assert capsys.readouterr().out == ""
