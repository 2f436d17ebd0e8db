"""The whole daily pipeline on generated data, through the real CLI, Dagster, dbt and GX."""

import io
import re
import shutil
import sys
from datetime import date

import duckdb
import polars as pl
import pytest
from pipeline_sample import CAMPAIGNS, DAYS, END, PREVIOUS, SEED, USERS

from dagster_project.cli import main
from dagster_project.lib.core import settings
from dagster_project.lib.features.user_features import USER_AGGREGATES_SQL
from dagster_project.lib.sample.generator import generate_sample
from dagster_project.lib.segmentation.schemes import scheme_names

# Columns that legitimately differ between two runs of the same partition.
LINEAGE = {"run_id", "_run_id", "_ingested_at", "fitted_at"}
BI_TABLES = (
    "marts.dim_users",
    "marts.fct_orders",
    "marts.fct_user_activity_daily",
    "marts.user_segments_daily",
    "marts.user_value_daily",
    "marts.segment_summary_daily",
)


def table_rows(con: duckdb.DuckDBPyConnection, relation: str) -> pl.DataFrame:
    frame = con.sql(f"select * from {relation}").pl()
    frame = frame.drop([c for c in frame.columns if c in LINEAGE])
    return frame.sort(frame.columns)


# `pipeline_home` (tests/integration/conftest.py): 300 users over 45 days ending END, run with
# `strata run --start PREVIOUS --end END`; shared with the crash-safety tests, which copy it.


@pytest.fixture
def warehouse(pipeline_home):
    con = duckdb.connect(str(pipeline_home.warehouse), read_only=True)
    yield con
    con.close()


@pytest.mark.parametrize("day", [PREVIOUS, END])
@pytest.mark.parametrize("relation", ["marts.user_segments_daily", "marts.user_value_daily"])
def test_every_known_user_has_exactly_one_row_per_snapshot(warehouse, relation, day):
    known = warehouse.execute(
        "select count(*) from marts.dim_users where cast(first_seen_at as date) <= ?", [day]
    ).fetchall()[0][0]
    rows, users = warehouse.execute(
        f"select count(*), count(distinct user_id) from {relation} where snapshot_date = ?", [day]
    ).fetchall()[0]
    missing = warehouse.execute(
        f"select count(*) from marts.dim_users as u where cast(u.first_seen_at as date) <= ? "
        f"and not exists (select 1 from {relation} as s where s.user_id = u.user_id "
        f"and s.snapshot_date = ?)",
        [day, day],
    ).fetchall()[0][0]
    assert known > 200
    assert rows == users == known
    assert missing == 0


def test_value_is_probabilistic_and_segments_are_labelled(warehouse):
    low, high, nulls_for_customers = warehouse.execute(
        "select min(p_alive), max(p_alive), "
        "count(*) filter (where is_customer and p_alive is null) from marts.user_value_daily"
    ).fetchall()[0]
    assert 0.0 <= low <= high <= 1.0
    assert nulls_for_customers == 0
    unlabelled = warehouse.execute(
        "select count(*) from marts.user_segments_daily where value_tier_label is null "
        "or lifecycle_stage is null or cluster_id is null or model_version is null"
    ).fetchall()[0][0]
    assert unlabelled == 0


def test_segment_summary_shares_add_up_per_scheme(warehouse):
    sums = warehouse.execute(
        "select snapshot_date, scheme, sum(share), sum(users) from marts.segment_summary_daily "
        "group by snapshot_date, scheme"
    ).fetchall()
    assert {row[1] for row in sums} == set(scheme_names())
    for _, scheme, share, _ in sums:
        assert share == pytest.approx(1.0), scheme


def test_the_summary_carries_every_catalog_scheme_under_the_catalog_names(warehouse):
    """A BI join of summary to catalog or playbook keeps every row (cluster keys are per model
    version: they join segment_cluster_profiles)."""
    catalog_schemes = {
        r[0]
        for r in warehouse.execute("select distinct scheme from marts.segment_catalog").fetchall()
    }
    summary_schemes = {
        r[0]
        for r in warehouse.execute(
            "select distinct scheme from marts.segment_summary_daily"
        ).fetchall()
    }
    assert catalog_schemes == summary_schemes - {"cluster"}
    assert {"lifecycle_stage", "ops_tier"} <= summary_schemes
    unmatched = warehouse.execute(
        "select summary.scheme, summary.segment from marts.segment_summary_daily as summary "
        "left join marts.segment_catalog as catalog "
        "on summary.scheme = catalog.scheme and summary.segment = catalog.key "
        "left join (select distinct cast(cluster_id as varchar) as cluster_id "
        "from marts.segment_cluster_profiles) as clusters "
        "on summary.scheme = 'cluster' and summary.segment = clusters.cluster_id "
        "where catalog.key is null and clusters.cluster_id is null"
    ).fetchall()
    assert unmatched == []
    playbook_schemes = {
        r[0]
        for r in warehouse.execute("select distinct scheme from marts.segment_playbook").fetchall()
    }
    assert playbook_schemes <= summary_schemes


