"""Per-user value scoring: BG/NBD or Pareto/NBD + Gamma-Gamma CLV, churn risk from the better
of a probabilistic and a supervised model, churn-risk bands and a simple-LTV baseline.

Input is the per-user feature frame (features.user_features, one row per user known on the
as-of date D); output is one row per input user for marts.user_value_daily. Both the fit and
the scoring work on *distinct* (repeat_purchases, purchase_span_days, customer_age_days)
triples, not on users: a million customers on daily data collapse to a few hundred thousand
triples, and every BG/NBD / Pareto/NBD quantity depends on the triple only.

Model choice is point-in-time: given ``history`` (user_features as of D - W, W the churn
window), :func:`fit_value_models` runs an internal backtest on (D - W, D]: BG/NBD and Pareto/NBD
fitted on the history forecast each customer's purchases and the better one by MAE is chosen per
calibration-frequency group (0..6, 7+); a gradient-boosting churn classifier trained on part of
the history customers competes by AUC with the probabilistic P(no purchase in W) on the rest.
Every input is as of D or earlier, so a model used for snapshot D never saw later data.

The models describe customers (users with a completed order). Non-customers get NULL model
outputs, clv 0.0 and the band ``no_purchase``. When there are too few customers to fit, scoring
still returns every row, with NULL model outputs and the band ``unscored``: the daily run never
fails because a snapshot is small.
"""

from __future__ import annotations

import logging
import math
import typing
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel

from dagster_project.lib.core import settings
from dagster_project.lib.core.spec_model import parse_spec, spec_model
from dagster_project.lib.value.churn import DEFAULT_FEATURES, ChurnClassifier, holdout_split
from dagster_project.lib.value.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    PurchaseModel,
    discounted_expected_purchases,
    fitted_params_summary,
)
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
    frequency_group,
    frequency_groups,
    holdout_outcomes,
    mae,
    roc_auc,
    valid_customers,
)

log = logging.getLogger(__name__)

DEFAULT_VALUE_SPEC_PATH = settings.MODEL_SPECS_DIR / "value.yml"

BAND_KEYS = ("low", "medium", "high", "no_purchase", "unscored")
FALLBACKS = ("population_mean", "own_aov")
# Model ids written to every row (forecast_model, churn_model, spend_model).
CHURN_CLASSIFIER = "gbm"
PROBABILISTIC = "probabilistic"

# Feature columns (marts.user_features_daily) this module reads.
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
    pareto_penalizer: float = 0.0
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
    selection_min_customers: int = 50
    selection_min_group_customers: int = 30
    churn_model_enabled: bool = True
    churn_min_customers: int = 200
    churn_min_class_customers: int = 20
    churn_test_share: float = 0.3
    churn_seed: int = 0
    churn_max_iter: int = 100
    churn_learning_rate: float = 0.1
    churn_features: tuple[str, ...] = DEFAULT_FEATURES
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
        if self.bgnbd_penalizer < 0 or self.gg_penalizer < 0 or self.pareto_penalizer < 0:
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
        if self.selection_min_customers < 1 or self.selection_min_group_customers < 1:
            problems.append("selection minimums must be >= 1")
        if self.churn_min_customers < 2 or self.churn_min_class_customers < 1:
            problems.append("churn_model minimums must be >= 2 customers, >= 1 per class")
        if not 0 < self.churn_test_share < 1:
            problems.append("churn_model.test_share must be in (0, 1)")
        if self.churn_max_iter < 1 or not 0 < self.churn_learning_rate <= 1:
            problems.append("need churn_model.max_iter >= 1 and 0 < learning_rate <= 1")
        if not self.churn_features:
            problems.append("churn_model.features must name at least one column")
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
            "forecast_model",
            "churn_model",
            "spend_model",
        )


