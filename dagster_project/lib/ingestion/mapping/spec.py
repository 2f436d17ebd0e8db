"""The mapping file: its keys, the dataclasses it loads into, and load_mapping (shape and files)."""

from __future__ import annotations

import codecs
import glob
import importlib.util
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from dagster_project.lib.core.spec_model import SpecError, parse_spec, spec_model
from dagster_project.lib.ingestion.contract import (
    CONTRACT_TABLES,
    TABLE_SPECS,
    ColumnSpec,
)

MAPPED_FILE = "mapped.parquet"


FORMATS = ("csv", "parquet", "whitespace")


DERIVE_FIRST_ORDER = "first_order"


DERIVE_FIRST_EVENT = "first_event"


# A derived users table: the table it is derived from and that table's timestamp (signup_at).
DERIVES = {DERIVE_FIRST_ORDER: ("orders", "ordered_at"), DERIVE_FIRST_EVENT: ("events", "event_at")}


# `money: none`: a source without money (a clickstream whose purchases carry no amount). Its
# orders have no amount and no currency (the staged files lack both columns, so ingestion does
# not require them); money features, Gamma-Gamma and CLV are then NULL downstream.
MONEY_NONE = "none"
MONEY_COLUMNS = ("amount", "currency")


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


TABLE_KEYS = READER_KEYS | {
    "files",
    "columns",
    "derive",
    "grain",
    "items",
    "returns",
    "where",
    "money",
}


# The status of a return or credit note: its amount is the money given back (positive), which
# Strata subtracts from the user's revenue (marts.fct_orders.net_amount).
RETURN_STATUS = "returned"
RETURN_FLAG = "__return"  # the staged rows' flag: the row is a return


# An orders file's grain: one row per order, or one row per order line (most retail exports:
# Online Retail, Shopify, ERPs), from which Strata builds the orders and their order_items.
GRAINS = ("order", "line")


LOOKUP_KEYS = READER_KEYS | {"files"}


TOP_KEYS = {"version", "tables", "lookups", "guests_count_as_rejects"}


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
            return quote_identifier(self.text)
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
    grain: str = "order"
    items: dict[str, ColumnMapping] = field(default_factory=dict)  # line grain: order_items
    returns: ColumnMapping | None = None  # orders: which rows are returns / credit notes
    where: ColumnMapping | None = None  # the rows of the files that are this table's
    priced: bool = True  # False: `money: none`, orders without amount and currency

    @property
    def absent_columns(self) -> tuple[str, ...]:
        """Contract columns the staged files leave out (not null: absent), so ingestion does
        not require them: the money of a source without money."""
        return () if self.priced else MONEY_COLUMNS


@dataclass(frozen=True)
class SourceMapping:
    path: Path
    tables: dict[str, TableMapping]
    lookups: dict[str, TableMapping] = field(default_factory=dict)
    # guests (rows without a user id) count toward the reject share (default: they do not)
    guests_count_as_rejects: bool = False


@dataclass(frozen=True)
class TableStage:
    table: str
    rows: int
    days: int
    first_day: date | None
    last_day: date | None
    undated_rows: int
    files: dict[str, int]  # source file -> rows read
    unknown_countries: dict[str, int] = field(default_factory=dict)  # value -> rows, left empty


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


def quote_identifier(name: str) -> str:
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
    orders_spec = tables_spec.get("orders")
    line_grain = isinstance(orders_spec, dict) and orders_spec.get("grain") == "line"
    if line_grain and "order_items" in tables_spec:
        raise MappingError(
            "tables.order_items",
            "comes from the order lines (tables.orders.items) at line grain",
        )
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
    users = tables.get("users")
    if users is not None and users.derive:
        parent = DERIVES[users.derive][0]
        if parent not in tables:
            raise MappingError(
                "tables.users.derive", f"{users.derive} needs tables.{parent} in the mapping"
            )
    guests = spec.get("guests_count_as_rejects", False)
    if not isinstance(guests, bool):
        raise MappingError("guests_count_as_rejects", f"must be true or false, got {guests!r}")
    return SourceMapping(path=path, tables=tables, lookups=lookups, guests_count_as_rejects=guests)


def _columns(
    table: str, spec: Any, key: str, exclude: tuple[str, ...] = ()
) -> dict[str, ColumnMapping]:
    if not isinstance(spec, dict):
        raise MappingError(key, "must map contract columns to source columns")
    contract = [c.name for c in TABLE_SPECS[table] if c.name not in exclude]
    columns: dict[str, ColumnMapping] = {}
    for name, value in spec.items():
        if name not in contract:
            raise MappingError(
                f"{key}.{name}", f"not a column of {table} (expected: {', '.join(contract)})"
            )
        kind, text = _column(value, f"{key}.{name}")
        columns[name] = ColumnMapping(kind, text)
    return columns


