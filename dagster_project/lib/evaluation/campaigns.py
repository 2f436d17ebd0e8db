"""marts.campaign_effects: per campaign x scheme x segment (at exposure) x metric, the arms'
users and values, absolute and relative lift with 95 % intervals, p-value, CUPED-adjusted lift,
ROI when costs are given, and the sample-ratio-mismatch check (statistics: effects.py).

Input: one row per campaign x exposed user x scheme (marts.fct_campaign_exposures joined to
marts.campaign_exposure_segments): campaign_id, scheme, segment, segment_label, arm, cost,
pre_exposure_revenue and the outcome columns of METRICS (null while their period is open).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from dagster_project.lib.evaluation.effects import (
    SRM_ALPHA,
    design_share,
    estimate,
    roi,
    srm_p_value,
)

#: outcome column -> what it measures (the mart's metric names are the column names)
METRICS: dict[str, str] = {
    "converted": "a completed order in the campaign window (share of users)",
    "revenue": "net revenue per user in the campaign window",
    "retained_30d": "a completed order on days 1-30 after exposure (share of users)",
    "retained_60d": "a completed order on days 31-60 after exposure (share of users)",
    "retained_90d": "a completed order on days 61-90 after exposure (share of users)",
}
COVARIATE = "pre_exposure_revenue"
GROUP = ("campaign_id", "scheme", "segment")
ALL = "all"

#: The mart's columns and types, in order: its contract (checked by an asset check).
CAMPAIGN_EFFECTS_SCHEMA: dict[str, pl.DataType] = {
    "campaign_id": pl.String(),
    "scheme": pl.String(),
    "segment": pl.String(),
    "segment_label": pl.String(),
    "metric": pl.String(),
    "latest_snapshot_date": pl.Date(),
    "treatment_users": pl.Int64(),
    "control_users": pl.Int64(),
    "treatment_value": pl.Float64(),
    "control_value": pl.Float64(),
    "absolute_lift": pl.Float64(),
    "absolute_lift_low": pl.Float64(),
    "absolute_lift_high": pl.Float64(),
    "relative_lift": pl.Float64(),
    "relative_lift_low": pl.Float64(),
    "relative_lift_high": pl.Float64(),
    "p_value": pl.Float64(),
    "is_significant": pl.Boolean(),
    "cuped_lift": pl.Float64(),
    "cuped_lift_low": pl.Float64(),
    "cuped_lift_high": pl.Float64(),
    "cuped_p_value": pl.Float64(),
    "cuped_interval_ratio": pl.Float64(),
    "treatment_cost": pl.Float64(),
    "roi": pl.Float64(),
    "expected_control_share": pl.Float64(),
    "srm_p_value": pl.Float64(),
    "has_srm": pl.Boolean(),
}
KEY = ("campaign_id", "scheme", "segment", "metric")


def empty_effects() -> pl.DataFrame:
    return pl.DataFrame(schema=CAMPAIGN_EFFECTS_SCHEMA)


def _control_shares(rows: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """campaign -> (observed control share of all its users, its design share)."""
    users = rows.filter(pl.col("scheme") == ALL)
    shares = users.group_by("campaign_id").agg((pl.col("arm") == "control").mean().alias("share"))
    return {c: (s, design_share(s)) for c, s in shares.iter_rows()}


def campaign_effects(rows: pl.DataFrame, latest_snapshot_date: date | None = None) -> pl.DataFrame:
    """The mart's rows from the per-user rows (see the module doc); empty without rows.

    The SRM check tests each segment's split against its campaign's overall split (a segment
    whose assignment differs), and the campaign's ``all`` row against its design share (the
    overall split rounded to 5 %). ROI is on the revenue rows only, when costs are given.
    """
    if rows.height == 0:
        return empty_effects()
    shares = _control_shares(rows)
    out: list[dict] = []
    for (campaign_id, scheme, segment), group in rows.sort(*GROUP).group_by(
        *GROUP, maintain_order=True
    ):
        treated = group.filter(pl.col("arm") == "treatment")
        control = group.filter(pl.col("arm") == "control")
        observed_share, designed = shares.get(campaign_id, (0.5, 0.5))
        expected = designed if scheme == ALL else observed_share
        srm = srm_p_value(treated.height, control.height, expected)
        cost = treated["cost"].drop_nulls()
        treatment_cost = float(cost.sum()) if cost.len() else None
        label = group["segment_label"].drop_nulls()
        for metric in METRICS:
            t = treated.filter(pl.col(metric).is_not_null())
            c = control.filter(pl.col(metric).is_not_null())
            e = estimate(
                t[metric].to_numpy(), c[metric].to_numpy(), t[COVARIATE].to_numpy(),
                c[COVARIATE].to_numpy(),
            )  # fmt: skip
            width = _width(e.absolute.low, e.absolute.high)
            cuped_width = _width(e.cuped.low, e.cuped.high)
            out.append(
                {
                    "campaign_id": campaign_id,
                    "scheme": scheme,
                    "segment": segment,
                    "segment_label": label[0] if label.len() else None,
                    "metric": metric,
                    "latest_snapshot_date": latest_snapshot_date,
                    "treatment_users": e.treatment_users,
                    "control_users": e.control_users,
                    "treatment_value": e.treatment_value,
                    "control_value": e.control_value,
                    "absolute_lift": e.absolute.lift,
                    "absolute_lift_low": e.absolute.low,
                    "absolute_lift_high": e.absolute.high,
                    "relative_lift": e.relative.lift,
                    "relative_lift_low": e.relative.low,
                    "relative_lift_high": e.relative.high,
                    "p_value": e.absolute.p_value,
                    "is_significant": None
                    if e.absolute.p_value is None
                    else e.absolute.p_value < 0.05,
                    "cuped_lift": e.cuped.lift,
                    "cuped_lift_low": e.cuped.low,
                    "cuped_lift_high": e.cuped.high,
                    "cuped_p_value": e.cuped.p_value,
                    "cuped_interval_ratio": cuped_width / width
                    if width and cuped_width is not None
                    else None,
                    "treatment_cost": treatment_cost,
                    "roi": roi(e.absolute.lift, e.treatment_users, treatment_cost)
                    if metric == "revenue"
                    else None,
                    "expected_control_share": expected,
                    "srm_p_value": srm,
                    "has_srm": srm < SRM_ALPHA,
                }
            )
    return pl.DataFrame(out, schema=CAMPAIGN_EFFECTS_SCHEMA)


def _width(low: float | None, high: float | None) -> float | None:
    return None if low is None or high is None else high - low


_SQL_TYPES = {pl.String: "varchar", pl.Date: "date", pl.Int64: "bigint", pl.Float64: "double"}
_SQL_TYPES[pl.Boolean] = "boolean"
RELATION = "marts.campaign_effects"


def _sql_type(dtype: pl.DataType) -> str:
    return _SQL_TYPES[dtype.base_type()]


def contract_ddl(relation: str = RELATION) -> str:
    """The mart's table with its contract: the columns and types of CAMPAIGN_EFFECTS_SCHEMA,
    not null on the key and the arms' user counts, the key as primary key."""
    not_null = {*KEY, "treatment_users", "control_users"}
    columns = ", ".join(
        f"{name} {_sql_type(dtype)}" + (" not null" if name in not_null else "")
        for name, dtype in CAMPAIGN_EFFECTS_SCHEMA.items()
    )
    return f"create table {relation} ({columns}, primary key ({', '.join(KEY)}))"


def contract_violations(columns: list[tuple[str, str]]) -> list[str]:
    """What differs between a table's (column, DuckDB type) list and the contract, in order."""
    expected = [(name, _sql_type(dtype)) for name, dtype in CAMPAIGN_EFFECTS_SCHEMA.items()]
    actual = [(name, dtype.lower()) for name, dtype in columns]
    problems = []
    for position, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            problems.append(
                f"column {position + 1}: expected {want[0]} {want[1]}, got {got[0]} {got[1]}"
            )
    if len(actual) != len(expected):
        problems.append(f"expected {len(expected)} columns, got {len(actual)}")
    return problems
