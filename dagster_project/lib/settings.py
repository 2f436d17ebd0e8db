"""Every environment variable Strata reads, in one place (documented in .env.example)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
MODEL_SPECS_DIR = PROJECT_ROOT / "models"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

DEFAULT_HOME = ".strata"
DEFAULT_PARTITION_START = "2020-01-01"
# Only for the generated sample data; issue #5 makes a missing salt an error for real sources.
SAMPLE_PII_SALT = "strata-sample-data-salt"


@dataclass(frozen=True)
class StrataPaths:
    """The data directory layout under STRATA_HOME."""

    home: Path

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def truth(self) -> Path:
        return self.home / "truth"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def serving_db(self) -> Path:
        return self.serving_dir / "strata.duckdb"

    @property
    def serving_parquet(self) -> Path:
        return self.serving_dir / "parquet"

    @property
    def model_store(self) -> Path:
        return self.home / "models"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"


def strata_home(override: str | Path | None = None) -> Path:
    """STRATA_HOME as an absolute path (dbt's profile and Dagster runs need it absolute)."""
    raw = override if override is not None else os.environ.get("STRATA_HOME", DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


def strata_paths(override: str | Path | None = None) -> StrataPaths:
    return StrataPaths(strata_home(override))


def partition_start() -> str:
    """First day of the daily partitions; set it earlier for historical data (CDNOW: 1997-01-01)."""
    value = os.environ.get("STRATA_PARTITION_START", DEFAULT_PARTITION_START)
    date.fromisoformat(value)  # fail at load with the variable's value rather than deep in Dagster
    return value


def export_runtime_environment(home: Path) -> None:
    """Set the variables that dbt and Dagster subprocesses read, before any run starts."""
    defaults = {
        "STRATA_PII_SALT": SAMPLE_PII_SALT,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_HOME": str(StrataPaths(home).dagster_home),
    }
    os.environ["STRATA_HOME"] = str(home)
    for name, value in defaults.items():
        if not os.environ.get(name):  # an empty line copied from .env.example counts as unset
            os.environ[name] = value
