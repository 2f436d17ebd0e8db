"""Every map of the spec is an exact partition (user-added maps too); reasons; carried changes."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from feature_frames import rule_features

from dagster_project.lib.segmentation.maps import (
    assign_custom_maps,
    check_spec_maps,
    map_partition_problems,
    segment_catalog,
    spec_maps,
)
from dagster_project.lib.segmentation.rules.assign import (
    assign_rule_segments,
    explain_rule_segments,
)
from dagster_project.lib.segmentation.rules.cuts import compute_cuts
from dagster_project.lib.segmentation.rules.ordered import OTHERWISE, Rule, first_match
from dagster_project.lib.segmentation.schemes import scheme_names
from dagster_project.lib.segmentation.spec import SegmentationSpec
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "models" / "segmentation.yml"
PLAYBOOK = ROOT / "dbt" / "seeds" / "staging" / "seed_segment_playbook.csv"

RM_MAP = {
    "axes": ["r", "m"],
    "cells": [
        {"key": "big_active", "label_zh": "高消费活跃", "r": [4, 5], "m": [4, 5]},
        {"key": "big_lapsing", "label_zh": "高消费流失", "r": [1, 3], "m": [4, 5]},
        {"key": "small_active", "label_zh": "普通活跃", "r": [4, 5], "m": [1, 3]},
        {"key": "small_lapsing", "label_zh": "普通流失", "r": [1, 3], "m": [1, 3]},
    ],
}


@pytest.fixture(scope="module")
def spec() -> SegmentationSpec:
    return load_segmentation_spec(SPEC_PATH)


def write_spec(tmp_path: Path, maps: dict[str, Any]) -> Path:
    raw = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    raw["rules"]["maps"] = maps
    path = tmp_path / "segmentation.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def features(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Customers unless frequency is 0, with no recorded activity beyond their orders."""
    return rule_features(
        rows,
        frequency=1,
        tenure_days=400,
        monetary=50.0,
        customer_age_days=300,
        active_when_last_ordered=False,
    )


# ---------------------------------------------------------------------------------- maps


def test_every_shipped_map_is_an_exact_partition(spec: SegmentationSpec) -> None:
    problems = check_spec_maps(spec)
    assert set(problems) == {m.name for m in spec_maps(spec)} >= {"rfm_segment", "value_tier"}
    assert all(map_partition_problems(m) == [] for m in spec_maps(spec))
    assert all(cells == [] for cells in problems.values())
    value_tiers = next(m for m in spec_maps(spec) if m.name == "value_tier")
    assert value_tiers.domains == (("high", "low"),) * 3  # the 8-type grid is checked too


def test_a_user_added_map_is_checked_and_assigned(tmp_path: Path) -> None:
    spec = load_segmentation_spec(write_spec(tmp_path, {"rm_segment": RM_MAP}))
    assert check_spec_maps(spec)["rm_segment"] == []
    frame = features(
        [
            {"recency_days": d, "monetary": m}
            for d, m in [(1, 900), (2, 10), (50, 900), (60, 10), (3, 500), (70, 20)]
        ]
        + [{"frequency": 0}]
    )
    segments = assign_rule_segments(frame, spec)
    custom = assign_custom_maps(segments, spec)
    assert custom.columns == ["user_id", "scheme", "segment", "segment_label"]
    assert custom.get_column("scheme").unique().to_list() == ["rm_segment"]
    joined = segments.join(custom, on="user_id")
    for row in joined.iter_rows(named=True):
        if row["r_score"] is None:
            assert row["segment"] == "prospect"
            continue
        high_m, high_r = row["m_score"] >= 4, row["r_score"] >= 4
        expected = ("big_" if high_m else "small_") + ("active" if high_r else "lapsing")
        assert row["segment"] == expected
    catalog = segment_catalog(spec).filter(pl.col("scheme") == "rm_segment")
    assert set(catalog.get_column("key")) == {c["key"] for c in RM_MAP["cells"]} | {"prospect"}


def test_a_user_added_map_with_a_gap_or_overlap_names_the_cells(tmp_path: Path) -> None:
    broken = {
        "axes": ["r", "m"],
        "cells": [
            {"key": "top", "label_zh": "顶", "r": [4, 5], "m": [4, 5]},
            {"key": "rest", "label_zh": "余", "r": [1, 4], "m": [1, 4]},
        ],
    }
    path = write_spec(tmp_path, {"rm_segment": broken})
    with pytest.raises(ValueError, match=r"map rm_segment is not an exact partition"):
        load_segmentation_spec(path)
    # the Dagster check parses without validating and reports every bad cell
    problems = check_spec_maps(load_segmentation_spec(path, validate=False))["rm_segment"]
    assert problems == [
        "r=1 m=5: unmatched",
        "r=2 m=5: unmatched",
        "r=3 m=5: unmatched",
        "r=4 m=4: matched by top, rest",
        "r=5 m=1: unmatched",
        "r=5 m=2: unmatched",
        "r=5 m=3: unmatched",
    ]


