"""The built-in segment schemes, read from the one list in dbt/dbt_project.yml (var
segment_schemes) that the dbt macros also unpivot, so Python and SQL never disagree on a name."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from dagster_project.lib.core import settings


@dataclass(frozen=True)
class SegmentScheme:
    scheme: str
    source: str  # segments: user_segments_daily; values: user_value_daily
    segment_column: str
    label_column: str
    nullable: bool = False  # NULL keys are skipped (cluster: below clustering.min_users)


@functools.cache
def segment_schemes(
    project_file: Path = settings.DBT_PROJECT_DIR / "dbt_project.yml",
) -> tuple[SegmentScheme, ...]:
    entries = yaml.safe_load(project_file.read_text())["vars"]["segment_schemes"]
    return tuple(SegmentScheme(**entry) for entry in entries)


def scheme_names() -> tuple[str, ...]:
    return tuple(s.scheme for s in segment_schemes())
