"""Rule-based segment schemes: R/F/M scores, the named R x F map, 8-type value tiers, lifecycle
stages and operating tiers.

Every scheme is an exact partition of the input users: each user gets exactly one key and one
Chinese label per scheme (tested, and asserted at run time). Pure polars; no Dagster imports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.spec import (
    REQUIRED_FEATURES,
    SEGMENT_COLUMNS,
    RulesSpec,
    ScoreRule,
    SegmentationSpec,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleCuts:
    """Cut points in raw units actually used on a date; report them as run metadata."""

    recency_edges: tuple[float, ...]
    frequency_edges: tuple[float, ...]
    monetary_edges: tuple[float, ...]
    recency_threshold: float | None
    frequency_threshold: float | None
    monetary_threshold: float | None
    n_customers: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for asset metadata."""
        return {
            "recency_edges": list(self.recency_edges),
            "frequency_edges": list(self.frequency_edges),
            "monetary_edges": list(self.monetary_edges),
            "recency_threshold": self.recency_threshold,
            "frequency_threshold": self.frequency_threshold,
            "monetary_threshold": self.monetary_threshold,
            "n_customers": self.n_customers,
        }


def customer_mask() -> pl.Expr:
    """Customers: at least one completed order on or before the as-of date."""
    return pl.col("is_customer").fill_null(False)


def _edges(values: np.ndarray, rule: ScoreRule) -> tuple[float, ...]:
    if rule.method == "fixed":
        return rule.edges
    if values.size == 0:
        return tuple(float("nan") for _ in rule.edges)
    return tuple(float(q) for q in np.quantile(values, rule.edges, method="linear"))


def compute_cuts(features: pl.DataFrame, spec: SegmentationSpec) -> RuleCuts:
    """R/F/M cut points and value-tier thresholds from the customers in ``features``.

    Exposed (and accepted back by :func:`assign_rule_segments`) so a run can log the cut points,
    or an analyst can score another date with frozen cuts.
    """
    rules = spec.rules
    customers = features.filter(customer_mask())

    def values(column: str) -> np.ndarray:
        return customers.get_column(column).cast(pl.Float64).to_numpy()

    stat = np.median if rules.value_statistic == "median" else np.mean

    def threshold(column: str) -> float | None:
        vals = values(column)
        return float(stat(vals)) if vals.size else None

    return RuleCuts(
        recency_edges=_edges(values(rules.recency.column), rules.recency),
        frequency_edges=_edges(values(rules.frequency.column), rules.frequency),
        monetary_edges=_edges(values(rules.monetary.column), rules.monetary),
        recency_threshold=threshold(rules.recency.column),
        frequency_threshold=threshold(rules.frequency.column),
        monetary_threshold=threshold(rules.monetary.column),
        n_customers=customers.height,
    )


def _score_expr(rule: ScoreRule, edges: Sequence[float], name: str) -> pl.Expr:
    """Score = a function of the value alone (right-closed bins), NULL for non-customers."""
    value = pl.col(rule.column).cast(pl.Float64)
    above = pl.sum_horizontal([(value > edge).cast(pl.Int8) for edge in edges])
    score = (1 + above) if rule.higher_is_better else (rule.levels - above)
    return pl.when(customer_mask()).then(score).otherwise(None).cast(pl.Int8).alias(name)


def _validate_input(features: pl.DataFrame, spec: SegmentationSpec) -> None:
    rfm_columns = [
        spec.rules.recency.column,
        spec.rules.frequency.column,
        spec.rules.monetary.column,
    ]
    missing = [c for c in (*REQUIRED_FEATURES, *rfm_columns) if c not in features.columns]
    if missing:
        raise ValueError(f"user_features is missing columns {missing}")
    if features.get_column("user_id").n_unique() != features.height:
        raise ValueError("user_features must hold one row per user_id")
    bad = features.filter(
        customer_mask() & pl.any_horizontal([pl.col(c).is_null() for c in rfm_columns])
    ).height
    if bad:
        raise ValueError(f"{bad} customers have NULL {rfm_columns}: features are inconsistent")
    bad = features.filter(
        pl.col("tenure_days").is_null() | (customer_mask() & pl.col("customer_age_days").is_null())
    ).height
    if bad:
        raise ValueError(f"{bad} users have NULL tenure_days (or customer_age_days as customers)")


