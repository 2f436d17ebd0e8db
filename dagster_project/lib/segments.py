"""Rule-based segment schemes: R/F/M scores, the named R x F map, 8-type value tiers, lifecycle
stages and operating tiers.

Everything a marketer might want to tune (cut points, maps, day counts, labels) lives in the
committed spec ``models/segmentation.yml``; this module only reads it and applies it, so a
change of policy is a reviewed diff of that file, not of code. Every scheme is an exact partition
of the input users: each user gets exactly one key and one Chinese label per scheme (tested, and
asserted at run time). Pure polars; no Dagster imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

logger = logging.getLogger(__name__)

#: Output columns of :func:`assign_rule_segments`, in order.
SEGMENT_COLUMNS: tuple[str, ...] = (
    "user_id",
    "r_score",
    "f_score",
    "m_score",
    "rfm_cell",
    "rfm_segment",
    "rfm_segment_label",
    "value_tier",
    "value_tier_label",
    "lifecycle_stage",
    "lifecycle_label",
    "ops_tier",
    "ops_tier_label",
)

#: user_features columns the rule schemes read.
REQUIRED_FEATURES: tuple[str, ...] = (
    "user_id",
    "is_customer",
    "tenure_days",
    "recency_days",
    "frequency",
    "monetary",
    "customer_age_days",
    "repeat_purchases",
    "purchase_span_days",
    "days_since_last_active",
)

LIFECYCLE_KEYS: tuple[str, ...] = (
    "new",
    "reactivated",
    "active",
    "at_risk",
    "dormant",
    "lost",
    "prospect",
)
OPS_TIER_KEYS: tuple[str, ...] = ("high_value", "active", "potential", "silent", "churned")


# --------------------------------------------------------------------------------------------
# Spec (frozen dataclasses mirroring models/segmentation.yml)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """An English key (stable, used in tables and code) and its Chinese display label."""

    key: str
    label_zh: str


@dataclass(frozen=True)
class ScoreRule:
    """How one of R, F, M is scored: quantile probabilities or fixed cut points (see the yml)."""

    column: str
    higher_is_better: bool
    method: str  # "quantile" | "fixed"
    edges: tuple[float, ...]

    @property
    def levels(self) -> int:
        """Number of scores (1..levels)."""
        return len(self.edges) + 1


@dataclass(frozen=True)
class MapRule:
    """A rectangle of the R x F grid (inclusive score ranges) and the segment it names."""

    key: str
    label_zh: str
    r: tuple[int, int]
    f: tuple[int, int]

    def covers(self, r: int, f: int) -> bool:
        """Whether the cell (r, f) lies inside this rectangle."""
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1]


@dataclass(frozen=True)
class ValueTier:
    """One of the 8 value tiers: a high/low combination of R, F and M."""

    key: str
    label_zh: str
    r_high: bool
    f_high: bool
    m_high: bool


@dataclass(frozen=True)
class LifecycleSpec:
    """Day thresholds (inclusive upper bounds) and labels of the lifecycle stages."""

    new_days: int
    active_days: int
    at_risk_days: int
    dormant_days: int
    reactivation_gap_column: str
    labels: tuple[Label, ...]


@dataclass(frozen=True)
class OpsTierSpec:
    """Operating tiers 高价值 / 活跃 / 潜力 / 沉默 / 流失."""

    silent_days: int
    high_value_min_m_score: int
    labels: tuple[Label, ...]


@dataclass(frozen=True)
class RulesSpec:
    """All rule schemes."""

    recency: ScoreRule
    frequency: ScoreRule
    monetary: ScoreRule
    rf_map: tuple[MapRule, ...]
    prospect: Label
    value_statistic: str  # "median" | "mean"
    value_tiers: tuple[ValueTier, ...]
    lifecycle: LifecycleSpec
    ops_tiers: OpsTierSpec


@dataclass(frozen=True)
class NamingTerm:
    """Words for a feature whose cluster centroid is well above / below the population."""

    high_en: str
    high_zh: str
    low_en: str
    low_zh: str


@dataclass(frozen=True)
class NamingSpec:
    """How cluster names are derived from profiles (see the yml)."""

    z_threshold: float
    max_terms: int
    default_en: str
    default_zh: str
    non_customer_en: str
    non_customer_zh: str
    purchase_features: tuple[str, ...]
    terms: tuple[tuple[str, NamingTerm], ...]

    def term(self, feature: str) -> NamingTerm:
        """Words for a feature; a generic '<feature> high/low' when the spec has none."""
        for name, term in self.terms:
            if name == feature:
                return term
        return NamingTerm(f"{feature} high", f"{feature}高", f"{feature} low", f"{feature}低")


@dataclass(frozen=True)
class ClusteringSpec:
    """KMeans clustering parameters (see the yml)."""

    features: tuple[str, ...]
    log_features: tuple[str, ...]
    fill: tuple[tuple[str, str | float], ...]
    k_min: int
    k_max: int
    random_state: int
    n_init: int
    silhouette_sample: int
    min_share: float
    minibatch_above: int
    naming: NamingSpec


@dataclass(frozen=True)
class SegmentationSpec:
    """The whole segmentation spec; ``fingerprint`` identifies its content for model versions."""

    name: str
    version: int
    rules: RulesSpec
    clustering: ClusteringSpec
    fingerprint: str


def _labels(raw: Iterable[Mapping[str, Any]]) -> tuple[Label, ...]:
    return tuple(Label(str(item["key"]), str(item["label_zh"])) for item in raw)


def _score_rule(raw: Mapping[str, Any]) -> ScoreRule:
    return ScoreRule(
        column=str(raw["column"]),
        higher_is_better=bool(raw["higher_is_better"]),
        method=str(raw["method"]),
        edges=tuple(float(e) for e in raw["edges"]),
    )


def _high(value: Any, where: str) -> bool:
    if value not in ("high", "low"):
        raise ValueError(f"{where}: expected 'high' or 'low', got {value!r}")
    return value == "high"


def _check_labels(scheme: str, labels: Sequence[Label], expected: Sequence[str] | None) -> None:
    keys = [lab.key for lab in labels]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{scheme}: duplicate keys in {keys}")
    if any(not lab.label_zh for lab in labels):
        raise ValueError(f"{scheme}: every key needs a label_zh")
    if expected is not None and set(keys) != set(expected):
        raise ValueError(f"{scheme}: keys must be exactly {sorted(expected)}, got {sorted(keys)}")


def _validate(spec: SegmentationSpec) -> None:
    """Refuse specs that would not partition users or that are internally inconsistent."""
    rules = spec.rules
    for rule in (rules.recency, rules.frequency, rules.monetary):
        if rule.method not in ("quantile", "fixed"):
            raise ValueError(f"rfm {rule.column}: method must be quantile or fixed")
        if list(rule.edges) != sorted(rule.edges) or not 1 <= len(rule.edges) <= 8:
            raise ValueError(f"rfm {rule.column}: 1..8 edges in ascending order")
        if rule.method == "quantile" and not all(0 < e < 1 for e in rule.edges):
            raise ValueError(f"rfm {rule.column}: quantile edges must lie in (0, 1)")
    problems = check_map_partition(
        rules.rf_map,
        range(1, rules.recency.levels + 1),
        range(1, rules.frequency.levels + 1),
    )
    if problems:
        raise ValueError("rf_map is not an exact partition: " + "; ".join(problems))
    rf_labels = {(m.key, m.label_zh) for m in rules.rf_map}
    if len({key for key, _ in rf_labels}) != len(rf_labels) or any(not zh for _, zh in rf_labels):
        raise ValueError("rf_map: a key may span several rectangles but needs one label_zh")
    combos = [(t.r_high, t.f_high, t.m_high) for t in rules.value_tiers]
    if len(combos) != 8 or len(set(combos)) != 8:
        raise ValueError("value_tiers must cover the 8 high/low combinations exactly once")
    _check_labels("value_tiers", [Label(t.key, t.label_zh) for t in rules.value_tiers], None)
    if rules.value_statistic not in ("median", "mean"):
        raise ValueError("value_tiers.statistic must be median or mean")
    taken = {m.key for m in rules.rf_map} | {t.key for t in rules.value_tiers}
    if rules.prospect.key in taken:
        raise ValueError("the prospect key is reserved for non-customers")
    lc = rules.lifecycle
    if not (0 <= lc.new_days <= lc.active_days < lc.at_risk_days < lc.dormant_days):
        raise ValueError(
            "lifecycle: need 0 <= new_days <= active_days < at_risk_days < dormant_days"
        )
    _check_labels("lifecycle", lc.labels, LIFECYCLE_KEYS)
    ops = rules.ops_tiers
    if not 0 <= ops.silent_days < lc.dormant_days:
        raise ValueError("ops_tiers: need 0 <= silent_days < lifecycle.dormant_days")
    if not 1 <= ops.high_value_min_m_score <= rules.monetary.levels:
        raise ValueError("ops_tiers: high_value_min_m_score outside the M score range")
    _check_labels("ops_tiers", ops.labels, OPS_TIER_KEYS)
    cl = spec.clustering
    if not 2 <= cl.k_min <= cl.k_max:
        raise ValueError("clustering: need 2 <= k_min <= k_max")
    if not set(cl.log_features) <= set(cl.features):
        raise ValueError("clustering: log_features must be a subset of features")
    if not 0 <= cl.min_share < 1:
        raise ValueError("clustering: min_share must lie in [0, 1)")


def load_segmentation_spec(path: Path) -> SegmentationSpec:
    """Load and validate ``models/segmentation.yml``.

    Validation happens here, once, so that a spec whose R x F map has a gap or an overlap (or whose
    value tiers miss a combination) fails at load time instead of leaving users unlabelled.
    """
    text = Path(path).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    r = raw["rules"]
    c = raw["clustering"]
    lc = r["lifecycle"]
    ops = r["ops_tiers"]
    naming = c["naming"]
    spec = SegmentationSpec(
        name=str(raw.get("name", "user_segmentation")),
        version=int(raw.get("version", 1)),
        rules=RulesSpec(
            recency=_score_rule(r["rfm"]["recency"]),
            frequency=_score_rule(r["rfm"]["frequency"]),
            monetary=_score_rule(r["rfm"]["monetary"]),
            rf_map=tuple(
                MapRule(
                    key=str(m["key"]),
                    label_zh=str(m["label_zh"]),
                    r=(int(m["r"][0]), int(m["r"][1])),
                    f=(int(m["f"][0]), int(m["f"][1])),
                )
                for m in r["rf_map"]
            ),
            prospect=Label(str(r["prospect"]["key"]), str(r["prospect"]["label_zh"])),
            value_statistic=str(r["value_tiers"].get("statistic", "median")),
            value_tiers=tuple(
                ValueTier(
                    key=str(t["key"]),
                    label_zh=str(t["label_zh"]),
                    r_high=_high(t["r"], f"value tier {t['key']} r"),
                    f_high=_high(t["f"], f"value tier {t['key']} f"),
                    m_high=_high(t["m"], f"value tier {t['key']} m"),
                )
                for t in r["value_tiers"]["tiers"]
            ),
            lifecycle=LifecycleSpec(
                new_days=int(lc["new_days"]),
                active_days=int(lc["active_days"]),
                at_risk_days=int(lc["at_risk_days"]),
                dormant_days=int(lc["dormant_days"]),
                reactivation_gap_column=str(
                    lc.get("reactivation_gap_column", "prev_order_gap_days")
                ),
                labels=_labels(lc["labels"]),
            ),
            ops_tiers=OpsTierSpec(
                silent_days=int(ops["silent_days"]),
                high_value_min_m_score=int(ops["high_value_min_m_score"]),
                labels=_labels(ops["labels"]),
            ),
        ),
        clustering=ClusteringSpec(
            features=tuple(str(f) for f in c["features"]),
            log_features=tuple(str(f) for f in c.get("log_features", [])),
            fill=tuple(
                (str(k), v if isinstance(v, str) else float(v))
                for k, v in (c.get("fill") or {}).items()
            ),
            k_min=int(c["k_min"]),
            k_max=int(c["k_max"]),
            random_state=int(c["random_state"]),
            n_init=int(c["n_init"]),
            silhouette_sample=int(c["silhouette_sample"]),
            min_share=float(c["min_share"]),
            minibatch_above=int(c["minibatch_above"]),
            naming=NamingSpec(
                z_threshold=float(naming["z_threshold"]),
                max_terms=int(naming["max_terms"]),
                default_en=str(naming["default"]["en"]),
                default_zh=str(naming["default"]["zh"]),
                non_customer_en=str(naming["non_customer"]["en"]),
                non_customer_zh=str(naming["non_customer"]["zh"]),
                purchase_features=tuple(str(f) for f in naming.get("purchase_features", [])),
                terms=tuple(
                    (str(feature), NamingTerm(**{k: str(v) for k, v in words.items()}))
                    for feature, words in (naming.get("terms") or {}).items()
                ),
            ),
        ),
        fingerprint=hashlib.sha256(
            json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()[:12],
    )
    _validate(spec)
    return spec


def check_map_partition(
    map_spec: Sequence[MapRule], r_values: Iterable[int], f_values: Iterable[int]
) -> list[str]:
    """Check that a named R x F map covers every (r, f) cell exactly once.

    Returns one message per unmatched or multiply matched cell (empty list when the map is an
    exact partition), so a bad edit of the spec names the exact cells to fix.
    """
    problems: list[str] = []
    f_list = list(f_values)
    for r in r_values:
        for f in f_list:
            hits = [rule.key for rule in map_spec if rule.covers(r, f)]
            if not hits:
                problems.append(f"r={r} f={f}: unmatched")
            elif len(hits) > 1:
                problems.append(f"r={r} f={f}: matched by {', '.join(hits)}")
    return problems


def segment_catalog(spec: SegmentationSpec) -> pl.DataFrame:
    """Every (scheme, key, label_zh, sort_order): the label dimension BI and dbt contracts use."""
    rules = spec.rules
    rows: list[tuple[str, str, str]] = []
    rows += [("rfm_segment", m.key, m.label_zh) for m in rules.rf_map]
    rows += [("rfm_segment", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("value_tier", t.key, t.label_zh) for t in rules.value_tiers]
    rows += [("value_tier", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("lifecycle_stage", lab.key, lab.label_zh) for lab in rules.lifecycle.labels]
    rows += [("ops_tier", lab.key, lab.label_zh) for lab in rules.ops_tiers.labels]
    frame = pl.DataFrame(rows, schema=["scheme", "key", "label_zh"], orient="row").unique(
        subset=["scheme", "key"], keep="first", maintain_order=True
    )
    return frame.with_columns(
        pl.int_range(pl.len()).over("scheme").cast(pl.Int16).alias("sort_order")
    )


# --------------------------------------------------------------------------------------------
# Cut points (computed on the customers of the as-of date)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCuts:
    """Cut points in raw units actually used on a date; report them as run metadata."""

    recency_edges: tuple[float, ...]
    frequency_edges: tuple[float, ...]
    monetary_edges: tuple[float, ...]
    recency_threshold: float | None
    frequency_threshold: float | None
    monetary_threshold: float | None
    n_customers: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for asset metadata."""
        return {
            "recency_edges": list(self.recency_edges),
            "frequency_edges": list(self.frequency_edges),
            "monetary_edges": list(self.monetary_edges),
            "recency_threshold": self.recency_threshold,
            "frequency_threshold": self.frequency_threshold,
            "monetary_threshold": self.monetary_threshold,
            "n_customers": self.n_customers,
        }


