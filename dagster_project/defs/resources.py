import dagster as dg
from dagster_dbt import DbtCliResource

from dagster_project.defs.common import WarehouseResource
from dagster_project.defs.transform.project import dbt_executable, strata_dbt_project


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(),
            "dbt": DbtCliResource(
                project_dir=strata_dbt_project(), dbt_executable=dbt_executable()
            ),
        }
    )
