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
import itertools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from dagster_project.lib.core.spec_model import dataclass_model, parse_spec

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
class MapCell:
    """One named region of a score grid: the values it takes on each axis of its map."""

    key: str
    label_zh: str
    values: tuple[frozenset[Any], ...]  # one set per axis of the map, in axis order


@dataclass(frozen=True)
class SegmentMap:
    """A map from a grid of scores to named segments, e.g. R x F -> champions ... hibernating.

    ``domains`` are the values each axis takes (R scores 1..5, or high/low for the value tiers);
    a map is valid when every cell of their product is matched by exactly one ``MapCell``.
    """

    name: str
    axes: tuple[str, ...]
    domains: tuple[tuple[Any, ...], ...]
    cells: tuple[MapCell, ...]

    def matches(self, point: Sequence[Any]) -> list[str]:
        """Keys of the cells that contain a grid point (one value per axis)."""
        return [
            cell.key
            for cell in self.cells
            if all(v in allowed for v, allowed in zip(point, cell.values, strict=True))
        ]


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
    custom_maps: tuple[SegmentMap, ...] = ()


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
class StabilitySpec:
    """Bootstrap stability and the promotion gate (see the yml)."""

    bootstrap_refits: int = 20
    sample_size: int = 20000
    min_mean_ari: float = 0.75
    min_cluster_jaccard: float | None = 0.5
    random_state: int = 7
    promote_first_version: bool = True


@dataclass(frozen=True)
class MatchingSpec:
    """How a refit's clusters are matched to the previous version's (stable ids, lineage)."""

    max_centroid_distance: float = 1.0
    transition_share: float = 0.2


@dataclass(frozen=True)
class SurrogateSpec:
    """The shallow decision tree that explains the clusters in readable rules."""

    max_depth: int = 6
    max_leaf_nodes: int = 16
    min_leaf_share: float = 0.005
    reason_terms: int = 3


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
    quantile_features: tuple[str, ...] = ()
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    matching: MatchingSpec = field(default_factory=MatchingSpec)
    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)


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
    maps = {m.name: m for m in spec_maps(spec)}
    problems = map_partition_problems(maps["rfm_segment"])
    if problems:
        raise ValueError("rf_map is not an exact partition: " + "; ".join(problems))
    for segment_map in maps.values():
        labels = {(cell.key, cell.label_zh) for cell in segment_map.cells}
        if len({key for key, _ in labels}) != len(labels) or any(not zh for _, zh in labels):
            raise ValueError(
                f"{segment_map.name}: a key may span several cells but needs one label_zh"
            )
        if rules.prospect.key in {key for key, _ in labels}:
            raise ValueError("the prospect key is reserved for non-customers")
    problems = map_partition_problems(maps["value_tier"])
    if problems or len(rules.value_tiers) != 8:
        raise ValueError(
            "value_tiers must cover the 8 high/low combinations exactly once: "
            + "; ".join(problems)
        )
    _check_labels("value_tiers", [Label(t.key, t.label_zh) for t in rules.value_tiers], None)
    if rules.value_statistic not in ("median", "mean"):
        raise ValueError("value_tiers.statistic must be median or mean")
    for custom in rules.custom_maps:
        problems = map_partition_problems(custom)
        if problems:
            raise ValueError(f"map {custom.name} is not an exact partition: " + "; ".join(problems))
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
    if not set(cl.quantile_features) <= set(cl.features):
        raise ValueError("clustering: quantile_features must be a subset of features")
    if set(cl.quantile_features) & set(cl.log_features):
        raise ValueError("clustering: a feature is either log- or quantile-transformed, not both")
    if not 0 <= cl.min_share < 1:
        raise ValueError("clustering: min_share must lie in [0, 1)")
    st = cl.stability
    if st.bootstrap_refits < 2 or st.sample_size < 2 or not 0 <= st.min_mean_ari <= 1:
        raise ValueError("clustering.stability: need >= 2 refits and min_mean_ari in [0, 1]")
    if st.min_cluster_jaccard is not None and not 0 <= st.min_cluster_jaccard <= 1:
        raise ValueError("clustering.stability: min_cluster_jaccard must lie in [0, 1]")
    if cl.matching.max_centroid_distance <= 0 or not 0 < cl.matching.transition_share <= 0.5:
        raise ValueError(
            "clustering.matching: need max_centroid_distance > 0, 0 < transition_share <= 0.5"
        )
    sg = cl.surrogate
    if sg.max_depth < 1 or sg.max_leaf_nodes < 2 or not 0 <= sg.min_leaf_share < 0.5:
        raise ValueError("clustering.surrogate: need max_depth >= 1, max_leaf_nodes >= 2")