def _customer_mask() -> pl.Expr:
    """Customers: at least one completed order on or before the as-of date."""
    return pl.col("is_customer").fill_null(False)


def _edges(values: np.ndarray, rule: ScoreRule) -> tuple[float, ...]:
    if rule.method == "fixed":
        return rule.edges
    if values.size == 0:
        return tuple(float("nan") for _ in rule.edges)
    return tuple(float(q) for q in np.quantile(values, rule.edges, method="linear"))


def compute_cuts(features: pl.DataFrame, spec: SegmentationSpec) -> RuleCuts:
    """R/F/M cut points and value-tier thresholds from the customers in ``features``.

    Exposed (and accepted back by :func:`assign_rule_segments`) so a run can log the cut points,
    or an analyst can score another date with frozen cuts.
    """
    rules = spec.rules
    customers = features.filter(_customer_mask())

    def values(column: str) -> np.ndarray:
        return customers.get_column(column).cast(pl.Float64).to_numpy()

    stat = np.median if rules.value_statistic == "median" else np.mean

    def threshold(column: str) -> float | None:
        vals = values(column)
        return float(stat(vals)) if vals.size else None

    return RuleCuts(
        recency_edges=_edges(values(rules.recency.column), rules.recency),
        frequency_edges=_edges(values(rules.frequency.column), rules.frequency),
        monetary_edges=_edges(values(rules.monetary.column), rules.monetary),
        recency_threshold=threshold(rules.recency.column),
        frequency_threshold=threshold(rules.frequency.column),
        monetary_threshold=threshold(rules.monetary.column),
        n_customers=customers.height,
    )


