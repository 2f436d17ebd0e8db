"""`strata report`: one self-contained HTML file from the published serving copy.

Everything is inside the file (styles, and charts as data-URI PNGs): it opens offline, from a
mail attachment or a shared drive, with no server and nothing fetched. It reads only the
serving file BI reads, so it shows exactly what the dashboards show, for one snapshot date.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from dagster_project.lib.core.warehouse import table_exists
from dagster_project.lib.reporting import charts
from dagster_project.lib.reporting.published import mart_rows, published_charts

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; } .fail { color: #b00020; }
img { max-width: 100%; display: block; margin: .5rem 0 1.5rem; }
"""


@dataclass(frozen=True)
class Report:
    path: Path
    snapshot_date: date
    images: int
    tables: int


def _table(frame: pl.DataFrame, table_id: str, fail_column: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        failed = fail_column is not None and row.get(fail_column) is False
        cells = []
        for value in row.values():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            text = _number(value) if isinstance(value, float) else "" if value is None else value
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(str(text))}</td>")
        row_class = ' class="fail"' if failed else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _read(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pl.DataFrame:
    return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()


def build_report(serving_db: Path, target: Path, day: date | None = None) -> Report:
    """Write the report for ``day`` (default: the latest snapshot) to ``target``."""
    con = duckdb.connect(str(serving_db), read_only=True)
    try:
        if not table_exists(con, "marts", "segment_summary_daily"):
            raise ValueError(f"{serving_db} has no marts.segment_summary_daily: run strata first")
        snapshots = [
            row[0]
            for row in con.execute(
                "select distinct snapshot_date from marts.segment_summary_daily order by 1"
            ).fetchall()
        ]
        day = day or snapshots[-1]
        if day not in snapshots:
            raise ValueError(
                f"no snapshot {day} in {serving_db}; it has {snapshots[0]} .. {snapshots[-1]}"
            )
        segments = _read(
            con,
            """
            select s.scheme, s.segment, s.segment_label as label_zh, s.users, s.share,
                   s.mean_clv_12m, s.mean_p_alive, p.playbook, p.recommended_actions
            from marts.segment_summary_daily as s
            left join marts.segment_playbook as p on p.scheme = s.scheme and p.segment = s.segment
            where s.snapshot_date = ?
            order by s.scheme, s.users desc
            """,
            [day],
        )
        clusters = _read(
            con,
            "select distinct cluster_id, cluster_name_en, cluster_name_zh "
            "from marts.user_segments_daily where snapshot_date = ? order by cluster_id",
            [day],
        )
        quality = (
            _read(
                con,
                "select model_name, model_version, metric, value, threshold, comparison, passed, "
                "note from marts.model_quality where trained_as_of <= ? "
                "order by trained_as_of desc, model_name, metric",
                [day],
            )
            if table_exists(con, "marts", "model_quality")
            else pl.DataFrame()
        )
        runs = mart_rows(con, "data_quality_runs", day)
        pictures = published_charts(con, day)
        rf = _read(
            con,
            "select s.user_id, s.r_score, s.f_score, v.clv_12m "
            "from marts.user_segments_daily as s join marts.user_value_daily as v "
            "using (user_id, snapshot_date) where s.snapshot_date = ?",
            [day],
        )
    finally:
        con.close()

    if quality.height:  # sorted newest first: each model's first version is its newest
        newest = quality.group_by("model_name", maintain_order=True).agg(
            pl.col("model_version").first()
        )
        quality = quality.join(newest, on=["model_name", "model_version"], how="semi")
    rf_chart = charts.rf_heatmap(rf, value_column="clv_12m", value_label="12-month CLV")
    images = [_image(png, caption) for png, caption in pictures.values()]
    images.insert(2, _image(rf_chart, "users and 12-month CLV per R x F cell"))
    data_quality = pl.DataFrame()
    if runs is not None:
        data_quality = (
            charts.latest_quality_records(runs)
            .filter(pl.col("partition_date") == day)
            .select(
                "relation",
                "partition_date",
                "rows_landed",
                "rows_accepted",
                "rows_quarantined",
                "reject_share",
                "suites_passed",
            )
            .sort("relation")
        )
    sections = [
        f"<h1>Strata segments on {day}</h1>",
        f'<p class="sub">From {html.escape(str(serving_db))}; every figure is the published '
        "tables' own.</p>",
        "<h2>Segments (English key, Chinese label), size, value and what to do</h2>",
        _table(segments, "segments"),
        "<h2>Clusters</h2>",
        _table(clusters, "clusters"),
        "<h2>Pictures</h2>",
        *images,
        "<h2>Model quality (newest versions)</h2>",
        _table(quality, "model-quality", fail_column="passed"),
        "<h2>Data quality on the snapshot day</h2>",
        _table(data_quality, "data-quality"),
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Strata report {day}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return Report(target, day, images=len(images), tables=4)
