"""Every environment variable Strata reads, in one place (documented in .env.example)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
MODEL_SPECS_DIR = PROJECT_ROOT / "models"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

DEFAULT_HOME = ".strata"
DEFAULT_PARTITION_START = "2020-01-01"
# Only for the generated sample data: for any other data a missing salt is an error.
SAMPLE_PII_SALT = "strata-sample-data-salt"
DEFAULT_MAX_REJECT_SHARE = 0.10
DEFAULT_MAX_STALENESS_DAYS = 7.0
# Written by the source mapping stage into the landing folder (see lib/ingestion/mapping/).
MAPPING_MANIFEST = ".mapping.json"


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message says which and how."""


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

    @property
    def dbt_target(self) -> Path:
        """dbt artifacts of this home's runs (compiled SQL, run results), a folder per call."""
        return self.home / "dbt_target"


def strata_home(override: str | Path | None = None) -> Path:
    """STRATA_HOME as an absolute path (dbt's profile and Dagster runs need it absolute)."""
    raw = override if override is not None else os.environ.get("STRATA_HOME", DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


def strata_paths(override: str | Path | None = None) -> StrataPaths:
    return StrataPaths(strata_home(override))


def earliest_landed_day(landing: Path) -> date | None:
    """The first `date=YYYY-MM-DD` directory of any table under `landing`, if any."""
    days = []
    if landing.is_dir():
        for table_dir in landing.iterdir():
            if not table_dir.is_dir():
                continue
            for child in table_dir.iterdir():
                if child.name.startswith("date=") and child.is_dir():
                    try:
                        days.append(date.fromisoformat(child.name[5:]))
                    except ValueError:
                        continue
    return min(days) if days else None


def partition_start() -> str:
    """First day of the daily partitions (read once, when the Dagster definitions load).

    STRATA_PARTITION_START when set; otherwise 2020-01-01, or the first landed day under
    STRATA_HOME when that is earlier, so historical data (CDNOW: 1997) needs no setting.
    """
    value = os.environ.get("STRATA_PARTITION_START", "").strip()
    if value:
        try:
            date.fromisoformat(value)
        except ValueError as exc:  # fail at load with the value rather than deep in Dagster
            raise SettingsError(
                f"STRATA_PARTITION_START must be a date (YYYY-MM-DD), got {value!r}"
            ) from exc
        return value
    earliest = earliest_landed_day(strata_paths().landing)
    default = date.fromisoformat(DEFAULT_PARTITION_START)
    return min(default, earliest).isoformat() if earliest else DEFAULT_PARTITION_START


def _float_env(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


# DuckDB's own default is 80% of RAM for each database instance; dbt's connection and ours share
# one, but polars frames, scikit-learn fits and Dagster live beside it: leave them room. A
# quarter: with half, the 1M-user run peaked at 12.9 GiB on a 24 GiB machine (DuckDB fills
# what it is given; target 8 GB); a quarter is 6 GiB there, and what does not fit spills.
DEFAULT_DUCKDB_MEMORY_SHARE = 0.25
_MEMORY_LIMIT = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def _machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's limit when the process runs under a smaller one."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def duckdb_settings(home: Path) -> dict[str, str]:
    """What every connection that works on the warehouse sets (ours and dbt's, through the
    same environment variables): ``memory_limit`` (STRATA_DUCKDB_MEMORY_LIMIT, e.g. ``6GB``;
    default a quarter of the machine's memory), ``threads`` (STRATA_DUCKDB_THREADS; default
    the cores this process may use).

    Not ``temp_directory``: DuckDB refuses to SET it again once a query has spilled, even to
    the same folder, and dbt-duckdb SETs its settings on every cursor, so the first spill of a
    dbt call failed every model after it. DuckDB's own default, ``warehouse.duckdb.tmp`` next to
    the file, is under STRATA_HOME already."""
    memory = os.environ.get("STRATA_DUCKDB_MEMORY_LIMIT", "").strip()
    if not memory:
        mib = int(_machine_memory_bytes() * DEFAULT_DUCKDB_MEMORY_SHARE) // 2**20
        memory = f"{mib}MiB"
    elif not _MEMORY_LIMIT.match(memory):
        raise SettingsError(
            f"STRATA_DUCKDB_MEMORY_LIMIT must be a size such as 6GB or 4096MiB, got {memory!r}"
        )
    threads = os.environ.get("STRATA_DUCKDB_THREADS", "").strip() or str(_usable_cores())
    if not threads.isdigit() or int(threads) < 1:
        raise SettingsError(f"STRATA_DUCKDB_THREADS must be a whole number >= 1, got {threads!r}")
    return {
        "memory_limit": memory,
        "threads": threads,
    }


def max_reject_share() -> float:
    """Largest share of a day's rows that may be quarantined before the run stops (0..1)."""
    return _float_env("STRATA_MAX_REJECT_SHARE", DEFAULT_MAX_REJECT_SHARE, 0.0, 1.0)


def max_staleness_days() -> float:
    """Longest time without a new order or event before a day counts as stale (days)."""
    return _float_env("STRATA_MAX_STALENESS_DAYS", DEFAULT_MAX_STALENESS_DAYS, 0.0, 36_500.0)


def sources_file() -> Path | None:
    """The source mapping YAML named by STRATA_SOURCES, if any."""
    raw = os.environ.get("STRATA_SOURCES", "").strip()
    return Path(raw).expanduser() if raw else None


def sample_data_mode(home: Path) -> bool:
    """True when the landing data is the generated sample (`strata generate` wrote the hidden
    truth and no source mapping has been staged): the only case with a built-in PII salt."""
    paths = StrataPaths(home)
    return (paths.truth / "archetypes.parquet").exists() and not (
        paths.landing / MAPPING_MANIFEST
    ).exists()


def require_pii_salt(home: Path) -> None:
    """Raise unless STRATA_PII_SALT is set (or the home holds generated sample data)."""
    if os.environ.get("STRATA_PII_SALT", "").strip() or sample_data_mode(home):
        return
    raise SettingsError(
        "STRATA_PII_SALT is not set. It is the secret key of the email/phone pseudonyms in "
        "staging; only the generated sample data has a built-in one. Set it, e.g. "
        "`export STRATA_PII_SALT=$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
        "keep it secret and keep it stable (a new salt changes every hash)."
    )


def export_runtime_environment(home: Path, sample_data: bool | None = None) -> None:
    """Set the variables that dbt and Dagster subprocesses read, before any run starts.

    The sample-data salt is only filled in for generated sample data (`sample_data`, by
    default detected from `home`); for real data a missing STRATA_PII_SALT stays missing and
    `require_pii_salt` / dbt's `pii_hash` refuse to run.
    """
    if sample_data is None:
        sample_data = sample_data_mode(home)
    defaults = {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_HOME": str(StrataPaths(home).dagster_home),
        # A catch-up over N days is one run: one "planned" event per asset instead of N (on
        # SQLite each event costs a disk sync; a year of CDNOW is ~5,000 fewer). Trade-off:
        # Dagster then does not mark a failed run's partitions as failed, they stay missing
        # and `strata run` ingests them again.
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    }
    if sample_data:
        defaults["STRATA_PII_SALT"] = SAMPLE_PII_SALT
    os.environ["STRATA_HOME"] = str(home)
    # per home: dbt's saved parse is only reusable for the profile (warehouse path) it was made for
    os.environ["DBT_TARGET_PATH"] = str(StrataPaths(home).dbt_target)
    # dbt's DuckDB connection (dbt/profiles.yml `settings`) reads the same values as ours
    for name, value in duckdb_settings(home).items():
        os.environ[f"STRATA_DUCKDB_{name.upper()}"] = value
    for name, value in defaults.items():
        if not os.environ.get(name):  # an empty line copied from .env.example counts as unset
            os.environ[name] = value
