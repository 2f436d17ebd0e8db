"""Campaign evaluation and the global holdout on the session's published sample (generated
with campaigns, `pipeline_home`): the tables exist in serving with their contracts, the
segment at exposure is point in time, the playbook names running tests, and the holdout is the
salted hash it promises."""

import hashlib
import re

import duckdb
import polars as pl
import pytest
from pipeline_sample import END, PREVIOUS

from dagster_project.lib.core import settings
from dagster_project.lib.evaluation.campaigns import METRICS, contract_violations

CAMPAIGN_TABLES = (
    "marts.campaign_effects",
    "marts.fct_campaign_exposures",
    "marts.campaign_exposure_segments",
    "marts.user_holdout_groups",
)


@pytest.fixture(scope="module")
def serving(pipeline_home):
    con = duckdb.connect(str(pipeline_home.serving_db), read_only=True)
    yield con
    con.close()


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return con.sql(sql).pl()


def test_the_campaign_tables_are_published_with_their_contract(serving):
    tables = {
        f"{s}.{t}"
        for s, t in serving.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    assert set(CAMPAIGN_TABLES) <= tables
    columns = serving.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'campaign_effects' "
        "order by ordinal_position"
    ).fetchall()
    assert contract_violations(columns) == []


def test_every_landed_exposure_is_measured_once(pipeline_home, serving):
    landed = pl.read_csv(
        pipeline_home.landing / "campaign_exposures" / "*" / "*.csv", infer_schema=False
    )
    exposures = _frame(serving, "select * from marts.fct_campaign_exposures")
    assert exposures.height == landed.height > 0
    assert (exposures["latest_snapshot_date"] == END).all()
    effects = _frame(serving, "select * from marts.campaign_effects")
    pooled = effects.filter(pl.col("scheme") == "all")
    assert set(pooled["campaign_id"]) == set(landed["campaign_id"])
    assert pooled.height == pooled["campaign_id"].n_unique() * len(METRICS)
    # each scheme splits each campaign's users exactly (the blocking check's promise)
    users = effects.group_by("campaign_id", "metric", "scheme").agg(
        pl.col("treatment_users").sum(), pl.col("control_users").sum()
    )
    assert users.group_by("campaign_id", "metric").agg(
        pl.col("treatment_users").n_unique(), pl.col("control_users").n_unique()
    ).select(pl.col("treatment_users").max(), pl.col("control_users").max()).row(0) == (1, 1)


def test_finished_windows_have_lifts_and_open_ones_wait(serving):
    effects = _frame(
        serving,
        "select * from marts.campaign_effects where scheme = 'all' and metric = 'converted'",
    )
    by_campaign = {row["campaign_id"]: row for row in effects.iter_rows(named=True)}
    first = by_campaign["c01_vip_care"]  # exposed on day 13 of 45: its window has ended
    assert first["treatment_users"] > 0 and first["control_users"] > 0
    assert first["absolute_lift_low"] <= first["absolute_lift"] <= first["absolute_lift_high"]
    assert 0 <= first["p_value"] <= 1 and first["cuped_lift"] is not None
    assert not first["has_srm"]
    running = by_campaign["c05_onboarding"]  # exposed the day before END: window still open
    assert running["treatment_users"] == running["control_users"] == 0
    assert running["absolute_lift"] is None
    revenue = _frame(
        serving,
        "select roi, treatment_cost, absolute_lift, treatment_users from marts.campaign_effects "
        "where scheme = 'all' and metric = 'revenue' and campaign_id = 'c01_vip_care'",
    ).row(0, named=True)
    cost = revenue["treatment_cost"]
    expected = (revenue["absolute_lift"] * revenue["treatment_users"] - cost) / cost
    assert revenue["roi"] == pytest.approx(expected)


def test_the_segment_at_exposure_is_the_snapshot_of_that_day(pipeline_home, serving):
    segments = _frame(
        serving,
        "select s.campaign_id, s.user_id, s.segment, e.exposure_date "
        "from marts.campaign_exposure_segments as s "
        "join marts.fct_campaign_exposures as e using (campaign_id, user_id) "
        "where s.scheme = 'rfm_segment'",
    )
    running = segments.filter(pl.col("exposure_date") == PREVIOUS)
    earlier = segments.filter(pl.col("exposure_date") < PREVIOUS)
    assert running.height > 0 and earlier.height > 0
    # no snapshot before PREVIOUS in this sample: earlier exposures have no segment
    assert set(earlier["segment"]) == {"unknown"}
    snapshot = _frame(
        serving,
        f"select user_id, rfm_segment as expected from marts.user_segments_daily "
        f"where snapshot_date = '{PREVIOUS}'",
    )
    joined = running.join(snapshot, on="user_id", how="left")
    assert (joined["segment"] == joined["expected"]).all()


def test_the_playbook_points_to_running_tests_and_measurements(serving):
    playbook = _frame(serving, "select * from marts.segment_playbook")
    at_exposure = _frame(
        serving,
        "select distinct scheme, segment from marts.campaign_exposure_segments "
        "where campaign_id = 'c05_onboarding'",
    )
    running = playbook.filter(pl.col("has_running_test"))
    assert running.height > 0
    expected = at_exposure.join(playbook.select("scheme", "segment"), on=["scheme", "segment"])
    assert set(running.select("scheme", "segment").iter_rows()) == set(expected.iter_rows())
    assert all("c05_onboarding" in tests for tests in running["running_tests"])
    measured = playbook.filter(pl.col("measured_campaigns").is_not_null())
    effects = _frame(serving, "select distinct scheme, segment from marts.campaign_effects")
    assert set(measured.select("scheme", "segment").iter_rows()) <= set(effects.iter_rows())


def test_the_holdout_is_the_salted_hash_of_every_user(serving):
    groups = _frame(serving, "select * from marts.user_holdout_groups")
    users = _frame(serving, "select user_id from marts.dim_users")
    assert sorted(groups["user_id"]) == sorted(users["user_id"])
    share = groups["holdout_share"][0]
    assert share == pytest.approx(0.10)
    assert 0.03 <= groups["is_holdout"].mean() <= 0.2
    for user_id, bucket, is_holdout in (
        groups.head(50).select("user_id", "holdout_bucket", "is_holdout").iter_rows()
    ):
        digest = hashlib.md5(f"strata-holdout-v1:{user_id}".encode()).hexdigest()
        assert bucket == int(digest[:7], 16) % 10_000
        assert is_holdout == (bucket < share * 10_000)


def test_the_readme_campaign_query_runs_on_the_published_file(serving):
    readme = (settings.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Campaigns: did the playbook work")[1].split("\n## ")[0]
    (query,) = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert serving.execute(query).fetchall()