def test_every_model_version_has_its_quality_rows_for_bi(pipeline_home):
    serving = duckdb.connect(str(pipeline_home.serving_db), read_only=True)
    try:
        versions = serving.execute(
            "select model_name, model_version from marts.model_versions order by all"
        ).fetchall()
        quality = serving.sql(
            "select model_name, model_version, metric, value, threshold, comparison, passed "
            "from marts.model_quality"
        ).pl()
    finally:
        serving.close()
    assert {"segment_clusters", "customer_value"} <= {name for name, _ in versions}
    assert set(quality.select("model_name", "model_version").unique().rows()) == set(versions)
    metrics = set(quality["metric"])
    assert {"silhouette", "bootstrap_mean_ari", "surrogate_fidelity"} <= metrics
    assert {"customers", "history_days", "forecast_mae", "churn_auc"} <= metrics
    judged = quality.filter(pl.col("threshold").is_not_null())
    # the verdict is the comparison of value and bar (a missing value fails)
    expected = [
        v is not None and (v >= t if c == ">=" else v <= t)
        for v, t, c in judged.select("value", "threshold", "comparison").rows()
    ]
    assert judged["passed"].to_list() == expected
    assert quality.filter(pl.col("threshold").is_null())["passed"].is_null().all()


def test_the_readme_bi_recipes_run_as_written_through_duckdb_engine(pipeline_home):
    """The README's Superset settings (SQLAlchemy URI, engine parameters) and every SQL block
    of its BI section, through duckdb-engine on the published file."""
    import json

    import sqlalchemy

    readme = (settings.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Querying the results (BI)")[1].split("\n## ")[0]
    uri = re.search(r"SQLAlchemy URI `(duckdb:///[^`]+)`", section).group(1)
    parameters = json.loads(re.search(r"engine parameters `(\{.*?\})`", section).group(1))
    assert parameters["connect_args"]["read_only"] is True
    uri = uri.replace("/abs/path/serving/strata.duckdb", str(pipeline_home.serving_db))
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) >= 6
    engine = sqlalchemy.create_engine(uri, **parameters)
    with engine.connect() as bi:
        results = [bi.execute(sqlalchemy.text(query)).fetchall() for query in queries]
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="read-only"):
            bi.execute(sqlalchemy.text("delete from marts.segment_playbook"))
    engine.dispose()
    segments, moves, calls, _quality, kpi_trend, offers = results
    assert kpi_trend and offers
    schemes = {row[0] for row in segments}
    assert set(scheme_names()) <= schemes
    assert moves and calls  # two snapshots: some users moved; some customers are at risk


def test_the_ui_shows_charts_and_plots_numbers_on_the_model_and_segment_assets(pipeline_home):
    import dagster as dg

    instance = dg.DagsterInstance.get()  # the session's DAGSTER_HOME, where pipeline_home ran

    def metadata(*path: str) -> dict:
        event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
        return event.asset_materialization.metadata

    charts = [
        (("models", "segment_clusters"), "k_selection_chart"),
        (("marts", "user_segments_daily"), "rf_heatmap"),
        (("serving", "strata"), "segment_sizes_chart"),
        (("serving", "strata"), "migration_chart"),
        (("serving", "strata"), "value_by_segment_chart"),
        (("serving", "strata"), "quarantine_chart"),
    ]
    for key, name in charts:
        chart = metadata(*key)[name]
        assert isinstance(chart, dg.MarkdownMetadataValue), (key, name)
        assert "](data:image/png;base64,iVBORw0KGgo" in chart.value, name  # an embedded PNG
    segments = metadata("marts", "user_segments_daily")
    sizes = {k: v.value for k, v in segments.items() if k.startswith("users/cluster_")}
    assert sizes and sum(sizes.values()) == USERS
    model = metadata("models", "customer_value")
    assert isinstance(model["quality/customers"], dg.FloatMetadataValue | dg.IntMetadataValue)
    instance.dispose()


