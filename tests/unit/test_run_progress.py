"""The progress line of `strata run`: folded from the run's events, shown only on a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from dagster_project.defs.common import PROGRESS_PREFIX
from dagster_project.run_progress import ProgressState, RunProgress


def event(kind: str, step: str) -> SimpleNamespace:
    dagster_event = SimpleNamespace(event_type_value=kind, step_key=step)
    return SimpleNamespace(step_key=step, dagster_event=dagster_event, user_message="")


def message(step: str, text: str) -> SimpleNamespace:
    return SimpleNamespace(step_key=step, dagster_event=None, user_message=text)


def test_the_line_counts_steps_and_names_the_running_stage_and_its_progress() -> None:
    state = ProgressState("snapshot 2024-03-31", total_steps=4, started_at=100.0)
    assert state.line(now=100.0) == "snapshot 2024-03-31: 0/4 steps, 0 s"
    state.apply(event("STEP_START", "ingest_orders"))
    state.apply(message("ingest_orders", f"{PROGRESS_PREFIX}orders 3 of 118 days"))
    state.apply(message("ingest_orders", "an ordinary log line"))  # not progress
    assert state.line(now=112.4) == (
        "snapshot 2024-03-31: 0/4 steps, ingestion (orders 3 of 118 days), 12 s"
    )
    state.apply(event("STEP_SUCCESS", "ingest_orders"))
    state.apply(event("STEP_START", "dbt_unpartitioned"))
    assert (
        state.line(now=130.0) == "snapshot 2024-03-31: 1/4 steps, dbt: staging + dimensions, 30 s"
    )
    state.apply(event("STEP_FAILURE", "dbt_unpartitioned"))
    state.apply(event("STEP_SKIPPED", "features__user_features"))
    assert state.line(now=131.0) == "snapshot 2024-03-31: 3/4 steps, 31 s"


class FakeInstance:
    """get_records_for_run over a fixed list of entries, in pages of two."""

    def __init__(self, entries: list[SimpleNamespace]) -> None:
        self.entries = entries

    def get_records_for_run(self, run_id: str, cursor: str | None = None, limit: int = 0):
        start = int(cursor or 0)
        page = self.entries[start : start + 2]
        records = [SimpleNamespace(event_log_entry=e) for e in page]
        end = start + len(page)
        return SimpleNamespace(records=records, cursor=str(end), has_more=end < len(self.entries))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_line_and_a_log_gets_nothing() -> None:
    entries = [
        event("STEP_START", "ingest_users"),
        event("STEP_SUCCESS", "ingest_users"),
        event("STEP_START", "ingest_orders"),
        event("STEP_SUCCESS", "ingest_orders"),
        event("STEP_START", "serving__publish"),
    ]
    terminal = Terminal()
    with RunProgress(FakeInstance(entries), "run", ProgressState("catch-up", 3), terminal, 0.01):
        pass
    shown = terminal.getvalue()
    assert shown.startswith("\r") and shown.endswith("\n")
    assert "catch-up: 2/3 steps, publish" in shown.splitlines()[-1]

    log = io.StringIO()  # a file, a pipe, CI: not a terminal
    with RunProgress(FakeInstance(entries), "run", ProgressState("catch-up", 3), log, 0.01):
        pass
    assert log.getvalue() == ""
