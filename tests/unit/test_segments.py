"""Rule segment schemes on hand-made user_features frames with known answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from feature_frames import rule_features

from dagster_project.lib.segmentation.maps import check_map_partition, segment_catalog
from dagster_project.lib.segmentation.rules.assign import (
    assign_rule_segments,
    explain_rule_segments,
)
from dagster_project.lib.segmentation.rules.cuts import compute_cuts
from dagster_project.lib.segmentation.rules.rfm import NO_AMOUNT
from dagster_project.lib.segmentation.spec import SEGMENT_COLUMNS, MapRule, SegmentationSpec
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "models" / "segmentation.yml"
GRID = range(1, 6)


@pytest.fixture(scope="module")
def spec() -> SegmentationSpec:
    return load_segmentation_spec(SPEC_PATH)


def make_features(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return rule_features(rows)


def random_features(n: int, seed: int) -> pl.DataFrame:
    """A tie-heavy mix of customers and non-customers, as in real data."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        customer = rng.random() < 0.6
        freq = int(rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 6, 12])) if customer else 0
        tenure = int(rng.integers(0, 900))
        recency = int(rng.integers(0, tenure + 1)) if customer else None
        rows.append(
            {
                "is_customer": customer,
                "frequency": freq,
                "tenure_days": tenure,
                "recency_days": recency,
                "monetary": float(rng.choice([9.9, 19.9, 50.0, 120.0, 999.0])) * freq,
                "customer_age_days": (
                    int(rng.integers(recency, tenure + 1)) if recency is not None else None
                ),
                "days_since_last_active": (
                    None if rng.random() < 0.2 else int(rng.integers(0, tenure + 1))
                ),
                "prev_order_gap_days": int(rng.integers(0, 300)) if freq > 1 else None,
            }
        )
    return make_features(rows)


# ------------------------------------------------------------------------------------ spec


def test_shipped_map_is_an_exact_partition(spec: SegmentationSpec) -> None:
    assert check_map_partition(spec.rules.rf_map, GRID, GRID) == []
    assert {m.key for m in spec.rules.rf_map} == {
        "champions",
        "loyal",
        "potential_loyalists",
        "new_customers",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose",
        "hibernating",
    }


def test_map_check_reports_gaps_and_overlaps(spec: SegmentationSpec) -> None:
    without_champions = [m for m in spec.rules.rf_map if m.key != "champions"]
    assert check_map_partition(without_champions, GRID, GRID) == [
        "r=5 f=4: unmatched",
        "r=5 f=5: unmatched",
    ]
    overlapping = [*spec.rules.rf_map, MapRule("vip", "贵宾", r=(4, 5), f=(5, 5))]
    assert check_map_partition(overlapping, GRID, GRID) == [
        "r=4 f=5: matched by loyal, vip",
        "r=5 f=5: matched by champions, vip",
    ]


def _write_spec(tmp_path: Path, edit: Any) -> Path:
    raw = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "segmentation.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_loader_refuses_a_map_with_a_gap(tmp_path: Path) -> None:
    def drop_hibernating(raw: dict[str, Any]) -> None:
        raw["rules"]["rf_map"] = [m for m in raw["rules"]["rf_map"] if m["key"] != "hibernating"]

    with pytest.raises(ValueError, match=r"r=1 f=1: unmatched"):
        load_segmentation_spec(_write_spec(tmp_path, drop_hibernating))


def test_loader_refuses_value_tiers_missing_a_combination(tmp_path: Path) -> None:
    def duplicate_tier(raw: dict[str, Any]) -> None:
        raw["rules"]["value_tiers"]["tiers"][-1]["m"] = "high"

    with pytest.raises(ValueError, match="8 high/low combinations"):
        load_segmentation_spec(_write_spec(tmp_path, duplicate_tier))


def test_loader_names_a_mistyped_or_wrongly_typed_section_key(tmp_path: Path) -> None:
    def typo(raw: dict[str, Any]) -> None:
        raw["clustering"]["stability"]["min_mean_arii"] = 0.9

    with pytest.raises(ValueError, match=r"^clustering\.stability\.min_mean_arii: unknown key"):
        load_segmentation_spec(_write_spec(tmp_path, typo))

    def fractional_count(raw: dict[str, Any]) -> None:
        raw["clustering"]["stability"]["bootstrap_refits"] = 2.5

    with pytest.raises(ValueError, match=r"^clustering\.stability\.bootstrap_refits: .*integer"):
        load_segmentation_spec(_write_spec(tmp_path, fractional_count))


