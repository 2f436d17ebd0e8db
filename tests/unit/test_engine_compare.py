"""The pure parts of `make test-postgres`: type mapping, source list, row and manifest reading.
(The copy and the comparison on real servers: tests/integration/test_postgres.py.)"""

import json
from datetime import date
from decimal import Decimal

import pytest

from dagster_project.lib.core import settings
from dagster_project.testing.engine_compare import Relation, compare_rows, manifest_relations
from dagster_project.testing.postgres_copy import CopyError, dbt_source_tables, postgres_type


def test_duckdb_types_map_to_postgres_and_an_unknown_one_is_named():
    assert postgres_type("VARCHAR", "raw.t.c") == "text"
    assert postgres_type("DECIMAL(18,2)", "raw.t.c") == "numeric(18,2)"
    assert postgres_type("TINYINT", "raw.t.c") == "smallint"
    assert postgres_type("TIMESTAMP WITH TIME ZONE", "raw.t.c") == "timestamptz"
    with pytest.raises(CopyError, match=r"raw\.t\.tags: DuckDB type VARCHAR\[\]"):
        postgres_type("VARCHAR[]", "raw.t.tags")


def test_the_sources_are_the_raw_tables_and_the_python_written_marts():
    tables = dbt_source_tables(settings.DBT_PROJECT_DIR / "models" / "staging" / "_staging.yml")
    assert ("raw", "orders") in tables and ("raw", "events") in tables
    assert ("marts", "user_segments_daily") in tables and ("marts", "user_value_daily") in tables


def test_rows_compare_as_bags_with_float_tolerance_and_name_the_column():
    columns = ["user_id", "day", "amount", "share"]
    duck = [("u2", date(2024, 1, 2), Decimal("3.10"), 0.1 + 0.2), ("u1", None, None, 1.0)]
    pg = [("u1", None, None, 1.0), ("u2", date(2024, 1, 2), 3.1, 0.3)]
    assert compare_rows(columns, duck, pg) == []
    pg[1] = ("u2", date(2024, 1, 2), 3.2, 0.3)
    assert compare_rows(columns, duck, pg) == ["amount: 3.1 (DuckDB) != 3.2 (PostgreSQL)"]
    assert compare_rows(columns, duck, pg[:1]) == ["2 rows in DuckDB, 1 in PostgreSQL"]


def test_manifest_relations_carry_the_key_of_their_unfiltered_unique_tests(tmp_path):
    def test(name, attached, kwargs, where=None):
        return {
            "resource_type": "test",
            "attached_node": attached,
            "test_metadata": {"name": name, "kwargs": kwargs},
            "config": {"where": where},
        }

    nodes = {
        "model.s.h": {"resource_type": "model", "schema": "marts", "alias": "h"},
        "seed.s.p": {"resource_type": "seed", "schema": "staging", "alias": "p"},
        "model.s.d": {"resource_type": "model", "schema": "marts", "alias": "d"},
        "t1": test("unique_combination_of_columns", "model.s.h", {}, where="is_current"),
        "t2": test(
            "unique_combination_of_columns", "model.s.h", {"combination_of_columns": ["u", "v"]}
        ),
        "t3": test("unique", "model.s.d", {"column_name": "user_id"}),
        "t4": test("not_null", "model.s.d", {"column_name": "x"}),
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": nodes}))
    assert manifest_relations(manifest) == [
        Relation("marts", "d", ("user_id",)),
        Relation("marts", "h", ("u", "v")),
        Relation("staging", "p", ()),
    ]
