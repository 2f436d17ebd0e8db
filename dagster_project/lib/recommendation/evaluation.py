"""Time-holdout evaluation of category recommendations: hit rate at k against popularity.

The recommendations are the pipeline's own (marts.user_next_best_categories built with the
snapshot at a cut date, so they saw nothing after it). A user counts when they first bought a
category after the cut (within the horizon); a hit is such a category among the user's top k.
The baseline offers every user the k most popular categories (share of buyers by the cut)
that the user had not bought. benchmarks/recommendations.py prints both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl


@dataclass(frozen=True)
class HitRate:
    """Users with a new category after the cut, those whose top k held one, and the share."""

    users: int
    hits: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.users if self.users else None


def split_at_cut(
    first_purchases: pl.DataFrame, cut: date, horizon_end: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(bought by the cut, first bought in (cut, horizon_end]) from rows of user_id, category,
    first_bought_date (one row per user and category)."""
    bought = first_purchases.filter(pl.col("first_bought_date") <= cut)
    later = first_purchases.filter(
        (pl.col("first_bought_date") > cut) & (pl.col("first_bought_date") <= horizon_end)
    )
    return bought.select("user_id", "category"), later.select("user_id", "category")


def popularity_top_k(bought: pl.DataFrame, users: pl.Series, k: int = 3) -> pl.DataFrame:
    """Per user of `users`: the k categories most bought (by users, ties by name) that the
    user had not bought; rows user_id, category, rank (1 = most popular)."""
    popularity = (
        bought.group_by("category")
        .agg(pl.col("user_id").n_unique().alias("buyers"))
        .sort(["buyers", "category"], descending=[True, False])
        .with_row_index("popularity_rank")
    )
    candidates = (
        pl.DataFrame({"user_id": users.unique()})
        .join(popularity, how="cross")
        .join(bought.unique(), on=["user_id", "category"], how="anti")
        .sort(["user_id", "popularity_rank"])
    )
    return (
        candidates.with_columns(rank=pl.col("popularity_rank").rank("ordinal").over("user_id"))
        .filter(pl.col("rank") <= k)
        .select("user_id", "category", pl.col("rank").cast(pl.Int64))
    )


def hit_rate_at_k(recommended: pl.DataFrame, later: pl.DataFrame, k: int = 3) -> HitRate:
    """Among users of `recommended` (user_id, category, rank) with a row in `later` (user_id,
    category first bought after the cut), the share whose top k holds one of those."""
    evaluated = later.join(recommended.select("user_id").unique(), on="user_id", how="semi")
    hits = (
        recommended.filter(pl.col("rank") <= k)
        .join(evaluated, on=["user_id", "category"], how="inner")
        .select(pl.col("user_id").n_unique())
        .item()
    )
    return HitRate(users=evaluated["user_id"].n_unique(), hits=int(hits))
