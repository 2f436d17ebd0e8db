"""The segmentation spec as frozen dataclasses mirroring ``models/segmentation.yml``.

Everything a marketer might want to tune (cut points, maps, day counts, labels) lives in the
committed spec; code only reads it and applies it, so a change of policy is a reviewed diff of
that file, not of code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
class KSelectionSpec:
    """How k is chosen among the candidates (see the yml).

    ``silhouette``: the best silhouette among the k without tiny clusters. ``stability``: the
    largest such k whose every cluster is stable (mean bootstrap Jaccard of its best match over
    ``refits`` refits on up to ``sample_size`` users >= ``min_cluster_jaccard``), falling back
    to the silhouette rule when no k is stable."""

    rule: str = "silhouette"
    min_cluster_jaccard: float = 0.75
    refits: int = 10
    sample_size: int = 5000
    random_state: int = 11


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
class QualitySpec:
    """Bars for the figures marts.model_quality judges (see the yml); None: reported only."""

    min_silhouette: float | None = 0.25
    max_davies_bouldin: float | None = 1.5
    min_surrogate_fidelity: float | None = 0.9


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
    scaled_log_features: tuple[tuple[str, float], ...] = ()
    k_selection: KSelectionSpec = field(default_factory=KSelectionSpec)
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    matching: MatchingSpec = field(default_factory=MatchingSpec)
    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)
    # below this many users with features (or below k_min) no version is fitted: the cluster
    # columns are NULL with a reason
    min_users: int = 50
    # above this many users the clustering space, the KMeans candidates and the surrogate tree
    # are fitted on a fixed-seed sample of that many; None: on every user
    fit_sample: int | None = None


@dataclass(frozen=True)
class SegmentationSpec:
    """The whole segmentation spec; ``fingerprint`` identifies its content for model versions."""

    name: str
    version: int
    rules: RulesSpec
    clustering: ClusteringSpec
    fingerprint: str
