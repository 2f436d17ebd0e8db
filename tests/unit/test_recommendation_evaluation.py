"""The hit-rate evaluation of the category recommendations, on hand-made frames."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from dagster_project.lib.recommendation.evaluation import (
    HitRate,
    hit_rate_at_k,
    popularity_top_k,
    split_at_cut,
)

CUT = date(2024, 3, 31)


def _first_purchases(rows: list[tuple[str, str, date]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["user_id", "category", "first_bought_date"], orient="row")


def test_split_keeps_the_horizon_and_leaves_later_purchases_out() -> None:
    rows = _first_purchases(
        [
            ("u1", "a", date(2024, 3, 1)),
            ("u1", "b", date(2024, 4, 2)),
            ("u1", "c", date(2024, 6, 1)),  # after the horizon
            ("u2", "a", CUT),  # on the cut day: bought before
        ]
    )
    bought, later = split_at_cut(rows, CUT, date(2024, 4, 30))
    assert sorted(bought.rows()) == [("u1", "a"), ("u2", "a")]
    assert later.rows() == [("u1", "b")]


def test_popularity_offers_the_most_bought_categories_the_user_lacks() -> None:
    bought = pl.DataFrame(
        {"user_id": ["u1", "u2", "u3", "u3", "u2"], "category": ["a", "a", "a", "b", "c"]}
    )
    top = popularity_top_k(bought, pl.Series(["u1", "u3", "u9"]), k=2)
    by_user = {
        user: list(group.sort("rank")["category"])
        for (user,), group in top.group_by("user_id", maintain_order=True)
    }
    # a (3 buyers) > b = c (1 each, ties by name); u9 bought nothing and gets the top two
    assert by_user == {"u1": ["b", "c"], "u3": ["c"], "u9": ["a", "b"]}


def test_hit_rate_counts_users_with_a_new_category_and_a_hit_in_the_top_k() -> None:
    recommended = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
            "category": ["b", "c", "d", "b", "c", "b"],
            "rank": [1, 2, 4, 1, 2, 1],
        }
    )
    later = pl.DataFrame(
        {
            # u1: d is ranked 4th (no hit at 3, a hit at 4); u2 hits; u3 bought nothing new;
            # u4 has no recommendation (not known at the cut): left out
            "user_id": ["u1", "u2", "u2", "u4"],
            "category": ["d", "c", "e", "b"],
        }
    )
    assert hit_rate_at_k(recommended, later, k=3) == HitRate(users=2, hits=1)
    assert hit_rate_at_k(recommended, later, k=4).rate == pytest.approx(1.0)
    assert HitRate(users=0, hits=0).rate is None