def test_serving_file_header_is_readable_by_duckdb_1_1(pipeline_home):
    """DuckDB 1.0 and 1.1 read storage version 64 and refuse later ones: the header says 64."""
    header = pipeline_home.serving_db.read_bytes()[:20]
    assert header[8:12] == b"DUCK"
    assert int.from_bytes(header[12:20], "little") == 64


def test_serving_file_and_parquet_exports_hold_the_bi_tables(pipeline_home):
    serving = duckdb.connect(str(pipeline_home.serving_db), read_only=True)
    tables = {
        f"{s}.{t}"
        for s, t in serving.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    serving.close()
    assert set(BI_TABLES) <= tables
    exported = pipeline_home.serving_parquet / "user_segments_daily"
    assert (exported / f"snapshot_date={END}" / "data.parquet").exists()
    assert (exported / f"snapshot_date={PREVIOUS}" / "data.parquet").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rerunning_a_day_changes_nothing(pipeline_copy, monkeypatch):
    warehouse = pipeline_copy / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = {relation: table_rows(con, relation) for relation in BI_TABLES}
        every_table = rows_as_of(con, None)

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["run", "--home", str(pipeline_copy), "--date", END.isoformat()]) == 0
    # on a terminal the run kept a progress line up to date, ending with every step done
    updates = terminal.getvalue().split("\r")
    assert len(updates) > 2, updates
    assert re.match(rf"snapshot {END}: (\d+)/\1 steps, \d+ s", updates[-1]), updates[-1]
    # and its Dagster run carries the time per stage
    import dagster as dg

    newest = dg.DagsterInstance.get().get_runs(limit=1)[0]  # DAGSTER_HOME: the copy's
    assert float(newest.tags["strata/seconds.dbt_staging_dimensions"]) > 0
    assert "strata/seconds.gx_validations" in newest.tags

    # the rerun built user_segment_history on its one-new-snapshot path: the equality below and
    # the full rebuild of the next test hold that path to the window functions' result
    compiled = max(
        (pipeline_copy / "dbt_target").glob("**/compiled/**/user_segment_history.sql"),
        key=lambda path: path.stat().st_mtime,
    )
    assert "full outer join carried" in compiled.read_text()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for relation in BI_TABLES:
            assert table_rows(con, relation).equals(before[relation]), relation
        # and every other published or feature table, run lineage aside
        after = rows_as_of(con, None)
    assert set(after) == set(every_table)
    for relation, frame in every_table.items():
        assert after[relation].equals(frame), relation


def test_rebuilding_the_incremental_marts_from_scratch_gives_the_same_rows(
    pipeline_copy, monkeypatch
):
    """pipeline_home built its staging tables, facts and snapshot marts incrementally (a
    catch-up, then one window per day); one full refresh over every day must give exactly the
    same tables (test_incremental_staging.py covers staging with backfills and re-landings)."""
    from dagster_project.defs.transform.project import strata_dbt_resource

    incremental = (
        "staging.stg_raw__events",
        "staging.stg_raw__orders",
        "marts.fct_orders",
        "marts.fct_user_activity_daily",
        "marts.segment_summary_daily",
        "marts.user_segment_history",
        "marts.segment_migration_daily",
        "marts.segment_kpis_daily",
        "marts.segment_category_affinity",
        "intermediate.int_user_categories_bought",
    )
    warehouse = pipeline_copy / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = {relation: table_rows(con, relation) for relation in incremental}
    monkeypatch.setenv("STRATA_MIN_DATE", "1900-01-01")
    monkeypatch.setenv("STRATA_MAX_DATE", END.isoformat())
    dbt = strata_dbt_resource()
    models = "stg_raw__events stg_raw__orders tag:daily tag:snapshot"
    dbt.cli(["build", "--select", models, "--full-refresh"]).wait()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for relation in incremental:
            after = table_rows(con, relation)
            assert after.height == before[relation].height > 0, relation
            assert after.equals(before[relation]), relation


