"""Per-user value scoring: BG/NBD + Gamma-Gamma CLV, churn-risk bands and a simple-LTV baseline.

Input is the per-user feature frame (features.user_features, one row per user known on the
as-of date D); output is one row per input user for marts.user_value_daily. Both the fit and
the scoring work on *distinct* (repeat_purchases, purchase_span_days, customer_age_days)
triples, not on users: a million customers on daily data collapse to a few hundred thousand
triples, and every BG/NBD quantity depends on the triple only.

The models describe customers (users with a completed order). Non-customers get NULL model
outputs, clv 0.0 and the band ``no_purchase``. When there are too few customers to fit, scoring
still returns every row, with NULL model outputs and the band ``unscored``: the daily run never
fails because a snapshot is small.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dagster_project.lib.clv import (
    BetaGeoModel,
    GammaGammaModel,
    discounted_expected_purchases,
    fitted_params_summary,
)

log = logging.getLogger(__name__)

DEFAULT_VALUE_SPEC_PATH = Path(__file__).resolve().parents[2] / "models" / "value.yml"

BAND_KEYS = ("low", "medium", "high", "no_purchase", "unscored")
FALLBACKS = ("population_mean", "own_aov")

# Feature columns (CONTRACT.md "Features") this module reads.
X_COL, TX_COL, T_COL = "repeat_purchases", "purchase_span_days", "customer_age_days"
REQUIRED_COLUMNS = ("user_id", "is_customer", X_COL, TX_COL, T_COL, "frequency", "monetary")
SIMPLE_LTV_COLUMNS = ("is_customer", "orders_30d", "orders_trend_30d", "revenue_30d")


@dataclass(frozen=True)
class ValueSpec:
    """models/value.yml, validated. See the yml for the meaning of each field."""

    name: str = "user_value"
    version: int = 1
    time_unit_days: float = 1.0
    bgnbd_penalizer: float = 0.0
    min_customers: int = 20
    gg_penalizer: float = 0.0
    min_repeat_customers: int = 20
    gg_count_column: str = "frequency"
    gg_value_column: str = "avg_order_value"
    fallback_order_value: str = "population_mean"
    expected_orders_days: int = 90
    churn_window_days: int = 90
    clv_months: int = 12
    discount_rate_monthly: float = 0.01
    days_per_month: float = 30.4375
    band_high: float = 0.7
    band_medium: float = 0.4
    band_labels: tuple[tuple[str, str], ...] = (
        ("low", "低"),
        ("medium", "中"),
        ("high", "高"),
        ("no_purchase", "未购买"),
        ("unscored", "未评分"),
    )
    simple_ltv_churn_floor: float = 0.01

    def __post_init__(self) -> None:
        problems = []
        if self.time_unit_days <= 0:
            problems.append("time_unit_days must be > 0")
        if self.bgnbd_penalizer < 0 or self.gg_penalizer < 0:
            problems.append("penalizers must be >= 0")
        if self.min_customers < 1 or self.min_repeat_customers < 1:
            problems.append("minimum customer counts must be >= 1")
        if self.fallback_order_value not in FALLBACKS:
            problems.append(f"fallback_order_value must be one of {FALLBACKS}")
        if self.expected_orders_days <= 0 or self.churn_window_days <= 0:
            problems.append("horizons must be > 0 days")
        if self.clv_months < 1:
            problems.append("clv_months must be >= 1")
        if not -1 < self.discount_rate_monthly < 1 or self.days_per_month <= 0:
            problems.append("need -1 < discount_rate_monthly < 1 and days_per_month > 0")
        if not 0 < self.band_medium < self.band_high <= 1:
            problems.append("need 0 < churn_risk_bands.medium < churn_risk_bands.high <= 1")
        if sorted(k for k, _ in self.band_labels) != sorted(BAND_KEYS):
            problems.append(f"churn_risk_bands.labels must give exactly the keys {BAND_KEYS}")
        if not 0 < self.simple_ltv_churn_floor <= 1:
            problems.append("simple_ltv.churn_floor must be in (0, 1]")
        if problems:
            raise ValueError("invalid value spec: " + "; ".join(problems))

    @property
    def expected_orders_column(self) -> str:
        return f"expected_orders_{self.expected_orders_days}d"

    @property
    def clv_column(self) -> str:
        return f"clv_{self.clv_months}m"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.band_labels)

    @property
    def output_columns(self) -> tuple[str, ...]:
        return (
            "user_id",
            "is_customer",
            "p_alive",
            self.expected_orders_column,
            "expected_order_value",
            self.clv_column,
            "churn_risk",
            "churn_risk_band",
            "churn_risk_band_label",
            "simple_ltv",
        )


_SPEC_LAYOUT: dict[str, Any] = {
    "name": "name",
    "version": "version",
    "time_unit_days": "time_unit_days",
    "bgnbd": {"penalizer": "bgnbd_penalizer", "min_customers": "min_customers"},
    "gamma_gamma": {
        "penalizer": "gg_penalizer",
        "min_repeat_customers": "min_repeat_customers",
        "count_column": "gg_count_column",
        "value_column": "gg_value_column",
        "fallback_order_value": "fallback_order_value",
    },
    "horizons": {
        "expected_orders_days": "expected_orders_days",
        "churn_window_days": "churn_window_days",
        "clv_months": "clv_months",
        "discount_rate_monthly": "discount_rate_monthly",
        "days_per_month": "days_per_month",
    },
    "churn_risk_bands": {"high": "band_high", "medium": "band_medium", "labels": "band_labels"},
    "simple_ltv": {"churn_floor": "simple_ltv_churn_floor"},
}


def _flatten(raw: dict[str, Any], layout: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(raw) - set(layout)
    if unknown:
        raise ValueError(f"unknown keys in value spec{where}: {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        target = layout[key]
        if isinstance(target, dict):
            if not isinstance(value, dict):
                raise ValueError(f"value spec key {where}{key} must be a mapping")
            out.update(_flatten(value, target, f" {where}{key}."))
        else:
            out[target] = value
    return out


def load_value_spec(path: Path = DEFAULT_VALUE_SPEC_PATH) -> ValueSpec:
    """Read and validate models/value.yml (missing keys take the dataclass defaults)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    flat = _flatten(raw, _SPEC_LAYOUT, "")
    if "band_labels" in flat:
        flat["band_labels"] = tuple(
            (str(e["key"]), str(e["label_zh"])) for e in flat["band_labels"]
        )
    casts = {f: type(getattr(ValueSpec, f)) for f in flat if f != "band_labels"}
    for name, kind in casts.items():
        if kind is float:
            flat[name] = float(flat[name])
        elif kind is int and (not isinstance(flat[name], int) or isinstance(flat[name], bool)):
            raise ValueError(f"value spec field {name} must be an integer")
    return ValueSpec(**flat)