@pytest.mark.parametrize("name", scheme_names())
def test_a_user_map_cannot_take_a_builtin_scheme_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="scheme name"):
        load_segmentation_spec(write_spec(tmp_path, {name: RM_MAP}))


def test_no_user_maps_gives_an_empty_long_table(spec: SegmentationSpec) -> None:
    out = assign_custom_maps(assign_rule_segments(features([{}]), spec), spec)
    assert out.is_empty() and out.columns == ["user_id", "scheme", "segment", "segment_label"]


def test_playbook_covers_every_rule_segment_of_the_catalog(spec: SegmentationSpec) -> None:
    with PLAYBOOK.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    playbook = {(r["scheme"], r["segment"]) for r in rows}
    catalog = set(segment_catalog(spec).select("scheme", "key").iter_rows())
    assert playbook == catalog  # every segment has exactly one play, and no play is orphaned
    assert len(playbook) == len(rows)
    assert {int(r["priority"]) for r in rows} <= {1, 2, 3, 4, 5}
    assert all(r["goal"] and r["recommended_actions"] and r["channel"] for r in rows)


# ------------------------------------------------------------------------------- reasons


def test_rule_reasons_quote_the_users_values_and_the_cuts(spec: SegmentationSpec) -> None:
    frame = features(
        [
            {"recency_days": 12, "frequency": 5, "monetary": 230.5, "customer_age_days": 200},
            {"recency_days": 120, "frequency": 1, "monetary": 10.0, "days_since_last_active": 100},
            {"recency_days": 20, "frequency": 2, "monetary": 80.0, "prev_order_gap_days": 150},
            {"frequency": 0, "tenure_days": 200, "days_since_last_active": 20},
        ]
    )
    cuts = compute_cuts(frame, spec)
    segments = assign_rule_segments(frame, spec, cuts)
    reasons = explain_rule_segments(frame, segments, spec, cuts)
    first, second, third, prospect = reasons.to_dicts()
    scores = segments.row(0, named=True)
    assert first["rfm_reason"] == (
        f"R={scores['r_score']} (12 days), F=4 (5 orders), M={scores['m_score']} (230.5)"
    )
    median_r = cuts.recency_threshold
    assert first["value_tier_reason"].startswith(f"R high (12 < {median_r:g} days)")
    assert first["lifecycle_reason"] == "last order 12 days ago (active: <= 90 days)"
    assert second["lifecycle_reason"] == "last order 120 days ago (at risk: 91-180 days)"
    assert second["ops_tier_reason"] == "inactive for 100 days (silent: 91-365)"
    assert third["lifecycle_reason"] == "ordered 20 days ago after a 150-day gap (> 90 days)"
    assert prospect["rfm_reason"] == prospect["value_tier_reason"] == "no completed order"
    assert prospect["lifecycle_reason"] == "no completed order in the 200 days since first seen"
    assert prospect["ops_tier_reason"].startswith("no order in 90 days, last active 20 days ago")
    assert reasons.select(pl.all().null_count()).sum_horizontal().item() == 0


def test_a_changed_threshold_moves_the_segment_and_its_reason_together(
    spec: SegmentationSpec,
) -> None:
    lifecycle = dataclasses.replace(spec.rules.lifecycle, active_days=45, at_risk_days=100)
    ops = dataclasses.replace(spec.rules.ops_tiers, silent_days=40)
    tuned = dataclasses.replace(
        spec, rules=dataclasses.replace(spec.rules, lifecycle=lifecycle, ops_tiers=ops)
    )
    frame = features([{"recency_days": 60, "frequency": 2, "days_since_last_active": 60}])
    segments = assign_rule_segments(frame, tuned)
    reasons = explain_rule_segments(frame, segments, tuned).row(0, named=True)
    assert segments.row(0, named=True)["lifecycle_stage"] == "at_risk"
    assert reasons["lifecycle_reason"] == "last order 60 days ago (at risk: 46-100 days)"
    assert segments.row(0, named=True)["ops_tier"] == "silent"
    assert reasons["ops_tier_reason"] == "inactive for 60 days (silent: 41-365)"


def test_first_match_takes_the_earliest_rule_that_holds() -> None:
    rules = (
        Rule("small", pl.col("x") < 2, pl.lit("x < 2")),
        Rule("medium", pl.col("x") < 5, pl.lit("x < 5")),
        Rule("large", OTHERWISE, pl.lit("x >= 5")),
    )
    frame = pl.DataFrame({"x": [1, 3, 9, None]})
    out = frame.select(
        first_match(rules, "key").alias("k"), first_match(rules, "reason").alias("r")
    )
    assert out.get_column("k").to_list() == ["small", "medium", "large", "large"]
    assert out.get_column("r").to_list() == ["x < 2", "x < 5", "x >= 5", "x >= 5"]


def test_reasons_need_the_same_users_in_the_same_order(spec: SegmentationSpec) -> None:
    frame = features([{}, {"recency_days": 40}])
    segments = assign_rule_segments(frame, spec)
    with pytest.raises(ValueError, match="same order"):
        explain_rule_segments(frame, segments.reverse(), spec)


# ------------------------------------------------------------- previous segment and since
