"""The generator's campaigns (opt-in): exposures follow the input contract, only treated users
buy differently and only inside their campaign window, and the truth has the promised shape
(a no-effect campaign, one that hurts, one still running)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from dagster_project.lib.ingestion.contract import CAMPAIGN_ARMS, TABLE_SPECS
from dagster_project.lib.sample.campaigns import CAMPAIGNS, WINDOW_DAYS
from dagster_project.lib.sample.generator import generate_sample

USERS, DAYS, SEED = 600, 90, 11
END = date(2025, 3, 31)
START = END - timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    plain = tmp_path_factory.mktemp("plain")
    with_campaigns = tmp_path_factory.mktemp("campaigns")
    generate_sample(plain, users=USERS, days=DAYS, seed=SEED, end_date=END)
    summary = generate_sample(
        with_campaigns, users=USERS, days=DAYS, seed=SEED, end_date=END, campaigns=True
    )
    assert summary.rows["campaign_exposures"] > 0
    return plain, with_campaigns


def _read(home: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(home / "landing" / table / "*" / "*.csv", infer_schema=False)


def test_without_campaigns_nothing_is_written(homes: tuple[Path, Path]) -> None:
    plain, _ = homes
    assert not (plain / "landing" / "campaign_exposures").exists()
    assert not (plain / "truth" / "campaign_effects.parquet").exists()


def test_exposures_follow_the_contract(homes: tuple[Path, Path]) -> None:
    _, home = homes
    exposures = _read(home, "campaign_exposures")
    assert exposures.columns == [c.name for c in TABLE_SPECS["campaign_exposures"]]
    assert set(exposures["arm"]) == set(CAMPAIGN_ARMS)
    assert set(exposures["campaign_id"]) == {c.campaign_id for c in CAMPAIGNS}
    assert exposures.select("campaign_id", "user_id").is_unique().all()
    assert set(exposures["user_id"]) <= set(_read(home, "users")["user_id"])
    control_cost = exposures.filter(pl.col("arm") == "control")["cost"].cast(pl.Float64)
    assert (control_cost == 0).all()  # nobody was contacted
    # every exposure lands in its own day's file
    days = exposures["exposed_at"].str.to_datetime().dt.date()
    assert days.min() >= START and days.max() <= END


def test_only_treated_users_buy_differently_inside_their_window(homes: tuple[Path, Path]) -> None:
    plain, home = homes
    assert _read(plain, "users").equals(_read(home, "users"))

    def per_day(h: Path) -> pl.DataFrame:
        orders = _read(h, "orders").with_columns(
            pl.col("ordered_at").str.to_datetime().dt.date().alias("day")
        )
        return orders.group_by("user_id", "day").len()

    exposures = _read(home, "campaign_exposures").with_columns(
        pl.col("exposed_at").str.to_datetime().dt.date().alias("exposure_day")
    )
    treated = exposures.filter(pl.col("arm") == "treatment")
    changed = (
        per_day(plain)
        .join(per_day(home), on=["user_id", "day"], how="full", coalesce=True)
        .filter(pl.col("len").fill_null(0) != pl.col("len_right").fill_null(0))
    )
    assert changed.height > 0
    located = changed.join(treated, on="user_id", how="left").with_columns(
        ((pl.col("day") - pl.col("exposure_day")).dt.total_days()).alias("offset")
    )
    in_window = located.filter(pl.col("offset").is_between(1, WINDOW_DAYS))
    # every changed (user, day) belongs to a treated user's campaign window
    assert in_window.select("user_id", "day").unique().height == changed.height


def test_truth_has_the_promised_effects(homes: tuple[Path, Path]) -> None:
    _, home = homes
    truth = pl.read_parquet(home / "truth" / "campaign_effects.parquet")
    pooled = truth.filter(pl.col("archetype") == "all")
    lift = {(c, m): v for c, m, v in pooled.select("campaign_id", "metric", "true_lift").rows()}
    assert lift[("c01_vip_care", "converted")] > 0 and lift[("c01_vip_care", "revenue")] > 0
    assert lift[("c02_win_back", "converted")] > 0
    assert (
        truth.filter(pl.col("campaign_id") == "c03_newsletter")["true_lift"]
        .drop_nulls()
        .abs()
        .max()
        == 0
    )
    assert lift[("c04_discount_blast", "converted")] < 0
    assert lift[("c04_discount_blast", "revenue")] < 0
    # still running: its window is open, so there is nothing to measure yet
    assert lift[("c05_onboarding", "converted")] is None
    # effects stay in the window: retention 61-90 days after has no true effect
    assert (
        pooled.filter(pl.col("metric") == "retained_60d")["true_lift"].drop_nulls().abs().max() == 0
    )
