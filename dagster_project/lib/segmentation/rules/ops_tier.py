"""Operating tiers 高价值 / 活跃 / 潜力 / 沉默 / 流失: recent buyers by value, then inactivity."""

from __future__ import annotations

import polars as pl

from dagster_project.lib.segmentation.rules.ordered import OTHERWISE, Rule
from dagster_project.lib.segmentation.spec import LifecycleSpec, OpsTierSpec


def ops_tier_rules(ops: OpsTierSpec, lc: LifecycleSpec) -> tuple[Rule, ...]:
    """The tiers in the order they are tested; recent means an order within active_days."""
    recent_buyer = pl.col("_is_customer") & (pl.col("_recency") <= lc.active_days)
    # without money (no M score) nobody is high value: recent buyers are active
    high_m = (pl.col("m_score") >= ops.high_value_min_m_score).fill_null(False)
    m_text = (
        pl.when(pl.col("m_score").is_null())
        .then(pl.lit("unknown"))
        .otherwise(pl.col("m_score").cast(pl.Utf8))
    )
    recency, inactive = pl.col("_recency"), pl.col("_inactive")
    active, min_m = pl.lit(lc.active_days), pl.lit(ops.high_value_min_m_score)
    silent, dormant = pl.lit(ops.silent_days), pl.lit(lc.dormant_days)
    return (
        Rule(
            "high_value",
            recent_buyer & high_m,
            pl.format(
                "ordered {} days ago (<= {}), M={} (>= {})", recency, active, "m_score", min_m
            ),
        ),
        Rule(
            "active",
            recent_buyer,
            pl.format("ordered {} days ago (<= {}), M={} (< {})", recency, active, m_text, min_m),
        ),
        Rule(
            "potential",
            inactive <= ops.silent_days,
            pl.format(
                "no order in {} days, last active {} days ago (<= {})", active, inactive, silent
            ),
        ),
        Rule(
            "silent",
            inactive <= lc.dormant_days,
            pl.format("inactive for {} days (silent: {}-{})", inactive, silent + 1, dormant),
        ),
        Rule(
            "churned",
            OTHERWISE,
            pl.format("inactive for {} days (churned: > {})", inactive, dormant),
        ),
    )
