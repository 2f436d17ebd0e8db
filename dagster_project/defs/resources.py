import dagster as dg

from dagster_project.defs.common import WarehouseResource
from dagster_project.defs.transform.project import strata_dbt_resource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(),
            "dbt": strata_dbt_resource(),
        }
    )
