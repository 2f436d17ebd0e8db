"""Country names in exports ("United Kingdom", "EIRE", "USA") to ISO 3166-1 alpha-2 codes.

The contract's `users.country` is an alpha-2 code; exports write names. The shipped table
(`countries.csv`) holds the ISO names, alpha-3 codes and the names exports use; matching
ignores case and repeated spaces. A value that is neither a known name nor a two-letter code
is left empty and reported once per distinct value (with its row count), not once per row.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import polars as pl

TABLE = Path(__file__).with_name("countries.csv")


@cache
def _codes() -> dict[str, str]:
    with TABLE.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {_key(row["name"]): row["alpha_2"] for row in rows}


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


def to_iso_country(values: pl.Series) -> tuple[pl.Series, dict[str, int]]:
    """The values as alpha-2 codes, and the unrecognised values with their row counts."""
    distinct = values.drop_nulls().unique().to_list()
    lookup: dict[str, str | None] = {}
    unknown: list[str] = []
    for value in distinct:
        key = _key(value)
        if not key:
            lookup[value] = None
        elif key in _codes():
            lookup[value] = _codes()[key]
        elif len(key) == 2 and key.isalpha():
            lookup[value] = key.upper()  # already a code
        else:
            lookup[value] = None
            unknown.append(value)
    codes = values.replace_strict(lookup, default=None, return_dtype=pl.String)
    counts = dict(values.filter(values.is_in(unknown)).value_counts().rows()) if unknown else {}
    return codes.alias(values.name), dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
