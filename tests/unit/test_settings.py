"""Environment settings: the PII salt rule, the first partition, the reject-share bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dagster_project.cli import main
from dagster_project.lib.core import settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch):
    for name in (
        "STRATA_PII_SALT",
        "STRATA_PARTITION_START",
        "STRATA_MAX_REJECT_SHARE",
        "STRATA_DUCKDB_MEMORY_LIMIT",
        "STRATA_DUCKDB_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)
    # export_runtime_environment sets these: have monkeypatch restore them afterwards
    for name in (
        "STRATA_HOME",
        "DAGSTER_HOME",
        "DBT_TARGET_PATH",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
    ):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "unset")
            monkeypatch.delenv(name)
    return monkeypatch


def sample_home(home: Path) -> Path:
    (home / "truth").mkdir(parents=True)
    (home / "truth" / "archetypes.parquet").write_bytes(b"")
    return home


def test_only_generated_sample_data_gets_a_built_in_salt(tmp_path, env):
    real = tmp_path / "real"
    settings.export_runtime_environment(real)
    assert "STRATA_PII_SALT" not in os.environ
    with pytest.raises(settings.SettingsError, match="STRATA_PII_SALT is not set"):
        settings.require_pii_salt(real)

    sample = sample_home(tmp_path / "sample")
    settings.export_runtime_environment(sample)
    assert os.environ["STRATA_PII_SALT"] == settings.SAMPLE_PII_SALT
    settings.require_pii_salt(sample)

    # staged sources turn a home into real data, even where sample truth exists
    env.delenv("STRATA_PII_SALT")
    (sample / "landing").mkdir()
    (sample / "landing" / settings.MAPPING_MANIFEST).write_text("{}")
    assert not settings.sample_data_mode(sample)
    with pytest.raises(settings.SettingsError):
        settings.require_pii_salt(sample)
    env.setenv("STRATA_PII_SALT", "a-secret")
    settings.require_pii_salt(sample)


def test_running_mapped_sources_without_a_salt_fails_before_writing(tmp_path, env, capsys):
    home = tmp_path / "home"
    with pytest.raises(SystemExit, match="STRATA_PII_SALT is not set"):
        main(["run", "--home", str(home), "--sources", str(REPO / "sources" / "cdnow.yml")])
    assert not (home / "landing").exists()
    assert not (home / "warehouse.duckdb").exists()


def test_partition_start_is_derived_from_earlier_landed_data(tmp_path, env):
    env.setenv("STRATA_HOME", str(tmp_path))
    assert settings.partition_start() == settings.DEFAULT_PARTITION_START
    (tmp_path / "landing" / "orders" / "date=2024-05-01").mkdir(parents=True)
    assert settings.partition_start() == settings.DEFAULT_PARTITION_START  # later: default
    (tmp_path / "landing" / "users" / "date=1997-01-03").mkdir(parents=True)
    assert settings.partition_start() == "1997-01-03"
    env.setenv("STRATA_PARTITION_START", "2021-02-03")
    assert settings.partition_start() == "2021-02-03"
    env.setenv("STRATA_PARTITION_START", "yesterday")
    with pytest.raises(settings.SettingsError, match="STRATA_PARTITION_START"):
        settings.partition_start()


def test_max_reject_share_is_a_share(env):
    assert settings.max_reject_share() == pytest.approx(0.10)
    env.setenv("STRATA_MAX_REJECT_SHARE", "0.25")
    assert settings.max_reject_share() == pytest.approx(0.25)
    for bad in ("25%", "1.5"):
        env.setenv("STRATA_MAX_REJECT_SHARE", bad)
        with pytest.raises(settings.SettingsError, match="STRATA_MAX_REJECT_SHARE"):
            settings.max_reject_share()


def test_duckdb_gets_a_memory_limit_threads_and_a_spill_folder_from_the_machine(tmp_path, env):
    from dagster_project.lib.core.warehouse import connect

    options = settings.duckdb_settings(tmp_path)
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < int(options["memory_limit"].removesuffix("MiB")) * 2**20 <= machine // 4
    assert options["threads"] == str(len(os.sched_getaffinity(0)))
    assert set(options) == {"memory_limit", "threads"}

    env.setenv("STRATA_DUCKDB_MEMORY_LIMIT", "1.5GB")
    env.setenv("STRATA_DUCKDB_THREADS", "1")
    options = settings.duckdb_settings(tmp_path)
    with connect(tmp_path / "warehouse.duckdb", settings=options) as con:
        limit, threads, spill = con.execute(
            "select current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')"
        ).fetchall()[0]
    assert limit.replace(" ", "") in ("1.5GB", "1.3GiB", "1.4GiB")  # DuckDB shows it its way
    assert threads == 1 and spill == str(tmp_path / "warehouse.duckdb.tmp")  # DuckDB's default

    # dbt's connection reads the same values from the environment strata exports
    settings.export_runtime_environment(tmp_path, sample_data=True)
    assert os.environ["STRATA_DUCKDB_MEMORY_LIMIT"] == "1.5GB"
    assert os.environ["STRATA_DUCKDB_THREADS"] == "1"

    for name, bad in (("STRATA_DUCKDB_MEMORY_LIMIT", "lots"), ("STRATA_DUCKDB_THREADS", "0")):
        env.setenv(name, bad)
        with pytest.raises(settings.SettingsError, match=name):
            settings.duckdb_settings(tmp_path)
        env.delenv(name)


def test_connections_opened_after_a_spill_still_take_the_settings(tmp_path):
    """dbt-duckdb SETs the profile's settings on every cursor of a call. At 1M users the
    catch-up's daily facts spilled, and every model and test after it failed: DuckDB refuses
    to SET temp_directory again once it has been used, even to the same folder."""
    from dagster_project.lib.core.warehouse import connect

    options = {**settings.duckdb_settings(tmp_path), "memory_limit": "64MB", "threads": "1"}
    spill = "create table {} as select i, md5(i::varchar) as h from range(2000000) t(i) order by h"
    with connect(tmp_path / "warehouse.duckdb", settings=options) as first:
        first.execute(spill.format("one"))  # larger than 64MB sorted: it spills
        with connect(tmp_path / "warehouse.duckdb", settings=options) as second:
            second.execute(spill.format("two"))
            assert second.execute("select count(*) from one").fetchall()[0][0] == 2_000_000
