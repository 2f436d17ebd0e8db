"""Campaign effect evaluation against the generator's true effects, over several seeds.

For each seed: generate USERS users over DAYS days with campaigns (`strata generate
--campaigns`: four campaigns aimed at archetypes, a random control group, known effects,
one with no effect and one that hurts), compute each exposed user's outcomes from the landing
files exactly as dbt's fct_campaign_exposures defines them (completed orders; conversion and
revenue in the 14 days after the exposure day, retention in the 30 days ending 30/60/90 days
after it; pre-exposure spend of the 90 days before), group by campaign x archetype (and the
whole campaign), and run the statistics of marts.campaign_effects (lib/evaluation/effects.py)
against truth/campaign_effects.parquet. Prints

  coverage of the true effect        near 0.95   95 % intervals holding the generator's truth
  false positives (no-effect)        <= 0.05     c03_newsletter rows called significant
  CUPED interval width / plain       < 1         how much pre-exposure spend narrows intervals

Rows without variance in either arm (e.g. browse-only users never buy) hold an exact answer
and are left out of the coverage; rows still unobserved at the end of the history (retention
after 60/90 days of late campaigns) have no interval.

Run:  uv run python benchmarks/campaign_effects.py [--users 4000 --days 150 --seeds 1 2 ...]
Exits 1 when coverage is outside [0.90, 0.99] or the false-positive rate above 0.05. About 10 s
per seed at 4,000 users on 2 busy cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from dagster_project.lib.evaluation.coverage import IntervalTally, covers
from dagster_project.lib.evaluation.effects import estimate
from dagster_project.lib.sample.campaigns import RETENTION_DAYS, RETENTION_SPAN, WINDOW_DAYS
from dagster_project.lib.sample.generator import generate_sample

END = date(2024, 6, 30)
NO_EFFECT = "c03_newsletter"
PRE_DAYS = 90
METRICS = ("converted", "revenue", *(f"retained_{d}d" for d in RETENTION_DAYS))


def _landing(home: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(home / "landing" / table / "*" / "*.csv", infer_schema=False)


def outcomes(home: Path, end: date) -> pl.DataFrame:
    """One row per exposure: archetype, arm, cost, pre-exposure spend and the outcomes."""
    orders = _landing(home, "orders").select(
        "user_id",
        pl.col("ordered_at").str.to_datetime().dt.date().alias("order_date"),
        pl.col("amount").cast(pl.Float64),
        (pl.col("status") == "completed").alias("completed"),
    )
    exposures = _landing(home, "campaign_exposures").select(
        "user_id",
        "campaign_id",
        "arm",
        pl.col("cost").cast(pl.Float64),
        pl.col("exposed_at").str.to_datetime().dt.date().alias("exposure_date"),
    )
    archetypes = pl.read_parquet(home / "truth" / "archetypes.parquet")
    joined = exposures.join(orders, on="user_id", how="left").with_columns(
        (pl.col("order_date") - pl.col("exposure_date")).dt.total_days().alias("offset"),
        pl.when(pl.col("completed")).then(pl.col("amount")).otherwise(0.0).alias("net"),
    )

    def active(lo: int, hi: int) -> pl.Expr:
        inside = pl.col("offset").is_between(lo, hi) & pl.col("completed")
        return inside.fill_null(False).any().cast(pl.Float64)

    def observed(days: int, expr: pl.Expr) -> pl.Expr:
        end_date = pl.col("exposure_date") + timedelta(days=days)
        return pl.when(end_date <= pl.lit(end)).then(expr)

    per_user = joined.group_by("campaign_id", "user_id", "arm", "cost", "exposure_date").agg(
        pl.col("net").filter(pl.col("offset").is_between(-PRE_DAYS, -1)).sum()
        .alias("pre_exposure_revenue"),
        active(1, WINDOW_DAYS).alias("converted"),
        pl.col("net").filter(pl.col("offset").is_between(1, WINDOW_DAYS)).sum().alias("revenue"),
        *[
            active(d - RETENTION_SPAN + 1, d).alias(f"retained_{d}d")
            for d in RETENTION_DAYS
        ],
    )  # fmt: skip
    return per_user.with_columns(
        observed(WINDOW_DAYS, pl.col("converted")).alias("converted"),
        observed(WINDOW_DAYS, pl.col("revenue")).alias("revenue"),
        *[observed(d, pl.col(f"retained_{d}d")).alias(f"retained_{d}d") for d in RETENTION_DAYS],
    ).join(archetypes, on="user_id")


def evaluate(rows: pl.DataFrame, truth: pl.DataFrame) -> list[dict]:
    """Per campaign x archetype (and 'all') x metric: the estimate next to the truth."""
    results = []
    pooled = rows.with_columns(pl.lit("all").alias("archetype"))
    for (campaign_id, archetype), group in pl.concat([rows, pooled]).group_by(
        "campaign_id", "archetype"
    ):
        for metric in METRICS:
            t = group.filter((pl.col("arm") == "treatment") & pl.col(metric).is_not_null())
            c = group.filter((pl.col("arm") == "control") & pl.col(metric).is_not_null())
            true_lift = truth.filter(
                (pl.col("campaign_id") == campaign_id)
                & (pl.col("archetype") == archetype)
                & (pl.col("metric") == metric)
            )["true_lift"]
            if true_lift.len() == 0 or true_lift[0] is None:
                continue
            e = estimate(
                t[metric].to_numpy(), c[metric].to_numpy(),
                t["pre_exposure_revenue"].to_numpy(), c["pre_exposure_revenue"].to_numpy(),
            )  # fmt: skip
            results.append(
                {
                    "campaign_id": campaign_id,
                    "archetype": archetype,
                    "metric": metric,
                    "truth": true_lift[0],
                    # no variance in either arm (browse-only users never buy): an exact answer
                    "exact": t[metric].var() == 0 and c[metric].var() == 0,
                    "absolute": e.absolute,
                    "cuped": e.cuped,
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    args = parser.parse_args(argv)

    plain, cuped, null = IntervalTally(), IntervalTally(), IntervalTally()
    by_metric: dict[str, IntervalTally] = {m: IntervalTally() for m in METRICS}
    exact = 0
    ratios: dict[str, list[float]] = {m: [] for m in METRICS}
    with tempfile.TemporaryDirectory(prefix="strata-campaigns-") as tmp:
        for seed in args.seeds:
            home = Path(tmp) / f"seed{seed}"
            generate_sample(
                home, users=args.users, days=args.days, seed=seed, end_date=END, campaigns=True
            )
            truth = pl.read_parquet(home / "truth" / "campaign_effects.parquet")
            seed_tally = IntervalTally()
            for r in evaluate(outcomes(home, END), truth):
                a, cu = r["absolute"], r["cuped"]
                if a.low is None:
                    continue
                width = a.high - a.low
                if r["exact"]:
                    exact += 1
                    continue
                hit = covers(a.low, a.high, r["truth"])
                for tally in (plain, by_metric[r["metric"]], seed_tally):
                    tally.add(hit, a.p_value < 0.05, width)
                cuped.add(covers(cu.low, cu.high, r["truth"]), cu.p_value < 0.05)
                ratios[r["metric"]].append((cu.high - cu.low) / width)
                if r["campaign_id"] == NO_EFFECT:
                    null.add(hit, a.p_value < 0.05)
            print(
                f"seed {seed}: {seed_tally.intervals} intervals, coverage "
                f"{seed_tally.coverage:.3f}",
                flush=True,
            )

    all_ratios = [x for values in ratios.values() for x in values]
    print()
    print(f"users {args.users}, days {args.days}, seeds {len(args.seeds)}")
    print(f"{'coverage of the true effect (plain)':<42} {plain.coverage:.3f}  "
          f"({plain.covered} of {plain.intervals} intervals; target near 0.95)")  # fmt: skip
    for metric, tally in by_metric.items():
        if tally.intervals:
            print(f"  {metric:<40} {tally.coverage:.3f}  ({tally.intervals} intervals)")
    print(f"{'coverage of the true effect (CUPED)':<42} {cuped.coverage:.3f}")
    print(f"{'false positives of ' + NO_EFFECT:<42} {null.significant_share:.3f}  "
          f"({null.significant} of {null.intervals}; target <= 0.05)")  # fmt: skip
    print(f"{'CUPED interval width / plain (median)':<42} {statistics.median(all_ratios):.3f}")
    for metric, values in ratios.items():
        if values:
            print(f"  {metric:<40} {statistics.median(values):.3f}")
    print(f"{'exact rows left out (no variance)':<42} {exact}")
    ok = 0.90 <= plain.coverage <= 0.99 and null.significant_share <= 0.05
    print("OK" if ok else "BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