@dataclass
class ValueModels:
    """Fitted value models for one snapshot (picklable; no training data kept).

    ``bgnbd`` / ``gamma_gamma`` are None when they could not be fitted; ``notes`` says why.
    Times inside the models are in units of ``time_unit_days`` days.
    """

    bgnbd: BetaGeoModel | None
    gamma_gamma: GammaGammaModel | None
    fitted_on_users: int
    fitted_on_triples: int
    repeat_customers: int
    time_unit_days: float
    population_order_value: float | None
    spend_frequency_corr: float | None
    spec_name: str
    spec_version: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain values for run metadata and the model registry."""
        out: dict[str, Any] = {
            "spec": f"{self.spec_name}-v{self.spec_version}",
            "time_unit_days": self.time_unit_days,
            "fitted_on_users": self.fitted_on_users,
            "fitted_on_triples": self.fitted_on_triples,
            "repeat_customers": self.repeat_customers,
            "population_order_value": self.population_order_value,
            "spend_frequency_corr": self.spend_frequency_corr,
            "notes": list(self.notes),
        }
        if self.bgnbd is not None:
            out["bgnbd"] = fitted_params_summary(self.bgnbd)
        if self.gamma_gamma is not None:
            out["gamma_gamma"] = fitted_params_summary(self.gamma_gamma)
        return out


def _check_columns(features: pl.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")


def _valid_customer() -> pl.Expr:
    """Customers whose BG/NBD inputs are usable (0 <= t_x <= T, x >= 0)."""
    return (
        pl.col("is_customer").fill_null(False)
        & pl.col(T_COL).is_not_null()
        & (pl.col(T_COL) >= 0)
        & pl.col(TX_COL).is_between(0, pl.col(T_COL))
        & (pl.col(X_COL).fill_null(-1) >= 0)
    )


def _population_order_value(customers: pl.DataFrame) -> float | None:
    orders = customers["frequency"].sum()
    if not orders:
        return None
    value = float(customers["monetary"].sum()) / float(orders)
    return value if math.isfinite(value) and value > 0 else None


def fit_value_models(features: pl.DataFrame, spec: ValueSpec) -> ValueModels:
    """Fit BG/NBD on distinct (x, t_x, T) triples with counts, and Gamma-Gamma on repeat customers.

    Too few customers, or an optimiser failure, leave the model as None with a note: the
    daily run degrades to NULL model outputs rather than failing.
    """
    _check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    notes: list[str] = []
    unit = spec.time_unit_days
    customers = features.filter(_valid_customer())
    n_customers = customers.height
    population_aov = _population_order_value(customers)

    bgnbd: BetaGeoModel | None = None
    n_triples = 0
    if n_customers < spec.min_customers:
        notes.append(f"BG/NBD not fitted: {n_customers} customers < {spec.min_customers}")
    else:
        triples = customers.group_by(X_COL, TX_COL, T_COL).agg(pl.len().alias("n"))
        n_triples = triples.height
        try:
            bgnbd = BetaGeoModel(penalizer=spec.bgnbd_penalizer).fit(
                triples[X_COL].to_numpy().astype(np.float64),
                triples[TX_COL].to_numpy().astype(np.float64) / unit,
                triples[T_COL].to_numpy().astype(np.float64) / unit,
                weights=triples["n"].to_numpy().astype(np.float64),
            )
        except (ValueError, FloatingPointError) as exc:
            notes.append(f"BG/NBD fit failed: {exc}")
        else:
            if not all(math.isfinite(v) for v in bgnbd.params_.values()):
                notes.append("BG/NBD fit gave non-finite parameters")
                bgnbd = None
            elif not bgnbd.converged_:
                notes.append("BG/NBD optimiser did not report convergence (best point kept)")

    count_col, value_col = spec.gg_count_column, spec.gg_value_column
    repeat = customers.filter(
        (pl.col(X_COL) > 0)
        & (pl.col(count_col) > 0)
        & pl.col(value_col).is_not_null()
        & (pl.col(value_col) > 0)
        & pl.col(value_col).is_finite()
    )
    corr: float | None = None
    if repeat.height >= 3:
        value = repeat.select(pl.corr(X_COL, value_col)).item()
        corr = float(value) if value is not None and math.isfinite(value) else None

    gamma_gamma: GammaGammaModel | None = None
    if repeat.height < spec.min_repeat_customers:
        notes.append(
            f"Gamma-Gamma not fitted: {repeat.height} repeat customers"
            f" < {spec.min_repeat_customers}; expected_order_value uses the fallback"
        )
    else:
        grouped = repeat.group_by(count_col, value_col).agg(pl.len().alias("n"))
        try:
            gamma_gamma = GammaGammaModel(penalizer=spec.gg_penalizer).fit(
                grouped[count_col].to_numpy().astype(np.float64),
                grouped[value_col].to_numpy().astype(np.float64),
                weights=grouped["n"].to_numpy().astype(np.float64),
            )
        except (ValueError, FloatingPointError) as exc:
            notes.append(f"Gamma-Gamma fit failed: {exc}")
        else:
            if not math.isfinite(gamma_gamma.population_mean_):
                notes.append("Gamma-Gamma q <= 1 (no finite mean spend): using the fallback")
                gamma_gamma = None
    if gamma_gamma is not None and corr is not None and abs(corr) > 0.3:
        notes.append(
            f"spend and frequency correlate (r={corr:.2f}): Gamma-Gamma assumes independence"
        )
    for note in notes:
        log.warning(note)
    return ValueModels(
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        fitted_on_users=n_customers if bgnbd is not None else 0,
        fitted_on_triples=n_triples if bgnbd is not None else 0,
        repeat_customers=repeat.height,
        time_unit_days=unit,
        population_order_value=population_aov,
        spend_frequency_corr=corr,
        spec_name=spec.name,
        spec_version=spec.version,
        notes=notes,
    )


def _triple_scores(
    customers: pl.DataFrame, model: BetaGeoModel, spec: ValueSpec, unit: float
) -> pl.DataFrame:
    """BG/NBD outputs per distinct triple (everything here depends on the triple only)."""
    triples = customers.select(X_COL, TX_COL, T_COL).unique()
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    return triples.with_columns(
        pl.Series("p_alive", np.clip(model.conditional_probability_alive(x, tx, T), 0.0, 1.0)),
        pl.Series(
            "_expected_orders",
            model.conditional_expected_number_of_purchases_up_to_time(
                spec.expected_orders_days / unit, x, tx, T
            ),
        ),
        pl.Series(
            "churn_risk",
            model.probability_no_purchase_up_to_time(spec.churn_window_days / unit, x, tx, T),
        ),
        pl.Series(
            "_discounted_purchases",
            discounted_expected_purchases(
                model,
                x,
                tx,
                T,
                months=spec.clv_months,
                discount_rate_monthly=spec.discount_rate_monthly,
                days_per_month=spec.days_per_month,
                time_unit_days=unit,
            ),
        ),
    ).with_columns(
        # a prediction that is not a finite number is no prediction: NULL, never NaN
        pl.col("p_alive", "_expected_orders", "churn_risk", "_discounted_purchases")
        .fill_nan(None)
        .cast(pl.Float64)
    )


def _order_values(
    customers: pl.DataFrame, models: ValueModels, spec: ValueSpec
) -> pl.Series | None:
    """Expected value per future order: GG conditional mean, else the spec's fallback."""
    count_col, value_col = spec.gg_count_column, spec.gg_value_column
    gg = models.gamma_gamma
    if gg is not None:
        n = customers[count_col].cast(pl.Float64).fill_null(0.0).to_numpy()
        m = customers[value_col].cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        usable = (n > 0) & (m > 0) & np.isfinite(m)
        values = gg.conditional_expected_average_profit(
            np.where(usable, n, 0.0), np.where(usable, m, 0.0)
        )
        return pl.Series("expected_order_value", values).fill_nan(None)
    pop = models.population_order_value
    if spec.fallback_order_value == "own_aov":
        own = customers[value_col].cast(pl.Float64).fill_nan(None)
        return own.fill_null(pop).alias("expected_order_value")
    return pl.Series("expected_order_value", [pop] * customers.height, dtype=pl.Float64)


