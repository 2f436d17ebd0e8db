"""A snapshot's segment rows scored in batches of users, and written in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from feature_frames import mixed_user_features
from test_segment_maps import RM_MAP, write_spec
from test_segment_model import small_spec

from dagster_project.lib.core.warehouse import replace_rows, replacing
from dagster_project.lib.segmentation.daily import SnapshotScorer
from dagster_project.lib.segmentation.model import cluster_names, train_segment_model
from dagster_project.lib.segmentation.rules.cuts import compute_cuts
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "models" / "segmentation.yml"
DAY = date(2026, 3, 1)
LINEAGE = [
    pl.lit(DAY, dtype=pl.Date).alias("snapshot_date"),
    pl.lit("rules-test").alias("rules_version"),
    pl.lit("run-test").alias("run_id"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def snapshot_features(n: int) -> pl.DataFrame:
    """Clustering features plus the columns the rule schemes read."""
    frame = mixed_user_features(n, seed=9, id_width=4)
    return frame.with_columns(
        pl.when(pl.col("is_customer")).then(pl.col("tenure_days")).alias("customer_age_days"),
        (pl.col("frequency") - 1).clip(lower_bound=0).alias("repeat_purchases"),
        pl.lit(0).alias("purchase_span_days"),
        pl.col("recency_days").alias("days_since_last_active"),
    )


def test_batches_give_exactly_the_rows_of_the_whole_snapshot(tmp_path: Path) -> None:
    # user-added map rows are batched too
    spec = small_spec(write_spec(tmp_path, {"rm_segment": RM_MAP}))
    features = snapshot_features(500)
    model = train_segment_model(features, spec)
    scorer = SnapshotScorer(
        spec,
        compute_cuts(features, spec),
        lineage=LINEAGE,
        model=model,
        names=cluster_names(model),
        model_version="v1",
    )
    whole_segments, whole_custom = scorer.score(features)
    batches = list(scorer.batches(features, batch_users=120))
    assert [len(s) for s, _ in batches] == [120, 120, 120, 120, 20]
    assert pl.concat([s for s, _ in batches]).equals(whole_segments)
    assert pl.concat([c for _, c in batches]).equals(whole_custom)
    assert whole_custom.height == features.height  # one user-added map: a row per user
    assert whole_segments.get_column("cluster_id").null_count() == 0
    # a snapshot without users is still one (empty) write, so a rerun clears the day
    empty = list(scorer.batches(features.head(0)))
    assert len(empty) == 1 and empty[0][0].height == 0
    with pytest.raises(ValueError, match="batch_users"):
        next(scorer.batches(features, batch_users=0))


def test_without_a_model_the_clusters_are_null_with_the_reason() -> None:
    spec = load_segmentation_spec(SPEC_PATH)
    features = snapshot_features(30)
    scorer = SnapshotScorer(
        spec,
        compute_cuts(features, spec),
        lineage=LINEAGE,
        skipped="too few users to cluster: 30 < min_users (50)",
    )
    segments, _ = scorer.score(features)
    assert segments.get_column("cluster_id").null_count() == 30
    assert segments.get_column("cluster_reason").unique().to_list() == [
        "too few users to cluster: 30 < min_users (50)"
    ]
    assert segments.get_column("model_version").null_count() == 30


def test_replacing_writes_many_frames_in_one_transaction() -> None:
    con = duckdb.connect()
    old = pl.DataFrame({"day": [DAY, DAY, date(2026, 3, 2)], "user_id": ["a", "b", "c"]})
    replace_rows(con, "marts.t", old.filter(pl.col("day") == DAY), {"day": DAY})
    replace_rows(con, "marts.t", old.filter(pl.col("day") != DAY), {"day": date(2026, 3, 2)})

    def users() -> list[tuple]:
        return con.execute("select day, user_id from marts.t order by all").fetchall()

    # a failure after some frames were written leaves the day as it was
    with pytest.raises(RuntimeError, match="scoring failed"), replacing(con, {"day": DAY}) as write:
        write("marts.t", pl.DataFrame({"day": [DAY], "user_id": ["x"]}))
        raise RuntimeError("scoring failed")
    assert users() == [(DAY, "a"), (DAY, "b"), (date(2026, 3, 2), "c")]
    # the first frame replaces the day's rows, later frames add to them; other days stay
    # (a column the code added is added to the table, NULL in the other rows; frames are
    # inserted by name)
    with replacing(con, {"day": DAY}) as write:
        assert (
            write("marts.t", pl.DataFrame({"day": [DAY], "user_id": ["x"], "note": ["new"]})) == 1
        )
        write("marts.t", pl.DataFrame({"note": [None], "user_id": ["y"], "day": [DAY]}))
    assert users() == [(DAY, "x"), (DAY, "y"), (date(2026, 3, 2), "c")]
    assert con.execute("select count(note) from marts.t").fetchall() == [(1,)]
    # a failed statement (a frame the table cannot take) also rolls the whole day back
    with pytest.raises(duckdb.Error), replacing(con, {"day": DAY}) as write:
        write("marts.t", pl.DataFrame({"day": [DAY], "user_id": ["z"]}))
        write("marts.t", pl.DataFrame({"day": [DAY], "missing": ["z"]}))
    assert users() == [(DAY, "x"), (DAY, "y"), (date(2026, 3, 2), "c")]
