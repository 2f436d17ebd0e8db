"""Score-grid maps (the R x F map, value tiers, user-added maps): exact-partition checks, the
segment catalog and the long-format assignment of user-added maps."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import polars as pl

from dagster_project.lib.segmentation.spec import MapCell, MapRule, SegmentationSpec, SegmentMap


def spec_maps(spec: SegmentationSpec) -> tuple[SegmentMap, ...]:
    """Every map of the spec: the R x F map, the 8-type value tiers and any user-added map.

    The value tiers are a map too: over the high/low grid of R, F and M. Checks and tests iterate
    this tuple, so a map a user adds under ``rules.maps`` is checked like the shipped ones.
    """
    rules = spec.rules
    rf = SegmentMap(
        name="rfm_segment",
        axes=("r", "f"),
        domains=(
            tuple(range(1, rules.recency.levels + 1)),
            tuple(range(1, rules.frequency.levels + 1)),
        ),
        cells=tuple(
            MapCell(
                m.key,
                m.label_zh,
                (frozenset(range(m.r[0], m.r[1] + 1)), frozenset(range(m.f[0], m.f[1] + 1))),
            )
            for m in rules.rf_map
        ),
    )
    level = ("high", "low")
    tiers = SegmentMap(
        name="value_tier",
        axes=("r", "f", "m"),
        domains=(level, level, level),
        cells=tuple(
            MapCell(
                t.key,
                t.label_zh,
                tuple(frozenset({"high" if h else "low"}) for h in (t.r_high, t.f_high, t.m_high)),
            )
            for t in rules.value_tiers
        ),
    )
    return (rf, tiers, *rules.custom_maps)


def map_partition_problems(segment_map: SegmentMap) -> list[str]:
    """One message per grid cell matched by no map cell or by several ("r=5 f=4: unmatched").

    Empty when the map is an exact partition of its grid. Works for any number of axes.
    """
    problems: list[str] = []
    for point in itertools.product(*segment_map.domains):
        hits = segment_map.matches(point)
        where = " ".join(f"{a}={v}" for a, v in zip(segment_map.axes, point, strict=True))
        if not hits:
            problems.append(f"{where}: unmatched")
        elif len(hits) > 1:
            problems.append(f"{where}: matched by {', '.join(hits)}")
    return problems


def check_spec_maps(spec: SegmentationSpec) -> dict[str, list[str]]:
    """Partition problems of every map of the spec, by scheme (an empty list = exact)."""
    return {m.name: map_partition_problems(m) for m in spec_maps(spec)}


def check_map_partition(
    map_spec: Sequence[MapRule], r_values: Iterable[int], f_values: Iterable[int]
) -> list[str]:
    """Check that a named R x F map covers every (r, f) cell exactly once.

    Returns one message per unmatched or multiply matched cell (empty list when the map is an
    exact partition), so a bad edit of the spec names the exact cells to fix.
    """
    segment_map = SegmentMap(
        name="rf_map",
        axes=("r", "f"),
        domains=(tuple(r_values), tuple(f_values)),
        cells=tuple(
            MapCell(
                m.key,
                m.label_zh,
                (frozenset(range(m.r[0], m.r[1] + 1)), frozenset(range(m.f[0], m.f[1] + 1))),
            )
            for m in map_spec
        ),
    )
    return map_partition_problems(segment_map)


def segment_catalog(
    spec: SegmentationSpec, churn_band_labels: Sequence[tuple[str, str]] = ()
) -> pl.DataFrame:
    """Every (scheme, key, label_zh, sort_order): the label dimension BI and dbt contracts use.

    ``churn_band_labels`` (key, label) come from models/value.yml: churn_risk_band is a scheme of
    segment_summary_daily too. Cluster keys change with every model version; their names are in
    segment_cluster_profiles.
    """
    rules = spec.rules
    rows: list[tuple[str, str, str]] = []
    rows += [("rfm_segment", m.key, m.label_zh) for m in rules.rf_map]
    rows += [("rfm_segment", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("value_tier", t.key, t.label_zh) for t in rules.value_tiers]
    rows += [("value_tier", rules.prospect.key, rules.prospect.label_zh)]
    rows += [("lifecycle_stage", lab.key, lab.label_zh) for lab in rules.lifecycle.labels]
    rows += [("ops_tier", lab.key, lab.label_zh) for lab in rules.ops_tiers.labels]
    rows += [("churn_risk_band", key, label) for key, label in churn_band_labels]
    for custom in rules.custom_maps:
        rows += [(custom.name, cell.key, cell.label_zh) for cell in custom.cells]
        rows += [(custom.name, rules.prospect.key, rules.prospect.label_zh)]
    frame = pl.DataFrame(rows, schema=["scheme", "key", "label_zh"], orient="row").unique(
        subset=["scheme", "key"], keep="first", maintain_order=True
    )
    return frame.with_columns(
        pl.int_range(pl.len()).over("scheme").cast(pl.Int16).alias("sort_order")
    )


CUSTOM_SEGMENT_COLUMNS: tuple[str, ...] = ("user_id", "scheme", "segment", "segment_label")


_SCORE_COLUMNS = {"r": "r_score", "f": "f_score", "m": "m_score"}


def assign_custom_maps(segments: pl.DataFrame, spec: SegmentationSpec) -> pl.DataFrame:
    """Every user's segment in each user-added map (``rules.maps``), from the R/F/M scores.

    ``segments`` is the output of :func:`assign_rule_segments`. Returns one row per user and map
    (:data:`CUSTOM_SEGMENT_COLUMNS`); non-customers (NULL scores) get the prospect key. Empty
    (with that schema) when the spec has no user-added map.
    """
    prospect = spec.rules.prospect
    frames = []
    for custom in spec.rules.custom_maps:
        score_cols = [_SCORE_COLUMNS[a] for a in custom.axes]
        cells = pl.DataFrame(
            [
                (*point, cell.key, cell.label_zh)
                for cell in custom.cells
                for point in itertools.product(*(sorted(v) for v in cell.values))
            ],
            schema={**dict.fromkeys(score_cols, pl.Int8), "_key": pl.Utf8, "_zh": pl.Utf8},
            orient="row",
        )
        joined = segments.select("user_id", *score_cols).join(
            cells, on=score_cols, how="left", maintain_order="left"
        )
        customer = pl.all_horizontal([pl.col(c).is_not_null() for c in score_cols])
        frames.append(
            joined.select(
                "user_id",
                pl.lit(custom.name).alias("scheme"),
                pl.when(customer)
                .then(pl.col("_key"))
                .otherwise(pl.lit(prospect.key))
                .alias("segment"),
                pl.when(customer)
                .then(pl.col("_zh"))
                .otherwise(pl.lit(prospect.label_zh))
                .alias("segment_label"),
            )
        )
    if not frames:
        return pl.DataFrame(schema=dict.fromkeys(CUSTOM_SEGMENT_COLUMNS, pl.Utf8))
    out = pl.concat(frames)
    if out.get_column("segment").null_count():
        raise RuntimeError("a user-added map left users unlabelled: check_spec_maps first")
    return out
