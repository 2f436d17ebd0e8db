"""Segment KPIs, cohorts and category offers (issue 12) on the session's pipeline run.

Everything here reads `pipeline_home` (tests/integration/conftest.py: 300 generated users,
snapshots PREVIOUS and END): the tables are in the serving file with their contract columns,
and their figures reconcile with segment_summary_daily, fct_orders and user_value_daily.
"""

from datetime import timedelta

import duckdb
import pytest
import yaml
from pipeline_sample import END, PREVIOUS

from dagster_project.lib.core import settings

NEW_TABLES = (
    "segment_kpis_daily",
    "cohort_retention_monthly",
    "segment_category_affinity",
    "user_next_best_categories",
)

FIRST_PURCHASES = """
    select orders.user_id, items.category, min(orders.order_date) as first_bought_date
    from staging.stg_raw__order_items as items
    join marts.fct_orders as orders on items.order_id = orders.order_id
    where orders.is_completed
    group by 1, 2
"""


@pytest.fixture(scope="module")
def serving(pipeline_home):
    con = duckdb.connect(str(pipeline_home.serving_db), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def warehouse(pipeline_home):
    con = duckdb.connect(str(pipeline_home.warehouse), read_only=True)
    yield con
    con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0]


def contract_columns(model: str) -> list[str]:
    marts = yaml.safe_load((settings.DBT_PROJECT_DIR / "models/marts/_marts.yml").read_text())
    entry = next(m for m in marts["models"] if m["name"] == model)
    return [c["name"] for c in entry["columns"]]


