"""Reading a team's export files (CSV, Parquet, whitespace text) with the mapping's options."""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from dagster_project.lib.ingestion.mapping.spec import FILE_COLUMN, LINE_COLUMN, ReaderOptions


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
