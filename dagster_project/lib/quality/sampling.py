"""Which rows a Great Expectations validation sees when a window is larger than GX should hold.

GX validates pandas frames: a window of a few hundred thousand rows costs about a second, a
100M-event history would not fit. Windows up to the sample size are validated whole (every
daily run of a small or medium warehouse, and every test). Larger ones are validated on a
deterministic sample: the rows whose key hashes below a threshold, so a rerun sees exactly
the same rows (a reservoir sample over a parallel scan would not) and the share is known.

What a sample can and cannot see: a systematic defect (a wrong mapping, a broken column, a
shifted timestamp) shows up in the sample as in the whole; a single bad row may not. Single bad
rows are the ingestion contract's job (each is quarantined with its reason before GX runs), and
keys and relationships over the whole table are dbt tests in DuckDB.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

DEFAULT_SAMPLE_ROWS = 250_000
# hash(key) % HASH_BUCKETS < threshold selects the sample (about threshold / HASH_BUCKETS of it)
HASH_BUCKETS = 1_000_000


def sample_rows() -> int:
    """Most rows one validation reads into GX (STRATA_GX_SAMPLE_ROWS, default 250,000)."""
    raw = os.environ.get("STRATA_GX_SAMPLE_ROWS", "").strip()
    if not raw:
        return DEFAULT_SAMPLE_ROWS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"STRATA_GX_SAMPLE_ROWS must be a whole number >= 1, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Sample:
    """The rows of one validation window that GX sees."""

    window_rows: int
    threshold: int | None  # None: every row

    @property
    def share(self) -> float:
        return 1.0 if self.threshold is None else self.threshold / HASH_BUCKETS


def plan_sample(window_rows: int, cap: int, key: str | None) -> Sample:
    """Every row when the window fits ``cap`` (or there is no key to sample on), else about
    ``cap`` of them."""
    if key is None or window_rows <= cap:
        return Sample(window_rows, None)
    return Sample(window_rows, max(1, math.floor(HASH_BUCKETS * cap / window_rows)))


def sampled_query(sql: str, key: str | None, sample: Sample) -> str:
    """``sql`` restricted to the sample's rows; ``key`` is a comma-separated list of the
    columns that identify a row (e.g. ``_source_file, _source_line``)."""
    if sample.threshold is None or key is None:
        return sql
    return (
        f"select * from ({sql}) as validated "
        f"where hash({key}) % {HASH_BUCKETS} < {sample.threshold}"
    )
