"""Binding the mapping to the files in DuckDB: columns and expressions checked, values evaluated
and normalised to the contract's text form."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from dagster_project.lib.ingestion.contract import (
    SOURCE_FILE_COLUMN,
    SOURCE_LINE_COLUMN,
    TABLE_SPECS,
    ColumnSpec,
)
from dagster_project.lib.ingestion.mapping.readers import read_source
from dagster_project.lib.ingestion.mapping.spec import (
    DERIVES,
    FILE_COLUMN,
    ISO_TIMESTAMP,
    LINE_COLUMN,
    MAX_UNREADABLE_TIMESTAMP_SHARE,
    RETURN_FLAG,
    ColumnMapping,
    MappingError,
    ReaderOptions,
    SourceMapping,
    TableMapping,
    quote_identifier,
)


def connection(mapping: SourceMapping, reader: ReaderOptions) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lookups and the `num()` macro for this table's reader."""
    con = duckdb.connect()
    text = "trim(cast(x as varchar))"
    if reader.thousands_separator:
        text = f"replace({text}, '{reader.thousands_separator}', '')"
    if reader.decimal_separator != ".":
        text = f"replace({text}, '{reader.decimal_separator}', '.')"
    # num(x): a number from text written with the mapping's separators; null if it is none
    con.execute(f"create macro num(x) as try_cast({text} as double)")
    for name, lookup in mapping.lookups.items():
        frames = [read_source(p, lookup.reader) for p in lookup.files]
        con.register(f"__lookup_{name}", pl.concat(frames, how="diagonal").to_arrow())
        con.execute(f"create view {name} as select * from __lookup_{name}")
    return con


def resolve(
    columns: dict[str, ColumnMapping], source_columns: list[str]
) -> dict[str, ColumnMapping]:
    """Bare strings that name a source column are that column; others are expressions."""
    resolved = {}
    for name, column in columns.items():
        if column.kind == "auto":
            kind = "column" if column.text in source_columns else "expr"
            column = ColumnMapping(kind, column.text)
        resolved[name] = column
    return resolved


def _select_sql(
    columns: dict[str, ColumnMapping],
    extra: dict[str, ColumnMapping],
    returns: ColumnMapping | None,
    where: ColumnMapping | None = None,
) -> str:
    items = [f"{c.sql()} as {quote_identifier(name)}" for name, c in columns.items()]
    items += [f"{c.sql()} as {quote_identifier('__user_' + n)}" for n, c in extra.items()]
    if returns is not None:
        items.append(f"coalesce(cast({returns.sql()} as boolean), false) as {RETURN_FLAG}")
    items += [f"{FILE_COLUMN} as {SOURCE_FILE_COLUMN}", f"{LINE_COLUMN} as {SOURCE_LINE_COLUMN}"]
    return "select " + ", ".join(items) + " from src" + where_clause(where)


def where_clause(where: ColumnMapping | None) -> str:
    """` where <condition>` for a table's `where:` (the rows of a file that are this table's,
    e.g. the purchase events of a clickstream; NULL counts as false), or nothing."""
    return f" where coalesce(cast({where.sql()} as boolean), false)" if where else ""


def _check_columns(
    con: duckdb.DuckDBPyConnection,
    key: str,
    path: Path,
    columns: dict[str, ColumnMapping],
    source_columns: list[str],
) -> None:
    """Every named column exists and every expression binds, against this file's columns."""
    for name, column in columns.items():
        where = f"{key}.{name}"
        if column.kind == "column" and column.text not in source_columns:
            raise MappingError(
                where,
                f"column {column.text!r} is not in {path} "
                f"(it has: {', '.join(c for c in source_columns if not c.startswith('_'))})",
            )
        if column.kind == "expr":
            try:
                con.sql(f"select {column.sql()} from src limit 0").fetchall()
            except duckdb.Error as exc:
                message = str(exc).splitlines()[0]
                raise MappingError(
                    where, f"expression {column.text!r} does not work on {path}: {message}"
                ) from exc


def derived_from(mapping: SourceMapping, table: TableMapping) -> TableMapping:
    """The table whose files a table reads: its own, or for derived users their parent's."""
    return mapping.tables[DERIVES[table.derive][0]] if table.derive else table


def validate(mapping: SourceMapping) -> None:
    """Check every file's columns and every expression, reading headers only (and lookups)."""
    for table, table_mapping in mapping.tables.items():
        source = derived_from(mapping, table_mapping)
        con = connection(mapping, source.reader)
        try:
            for path in source.files:
                try:
                    header = read_source(path, source.reader, header_only=True)
                except Exception as exc:  # polars / OS errors: name the key and the file
                    raise MappingError(
                        f"tables.{source.table}.files", f"cannot read {path}: {exc}"
                    ) from exc
                con.register("src", header.to_arrow())
                for part in ("columns", "items"):
                    columns = resolve(getattr(table_mapping, part), header.columns)
                    _check_columns(con, f"tables.{table}.{part}", path, columns, header.columns)
                conditions = {
                    name: condition
                    for name in ("returns", "where")
                    if (condition := getattr(table_mapping, name)) is not None
                }
                _check_columns(con, f"tables.{table}", path, conditions, header.columns)
                con.unregister("src")
        finally:
            con.close()