_SPEC_LAYOUT: dict[str, Any] = {
    "name": "name",
    "version": "version",
    "time_unit_days": "time_unit_days",
    "bgnbd": {"penalizer": "bgnbd_penalizer", "min_customers": "min_customers"},
    "pareto_nbd": {"penalizer": "pareto_penalizer"},
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
    "selection": {
        "min_customers": "selection_min_customers",
        "min_group_customers": "selection_min_group_customers",
    },
    "churn_model": {
        "enabled": "churn_model_enabled",
        "min_customers": "churn_min_customers",
        "min_class_customers": "churn_min_class_customers",
        "test_share": "churn_test_share",
        "seed": "churn_seed",
        "max_iter": "churn_max_iter",
        "learning_rate": "churn_learning_rate",
        "features": "churn_features",
    },
    "churn_risk_bands": {"high": "band_high", "medium": "band_medium", "labels": "band_labels"},
    "simple_ltv": {"churn_floor": "simple_ltv_churn_floor"},
}


def _layout_model(name: str, layout: dict[str, Any]) -> type[BaseModel]:
    """The spec model of value.yml, from the layout and ValueSpec's field types."""
    hints = typing.get_type_hints(ValueSpec)
    fields: dict[str, Any] = {}
    for key, target in layout.items():
        if isinstance(target, dict):
            fields[key] = _layout_model(f"{name}.{key}", target)
        elif target == "band_labels":
            fields[key] = list[spec_model("band_label", {"key": str, "label_zh": str})]
        else:
            fields[key] = hints[target]
    return spec_model(name, fields)


def _flatten(parsed: dict[str, Any], layout: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parsed.items():
        target = layout[key]
        if isinstance(target, dict):
            out.update(_flatten(value, target))
        else:
            out[target] = value
    return out


def load_value_spec(path: Path = DEFAULT_VALUE_SPEC_PATH) -> ValueSpec:
    """Read and validate models/value.yml (missing keys take the dataclass defaults)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    flat = _flatten(parse_spec(_layout_model("value_spec", _SPEC_LAYOUT), raw), _SPEC_LAYOUT)
    if "band_labels" in flat:
        flat["band_labels"] = tuple((e["key"], e["label_zh"]) for e in flat["band_labels"])
    return ValueSpec(**flat)


@dataclass
class ValueModels:
    """Fitted value models for one snapshot (picklable; no training data kept).

    ``bgnbd`` / ``pareto_nbd`` / ``gamma_gamma`` are None when they could not be fitted;
    ``notes`` says why. ``forecast_choice`` maps a calibration-frequency group ('0'..'6', '7+')
    to the purchase model that forecasts it (groups not listed use ``default_forecast``);
    ``churn_classifier`` is the supervised churn model when one could be trained;
    ``use_churn_classifier`` says whether it beat the probabilistic churn score on the internal
    holdout (and so scores churn). ``selection`` holds that holdout's evidence. Times inside the
    models are in units of ``time_unit_days`` days.
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
    pareto_nbd: ParetoNBDModel | None = None
    churn_classifier: ChurnClassifier | None = None
    use_churn_classifier: bool = False
    forecast_choice: dict[str, str] = field(default_factory=dict)
    default_forecast: str = "bgnbd"
    selection: dict[str, Any] = field(default_factory=dict)

    def purchase_model(self, key: str) -> PurchaseModel | None:
        return {"bgnbd": self.bgnbd, "pareto_nbd": self.pareto_nbd}.get(key)

    def forecast_model_for(self, group: str) -> str:
        return self.forecast_choice.get(group, self.default_forecast)

    @property
    def churn_model(self) -> str:
        """'gbm' when the classifier scores churn, else 'probabilistic' (the row's forecast
        model's P(no purchase in the window))."""
        return CHURN_CLASSIFIER if self.scoring_classifier is not None else PROBABILISTIC

    @property
    def scoring_classifier(self) -> ChurnClassifier | None:
        """The classifier when it scores churn risk (it won on the internal holdout)."""
        return self.churn_classifier if self.use_churn_classifier else None

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
            "default_forecast": self.default_forecast,
            "forecast_choice": dict(self.forecast_choice),
            "churn_model": self.churn_model,
            "selection": self.selection,
            "notes": list(self.notes),
        }
        if self.bgnbd is not None:
            out["bgnbd"] = fitted_params_summary(self.bgnbd)
        if self.pareto_nbd is not None:
            out["pareto_nbd"] = fitted_params_summary(self.pareto_nbd)
        if self.gamma_gamma is not None:
            out["gamma_gamma"] = fitted_params_summary(self.gamma_gamma)
        if self.churn_classifier is not None:
            out["churn_classifier"] = {
                **self.churn_classifier.summary(),
                "scores_churn": self.use_churn_classifier,
            }
        return json_safe(out)


