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


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    """`dbt.datediff`: dbt-duckdb's date_diff."""
    return f"date_diff('{datepart}', {first_date}::timestamp, {second_date}::timestamp)"


def dateadd(datepart: str, interval: int | str, from_date_or_timestamp: str) -> str:
    """`dbt.dateadd`: dbt-duckdb's date_add with an interval."""
    return f"date_add({from_date_or_timestamp}, interval ({interval}) {datepart})"


def listagg(
    measure: str, delimiter_text: str = "','", order_by_clause: str | None = None, limit_num=None
) -> str:
    """`dbt.listagg`: dbt-duckdb's string_agg."""
    order = f" {order_by_clause}" if order_by_clause else ""
    return f"string_agg({measure}, {delimiter_text}{order})"