def test_loader_refuses_an_unknown_k_rule_and_a_doubly_transformed_feature(tmp_path: Path) -> None:
    def gap_rule(raw: dict[str, Any]) -> None:
        raw["clustering"]["k_selection"]["rule"] = "gap"

    with pytest.raises(ValueError, match=r"k_selection\.rule: 'gap' is not silhouette or stab"):
        load_segmentation_spec(_write_spec(tmp_path, gap_rule))

    def logged_twice(raw: dict[str, Any]) -> None:
        raw["clustering"]["scaled_log_features"] = {"frequency": 5}

    with pytest.raises(ValueError, match="scaled_log_features must be features that are neither"):
        load_segmentation_spec(_write_spec(tmp_path, logged_twice))


def test_loader_names_bad_keys_anywhere_in_the_file(tmp_path: Path) -> None:
    def typo_in_a_map_row(raw: dict[str, Any]) -> None:
        raw["rules"]["rf_map"][2]["label"] = "x"

    with pytest.raises(ValueError, match=r"^rules\.rf_map\.2\.label: unknown key \(allowed: key,"):
        load_segmentation_spec(_write_spec(tmp_path, typo_in_a_map_row))

    def missing_threshold(raw: dict[str, Any]) -> None:
        del raw["rules"]["lifecycle"]["at_risk_days"]

    with pytest.raises(ValueError, match=r"^rules\.lifecycle\.at_risk_days: Field required"):
        load_segmentation_spec(_write_spec(tmp_path, missing_threshold))

    def not_high_or_low(raw: dict[str, Any]) -> None:
        raw["rules"]["value_tiers"]["tiers"][0]["m"] = "hi"

    with pytest.raises(ValueError, match=r"^rules\.value_tiers\.tiers\.0\.m: .*'high' or 'low'"):
        load_segmentation_spec(_write_spec(tmp_path, not_high_or_low))


def test_catalog_lists_every_key_once_with_a_chinese_label(spec: SegmentationSpec) -> None:
    catalog = segment_catalog(spec)
    assert catalog.select("scheme", "key").is_unique().all()
    assert catalog.get_column("label_zh").str.len_chars().min() > 0
    by_scheme = dict(catalog.group_by("scheme").len().iter_rows())
    assert by_scheme == {"rfm_segment": 11, "value_tier": 9, "lifecycle_stage": 7, "ops_tier": 5}


# ------------------------------------------------------------------------------ R / F / M


def test_quintile_scores_on_distinct_values(spec: SegmentationSpec) -> None:
    frame = make_features(
        [{"frequency": 1, "monetary": float(m), "recency_days": m} for m in range(1, 11)]
    )
    out = assign_rule_segments(frame, spec)
    # linear quantiles of 1..10 are 2.8, 4.6, 6.4, 8.2; bins are right-closed
    assert out.get_column("m_score").to_list() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # fewer days is better: the same cut points, reversed
    assert out.get_column("r_score").to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert out.get_column("r_score").dtype == pl.Int8


def test_equal_values_always_get_equal_scores(spec: SegmentationSpec) -> None:
    frame = random_features(600, seed=1)
    out = frame.join(assign_rule_segments(frame, spec), on="user_id")
    customers = out.filter(pl.col("is_customer"))
    for value, score in (("recency_days", "r_score"), ("frequency", "f_score")):
        per_value = customers.group_by(value).agg(pl.col(score).n_unique().alias("n"))
        assert per_value.get_column("n").max() == 1
    per_value = customers.group_by("monetary").agg(pl.col("m_score").n_unique().alias("n"))
    assert per_value.get_column("n").max() == 1
    # and scores never decrease as the value improves
    ordered = customers.sort("monetary")
    assert ordered.get_column("m_score").diff().drop_nulls().min() >= 0


def test_tie_block_at_a_cut_stays_together(spec: SegmentationSpec) -> None:
    # q20 = q40 = 5: the six customers at 5 share the lowest score; no score splits them
    values = [5.0] * 6 + [1.0, 7.0, 8.0, 9.0]
    frame = make_features([{"frequency": 1, "monetary": v} for v in values])
    out = assign_rule_segments(frame, spec)
    scores = out.get_column("m_score").to_list()
    assert len(set(scores[:6])) == 1
    assert scores[6] == scores[0]  # 1.0 is below every cut, and so is 5.0 (right-closed)
    assert scores[7:] == sorted(scores[7:])