def load_segmentation_spec(path: Path, validate: bool = True) -> SegmentationSpec:
    """Load and validate ``models/segmentation.yml``.

    Validation happens here, once, so that a spec whose R x F map has a gap or an overlap (or whose
    value tiers miss a combination) fails at load time instead of leaving users unlabelled.
    ``validate=False`` only parses: the Dagster map check uses it to report every bad cell of
    every map as evidence instead of stopping at the first error.
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
            custom_maps=tuple(
                _custom_map(str(name), body, r["rfm"])
                for name, body in (r.get("maps") or {}).items()
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
            quantile_features=tuple(str(f) for f in c.get("quantile_features") or []),
            stability=_section(StabilitySpec, c.get("stability"), "clustering.stability"),
            matching=_section(MatchingSpec, c.get("matching"), "clustering.matching"),
            surrogate=_section(SurrogateSpec, c.get("surrogate"), "clustering.surrogate"),
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
    if validate:
        _validate(spec)
    return spec


def _section(cls: type, raw: Mapping[str, Any] | None, where: str) -> Any:
    """A spec section dataclass from its yml mapping; omitted keys keep their defaults."""
    return cls(**parse_spec(dataclass_model(cls), raw, where))


#: Scheme names a user-added map may not take (the built-in schemes of user_segments_daily).
RESERVED_SCHEMES: frozenset[str] = frozenset(
    {"rfm_segment", "value_tier", "lifecycle_stage", "ops_tier", "cluster"}
)
_AXIS_COLUMNS = {"r": "recency", "f": "frequency", "m": "monetary"}


def _custom_map(name: str, raw: Mapping[str, Any], rfm: Mapping[str, Any]) -> SegmentMap:
    """A user-added map over any of the R, F, M score axes (see ``rules.maps`` in the yml)."""
    if not name.isidentifier() or name != name.lower() or name in RESERVED_SCHEMES:
        raise ValueError(f"map {name!r}: use a new lower_snake_case scheme name")
    axes = tuple(str(a) for a in raw["axes"])
    if not axes or len(set(axes)) != len(axes) or not set(axes) <= set(_AXIS_COLUMNS):
        raise ValueError(f"map {name}: axes must be distinct names among r, f, m")
    domains = tuple(tuple(range(1, _score_rule(rfm[_AXIS_COLUMNS[a]]).levels + 1)) for a in axes)
    cells = []
    for cell in raw["cells"]:
        values = []
        for axis in axes:
            if axis not in cell:
                raise ValueError(f"map {name}, {cell.get('key')}: no range for axis {axis}")
            bounds = cell[axis]
            lo, hi = (bounds, bounds) if isinstance(bounds, int) else (bounds[0], bounds[1])
            values.append(frozenset(range(int(lo), int(hi) + 1)))
        cells.append(MapCell(str(cell["key"]), str(cell["label_zh"]), tuple(values)))
    return SegmentMap(name=name, axes=axes, domains=domains, cells=tuple(cells))


def spec_maps(spec: SegmentationSpec) -> tuple[SegmentMap, ...]:
    """Every map of the spec: the R x F map, the 8-type value tiers and any user-added map.

    The value tiers are a map too: over the high/low grid of R, F and M. Checks and tests iterate
    this tuple, so a map a user adds under ``rules.maps`` is checked like the shipped ones.
    """
    rules = spec.rules
    rf = SegmentMap(
        name="rfm_segment",
        axes=("r", "f"),
        domains=(
            tuple(range(1, rules.recency.levels + 1)),
            tuple(range(1, rules.frequency.levels + 1)),
        ),
        cells=tuple(
            MapCell(
                m.key,
                m.label_zh,
                (frozenset(range(m.r[0], m.r[1] + 1)), frozenset(range(m.f[0], m.f[1] + 1))),
            )
            for m in rules.rf_map
        ),
    )
    level = ("high", "low")
    tiers = SegmentMap(
        name="value_tier",
        axes=("r", "f", "m"),
        domains=(level, level, level),
        cells=tuple(
            MapCell(
                t.key,
                t.label_zh,
                tuple(frozenset({"high" if h else "low"}) for h in (t.r_high, t.f_high, t.m_high)),
            )
            for t in rules.value_tiers
        ),
    )
    return (rf, tiers, *rules.custom_maps)


def map_partition_problems(segment_map: SegmentMap) -> list[str]:
    """One message per grid cell matched by no map cell or by several ("r=5 f=4: unmatched").

    Empty when the map is an exact partition of its grid. Works for any number of axes.
    """
    problems: list[str] = []
    for point in itertools.product(*segment_map.domains):
        hits = segment_map.matches(point)
        where = " ".join(f"{a}={v}" for a, v in zip(segment_map.axes, point, strict=True))
        if not hits:
            problems.append(f"{where}: unmatched")
        elif len(hits) > 1:
            problems.append(f"{where}: matched by {', '.join(hits)}")
    return problems


def check_spec_maps(spec: SegmentationSpec) -> dict[str, list[str]]:
    """Partition problems of every map of the spec, by scheme (an empty list = exact)."""
    return {m.name: map_partition_problems(m) for m in spec_maps(spec)}


def check_map_partition(
    map_spec: Sequence[MapRule], r_values: Iterable[int], f_values: Iterable[int]
) -> list[str]:
    """Check that a named R x F map covers every (r, f) cell exactly once.

    Returns one message per unmatched or multiply matched cell (empty list when the map is an
    exact partition), so a bad edit of the spec names the exact cells to fix.
    """
    segment_map = SegmentMap(
        name="rf_map",
        axes=("r", "f"),
        domains=(tuple(r_values), tuple(f_values)),
        cells=tuple(
            MapCell(
                m.key,
                m.label_zh,
                (frozenset(range(m.r[0], m.r[1] + 1)), frozenset(range(m.f[0], m.f[1] + 1))),
            )
            for m in map_spec
        ),
    )
    return map_partition_problems(segment_map)


def segment_catalog(
    spec: SegmentationSpec, churn_band_labels: Sequence[tuple[str, str]] = ()
) -> pl.DataFrame:
    """Every (scheme, key, label_zh, sort_order): the label dimension BI and dbt contracts use.

    ``churn_band_labels`` (key, label) come from models/value.yml: churn_risk_band is a scheme of
    segment_summary_daily too. Cluster keys change with every model version; their names are in
    segment_cluster_profiles.
    """
    rules = spec.rules
    rows: list[tuple[str, str, str]] = []
    rows += [("rfm_segment", m.key, m.label_zh) for m in rules.rf_map]
    rows += [("rfm_segment", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("value_tier", t.key, t.label_zh) for t in rules.value_tiers]
    rows += [("value_tier", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("lifecycle_stage", lab.key, lab.label_zh) for lab in rules.lifecycle.labels]
    rows += [("ops_tier", lab.key, lab.label_zh) for lab in rules.ops_tiers.labels]
    rows += [("churn_risk_band", key, label) for key, label in churn_band_labels]
    for custom in rules.custom_maps:
        rows += [(custom.name, cell.key, cell.label_zh) for cell in custom.cells]
        rows += [(custom.name, rules.prospect.key, rules.prospect.label_zh)]
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


# --------------------------------------------------------------------------------------------
# User-added maps (long format: one row per user and map)
# --------------------------------------------------------------------------------------------

CUSTOM_SEGMENT_COLUMNS: tuple[str, ...] = ("user_id", "scheme", "segment", "segment_label")
_SCORE_COLUMNS = {"r": "r_score", "f": "f_score", "m": "m_score"}


def assign_custom_maps(segments: pl.DataFrame, spec: SegmentationSpec) -> pl.DataFrame:
    """Every user's segment in each user-added map (``rules.maps``), from the R/F/M scores.

    ``segments`` is the output of :func:`assign_rule_segments`. Returns one row per user and map
    (:data:`CUSTOM_SEGMENT_COLUMNS`); non-customers (NULL scores) get the prospect key. Empty
    (with that schema) when the spec has no user-added map.
    """
    prospect = spec.rules.prospect
    frames = []
    for custom in spec.rules.custom_maps:
        score_cols = [_SCORE_COLUMNS[a] for a in custom.axes]
        cells = pl.DataFrame(
            [
                (*point, cell.key, cell.label_zh)
                for cell in custom.cells
                for point in itertools.product(*(sorted(v) for v in cell.values))
            ],
            schema={**dict.fromkeys(score_cols, pl.Int8), "_key": pl.Utf8, "_zh": pl.Utf8},
            orient="row",
        )
        joined = segments.select("user_id", *score_cols).join(
            cells, on=score_cols, how="left", maintain_order="left"
        )
        customer = pl.all_horizontal([pl.col(c).is_not_null() for c in score_cols])
        frames.append(
            joined.select(
                "user_id",
                pl.lit(custom.name).alias("scheme"),
                pl.when(customer)
                .then(pl.col("_key"))
                .otherwise(pl.lit(prospect.key))
                .alias("segment"),
                pl.when(customer)
                .then(pl.col("_zh"))
                .otherwise(pl.lit(prospect.label_zh))
                .alias("segment_label"),
            )
        )
    if not frames:
        return pl.DataFrame(schema=dict.fromkeys(CUSTOM_SEGMENT_COLUMNS, pl.Utf8))
    out = pl.concat(frames)
    if out.get_column("segment").null_count():
        raise RuntimeError("a user-added map left users unlabelled: check_spec_maps first")
    return out


# --------------------------------------------------------------------------------------------
# Reasons: why a user holds a segment, in one short line per scheme
# --------------------------------------------------------------------------------------------

RULE_REASON_COLUMNS: tuple[str, ...] = (
    "rfm_reason",
    "value_tier_reason",
    "lifecycle_reason",
    "ops_tier_reason",
)


def _num(expr: pl.Expr) -> pl.Expr:
    """A number as short text: integers without decimals, others rounded to 2 decimals."""
    value = expr.cast(pl.Float64)
    return (
        pl.when(value == value.round(0))
        .then(value.round(0).cast(pl.Int64).cast(pl.Utf8))
        .otherwise(value.round(2).cast(pl.Utf8))
    )


def explain_rule_segments(
    features: pl.DataFrame,
    segments: pl.DataFrame,
    spec: SegmentationSpec,
    cuts: RuleCuts | None = None,
) -> pl.DataFrame:
    """One short reason per rule scheme and user, with the user's own values and the cut points.

    For example ``rfm_reason`` "R=5 (12 days), F=4 (5 orders), M=3 (230.5)" and
    ``lifecycle_reason`` "last order 120 days ago (91-180 days: at risk)". ``segments`` is the
    output of :func:`assign_rule_segments` for the same ``features`` (same row order) and
    ``cuts`` the cut points it used (default: recomputed from ``features``). Returns ``user_id``
    and :data:`RULE_REASON_COLUMNS`. Vectorised polars, no Python loop over users.
    """
    if features.get_column("user_id").to_list() != segments.get_column("user_id").to_list():
        raise ValueError("features and segments must list the same users in the same order")
    rules = spec.rules
    cuts = cuts if cuts is not None else compute_cuts(features, spec)
    lc = rules.lifecycle
    ops = rules.ops_tiers
    frame = pl.concat(
        [
            features.select(
                pl.col(rules.recency.column).cast(pl.Float64).alias("_rec"),
                pl.col(rules.frequency.column).cast(pl.Float64).alias("_freq"),
                pl.col(rules.monetary.column).cast(pl.Float64).alias("_mon"),
                pl.col("tenure_days").cast(pl.Int64).alias("_tenure"),
                pl.col("customer_age_days").cast(pl.Int64).alias("_age"),
                _gap_expr(features, lc.reactivation_gap_column).alias("_gap"),
                pl.col("days_since_last_active")
                .cast(pl.Int64)
                .fill_null(pl.col("tenure_days").cast(pl.Int64))
                .alias("_inactive"),
                _customer_mask().alias("_cust"),
            ),
            segments,
        ],
        how="horizontal",
    )
    no_order = pl.lit("no completed order")
    rfm = pl.format(
        "R={} ({} days), F={} ({} orders), M={} ({})",
        "r_score",
        _num(pl.col("_rec")),
        "f_score",
        _num(pl.col("_freq")),
        "m_score",
        _num(pl.col("_mon")),
    )

    def versus(value: str, threshold: float | None, higher_is_better: bool, unit: str) -> pl.Expr:
        if threshold is None:
            return pl.lit("")
        t = _num(pl.lit(threshold))
        v = _num(pl.col(value))
        better = (pl.col(value) > threshold) if higher_is_better else (pl.col(value) < threshold)
        op_high, op_low = (">", "<=") if higher_is_better else ("<", ">=")
        return (
            pl.when(better)
            .then(pl.format("high ({} {} {}{})", v, pl.lit(op_high), t, pl.lit(unit)))
            .otherwise(pl.format("low ({} {} {}{})", v, pl.lit(op_low), t, pl.lit(unit)))
        )

    tier = pl.format(
        "R {}, F {}, M {}",
        versus("_rec", cuts.recency_threshold, rules.recency.higher_is_better, " days"),
        versus("_freq", cuts.frequency_threshold, rules.frequency.higher_is_better, " orders"),
        versus("_mon", cuts.monetary_threshold, rules.monetary.higher_is_better, ""),
    )
    rec = _num(pl.col("_rec"))
    stage = pl.col("lifecycle_stage")
    lifecycle = (
        pl.when((stage == "new") & pl.col("_cust"))
        .then(pl.format("first order {} days ago (new: <= {} days)", "_age", pl.lit(lc.new_days)))
        .when(stage == "new")
        .then(
            pl.format(
                "first seen {} days ago, no order yet (new: <= {} days)",
                "_tenure",
                pl.lit(lc.new_days),
            )
        )
        .when(stage == "prospect")
        .then(pl.format("no completed order in the {} days since first seen", "_tenure"))
        .when(stage == "reactivated")
        .then(
            pl.format(
                "ordered {} days ago after a {}-day gap (> {} days)",
                rec,
                "_gap",
                pl.lit(lc.active_days),
            )
        )
        .when(stage == "active")
        .then(pl.format("last order {} days ago (active: <= {} days)", rec, pl.lit(lc.active_days)))
        .when(stage == "at_risk")
        .then(
            pl.format(
                "last order {} days ago (at risk: {}-{} days)",
                rec,
                pl.lit(lc.active_days + 1),
                pl.lit(lc.at_risk_days),
            )
        )
        .when(stage == "dormant")
        .then(
            pl.format(
                "last order {} days ago (dormant: {}-{} days)",
                rec,
                pl.lit(lc.at_risk_days + 1),
                pl.lit(lc.dormant_days),
            )
        )
        .otherwise(
            pl.format("last order {} days ago (lost: > {} days)", rec, pl.lit(lc.dormant_days))
        )
    )
    tier_col = pl.col("ops_tier")
    ops_tier = (
        pl.when(tier_col == "high_value")
        .then(
            pl.format(
                "ordered {} days ago (<= {}), M={} (>= {})",
                rec,
                pl.lit(lc.active_days),
                "m_score",
                pl.lit(ops.high_value_min_m_score),
            )
        )
        .when(tier_col == "active")
        .then(
            pl.format(
                "ordered {} days ago (<= {}), M={} (< {})",
                rec,
                pl.lit(lc.active_days),
                "m_score",
                pl.lit(ops.high_value_min_m_score),
            )
        )
        .when(tier_col == "potential")
        .then(
            pl.format(
                "no order in {} days, last active {} days ago (<= {})",
                pl.lit(lc.active_days),
                "_inactive",
                pl.lit(ops.silent_days),
            )
        )
        .when(tier_col == "silent")
        .then(
            pl.format(
                "inactive for {} days (silent: {}-{})",
                "_inactive",
                pl.lit(ops.silent_days + 1),
                pl.lit(lc.dormant_days),
            )
        )
        .otherwise(
            pl.format("inactive for {} days (churned: > {})", "_inactive", pl.lit(lc.dormant_days))
        )
    )
    return frame.select(
        "user_id",
        pl.when(pl.col("_cust")).then(rfm).otherwise(no_order).alias("rfm_reason"),
        pl.when(pl.col("_cust")).then(tier).otherwise(no_order).alias("value_tier_reason"),
        lifecycle.alias("lifecycle_reason"),
        ops_tier.alias("ops_tier_reason"),
    )
