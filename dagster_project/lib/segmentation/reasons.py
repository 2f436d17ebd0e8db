"""Reasons: why a user holds a segment, in one short line per scheme."""

from __future__ import annotations

import polars as pl

from dagster_project.lib.segmentation.rules import RuleCuts, compute_cuts, customer_mask, gap_expr
from dagster_project.lib.segmentation.spec import SegmentationSpec

RULE_REASON_COLUMNS: tuple[str, ...] = (
    "rfm_reason",
    "value_tier_reason",
    "lifecycle_reason",
    "ops_tier_reason",
)


def _num(expr: pl.Expr) -> pl.Expr:
    """A number as short text: integers without decimals, others rounded to 2 decimals."""
    value = expr.cast(pl.Float64)
    return (
        pl.when(value == value.round(0))
        .then(value.round(0).cast(pl.Int64).cast(pl.Utf8))
        .otherwise(value.round(2).cast(pl.Utf8))
    )


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
    ``cuts`` the cut points it used (default: recomputed from ``features``). Returns ``user_id``
    and :data:`RULE_REASON_COLUMNS`. Vectorised polars, no Python loop over users.
    """
    if features.get_column("user_id").to_list() != segments.get_column("user_id").to_list():
        raise ValueError("features and segments must list the same users in the same order")
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    lc = rules.lifecycle
    ops = rules.ops_tiers
    frame = pl.concat(
        [
            features.select(
                pl.col(rules.recency.column).cast(pl.Float64).alias("_rec"),
                pl.col(rules.frequency.column).cast(pl.Float64).alias("_freq"),
                pl.col(rules.monetary.column).cast(pl.Float64).alias("_mon"),
                pl.col("tenure_days").cast(pl.Int64).alias("_tenure"),
                pl.col("customer_age_days").cast(pl.Int64).alias("_age"),
                gap_expr(features, lc.reactivation_gap_column).alias("_gap"),
                pl.col("days_since_last_active")
                .cast(pl.Int64)
                .fill_null(pl.col("tenure_days").cast(pl.Int64))
                .alias("_inactive"),
                customer_mask().alias("_cust"),
            ),
            segments,
        ],
        how="horizontal",
    )
    no_order = pl.lit("no completed order")
    rfm = pl.format(
        "R={} ({} days), F={} ({} orders), M={} ({})",
        "r_score",
        _num(pl.col("_rec")),
        "f_score",
        _num(pl.col("_freq")),
        "m_score",
        _num(pl.col("_mon")),
    )

    def versus(value: str, threshold: float | None, higher_is_better: bool, unit: str) -> pl.Expr:
        if threshold is None:
            return pl.lit("")
        t = _num(pl.lit(threshold))
        v = _num(pl.col(value))
        better = (pl.col(value) > threshold) if higher_is_better else (pl.col(value) < threshold)
        op_high, op_low = (">", "<=") if higher_is_better else ("<", ">=")
        return (
            pl.when(better)
            .then(pl.format("high ({} {} {}{})", v, pl.lit(op_high), t, pl.lit(unit)))
            .otherwise(pl.format("low ({} {} {}{})", v, pl.lit(op_low), t, pl.lit(unit)))
        )

    tier = pl.format(
        "R {}, F {}, M {}",
        versus("_rec", cuts.recency_threshold, rules.recency.higher_is_better, " days"),
        versus("_freq", cuts.frequency_threshold, rules.frequency.higher_is_better, " orders"),
        versus("_mon", cuts.monetary_threshold, rules.monetary.higher_is_better, ""),
    )
    rec = _num(pl.col("_rec"))
    stage = pl.col("lifecycle_stage")
    lifecycle = (
        pl.when((stage == "new") & pl.col("_cust"))
        .then(pl.format("first order {} days ago (new: <= {} days)", "_age", pl.lit(lc.new_days)))
        .when(stage == "new")
        .then(
            pl.format(
                "first seen {} days ago, no order yet (new: <= {} days)",
                "_tenure",
                pl.lit(lc.new_days),
            )
        )
        .when(stage == "prospect")
        .then(pl.format("no completed order in the {} days since first seen", "_tenure"))
        .when(stage == "reactivated")
        .then(
            pl.format(
                "ordered {} days ago after a {}-day gap (> {} days)",
                rec,
                "_gap",
                pl.lit(lc.active_days),
            )
        )
        .when(stage == "active")
        .then(pl.format("last order {} days ago (active: <= {} days)", rec, pl.lit(lc.active_days)))
        .when(stage == "at_risk")
        .then(
            pl.format(
                "last order {} days ago (at risk: {}-{} days)",
                rec,
                pl.lit(lc.active_days + 1),
                pl.lit(lc.at_risk_days),
            )
        )
        .when(stage == "dormant")
        .then(
            pl.format(
                "last order {} days ago (dormant: {}-{} days)",
                rec,
                pl.lit(lc.at_risk_days + 1),
                pl.lit(lc.dormant_days),
            )
        )
        .otherwise(
            pl.format("last order {} days ago (lost: > {} days)", rec, pl.lit(lc.dormant_days))
        )
    )
    tier_col = pl.col("ops_tier")
    ops_tier = (
        pl.when(tier_col == "high_value")
        .then(
            pl.format(
                "ordered {} days ago (<= {}), M={} (>= {})",
                rec,
                pl.lit(lc.active_days),
                "m_score",
                pl.lit(ops.high_value_min_m_score),
            )
        )
        .when(tier_col == "active")
        .then(
            pl.format(
                "ordered {} days ago (<= {}), M={} (< {})",
                rec,
                pl.lit(lc.active_days),
                "m_score",
                pl.lit(ops.high_value_min_m_score),
            )
        )
        .when(tier_col == "potential")
        .then(
            pl.format(
                "no order in {} days, last active {} days ago (<= {})",
                pl.lit(lc.active_days),
                "_inactive",
                pl.lit(ops.silent_days),
            )
        )
        .when(tier_col == "silent")
        .then(
            pl.format(
                "inactive for {} days (silent: {}-{})",
                "_inactive",
                pl.lit(ops.silent_days + 1),
                pl.lit(lc.dormant_days),
            )
        )
        .otherwise(
            pl.format("inactive for {} days (churned: > {})", "_inactive", pl.lit(lc.dormant_days))
        )
    )
    return frame.select(
        "user_id",
        pl.when(pl.col("_cust")).then(rfm).otherwise(no_order).alias("rfm_reason"),
        pl.when(pl.col("_cust")).then(tier).otherwise(no_order).alias("value_tier_reason"),
        lifecycle.alias("lifecycle_reason"),
        ops_tier.alias("ops_tier_reason"),
    )
