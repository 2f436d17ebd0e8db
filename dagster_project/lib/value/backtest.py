"""Backtests of the value models: fit as of a cut date C, predict (C, C + h], compare.

One backtest reproduces what Strata would have done on C: :func:`fit_value_models` on the
features as of C with the history as of C - W (so forecast and churn models are chosen exactly
as the daily run chooses them), then every model's predictions are compared with what the
customers did in the holdout. The result is a tidy long table (one row per metric and
breakdown; see :data:`BACKTEST_SCHEMA`) that the Dagster asset stores in marts.value_backtests,
plus the classic tracking chart (cumulative repeat purchases per week, actual vs predicted).

Order-level data never leaves DuckDB: the tracking chart reads two small aggregates
(customers per first-purchase day, repeat purchase days per week) from :func:`tracking_inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import polars as pl

from dagster_project.lib.value.clv import PurchaseModel
from dagster_project.lib.value.fit import ValueModels, chosen_model_value
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
    calibration_by_decile,
    frequency_groups,
    holdout_outcomes,
    mae,
    rmse,
    roc_auc,
)
from dagster_project.lib.value.spec import CHURN_CLASSIFIER, PROBABILISTIC, ValueSpec
from dagster_project.lib.value.training import fit_value_models

# marts.value_backtests, one row per (backtest, segment, section, model, bucket, metric).
BACKTEST_SCHEMA: dict[str, pl.DataType] = {
    "segment_scheme": pl.String(),  # 'all' or 'value_tier'
    "segment": pl.String(),  # 'all' or the value tier key
    "section": pl.String(),  # run, params, selection, forecast, forecast_by_frequency,
    # accuracy, churn, churn_calibration, tracking
    "model": pl.String(),  # bgnbd, pareto_nbd, chosen, gbm, probabilistic, actual, ''
    "bucket": pl.String(),  # 'all', frequency group 0..7+, decile 01..10, week end, param
    "metric": pl.String(),
    "value": pl.Float64(),
    "customers": pl.Int64(),
    "note": pl.String(),
}
ALL = "all"
CHOSEN = "chosen"


@dataclass
class BacktestResult:
    """Long metric rows, the weekly tracking table and headline figures for run metadata."""

    rows: pl.DataFrame
    tracking: pl.DataFrame
    headline: dict[str, Any]
    models: ValueModels
    notes: list[str] = field(default_factory=list)


class _Rows:
    """Collects metric rows for one segment of one backtest."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(
        self,
        section: str,
        model: str,
        bucket: str,
        metric: str,
        value: float | None,
        customers: int | None = None,
        segment: tuple[str, str] = (ALL, ALL),
        note: str | None = None,
    ) -> None:
        clean = None if value is None or not math.isfinite(float(value)) else float(value)
        self.items.append(
            {
                "segment_scheme": segment[0],
                "segment": segment[1],
                "section": section,
                "model": model,
                "bucket": bucket,
                "metric": metric,
                "value": clean,
                "customers": customers,
                "note": note,
            }
        )

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.items, schema=BACKTEST_SCHEMA)


# ---- inputs ------------------------------------------------------------------------------------