def _score_expr(rule: ScoreRule, edges: Sequence[float], name: str) -> pl.Expr:
    """Score = a function of the value alone (right-closed bins), NULL for non-customers."""
    value = pl.col(rule.column).cast(pl.Float64)
    above = pl.sum_horizontal([(value > edge).cast(pl.Int8) for edge in edges])
    score = (1 + above) if rule.higher_is_better else (rule.levels - above)
    return pl.when(_customer_mask()).then(score).otherwise(None).cast(pl.Int8).alias(name)


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------


def _validate_input(features: pl.DataFrame, spec: SegmentationSpec) -> None:
    rfm_columns = [
        spec.rules.recency.column,
        spec.rules.frequency.column,
        spec.rules.monetary.column,
    ]
    missing = [c for c in (*REQUIRED_FEATURES, *rfm_columns) if c not in features.columns]
    if missing:
        raise ValueError(f"user_features is missing columns {missing}")
    if features.get_column("user_id").n_unique() != features.height:
        raise ValueError("user_features must hold one row per user_id")
    bad = features.filter(
        _customer_mask() & pl.any_horizontal([pl.col(c).is_null() for c in rfm_columns])
    ).height
    if bad:
        raise ValueError(f"{bad} customers have NULL {rfm_columns}: features are inconsistent")
    bad = features.filter(
        pl.col("tenure_days").is_null() | (_customer_mask() & pl.col("customer_age_days").is_null())
    ).height
    if bad:
        raise ValueError(f"{bad} users have NULL tenure_days (or customer_age_days as customers)")


