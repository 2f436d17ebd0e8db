"""A scheme as an ordered list of rules: a user takes the first rule that holds.

Each rule carries its condition and the reason text built from the same thresholds, so the
key a user gets and the reason they are told cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Rule:
    """Users for whom ``when`` holds (and no earlier rule does) get ``key``, told ``reason``."""

    key: str
    when: pl.Expr
    reason: pl.Expr


#: ``when`` of a scheme's last rule: everyone the earlier rules left.
OTHERWISE = pl.lit(True)


def first_match(rules: Sequence[Rule], part: str) -> pl.Expr:
    """The ``key`` or ``reason`` of the first rule that holds (the last rule catches the rest)."""
    if part not in ("key", "reason"):
        raise ValueError(f"part must be 'key' or 'reason', got {part!r}")

    def value(rule: Rule) -> pl.Expr:
        return pl.lit(rule.key) if part == "key" else rule.reason

    *leading, last = rules
    if not leading:
        return value(last)
    chain = pl.when(leading[0].when).then(value(leading[0]))
    for rule in leading[1:]:
        chain = chain.when(rule.when).then(value(rule))
    return chain.otherwise(value(last))


def number_text(expr: pl.Expr) -> pl.Expr:
    """A number as short text: integers without decimals, others rounded to 2 decimals."""
    value = expr.cast(pl.Float64)
    return (
        pl.when(value == value.round(0))
        .then(value.round(0).cast(pl.Int64).cast(pl.Utf8))
        .otherwise(value.round(2).cast(pl.Utf8))
    )
