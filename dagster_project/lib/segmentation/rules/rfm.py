"""R, F and M scores (1..levels) and the named R x F map (champions ... hibernating)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from dagster_project.lib.segmentation.rules.cuts import RuleCuts
from dagster_project.lib.segmentation.rules.ordered import number_text
from dagster_project.lib.segmentation.spec import RulesSpec, ScoreRule

#: What a rule says of an M value it does not have (a source without money, `money: none`).
NO_AMOUNT = "M unknown (no order amounts)"


def _score(rule: ScoreRule, value: str, edges: Sequence[float], name: str) -> pl.Expr:
    """Score = a function of the value alone (right-closed bins), NULL for non-customers and
    for an unknown value (the M score of a source without money)."""
    above = pl.sum_horizontal([(pl.col(value) > edge).cast(pl.Int8) for edge in edges])
    score = (1 + above) if rule.higher_is_better else (rule.levels - above)
    scored = pl.col("_is_customer") & pl.col(value).is_not_null()
    return pl.when(scored).then(score).otherwise(None).cast(pl.Int8).alias(name)


def score_columns(rules: RulesSpec, cuts: RuleCuts) -> list[pl.Expr]:
    """``r_score``, ``f_score``, ``m_score`` from the rule inputs and the date's cut points."""
    return [
        _score(rules.recency, "_rec", cuts.recency_edges, "r_score"),
        _score(rules.frequency, "_freq", cuts.frequency_edges, "f_score"),
        _score(rules.monetary, "_mon", cuts.monetary_edges, "m_score"),
    ]


def rfm_cell() -> pl.Expr:
    """The three scores as one code, e.g. "543" (NULL for non-customers; "54-" when the M
    score is unknown: no order amounts)."""
    scores = [pl.col(c).cast(pl.Utf8) for c in ("r_score", "f_score")]
    m = pl.col("m_score").cast(pl.Utf8).fill_null("-")
    return pl.concat_str([*scores, m]).alias("rfm_cell")


def rf_map_table(rules: RulesSpec) -> pl.DataFrame:
    """One row per (r_score, f_score) cell with the ``_rf_key`` and ``_rf_zh`` it is named."""
    return pl.DataFrame(
        [
            (r, f, rule.key, rule.label_zh)
            for rule in rules.rf_map
            for r in range(rule.r[0], rule.r[1] + 1)
            for f in range(rule.f[0], rule.f[1] + 1)
        ],
        schema={"r_score": pl.Int8, "f_score": pl.Int8, "_rf_key": pl.Utf8, "_rf_zh": pl.Utf8},
        orient="row",
    )


def rfm_reason() -> pl.Expr:
    """E.g. "R=5 (12 days), F=4 (5 orders), M=3 (230.5)": each score with the value behind it
    ("M unknown (no order amounts)" without money)."""
    m = (
        pl.when(pl.col("m_score").is_null())
        .then(pl.lit(NO_AMOUNT))
        .otherwise(pl.format("M={} ({})", "m_score", number_text(pl.col("_mon"))))
    )
    return pl.format(
        "R={} ({} days), F={} ({} orders), {}",
        "r_score",
        number_text(pl.col("_rec")),
        "f_score",
        number_text(pl.col("_freq")),
        m,
    )
