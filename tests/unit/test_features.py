from datetime import date

import duckdb
import pytest

from dagster_project.lib.features.user_features import FEATURE_COLUMNS, compute_user_features

AS_OF = date(2024, 6, 30)


@pytest.fixture
def marts():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        """
        create table marts.dim_users as select * from (values
            ('a', timestamp '2024-01-01 08:00:00'),
            ('b', timestamp '2024-06-01 08:00:00'),
            ('c', timestamp '2024-06-30 23:59:59'),
            ('late', timestamp '2024-07-01 00:00:00')
        ) as t(user_id, first_seen_at)
        """
    )
    con.execute(
        """
        create table marts.fct_orders as select * from (values
            ('a', date '2024-01-10', 100.0, true, false, 100.0),
            ('a', date '2024-01-10', 50.0, true, false, 50.0),
            ('a', date '2024-04-01', 30.0, true, false, 30.0),
            ('a', date '2024-06-20', 20.0, true, false, 20.0),
            ('a', date '2024-06-22', 15.0, false, true, -15.0),
            ('a', date '2024-06-25', 999.0, false, false, 0.0),
            ('a', date '2024-07-02', 500.0, true, false, 500.0),
            ('b', date '2024-06-02', 10.0, false, false, 0.0)
        ) as t(user_id, order_date, amount, is_completed, is_return, net_amount)
        """
    )
    con.execute(
        """
        create table marts.fct_user_activity_daily as select * from (values
            ('a', date '2024-06-20', 2, 5, 1, 1, 0, 0, 9),
            ('a', date '2024-05-15', 1, 2, 0, 0, 0, 1, 4),
            ('b', date '2024-06-02', 1, 3, 2, 1, 0, 0, 7),
            ('b', date '2024-07-01', 9, 9, 9, 9, 9, 9, 54)
        ) as t(user_id, activity_date, sessions, page_views, searches, add_to_carts, reviews,
               support_contacts, events_total)
        """
    )
    yield con
    con.close()


def test_features_use_only_data_up_to_the_as_of_date(marts):
    features = compute_user_features(marts, AS_OF)

    assert features.columns == list(FEATURE_COLUMNS)
    assert features["user_id"].to_list() == ["a", "b", "c"]  # 'late' is not known yet
    a, b, c = features.to_dicts()

    # a: completed orders on 01-10 (two), 04-01, 06-20; the 07-02 order is in the future;
    # the return on 06-22 takes 15 back (net revenue) and is not an order of its own.
    assert a["frequency"] == 4
    assert a["monetary"] == pytest.approx(185.0)
    assert a["avg_order_value"] == pytest.approx(185.0 / 4)
    assert a["recency_days"] == 10
    assert a["repeat_purchases"] == 2  # three distinct order days
    assert a["purchase_span_days"] == (date(2024, 6, 20) - date(2024, 1, 10)).days
    assert a["customer_age_days"] == (AS_OF - date(2024, 1, 10)).days
    assert a["prev_order_gap_days"] == (date(2024, 6, 20) - date(2024, 4, 1)).days
    # Windows are (D - n, D]: 04-01 is exactly 90 days back, so it is in the previous window.
    assert a["orders_30d"] == 1 and a["orders_90d"] == 1
    assert a["revenue_90d"] == pytest.approx(20.0 - 15.0)
    assert a["revenue_trend_90d"] == pytest.approx(5.0 - (150.0 + 30.0))
    assert a["cancel_refund_rate"] == pytest.approx(1 / 5)
    assert a["sessions_90d"] == 3 and a["events_30d"] == 9 and a["events_90d"] == 13
    assert a["events_trend_30d"] == 9 - 4
    assert a["last_active_date"] == date(2024, 6, 20)
    assert a["tenure_days"] == (AS_OF - date(2024, 1, 1)).days

    # b: only a cancelled order: not a customer; its future activity is ignored.
    assert b["is_customer"] is False
    assert b["frequency"] == 0 and b["recency_days"] is None and b["avg_order_value"] is None
    assert b["repeat_purchases"] == 0 and b["purchase_span_days"] == 0
    assert b["cancel_refund_rate"] == pytest.approx(1.0)
    assert b["searches_90d"] == 2 and b["events_90d"] == 7
    assert b["days_since_last_active"] == 28

    # c: signed up on the as-of date, nothing else.
    assert c["tenure_days"] == 0 and c["events_90d"] == 0 and c["last_active_date"] is None


def test_order_gap_is_between_the_last_two_distinct_order_days(marts):
    """A second completed order on the last order day is not a gap of 0 days; a user with one
    order day (or none) has no gap, and purchase days count days, not orders."""
    marts.execute(
        "insert into marts.fct_orders values ('a', date '2024-06-20', 5.0, true, false, 5.0), "
        "('c', date '2024-06-30', 5.0, true, false, 5.0), "
        "('c', date '2024-06-30', 6.0, true, false, 6.0)"
    )
    a, b, c = compute_user_features(marts, AS_OF).to_dicts()
    assert a["prev_order_gap_days"] == (date(2024, 6, 20) - date(2024, 4, 1)).days
    assert a["repeat_purchases"] == 2 and a["frequency"] == 5
    assert b["prev_order_gap_days"] is None and c["prev_order_gap_days"] is None
    assert c["repeat_purchases"] == 0 and c["frequency"] == 2


def test_money_features_are_null_not_zero_when_no_amount_is_known(marts):
    """An events-only source (money: none): orders without amounts, so every money feature is
    NULL, while recency, frequency and activity work as usual."""
    marts.execute("update marts.fct_orders set amount = null")
    marts.execute("update marts.fct_orders set net_amount = null where is_completed or is_return")
    a, b, c = compute_user_features(marts, AS_OF).to_dicts()
    money = ("monetary", "avg_order_value", "revenue_30d", "revenue_90d", "revenue_trend_90d")
    for user in (a, b, c):  # c has no order at all: its spend is not known either
        assert {name: user[name] for name in money} == dict.fromkeys(money)
    assert a["frequency"] == 4 and a["recency_days"] == 10 and a["repeat_purchases"] == 2
    assert a["cancel_refund_rate"] == pytest.approx(1 / 5) and b["is_customer"] is False


def test_a_user_with_an_order_without_amount_has_no_money_sum(marts):
    """In a priced source, one order without its amount makes that user's sums unknown (the
    windows it falls in), not smaller; users without orders still spent 0."""
    marts.execute(
        "update marts.fct_orders set amount = null, net_amount = null "
        "where user_id = 'a' and order_date = date '2024-04-01'"
    )
    a, b, c = compute_user_features(marts, AS_OF).to_dicts()
    assert a["monetary"] is None and a["revenue_trend_90d"] is None
    assert a["revenue_30d"] == pytest.approx(5.0) and a["revenue_90d"] == pytest.approx(5.0)
    assert b["monetary"] == 0.0 and c["monetary"] == 0.0 and c["revenue_90d"] == 0.0
