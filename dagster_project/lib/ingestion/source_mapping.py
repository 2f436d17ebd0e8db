"""Source mapping: a team's own exports -> the landing layout ingestion reads.

A YAML file maps each contract table (orders required; order_items, users, events optional)
onto a glob of the team's files (CSV, Parquet or whitespace-separated text) with reader
options, and each contract column onto a source column, a DuckDB SQL expression over the
source columns, or a constant. See README "Bring your own data" for the format.

Why a staging step rather than ingestion reading the exports directly: daily partitions,
idempotent re-ingestion, quarantine and the catch-up logic all already work on
``landing/<table>/date=YYYY-MM-DD/``. Staging reads the exports once, evaluates the mapping
in DuckDB, and writes each day's rows to ``landing/<table>/date=D/mapped.parquet`` with every
contract value as text (exactly what was read, timestamps and decimals only normalised when
they parse) plus ``_source_file`` / ``_source_line`` of the ORIGINAL export, which
ingestion keeps as lineage. Nothing is dropped here: rows that cannot be dated (an
unreadable or missing timestamp, a timestamp after today, an item whose order is unknown)
land in the table's latest day, where ingestion quarantines them with the reason.

Everything is validated before anything is written: the YAML's shape, every file the globs
must match, every column a mapping names and every expression (bound by DuckDB against the
file's columns); errors name the mapping key (``tables.orders.columns.amount``).
"""

from __future__ import annotations

import codecs
import glob
import importlib.util
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import yaml

from dagster_project.lib.core.settings import MAPPING_MANIFEST
from dagster_project.lib.core.spec_model import SpecError, parse_spec, spec_model
from dagster_project.lib.ingestion.contract import (
    CONTRACT_TABLES,
    SOURCE_FILE_COLUMN,
    SOURCE_LINE_COLUMN,
    TABLE_SPECS,
    ColumnSpec,
)

MAPPED_FILE = "mapped.parquet"
FORMATS = ("csv", "parquet", "whitespace")
DERIVE_FIRST_ORDER = "first_order"
ISO_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"
# Columns every expression may use besides the file's own.
FILE_COLUMN, LINE_COLUMN = "_file", "_line"
# More unreadable timestamps than this share in a file means a wrong `timestamp_format`,
# a table-level mistake to fix in the mapping rather than thousands of quarantined rows.
MAX_UNREADABLE_TIMESTAMP_SHARE = 0.5

