"""Copy the dbt project's source tables from a DuckDB warehouse into PostgreSQL.

The ingestion and Python assets write DuckDB only; to build the dbt models on PostgreSQL
(`make test-postgres`), the tables they read (the dbt sources: raw.* and the Python-written
marts) are copied as they are: each table's DuckDB types mapped to PostgreSQL's, the rows
streamed through CSV and PostgreSQL's COPY (psycopg2, which dbt-postgres brings).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

# DuckDB type -> PostgreSQL type, for the types the source tables use
_TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")


class CopyError(ValueError):
    """A source table that cannot be copied as it is (names the table and column)."""


def dbt_source_tables(sources_yml: Path) -> list[tuple[str, str]]:
    """(schema, table) of every source declared in a dbt yml file, in file order."""
    document = yaml.safe_load(sources_yml.read_text(encoding="utf-8"))
    return [
        (source.get("schema", source["name"]), table["name"])
        for source in document.get("sources", [])
        for table in source.get("tables", [])
    ]


def postgres_type(duckdb_type: str, where: str) -> str:
    """PostgreSQL's type for a DuckDB column type; `where` (schema.table.column) names it."""
    normalised = duckdb_type.upper().replace(" ", "") if "(" in duckdb_type else duckdb_type
    decimal = _DECIMAL.match(normalised)
    if decimal:
        return f"numeric({decimal.group(1)},{decimal.group(2)})"
    if duckdb_type.upper() in _TYPES:
        return _TYPES[duckdb_type.upper()]
    raise CopyError(f"{where}: DuckDB type {duckdb_type} has no PostgreSQL mapping here")


def copy_tables(duckdb_path: Path, postgres: Any, tables: list[tuple[str, str]]) -> dict[str, int]:
    """Create and fill each (schema, table) of the DuckDB file in the PostgreSQL connection
    `postgres` (psycopg2; a table that exists is replaced) and commit; returns the rows copied
    per `schema.table`."""
    import duckdb

    copied: dict[str, int] = {}
    source = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="strata-copy-") as scratch,
            postgres.cursor() as cur,
        ):
            for schema, table in tables:
                name = f"{schema}.{table}"
                columns = source.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if not columns:
                    raise CopyError(f"{name}: no such table in {duckdb_path}")
                ddl = ", ".join(
                    f'"{column}" {postgres_type(kind, f"{name}.{column}")}'
                    for column, kind in columns
                )
                cur.execute(f'create schema if not exists "{schema}"')
                cur.execute(f'drop table if exists "{schema}"."{table}" cascade')
                cur.execute(f'create table "{schema}"."{table}" ({ddl})')
                csv = Path(scratch) / f"{schema}.{table}.csv"
                source.execute(f"copy {schema}.{table} to '{csv}' (format csv, header true)")
                with csv.open(encoding="utf-8") as rows:
                    cur.copy_expert(
                        f'copy "{schema}"."{table}" from stdin with (format csv, header true)',
                        rows,
                    )
                copied[name] = cur.rowcount
        postgres.commit()
    finally:
        source.close()
    return copied
