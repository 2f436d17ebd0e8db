"""Lint-time stand-ins for dbt's cross-database macros (`dbt.hash`, `dbt.concat`, ...).

Each returns the SQL dbt-duckdb renders, so SQLFluff lints what DuckDB actually runs.
Names and signatures mirror dbt's macros, builtins shadowed included.
"""


def hash(field: str) -> str:
    """`dbt.hash`: md5 of the value as text."""
    return f"md5(cast({field} as varchar))"


def concat(fields: list[str]) -> str:
    """`dbt.concat`: the default `||` chain (null in, null out)."""
    return " || ".join(fields)


def safe_cast(field: str, type: str) -> str:
    """`dbt.safe_cast`: a plain cast, as dbt's default implementation."""
    return f"cast({field} as {type})"


def type_string() -> str:
    """`dbt.type_string`: the adapter's text type."""
    return "varchar"
