"""Every user's key, Chinese label and reason in each rule scheme.

Every scheme is an exact partition of the input users: each user gets exactly one key and one
Chinese label per scheme (tested, and asserted at run time). Pure polars; no Dagster imports.
"""

from __future__ import annotations

import polars as pl

from dagster_project.lib.segmentation.rules.cuts import RuleCuts, compute_cuts
from dagster_project.lib.segmentation.rules.inputs import rule_inputs, validate_input
from dagster_project.lib.segmentation.rules.lifecycle import lifecycle_rules
from dagster_project.lib.segmentation.rules.ops_tier import ops_tier_rules
from dagster_project.lib.segmentation.rules.ordered import first_match
from dagster_project.lib.segmentation.rules.rfm import (
    rf_map_table,
    rfm_cell,
    rfm_reason,
    score_columns,
)
from dagster_project.lib.segmentation.rules.value_tier import (
    value_flags,
    value_tier_reason,
    value_tier_table,
)
from dagster_project.lib.segmentation.spec import SEGMENT_COLUMNS, SegmentationSpec

RULE_REASON_COLUMNS: tuple[str, ...] = (
    "rfm_reason",
    "value_tier_reason",
    "lifecycle_reason",
    "ops_tier_reason",
)


def assign_rule_segments(
    features: pl.DataFrame, spec: SegmentationSpec, cuts: RuleCuts | None = None
) -> pl.DataFrame:
    """Assign every user one key and one Chinese label per rule scheme.

    ``features`` is user_features for one as-of date (one row per user). Returns one row per user
    with :data:`SEGMENT_COLUMNS`. Non-customers (no completed order) get NULL R/F/M scores and
    rfm_cell (a score of 1 would claim they bought long ago, rarely, cheaply) and the ``prospect``
    key in rfm_segment and value_tier. ``cuts`` defaults to cut points computed on this frame.
    """
    validate_input(features, spec)
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    scored = (
        features.select("user_id", *rule_inputs(features, spec))
        .with_columns(score_columns(rules, cuts))
        .with_columns(
            rfm_cell(),
            *value_flags(rules, cuts),
            first_match(lifecycle_rules(rules.lifecycle), "key").alias("lifecycle_stage"),
            first_match(ops_tier_rules(rules.ops_tiers, rules.lifecycle), "key").alias("ops_tier"),
        )
    )
    lifecycle_zh = {lab.key: lab.label_zh for lab in rules.lifecycle.labels}
    ops_zh = {lab.key: lab.label_zh for lab in rules.ops_tiers.labels}
    prospect = rules.prospect

    def for_customers(column: str, non_customer: str, name: str) -> pl.Expr:
        customer = pl.col("_is_customer")
        return pl.when(customer).then(pl.col(column)).otherwise(pl.lit(non_customer)).alias(name)

    out = (
        scored.join(
            rf_map_table(rules), on=["r_score", "f_score"], how="left", maintain_order="left"
        )
        .join(
            value_tier_table(rules),
            on=["_r_high", "_f_high", "_m_high"],
            how="left",
            maintain_order="left",
        )
        .select(
            "user_id",
            "r_score",
            "f_score",
            "m_score",
            "rfm_cell",
            for_customers("_rf_key", prospect.key, "rfm_segment"),
            for_customers("_rf_zh", prospect.label_zh, "rfm_segment_label"),
            for_customers("_vt_key", prospect.key, "value_tier"),
            for_customers("_vt_zh", prospect.label_zh, "value_tier_label"),
            "lifecycle_stage",
            pl.col("lifecycle_stage").replace_strict(lifecycle_zh).alias("lifecycle_label"),
            "ops_tier",
            pl.col("ops_tier").replace_strict(ops_zh).alias("ops_tier_label"),
        )
    )
    _assert_partition(out, features.height)
    return out


def explain_rule_segments(
    features: pl.DataFrame,
    segments: pl.DataFrame,
    spec: SegmentationSpec,
    cuts: RuleCuts | None = None,
) -> pl.DataFrame:
    """One short reason per rule scheme and user, with the user's own values and the cut points.

    For example ``rfm_reason`` "R=5 (12 days), F=4 (5 orders), M=3 (230.5)" and
    ``lifecycle_reason`` "last order 120 days ago (91-180 days: at risk)". ``segments`` is the
    output of :func:`assign_rule_segments` for the same ``features`` (same row order) and
    ``cuts`` the cut points it used (default: recomputed from ``features``). Each reason comes
    from the same rule, and so the same thresholds, that assigned the segment. Returns
    ``user_id`` and :data:`RULE_REASON_COLUMNS`.
    """
    if features.get_column("user_id").to_list() != segments.get_column("user_id").to_list():
        raise ValueError("features and segments must list the same users in the same order")
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    frame = pl.concat(
        [
            features.select(rule_inputs(features, spec)),
            segments.select("user_id", "r_score", "f_score", "m_score"),
        ],
        how="horizontal",
    )
    no_order = pl.lit("no completed order")
    customer = pl.col("_is_customer")
    return frame.select(
        "user_id",
        pl.when(customer).then(rfm_reason()).otherwise(no_order).alias("rfm_reason"),
        pl.when(customer)
        .then(value_tier_reason(rules, cuts))
        .otherwise(no_order)
        .alias("value_tier_reason"),
        first_match(lifecycle_rules(rules.lifecycle), "reason").alias("lifecycle_reason"),
        first_match(ops_tier_rules(rules.ops_tiers, rules.lifecycle), "reason").alias(
            "ops_tier_reason"
        ),
    )


def _assert_partition(out: pl.DataFrame, n_users: int) -> None:
    """Every user exactly once, with exactly one non-NULL key and label per scheme."""
    keys = SEGMENT_COLUMNS[SEGMENT_COLUMNS.index("rfm_segment") :]  # every scheme's key and label
    nulls = {c: n for c in keys if (n := out.get_column(c).null_count())}
    if out.height != n_users or nulls:
        raise RuntimeError(f"rule segments are not a partition: rows={out.height}, nulls={nulls}")