def gap_expr(features: pl.DataFrame, column: str) -> pl.Expr:
    """Days between the last and the previous distinct completed-order day.

    Uses the contract-extension column when present. Without it the gap is known exactly only
    for customers with two order days (gap = purchase_span_days); others count as not reactivated.
    """
    if column in features.columns:
        return pl.col(column).cast(pl.Int64)
    logger.warning(
        "user_features has no %s column: 'reactivated' is detected only for customers with "
        "exactly two order days",
        column,
    )
    return (
        pl.when(pl.col("repeat_purchases") == 1)
        .then(pl.col("purchase_span_days").cast(pl.Int64))
        .otherwise(None)
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
    _validate_input(features, spec)
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    lc = rules.lifecycle
    ops = rules.ops_tiers
    is_cust = customer_mask()

    scored = features.select(
        "user_id",
        is_cust.alias("_is_customer"),
        _score_expr(rules.recency, cuts.recency_edges, "r_score"),
        _score_expr(rules.frequency, cuts.frequency_edges, "f_score"),
        _score_expr(rules.monetary, cuts.monetary_edges, "m_score"),
        *_value_flags(rules, cuts),
        pl.col("tenure_days").cast(pl.Int64).alias("_tenure"),
        pl.col("recency_days").cast(pl.Int64).alias("_recency"),
        pl.col("customer_age_days").cast(pl.Int64).alias("_age"),
        gap_expr(features, lc.reactivation_gap_column).alias("_gap"),
        pl.col("days_since_last_active")
        .cast(pl.Int64)
        .fill_null(pl.col("tenure_days").cast(pl.Int64))
        .alias("_inactive"),
    ).with_columns(
        pl.concat_str([pl.col(c).cast(pl.Utf8) for c in ("r_score", "f_score", "m_score")]).alias(
            "rfm_cell"
        )
    )

    rf_cells = pl.DataFrame(
        [
            (r, f, rule.key, rule.label_zh)
            for rule in rules.rf_map
            for r in range(rule.r[0], rule.r[1] + 1)
            for f in range(rule.f[0], rule.f[1] + 1)
        ],
        schema={"r_score": pl.Int8, "f_score": pl.Int8, "_rf_key": pl.Utf8, "_rf_zh": pl.Utf8},
        orient="row",
    )
    tiers = pl.DataFrame(
        [(t.r_high, t.f_high, t.m_high, t.key, t.label_zh) for t in rules.value_tiers],
        schema={
            "_r_high": pl.Boolean,
            "_f_high": pl.Boolean,
            "_m_high": pl.Boolean,
            "_vt_key": pl.Utf8,
            "_vt_zh": pl.Utf8,
        },
        orient="row",
    )
    lc_zh = {lab.key: lab.label_zh for lab in lc.labels}
    ops_zh = {lab.key: lab.label_zh for lab in ops.labels}
    prospect = rules.prospect

    recent = pl.col("_recency") <= lc.active_days
    lifecycle = (
        pl.when(pl.col("_is_customer") & (pl.col("_age") <= lc.new_days))
        .then(pl.lit("new"))
        .when(~pl.col("_is_customer") & (pl.col("_tenure") <= lc.new_days))
        .then(pl.lit("new"))
        .when(~pl.col("_is_customer"))
        .then(pl.lit("prospect"))
        .when(recent & (pl.col("_gap") > lc.active_days))
        .then(pl.lit("reactivated"))
        .when(recent)
        .then(pl.lit("active"))
        .when(pl.col("_recency") <= lc.at_risk_days)
        .then(pl.lit("at_risk"))
        .when(pl.col("_recency") <= lc.dormant_days)
        .then(pl.lit("dormant"))
        .otherwise(pl.lit("lost"))
    )
    ops_tier = (
        pl.when(pl.col("_is_customer") & recent & (pl.col("m_score") >= ops.high_value_min_m_score))
        .then(pl.lit("high_value"))
        .when(pl.col("_is_customer") & recent)
        .then(pl.lit("active"))
        .when(pl.col("_inactive") <= ops.silent_days)
        .then(pl.lit("potential"))
        .when(pl.col("_inactive") <= lc.dormant_days)
        .then(pl.lit("silent"))
        .otherwise(pl.lit("churned"))
    )

    out = (
        scored.join(rf_cells, on=["r_score", "f_score"], how="left", maintain_order="left")
        .join(tiers, on=["_r_high", "_f_high", "_m_high"], how="left", maintain_order="left")
        .with_columns(lifecycle.alias("lifecycle_stage"), ops_tier.alias("ops_tier"))
        .select(
            "user_id",
            "r_score",
            "f_score",
            "m_score",
            "rfm_cell",
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_rf_key"))
            .otherwise(pl.lit(prospect.key))
            .alias("rfm_segment"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_rf_zh"))
            .otherwise(pl.lit(prospect.label_zh))
            .alias("rfm_segment_label"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_vt_key"))
            .otherwise(pl.lit(prospect.key))
            .alias("value_tier"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_vt_zh"))
            .otherwise(pl.lit(prospect.label_zh))
            .alias("value_tier_label"),
            "lifecycle_stage",
            pl.col("lifecycle_stage").replace_strict(lc_zh).alias("lifecycle_label"),
            "ops_tier",
            pl.col("ops_tier").replace_strict(ops_zh).alias("ops_tier_label"),
        )
    )
    _assert_partition(out, features.height)
    return out


def _value_flags(rules: RulesSpec, cuts: RuleCuts) -> list[pl.Expr]:
    """High/low flags against the customers' statistic; equal to the statistic counts as low."""

    def flag(column: str, threshold: float | None, higher_is_better: bool, name: str) -> pl.Expr:
        if threshold is None:
            return pl.lit(False).alias(name)
        value = pl.col(column).cast(pl.Float64)
        return (value > threshold if higher_is_better else value < threshold).alias(name)

    return [
        flag(
            rules.recency.column, cuts.recency_threshold, rules.recency.higher_is_better, "_r_high"
        ),
        flag(
            rules.frequency.column,
            cuts.frequency_threshold,
            rules.frequency.higher_is_better,
            "_f_high",
        ),
        flag(
            rules.monetary.column,
            cuts.monetary_threshold,
            rules.monetary.higher_is_better,
            "_m_high",
        ),
    ]


def _assert_partition(out: pl.DataFrame, n_users: int) -> None:
    """Every user exactly once, with exactly one non-NULL key and label per scheme."""
    keys = SEGMENT_COLUMNS[SEGMENT_COLUMNS.index("rfm_segment") :]  # every scheme's key and label
    nulls = {c: n for c in keys if (n := out.get_column(c).null_count())}
    if out.height != n_users or nulls:
        raise RuntimeError(f"rule segments are not a partition: rows={out.height}, nulls={nulls}")
