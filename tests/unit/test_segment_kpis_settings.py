"""segment_kpis_daily computes user_value_daily's simple LTV per segment: its churn floor (a
dbt var) must stay the value spec's."""

import yaml

from dagster_project.lib.core import settings
from dagster_project.lib.value.spec import load_value_spec


def test_the_kpi_churn_floor_is_the_value_specs() -> None:
    project = yaml.safe_load((settings.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    floor = project["vars"]["simple_ltv_churn_floor"]
    assert floor == load_value_spec().simple_ltv_churn_floor