def _gap_expr(features: pl.DataFrame, column: str) -> pl.Expr:
    """Days between the last and the previous distinct completed-order day.

    Uses the contract-extension column when present. Without it the gap is known exactly only
    for customers with two order days (gap = purchase_span_days); others count as not reactivated.
    """
    if column in features.columns:
        return pl.col(column).cast(pl.Int64)
    logger.warning(
        "user_features has no %s column: 'reactivated' is detected only for customers with "
        "exactly two order days",
        column,
    )
    return (
        pl.when(pl.col("repeat_purchases") == 1)
        .then(pl.col("purchase_span_days").cast(pl.Int64))
        .otherwise(None)
    )


def assign_rule_segments(
    features: pl.DataFrame, spec: SegmentationSpec, cuts: RuleCuts | None = None
) -> pl.DataFrame:
    """Assign every user one key and one Chinese label per rule scheme.

    ``features`` is user_features for one as-of date (one row per user). Returns one row per user
    with :data:`SEGMENT_COLUMNS`. Non-customers (no completed order) get NULL R/F/M scores and
    rfm_cell (a score of 1 would claim they bought long ago, rarely, cheaply) and the ``prospect``
    key in rfm_segment and value_tier. ``cuts`` defaults to cut points computed on this frame.
    """
    _validate_input(features, spec)
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    lc = rules.lifecycle
    ops = rules.ops_tiers
    is_cust = _customer_mask()

    scored = features.select(
        "user_id",
        is_cust.alias("_is_customer"),
        _score_expr(rules.recency, cuts.recency_edges, "r_score"),
        _score_expr(rules.frequency, cuts.frequency_edges, "f_score"),
        _score_expr(rules.monetary, cuts.monetary_edges, "m_score"),
        *_value_flags(rules, cuts),
        pl.col("tenure_days").cast(pl.Int64).alias("_tenure"),
        pl.col("recency_days").cast(pl.Int64).alias("_recency"),
        pl.col("customer_age_days").cast(pl.Int64).alias("_age"),
        _gap_expr(features, lc.reactivation_gap_column).alias("_gap"),
        pl.col("days_since_last_active")
        .cast(pl.Int64)
        .fill_null(pl.col("tenure_days").cast(pl.Int64))
        .alias("_inactive"),
    ).with_columns(
        pl.concat_str([pl.col(c).cast(pl.Utf8) for c in ("r_score", "f_score", "m_score")]).alias(
            "rfm_cell"
        )
    )

    rf_cells = pl.DataFrame(
        [
            (r, f, rule.key, rule.label_zh)
            for rule in rules.rf_map
            for r in range(rule.r[0], rule.r[1] + 1)
            for f in range(rule.f[0], rule.f[1] + 1)
        ],
        schema={"r_score": pl.Int8, "f_score": pl.Int8, "_rf_key": pl.Utf8, "_rf_zh": pl.Utf8},
        orient="row",
    )
    tiers = pl.DataFrame(
        [(t.r_high, t.f_high, t.m_high, t.key, t.label_zh) for t in rules.value_tiers],
        schema={
            "_r_high": pl.Boolean,
            "_f_high": pl.Boolean,
            "_m_high": pl.Boolean,
            "_vt_key": pl.Utf8,
            "_vt_zh": pl.Utf8,
        },
        orient="row",
    )
    lc_zh = {lab.key: lab.label_zh for lab in lc.labels}
    ops_zh = {lab.key: lab.label_zh for lab in ops.labels}
    prospect = rules.prospect

    recent = pl.col("_recency") <= lc.active_days
    lifecycle = (
        pl.when(pl.col("_is_customer") & (pl.col("_age") <= lc.new_days))
        .then(pl.lit("new"))
        .when(~pl.col("_is_customer") & (pl.col("_tenure") <= lc.new_days))
        .then(pl.lit("new"))
        .when(~pl.col("_is_customer"))
        .then(pl.lit("prospect"))
        .when(recent & (pl.col("_gap") > lc.active_days))
        .then(pl.lit("reactivated"))
        .when(recent)
        .then(pl.lit("active"))
        .when(pl.col("_recency") <= lc.at_risk_days)
        .then(pl.lit("at_risk"))
        .when(pl.col("_recency") <= lc.dormant_days)
        .then(pl.lit("dormant"))
        .otherwise(pl.lit("lost"))
    )
    ops_tier = (
        pl.when(pl.col("_is_customer") & recent & (pl.col("m_score") >= ops.high_value_min_m_score))
        .then(pl.lit("high_value"))
        .when(pl.col("_is_customer") & recent)
        .then(pl.lit("active"))
        .when(pl.col("_inactive") <= ops.silent_days)
        .then(pl.lit("potential"))
        .when(pl.col("_inactive") <= lc.dormant_days)
        .then(pl.lit("silent"))
        .otherwise(pl.lit("churned"))
    )

    out = (
        scored.join(rf_cells, on=["r_score", "f_score"], how="left", maintain_order="left")
        .join(tiers, on=["_r_high", "_f_high", "_m_high"], how="left", maintain_order="left")
        .with_columns(lifecycle.alias("lifecycle_stage"), ops_tier.alias("ops_tier"))
        .select(
            "user_id",
            "r_score",
            "f_score",
            "m_score",
            "rfm_cell",
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_rf_key"))
            .otherwise(pl.lit(prospect.key))
            .alias("rfm_segment"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_rf_zh"))
            .otherwise(pl.lit(prospect.label_zh))
            .alias("rfm_segment_label"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_vt_key"))
            .otherwise(pl.lit(prospect.key))
            .alias("value_tier"),
            pl.when(pl.col("_is_customer"))
            .then(pl.col("_vt_zh"))
            .otherwise(pl.lit(prospect.label_zh))
            .alias("value_tier_label"),
            "lifecycle_stage",
            pl.col("lifecycle_stage").replace_strict(lc_zh).alias("lifecycle_label"),
            "ops_tier",
            pl.col("ops_tier").replace_strict(ops_zh).alias("ops_tier_label"),
        )
    )
    _assert_partition(out, features.height)
    return out


def _value_flags(rules: RulesSpec, cuts: RuleCuts) -> list[pl.Expr]:
    """High/low flags against the customers' statistic; equal to the statistic counts as low."""

    def flag(column: str, threshold: float | None, higher_is_better: bool, name: str) -> pl.Expr:
        if threshold is None:
            return pl.lit(False).alias(name)
        value = pl.col(column).cast(pl.Float64)
        return (value > threshold if higher_is_better else value < threshold).alias(name)

    return [
        flag(
            rules.recency.column, cuts.recency_threshold, rules.recency.higher_is_better, "_r_high"
        ),
        flag(
            rules.frequency.column,
            cuts.frequency_threshold,
            rules.frequency.higher_is_better,
            "_f_high",
        ),
        flag(
            rules.monetary.column,
            cuts.monetary_threshold,
            rules.monetary.higher_is_better,
            "_m_high",
        ),
    ]


def _assert_partition(out: pl.DataFrame, n_users: int) -> None:
    """Every user exactly once, with exactly one non-NULL key and label per scheme."""
    keys = [
        "rfm_segment",
        "rfm_segment_label",
        "value_tier",
        "value_tier_label",
        "lifecycle_stage",
        "lifecycle_label",
        "ops_tier",
        "ops_tier_label",
    ]
    nulls = {c: n for c in keys if (n := out.get_column(c).null_count())}
    if out.height != n_users or nulls:
        raise RuntimeError(f"rule segments are not a partition: rows={out.height}, nulls={nulls}")