def test_frequency_uses_fixed_business_cuts(spec: SegmentationSpec) -> None:
    freqs = [1, 2, 3, 4, 5, 6, 40]
    frame = make_features([{"frequency": f} for f in freqs])
    out = assign_rule_segments(frame, spec)
    assert out.get_column("f_score").to_list() == [1, 2, 3, 4, 4, 5, 5]


def test_non_customers_get_null_scores_and_prospect(spec: SegmentationSpec) -> None:
    frame = make_features(
        [{"frequency": 3, "monetary": 50.0}, {"frequency": 0, "tenure_days": 200}]
    )
    out = assign_rule_segments(frame, spec)
    prospect = out.row(1, named=True)
    assert prospect["r_score"] is None and prospect["m_score"] is None
    assert prospect["rfm_cell"] is None
    assert (prospect["rfm_segment"], prospect["rfm_segment_label"]) == ("prospect", "潜在客户")
    assert (prospect["value_tier"], prospect["value_tier_label"]) == ("prospect", "潜在客户")
    assert prospect["lifecycle_stage"] == "prospect"
    customer = out.row(0, named=True)
    assert (
        customer["rfm_cell"] == f"{customer['r_score']}{customer['f_score']}{customer['m_score']}"
    )


def test_rf_map_names_known_cells(spec: SegmentationSpec) -> None:
    # monetary 1..10 and recency 1..10 give R 5,5,4,4,...; frequency drives F directly
    rows = [
        {"recency_days": 1, "frequency": 6},  # R5 F5 champions
        {"recency_days": 2, "frequency": 1},  # R5 F1 new_customers
        {"recency_days": 3, "frequency": 1},  # R4 F1 promising
        {"recency_days": 5, "frequency": 3},  # R3 F3 need_attention
        {"recency_days": 9, "frequency": 6},  # R1 F5 cant_lose
        {"recency_days": 10, "frequency": 1},  # R1 F1 hibernating
    ]
    rows += [{"recency_days": d, "frequency": 1} for d in (4, 6, 7, 8)]
    out = assign_rule_segments(make_features(rows), spec)
    assert out.get_column("rfm_segment").to_list()[:6] == [
        "champions",
        "new_customers",
        "promising",
        "need_attention",
        "cant_lose",
        "hibernating",
    ]
    assert out.get_column("rfm_segment_label").to_list()[0] == "冠军客户"


# ------------------------------------------------------------------------------ value tiers


def test_known_eight_type_assignment(spec: SegmentationSpec) -> None:
    # each dimension: four high, four low; medians 55 days, 3 orders, 505.0
    rows = []
    expected = []
    for tier in spec.rules.value_tiers:
        rows.append(
            {
                "recency_days": 10 if tier.r_high else 100,
                "frequency": 5 if tier.f_high else 1,
                "monetary": 1000.0 if tier.m_high else 10.0,
            }
        )
        expected.append((tier.key, tier.label_zh))
    out = assign_rule_segments(make_features(rows), spec)
    assert list(out.select("value_tier", "value_tier_label").iter_rows()) == expected
    assert out.get_column("value_tier").to_list() == [
        "important_value",
        "important_develop",
        "important_keep",
        "important_retain",
        "general_value",
        "general_develop",
        "general_keep",
        "general_retain",
    ]
    assert out.get_column("value_tier_label").to_list()[0] == "重要价值客户"
    cuts = compute_cuts(make_features(rows), spec)
    assert (cuts.recency_threshold, cuts.frequency_threshold, cuts.monetary_threshold) == (
        55.0,
        3.0,
        505.0,
    )


def test_value_at_the_median_counts_as_low(spec: SegmentationSpec) -> None:
    rows = [
        {"recency_days": 10, "frequency": 1, "monetary": 10.0},
        {"recency_days": 20, "frequency": 1, "monetary": 20.0},  # exactly the median everywhere
        {"recency_days": 30, "frequency": 2, "monetary": 30.0},
    ]
    out = assign_rule_segments(make_features(rows), spec)
    assert out.get_column("value_tier").to_list() == [
        "general_develop",  # R high (10 < 20), F low (1 = median), M low
        "general_retain",
        "important_keep",  # F high (2 > 1), M high (30 > 20), R low
    ]


