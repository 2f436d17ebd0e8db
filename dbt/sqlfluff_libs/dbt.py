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


def dateadd(datepart: str, interval: int | str, from_date_or_timestamp: str) -> str:
    """`dbt.dateadd`: dbt-duckdb's interval multiplication."""
    return f"({from_date_or_timestamp} + cast({interval} as bigint) * interval 1 {datepart})"


def date_trunc(datepart: str, date: str) -> str:
    """`dbt.date_trunc`: the default `date_trunc`."""
    return f"date_trunc('{datepart}', {date})"


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    """`dbt.datediff`: dbt-duckdb's `date_diff` on timestamps."""
    first, second = f"cast({first_date} as timestamp)", f"cast({second_date} as timestamp)"
    return f"date_diff('{datepart}', {first}, {second})"


def listagg(
    measure: str, delimiter_text: str = "','", order_by_clause: str = "", limit_num=None
) -> str:
    """`dbt.listagg` without a limit: dbt-duckdb's `string_agg`."""
    return f"string_agg({measure}, {delimiter_text} {order_by_clause})"