def _null_model_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c)
        for c in ("p_alive", "_expected_orders", "churn_risk", "_discounted_purchases")
    )


def score_value(features: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    """One row per input user: P(alive), expected orders, expected order value, CLV, churn risk.

    Non-customers: NULL p_alive / expected orders / churn risk / expected order value, clv 0.0
    (nothing modelled to gain yet), band no_purchase. Customers without a fitted BG/NBD:
    NULL model outputs and band unscored. Never raises on small or degenerate snapshots.
    """
    _check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    unit = models.time_unit_days
    frame = features.with_row_index("_row")
    valid = frame.filter(_valid_customer())

    order_values: pl.Series | None
    try:
        order_values = _order_values(valid, models, spec)
    except (ValueError, FloatingPointError, ArithmeticError) as exc:
        log.warning("expected order value failed, left NULL: %s", exc)
        order_values = None
    if order_values is None:
        order_values = pl.Series("expected_order_value", [None] * valid.height, dtype=pl.Float64)
    # positional: order_values is aligned with `valid`, so attach it before any join
    scored = valid.select("_row", X_COL, TX_COL, T_COL).with_columns(
        order_values.cast(pl.Float64).alias("expected_order_value")
    )
    if models.bgnbd is not None and valid.height:
        try:
            per_triple = _triple_scores(valid, models.bgnbd, spec, unit)
            scored = scored.join(per_triple, on=[X_COL, TX_COL, T_COL], how="left")
        except (ValueError, FloatingPointError, ArithmeticError) as exc:
            log.warning("BG/NBD scoring failed, model outputs left NULL: %s", exc)
            scored = _null_model_columns(scored)
    else:
        scored = _null_model_columns(scored)

    scored = scored.select(
        "_row",
        "p_alive",
        pl.col("_expected_orders").alias(spec.expected_orders_column),
        "expected_order_value",
        (pl.col("_discounted_purchases") * pl.col("expected_order_value")).alias(spec.clv_column),
        "churn_risk",
    )

    try:
        baseline = simple_ltv(features, spec)["simple_ltv"]
    except ValueError as exc:  # e.g. a feature frame without the 30-day columns
        log.warning("simple LTV baseline left NULL: %s", exc)
        baseline = None
    is_customer = pl.col("is_customer").fill_null(False)
    labels = spec.label_map
    out = (
        frame.select("_row", "user_id", is_customer.alias("is_customer"))
        .join(scored, on="_row", how="left")
        .sort("_row")
        .with_columns(
            pl.when(is_customer)
            .then(pl.col(spec.clv_column))
            .otherwise(pl.lit(0.0))
            .alias(spec.clv_column),
            pl.when(~is_customer)
            .then(pl.lit("no_purchase"))
            .when(pl.col("churn_risk").is_null())
            .then(pl.lit("unscored"))
            .when(pl.col("churn_risk") >= spec.band_high)
            .then(pl.lit("high"))
            .when(pl.col("churn_risk") >= spec.band_medium)
            .then(pl.lit("medium"))
            .otherwise(pl.lit("low"))
            .alias("churn_risk_band"),
            pl.lit(baseline, dtype=pl.Float64).alias("simple_ltv"),
        )
        .with_columns(
            pl.col("churn_risk_band")
            .replace_strict(labels, return_dtype=pl.String)
            .alias("churn_risk_band_label")
        )
    )
    return out.select(spec.output_columns)


def simple_ltv(features: pl.DataFrame, spec: ValueSpec) -> dict[str, float | None]:
    """Baseline LTV = ARPU per 30 days / monthly churn rate, one number per snapshot.

    ARPU: revenue_30d averaged over customers who purchased in (D-30, D]. Monthly churn: among
    customers who purchased in (D-60, D-30], the share with no purchase in (D-30, D]; floored
    by the spec so a quiet month cannot divide by zero. None where undefined (no active or no
    base customers).
    """
    _check_columns(features, SIMPLE_LTV_COLUMNS)
    customers = features.filter(pl.col("is_customer").fill_null(False))
    orders_prev_30d = pl.col("orders_30d") - pl.col("orders_trend_30d")
    stats = customers.select(
        active=(pl.col("orders_30d") > 0).sum(),
        active_revenue=pl.col("revenue_30d").filter(pl.col("orders_30d") > 0).sum(),
        base=(orders_prev_30d > 0).sum(),
        churned=((orders_prev_30d > 0) & (pl.col("orders_30d") == 0)).sum(),
    ).row(0, named=True)
    active, base, churned = (int(stats[k] or 0) for k in ("active", "base", "churned"))
    arpu = float(stats["active_revenue"] or 0.0) / active if active else None
    churn = churned / base if base else None
    churn_used = max(churn, spec.simple_ltv_churn_floor) if churn is not None else None
    ltv = arpu / churn_used if arpu is not None and churn_used is not None else None
    return {
        "arpu_30d": arpu,
        "active_customers": float(active),
        "churn_base_customers": float(base),
        "churned_customers": float(churned),
        "monthly_churn_rate": churn,
        "churn_rate_used": churn_used,
        "simple_ltv": ltv,
    }