# ------------------------------------------------------------------------------ lifecycle


def test_lifecycle_boundaries(spec: SegmentationSpec) -> None:
    cases = [
        ({"frequency": 1, "recency_days": 0, "customer_age_days": 30}, "new"),
        ({"frequency": 1, "recency_days": 31, "customer_age_days": 31}, "active"),
        ({"frequency": 2, "recency_days": 90, "customer_age_days": 400}, "active"),
        ({"frequency": 2, "recency_days": 91, "customer_age_days": 400}, "at_risk"),
        ({"frequency": 2, "recency_days": 180, "customer_age_days": 400}, "at_risk"),
        ({"frequency": 2, "recency_days": 181, "customer_age_days": 400}, "dormant"),
        ({"frequency": 2, "recency_days": 365, "customer_age_days": 400}, "dormant"),
        ({"frequency": 2, "recency_days": 366, "customer_age_days": 400}, "lost"),
        ({"frequency": 0, "tenure_days": 30}, "new"),
        ({"frequency": 0, "tenure_days": 31}, "prospect"),
        ({"frequency": 0, "tenure_days": 0}, "new"),
        # a long-known user whose first order is recent is a new customer
        ({"frequency": 1, "tenure_days": 700, "recency_days": 5, "customer_age_days": 5}, "new"),
    ]
    frame = make_features([row for row, _ in cases])
    out = assign_rule_segments(frame, spec)
    assert out.get_column("lifecycle_stage").to_list() == [stage for _, stage in cases]
    assert out.get_column("lifecycle_label").to_list()[:2] == ["新用户", "活跃客户"]


def test_reactivated_uses_the_previous_gap(spec: SegmentationSpec) -> None:
    base = {"frequency": 3, "customer_age_days": 500}
    rows = [
        {**base, "recency_days": 10, "prev_order_gap_days": 91},
        {**base, "recency_days": 10, "prev_order_gap_days": 90},
        {**base, "recency_days": 90, "prev_order_gap_days": 200},
        {**base, "recency_days": 91, "prev_order_gap_days": 200},  # not recent: at risk
    ]
    out = assign_rule_segments(make_features(rows), spec)
    assert out.get_column("lifecycle_stage").to_list() == [
        "reactivated",
        "active",
        "reactivated",
        "at_risk",
    ]


def test_reactivated_fallback_without_the_gap_column(spec: SegmentationSpec) -> None:
    base = {"recency_days": 10, "customer_age_days": 300}
    rows = [
        {**base, "frequency": 2, "repeat_purchases": 1, "purchase_span_days": 120},
        {**base, "frequency": 2, "repeat_purchases": 1, "purchase_span_days": 60},
        # three order days: the gap before the last one is unknown without the column
        {**base, "frequency": 3, "repeat_purchases": 2, "purchase_span_days": 290},
    ]
    frame = make_features(rows)
    assert "prev_order_gap_days" not in frame.columns
    out = assign_rule_segments(frame, spec)
    assert out.get_column("lifecycle_stage").to_list() == ["reactivated", "active", "active"]


# ------------------------------------------------------------------------------ ops tiers


def test_ops_tiers(spec: SegmentationSpec) -> None:
    rows = [{"frequency": 1, "monetary": float(m), "recency_days": 400} for m in range(1, 6)]
    rows += [
        {"frequency": 2, "monetary": 999.0, "recency_days": 90},  # M5, bought recently
        {"frequency": 2, "monetary": 1.0, "recency_days": 90},  # M1, bought recently
        {"frequency": 1, "monetary": 1.0, "recency_days": 500, "days_since_last_active": 90},
        {"frequency": 1, "monetary": 1.0, "recency_days": 500, "days_since_last_active": 91},
        {"frequency": 0, "tenure_days": 365, "days_since_last_active": None},
        {"frequency": 0, "tenure_days": 366, "days_since_last_active": None},
    ]
    out = assign_rule_segments(make_features(rows), spec)
    assert out.get_column("ops_tier").to_list()[5:] == [
        "high_value",
        "active",
        "potential",
        "silent",
        "silent",
        "churned",
    ]
    assert out.get_column("ops_tier_label").to_list()[5] == "高价值"


# ------------------------------------------------------------------------------ partition


