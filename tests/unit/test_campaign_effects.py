"""Campaign effect statistics (lib/evaluation) on hand-made frames and simulated arms: lift,
intervals, p-values, CUPED, SRM, ROI, the mart's rows and its contract, and the coverage logic
of benchmarks/campaign_effects.py."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl
import pytest

from dagster_project.lib.evaluation.campaigns import (
    CAMPAIGN_EFFECTS_SCHEMA,
    campaign_effects,
    contract_ddl,
    contract_violations,
)
from dagster_project.lib.evaluation.coverage import IntervalTally, covers
from dagster_project.lib.evaluation.effects import (
    Z_95,
    cuped_lift,
    design_share,
    difference_in_means,
    normal_two_sided_p,
    relative_lift,
    roi,
    srm_p_value,
)


def test_difference_in_means_by_hand() -> None:
    # t: mean 2, sample var 1; c: mean 1, sample var 1 -> se = sqrt(1/3 + 1/3)
    lift = difference_in_means(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0]))
    se = math.sqrt(2 / 3)
    assert lift.lift == pytest.approx(1.0)
    assert lift.std_error == pytest.approx(se)
    assert (lift.low, lift.high) == pytest.approx((1 - Z_95 * se, 1 + Z_95 * se))
    assert lift.p_value == pytest.approx(math.erfc(1 / se / math.sqrt(2)))


def test_too_few_users_or_no_variance() -> None:
    assert difference_in_means(np.array([1.0]), np.array([0.0, 1.0])).lift is None
    exact = difference_in_means(np.full(5, 2.0), np.full(4, 2.0))
    assert (exact.lift, exact.low, exact.high, exact.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert difference_in_means(np.full(5, 3.0), np.full(4, 2.0)).p_value == 0.0


def test_rates_get_agresti_caffo_intervals() -> None:
    # nobody converts in either arm: the plain lift is 0, the interval is not collapsed
    none = difference_in_means(np.zeros(50), np.zeros(50))
    assert none.lift == 0.0 and none.low < 0 < none.high and none.p_value == pytest.approx(1.0)
    # 9 of 10 vs 5 of 10: adjusted 10/12 vs 6/12
    t, c = np.array([1.0] * 9 + [0.0]), np.array([1.0] * 5 + [0.0] * 5)
    lift = difference_in_means(t, c)
    pt, pc = 10 / 12, 6 / 12
    se = math.sqrt(pt * (1 - pt) / 12 + pc * (1 - pc) / 12)
    assert lift.lift == pytest.approx(0.4)
    assert (lift.low, lift.high) == pytest.approx((pt - pc - Z_95 * se, pt - pc + Z_95 * se))


def test_relative_lift_delta_method_and_zero_control() -> None:
    t, c = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    rel = relative_lift(t, c)
    assert rel.lift == pytest.approx(1.0)  # 4 / 2 - 1
    variance = 4 / 3 / 4 + 16 * (1 / 3) / 16  # var_t/n_t/mc² + mt² var_c/n_c/mc⁴
    assert rel.std_error == pytest.approx(math.sqrt(variance))
    assert relative_lift(t, np.zeros(3)).lift is None


def test_normal_p_value_and_srm() -> None:
    assert normal_two_sided_p(Z_95) == pytest.approx(0.05)
    assert srm_p_value(500, 500, 0.5) == pytest.approx(1.0)
    # 550 / 450 against 50 %: chi2 = 2 * 50² / 500 = 10
    assert srm_p_value(550, 450, 0.5) == pytest.approx(math.erfc(math.sqrt(5.0)))
    assert srm_p_value(0, 0, 0.5) == 1.0
    assert design_share(0.487) == pytest.approx(0.5)
    assert design_share(0.11) == pytest.approx(0.1)
    assert design_share(0.0) == pytest.approx(0.05)


def test_roi() -> None:
    assert roi(2.0, 100, 50.0) == pytest.approx(3.0)  # (200 - 50) / 50
    assert roi(2.0, 100, None) is None
    assert roi(2.0, 100, 0.0) is None
    assert roi(None, 100, 5.0) is None


def test_cuped_keeps_the_lift_and_narrows_the_interval() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    x = rng.gamma(2.0, 50.0, 2 * n)  # pre-exposure spend
    y = 0.8 * x + rng.normal(0, 20, 2 * n)  # spend after: mostly explained by before
    y[:n] += 5.0  # the treatment effect
    plain = difference_in_means(y[:n], y[n:])
    adjusted = cuped_lift(y[:n], y[n:], x[:n], x[n:])
    assert adjusted.low <= 5.0 <= adjusted.high
    assert (adjusted.high - adjusted.low) < 0.5 * (plain.high - plain.low)
    # a covariate that does not vary changes nothing
    same = cuped_lift(y[:n], y[n:], np.ones(n), np.ones(n))
    assert same.lift == pytest.approx(plain.lift)
    assert same.std_error == pytest.approx(plain.std_error)


def _rows() -> pl.DataFrame:
    """Two segments of one campaign, 4 users per arm and segment, plus the pooled rows."""
    users = []
    for segment, base in (("champions", 1.0), ("at_risk", 0.0)):
        for arm, bump in (("treatment", 1.0), ("control", 0.0)):
            for i in range(4):
                users.append(
                    {
                        "user": f"{segment}-{arm}-{i}",
                        "segment": segment,
                        "arm": arm,
                        "cost": 0.5 if arm == "treatment" else 0.0,
                        "pre_exposure_revenue": float(i),
                        "converted": float(i % 2),
                        "revenue": base * 10 + bump * 2 + i,
                        "retained_30d": 1.0,
                        "retained_60d": None,
                        "retained_90d": None,
                    }
                )
    frame = pl.DataFrame(users)
    per_segment = frame.with_columns(
        pl.lit("c1").alias("campaign_id"),
        pl.lit("rfm_segment").alias("scheme"),
        pl.col("segment").alias("segment_label"),
    )
    pooled = per_segment.with_columns(
        pl.lit("all").alias("scheme"),
        pl.lit("all").alias("segment"),
        pl.lit("all exposed users").alias("segment_label"),
    )
    return pl.concat([per_segment, pooled.select(per_segment.columns)]).drop("user")


def test_mart_rows_per_campaign_scheme_segment_and_metric() -> None:
    effects = campaign_effects(_rows())
    assert effects.schema == pl.Schema(CAMPAIGN_EFFECTS_SCHEMA)
    assert effects.height == 3 * 5  # (all, champions, at_risk) x 5 metrics
    revenue = effects.filter(pl.col("metric") == "revenue").sort("segment")
    champions = revenue.filter(pl.col("segment") == "champions").row(0, named=True)
    assert (champions["treatment_users"], champions["control_users"]) == (4, 4)
    assert champions["treatment_value"] == pytest.approx(13.5)
    assert champions["control_value"] == pytest.approx(11.5)
    assert champions["absolute_lift"] == pytest.approx(2.0)
    assert champions["relative_lift"] == pytest.approx(2.0 / 11.5)
    # the covariate explains the within-arm spread exactly: CUPED's interval collapses
    assert champions["cuped_lift"] == pytest.approx(2.0)
    assert champions["cuped_interval_ratio"] < 0.01
    assert champions["treatment_cost"] == pytest.approx(2.0)
    assert champions["roi"] == pytest.approx((2.0 * 4 - 2.0) / 2.0)
    assert not champions["has_srm"]
    retained_60 = effects.filter(pl.col("metric") == "retained_60d")
    assert retained_60["treatment_users"].to_list() == [0, 0, 0]  # not observed yet
    assert retained_60["absolute_lift"].null_count() == 3
    assert effects.filter(pl.col("metric") != "revenue")["roi"].null_count() == 12
    pooled = revenue.filter(pl.col("scheme") == "all").row(0, named=True)
    assert (pooled["treatment_users"], pooled["expected_control_share"]) == (8, 0.5)


def test_srm_flags_a_segment_split_unlike_its_campaign() -> None:
    rows = _rows()
    # 40 more treated champions: the campaign splits 48 / 8, which at_risk's 4 / 4 contradicts
    extra = pl.concat(
        [rows.filter((pl.col("arm") == "treatment") & (pl.col("segment") != "at_risk"))] * 10
    )
    effects = campaign_effects(pl.concat([rows, extra]))
    flagged = effects.filter(pl.col("has_srm"))["segment"].unique().to_list()
    assert flagged == ["at_risk"]


def test_no_rows_give_an_empty_mart_with_the_contract() -> None:
    empty = campaign_effects(pl.DataFrame())
    assert empty.height == 0 and empty.schema == pl.Schema(CAMPAIGN_EFFECTS_SCHEMA)


def test_contract_ddl_and_violations() -> None:
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(contract_ddl())
    columns = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_name = 'campaign_effects' order by ordinal_position"
    ).fetchall()
    assert contract_violations(columns) == []
    broken = [*columns[:3], ("segment_label", "INTEGER"), *columns[4:-1]]
    problems = contract_violations(broken)
    assert any("segment_label varchar, got segment_label integer" in p for p in problems)
    assert any("columns" in p for p in problems)
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into marts.campaign_effects (campaign_id) values ('c1')")


def test_interval_coverage_of_simulated_arms_is_near_nominal() -> None:
    """The benchmark's coverage logic on simulated conversion arms (pure numpy, fast)."""
    rng = np.random.default_rng(3)
    tally = IntervalTally()
    for _ in range(400):
        n = 300
        control = (rng.random(n) < 0.2).astype(float)
        treated = (rng.random(n) < 0.25).astype(float)
        lift = difference_in_means(treated, control)
        tally.add(covers(lift.low, lift.high, 0.05), lift.p_value < 0.05)
    assert 0.92 <= tally.coverage <= 0.98
    null = IntervalTally()
    for _ in range(400):
        a, b = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
        lift = difference_in_means(a, b)
        null.add(covers(lift.low, lift.high, 0.0), lift.p_value < 0.05)
    assert null.significant_share <= 0.08
    assert covers(None, None, 0.0) is None
    tally.add(None, None)  # rows without an interval do not count
    assert tally.intervals == 400
