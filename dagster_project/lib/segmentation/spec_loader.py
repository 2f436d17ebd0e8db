"""Load and validate ``models/segmentation.yml`` into :class:`SegmentationSpec`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dagster_project.lib.core.spec_model import dataclass_model, parse_spec
from dagster_project.lib.segmentation.maps import map_partition_problems, spec_maps
from dagster_project.lib.segmentation.schemes import scheme_names
from dagster_project.lib.segmentation.spec import (
    LIFECYCLE_KEYS,
    OPS_TIER_KEYS,
    ClusteringSpec,
    Label,
    LifecycleSpec,
    MapCell,
    MapRule,
    MatchingSpec,
    NamingSpec,
    NamingTerm,
    OpsTierSpec,
    RulesSpec,
    ScoreRule,
    SegmentationSpec,
    SegmentMap,
    StabilitySpec,
    SurrogateSpec,
    ValueTier,
)


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


_AXIS_COLUMNS = {"r": "recency", "f": "frequency", "m": "monetary"}


def _custom_map(name: str, raw: Mapping[str, Any], rfm: Mapping[str, Any]) -> SegmentMap:
    """A user-added map over any of the R, F, M score axes (see ``rules.maps`` in the yml)."""
    # a built-in scheme's name would merge the map into that scheme in every table
    if not name.isidentifier() or name != name.lower() or name in scheme_names():
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
