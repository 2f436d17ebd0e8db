"""The 8 value tiers: R, F and M each high or low against the customers' median (or mean)."""

from __future__ import annotations

import polars as pl

from dagster_project.lib.segmentation.rules.cuts import RuleCuts
from dagster_project.lib.segmentation.rules.ordered import number_text
from dagster_project.lib.segmentation.spec import RulesSpec


def _axes(rules: RulesSpec, cuts: RuleCuts) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """Per axis: the flag column name, whether the user is high, and the reason saying why.

    Equal to the statistic counts as low; without customers every flag is low. An unknown
    value (a source without money has no M) counts as low and says so: the tier then rests on
    R and F alone.
    """
    axes = (
        ("_r_high", "_rec", cuts.recency_threshold, rules.recency.higher_is_better, " days"),
        ("_f_high", "_freq", cuts.frequency_threshold, rules.frequency.higher_is_better, " orders"),
        ("_m_high", "_mon", cuts.monetary_threshold, rules.monetary.higher_is_better, ""),
    )
    unknown = pl.lit("unknown (no order amounts), counted as low")
    out = []
    for flag, value, threshold, higher_is_better, unit in axes:
        if threshold is None:
            out.append((flag, pl.lit(False), unknown))
            continue
        v = pl.col(value)
        high = (v > threshold if higher_is_better else v < threshold).fill_null(False)
        op_high, op_low = (">", "<=") if higher_is_better else ("<", ">=")
        shown, limit = number_text(v), number_text(pl.lit(threshold))
        reason = (
            pl.when(v.is_null())
            .then(unknown)
            .when(high)
            .then(pl.format("high ({} {} {}{})", shown, pl.lit(op_high), limit, pl.lit(unit)))
            .otherwise(pl.format("low ({} {} {}{})", shown, pl.lit(op_low), limit, pl.lit(unit)))
        )
        out.append((flag, high, reason))
    return out


def value_flags(rules: RulesSpec, cuts: RuleCuts) -> list[pl.Expr]:
    """``_r_high``, ``_f_high``, ``_m_high``: the keys of :func:`value_tier_table`."""
    return [high.alias(flag) for flag, high, _ in _axes(rules, cuts)]


def value_tier_table(rules: RulesSpec) -> pl.DataFrame:
    """One row per high/low combination with the ``_vt_key`` and ``_vt_zh`` of its tier."""
    return pl.DataFrame(
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


def value_tier_reason(rules: RulesSpec, cuts: RuleCuts) -> pl.Expr:
    """E.g. "R high (12 < 40 days), F low (1 <= 2 orders), M high (230.5 > 120)"."""
    reasons = [reason for _, _, reason in _axes(rules, cuts)]
    return pl.format("R {}, F {}, M {}", *reasons)
