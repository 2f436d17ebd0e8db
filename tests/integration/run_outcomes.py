"""The one reader of a Dagster in-process run's outcome: what it materialised and checked."""

import dagster as dg


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    """Asset keys ("marts/fct_orders") the run materialised."""
    return {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """Every check evaluation of the run, by "asset/key:check_name"."""
    return {
        f"{e.event_specific_data.asset_key.to_user_string()}:{e.event_specific_data.check_name}": (
            e.event_specific_data
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {k: e for k, e in check_evaluations(result).items() if not e.passed}