def json_safe(value: Any) -> Any:
    """NaN / inf (e.g. an undefined AUC) become None: run metadata and cards are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _check_columns(features: pl.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")


def _population_order_value(customers: pl.DataFrame) -> float | None:
    orders = customers["frequency"].sum()
    if not orders:
        return None
    value = float(customers["monetary"].sum()) / float(orders)
    return value if math.isfinite(value) and value > 0 else None


def _triples(customers: pl.DataFrame, unit: float) -> tuple[pl.DataFrame, list[np.ndarray]]:
    """Distinct (x, t_x, T) with counts, and the model inputs in model time units."""
    # sorted: the fit then sums in the same order on every run (bit-identical reruns)
    triples = (
        customers.group_by(X_COL, TX_COL, T_COL).agg(pl.len().alias("n")).sort(X_COL, TX_COL, T_COL)
    )
    arrays = [
        triples[X_COL].to_numpy().astype(np.float64),
        triples[TX_COL].to_numpy().astype(np.float64) / unit,
        triples[T_COL].to_numpy().astype(np.float64) / unit,
        triples["n"].to_numpy().astype(np.float64),
    ]
    return triples, arrays


def _fit_purchase_model(
    kind: type[BetaGeoModel] | type[ParetoNBDModel],
    label: str,
    penalizer: float,
    arrays: list[np.ndarray],
    notes: list[str],
) -> Any:
    """Fit one purchase model on weighted triples; None (with a note) when it fails."""
    x, tx, T, n = arrays
    try:
        model = kind(penalizer=penalizer).fit(x, tx, T, weights=n)
    except (ValueError, FloatingPointError) as exc:
        notes.append(f"{label} fit failed: {exc}")
        return None
    if not all(math.isfinite(v) for v in model.params_.values()):
        notes.append(f"{label} fit gave non-finite parameters")
        return None
    if not model.converged_:
        notes.append(f"{label} optimiser did not report convergence (best point kept)")
    return model


def _fit_purchase_models(
    customers: pl.DataFrame,
    spec: ValueSpec,
    notes: list[str],
    label: str = "",
    with_pareto: bool = True,
) -> tuple[BetaGeoModel | None, ParetoNBDModel | None, int]:
    """BG/NBD and (unless ``with_pareto`` is False) Pareto/NBD on the distinct triples of
    ``customers``."""
    where = f" ({label})" if label else ""
    if customers.height < spec.min_customers:
        notes.append(
            f"BG/NBD not fitted{where}: {customers.height} customers"
            f" < {spec.min_customers} (nor Pareto/NBD)"
        )
        return None, None, 0
    triples, arrays = _triples(customers, spec.time_unit_days)
    bgnbd = _fit_purchase_model(BetaGeoModel, f"BG/NBD{where}", spec.bgnbd_penalizer, arrays, notes)
    pareto = None
    if with_pareto:
        pareto = _fit_purchase_model(
            ParetoNBDModel, f"Pareto/NBD{where}", spec.pareto_penalizer, arrays, notes
        )
    return bgnbd, pareto, triples.height


def _fit_gamma_gamma(
    customers: pl.DataFrame, spec: ValueSpec, notes: list[str]
) -> tuple[GammaGammaModel | None, int, float | None]:
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
        grouped = (
            repeat.group_by(count_col, value_col)
            .agg(pl.len().alias("n"))
            .sort(count_col, value_col)
        )
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
    return gamma_gamma, repeat.height, corr


def purchase_predictions(
    customers: pl.DataFrame, model: PurchaseModel, horizon_days: float, unit: float
) -> pl.DataFrame:
    """Per distinct triple of ``customers``: P(alive), E[purchases in the horizon] and
    P(no purchase in the horizon). Join back on (x, t_x, T)."""
    triples = customers.select(X_COL, TX_COL, T_COL).unique().sort(X_COL, TX_COL, T_COL)
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    t = horizon_days / unit
    return triples.with_columns(
        pl.Series("p_alive", np.clip(model.conditional_probability_alive(x, tx, T), 0.0, 1.0)),
        pl.Series(
            "expected_purchases",
            model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T),
        ),
        pl.Series("p_no_purchase", model.probability_no_purchase_up_to_time(t, x, tx, T)),
    ).with_columns(
        pl.col("p_alive", "expected_purchases", "p_no_purchase").fill_nan(None).cast(pl.Float64)
    )


def _check_history(features: pl.DataFrame, history: pl.DataFrame, window_days: int) -> None:
    """Point-in-time guard: the history must be the snapshot exactly one window earlier."""
    if "as_of_date" not in features.columns or "as_of_date" not in history.columns:
        return
    now, then = features["as_of_date"].max(), history["as_of_date"].max()
    if isinstance(now, date) and isinstance(then, date) and then != now - timedelta(window_days):
        raise ValueError(
            f"history is as of {then}, expected {now - timedelta(window_days)}"
            f" (snapshot {now} minus churn_window_days={window_days})"
        )


@dataclass
class CandidateEvaluation:
    """Evidence from the internal holdout and the choices made from it."""

    forecast_choice: dict[str, str]
    default_forecast: str
    churn_model: str
    evidence: dict[str, Any]
    notes: list[str]
    labelled: pl.DataFrame | None = None
    classifier_trainable: bool = False


def evaluate_candidates(
    calibration: pl.DataFrame, later: pl.DataFrame, spec: ValueSpec
) -> CandidateEvaluation:
    """Fit every candidate on ``calibration`` (features as of C), score (C, C + W] against
    ``later`` (features as of C + W) and choose.

    Forecast: per calibration-frequency group, the purchase model with the lower MAE (groups
    smaller than ``selection_min_group_customers`` take the overall winner). Churn: the
    classifier is trained on a deterministic share of customers and compared by AUC on the
    rest with the probabilistic score (P(no purchase in W) of each customer's forecast model).
    Too little data keeps BG/NBD and the probabilistic score, with a note.
    """
    notes: list[str] = []
    window = float(spec.churn_window_days)
    unit = spec.time_unit_days
    outcomes = holdout_outcomes(calibration, later)
    evidence: dict[str, Any] = {
        "holdout_days": spec.churn_window_days,
        "holdout_customers": outcomes.height,
    }
    fallback = CandidateEvaluation({}, "bgnbd", PROBABILISTIC, evidence, notes)
    if outcomes.height < spec.selection_min_customers:
        notes.append(
            f"model selection skipped: {outcomes.height} customers in the internal holdout"
            f" < {spec.selection_min_customers}; forecast BG/NBD, churn probabilistic"
        )
        return fallback
    fit_notes: list[str] = []
    bgnbd, pareto, _ = _fit_purchase_models(outcomes, spec, fit_notes, "internal holdout")
    notes.extend(fit_notes)
    candidates = {k: m for k, m in (("bgnbd", bgnbd), ("pareto_nbd", pareto)) if m is not None}
    if not candidates:
        notes.append("model selection skipped: no purchase model fitted on the history")
        return fallback

    scored = outcomes
    for key, model in candidates.items():
        pred = purchase_predictions(outcomes, model, window, unit).select(
            X_COL,
            TX_COL,
            T_COL,
            pl.col("expected_purchases").alias(f"_pred_{key}"),
            pl.col("p_no_purchase").alias(f"_quiet_{key}"),
        )
        scored = scored.join(pred, on=[X_COL, TX_COL, T_COL], how="left")
    actual = scored["holdout_purchases"].to_numpy().astype(np.float64)
    overall = {k: mae(scored[f"_pred_{k}"].to_numpy(), actual) for k in candidates}
    default = min(overall, key=lambda k: (overall[k], k != "bgnbd"))
    by_group: list[dict[str, Any]] = []
    choice: dict[str, str] = {}
    for group in frequency_groups():
        rows = scored.filter(pl.col("frequency_group") == group)
        maes = {
            k: mae(rows[f"_pred_{k}"].to_numpy(), rows["holdout_purchases"].to_numpy())
            for k in candidates
        }
        if rows.height >= spec.selection_min_group_customers:
            chosen = min(maes, key=lambda k: (maes[k], k != default))
        else:
            chosen = default
        choice[group] = chosen
        by_group.append(
            {
                "group": group,
                "customers": rows.height,
                **{f"mae_{k}": v for k, v in maes.items()},
                "chosen": chosen,
            }
        )
    scored = scored.with_columns(
        pl.col("frequency_group")
        .replace_strict(choice, default=default, return_dtype=pl.String)
        .alias("_forecast_model")
    )
    chosen_pred = pl.coalesce(
        *(pl.when(pl.col("_forecast_model") == k).then(pl.col(f"_pred_{k}")) for k in candidates)
    )
    chosen_quiet = pl.coalesce(
        *(pl.when(pl.col("_forecast_model") == k).then(pl.col(f"_quiet_{k}")) for k in candidates)
    )
    scored = scored.with_columns(
        chosen_pred.alias("_pred_chosen"), chosen_quiet.alias(f"_quiet_{PROBABILISTIC}")
    )
    overall["chosen"] = mae(scored["_pred_chosen"].to_numpy(), actual)
    evidence.update(
        {
            "actual_purchases": float(actual.sum()),
            "predicted_purchases": {
                k: float(scored[f"_pred_{k}"].sum()) for k in (*candidates, "chosen")
            },
            "mae": overall,
            "by_frequency_group": by_group,
            "params": {k: dict(m.params_) for k, m in candidates.items()},
        }
    )

    churn_model = PROBABILISTIC
    if spec.churn_model_enabled:
        churn_model, churn_evidence = _compare_churn_models(scored, candidates, spec, notes)
        evidence["churn"] = churn_evidence
    else:
        notes.append("churn classifier disabled in the spec: churn risk is probabilistic")
    trainable = CHURN_CLASSIFIER in evidence.get("churn", {}).get("auc", {})
    return CandidateEvaluation(
        choice,
        default,
        churn_model,
        evidence,
        notes,
        labelled=scored,
        classifier_trainable=trainable,
    )


def _compare_churn_models(
    scored: pl.DataFrame, candidates: dict[str, Any], spec: ValueSpec, notes: list[str]
) -> tuple[str, dict[str, Any]]:
    churned = scored["churned"].to_numpy()
    test = holdout_split(scored["user_id"], spec.churn_test_share, spec.churn_seed)
    n_train, n_test = int((~test).sum()), int(test.sum())
    evidence: dict[str, Any] = {
        "window_days": spec.churn_window_days,
        "train_customers": n_train,
        "test_customers": n_test,
        "churn_rate": float(churned.mean()),
    }
    y_test = churned[test]
    auc = {
        k: roc_auc(scored[f"_quiet_{k}"].to_numpy()[test], y_test)
        for k in (*candidates, PROBABILISTIC)
    }
    evidence["auc"] = auc

    def smallest_class(labels: np.ndarray) -> int:
        return int(min(labels.sum(), labels.size - labels.sum()))

    reason = None
    if scored.height < spec.churn_min_customers:
        reason = f"{scored.height} holdout customers < {spec.churn_min_customers}"
    elif min(smallest_class(churned[~test]), smallest_class(y_test)) < (
        spec.churn_min_class_customers
    ):
        reason = (
            f"fewer than {spec.churn_min_class_customers} churned or retained customers"
            " in the train or test part"
        )
    if reason is not None:
        notes.append(f"churn classifier not trained ({reason}): churn risk is probabilistic")
        return PROBABILISTIC, evidence
    try:
        classifier = _new_classifier(spec).fit(scored.filter(~pl.Series(test)), churned[~test])
        auc[CHURN_CLASSIFIER] = roc_auc(
            classifier.predict_churn(scored.filter(pl.Series(test))), y_test
        )
    except ValueError as exc:
        notes.append(f"churn classifier failed ({exc}): churn risk is probabilistic")
        return PROBABILISTIC, evidence
    gbm, prob = auc[CHURN_CLASSIFIER], auc[PROBABILISTIC]
    better = math.isfinite(gbm) and (not math.isfinite(prob) or gbm > prob)
    return (CHURN_CLASSIFIER if better else PROBABILISTIC), evidence


def _new_classifier(spec: ValueSpec) -> ChurnClassifier:
    return ChurnClassifier(
        features=spec.churn_features,
        max_iter=spec.churn_max_iter,
        learning_rate=spec.churn_learning_rate,
        random_state=spec.churn_seed,
    )


def fit_value_models(
    features: pl.DataFrame, spec: ValueSpec, history: pl.DataFrame | None = None
) -> ValueModels:
    """Fit BG/NBD and Pareto/NBD on distinct (x, t_x, T) triples with counts, Gamma-Gamma on
    repeat customers, and choose the forecast and churn models.

    ``history``: user_features as of D - churn_window_days (D = the as-of date of
    ``features``). With it, :func:`evaluate_candidates` runs the internal backtest on
    (D - W, D] and the chosen churn classifier is retrained on every history customer. Without
    it (or with too little data) the forecast is BG/NBD and churn risk probabilistic.
    Too few customers, or an optimiser failure, leave a model as None with a note: the daily
    run degrades to NULL model outputs rather than failing.
    """
    _check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    if history is not None:
        _check_history(features, history, spec.churn_window_days)
    notes: list[str] = []
    customers = valid_customers(features)
    n_customers = customers.height
    population_aov = _population_order_value(customers)
    # Pareto/NBD only competes when there is a history to choose on (it costs more to fit)
    bgnbd, pareto, n_triples = _fit_purchase_models(
        customers, spec, notes, with_pareto=history is not None
    )
    gamma_gamma, n_repeat, corr = _fit_gamma_gamma(customers, spec, notes)

    choice: dict[str, str] = {}
    default = "bgnbd"
    classifier: ChurnClassifier | None = None
    use_classifier = False
    selection: dict[str, Any] = {"status": "no history given: BG/NBD, probabilistic churn"}
    if history is not None and bgnbd is not None:
        evaluation = evaluate_candidates(history, features, spec)
        notes.extend(evaluation.notes)
        selection = {"status": "selected on the internal holdout", **evaluation.evidence}
        # a model chosen on the history but not fitted on the snapshot cannot forecast
        fitted = {"bgnbd": bgnbd, "pareto_nbd": pareto}
        available = {k for k, m in fitted.items() if m is not None}
        if evaluation.default_forecast in available:
            default = evaluation.default_forecast
        choice = {
            g: (m if m in available else default) for g, m in evaluation.forecast_choice.items()
        }
        # Retrained on every history customer; kept even when it lost (backtests report both
        # models' AUC), but only scores churn when it won.
        if evaluation.classifier_trainable and evaluation.labelled is not None:
            labelled = evaluation.labelled
            try:
                classifier = _new_classifier(spec).fit(labelled, labelled["churned"].to_numpy())
            except ValueError as exc:
                notes.append(f"churn classifier refit failed ({exc}): churn risk is probabilistic")
            else:
                use_classifier = evaluation.churn_model == CHURN_CLASSIFIER
    elif history is not None:
        notes.append("model selection skipped: BG/NBD could not be fitted on the snapshot")
    for note in notes:
        log.warning(note)
    return ValueModels(
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        fitted_on_users=n_customers if bgnbd is not None else 0,
        fitted_on_triples=n_triples if bgnbd is not None else 0,
        repeat_customers=n_repeat,
        time_unit_days=spec.time_unit_days,
        population_order_value=population_aov,
        spend_frequency_corr=corr,
        spec_name=spec.name,
        spec_version=spec.version,
        notes=notes,
        pareto_nbd=pareto,
        churn_classifier=classifier,
        use_churn_classifier=use_classifier,
        forecast_choice=choice,
        default_forecast=default,
        selection=selection,
    )


def _model_scores(
    customers: pl.DataFrame, model: PurchaseModel, spec: ValueSpec, unit: float
) -> pl.DataFrame:
    """One purchase model's outputs per distinct triple (all depend on the triple only)."""
    base = purchase_predictions(customers, model, spec.churn_window_days, unit)
    triples = base.select(X_COL, TX_COL, T_COL)
    x = triples[X_COL].to_numpy().astype(np.float64)
    tx = triples[TX_COL].to_numpy().astype(np.float64) / unit
    T = triples[T_COL].to_numpy().astype(np.float64) / unit
    return base.select(
        X_COL,
        TX_COL,
        T_COL,
        "p_alive",
        pl.col("p_no_purchase").alias("churn_risk"),
        pl.Series(
            "_expected_orders",
            model.conditional_expected_number_of_purchases_up_to_time(
                spec.expected_orders_days / unit, x, tx, T
            ),
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
        pl.col("_expected_orders", "_discounted_purchases").fill_nan(None).cast(pl.Float64)
    )


def _order_values(
    customers: pl.DataFrame, models: ValueModels, spec: ValueSpec
) -> tuple[pl.Series | None, str | None]:
    """Expected value per future order and the spend model id: GG conditional mean, else the
    spec's fallback."""
    count_col, value_col = spec.gg_count_column, spec.gg_value_column
    gg = models.gamma_gamma
    if gg is not None:
        n = customers[count_col].cast(pl.Float64).fill_null(0.0).to_numpy()
        m = customers[value_col].cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        usable = (n > 0) & (m > 0) & np.isfinite(m)
        values = gg.conditional_expected_average_profit(
            np.where(usable, n, 0.0), np.where(usable, m, 0.0)
        )
        return pl.Series("expected_order_value", values).fill_nan(None), "gamma_gamma"
    pop = models.population_order_value
    if spec.fallback_order_value == "own_aov":
        own = customers[value_col].cast(pl.Float64).fill_nan(None)
        return own.fill_null(pop).alias("expected_order_value"), "own_aov"
    series = pl.Series("expected_order_value", [pop] * customers.height, dtype=pl.Float64)
    return series, ("population_mean" if pop is not None else None)


MODEL_COLUMNS = ("p_alive", "_expected_orders", "churn_risk", "_discounted_purchases")


def _forecast_columns(valid: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    """Per valid customer (by ``_row``): the forecast model's outputs and its id."""
    unit = models.time_unit_days
    keyed = valid.select("_row", X_COL, TX_COL, T_COL).with_columns(
        frequency_group(pl.col(X_COL))
        .replace_strict(
            {g: models.forecast_model_for(g) for g in frequency_groups()},
            default=models.default_forecast,
            return_dtype=pl.String,
        )
        .alias("forecast_model")
    )
    parts = []
    for key in sorted(set(keyed["forecast_model"].unique().to_list())):
        model = models.purchase_model(key)
        rows = keyed.filter(pl.col("forecast_model") == key)
        if model is None:  # a chosen model that is missing: its rows stay unscored
            parts.append(
                rows.select(
                    "_row", pl.lit(None, dtype=pl.String).alias("forecast_model")
                ).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in MODEL_COLUMNS)
            )
            continue
        per_triple = _model_scores(rows, model, spec, unit)
        parts.append(
            rows.join(per_triple, on=[X_COL, TX_COL, T_COL], how="left").select(
                "_row", "forecast_model", *MODEL_COLUMNS
            )
        )
    return pl.concat(parts) if parts else keyed.select("_row", "forecast_model").clear()


def _null_model_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in MODEL_COLUMNS
    ).with_columns(pl.lit(None, dtype=pl.String).alias("forecast_model"))


def score_value(features: pl.DataFrame, models: ValueModels, spec: ValueSpec) -> pl.DataFrame:
    """One row per input user: P(alive), expected orders, expected order value, CLV, churn risk,
    and the ids of the models that produced them.

    forecast_model (bgnbd / pareto_nbd) gives p_alive, expected orders and the purchase part of
    CLV; churn_model is 'gbm' (the classifier) or the forecast model's id (probabilistic
    P(no purchase in the churn window)); spend_model is gamma_gamma or the spec's fallback.
    Non-customers: NULL p_alive / expected orders / churn risk / expected order value / model
    ids, clv 0.0 (nothing modelled to gain yet), band no_purchase. Customers without a fitted
    purchase model: NULL model outputs and band unscored. Never raises on small or degenerate
    snapshots.
    """
    _check_columns(features, (*REQUIRED_COLUMNS, spec.gg_count_column, spec.gg_value_column))
    frame = features.with_row_index("_row")
    valid = valid_customers(frame)

    order_values: pl.Series | None
    spend_model: str | None
    try:
        order_values, spend_model = _order_values(valid, models, spec)
    except (ValueError, FloatingPointError, ArithmeticError) as exc:
        log.warning("expected order value failed, left NULL: %s", exc)
        order_values, spend_model = None, None
    if order_values is None:
        order_values = pl.Series("expected_order_value", [None] * valid.height, dtype=pl.Float64)
    # positional: order_values is aligned with `valid`, so attach it before any join
    scored = valid.select("_row").with_columns(
        order_values.cast(pl.Float64).alias("expected_order_value")
    )
    forecast: pl.DataFrame | None = None
    if models.bgnbd is not None and valid.height:
        try:
            forecast = _forecast_columns(valid, models, spec)
        except (ValueError, FloatingPointError, ArithmeticError) as exc:
            log.warning("purchase-model scoring failed, model outputs left NULL: %s", exc)
    if forecast is not None:
        scored = scored.join(forecast, on="_row", how="left")
    else:
        scored = _null_model_columns(scored)
    scored = scored.with_columns(
        pl.when(pl.col("churn_risk").is_not_null())
        .then(pl.col("forecast_model"))
        .otherwise(None)
        .alias("churn_model")
    )

    classifier = models.scoring_classifier
    if classifier is not None and forecast is not None and valid.height:
        try:
            risk = classifier.predict_churn(valid)
        except (ValueError, RuntimeError, ArithmeticError) as exc:
            log.warning("churn classifier failed, probabilistic churn risk kept: %s", exc)
        else:
            # positional again: predictions follow `valid`'s rows
            gbm = valid.select("_row").with_columns(pl.Series("_gbm_risk", risk))
            scored = (
                scored.join(gbm, on="_row", how="left")
                .with_columns(
                    pl.when(pl.col("forecast_model").is_not_null())
                    .then(pl.col("_gbm_risk"))
                    .otherwise(pl.col("churn_risk"))
                    .alias("churn_risk"),
                    pl.when(pl.col("forecast_model").is_not_null())
                    .then(pl.lit(CHURN_CLASSIFIER))
                    .otherwise(pl.col("churn_model"))
                    .alias("churn_model"),
                )
                .drop("_gbm_risk")
            )

    scored = scored.select(
        "_row",
        "p_alive",
        pl.col("_expected_orders").alias(spec.expected_orders_column),
        "expected_order_value",
        (pl.col("_discounted_purchases") * pl.col("expected_order_value")).alias(spec.clv_column),
        "churn_risk",
        "forecast_model",
        "churn_model",
        pl.when(pl.col("expected_order_value").is_not_null())
        .then(pl.lit(spend_model, dtype=pl.String))
        .otherwise(None)
        .alias("spend_model"),
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
