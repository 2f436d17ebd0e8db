"""Charts for Dagster metadata and the report: real PNGs, drawn offline, the same bytes for the
same figures, embedded in markdown as data URIs."""

from __future__ import annotations

import base64
import io
import re

import polars as pl

from dagster_project.lib.reporting.charts import (
    DPI,
    calibration_chart,
    k_selection_chart,
    markdown_image,
    rf_heatmap,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decoded_size(png: bytes) -> tuple[int, int]:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    return pixels.shape[1], pixels.shape[0]


CANDIDATES = [
    {"k": 3, "silhouette": 0.31, "calinski_harabasz": 210.0, "davies_bouldin": 1.1},
    {"k": 4, "silhouette": 0.42, "calinski_harabasz": 260.0, "davies_bouldin": 0.9, "chosen": True},
    {"k": 5, "silhouette": 0.37, "calinski_harabasz": None, "davies_bouldin": 1.0},
]


def test_k_selection_chart_is_a_stable_png_of_the_figure_size() -> None:
    png = k_selection_chart(CANDIDATES)
    assert png.startswith(PNG_MAGIC)
    assert decoded_size(png) == (10 * DPI, 3 * DPI)
    assert k_selection_chart(CANDIDATES) == png  # no timestamp inside: reruns give equal bytes
    assert k_selection_chart(CANDIDATES[:2]) != png


def test_rf_heatmap_draws_users_and_revenue_per_cell() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "r_score": [1, 1, 5, None],  # d: a non-customer, without scores
            "f_score": [2, 2, 5, None],
            "monetary": [10.0, 30.0, 900.0, 0.0],
        }
    )
    png = rf_heatmap(frame)
    assert png.startswith(PNG_MAGIC) and decoded_size(png) == (10 * DPI, 4 * DPI)
    assert rf_heatmap(frame.with_columns(pl.col("monetary") * 2)) != png  # revenue is drawn


def test_calibration_chart_from_backtest_rows_and_none_without_them() -> None:
    rows = []
    for decile, (predicted, actual) in enumerate([(0.1, 0.12), (0.5, 0.45), (0.9, 0.8)], 1):
        for metric, value in (("predicted_rate", predicted), ("actual_rate", actual)):
            rows.append(("all", "churn_calibration", "gbm", f"{decile:02d}", metric, value))
    for group, actual, predicted in (("0", 0.2, 0.25), ("1", 0.6, 0.5), ("7+", 4.0, 3.5)):
        rows.append(("all", "forecast_by_frequency", "actual", group, "actual_mean", actual))
        rows.append(("all", "forecast_by_frequency", "bgnbd", group, "predicted_mean", predicted))
    rows.append(("value_tier", "churn_calibration", "gbm", "01", "predicted_rate", 0.3))
    columns = ["segment_scheme", "section", "model", "bucket", "metric", "value"]
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    png = calibration_chart(frame)
    assert png is not None and png.startswith(PNG_MAGIC)
    assert calibration_chart(frame.filter(pl.col("section") == "run")) is None


def test_markdown_embeds_the_png_as_a_data_uri() -> None:
    png = k_selection_chart(CANDIDATES)
    text = markdown_image(png, "k selection", "Scores by k.")
    assert text.startswith("Scores by k.\n\n![k selection](data:image/png;base64,")
    data = re.search(r"base64,([A-Za-z0-9+/=]+)\)$", text).group(1)
    assert base64.b64decode(data) == png


def test_serving_charts_draw_sizes_migration_value_and_quarantine() -> None:
    from datetime import date

    from dagster_project.lib.reporting.charts import (
        migration_chart,
        quarantine_chart,
        segment_sizes_chart,
        value_by_segment_chart,
    )

    days = [date(2024, 3, 30), date(2024, 3, 31)]
    summary = pl.DataFrame(
        {
            "snapshot_date": [days[0], days[0], days[1], days[1]],
            "scheme": ["value_tier"] * 4,
            "segment": ["important_value", "general_keep"] * 2,
            "users": [10, 20, 12, 18],
            "mean_clv_12m": [900.0, 40.0, 950.0, None],
            "mean_p_alive": [0.9, 0.4, 0.92, 0.35],
        }
    )
    migration = pl.DataFrame(
        {
            "snapshot_date": [days[1]] * 3,
            "scheme": ["value_tier"] * 3,
            "from_segment": ["important_value", "important_value", "general_keep"],
            "to_segment": ["important_value", "general_keep", "general_keep"],
            "users": [9, 1, 18],
        }
    )
    runs = pl.DataFrame(
        {
            "relation": ["raw.orders", "raw.orders", "raw.events"],
            "partition_date": [days[0], days[0], days[1]],
            "rows_landed": [100, 100, 50],
            "rows_quarantined": [9, 3, 0],
            "quarantined_by_kind": ['{"unparseable": 9}', '{"unparseable": 3}', "{}"],
            "recorded_at": [1, 2, 1],  # the later record of a day wins
        }
    )
    for png in (
        segment_sizes_chart(summary, "value_tier"),
        migration_chart(migration, "value_tier"),
        value_by_segment_chart(summary, "value_tier"),
        quarantine_chart(runs),
    ):
        assert png is not None and png.startswith(PNG_MAGIC)
    assert quarantine_chart(runs) != quarantine_chart(runs.with_columns(pl.col("recorded_at") * -1))
    assert segment_sizes_chart(summary, "cluster") is None
    assert migration_chart(migration, "cluster") is None
    assert quarantine_chart(runs.head(0)) is None