def _require(
    table: str, columns: dict[str, ColumnMapping], key: str, exclude: tuple[str, ...] = ()
) -> None:
    for column in TABLE_SPECS[table]:
        if _mapping_required(table, column) and column.name not in (*columns, *exclude):
            hint = " (a constant is fine: {value: USD})" if column.name == "currency" else ""
            raise MappingError(f"{key}.{column.name}", f"required, not mapped{hint}")


def _grain(
    table: str, spec: dict[str, Any], key: str, priced: bool
) -> tuple[str, dict[str, ColumnMapping]]:
    """The orders' grain, and at line grain the order_items columns of each line."""
    grain = spec.get("grain", "order")
    if grain not in GRAINS:
        raise MappingError(f"{key}.grain", f"must be one of {', '.join(GRAINS)}, got {grain!r}")
    if grain != "order" and table != "orders":
        raise MappingError(f"{key}.grain", "only orders have a grain")
    if grain == "order":
        if "items" in spec:
            raise MappingError(f"{key}.items", "only at grain: line (the rows are order lines)")
        return grain, {}
    if not priced:
        # the lines of a source without money only group purchases into orders
        if "items" in spec:
            raise MappingError(
                f"{key}.items",
                "order_items need a unit price, which a source with money: none lacks",
            )
        return grain, {}
    # the line's order key is the order's: items never map order_id themselves
    items = _columns("order_items", spec.get("items") or {}, f"{key}.items", ("order_id",))
    _require("order_items", items, f"{key}.items", ("order_id",))
    return grain, items


def _table(table: str, spec: dict[str, Any], key: str, base_dir: Path) -> TableMapping:
    columns = _columns(table, spec.get("columns") or {}, f"{key}.columns")
    priced = _money(table, spec, key, columns)
    grain, items = _grain(table, spec, key, priced)
    returns = _returns(table, spec, key)
    if returns is not None and not priced:
        raise MappingError(f"{key}.returns", "returns give money back: not with money: none")
    where = _condition(spec, "where", key, "e.g. \"event = 'transaction'\"")

    derive = spec.get("derive")
    if derive is not None:
        if table != "users" or derive not in DERIVES:
            raise MappingError(
                f"{key}.derive",
                f"only users can be derived, with derive: {' or '.join(DERIVES)}",
            )
        parent = DERIVES[derive][0]
        for name in ("files", "where"):
            if name in spec:
                raise MappingError(f"{key}.{name}", f"a derived table reads the {parent} rows")
        for name in ("user_id", "signup_at"):
            if name in columns:
                raise MappingError(
                    f"{key}.columns.{name}", f"comes from the {parent} when users are derived"
                )
        return TableMapping(table, (), "", ReaderOptions(), columns, derive)

    _require(table, columns, f"{key}.columns", () if priced else MONEY_COLUMNS)
    files, pattern = _files(spec, key, base_dir)
    return TableMapping(
        table,
        files,
        pattern,
        _reader(spec, key),
        columns,
        None,
        grain,
        items,
        returns,
        where,
        priced,
    )


def _money(table: str, spec: dict[str, Any], key: str, columns: dict[str, ColumnMapping]) -> bool:
    """Whether the table's rows carry money (`money: none`: orders without amount/currency)."""
    if "money" not in spec:
        return True
    if table != "orders":
        raise MappingError(f"{key}.money", "only orders have money")
    if spec["money"] != MONEY_NONE:
        raise MappingError(
            f"{key}.money",
            f"the only value is none (a source without money), got {spec['money']!r}",
        )
    for name in MONEY_COLUMNS:
        if name in columns:
            raise MappingError(f"{key}.columns.{name}", "not with money: none (the rows have none)")
    return False


def _condition(spec: dict[str, Any], name: str, key: str, example: str) -> ColumnMapping | None:
    """A SQL condition over the source row (`returns:`, `where:`), or None when not given."""
    if name not in spec:
        return None
    value = spec[name]
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"{key}.{name}", f"a SQL condition over the source row, {example}")
    return ColumnMapping("expr", value)


def _returns(table: str, spec: dict[str, Any], key: str) -> ColumnMapping | None:
    """`returns: <condition>`: the rows (credit notes, negative lines) that are returns."""
    if "returns" not in spec:
        return None
    if table != "orders":
        raise MappingError(f"{key}.returns", "only orders have returns")
    return _condition(spec, "returns", key, "e.g. \"Invoice like 'C%'\" or num(Quantity) < 0")


def _mapping_required(table: str, column: ColumnSpec) -> bool:
    # currency may be absent from a landing file, but the orders suite needs one per order
    # (both amount and currency may be left out together: `money: none`)
    return column.required or (table, column.name) == ("orders", "currency")
