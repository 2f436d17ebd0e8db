"""Category recommendations on a time holdout: hit rate at 3 against a popularity baseline.

For each data set the real pipeline runs with the snapshot at a cut date (`strata run --date
CUT`: every landed day is ingested, but the snapshot marts read nothing after CUT), so
marts.user_next_best_categories is exactly what the daily run would have offered on CUT. The
users known at CUT who first bought a category in (CUT, CUT + holdout] are evaluated: a hit is
one of those categories among their top 3. The baseline offers each user the 3 categories most
bought by CUT (share of buyers) that the user had not bought (lib/recommendation/evaluation.py).

- generated: `strata generate` (archetypes with category tastes, lib/sample/tastes.py).
- jaffle shop: `jafgen 1` (one year of a cafe chain) through sources/jaffle_shop.yml, with the
  product name as the category: the shipped mapping's category is the product type, and with
  two types (jaffle, beverage) every method offers a user the one type not yet bought.

    .venv/bin/python benchmarks/recommendations.py [--users 3000] [--days 180] [--seed 7]
        [--holdout-days 45] [--skip-jaffle] [--variants] [--keep DIR]

--variants also rebuilds the table with other settings than dbt_project.yml's `recommendations`
(segment only, history only, no popularity discount, other schemes) on the generated warehouse
and evaluates each (one dbt call each, ~30 s). Target
(issue 12): the pipeline's hit rate >= 1.2 x popularity's on generated data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import yaml

from dagster_project.lib.recommendation.evaluation import (
    HitRate,
    hit_rate_at_k,
    popularity_top_k,
    split_at_cut,
)
from dagster_project.lib.sample.generator import generate_sample

REPO = Path(__file__).resolve().parents[1]
K = 3
TARGET_RATIO = 1.2
END = date(2024, 6, 30)
JAFFLE_CATEGORY = 'category: "(select type from products where products.sku = src.sku)"'
JAFFLE_PRODUCT = 'category: "(select name from products where products.sku = src.sku)"'
VARIANTS = {
    "segment only": {"history_weight": 0.0},
    "history only": {"history_weight": 1.0},
    "no popularity discount": {"popularity_discount": 0.0},
    "cluster as the segment": {"scheme": "cluster"},
    "rfm_segment as the segment": {"scheme": "rfm_segment"},
}

FIRST_PURCHASES = """
select orders.user_id, items.category, min(orders.order_date) as first_bought_date
from staging.stg_raw__order_items as items
inner join marts.fct_orders as orders on items.order_id = orders.order_id
where orders.is_completed and items.category is not null and items.category <> ''
group by orders.user_id, items.category
"""

RECOMMENDED = """
select user_id, category, recommendation_rank as rank, latest_snapshot_date
from marts.user_next_best_categories
"""


def run_strata(home: Path, cut: date, *extra: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "dagster_project.cli", "run", "--home", str(home)]
    command += ["--date", cut.isoformat(), *extra]
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"strata run failed for {home}:\n{result.stdout[-3000:]}")
    return time.perf_counter() - started


def evaluate(home: Path, cut: date, holdout_days: int) -> dict[str, HitRate | int]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        purchases = con.sql(FIRST_PURCHASES).pl()
        recommended = con.sql(RECOMMENDED).pl()
    as_of = set(recommended["latest_snapshot_date"].unique())
    if as_of != {cut}:
        raise RuntimeError(f"recommendations are as of {as_of}, expected {cut}")
    bought, later = split_at_cut(purchases, cut, cut + timedelta(days=holdout_days))
    users = recommended["user_id"].unique()
    baseline = popularity_top_k(bought, users, K)
    return {
        "users": users.len(),
        "categories": purchases["category"].n_unique(),
        "pipeline": hit_rate_at_k(recommended, later, K),
        "popularity": hit_rate_at_k(baseline, later, K),
    }


def print_result(name: str, result: dict, seconds: float | None = None) -> float | None:
    pipeline, popularity = result["pipeline"], result["popularity"]
    ratio = (
        pipeline.rate / popularity.rate if pipeline.rate is not None and popularity.rate else None
    )
    took = f", run {seconds:.0f} s" if seconds is not None else ""
    print(
        f"{name}: {result['users']} users at the cut, {result['categories']} categories, "
        f"{pipeline.users} with a new category in the holdout{took}"
    )
    for label, hit in (("pipeline", pipeline), ("popularity", popularity)):
        rate = f"{hit.rate:.3f}" if hit.rate is not None else "n/a"
        print(f"  hit rate at {K}, {label:<10}: {rate} ({hit.hits} of {hit.users})")
    if ratio is not None:
        print(f"  pipeline / popularity: {ratio:.2f}x ({(ratio - 1) * 100:+.0f}%)")
    return ratio


def rebuild(home: Path, settings: dict, target: Path) -> None:
    """user_next_best_categories again with other `recommendations` vars."""
    project = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())
    values = {**project["vars"]["recommendations"], **settings}
    dbt = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    command = [dbt, "run", "--select", "user_next_best_categories", "--quiet"]
    command += ["--vars", json.dumps({"recommendations": values})]
    command += ["--project-dir", "dbt", "--profiles-dir", "dbt", "--target-path", str(target)]
    env = {**os.environ, "STRATA_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dbt run failed:\n{result.stdout[-3000:]}")


def generated(args: argparse.Namespace, scratch: Path) -> float | None:
    home = scratch / "generated"
    cut = END - timedelta(days=args.holdout_days)
    seconds = None
    if not (args.keep and (home / "warehouse.duckdb").exists()):
        generate_sample(home, users=args.users, days=args.days, seed=args.seed, end_date=END)
        seconds = run_strata(home, cut)
    ratio = print_result(
        f"generated ({args.users} users, {args.days} days, seed {args.seed}, cut {cut}, "
        f"holdout {args.holdout_days} days)",
        evaluate(home, cut, args.holdout_days),
        seconds,
    )
    if args.variants:
        for name, settings in VARIANTS.items():
            rebuild(home, settings, scratch / "dbt-target")
            print_result(f"  variant {name}", evaluate(home, cut, args.holdout_days))
    return ratio


def jaffle(args: argparse.Namespace, scratch: Path) -> None:
    folder = scratch / "jaffle"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    jafgen = shutil.which("jafgen") or str(Path(sys.executable).parent / "jafgen")
    subprocess.run([jafgen, "1"], cwd=folder, check=True, capture_output=True, timeout=600)
    data = folder / "jaffle-data"
    ordered = pl.read_csv(data / "raw_orders.csv", columns=["ordered_at"])["ordered_at"]
    last = date.fromisoformat(ordered.max()[:10])
    cut = last - timedelta(days=args.holdout_days)
    shipped = (REPO / "sources" / "jaffle_shop.yml").read_text()
    if JAFFLE_CATEGORY not in shipped:
        raise RuntimeError("sources/jaffle_shop.yml no longer maps category as expected")
    mapping = folder / "jaffle_products.yml"
    mapping.write_text(shipped.replace(JAFFLE_CATEGORY, JAFFLE_PRODUCT))
    seconds = run_strata(
        folder / "home",
        cut,
        "--sources",
        str(mapping),
        env={"JAFFLE_DATA": str(data), "STRATA_PII_SALT": "benchmark-only-salt"},
    )
    print_result(
        f"jaffle shop (jafgen 1, product as category, cut {cut}, holdout {args.holdout_days} days)",
        evaluate(folder / "home", cut, args.holdout_days),
        seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=int, default=45)
    parser.add_argument("--skip-jaffle", action="store_true")
    parser.add_argument("--variants", action="store_true")
    parser.add_argument(
        "--keep",
        type=Path,
        help="work in this folder and keep it; a generated warehouse found there is reused "
        "(same arguments assumed), so --variants can be rerun without a new pipeline run",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="strata-recommendations-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        ratio = generated(args, scratch)
        if not args.skip_jaffle:
            jaffle(args, scratch)
    met = ratio is not None and ratio >= TARGET_RATIO
    print(f"target: generated >= {TARGET_RATIO:.1f}x popularity: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
