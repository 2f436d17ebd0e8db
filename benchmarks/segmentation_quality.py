"""Segmentation quality on generated data with hidden archetypes.

For each seed: generate USERS users over DAYS days, build user_features as of the last day, train
the segmentation model exactly as the pipeline does (spec models/segmentation.yml) and print

  ARI vs archetypes          >= 0.80   clusters recover the generator's hidden archetypes
  bootstrap ARI (stability)  >= 0.80   mean ARI of 20 bootstrap refits (the promotion gate's figure)
  ids kept on seed refit     >= 0.98   users keeping their segment id when the same data is refit
                                       with another random seed (matched to the first version)
  surrogate fidelity         >= 0.90   users the readable decision-tree rules put in their cluster

Run:  .venv/bin/python benchmarks/segmentation_quality.py [--users 5000 --days 120 --seeds 1 2 3]
Exits 1 when a figure is below its threshold. About 30-40 s per seed on 2 busy cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

from dagster_project.lib.core import settings
from dagster_project.lib.sample.generator import generate_sample
from dagster_project.lib.segmentation.archetype_recovery import THRESHOLDS, measure_quality
from dagster_project.lib.segmentation.spec_loader import load_segmentation_spec
from dagster_project.testing.stand_in_marts import sample_features

END = date(2024, 6, 30)
LABELS = {
    "ari_vs_archetypes": "ARI vs archetypes",
    "bootstrap_ari": "bootstrap ARI",
    "id_agreement_refit": "ids kept on seed refit",
    "surrogate_fidelity": "surrogate fidelity",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    spec = load_segmentation_spec(settings.MODEL_SPECS_DIR / "segmentation.yml")
    header = f"{'seed':>4} {'users':>6} {'k':>2} " + " ".join(f"{LABELS[n]:>23}" for n in LABELS)
    print(header + f" {'min Jaccard':>11} {'canonical ids':>13} {'seconds':>7}")
    failed = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="strata-quality-") as tmp:
            generate_sample(Path(tmp), users=args.users, days=args.days, seed=seed, end_date=END)
            features = sample_features(Path(tmp), END)
        figures = measure_quality(
            features.drop("archetype"), features.get_column("archetype"), spec, refit_seed=seed
        )
        values = " ".join(f"{getattr(figures, n):>23.3f}" for n in LABELS)
        print(
            f"{seed:>4} {figures.users:>6} {figures.k:>2} {values} "
            f"{figures.min_cluster_jaccard:>11.3f} {figures.canonical_agreement_refit:>13.3f} "
            f"{figures.seconds:>7.1f}",
            flush=True,
        )
        failed += [f"seed {seed}: {f}" for f in figures.failures()]
    print("thresholds: " + ", ".join(f"{LABELS[n]} >= {v}" for n, v in THRESHOLDS.items()))
    for line in failed:
        print(f"BELOW THRESHOLD {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
