"""Load and validate ``models/segmentation.yml`` into :class:`SegmentationSpec`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, StrictBool, StrictInt

from dagster_project.lib.core.spec_model import SpecModel, dataclass_model, parse_model
from dagster_project.lib.segmentation.maps import map_partition_problems, spec_maps
from dagster_project.lib.segmentation.schemes import scheme_names
from dagster_project.lib.segmentation.spec import (
    LIFECYCLE_KEYS,
    OPS_TIER_KEYS,
    ClusteringSpec,
    KSelectionSpec,
    Label,
    LifecycleSpec,
    MapCell,
    MapRule,
    MatchingSpec,
    NamingSpec,
    NamingTerm,
    OpsTierSpec,
    QualitySpec,
    RulesSpec,
    ScoreRule,
    SegmentationSpec,
    SegmentMap,
    StabilitySpec,
    SurrogateSpec,
    ValueTier,
)


class _LabelIn(SpecModel):
    key: str
    label_zh: str


class _ScoreRuleIn(SpecModel):
    column: str
    higher_is_better: StrictBool
    method: Literal["quantile", "fixed"]
    edges: list[float]


class _RfmIn(SpecModel):
    recency: _ScoreRuleIn
    frequency: _ScoreRuleIn
    monetary: _ScoreRuleIn


class _MapRuleIn(_LabelIn):
    r: tuple[StrictInt, StrictInt]
    f: tuple[StrictInt, StrictInt]


_Bounds = StrictInt | tuple[StrictInt, StrictInt] | None


class _MapCellIn(_LabelIn):
    r: _Bounds = None
    f: _Bounds = None
    m: _Bounds = None


class _CustomMapIn(SpecModel):
    axes: list[str]
    cells: list[_MapCellIn]


_HighLow = Literal["high", "low"]


class _ValueTierIn(_LabelIn):
    r: _HighLow
    f: _HighLow
    m: _HighLow


class _ValueTiersIn(SpecModel):
    statistic: Literal["median", "mean"] = "median"
    tiers: list[_ValueTierIn]


class _LifecycleIn(SpecModel):
    new_days: StrictInt
    active_days: StrictInt
    at_risk_days: StrictInt
    dormant_days: StrictInt
    reactivation_gap_column: str = "prev_order_gap_days"
    labels: list[_LabelIn]


class _OpsTiersIn(SpecModel):
    silent_days: StrictInt
    high_value_min_m_score: StrictInt
    labels: list[_LabelIn]


class _RulesIn(SpecModel):
    rfm: _RfmIn
    rf_map: list[_MapRuleIn]
    prospect: _LabelIn
    maps: dict[str, _CustomMapIn] | None = None
    value_tiers: _ValueTiersIn
    lifecycle: _LifecycleIn
    ops_tiers: _OpsTiersIn


class _WordsIn(SpecModel):
    en: str
    zh: str


class _NamingTermIn(SpecModel):
    high_en: str
    high_zh: str
    low_en: str
    low_zh: str


class _NamingIn(SpecModel):
    z_threshold: float
    max_terms: StrictInt
    default: _WordsIn
    non_customer: _WordsIn
    purchase_features: list[str] | None = None
    terms: dict[str, _NamingTermIn] | None = None


class _ClusteringIn(SpecModel):
    # the one algorithm (MiniBatchKMeans above minibatch_above users); the key documents it
    algorithm: Literal["kmeans"] = "kmeans"
    features: list[str]
    log_features: list[str] | None = None
    quantile_features: list[str] | None = None
    scaled_log_features: dict[str, float] | None = None
    fill: dict[str, str | float] | None = None
    k_min: StrictInt
    k_max: StrictInt
    random_state: StrictInt
    n_init: StrictInt
    silhouette_sample: StrictInt
    min_share: float
    minibatch_above: StrictInt
    min_users: StrictInt = 50
    fit_sample: StrictInt | None = None
    k_selection: dataclass_model(KSelectionSpec) | None = None  # type: ignore[valid-type]
    stability: dataclass_model(StabilitySpec) | None = None  # type: ignore[valid-type]
    matching: dataclass_model(MatchingSpec) | None = None  # type: ignore[valid-type]
    surrogate: dataclass_model(SurrogateSpec) | None = None  # type: ignore[valid-type]
    quality: dataclass_model(QualitySpec) | None = None  # type: ignore[valid-type]
    naming: _NamingIn


class _SegmentationIn(SpecModel):
    """The layout of models/segmentation.yml: every key, its type, whether it may be left out."""

    name: str = "user_segmentation"
    version: StrictInt = 1
    rules: _RulesIn
    clustering: _ClusteringIn


def _labels(raw: Sequence[_LabelIn]) -> tuple[Label, ...]:
    return tuple(Label(item.key, item.label_zh) for item in raw)


def _score_rule(raw: _ScoreRuleIn) -> ScoreRule:
    return ScoreRule(
        column=raw.column,
        higher_is_better=raw.higher_is_better,
        method=raw.method,
        edges=tuple(raw.edges),
    )


def _section(cls: type, raw: BaseModel | None) -> Any:
    """A spec section dataclass from its validated layout; omitted keys keep their defaults."""
    return cls() if raw is None else cls(**raw.model_dump(exclude_unset=True))


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
    if cl.min_users < 1:
        raise ValueError("clustering: min_users must be >= 1")
    if cl.fit_sample is not None and cl.fit_sample < cl.min_users:
        raise ValueError("clustering: fit_sample must be null or >= min_users")
    if not set(cl.log_features) <= set(cl.features):
        raise ValueError("clustering: log_features must be a subset of features")
    if not set(cl.quantile_features) <= set(cl.features):
        raise ValueError("clustering: quantile_features must be a subset of features")
    if set(cl.quantile_features) & set(cl.log_features):
        raise ValueError("clustering: a feature is either log- or quantile-transformed, not both")
    scaled = dict(cl.scaled_log_features)
    if not set(scaled) <= set(cl.features) - set(cl.log_features) - set(cl.quantile_features):
        raise ValueError(
            "clustering: scaled_log_features must be features that are neither in log_features "
            "nor in quantile_features"
        )
    if not all(scale > 0 for scale in scaled.values()):
        raise ValueError("clustering: every scaled_log_features scale must be > 0")
    ks = cl.k_selection
    if ks.rule not in ("silhouette", "stability"):
        raise ValueError(f"clustering.k_selection.rule: {ks.rule!r} is not silhouette or stability")
    if ks.refits < 2 or ks.sample_size < 2 or not 0 <= ks.min_cluster_jaccard <= 1:
        raise ValueError(
            "clustering.k_selection: need refits >= 2, sample_size >= 2 and "
            "0 <= min_cluster_jaccard <= 1"
        )
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
    layout = parse_model(_SegmentationIn, raw)
    r = layout.rules
    c = layout.clustering
    naming = c.naming
    spec = SegmentationSpec(
        name=layout.name,
        version=layout.version,
        rules=RulesSpec(
            recency=_score_rule(r.rfm.recency),
            frequency=_score_rule(r.rfm.frequency),
            monetary=_score_rule(r.rfm.monetary),
            rf_map=tuple(MapRule(m.key, m.label_zh, r=m.r, f=m.f) for m in r.rf_map),
            prospect=Label(r.prospect.key, r.prospect.label_zh),
            value_statistic=r.value_tiers.statistic,
            value_tiers=tuple(
                ValueTier(
                    key=t.key,
                    label_zh=t.label_zh,
                    r_high=t.r == "high",
                    f_high=t.f == "high",
                    m_high=t.m == "high",
                )
                for t in r.value_tiers.tiers
            ),
            lifecycle=LifecycleSpec(
                new_days=r.lifecycle.new_days,
                active_days=r.lifecycle.active_days,
                at_risk_days=r.lifecycle.at_risk_days,
                dormant_days=r.lifecycle.dormant_days,
                reactivation_gap_column=r.lifecycle.reactivation_gap_column,
                labels=_labels(r.lifecycle.labels),
            ),
            ops_tiers=OpsTierSpec(
                silent_days=r.ops_tiers.silent_days,
                high_value_min_m_score=r.ops_tiers.high_value_min_m_score,
                labels=_labels(r.ops_tiers.labels),
            ),
            custom_maps=tuple(
                _custom_map(name, body, r.rfm) for name, body in (r.maps or {}).items()
            ),
        ),
        clustering=ClusteringSpec(
            features=tuple(c.features),
            log_features=tuple(c.log_features or ()),
            fill=tuple((c.fill or {}).items()),
            k_min=c.k_min,
            k_max=c.k_max,
            random_state=c.random_state,
            n_init=c.n_init,
            silhouette_sample=c.silhouette_sample,
            min_share=c.min_share,
            minibatch_above=c.minibatch_above,
            min_users=c.min_users,
            fit_sample=c.fit_sample,
            quantile_features=tuple(c.quantile_features or ()),
            scaled_log_features=tuple((c.scaled_log_features or {}).items()),
            k_selection=_section(KSelectionSpec, c.k_selection),
            stability=_section(StabilitySpec, c.stability),
            matching=_section(MatchingSpec, c.matching),
            surrogate=_section(SurrogateSpec, c.surrogate),
            quality=_section(QualitySpec, c.quality),
            naming=NamingSpec(
                z_threshold=naming.z_threshold,
                max_terms=naming.max_terms,
                default_en=naming.default.en,
                default_zh=naming.default.zh,
                non_customer_en=naming.non_customer.en,
                non_customer_zh=naming.non_customer.zh,
                purchase_features=tuple(naming.purchase_features or ()),
                terms=tuple(
                    (feature, NamingTerm(**words.model_dump()))
                    for feature, words in (naming.terms or {}).items()
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


_AXIS_COLUMNS = {"r": "recency", "f": "frequency", "m": "monetary"}


def _custom_map(name: str, raw: _CustomMapIn, rfm: _RfmIn) -> SegmentMap:
    """A user-added map over any of the R, F, M score axes (see ``rules.maps`` in the yml)."""
    # a built-in scheme's name would merge the map into that scheme in every table
    if not name.isidentifier() or name != name.lower() or name in scheme_names():
        raise ValueError(f"map {name!r}: use a new lower_snake_case scheme name")
    axes = tuple(raw.axes)
    if not axes or len(set(axes)) != len(axes) or not set(axes) <= set(_AXIS_COLUMNS):
        raise ValueError(f"map {name}: axes must be distinct names among r, f, m")
    domains = tuple(
        tuple(range(1, _score_rule(getattr(rfm, _AXIS_COLUMNS[a])).levels + 1)) for a in axes
    )
    cells = []
    for cell in raw.cells:
        values = []
        for axis in axes:
            bounds = getattr(cell, axis)
            if bounds is None:
                raise ValueError(f"map {name}, {cell.key}: no range for axis {axis}")
            lo, hi = (bounds, bounds) if isinstance(bounds, int) else bounds
            values.append(frozenset(range(lo, hi + 1)))
        cells.append(MapCell(cell.key, cell.label_zh, tuple(values)))
    return SegmentMap(name=name, axes=axes, domains=domains, cells=tuple(cells))