def test_every_model_gives_the_same_bytes_however_duckdb_splits_the_work(pipeline_home, tmp_path):
    """Reruns must give byte-identical tables, but DuckDB adds a group's doubles in the order
    its threads reach them: at a million users two marts' sums moved in the last bits between
    runs. This sample is too small for DuckDB to split a query across threads. So each model's
    SQL (as the pipeline's last dbt call compiled it) and the features query run here on a
    copy of the warehouse with every user, order and event copied eight times under new ids,
    on four threads with verify_parallelism (every scan split into small morsels run in
    parallel), and every run must give the same rows."""
    models = {path.stem for path in (settings.DBT_PROJECT_DIR / "models").rglob("*.sql")}
    oldest_first = sorted(
        pipeline_home.dbt_target.glob("*/compiled/strata/models/*/*.sql"),
        key=lambda path: path.stat().st_mtime,
    )
    compiled = {path.stem: path for path in oldest_first if path.stem in models}
    # the ones that sum doubles over users, as the two marts in question did
    assert {"user_next_best_categories", "segment_summary_daily", "user_360"} <= set(compiled)

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(pipeline_home.warehouse, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        keyed = con.execute(
            "select schema_name, table_name, list(column_name) from duckdb_columns() "
            "inner join duckdb_tables() using (database_name, schema_name, table_name) "
            "where column_name in ('user_id', 'order_id', 'event_id') group by all"
        ).fetchall()
        for schema, table, keys in keyed:
            renamed = ", ".join(f"{key} || '~' || replica as {key}" for key in keys)
            con.execute(
                f"insert into {schema}.{table} select * exclude (replica) replace ({renamed}) "
                f"from {schema}.{table}, range(1, 8) as replicas(replica)"
            )

    con = duckdb.connect()
    con.execute(f"attach '{warehouse}' as warehouse (read_only)")
    con.execute("use warehouse")
    con.execute("set threads = 4")
    con.execute("pragma verify_parallelism")
    queries = {model: path.read_text() for model, path in compiled.items()}
    # and the features query, which the features asset runs itself
    queries["user_features"] = USER_AGGREGATES_SQL.replace("$as_of", f"date '{END}'")
    differing = {}
    for name, query in sorted(queries.items()):
        digest = f"select count(*), sum(cast(hash(q) as hugeint)) from ({query}) as q"
        digests = {con.execute(digest).fetchall()[0] for _ in range(8)}
        if len(digests) > 1:
            differing[name] = digests
    con.close()
    assert not differing, differing


# ------------------------------------------------------------------ point in time, privacy

# Columns that identify a run, not the data (the backfill uses other run ids).
RUN_LINEAGE = LINEAGE | {"recorded_at"}
PERIOD_COLUMNS = ("snapshot_date", "as_of_date", "order_date", "activity_date")


def rows_as_of(con: duckdb.DuckDBPyConnection, day: date | None) -> dict[str, pl.DataFrame]:
    """Every BI and feature table's rows that belong to `day` or before (by its date column),
    plus dim_users whole (`day` None: every table, whole); model versions and run logs differ
    by design and are left out."""
    tables = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema in ('marts', 'features') and table_type = 'BASE TABLE' "
        "and table_name not in ('model_versions', 'data_quality_runs')"
    ).fetchall()
    found = {}
    for (relation,) in tables:
        columns = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema || '.' || table_name = ?",
                [relation],
            ).fetchall()
        }
        period = next((c for c in PERIOD_COLUMNS if c in columns), None)
        if day is None:
            period = None
        elif period is None and relation != "marts.dim_users":
            continue
        where = ""
        if period in ("snapshot_date", "as_of_date"):
            where = f" where {period} = '{day}'"
        elif period:
            where = f" where {period} <= '{day}'"
        frame = con.sql(f"select * from {relation}{where}").pl()
        frame = frame.drop([c for c in frame.columns if c in RUN_LINEAGE])
        # sums of doubles in SQL may differ in their last bit with the order rows are added
        frame = frame.with_columns(pl.col(pl.Float64).round_sig_figs(10))
        found[relation] = frame.sort(frame.columns)
    return found


@pytest.fixture(scope="module")
def backfilled_home(tmp_path_factory, dbt_manifest):
    """The same sample, built the other way round: END first, then PREVIOUS as a backfill
    (by then the warehouse holds END's data, users and model)."""
    home = tmp_path_factory.mktemp("backfill")
    generate_sample(home, users=USERS, days=DAYS, seed=SEED, end_date=END, campaigns=CAMPAIGNS)
    assert main(["run", "--home", str(home), "--date", END.isoformat()]) == 0
    assert main(["run", "--home", str(home), "--date", PREVIOUS.isoformat()]) == 0
    return settings.strata_paths(home)


