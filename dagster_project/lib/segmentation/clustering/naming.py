"""Canonical cluster order and bilingual names read off each centroid's profile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import polars as pl

from dagster_project.lib.segmentation.spec import NamingSpec

#: Canonical id order: clusters sorted by these scaled centroid coordinates first (-1 = descending),
#: then by every other feature descending, in the order given. Id 0 is the most valuable cluster.
ORDER_PRIORITY: tuple[tuple[str, int], ...] = (
    ("monetary", -1),
    ("frequency", -1),
    ("recency_days", 1),
)
#: Scaled centroid coordinates are rounded to this many decimals before ordering, so clusters
#: tied on a feature (e.g. several all-zero-monetary non-buyer clusters) fall through to the next
#: key instead of being ordered by floating-point noise.
ORDER_DECIMALS = 6

DEFAULT_NAMING = NamingSpec(
    z_threshold=0.5,
    max_terms=3,
    default_en="average",
    default_zh="普通",
    non_customer_en="non-buyers",
    non_customer_zh="未购",
    purchase_features=("recency_days", "frequency", "monetary", "avg_order_value"),
    terms=(),
)


def canonical_order(centers: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """Cluster indices sorted by priority features (see ORDER_PRIORITY), ties fall through."""
    features = list(features)
    rounded = np.round(centers, ORDER_DECIMALS)
    keys: list[np.ndarray] = []
    used: set[str] = set()
    for feature, direction in ORDER_PRIORITY:
        if feature in features:
            keys.append(direction * rounded[:, features.index(feature)])
            used.add(feature)
    keys += [-rounded[:, j] for j, f in enumerate(features) if f not in used]
    # np.lexsort sorts by the last key first
    return np.lexsort(tuple(reversed(keys)))


def customer_flag(
    frame: pl.DataFrame, raw: np.ndarray, features: Sequence[str]
) -> np.ndarray | None:
    """1.0 for customers (is_customer, else frequency > 0); None when neither is known."""
    if "is_customer" in frame.columns:
        return frame.get_column("is_customer").fill_null(False).to_numpy().astype(np.float64)
    if "frequency" in features:
        return (raw[:, list(features).index("frequency")] > 0).astype(np.float64)
    return None


def naming_z(
    z: np.ndarray,
    centers: np.ndarray,
    flag: np.ndarray | None,
    customer_share: np.ndarray | None,
    features: Sequence[str],
    naming: NamingSpec,
) -> np.ndarray:
    """Centroid z-scores used for names.

    Against the whole population (the scaled space has mean 0, sd 1), except that purchase
    features of buyer clusters are compared with customers only: with many non-buyers at 0,
    an average buyer would otherwise read as "high value".
    """
    out = centers.copy()
    if flag is None or customer_share is None or not 0 < flag.sum() < len(flag):
        return out
    buyers = z[flag > 0]
    mean, std = buyers.mean(axis=0), buyers.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    for j, f in enumerate(features):
        if f in naming.purchase_features:
            rows = customer_share >= 0.5
            out[rows, j] = (centers[rows, j] - mean[j]) / std[j]
    return out


def cluster_names(
    z_scores: np.ndarray,
    customer_share: np.ndarray | None,
    features: Sequence[str],
    naming: NamingSpec,
) -> list[tuple[str, str]]:
    """(English, Chinese) names from each centroid's naming z-scores; duplicates get ``#i``."""
    features = list(features)
    names: list[tuple[str, str]] = []
    for i in range(z_scores.shape[0]):
        en: list[str] = []
        zh: list[str] = []
        skip: set[str] = set()
        if customer_share is not None and customer_share[i] < 0.5:
            en.append(naming.non_customer_en)
            zh.append(naming.non_customer_zh)
            skip = set(naming.purchase_features)
        scored = sorted(
            (
                (abs(float(zv)), f, float(zv))
                for f, zv in zip(features, z_scores[i], strict=True)
                if f not in skip and abs(zv) >= naming.z_threshold
            ),
            key=lambda t: (-t[0], features.index(t[1])),
        )
        for _, f, zv in scored[: max(naming.max_terms - len(en), 0)]:
            term = naming.term(f)
            en.append(term.high_en if zv > 0 else term.low_en)
            zh.append(term.high_zh if zv > 0 else term.low_zh)
        if not en:
            en, zh = [naming.default_en], [naming.default_zh]
        names.append((", ".join(en), "·".join(zh)))
    counts = Counter(names)
    return [
        name if counts[name] == 1 else (f"{name[0]} #{i}", f"{name[1]} #{i}")
        for i, name in enumerate(names)
    ]
