"""Compare the dbt models as two engines built them (DuckDB and PostgreSQL), row for row.

The relations and their keys come from dbt's manifest: every model and seed, and per relation
the columns of its `unique` / `unique_combination_of_columns` tests (those without a `where`).
Values are compared after a normalisation that only removes what the drivers, not the SQL,
make different: numerics (Decimal or float) become floats compared with a relative tolerance
(sums of doubles in another order), dates and timestamps are compared as they are, text exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REL_TOL = 1e-9


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    key: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Comparison:
    relation: Relation
    duckdb_rows: int
    postgres_rows: int
    differences: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


def manifest_relations(manifest_path: Path) -> list[Relation]:
    """Every model and seed of a dbt manifest with its key columns, sorted by name."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    keys: dict[str, tuple[str, ...]] = {}
    for node in manifest["nodes"].values():
        meta = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or node.get("config", {}).get("where"):
            continue
        kwargs = meta.get("kwargs", {})
        if meta.get("name") == "unique" and kwargs.get("column_name"):
            columns: tuple[str, ...] = (kwargs["column_name"],)
        elif meta.get("name") == "unique_combination_of_columns":
            columns = tuple(kwargs["combination_of_columns"])
        else:
            continue
        attached = node.get("attached_node")
        if attached:
            keys.setdefault(attached, columns)
    relations = [
        Relation(node["schema"], node["alias"], keys.get(unique_id, ()))
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed")
    ]
    return sorted(relations, key=lambda relation: relation.qualified)


def normalise(value: Any) -> Any:
    """A value as both drivers' rows can be compared: numbers as float, the rest as is."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal | int | float):
        return float(value)
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[int, str], ...]:
    return tuple(
        (0, "")
        if value is None
        else (1, f"{value:.6g}" if isinstance(value, float) else str(value))
        for value in row
    )


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=REL_TOL, abs_tol=REL_TOL)
    return left == right


def compare_rows(
    columns: list[str], duckdb_rows: list[tuple[Any, ...]], postgres_rows: list[tuple[Any, ...]]
) -> list[str]:
    """The differences between two bags of rows (empty when equal), at most five named."""
    if len(duckdb_rows) != len(postgres_rows):
        return [f"{len(duckdb_rows)} rows in DuckDB, {len(postgres_rows)} in PostgreSQL"]
    left = sorted((tuple(normalise(v) for v in row) for row in duckdb_rows), key=_sort_key)
    right = sorted((tuple(normalise(v) for v in row) for row in postgres_rows), key=_sort_key)
    differences = []
    for a, b in zip(left, right, strict=True):
        unequal = [
            f"{column}: {x!r} (DuckDB) != {y!r} (PostgreSQL)"
            for column, x, y in zip(columns, a, b, strict=True)
            if not _same(x, y)
        ]
        if unequal:
            differences.append("; ".join(unequal))
        if len(differences) == 5:
            break
    return differences


def _columns(cursor: Any, relation: Relation, placeholder: str) -> list[str]:
    cursor.execute(
        "select column_name from information_schema.columns where table_schema = "
        f"{placeholder} and table_name = {placeholder} order by ordinal_position",
        (relation.schema, relation.name),
    )
    return [row[0] for row in cursor.fetchall()]


def compare_relation(duckdb_con: Any, postgres_con: Any, relation: Relation) -> Comparison:
    """Row counts, key columns and every column of one relation on both engines."""
    with duckdb_con.cursor() as duck, postgres_con.cursor() as pg:
        duck_columns = _columns(duck, relation, "?")
        pg_columns = _columns(pg, relation, "%s")
        if not duck_columns or duck_columns != pg_columns:
            return Comparison(
                relation, 0, 0, [f"columns: {duck_columns} (DuckDB) != {pg_columns} (PostgreSQL)"]
            )
        select = ", ".join(f'"{column}"' for column in duck_columns)
        query = f'select {select} from "{relation.schema}"."{relation.name}"'
        duck_rows = duck.execute(query).fetchall()
        pg.execute(query)
        pg_rows = pg.fetchall()
    differences = []
    if relation.key:
        positions = [duck_columns.index(column) for column in relation.key]
        duck_keys = sorted(tuple(str(row[i]) for i in positions) for row in duck_rows)
        pg_keys = sorted(tuple(str(row[i]) for i in positions) for row in pg_rows)
        if duck_keys != pg_keys:
            only_duck = sorted(set(duck_keys) - set(pg_keys))[:3]
            only_pg = sorted(set(pg_keys) - set(duck_keys))[:3]
            differences.append(
                f"keys {relation.key}: only in DuckDB {only_duck}, only in PostgreSQL {only_pg}"
            )
    differences += compare_rows(duck_columns, duck_rows, pg_rows)
    return Comparison(relation, len(duck_rows), len(pg_rows), differences)