def test_backfilling_an_earlier_day_gives_the_rows_of_running_it_first(
    pipeline_home, backfilled_home
):
    with duckdb.connect(str(pipeline_home.warehouse), read_only=True) as con:
        in_order = rows_as_of(con, PREVIOUS)
    with duckdb.connect(str(backfilled_home.warehouse), read_only=True) as con:
        backfilled = rows_as_of(con, PREVIOUS)

    assert set(BI_TABLES) - {"marts.segment_summary_daily"} <= set(in_order)
    assert set(backfilled) == set(in_order)
    for relation, frame in in_order.items():
        # may be empty: a first snapshot has no migration; no user-added map in the shipped spec
        empty_ok = ("marts.segment_migration", "marts.user_custom_segments")
        assert frame.height > 0 or relation.startswith(empty_ok), relation
        assert backfilled[relation].equals(frame), relation


def test_user_360_since_dates_are_right_after_a_backfill(pipeline_home, backfilled_home):
    """previous_<scheme> and <scheme>_since come from the history, which a backfill rebuilds.

    The rule schemes match running the days in order. Cluster ids on the later day may differ
    between the two orders (the later model is matched to whichever version existed when it was
    fitted), so for clusters user_360 must agree with the backfilled home's own history.
    """
    rule_columns = (
        "user_id, previous_lifecycle_stage, lifecycle_stage_since, previous_value_tier, "
        "value_tier_since, previous_rfm_segment, rfm_segment_since, previous_ops_tier, "
        "ops_tier_since"
    )
    frames = []
    for home in (pipeline_home, backfilled_home):
        with duckdb.connect(str(home.warehouse), read_only=True) as con:
            frames.append(con.sql(f"select {rule_columns} from marts.user_360 order by 1").pl())
    in_order, backfilled = frames
    assert in_order.height > 0
    assert in_order["lifecycle_stage_since"].min() == PREVIOUS  # spells open before END
    assert backfilled.equals(in_order)
    with duckdb.connect(str(backfilled_home.warehouse), read_only=True) as con:
        disagree = con.execute(
            "select count(*) from marts.user_360 as u join marts.user_segment_history as h "
            "on u.user_id = h.user_id and h.scheme = 'cluster' and h.is_current "
            "where u.cluster_id_since is distinct from h.valid_from "
            "or cast(u.previous_cluster_id as varchar) is distinct from h.previous_segment"
        ).fetchall()[0][0]
    assert disagree == 0


EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")


def test_no_serving_table_holds_a_raw_email_or_phone(pipeline_home):
    users = pl.concat(
        pl.read_csv(p, infer_schema=False)
        for p in (pipeline_home.landing / "users").glob("date=*/*.csv")
    )
    phones = set(users["phone"].drop_nulls())
    phones |= {re.sub(r"[^0-9+]", "", p) for p in phones}
    emails = set(users["email"].drop_nulls())
    assert len(emails) == users.height and phones

    scanned = 0
    with duckdb.connect(str(pipeline_home.serving_db), read_only=True) as con:
        columns = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            values = [
                r[0]
                for r in con.execute(
                    f'select distinct "{column}" from {schema}.{table} where "{column}" is not null'
                ).fetchall()
            ]
            scanned += len(values)
            for value in values:
                assert not EMAIL.search(value), (table, column, value)
                assert value not in emails, (table, column)
                assert not any(p in value for p in phones), (table, column, value)
    assert len(columns) > 20 and scanned > 1000
    with duckdb.connect(str(pipeline_home.serving_db), read_only=True) as con:
        hashed = con.execute(
            "select count(email_hash), count(phone_hash) from marts.dim_users"
        ).fetchall()
    assert hashed == [(users.height, users.height)]


def test_the_value_backtest_runs_once_a_week(pipeline_home, backfilled_home):
    """A day is backtested unless a backtest of the same spec is stored for the seven days up
    to it: run in order, END (the day after PREVIOUS) keeps PREVIOUS's; backfilled, PREVIOUS
    has nothing stored on or before it and gets its own."""
    dates = "select distinct snapshot_date from marts.value_backtests order by 1"
    with duckdb.connect(str(pipeline_home.warehouse), read_only=True) as con:
        assert [row[0] for row in con.execute(dates).fetchall()] == [PREVIOUS]
    with duckdb.connect(str(backfilled_home.warehouse), read_only=True) as con:
        assert [row[0] for row in con.execute(dates).fetchall()] == [PREVIOUS, END]
