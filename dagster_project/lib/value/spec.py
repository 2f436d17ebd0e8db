"""models/value.yml as a validated, frozen ValueSpec (the typed loader of lib/core/spec_model)."""

from __future__ import annotations

import logging
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dagster_project.lib.core import settings
from dagster_project.lib.core.spec_model import parse_spec, spec_model
from dagster_project.lib.value.churn import DEFAULT_FEATURES
from dagster_project.lib.value.metrics import (
    T_COL,
    TX_COL,
    X_COL,
)

log = logging.getLogger(__name__)


DEFAULT_VALUE_SPEC_PATH = settings.MODEL_SPECS_DIR / "value.yml"


BAND_KEYS = ("low", "medium", "high", "no_purchase", "unscored")


FALLBACKS = ("population_mean", "own_aov")


# Model ids written to every row (forecast_model, churn_model, spend_model).
CHURN_CLASSIFIER = "gbm"


PROBABILISTIC = "probabilistic"


# Feature columns (features.user_features) this module reads.
REQUIRED_COLUMNS = ("user_id", "is_customer", X_COL, TX_COL, T_COL, "frequency", "monetary")


SIMPLE_LTV_COLUMNS = ("is_customer", "orders_30d", "orders_trend_30d", "revenue_30d")


# Why the money outputs are NULL for a source without money (money: none in the mapping).
NO_MONEY = (
    "no order amounts (a source without money): expected order value, CLV and the simple "
    "LTV are NULL"
)


@dataclass(frozen=True)
class ValueSpec:
    """models/value.yml, validated. See the yml for the meaning of each field."""

    name: str = "user_value"
    version: int = 1
    time_unit_days: float = 1.0
    bgnbd_penalizer: float = 0.0
    min_customers: int = 20
    min_history_days: int = 30
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
    quality_min_churn_auc: float = 0.6
    quality_max_churn_calibration_error: float = 0.1
    quality_max_forecast_mae_ratio: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.time_unit_days <= 0:
            problems.append("time_unit_days must be > 0")
        if self.bgnbd_penalizer < 0 or self.gg_penalizer < 0 or self.pareto_penalizer < 0:
            problems.append("penalizers must be >= 0")
        if self.min_customers < 1 or self.min_repeat_customers < 1:
            problems.append("minimum customer counts must be >= 1")
        if self.min_history_days < 0:
            problems.append("bgnbd.min_history_days must be >= 0")
        if not 0 <= self.quality_min_churn_auc <= 1 or self.quality_max_churn_calibration_error < 0:
            problems.append(
                "need 0 <= quality.min_churn_auc <= 1, max_churn_calibration_error >= 0"
            )
        if self.quality_max_forecast_mae_ratio <= 0:
            problems.append("quality.max_forecast_mae_ratio must be > 0")
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
    "bgnbd": {
        "penalizer": "bgnbd_penalizer",
        "min_customers": "min_customers",
        "min_history_days": "min_history_days",
    },
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
    "quality": {
        "min_churn_auc": "quality_min_churn_auc",
        "max_churn_calibration_error": "quality_max_churn_calibration_error",
        "max_forecast_mae_ratio": "quality_max_forecast_mae_ratio",
    },
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


def json_safe(value: Any) -> Any:
    """NaN / inf (e.g. an undefined AUC) become None: run metadata and cards are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
