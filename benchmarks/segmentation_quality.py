"""Segmentation quality over a grid of histories, sizes and seeds (generated data, archetypes).

For every cell (history days x users x seed): generate the sample, build user_features as of the
last day, train the segmentation model exactly as the pipeline does (spec models/segmentation.yml)
and print

  ARI vs archetypes          >= 0.80   clusters recover the generator's hidden archetypes
  k vs archetypes            +-1       chosen k within one of the archetype count
  bootstrap ARI (stability)  >= 0.80   mean ARI of 20 bootstrap refits (the promotion gate's figure)
  ids kept on seed refit     >= 0.98   users keeping their segment id when the same data is refit
                                       with another random seed (matched to the first version)
  surrogate fidelity         >= 0.90   users the readable decision-tree rules put in their cluster

then the worst cell of each figure. The default grid is the one issue 10 asks for: history 60,
120, 365 and 730 days; 2,000 and 20,000 users; seeds 1, 2, 3 (24 cells).

Run:  .venv/bin/python benchmarks/segmentation_quality.py              # the whole grid
      .venv/bin/python benchmarks/segmentation_quality.py --quick      # 2,000 users, seed 1
      .venv/bin/python benchmarks/segmentation_quality.py --cells 20000x730x2 2000x60x1
      .venv/bin/python benchmarks/segmentation_quality.py --cache /tmp/seg-features  # keep the
          generated features (Parquet per cell) and reuse them on the next run

On a shared machine set OMP_NUM_THREADS=1: KMeans' OpenMP threads fight the other processes
(a 2,000-user cell took over 10 minutes at a load of 12 on 2 cores, 20 s with one thread).

Exits 1 when a figure of any cell misses its target. Seconds per cell are printed: "gen" is the
generator plus the feature build (not the method), "fit" the four figures (three model fits, each
with its bootstrap and surrogate).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from dagster_project.lib.core import settings
from dagster_project.lib.sample.archetypes import ARCHETYPES
from dagster_project.lib.sample.generator import generate_sample
from dagster_project.lib.segmentation.archetype_recovery import (
    THRESHOLDS,
    QualityFigures,
    measure_quality,
)
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec
from dagster_project.testing.stand_in_marts import sample_features

END = date(2024, 6, 30)
DAYS = (60, 120, 365, 730)
USERS = (2000, 20000)
SEEDS = (1, 2, 3)
LABELS = {
    "ari_vs_archetypes": "ARI",
    "bootstrap_ari": "boot ARI",
    "id_agreement_refit": "ids kept",
    "surrogate_fidelity": "fidelity",
}


@dataclass(frozen=True)
class Cell:
    days: int
    users: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.users}x{self.days}x{self.seed}"

    @classmethod
    def parse(cls, text: str) -> Cell:
        """USERSxDAYSxSEED, e.g. 20000x730x2."""
        try:
            users, days, seed = (int(part) for part in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"cell {text!r}: expected USERSxDAYSxSEED") from None
        return cls(days=days, users=users, seed=seed)


def cell_features(cell: Cell, cache: Path | None) -> tuple[pl.DataFrame, float]:
    """user_features (+ archetype) of one cell, and the seconds it took (0 from the cache)."""
    cached = cache / f"{cell.name}.parquet" if cache is not None else None
    if cached is not None and cached.exists():
        return pl.read_parquet(cached), 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-quality-") as tmp:
        generate_sample(Path(tmp), users=cell.users, days=cell.days, seed=cell.seed, end_date=END)
        features = sample_features(Path(tmp), END)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        features.write_parquet(cached)
    return features, time.perf_counter() - start


def cell_failures(figures: QualityFigures, archetypes: int) -> list[str]:
    """What misses a target in one cell (empty when the cell passes)."""
    failures = figures.failures()
    if abs(figures.k - archetypes) > 1:
        failures.append(f"k {figures.k} not within 1 of {archetypes} archetypes")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=list(DAYS))
    parser.add_argument("--users", type=int, nargs="+", default=list(USERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--quick", action="store_true", help="2,000 users and seed 1 only (four cells)"
    )
    parser.add_argument(
        "--cells", type=Cell.parse, nargs="+", help="only these cells, USERSxDAYSxSEED"
    )
    parser.add_argument("--cache", type=Path, help="folder keeping each cell's features")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.seeds = [min(args.users)], [args.seeds[0]]
    cells = args.cells or [
        Cell(days=d, users=u, seed=s) for u in args.users for d in args.days for s in args.seeds
    ]
    spec = load_segmentation_spec(settings.MODEL_SPECS_DIR / "segmentation.yml")
    archetypes = len(ARCHETYPES)
    print(
        f"{'users':>6} {'days':>4} {'seed':>4} {'k':>2}/{archetypes} "
        + " ".join(f"{label:>8}" for label in LABELS.values())
        + f" {'min Jacc':>8} {'gen s':>6} {'fit s':>6}  misses"
    )
    results: list[tuple[Cell, QualityFigures, list[str]]] = []
    for cell in cells:
        features, gen_seconds = cell_features(cell, args.cache)
        figures = measure_quality(
            features.drop("archetype"),
            features.get_column("archetype"),
            spec,
            refit_seed=cell.seed,
            compare_canonical=False,
        )
        failures = cell_failures(figures, archetypes)
        results.append((cell, figures, failures))
        values = " ".join(f"{getattr(figures, n):>8.3f}" for n in LABELS)
        print(
            f"{cell.users:>6} {cell.days:>4} {cell.seed:>4} {figures.k:>2}/{archetypes} "
            f"{values} {figures.min_cluster_jaccard:>8.3f} {gen_seconds:>6.1f} "
            f"{figures.seconds:>6.1f}  {'; '.join(failures) or '-'}",
            flush=True,
        )
    print(
        "targets: "
        + ", ".join(f"{LABELS[n]} >= {v}" for n, v in THRESHOLDS.items())
        + f", k within 1 of {archetypes}"
    )
    for name, label in LABELS.items():
        cell, figures, _ = min(results, key=lambda r: getattr(r[1], name))
        print(f"worst {label:>8}: {getattr(figures, name):.3f} at {cell.name}")
    cell, figures, _ = max(results, key=lambda r: abs(r[1].k - archetypes))
    print(f"worst        k: {figures.k} of {archetypes} at {cell.name}")
    fit_seconds = [f.seconds for _, f, _ in results]
    print(
        f"fit seconds per cell: max {max(fit_seconds):.1f}, total {sum(fit_seconds):.1f} "
        f"over {len(results)} cells"
    )
    failed = [(cell, failures) for cell, _, failures in results if failures]
    for cell, failures in failed:
        print(f"MISSES TARGET {cell.name}: {'; '.join(failures)}")
    print(f"{len(results) - len(failed)} of {len(results)} cells meet every target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
