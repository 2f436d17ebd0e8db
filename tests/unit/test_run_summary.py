"""What the run summary says about a failed step."""

import sys

from dagster._utils.error import serializable_error_info_from_exc_info

from dagster_project.pipeline_run import root_cause_message


def test_a_failed_step_is_summarised_by_its_own_error_not_dagsters_wrapper():
    try:
        try:
            raise OSError('IO Error: Could not set lock on file "warehouse.duckdb": PID 42')
        except OSError as exc:
            raise RuntimeError('Error occurred while executing op "ingest_users":') from exc
    except RuntimeError:
        error = serializable_error_info_from_exc_info(sys.exc_info())

    assert root_cause_message(error) == (
        'OSError: IO Error: Could not set lock on file "warehouse.duckdb": PID 42'
    )
    assert root_cause_message(None) == "failed"