def test_every_scheme_is_an_exact_partition(spec: SegmentationSpec) -> None:
    frame = random_features(800, seed=7)
    out = assign_rule_segments(frame, spec)
    assert out.columns == list(SEGMENT_COLUMNS)
    assert out.get_column("user_id").to_list() == frame.get_column("user_id").to_list()
    catalog = segment_catalog(spec)
    for scheme, label in (
        ("rfm_segment", "rfm_segment_label"),
        ("value_tier", "value_tier_label"),
        ("lifecycle_stage", "lifecycle_label"),
        ("ops_tier", "ops_tier_label"),
    ):
        assert out.get_column(scheme).null_count() == 0
        assigned = out.select(pl.col(scheme).alias("key"), pl.col(label).alias("label_zh"))
        allowed = catalog.filter(pl.col("scheme") == scheme).select("key", "label_zh")
        # every (key, label) pair is one of the scheme's, and each user holds exactly one
        assert assigned.join(allowed, on=["key", "label_zh"], how="anti").height == 0
    customers = frame.get_column("is_customer")
    assert out.filter(customers).get_column("r_score").null_count() == 0
    assert out.filter(~customers).get_column("r_score").null_count() == (~customers).sum()
    # non-customers are exactly the prospects of the customer-only schemes
    assert (out.get_column("value_tier") == "prospect").to_list() == (~customers).to_list()


def test_frozen_cuts_are_reused(spec: SegmentationSpec) -> None:
    frame = random_features(300, seed=3)
    cuts = compute_cuts(frame, spec)
    head = frame.head(20)
    assert assign_rule_segments(head, spec, cuts=cuts).equals(
        assign_rule_segments(frame, spec).head(20)
    )
    assert cuts.as_dict()["frequency_edges"] == [1.0, 2.0, 3.0, 5.0]


def test_rejects_duplicate_users_and_inconsistent_customers(spec: SegmentationSpec) -> None:
    frame = make_features([{"user_id": "a", "frequency": 1}, {"user_id": "a", "frequency": 2}])
    with pytest.raises(ValueError, match="one row per user_id"):
        assign_rule_segments(frame, spec)
    frame = make_features([{"frequency": 1, "recency_days": None}])
    with pytest.raises(ValueError, match="customers have NULL"):
        assign_rule_segments(frame, spec)


def test_no_customers_at_all(spec: SegmentationSpec) -> None:
    frame = make_features([{"frequency": 0, "tenure_days": t} for t in (1, 100, 400)])
    out = assign_rule_segments(frame, spec)
    assert out.get_column("rfm_segment").to_list() == ["prospect"] * 3
    assert out.get_column("lifecycle_stage").to_list() == ["new", "prospect", "prospect"]


def test_without_money_m_is_unknown_and_the_tiers_rest_on_r_and_f(spec: SegmentationSpec) -> None:
    """A source without money (money: none): monetary is NULL for everyone. R, F, the R x F
    map, lifecycle and ops tiers work; M scores are NULL, the value tier counts M as low and
    says so, nobody is high value, and every scheme stays an exact partition."""
    frame = random_features(300, seed=11).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("monetary")
    )
    with_money = assign_rule_segments(random_features(300, seed=11), spec)
    cuts = compute_cuts(frame, spec)
    assert cuts.monetary_threshold is None
    out = assign_rule_segments(frame, spec, cuts)
    reasons = explain_rule_segments(frame, out, spec, cuts)
    customers = frame.get_column("is_customer")
    assert out.get_column("m_score").null_count() == out.height
    for column in ("r_score", "f_score", "rfm_segment", "lifecycle_stage"):
        assert out.get_column(column).equals(with_money.get_column(column))
    tiers = set(out.filter(customers).get_column("value_tier").unique())
    assert tiers <= {"general_value", "general_develop", "general_keep", "general_retain"}
    assert "high_value" not in set(out.get_column("ops_tier"))
    for column in ("rfm_segment", "value_tier", "lifecycle_stage", "ops_tier"):
        assert out.get_column(column).null_count() == 0
    assert out.filter(customers).get_column("rfm_cell").str.ends_with("-").all()
    customer_reasons = reasons.filter(customers)
    assert customer_reasons.get_column("rfm_reason").str.ends_with(NO_AMOUNT).all()
    assert (
        customer_reasons.get_column("value_tier_reason")
        .str.ends_with("M unknown (no order amounts), counted as low")
        .all()
    )
    assert reasons.get_column("ops_tier_reason").null_count() == 0
