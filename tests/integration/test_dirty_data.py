"""`strata generate --dirty-rate`: at 5 % of the rows the run passes the default guard with
every injected row in quarantine with its kind; too many rejects stop the run before anything
downstream is built."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl
from run_outcomes import failed_checks, materialized

from dagster_project.lib.core import settings
from dagster_project.lib.sample.defects import DEFECTS_FILE
from dagster_project.lib.sample.generator import generate_sample

START, END = date(2024, 5, 1), date(2024, 5, 12)
TABLES = ("orders", "order_items", "users", "events")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": START.isoformat(),
    "dagster/asset_partition_range_end": END.isoformat(),
}


def test_injected_rows_are_quarantined_by_kind_and_too_many_stop_the_run(
    tmp_path, definitions, monkeypatch
):
    home = tmp_path / "home"
    paths = settings.strata_paths(home)
    generate_sample(home, users=120, days=12, seed=5, end_date=END, dirty_rate=0.3)
    monkeypatch.setenv("STRATA_HOME", str(paths.home))
    monkeypatch.delenv("STRATA_MAX_REJECT_SHARE", raising=False)
    job = definitions.resolve_job_def("strata_ingest")
    instance = dg.DagsterInstance.ephemeral()

    # 30 % of the rows bad: far above the 10 % default
    stopped = job.execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)
    assert not stopped.success
    failed = failed_checks(stopped)
    assert "raw/users:raw_partitions_passes_expectations" in failed
    failures = failed["raw/users:raw_partitions_passes_expectations"]
    assert any(f["column"] == "reject_share_lower" for f in failures.metadata["failures"].value)
    assert "marts/fct_orders" not in materialized(stopped)

    # 5 % of each table's rows: below the default guard, also on days of a dozen users
    generate_sample(home, users=120, days=12, seed=5, end_date=END, dirty_rate=0.05)
    accepted = job.execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)
    assert accepted.success
    assert "marts/fct_orders" in materialized(accepted)

    injected = pl.read_parquet(paths.truth / DEFECTS_FILE)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = pl.concat(
            con.sql(
                f"select '{table}' as table, _kind as kind, _source_file as file, "
                f"_source_line as line from quarantine.{table}"
            ).pl()
            for table in TABLES
        ).with_columns(pl.col("file").str.replace(f"^{paths.home}/", ""))
        unbalanced = con.execute(
            "select count(*) from audit.ingested_partitions "
            "where rows_landed <> rows_accepted + rows_quarantined"
        ).fetchall()[0][0]
        quality = con.execute(
            "select relation, sum(rows_quarantined), bool_and(suites_passed) "
            "from marts.data_quality_runs where run_id = ? and relation like 'raw.%' "
            "and relation <> 'raw.campaign_exposures' "  # the sample has no campaigns here
            "group by 1 order by 1",
            [accepted.run_id],
        ).fetchall()

    key = ["table", "kind", "file", "line"]
    assert injected.height > 100
    assert found.sort(key).equals(injected.select(key).sort(key))
    assert unbalanced == 0
    by_table = dict(injected.group_by("table").len().rows())
    assert quality == [(f"raw.{t}", by_table[t], True) for t in sorted(TABLES)]
