import dagster as dg

from dagster_project.defs.expectations import expectation_suite_check

mart_expectation_checks = [
    expectation_suite_check(
        dg.AssetKey(["marts", "fct_orders"]),
        "marts_fct_orders",
        lambda day: f"select * from marts.fct_orders where order_date = '{day}'",
    ),
    expectation_suite_check(
        dg.AssetKey(["marts", "fct_user_activity_daily"]),
        "marts_fct_user_activity_daily",
        lambda day: f"select * from marts.fct_user_activity_daily where activity_date = '{day}'",
    ),
    expectation_suite_check(
        dg.AssetKey(["marts", "dim_users"]),
        "marts_dim_users",
        lambda day: "select * from marts.dim_users",
        partitioned=False,
    ),
]
