"""How good is the segmentation? Four figures on generated data with hidden archetypes.

1. ARI between the clusters and the generator's archetypes (recovery of the truth);
2. mean bootstrap ARI (stability, the promotion gate's figure);
3. share of users that keep their segment id when the same data is refit with another random
   seed (with the production matching to the previous version);
4. surrogate tree fidelity (how far the readable rules can be trusted).

The data path is the generator's landing files -> a minimal stand-in for the three dbt marts
that ``compute_user_features`` reads (same columns and meaning, no cleaning: the generator's clean
mode needs none) -> ``compute_user_features``. ``benchmarks/segmentation_quality.py`` prints the
figures at 5,000 users; ``tests/unit/test_segment_quality.py`` asserts the same thresholds on
small data.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from dagster_project.lib.features.user_features import compute_user_features
from dagster_project.lib.segmentation.model import train_segment_model
from dagster_project.lib.segmentation.rules import SegmentationSpec

#: What archetype recovery must reach on generated data to count as working.
THRESHOLDS: dict[str, float] = {
    "ari_vs_archetypes": 0.8,
    "bootstrap_ari": 0.8,
    "id_agreement_refit": 0.98,
    "surrogate_fidelity": 0.9,
}


def build_sample_marts(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    """marts.dim_users / fct_orders / fct_user_activity_daily from generated landing CSVs.

    A stand-in for the dbt project with exactly the columns ``compute_user_features`` reads, so
    quality figures need neither dbt nor Dagster.
    """

    def files(table: str) -> str:
        return f"read_csv('{landing / table}/*/*.csv', hive_partitioning = false)"

    con.execute("create schema if not exists marts")
    con.execute(
        f"""
        create or replace table marts.fct_orders as
        select user_id, cast(ordered_at as date) as order_date, amount,
               status = 'completed' as is_completed, ordered_at
        from {files("orders")}
        """
    )
    con.execute(
        f"""
        create or replace table marts.dim_users as
        with profiles as (
            select user_id, min(signup_at) as signup_at from {files("users")} group by user_id
        ),
        buyers as (
            select user_id, min(ordered_at) as first_order_at
            from marts.fct_orders group by user_id
        )
        select
            coalesce(p.user_id, b.user_id) as user_id,
            least(coalesce(p.signup_at, b.first_order_at), coalesce(b.first_order_at, p.signup_at))
                as first_seen_at
        from profiles as p full join buyers as b on p.user_id = b.user_id
        """
    )
    con.execute(
        f"""
        create or replace table marts.fct_user_activity_daily as
        select
            user_id,
            cast(event_at as date) as activity_date,
            count(*) filter (where event_type = 'session_start') as sessions,
            count(*) filter (where event_type = 'page_view') as page_views,
            count(*) filter (where event_type = 'search') as searches,
            count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
            count(*) filter (where event_type = 'review') as reviews,
            count(*) filter (where event_type = 'support_contact') as support_contacts,
            count(*) as events_total
        from {files("events")}
        group by user_id, cast(event_at as date)
        """
    )


def sample_features(home: Path, as_of: date) -> pl.DataFrame:
    """user_features as of ``as_of`` for generated data in ``home``, plus the true archetype."""
    con = duckdb.connect()
    try:
        build_sample_marts(con, Path(home) / "landing")
        features = compute_user_features(con, as_of)
    finally:
        con.close()
    truth = pl.read_parquet(Path(home) / "truth" / "archetypes.parquet")
    return features.join(truth, on="user_id", how="left", maintain_order="left")


@dataclass(frozen=True)
class QualityFigures:
    """The four figures (and context) for one data set."""

    users: int
    k: int
    ari_vs_archetypes: float
    bootstrap_ari: float
    min_cluster_jaccard: float
    id_agreement_refit: float
    canonical_agreement_refit: float
    surrogate_fidelity: float
    seconds: float

    def failures(self) -> list[str]:
        """The figures below their threshold (empty when all pass)."""
        return [
            f"{name} {getattr(self, name):.3f} < {limit}"
            for name, limit in THRESHOLDS.items()
            if not getattr(self, name) >= limit
        ]


def measure_quality(
    features: pl.DataFrame,
    truth: pl.Series | np.ndarray,
    spec: SegmentationSpec,
    refit_seed: int,
    compare_canonical: bool = True,
) -> QualityFigures:
    """Train as the pipeline does, then refit the same data with another random seed.

    The refit is matched to the first model exactly as a weekly retrain is matched to the
    previous promoted version; ``canonical_agreement_refit`` is the same share before matching
    (canonical id order alone), for comparison (NaN with ``compare_canonical=False``, which
    saves one fit).
    """
    from sklearn.metrics import adjusted_rand_score

    start = time.perf_counter()
    first = train_segment_model(features, spec)
    ids = first.predict(features)
    other = dataclasses.replace(
        spec,
        clustering=dataclasses.replace(
            spec.clustering,
            random_state=refit_seed,
            stability=dataclasses.replace(spec.clustering.stability, random_state=refit_seed),
        ),
    )
    canonical = float("nan")
    if compare_canonical:
        unmatched = train_segment_model(features, other)
        canonical = float((unmatched.predict(features) == ids).mean())
    refit = train_segment_model(features, other, previous=first, previous_version="first")
    return QualityFigures(
        users=features.height,
        k=int(first.clusterer.k_),
        ari_vs_archetypes=float(adjusted_rand_score(np.asarray(truth), ids)),
        bootstrap_ari=first.stability.mean_ari,
        min_cluster_jaccard=first.stability.min_cluster_jaccard,
        id_agreement_refit=float((refit.predict(features) == ids).mean()),
        canonical_agreement_refit=canonical,
        surrogate_fidelity=first.surrogate.fidelity_,
        seconds=time.perf_counter() - start,
    )
