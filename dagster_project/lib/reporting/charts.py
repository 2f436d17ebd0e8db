"""Charts as PNG bytes, for Dagster metadata (markdown with an embedded image: Dagster has no
image type) and the HTML report. Rendered offline with matplotlib's Agg backend: nothing is
fetched when the chart is drawn or viewed.

Each function takes the small per-model or per-segment frame the asset already has (never
user-level rows beyond one snapshot) and returns a PNG; :func:`markdown_image` embeds one.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import polars as pl

DPI = 96


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: render to memory
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=DPI)


def _png(plt: Any, figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    # metadata=None: no creation date in the file, so the same figures give the same bytes
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str, caption: str = "") -> str:
    """Markdown that shows ``png`` inline (a data URI), with an optional caption above it."""
    data = base64.b64encode(png).decode("ascii")
    text = f"{caption}\n\n" if caption else ""
    return f"{text}![{alt}](data:image/png;base64,{data})"


def k_selection_chart(candidates: Sequence[dict[str, Any]]) -> bytes:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin by k (one panel each), the chosen k
    marked; ``candidates`` are the clusterer's candidate scores (k, the three scores, chosen)."""
    ks = [int(c["k"]) for c in candidates]
    chosen = next((int(c["k"]) for c in candidates if c.get("chosen")), None)
    panels = (
        ("silhouette", "silhouette (higher is better)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)"),
    )
    plt, figure = _figure(10, 3)
    for i, (key, title) in enumerate(panels, start=1):
        axis = figure.add_subplot(1, 3, i)
        values = [c.get(key) for c in candidates]
        axis.plot(ks, [float("nan") if v is None else v for v in values], marker="o")
        if chosen is not None:
            axis.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen k = {chosen}")
            axis.legend(loc="best", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("k")
        axis.set_xticks(ks)
    return _png(plt, figure)


def rf_heatmap(
    frame: pl.DataFrame, value_column: str = "monetary", value_label: str = "revenue"
) -> bytes:
    """Users and the sum of ``value_column`` (revenue by default) per R x F cell: ``frame`` has
    r_score, f_score and that column per user (non-customers, without scores, are left out)."""
    scored = frame.filter(pl.col("r_score").is_not_null() & pl.col("f_score").is_not_null())
    r_levels = sorted(scored["r_score"].unique().to_list()) or [1]
    f_levels = sorted(scored["f_score"].unique().to_list()) or [1]
    cells = scored.group_by("r_score", "f_score").agg(
        pl.len().alias("users"), pl.col(value_column).fill_null(0).sum().alias("value")
    )
    plt, figure = _figure(10, 4)
    for i, (value, title) in enumerate((("users", "users"), ("value", value_label)), start=1):
        grid = [[0.0] * len(f_levels) for _ in r_levels]
        for row in cells.iter_rows(named=True):
            grid[r_levels.index(row["r_score"])][f_levels.index(row["f_score"])] = float(row[value])
        axis = figure.add_subplot(1, 2, i)
        image = axis.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        figure.colorbar(image, ax=axis)
        for r, line in enumerate(grid):
            for f, cell in enumerate(line):
                axis.text(f, r, f"{cell:,.0f}", ha="center", va="center", fontsize=7, color="w")
        axis.set_xticks(range(len(f_levels)), [str(x) for x in f_levels])
        axis.set_yticks(range(len(r_levels)), [str(x) for x in r_levels])
        axis.set_xlabel("F score")
        axis.set_ylabel("R score")
        axis.set_title(f"{title} per R x F cell", fontsize=9)
    return _png(plt, figure)


def calibration_chart(backtest_rows: pl.DataFrame) -> bytes | None:
    """From one backtest's rows (marts.value_backtests, all segments): churn risk predicted vs
    observed by score decile, and purchases predicted vs actual by calibration-frequency group.
    None when the backtest has neither (too little history)."""
    everyone = backtest_rows.filter(pl.col("segment_scheme") == "all")
    churn = everyone.filter(pl.col("section") == "churn_calibration")
    forecast = everyone.filter(pl.col("section") == "forecast_by_frequency")
    if churn.height == 0 and forecast.height == 0:
        return None
    plt, figure = _figure(10, 4)
    axis = figure.add_subplot(1, 2, 1)
    for model in sorted(set(churn["model"])):
        rows = churn.filter(pl.col("model") == model)
        pivot = {(b, m): v for b, m, v in rows.select("bucket", "metric", "value").iter_rows()}
        buckets = sorted({b for b, _ in pivot})
        predicted = [pivot.get((b, "predicted_rate")) for b in buckets]
        actual = [pivot.get((b, "actual_rate")) for b in buckets]
        axis.plot(predicted, actual, marker="o", label=model)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    axis.set_xlabel("predicted churn risk (decile mean)")
    axis.set_ylabel("observed churn rate")
    axis.set_title("churn calibration by score decile", fontsize=9)
    axis.legend(loc="best", fontsize=7)
    axis = figure.add_subplot(1, 2, 2)
    groups = [g for g in dict.fromkeys(forecast["bucket"].to_list())]
    for model in sorted(set(forecast["model"])):
        rows = forecast.filter(pl.col("model") == model)
        by_group = dict(zip(rows["bucket"], rows["value"], strict=True))
        style = {"linestyle": "-", "linewidth": 2.5} if model == "actual" else {"marker": "o"}
        axis.plot(range(len(groups)), [by_group.get(g) for g in groups], label=model, **style)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_xlabel("repeat purchases before the cut")
    axis.set_ylabel("mean purchases in the holdout")
    axis.set_title("forecast vs actual by frequency group", fontsize=9)
    axis.legend(loc="best", fontsize=7)
    return _png(plt, figure)


def segment_sizes_chart(summary: pl.DataFrame, scheme: str) -> bytes | None:
    """Users per segment of one scheme over the snapshots (marts.segment_summary_daily rows:
    snapshot_date, scheme, segment, users). Segment keys, not labels: the default font has no
    CJK glyphs."""
    rows = summary.filter(pl.col("scheme") == scheme).sort("snapshot_date")
    if rows.height == 0:
        return None
    plt, figure = _figure(8, 4)
    axis = figure.add_subplot(1, 1, 1)
    for segment in sorted(set(rows["segment"].cast(pl.String).to_list()), key=str):
        part = rows.filter(pl.col("segment").cast(pl.String) == segment)
        axis.plot(
            part["snapshot_date"].to_list(), part["users"].to_list(), marker="o", label=segment
        )
    axis.set_title(f"users per {scheme} segment by snapshot", fontsize=9)
    axis.set_ylabel("users")
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    figure.autofmt_xdate()
    return _png(plt, figure)


def migration_chart(migration: pl.DataFrame, scheme: str) -> bytes | None:
    """Users from each segment (rows) to each segment (columns) between the latest snapshot and
    the one before (marts.segment_migration_daily rows of one scheme)."""
    rows = migration.filter(pl.col("scheme") == scheme)
    if rows.height == 0:
        return None
    rows = rows.filter(pl.col("snapshot_date") == rows["snapshot_date"].max())
    names = sorted(
        set(rows["from_segment"].cast(pl.String).to_list())
        | set(rows["to_segment"].cast(pl.String).to_list()),
        key=str,
    )
    grid = [[0.0] * len(names) for _ in names]
    for source, target, users in rows.select(
        pl.col("from_segment").cast(pl.String), pl.col("to_segment").cast(pl.String), "users"
    ).iter_rows():
        grid[names.index(source)][names.index(target)] += float(users)
    plt, figure = _figure(8, 6)
    axis = figure.add_subplot(1, 1, 1)
    image = axis.imshow(grid, cmap="Blues")
    figure.colorbar(image, ax=axis)
    for r, line in enumerate(grid):
        for c, users in enumerate(line):
            if users:
                axis.text(c, r, f"{users:,.0f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("to (latest snapshot)")
    axis.set_ylabel("from (previous snapshot)")
    day = rows["snapshot_date"].max()
    axis.set_title(f"{scheme} migration into {day}", fontsize=9)
    return _png(plt, figure)


def value_by_segment_chart(summary: pl.DataFrame, scheme: str) -> bytes | None:
    """Mean 12-month CLV and mean P(alive) per segment of one scheme on the latest snapshot."""
    rows = summary.filter(pl.col("scheme") == scheme)
    if rows.height == 0:
        return None
    rows = rows.filter(pl.col("snapshot_date") == rows["snapshot_date"].max()).sort("segment")
    names = rows["segment"].cast(pl.String).to_list()
    plt, figure = _figure(10, 4)
    for i, (column, title) in enumerate(
        (("mean_clv_12m", "mean 12-month CLV"), ("mean_p_alive", "mean P(alive)")), start=1
    ):
        axis = figure.add_subplot(1, 2, i)
        values = [0.0 if v is None else float(v) for v in rows[column].to_list()]
        axis.barh(names, values)
        axis.set_title(f"{title} by {scheme}", fontsize=9)
        axis.tick_params(axis="y", labelsize=7)
    return _png(plt, figure)


def latest_quality_records(quality_runs: pl.DataFrame) -> pl.DataFrame:
    """marts.data_quality_runs has a row per run, table and day: the latest of each table-day."""
    return quality_runs.sort("recorded_at").unique(["relation", "partition_date"], keep="last")


def quarantine_chart(quality_runs: pl.DataFrame) -> bytes | None:
    """Share of landed rows quarantined per day and table, and the quarantined rows by kind
    (marts.data_quality_runs; the latest record of each table and day)."""
    import json

    if quality_runs.height == 0:
        return None
    latest = latest_quality_records(quality_runs).sort("partition_date")
    kinds: dict[str, int] = {}
    for text in latest["quarantined_by_kind"].to_list():
        for kind, count in json.loads(text or "{}").items():
            kinds[kind] = kinds.get(kind, 0) + int(count)
    plt, figure = _figure(10, 4)
    axis = figure.add_subplot(1, 2, 1)
    for relation in sorted(set(latest["relation"])):
        part = latest.filter(pl.col("relation") == relation)
        share = part.select(
            pl.when(pl.col("rows_landed") > 0)
            .then(pl.col("rows_quarantined") / pl.col("rows_landed"))
            .otherwise(0.0)
        ).to_series()
        axis.plot(part["partition_date"].to_list(), share.to_list(), label=relation)
    axis.set_title("share of landed rows quarantined, by day", fontsize=9)
    axis.legend(loc="best", fontsize=7)
    figure.autofmt_xdate()
    axis = figure.add_subplot(1, 2, 2)
    names = sorted(kinds) or ["(none)"]
    axis.barh(names, [kinds.get(n, 0) for n in names])
    axis.set_title("quarantined rows by kind", fontsize=9)
    return _png(plt, figure)
