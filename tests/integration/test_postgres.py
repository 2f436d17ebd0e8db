"""Past one machine: the dbt project on PostgreSQL, and Dagster's instance on PostgreSQL.

Runs only with `--postgres` (`make test-postgres`, which CI runs after `make test`): a throwaway
Debian PostgreSQL server on 127.0.0.1 (dagster_project/testing/postgres_server.py).

- The dbt sources of the session's pipeline sample (raw.* and the Python-written marts, from the
  DuckDB warehouse `strata run` built) are copied into PostgreSQL; `dbt build --target postgres`
  builds and tests every model unchanged; each model and seed then has the same rows on both
  engines (row counts, key columns, every column). DuckDB's side is the pipeline's own build
  (incremental, a window per call); PostgreSQL's a single full build.
- deploy/dagster-postgres.yaml, as a $DAGSTER_HOME/dagster.yaml, gives an instance whose runs,
  events and pool limits live in PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from strata_processes import REPO

from dagster_project.lib.core import settings
from dagster_project.testing.engine_compare import compare_relation, manifest_relations
from dagster_project.testing.postgres_copy import copy_tables, dbt_source_tables
from dagster_project.testing.postgres_server import PostgresServer, throwaway_postgres

pytestmark = pytest.mark.postgres

DBT = Path(sys.executable).parent / "dbt"
# marts the sample fills on both engines (the custom-segment and playbook ones may be empty)
FILLED_MARTS = (
    "dim_users",
    "fct_orders",
    "fct_user_activity_daily",
    "user_360",
    "segment_summary_daily",
    "segment_migration_daily",
    "user_segment_history",
)


@pytest.fixture(scope="module")
def postgres_server() -> PostgresServer:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_build(pipeline_home: settings.StrataPaths, postgres_server, tmp_path_factory):
    """The pipeline sample's sources copied into PostgreSQL, then `dbt build --target postgres`."""
    import psycopg2

    postgres_server.create_database("strata")
    started = time.perf_counter()
    con = psycopg2.connect(postgres_server.dsn("strata"))
    try:
        copied = copy_tables(
            pipeline_home.warehouse,
            con,
            dbt_source_tables(settings.DBT_PROJECT_DIR / "models" / "staging" / "_staging.yml"),
        )
    finally:
        con.close()
    copy_seconds = time.perf_counter() - started
    scratch = tmp_path_factory.mktemp("dbt-postgres")
    # the partition window a pipeline run leaves in the environment would limit the build
    outside = {
        k: v for k, v in os.environ.items() if k not in ("STRATA_MIN_DATE", "STRATA_MAX_DATE")
    }
    env = {
        **outside,
        "STRATA_PG_HOST": postgres_server.host,
        "STRATA_PG_PORT": str(postgres_server.port),
        "STRATA_PG_USER": postgres_server.user,
        "STRATA_PG_DATABASE": "strata",
        "DBT_TARGET_PATH": str(scratch / "target"),
        "DBT_LOG_PATH": str(scratch / "logs"),
    }
    started = time.perf_counter()
    build = subprocess.run(
        [str(DBT), "build", "--profiles-dir", ".", "--target", "postgres"],
        cwd=settings.DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {
        "copied": copied,
        "copy_seconds": copy_seconds,
        "build": build,
        "build_seconds": time.perf_counter() - started,
        "manifest": scratch / "target" / "manifest.json",
    }


def test_dbt_build_of_every_model_passes_on_postgres(postgres_build):
    build = postgres_build["build"]
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-2000:]
    # every model, seed and data test ran, none skipped or warned
    done = next(line for line in build.stdout.splitlines() if "Done. PASS=" in line)
    assert " WARN=0 ERROR=0 SKIP=0 " in done, done
    assert postgres_build["copied"]["raw.orders"] > 0


def test_every_model_has_the_same_rows_on_postgres_as_on_duckdb(
    pipeline_home: settings.StrataPaths, postgres_server, postgres_build, capsys
):
    import duckdb
    import psycopg2

    assert postgres_build["build"].returncode == 0
    relations = manifest_relations(postgres_build["manifest"])
    names = {relation.qualified for relation in relations}
    assert {"marts.fct_orders", "marts.user_360", "marts.segment_summary_daily"} <= names
    duck = duckdb.connect(str(pipeline_home.warehouse), read_only=True)
    pg = psycopg2.connect(postgres_server.dsn("strata"))
    try:
        comparisons = [compare_relation(duck, pg, relation) for relation in relations]
    finally:
        duck.close()
        pg.close()
    lines = [
        f"\nPostgreSQL: sources copied in {postgres_build['copy_seconds']:.1f} s "
        f"({sum(postgres_build['copied'].values()):,} rows), dbt build in "
        f"{postgres_build['build_seconds']:.1f} s",
        f"{'relation':<32} {'key':<48} {'DuckDB':>7} {'Postgres':>8}  equal",
    ]
    lines += [
        f"{c.relation.qualified:<32} {', '.join(c.relation.key):<48} {c.duckdb_rows:>7} "
        f"{c.postgres_rows:>8}  {c.equal}"
        for c in comparisons
    ]
    with capsys.disabled():  # the figures for the CI log, also when the test passes
        print("\n".join(lines))
    unequal = {c.relation.qualified: c.differences for c in comparisons if not c.equal}
    assert not unequal, unequal
    # the marts are not empty on either engine: the comparison compared something
    marts = {c.relation.name: c.postgres_rows for c in comparisons if c.relation.schema == "marts"}
    assert all(marts[name] > 0 for name in FILLED_MARTS), marts


def test_dagster_instance_runs_on_postgres_from_the_shipped_yaml(
    postgres_server, tmp_path, monkeypatch
):
    import dagster as dg
    import psycopg2

    postgres_server.create_database("dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USERNAME": postgres_server.user,
        "DAGSTER_PG_PASSWORD": "",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    @dg.asset(pool="duckdb_warehouse")
    def postgres_probe():
        return dg.MaterializeResult(metadata={"rows": 3})

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        result = dg.materialize([postgres_probe], instance=instance)
        assert result.success
        run_id = result.run_id

    # another instance from the same yaml (another process of the deployment) sees the run
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey("postgres_probe"))
        assert event is not None and event.run_id == run_id
    con = psycopg2.connect(postgres_server.dsn("dagster"))
    try:
        with con.cursor() as cur:
            cur.execute("select count(*) from runs where run_id = %s", (run_id,))
            assert cur.fetchone()[0] == 1
    finally:
        con.close()