def tracking_inputs(
    con: duckdb.DuckDBPyConnection, cut: date, start: date, end: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Aggregates for the tracking chart, computed in DuckDB from marts.fct_orders.

    Returns (first_days, weekly): customers acquired on or before ``cut`` per first completed
    purchase day; and their repeat purchase days (completed-order days after the first) in
    (start, end] per week k, the week (cut + 7(k-1), cut + 7k]: weeks are aligned on the cut,
    so the cumulative count at the cut is exact.
    """
    first_days = con.sql(
        """
        with firsts as (
            select user_id, min(order_date) as first_date
            from marts.fct_orders where is_completed group by user_id
        )
        select first_date, count(*) as customers from firsts
        where first_date <= $cut group by first_date order by first_date
        """,
        params={"cut": cut},
    ).pl()
    weekly = con.sql(
        """
        with days as (
            select distinct user_id, order_date from marts.fct_orders where is_completed
        ),
        firsts as (select user_id, min(order_date) as first_date from days group by user_id),
        repeats as (
            select d.order_date from days as d join firsts as f using (user_id)
            where f.first_date <= $cut and d.order_date > f.first_date
              and d.order_date > $start and d.order_date <= $end
        )
        select cast(ceil(date_diff('day', $cut, order_date) / 7.0) as integer) as week,
               count(*) as repeat_purchases
        from repeats group by week order by week
        """,
        params={"cut": cut, "start": start, "end": end},
    ).pl()
    return first_days, weekly


# ---- the tracking chart ------------------------------------------------------------------------


def tracking_table(
    models: dict[str, PurchaseModel],
    first_days: pl.DataFrame,
    weekly: pl.DataFrame,
    start: date,
    cut: date,
    end: date,
    unit: float,
    conditional: dict[str, Callable[[float], float]] | None = None,
) -> pl.DataFrame:
    """Cumulative repeat purchases since ``start`` per week (week 0 ends on the cut): actual
    and predicted.

    Unconditional curves (the classic chart, Fader, Hardie & Lee 2005 fig. 2): each calibration
    customer acquired on f contributes E[X(e - f)] - E[X(max(0, start - f))] by week end e.
    ``conditional`` maps a label to a function of the horizon after ``cut`` (days) returning
    the summed conditional expectation; after the cut those columns continue the actual
    cumulative count at the cut with it.
    """
    first_week = math.ceil(((start - cut).days + 1) / 7)
    last_week = math.ceil((end - cut).days / 7)
    weeks = list(range(first_week, last_week + 1))
    week_ends = [min(cut + timedelta(days=7 * k), end) for k in weeks]
    counts = dict(zip(weekly["week"].to_list(), weekly["repeat_purchases"].to_list(), strict=True))
    actual = np.cumsum([counts.get(k, 0) for k in weeks]).astype(np.float64)
    out: dict[str, Any] = {"week": weeks, "week_end": week_ends, "actual": actual}
    f_days = np.array([(d - start).days for d in first_days["first_date"].to_list()], dtype=float)
    n_cust = first_days["customers"].to_numpy().astype(np.float64)
    for label, model in models.items():
        base = model.expected_number_of_purchases_up_to_time(np.maximum(0.0, -f_days) / unit)
        curve = []
        for e in week_ends:
            elapsed = float((e - start).days)
            age = np.maximum(0.0, elapsed - f_days) / unit
            gained = model.expected_number_of_purchases_up_to_time(age) - base
            curve.append(float(n_cust @ np.where(f_days <= elapsed, gained, 0.0)))
        out[label] = np.array(curve)
    at_cut = float(actual[weeks.index(0)]) if 0 in weeks else 0.0
    for label, predict in (conditional or {}).items():
        out[label] = [
            at_cut + predict(float((e - cut).days)) if e > cut else None for e in week_ends
        ]
    return pl.DataFrame(out, strict=False)


def _markdown(table: pl.DataFrame) -> str:
    """A small markdown table without pandas (the tracking chart for run metadata)."""
    cols = table.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table.iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"{v:,.1f}")
            elif v is None:
                cells.append("")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tracking_markdown(tracking: pl.DataFrame) -> str:
    return _markdown(tracking)


# ---- the backtest ------------------------------------------------------------------------------


def _predictions(
    outcomes: pl.DataFrame, model: PurchaseModel, horizon_days: float, unit: float
) -> pl.DataFrame:
    """E[purchases in horizon] and P(no purchase in horizon) per outcome row (via triples)."""
    triples = outcomes.select(X_COL, TX_COL, T_COL).unique().sort(X_COL, TX_COL, T_COL)
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    t = horizon_days / unit
    per_triple = triples.with_columns(
        pl.Series("pred", model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)),
        pl.Series("quiet", model.probability_no_purchase_up_to_time(t, x, tx, T)),
    )
    return outcomes.select(X_COL, TX_COL, T_COL).join(
        per_triple, on=[X_COL, TX_COL, T_COL], how="left", maintain_order="left"
    )


def _segment_metrics(
    rows: _Rows,
    frame: pl.DataFrame,
    forecast_models: list[str],
    churn_models: list[str],
    segment: tuple[str, str],
) -> dict[str, Any]:
    """Forecast totals, by frequency group, MAE / RMSE, churn AUC and deciles for one segment."""
    n = frame.height
    actual = frame["holdout_purchases"].to_numpy().astype(np.float64)
    headline: dict[str, Any] = {"customers": n, "actual_purchases": float(actual.sum())}
    rows.add("forecast", "actual", ALL, "actual_total", actual.sum(), n, segment)
    for key in forecast_models:
        pred = frame[f"pred_{key}"].to_numpy().astype(np.float64)
        rows.add("forecast", key, ALL, "predicted_total", pred.sum(), n, segment)
        rows.add("accuracy", key, ALL, "mae", mae(pred, actual), n, segment)
        rows.add("accuracy", key, ALL, "rmse", rmse(pred, actual), n, segment)
        headline[f"predicted_{key}"] = float(pred.sum())
        headline[f"mae_{key}"] = mae(pred, actual)
        headline[f"rmse_{key}"] = rmse(pred, actual)
    for group in frequency_groups():
        part = frame.filter(pl.col("frequency_group") == group)
        if part.height == 0:
            continue
        act = part["holdout_purchases"].to_numpy().astype(np.float64)
        rows.add(
            "forecast_by_frequency",
            "actual",
            group,
            "actual_mean",
            act.mean(),
            part.height,
            segment,
        )
        for key in forecast_models:
            pred = part[f"pred_{key}"].to_numpy().astype(np.float64)
            rows.add(
                "forecast_by_frequency",
                key,
                group,
                "predicted_mean",
                pred.mean(),
                part.height,
                segment,
            )
    if "churned" in frame.columns and churn_models:
        frame = frame.filter(pl.col("churned").is_not_null())
        n = frame.height
        churned = frame["churned"].to_numpy()
        rows.add("churn", "actual", ALL, "churn_rate", churned.mean() if n else None, n, segment)
        for key in churn_models:
            score = frame[f"churn_{key}"].to_numpy().astype(np.float64)
            auc = roc_auc(score, churned)
            rows.add("churn", key, ALL, "auc", auc, n, segment)
            headline[f"auc_{key}"] = auc
            for dec in calibration_by_decile(score, churned).iter_rows(named=True):
                bucket = f"{dec['decile']:02d}"
                rows.add(
                    "churn_calibration",
                    key,
                    bucket,
                    "predicted_rate",
                    dec["predicted"],
                    dec["customers"],
                    segment,
                )
                rows.add(
                    "churn_calibration",
                    key,
                    bucket,
                    "actual_rate",
                    dec["actual"],
                    dec["customers"],
                    segment,
                )
    return headline


def backtest_due(latest: date | None, day: date, cadence_days: int) -> bool:
    """Whether to backtest `day`, given the snapshot date of the newest backtest stored on or
    before it: yes when there is none, or when it is cadence_days or more before `day`."""
    return latest is None or (day - latest).days >= cadence_days


def run_backtest(
    calibration: pl.DataFrame,
    holdout_end: pl.DataFrame,
    spec: ValueSpec,
    holdout_days: int,
    history: pl.DataFrame | None = None,
    churn_end: pl.DataFrame | None = None,
    segments: pl.DataFrame | None = None,
    tracking: tuple[pl.DataFrame, pl.DataFrame, date, date, date] | None = None,
    notes: list[str] | None = None,
) -> BacktestResult:
    """Fit as Strata would have on the cut date and score the holdout.

    ``calibration``: user_features as of C; ``holdout_end``: as of C + holdout_days;
    ``history``: as of C - churn_window_days (enables model selection, as in the daily run);
    ``churn_end``: as of C + churn_window_days (churn labels; defaults to ``holdout_end`` when
    the holdout is the churn window; without it churn metrics are skipped); ``segments``:
    user_id, segment (value tier as of C) for the per-segment breakdown; ``tracking``:
    (first_days, weekly, start, cut, end), the first two from :func:`tracking_inputs`;
    ``notes``: the caller's notes, stored with the run's rows.
    """
    notes = list(notes or [])
    rows = _Rows()
    models = fit_value_models(calibration, spec, history)
    notes.extend(models.notes)
    outcomes = holdout_outcomes(calibration, holdout_end)
    _record_fit(rows, models, outcomes, holdout_days)

    forecast_models = [k for k in ("bgnbd", "pareto_nbd") if models.purchase_model(k) is not None]
    if outcomes.height == 0 or not forecast_models:
        notes.append("backtest has no scored customers (no customers at the cut or no model)")
        _record_notes(rows, notes)
        headline = {"customers": outcomes.height}
        return BacktestResult(rows.frame(), pl.DataFrame(), headline, models, notes)

    frame = _forecasts(outcomes, models, forecast_models, float(holdout_days), spec)
    forecast_keys = [*forecast_models, CHOSEN]
    # churn over the spec's window, labelled from the snapshot at C + W
    window = spec.churn_window_days
    labels_from = (
        churn_end if churn_end is not None else (holdout_end if holdout_days == window else None)
    )
    churn_keys: list[str] = []
    if labels_from is None:
        notes.append(f"churn metrics skipped: no snapshot at cut + churn window ({window} days)")
    else:
        churn = holdout_outcomes(calibration, labels_from).select("user_id", "churned")
        frame, churn_keys = _churn_scores(
            frame.join(churn, on="user_id", how="left"), outcomes, models, forecast_models, spec
        )

    headline = _segment_metrics(rows, frame, forecast_keys, churn_keys, (ALL, ALL))
    headline.update(
        {
            "forecast_choice": {g: models.forecast_model_for(g) for g in frequency_groups()},
            "churn_model": models.churn_model,
        }
    )
    if segments is not None and segments.height:
        tagged = frame.join(segments.select("user_id", "segment"), on="user_id", how="left")
        for key in sorted(s for s in tagged["segment"].unique().to_list() if s is not None):
            part = tagged.filter(pl.col("segment") == key)
            _segment_metrics(rows, part, forecast_keys, churn_keys, ("value_tier", key))

    tracking_frame = pl.DataFrame()
    if tracking is not None:
        tracking_frame = _tracking(rows, frame, models, forecast_models, tracking, spec)
    _record_notes(rows, notes)
    return BacktestResult(rows.frame(), tracking_frame, headline, models, notes)


def _record_fit(
    rows: _Rows, models: ValueModels, outcomes: pl.DataFrame, holdout_days: int
) -> None:
    """The run's size, every fitted parameter, and which model each group was given."""
    rows.add("run", "", ALL, "customers", outcomes.height, outcomes.height)
    rows.add("run", "", ALL, "calibration_repeat_purchases", float(outcomes[X_COL].sum()))
    rows.add("run", "", ALL, "holdout_days", holdout_days)
    for key in ("bgnbd", "pareto_nbd"):
        model = models.purchase_model(key)
        if model is not None:
            for name, value in model.params_.items():
                rows.add("params", key, name, "estimate", value)
            rows.add("params", key, "log_likelihood", "estimate", model.log_likelihood_)
    for group in frequency_groups():
        chosen = models.forecast_model_for(group)
        rows.add("selection", chosen, group, "forecast_model", 1.0)
    rows.add("selection", models.churn_model, ALL, "churn_model", 1.0)


def _record_notes(rows: _Rows, notes: Sequence[str]) -> None:
    for note in notes:
        rows.add("run", "", ALL, "note", None, note=note)


def _forecasts(
    outcomes: pl.DataFrame,
    models: ValueModels,
    forecast_models: Sequence[str],
    holdout_days: float,
    spec: ValueSpec,
) -> pl.DataFrame:
    """``outcomes`` plus each model's expected holdout purchases, the model each user's group
    was given, and that model's forecast (``pred_chosen``)."""
    frame = outcomes
    unit = spec.time_unit_days
    for key in forecast_models:
        pred = _predictions(outcomes, models.purchase_model(key), holdout_days, unit)
        frame = frame.with_columns(pred["pred"].alias(f"pred_{key}"))
    choice = pl.col("frequency_group").replace_strict(
        {g: models.forecast_model_for(g) for g in frequency_groups()},
        default=models.default_forecast,
        return_dtype=pl.String,
    )
    frame = frame.with_columns(choice.alias("forecast_model"))
    chosen = chosen_model_value("forecast_model", "pred", forecast_models)
    return frame.with_columns(chosen.alias(f"pred_{CHOSEN}"))


def _churn_scores(
    frame: pl.DataFrame,
    outcomes: pl.DataFrame,
    models: ValueModels,
    forecast_models: Sequence[str],
    spec: ValueSpec,
) -> tuple[pl.DataFrame, list[str]]:
    """Each churn model's probability of no purchase over the churn window, the chosen one's,
    and the keys of the columns added (``churn_<key>``)."""
    window = float(spec.churn_window_days)
    for key in forecast_models:
        model = models.purchase_model(key)
        quiet = _predictions(outcomes, model, window, spec.time_unit_days)["quiet"]
        frame = frame.with_columns(quiet.alias(f"churn_{key}"))
    probabilistic = chosen_model_value("forecast_model", "churn", forecast_models)
    frame = frame.with_columns(probabilistic.alias(f"churn_{PROBABILISTIC}"))
    churn_keys = [*forecast_models, PROBABILISTIC]
    if models.churn_classifier is not None:
        frame = frame.with_columns(
            pl.Series(f"churn_{CHURN_CLASSIFIER}", models.churn_classifier.predict_churn(outcomes))
        )
        churn_keys.append(CHURN_CLASSIFIER)
    frame = frame.with_columns(pl.col(f"churn_{models.churn_model}").alias(f"churn_{CHOSEN}"))
    return frame, [*churn_keys, CHOSEN]


def _tracking(
    rows: _Rows,
    frame: pl.DataFrame,
    models: ValueModels,
    forecast_models: Sequence[str],
    tracking: tuple[pl.DataFrame, pl.DataFrame, date, date, date],
    spec: ValueSpec,
) -> pl.DataFrame:
    """Cumulative repeat purchases by week, actual against each model and the chosen mix."""
    first_days, weekly, start, cut, end = tracking
    unit = spec.time_unit_days
    unconditional = {k: models.purchase_model(k) for k in forecast_models}
    triples = (
        frame.group_by(X_COL, TX_COL, T_COL, "forecast_model")
        .agg(pl.len().alias("n"))
        .sort(X_COL, TX_COL, T_COL)
    )

    def conditional_sum(days: float) -> float:
        total = 0.0
        for key in forecast_models:
            part = triples.filter(pl.col("forecast_model") == key)
            if part.height == 0:
                continue
            model = models.purchase_model(key)
            pred = model.conditional_expected_number_of_purchases_up_to_time(
                days / unit,
                part[X_COL].to_numpy().astype(np.float64),
                part[TX_COL].to_numpy().astype(np.float64) / unit,
                part[T_COL].to_numpy().astype(np.float64) / unit,
            )
            total += float(part["n"].to_numpy() @ pred)
        return total

    table = tracking_table(
        unconditional, first_days, weekly, start, cut, end, unit, {CHOSEN: conditional_sum}
    )
    for row in table.iter_rows(named=True):
        bucket = row["week_end"].isoformat()
        for key in ("actual", *forecast_models, CHOSEN):
            rows.add("tracking", key, bucket, "cumulative_repeat_purchases", row.get(key))
    return table
