"""A snapshot of what the code location defines, so an accidental rename shows in review."""

import os
import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "definitions_snapshot.txt"


def describe(definitions) -> list[str]:
    graph = definitions.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitioned = "daily" if node.partitions_def else "unpartitioned"
        lines.append(f"asset {key.to_user_string()} group={node.group_name} {partitioned}")
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        lines.append(f"check {check_key.to_user_string()}")
    lines += sorted({f"job {job.name}" for job in definitions.jobs})  # a sensor's job too
    lines += sorted(
        f"schedule {s.name} job={s.job_name} cron={s.cron_schedule}" for s in definitions.schedules
    )
    lines += sorted(
        f"sensor {s.name} job={s.job_name} default={s.default_status.value}"
        for s in definitions.sensors
    )
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        policy = graph.get(key).freshness_policy
        if policy is not None:
            lines.append(f"freshness {key.to_user_string()} {type(policy).__name__}")
    return lines


def test_definitions_match_the_committed_snapshot(definitions, request):
    current = "\n".join(describe(definitions)) + "\n"
    if request.config.getoption("--update-definitions-snapshot"):
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), (
        f"{SNAPSHOT.name} is missing: run pytest --update-definitions-snapshot, review, commit"
    )
    assert current == SNAPSHOT.read_text(), (
        f"definitions changed: if intended, run pytest --update-definitions-snapshot "
        f"and commit {SNAPSHOT.name}"
    )


def test_dg_dev_loads_the_code_location_without_dbt_on_path(dbt_manifest, tmp_path):
    """`dg dev` from an unactivated venv re-parses dbt; it must find the venv's dbt itself."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DAGSTER_IS_DEV_CLI": "1",
        "STRATA_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path),
    }
    code = "from dagster_project.definitions import defs; print(len(defs().jobs))"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 0


def test_every_asset_has_a_group_and_kinds(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in {
            "ingestion",
            "staging",
            "intermediate",
            "marts",
            "features",
            "segmentation",
            "value",
            "evaluation",
            "serving",
        }, key
        assert any(tag.startswith("dagster/kind/") for tag in node.tags), key


def test_every_step_of_the_daily_job_is_timed_under_a_named_stage(definitions):
    from dagster_project.pipeline_run import stage_of

    job = definitions.resolve_job_def("strata_daily")
    steps = [node.name for node in job.graph.nodes]
    assert len(steps) > 10
    assert [s for s in steps if stage_of(s) == "other checks"] == []


def test_dagster_sqlite_storage_syncs_the_disk_at_checkpoints_only(definitions, tmp_path):
    """Loading the definitions sets synchronous=NORMAL on the SQLite connections Dagster's
    event log opens (one wait for the disk per checkpoint, not per event); other settings and
    databases are left as they were."""
    import dagster as dg
    from sqlalchemy import text

    with (
        dg.DagsterInstance.local_temp(str(tmp_path)) as instance,
        instance.event_log_storage.index_connection() as connection,
    ):
        synchronous = connection.execute(text("pragma synchronous")).scalar()
        journal = connection.execute(text("pragma journal_mode")).scalar()
    assert (synchronous, journal) == (1, "wal")  # 1: NORMAL (2 would be SQLite's FULL)
    # Dagster's connection is closed, but one kept open leaves the WAL in place: closing
    # the last connection would have checkpointed it into index.db and removed it
    assert list(tmp_path.rglob("index.db-wal"))


def test_only_the_most_recent_sqlite_files_are_kept_open(tmp_path):
    """A webserver reads one SQLite file per run: it keeps at most a few of them open."""
    import sqlite3

    from dagster_project.defs import sqlite_storage

    files = [tmp_path / f"run-{i}.db" for i in range(sqlite_storage._KEEP_AT_MOST + 3)]
    for file in files:
        sqlite3.connect(file).execute("pragma journal_mode = wal").fetchall()
        sqlite_storage._keep_open(str(file))
    kept = [Path(name) for name in sqlite_storage._KEPT_OPEN]
    assert files[-sqlite_storage._KEEP_AT_MOST :] == kept[-sqlite_storage._KEEP_AT_MOST :]
    assert not set(files[:3]) & set(kept)


def test_strata_instances_record_events_in_upstreams_files_with_one_engine_per_file(
    tmp_path, monkeypatch
):
    """The dagster.yaml `strata` writes names the event log that keeps its SQLAlchemy engines:
    a run's dozens of events create one engine per database file (its own and the index), and
    upstream's storage reads the events from the same files."""
    import dagster as dg
    from dagster._core.storage.event_log import SqliteEventLogStorage

    from dagster_project.cli import DAGSTER_YAML
    from dagster_project.defs import sqlite_storage

    engines = []

    def counting_create_engine(*args, **kwargs):
        engines.append(args[0])
        return create_engine(*args, **kwargs)

    create_engine = sqlite_storage.create_engine
    monkeypatch.setattr(sqlite_storage, "create_engine", counting_create_engine)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    days = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-31")

    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext) -> None:
        context.log.info(f"{len(context.partition_keys)} days")

    @dg.asset_check(asset=daily)
    def daily_check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage) is sqlite_storage.StrataSqliteEventLogStorage
        result = dg.materialize(
            [daily, daily_check],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-01-01",
                "dagster/asset_partition_range_end": "2026-01-30",
            },
        )
        assert result.success
        run_events = instance.all_logs(result.run_id)
    assert len(run_events) > 40  # 30 materializations, the check, the steps
    assert sorted(Path(url.removeprefix("sqlite:///")).name for url in engines) == [
        f"{result.run_id}.db",
        "index.db",
    ]
    upstream = SqliteEventLogStorage(str(home / "history" / "runs"))
    assert len(upstream.get_logs_for_run(result.run_id)) == len(run_events)
    assert upstream.get_materialized_partitions(dg.AssetKey("daily")) == set(
        days.get_partition_keys()[:30]
    )