@pytest.mark.parametrize("table", NEW_TABLES)
def test_the_new_tables_are_published_with_their_contract_columns(serving, table):
    columns = [
        r[0]
        for r in serving.execute(
            "select column_name from information_schema.columns where table_schema = 'marts' "
            "and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
    ]
    assert columns == contract_columns(table)
    assert one(serving, f"select count(*) from marts.{table}")[0] > 0


def test_kpis_have_the_summarys_users_and_customers_for_every_segment(serving):
    kpis, unmatched = one(
        serving,
        "select count(*), count(*) filter (where s.users is distinct from k.users "
        "or s.customers is distinct from k.customers) "
        "from marts.segment_kpis_daily as k full join marts.segment_summary_daily as s "
        "using (snapshot_date, scheme, segment)",
    )
    assert kpis > 20
    assert unmatched == 0


@pytest.mark.parametrize("day", [PREVIOUS, END])
def test_kpis_reconcile_with_the_orders_and_the_value_tables_simple_ltv(serving, day):
    """Summed over a scheme that covers everyone, the 30-day revenue is fct_orders' and the
    simple LTV is user_value_daily's (one formula: per segment here, for all users there)."""
    revenue, active, active_revenue, base, churned = one(
        serving,
        "select sum(revenue_30d), sum(active_customers_30d), sum(arpu_30d * active_customers_30d),"
        " sum(churn_base_customers), sum(churned_customers) from marts.segment_kpis_daily "
        "where snapshot_date = ? and scheme = 'lifecycle_stage'",
        [day],
    )
    orders_revenue = one(
        serving,
        "select sum(net_amount) from marts.fct_orders where order_date > ? and order_date <= ?",
        [day - timedelta(days=30), day],
    )[0]
    assert revenue == orders_revenue
    # churn by hand from the orders: bought in (D-60, D-30] and not in (D-30, D]
    hand_base, hand_churned = one(
        serving,
        """
        select count(*), count(*) filter (where not recent) from (
            select user_id, bool_or(order_date > $d - 30) as recent
            from marts.fct_orders
            where is_completed and order_date > $d - 60 and order_date <= $d
            group by user_id
            having bool_or(order_date <= $d - 30)
        )
        """.replace("$d", f"date '{day}'"),
    )
    assert (base, churned) == (hand_base, hand_churned)
    ltv = one(
        serving,
        "select max(simple_ltv) from marts.user_value_daily where snapshot_date = ?",
        [day],
    )[0]
    assert active_revenue / active / max(churned / base, 0.01) == pytest.approx(ltv)


def test_segment_kpi_rates_follow_their_counts(serving):
    bad = one(
        serving,
        """
        select count(*) from marts.segment_kpis_daily
        where abs(conversion_rate - customers / users) > 1e-12
           or abs(repeat_rate - repeat_customers / nullif(customers, 0)) > 1e-12
           or abs(churn_rate_30d - churned_customers / nullif(churn_base_customers, 0)) > 1e-12
           or abs(simple_ltv - arpu_30d / greatest(churn_rate_30d, 0.01)) > 1e-9
           or repeat_customers > customers or customers > users
        """,
    )[0]
    assert bad == 0


def test_cohorts_cover_every_user_and_count_month_zero_buyers(serving, warehouse):
    latest = one(serving, "select max(snapshot_date) from marts.user_segments_daily")[0]
    users = one(
        serving, "select count(*) from marts.user_segments_daily where snapshot_date = ?", [latest]
    )[0]
    everyone = one(
        serving,
        "select sum(cohort_users), max(latest_snapshot_date) from marts.cohort_retention_monthly "
        "where scheme = 'all' and month_number = 0",
    )
    assert everyone == (users, latest)
    # a covering scheme splits every cohort: its segments add up to the 'all' row
    split = one(
        serving,
        "select count(*) from (select cohort_month, month_number, sum(cohort_users) as n, "
        "sum(active_users) as a from marts.cohort_retention_monthly "
        "where scheme = 'lifecycle_stage' group by 1, 2) as s "
        "join marts.cohort_retention_monthly as t using (cohort_month, month_number) "
        "where t.scheme = 'all' and (s.n <> t.cohort_users or s.a <> t.active_users)",
    )[0]
    assert split == 0
    # month 0 of the newest complete cohort, by hand from the users and orders
    cohort = one(
        serving,
        "select max(cohort_month) from marts.cohort_retention_monthly where is_complete_month",
    )[0]
    by_hand = one(
        warehouse,
        """
        select count(distinct o.user_id) from marts.fct_orders as o
        join marts.dim_users as u on o.user_id = u.user_id
        where o.is_completed and date_trunc('month', u.first_seen_at) = ?
          and date_trunc('month', o.order_date) = ?
        """,
        [cohort, cohort],
    )[0]
    active, rate = one(
        serving,
        "select active_users, retention_rate from marts.cohort_retention_monthly "
        "where scheme = 'all' and cohort_month = ? and month_number = 0",
        [cohort],
    )
    assert active == by_hand > 0
    assert 0 < rate <= 1


def test_category_affinity_adds_up_over_a_covering_scheme(serving, warehouse):
    buyers = dict(
        warehouse.execute(
            f"select category, count(*) from ({FIRST_PURCHASES}) where first_bought_date <= ? "
            "group by 1",
            [END],
        ).fetchall()
    )
    summed = dict(
        serving.execute(
            "select category, sum(category_buyers) from marts.segment_category_affinity "
            "where snapshot_date = ? and scheme = 'lifecycle_stage' group by 1",
            [END],
        ).fetchall()
    )
    assert summed == buyers
    assert len(buyers) >= 8
    bad = one(
        serving,
        "select count(*) from marts.segment_category_affinity where share not between 0 and 1 "
        "or abs(lift - share / overall_share) > 1e-9 or category_buyers > segment_buyers",
    )[0]
    assert bad == 0


def test_every_recommended_category_was_not_bought_before(serving, warehouse):
    latest = one(serving, "select max(snapshot_date) from marts.user_segments_daily")[0]
    recommended = serving.execute(
        "select user_id, category from marts.user_next_best_categories"
    ).fetchall()
    bought = {
        (user, category)
        for user, category, first in warehouse.execute(FIRST_PURCHASES).fetchall()
        if first <= latest
    }
    assert recommended
    assert not set(recommended) & bought
    per_user = one(
        serving,
        "select count(distinct user_id), max(n), min(n), max(latest_snapshot_date) from "
        "(select user_id, latest_snapshot_date, count(*) as n "
        "from marts.user_next_best_categories group by 1, 2)",
    )
    users = one(
        serving, "select count(*) from marts.user_segments_daily where snapshot_date = ?", [latest]
    )[0]
    assert per_user == (users, 3, per_user[2], latest)
    assert per_user[2] >= 1


def test_playbook_rows_point_to_their_segments_top_categories(serving):
    rows = serving.execute(
        "select scheme, segment, offer_categories, offers_per_user from marts.segment_playbook "
        "where offer_categories is not null"
    ).fetchall()
    assert rows
    for scheme, segment, offers, table in rows:
        assert table == "marts.user_next_best_categories"
        top = [
            r[0]
            for r in serving.execute(
                "select category from marts.segment_category_affinity where snapshot_date = ? "
                "and scheme = ? and segment = ? and category_buyers >= 5 "
                "order by lift desc, category_buyers desc, category limit 3",
                [END, scheme, segment],
            ).fetchall()
        ]
        assert offers.split(", ") == top, (scheme, segment)