READER_KEYS = {
    "format",
    "delimiter",
    "header",
    "names",
    "encoding",
    "quote",
    "skip_rows",
    "timestamp_format",
    "decimal_separator",
    "thousands_separator",
}
TABLE_KEYS = READER_KEYS | {"files", "columns", "derive"}
LOOKUP_KEYS = READER_KEYS | {"files"}
TOP_KEYS = {"version", "tables", "lookups"}
COLUMN_FORMS = ("column", "expr", "value")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PACKAGE = re.compile(r"\{package:([A-Za-z_][A-Za-z0-9_.]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MappingError(SpecError):
    """The mapping is wrong; the message starts with the mapping key it concerns."""


# The keys each level of a mapping may hold; their values are checked where they are read.
_TOP_MODEL = spec_model("mapping", dict.fromkeys(sorted(TOP_KEYS), Any))
_LOOKUP_MODEL = spec_model("lookup", dict.fromkeys(sorted(LOOKUP_KEYS), Any))
_TABLE_MODEL = spec_model("table", dict.fromkeys(sorted(TABLE_KEYS), Any))


@dataclass(frozen=True)
class ReaderOptions:
    format: str | None = None  # None: from the file extension
    delimiter: str = ","
    header: bool = True
    names: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    quote: str | None = '"'
    skip_rows: int = 0
    timestamp_format: str | None = None
    decimal_separator: str = "."
    thousands_separator: str | None = None

    def format_of(self, path: Path) -> str:
        if self.format:
            return self.format
        return "parquet" if path.suffix.lower() == ".parquet" else "csv"


@dataclass(frozen=True)
class ColumnMapping:
    kind: str  # column | expr | value
    text: str

    def sql(self) -> str:
        if self.kind == "column":
            return _quote_identifier(self.text)
        if self.kind == "value":
            return "'" + self.text.replace("'", "''") + "'"
        return f"({self.text})"


@dataclass(frozen=True)
class TableMapping:
    table: str
    files: tuple[Path, ...]
    pattern: str
    reader: ReaderOptions
    columns: dict[str, ColumnMapping]
    derive: str | None = None


@dataclass(frozen=True)
class SourceMapping:
    path: Path
    tables: dict[str, TableMapping]
    lookups: dict[str, TableMapping] = field(default_factory=dict)


@dataclass(frozen=True)
class TableStage:
    table: str
    rows: int
    days: int
    first_day: date | None
    last_day: date | None
    undated_rows: int
    files: dict[str, int]  # source file -> rows read


@dataclass(frozen=True)
class StageSummary:
    tables: dict[str, TableStage]
    written: int  # partition files written (new or changed)
    unchanged: int
    removed: int

    @property
    def first_day(self) -> date | None:
        days = [t.first_day for t in self.tables.values() if t.first_day]
        return min(days) if days else None


# ------------------------------------------------------------------------------ loading


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def expand_path(raw: str, base_dir: Path, key: str) -> str:
    """`{package:NAME}` -> the package's folder, `${VAR}` / `${VAR:-default}` -> the
    environment, `~` -> home; relative paths are relative to the mapping file."""

    def package(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise MappingError(key, f"package {name!r} is not installed (from {raw!r})")
        return locations[0]

    def env(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise MappingError(key, f"environment variable {name} is not set (used in {raw!r})")

    expanded = os.path.expanduser(_ENV.sub(env, _PACKAGE.sub(package, raw)))
    return str(expanded if os.path.isabs(expanded) else base_dir / expanded)


def _reader(spec: dict[str, Any], key: str) -> ReaderOptions:
    options: dict[str, Any] = {}
    fmt = spec.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise MappingError(f"{key}.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
        options["format"] = fmt
    for name in ("delimiter", "quote", "decimal_separator", "thousands_separator"):
        if name in spec:
            value = spec[name]
            if value is not None and (not isinstance(value, str) or len(value) != 1):
                raise MappingError(f"{key}.{name}", f"must be one character, got {value!r}")
            options[name] = value
    if options.get("decimal_separator", ".") not in (".", ","):
        raise MappingError(f"{key}.decimal_separator", "must be '.' or ','")
    if options.get("decimal_separator") == "," and "thousands_separator" not in spec:
        options["thousands_separator"] = "."
    if options.get("thousands_separator") == options.get("decimal_separator", "."):
        raise MappingError(f"{key}.thousands_separator", "must differ from decimal_separator")
    if "header" in spec:
        if not isinstance(spec["header"], bool):
            raise MappingError(f"{key}.header", f"must be true or false, got {spec['header']!r}")
        options["header"] = spec["header"]
    if "names" in spec:
        names = spec["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise MappingError(f"{key}.names", "must be a list of column names")
        options["names"] = tuple(names)
    if "encoding" in spec:
        try:
            options["encoding"] = codecs.lookup(str(spec["encoding"])).name
        except LookupError as exc:
            raise MappingError(f"{key}.encoding", f"unknown encoding {spec['encoding']!r}") from exc
    if "skip_rows" in spec:
        if not isinstance(spec["skip_rows"], int) or spec["skip_rows"] < 0:
            raise MappingError(f"{key}.skip_rows", "must be a non-negative integer")
        options["skip_rows"] = spec["skip_rows"]
    if "timestamp_format" in spec:
        value = spec["timestamp_format"]
        if not isinstance(value, str) or "%" not in value:
            raise MappingError(
                f"{key}.timestamp_format",
                f"must be a strptime format like '%d/%m/%Y %H:%M', got {value!r}",
            )
        options["timestamp_format"] = value
    return ReaderOptions(**options)


def _column(value: Any, key: str) -> tuple[str, str]:
    """(kind, text) of one column mapping; a bare string is a column or an expression."""
    if isinstance(value, bool) or value is None:
        raise MappingError(
            key, f"needs a column name, an expression or {{value: ...}}, got {value!r}"
        )
    if isinstance(value, int | float):
        return "value", str(value)
    if isinstance(value, str):
        if not value.strip():
            raise MappingError(key, "is empty")
        return "auto", value
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in COLUMN_FORMS:
        form, text = next(iter(value.items()))
        if text is None or (isinstance(text, str) and not text.strip()):
            raise MappingError(f"{key}.{form}", "is empty")
        return form, str(text)
    raise MappingError(
        key,
        f"must be a string or one of {{column: ...}}, {{expr: ...}}, {{value: ...}}; got {value!r}",
    )


def _files(spec: dict[str, Any], key: str, base_dir: Path) -> tuple[tuple[Path, ...], str]:
    raw = spec.get("files")
    if not isinstance(raw, str) or not raw.strip():
        raise MappingError(f"{key}.files", "a file path or glob is required")
    pattern = expand_path(raw, base_dir, f"{key}.files")
    files = tuple(Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file())
    if not files:
        raise MappingError(f"{key}.files", f"no file matches {pattern!r}")
    return files, pattern


def load_mapping(path: Path) -> SourceMapping:
    """Parse and check the YAML's shape and files (columns and expressions: `validate`)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise MappingError("sources", f"mapping file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError("sources", f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise MappingError("sources", f"{path} must hold a mapping with a 'tables' key")
    parse_spec(_TOP_MODEL, spec, "", MappingError)
    if spec.get("version", 1) != 1:
        raise MappingError("version", f"only version 1 is supported, got {spec.get('version')!r}")
    base_dir = path.parent

    lookups: dict[str, TableMapping] = {}
    for name, lookup in (spec.get("lookups") or {}).items():
        key = f"lookups.{name}"
        if not isinstance(name, str) or not _IDENTIFIER.match(name) or name == "src":
            raise MappingError(key, "a lookup name must be a SQL identifier other than 'src'")
        if not isinstance(lookup, dict):
            raise MappingError(key, "must be a mapping with 'files'")
        parse_spec(_LOOKUP_MODEL, lookup, key, MappingError)
        files, pattern = _files(lookup, key, base_dir)
        lookups[name] = TableMapping(name, files, pattern, _reader(lookup, key), {})

    tables_spec = spec.get("tables")
    if not isinstance(tables_spec, dict) or not tables_spec:
        raise MappingError("tables", "required: a mapping of contract tables (orders at least)")
    tables: dict[str, TableMapping] = {}
    for table, table_spec in tables_spec.items():
        key = f"tables.{table}"
        if table not in CONTRACT_TABLES:
            raise MappingError(
                key, f"not a contract table (expected one of {', '.join(CONTRACT_TABLES)})"
            )
        if not isinstance(table_spec, dict):
            raise MappingError(key, "must be a mapping with 'files' and 'columns'")
        parse_spec(_TABLE_MODEL, table_spec, key, MappingError)
        tables[table] = _table(table, table_spec, key, base_dir)
    if "orders" not in tables:
        raise MappingError("tables.orders", "required: every mapping maps orders")
    return SourceMapping(path=path, tables=tables, lookups=lookups)


def _table(table: str, spec: dict[str, Any], key: str, base_dir: Path) -> TableMapping:
    columns_spec = spec.get("columns") or {}
    if not isinstance(columns_spec, dict):
        raise MappingError(f"{key}.columns", "must map contract columns to source columns")
    contract = {c.name: c for c in TABLE_SPECS[table]}
    columns: dict[str, ColumnMapping] = {}
    for name, value in columns_spec.items():
        if name not in contract:
            raise MappingError(
                f"{key}.columns.{name}",
                f"not a column of {table} (expected: {', '.join(contract)})",
            )
        kind, text = _column(value, f"{key}.columns.{name}")
        columns[name] = ColumnMapping(kind, text)

    derive = spec.get("derive")
    if derive is not None:
        if table != "users" or derive != DERIVE_FIRST_ORDER:
            raise MappingError(
                f"{key}.derive", f"only users can be derived, with derive: {DERIVE_FIRST_ORDER}"
            )
        if "files" in spec:
            raise MappingError(f"{key}.files", "a derived table reads the orders files")
        for name in ("user_id", "signup_at"):
            if name in columns:
                raise MappingError(
                    f"{key}.columns.{name}", "comes from the orders when users are derived"
                )
        return TableMapping(table, (), "", ReaderOptions(), columns, derive)

    required = [c.name for c in TABLE_SPECS[table] if _mapping_required(table, c)]
    for name in required:
        if name not in columns:
            hint = " (a constant is fine: {value: USD})" if name == "currency" else ""
            raise MappingError(f"{key}.columns.{name}", f"required, not mapped{hint}")
    files, pattern = _files(spec, key, base_dir)
    return TableMapping(table, files, pattern, _reader(spec, key), columns)


def _mapping_required(table: str, column: ColumnSpec) -> bool:
    # currency may be absent from a landing file, but the orders suite needs one per order
    return not column.optional_in_file or (table, column.name) == ("orders", "currency")


# ------------------------------------------------------------------------------ readers


@contextmanager
def _utf8(path: Path, encoding: str) -> Iterator[Path]:
    """The file as UTF-8 (a transcoded temporary copy when it is in another encoding)."""
    if codecs.lookup(encoding).name == "utf-8":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="strata-transcode-") as tmp:
        target = Path(tmp) / path.name
        with (
            path.open(encoding=encoding, newline="") as src,
            target.open("w", encoding="utf-8", newline="") as dst,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        yield target


def _numbered(frame: pl.DataFrame, path: Path, first_line: int) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(str(path)).alias(FILE_COLUMN),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias(LINE_COLUMN),
    )


def read_source(path: Path, options: ReaderOptions, header_only: bool = False) -> pl.DataFrame:
    """Every column of one file as text, plus `_file` and `_line` (the 1-based line of the
    row in the file: the header is line 1; Parquet: the row number)."""
    fmt = options.format_of(path)
    if fmt == "parquet":
        frame = pl.read_parquet(path, n_rows=0 if header_only else None)
        frame = frame.with_columns(
            pl.col(pl.Datetime).dt.to_string("%Y-%m-%d %H:%M:%S%.f"),
            pl.col(pl.Date).dt.to_string("%Y-%m-%d"),
        ).with_columns(pl.all().cast(pl.String))
        return _numbered(frame, path, 1)
    with _utf8(path, options.encoding) as readable:
        if fmt == "whitespace":
            return _read_whitespace(readable, path, options, header_only)
        first_line = options.skip_rows + (2 if options.header else 1)
        frame = pl.read_csv(
            readable,
            separator=options.delimiter,
            has_header=options.header,
            new_columns=list(options.names) if options.names else None,
            infer_schema=False,
            quote_char=options.quote,
            skip_rows=options.skip_rows,
            n_rows=0 if header_only else None,
            encoding="utf8",
        )
    if not options.header and not options.names:
        frame = frame.rename({c: f"column{i + 1}" for i, c in enumerate(frame.columns)})
    return _numbered(frame, path, first_line)


def _read_whitespace(
    readable: Path, original: Path, options: ReaderOptions, header_only: bool
) -> pl.DataFrame:
    lines = readable.read_text(encoding="utf-8").splitlines()[options.skip_rows :]
    offset = options.skip_rows
    if options.header:
        while lines and not lines[0].strip():
            lines, offset = lines[1:], offset + 1
        names = lines[0].split() if lines else []
        lines, offset = lines[1:], offset + 1
    else:
        names = []
    if options.names:
        names = list(options.names)
    series = pl.Series("__line", lines[:0] if header_only else lines, dtype=pl.String)
    frame = pl.DataFrame(
        {
            "__fields": series.str.extract_all(r"\S+"),
            LINE_COLUMN: pl.int_range(offset + 1, offset + 1 + series.len(), eager=True),
        }
    ).filter(pl.col("__fields").list.len() > 0)  # blank lines carry no row
    width = max([len(names), *(frame["__fields"].list.len().to_list() or [0])])
    names += [f"column{i + 1}" for i in range(len(names), width)]
    columns = [
        pl.col("__fields").list.get(i, null_on_oob=True).alias(name) for i, name in enumerate(names)
    ]
    return frame.select(
        *columns, pl.lit(str(original)).alias(FILE_COLUMN), pl.col(LINE_COLUMN).cast(pl.Int64)
    )


# --------------------------------------------------------------------------- evaluation


def _connection(mapping: SourceMapping, reader: ReaderOptions) -> duckdb.DuckDBPyConnection:
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


def _resolve(
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


def _select_sql(columns: dict[str, ColumnMapping], extra: dict[str, ColumnMapping]) -> str:
    items = [f"{c.sql()} as {_quote_identifier(name)}" for name, c in columns.items()]
    items += [f"{c.sql()} as {_quote_identifier('__user_' + n)}" for n, c in extra.items()]
    items += [f"{FILE_COLUMN} as {SOURCE_FILE_COLUMN}", f"{LINE_COLUMN} as {SOURCE_LINE_COLUMN}"]
    return "select " + ", ".join(items) + " from src"


def _check_columns(
    con: duckdb.DuckDBPyConnection,
    key: str,
    path: Path,
    columns: dict[str, ColumnMapping],
    source_columns: list[str],
) -> None:
    """Every named column exists and every expression binds, against this file's columns."""
    for name, column in columns.items():
        where = f"{key}.columns.{name}"
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


def validate(mapping: SourceMapping) -> None:
    """Check every file's columns and every expression, reading headers only (and lookups)."""
    for table, table_mapping in mapping.tables.items():
        source = mapping.tables["orders"] if table_mapping.derive else table_mapping
        con = _connection(mapping, source.reader)
        try:
            for path in source.files:
                try:
                    header = read_source(path, source.reader, header_only=True)
                except Exception as exc:  # polars / OS errors: name the key and the file
                    raise MappingError(
                        f"tables.{source.table}.files", f"cannot read {path}: {exc}"
                    ) from exc
                con.register("src", header.to_arrow())
                columns = _resolve(table_mapping.columns, header.columns)
                _check_columns(con, f"tables.{table}", path, columns, header.columns)
                con.unregister("src")
        finally:
            con.close()


def _normalise_sql(name: str, spec: ColumnSpec, dtype: str, reader: ReaderOptions) -> str:
    """Contract value as text: timestamps and numbers normalised when they can be read,
    anything unreadable kept exactly as it came (ingestion quarantines it with the value)."""
    col = _quote_identifier(name)
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


def _evaluate(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    columns: dict[str, ColumnMapping],
    reader: ReaderOptions,
    extra: dict[str, ColumnMapping] | None = None,
) -> pl.DataFrame:
    """The contract columns (text) of one file's rows, plus lineage and `__day`."""
    extra = extra or {}
    con.register("src", frame.to_arrow())
    try:
        relation = con.sql(_select_sql(columns, extra))
        types = dict(zip(relation.columns, [str(t) for t in relation.types], strict=True))
        items = []
        for spec in TABLE_SPECS[table]:
            if spec.name in columns:
                sql = _normalise_sql(spec.name, spec, types[spec.name], reader)
            else:
                sql = "null::varchar"
            items.append(f"{sql} as {_quote_identifier(spec.name)}")
        users = {c.name: c for c in TABLE_SPECS["users"]}
        for name in extra:
            sql = _normalise_sql("__user_" + name, users[name], types["__user_" + name], reader)
            items.append(f"{sql} as {_quote_identifier('__user_' + name)}")
        items += [SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN]
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
        pl.col(c).cast(pl.String) for c in result.columns if c != SOURCE_LINE_COLUMN
    )


def _day_expr(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.coalesce(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%d", strict=False, time_unit="us"),
    ).dt.date()


def _check_timestamps(key: str, frame: pl.DataFrame, column: str, reader: ReaderOptions) -> None:
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


@dataclass
class _Staged:
    frame: pl.DataFrame  # contract text columns + lineage + __day
    files: dict[str, int]


def _stage_table(
    con: duckdb.DuckDBPyConnection,
    mapping: TableMapping,
    extra: dict[str, ColumnMapping] | None = None,
) -> _Staged:
    frames, files = [], {}
    key = f"tables.{mapping.table}"
    for path in mapping.files:
        try:
            source = read_source(path, mapping.reader)
        except Exception as exc:  # a ragged line, a bad byte: the file, not a row, is wrong
            raise MappingError(f"{key}.files", f"cannot read {path}: {exc}") from exc
        files[str(path)] = source.height
        columns = _resolve(mapping.columns, source.columns)
        extra_resolved = _resolve(extra, source.columns) if extra else {}
        try:
            frames.append(
                _evaluate(con, mapping.table, source, columns, mapping.reader, extra_resolved)
            )
        except duckdb.Error as exc:  # e.g. a lookup subquery that returns two rows
            message = str(exc).splitlines()[0]
            raise MappingError(f"{key}.columns", f"evaluating on {path} failed: {message}") from exc
    frame = pl.concat(frames, how="vertical")
    column = next((c.name for c in TABLE_SPECS[mapping.table] if c.partition_time), None)
    day = _day_expr(column) if column else pl.lit(None, dtype=pl.Date)
    frame = frame.with_columns(day.alias("__day"))
    if column:
        _check_timestamps(f"tables.{mapping.table}.columns.{column}", frame, column, mapping.reader)
    return _Staged(frame, files)


def _derive_users(orders: pl.DataFrame, extra: list[str]) -> pl.DataFrame:
    """One user per user_id from the first (earliest readable) order, with its lineage."""
    return (
        orders.filter(
            pl.col("__day").is_not_null()
            & pl.col("user_id").is_not_null()
            & (pl.col("user_id").str.strip_chars() != "")
        )
        .with_columns(pl.col("user_id").str.strip_chars())
        .sort("__day", "ordered_at", SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN)
        .unique("user_id", keep="first", maintain_order=True)
        .select(
            "user_id",
            pl.col("ordered_at").alias("signup_at"),
            *[pl.col("__user_" + name).alias(name) for name in extra],
            SOURCE_FILE_COLUMN,
            SOURCE_LINE_COLUMN,
            "__day",
        )
    )


def _place_undated(frame: pl.DataFrame, today: date) -> tuple[pl.DataFrame, int]:
    """Rows without a usable day (or dated after today) go to the table's latest day."""
    valid = frame.filter(pl.col("__day").is_not_null() & (pl.col("__day") <= today))["__day"]
    latest = valid.max() if valid.len() else today
    undated = pl.col("__day").is_null() | (pl.col("__day") > today)
    count = frame.filter(undated).height
    return frame.with_columns(
        pl.when(undated).then(pl.lit(latest)).otherwise("__day").alias("__day")
    ), count


def stage(
    mapping: SourceMapping, today: date | None = None
) -> tuple[dict[str, pl.DataFrame], dict[str, TableStage]]:
    """Read and map every table in memory (nothing written): frames by table, with `__day`."""
    today = today or datetime.now(UTC).date()
    staged: dict[str, _Staged] = {}
    users = mapping.tables.get("users")
    derived_extra = users.columns if users is not None and users.derive else {}
    for table in ("orders", "users", "order_items", "events"):
        table_mapping = mapping.tables.get(table)
        if table_mapping is None or table_mapping.derive:
            continue
        source = table_mapping
        con = _connection(mapping, source.reader)
        try:
            staged[table] = _stage_table(con, source, derived_extra if table == "orders" else None)
        finally:
            con.close()
    if users is not None and users.derive:
        orders = staged["orders"]
        staged["users"] = _Staged(_derive_users(orders.frame, list(derived_extra)), {})
    if "order_items" in staged:
        # items have no timestamp: they belong to their order's day
        order_days = (
            staged["orders"]
            .frame.filter(pl.col("__day").is_not_null())
            .group_by(pl.col("order_id").str.strip_chars())
            .agg(pl.col("__day").min().alias("__order_day"))
        )
        items = staged["order_items"].frame.drop("__day")
        items = items.join(
            order_days,
            left_on=pl.col("order_id").str.strip_chars(),
            right_on="order_id",
            how="left",
            maintain_order="left",
        )
        if "order_id_right" in items.columns:
            items = items.drop("order_id_right")
        staged["order_items"] = _Staged(
            items.rename({"__order_day": "__day"}), staged["order_items"].files
        )

    frames: dict[str, pl.DataFrame] = {}
    summaries: dict[str, TableStage] = {}
    for table, item in staged.items():
        frame, undated = _place_undated(item.frame, today)
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.String).alias(c.name)
            for c in TABLE_SPECS[table]
            if c.name not in frame.columns
        ).select(
            *[c.name for c in TABLE_SPECS[table]], SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN, "__day"
        )
        frames[table] = frame
        days = frame["__day"]
        summaries[table] = TableStage(
            table=table,
            rows=frame.height,
            days=days.n_unique() if frame.height else 0,
            first_day=days.min() if frame.height else None,
            last_day=days.max() if frame.height else None,
            undated_rows=undated,
            files=item.files,
        )
    return frames, summaries


# ------------------------------------------------------------------------------- writing


def _mapped_partitions(landing: Path, table: str) -> dict[date, Path]:
    found = {}
    table_dir = landing / table
    if table_dir.is_dir():
        for path in table_dir.glob(f"date=*/{MAPPED_FILE}"):
            found[date.fromisoformat(path.parent.name[5:])] = path
    return found


def check_landing_is_ours(landing: Path) -> None:
    """Refuse to mix mapped data with other landing files (e.g. generated sample data)."""
    for table in CONTRACT_TABLES:
        table_dir = landing / table
        if not table_dir.is_dir():
            continue
        for path in table_dir.glob("date=*/*"):
            if path.name != MAPPED_FILE and not path.name.startswith("."):
                raise MappingError(
                    "sources",
                    f"{landing} holds landing files the mapping did not write (e.g. {path}); "
                    "use a separate STRATA_HOME for mapped sources",
                )


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=False)
    return buffer.getvalue()


def write_landing(
    frames: dict[str, pl.DataFrame], summaries: dict[str, TableStage], landing: Path, mapping: Path
) -> StageSummary:
    """Write each day's rows where they changed; remove days the sources no longer have."""
    written = unchanged = removed = 0
    for table in CONTRACT_TABLES:
        existing = _mapped_partitions(landing, table)
        frame = frames.get(table)
        new_days: set[date] = set()
        if frame is not None and frame.height:
            for (day,), part in (
                frame.sort("__day", SOURCE_FILE_COLUMN, SOURCE_LINE_COLUMN)
                .partition_by("__day", as_dict=True, maintain_order=True)
                .items()
            ):
                new_days.add(day)
                target = landing / table / f"date={day.isoformat()}" / MAPPED_FILE
                data = _parquet_bytes(part.drop("__day"))
                if target.exists() and target.read_bytes() == data:
                    unchanged += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{MAPPED_FILE}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)  # ingestion never sees a half-written file
                written += 1
        for day, path in existing.items():
            if day not in new_days:
                path.unlink()
                removed += 1
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()
    manifest = {
        "mapping": str(mapping),
        "staged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": {
            t: {
                "rows": s.rows,
                "days": s.days,
                "first_day": s.first_day.isoformat() if s.first_day else None,
                "last_day": s.last_day.isoformat() if s.last_day else None,
                "undated_rows": s.undated_rows,
                "files": s.files,
            }
            for t, s in summaries.items()
        },
    }
    landing.mkdir(parents=True, exist_ok=True)
    (landing / MAPPING_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return StageSummary(summaries, written, unchanged, removed)


def stage_sources(mapping_file: Path, landing: Path, today: date | None = None) -> StageSummary:
    """Validate the mapping, map every table in memory, then write the landing partitions."""
    mapping = load_mapping(mapping_file)
    validate(mapping)
    check_landing_is_ours(landing)
    frames, summaries = stage(mapping, today)
    return write_landing(frames, summaries, landing, mapping.path)
