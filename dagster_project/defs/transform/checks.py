import dagster as dg

from dagster_project.defs.expectations import expectation_suite_check

# sample_key: the columns that identify a row, for windows too large to validate whole
mart_expectation_checks = [
    expectation_suite_check(
        dg.AssetKey(["marts", "fct_orders"]),
        "marts_fct_orders",
        "order_date",
        sample_key="order_id",
    ),
    expectation_suite_check(
        dg.AssetKey(["marts", "fct_user_activity_daily"]),
        "marts_fct_user_activity_daily",
        "activity_date",
        sample_key="user_id, activity_date",
    ),
    expectation_suite_check(
        dg.AssetKey(["marts", "dim_users"]), "marts_dim_users", None, sample_key="user_id"
    ),
]