def _normalise_sql(name: str, spec: ColumnSpec, dtype: str, reader: ReaderOptions) -> str:
    """Contract value as text: timestamps and numbers normalised when they can be read,
    anything unreadable kept exactly as it came (ingestion quarantines it with the value)."""
    col = quote_identifier(name)
    is_text = dtype.upper() in ("VARCHAR", "NULL", '"NULL"')
    if spec.dtype == "timestamp":
        if not is_text:
            if dtype.upper().startswith(("TIMESTAMP", "DATE")):
                return f"strftime(cast({col} as timestamp), '{ISO_TIMESTAMP}')"
            return f"cast({col} as varchar)"
        text = f"trim({col})"
        if reader.timestamp_format:
            fmt = reader.timestamp_format.replace("'", "''")
            parsed = f"try_strptime({text}, '{fmt}')"
        else:
            parsed = f"try_cast({text} as timestamp)"
        return f"coalesce(strftime({parsed}, '{ISO_TIMESTAMP}'), {col})"
    if spec.dtype in ("decimal", "integer"):
        if not is_text:
            if spec.dtype == "integer":
                return (
                    f"case when try_cast({col} as double) = round(try_cast({col} as double)) "
                    f"then cast(cast({col} as bigint) as varchar) else cast({col} as varchar) end"
                )
            return f"cast({col} as varchar)"
        if reader.decimal_separator != "." or reader.thousands_separator:
            return f"coalesce(cast(num({col}) as varchar), {col})"
        return col
    return f"cast({col} as varchar)"


def evaluate(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    columns: dict[str, ColumnMapping],
    reader: ReaderOptions,
    extra: dict[str, ColumnMapping] | None = None,
    returns: ColumnMapping | None = None,
    where: ColumnMapping | None = None,
) -> pl.DataFrame:
    """The contract columns (text) of one file's rows (those `where` holds for, when given),
    plus lineage (and `__return`: whether the row is a return, when `returns` is given)."""
    extra = extra or {}
    con.register("src", frame.to_arrow())
    try:
        relation = con.sql(_select_sql(columns, extra, returns, where))
        types = dict(zip(relation.columns, [str(t) for t in relation.types], strict=True))
        items = []
        for spec in TABLE_SPECS[table]:
            if spec.name in columns:
                sql = _normalise_sql(spec.name, spec, types[spec.name], reader)
            else:
                sql = "null::varchar"
            items.append(f"{sql} as {quote_identifier(spec.name)}")
        users = {c.name: c for c in TABLE_SPECS["users"]}
        for name in extra:
            sql = _normalise_sql("__user_" + name, users[name], types["__user_" + name], reader)
            items.append(f"{sql} as {quote_identifier('__user_' + name)}")
        items += [SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN]
        if returns is not None:
            items.append(RETURN_FLAG)
        mapped = relation.pl()
    finally:
        con.unregister("src")
    # normalising is a second query over the mapped values: their types are known only now
    con.register("__mapped", mapped.to_arrow())
    try:
        result = con.sql("select " + ", ".join(items) + " from __mapped").pl()
    finally:
        con.unregister("__mapped")
    return result.with_columns(
        pl.col(c).cast(pl.String)
        for c in result.columns
        if c not in (SOURCE_LINE_COLUMN, RETURN_FLAG)
    )


def day_expr(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.coalesce(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%d", strict=False, time_unit="us"),
    ).dt.date()


def check_timestamps(key: str, frame: pl.DataFrame, column: str, reader: ReaderOptions) -> None:
    """Most timestamps unreadable: the format is wrong, say so instead of quarantining all."""
    values = frame.filter(pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != ""))
    if values.height == 0:
        return
    bad = values.filter(pl.col("__day").is_null())
    if bad.height / values.height > MAX_UNREADABLE_TIMESTAMP_SHARE:
        first = bad.row(0, named=True)
        hint = (
            f"timestamp_format {reader.timestamp_format!r} does not match"
            if reader.timestamp_format
            else "set timestamp_format (e.g. '%d/%m/%Y %H:%M') for values"
        )
        raise MappingError(
            key,
            f"{bad.height} of {values.height} values are not timestamps: {hint} "
            f"like {first[column]!r} "
            f"({first[SOURCE_FILE_COLUMN]} line {first[SOURCE_LINE_COLUMN]})",
        )
