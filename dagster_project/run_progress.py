"""The one line `strata run` keeps up to date on a terminal while a Dagster run executes.

It reads the run's events from the instance (the same events the UI shows) on a background
thread and rewrites one line: steps finished of the job's total, the stage that is running, its
latest progress message (ingestion says how many days it has done) and the time so far. On
anything that is not a terminal (CI logs, a pipe, a test's captured output) it writes nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from dagster_project.defs.common import PROGRESS_PREFIX
from dagster_project.pipeline_run import stage_of


@dataclass
class ProgressState:
    """What the line shows, folded from the run's event records."""

    label: str
    total_steps: int
    started_at: float = field(default_factory=time.monotonic)
    finished: set[str] = field(default_factory=set)
    running: list[str] = field(default_factory=list)
    detail: dict[str, str] = field(default_factory=dict)

    def apply(self, entry: Any) -> None:
        """Fold one event log entry (a Dagster event or a step's log message) into the state."""
        step = getattr(entry, "step_key", None)
        event = getattr(entry, "dagster_event", None)
        if event is None:
            message = getattr(entry, "user_message", "") or ""
            if step and message.startswith(PROGRESS_PREFIX):
                self.detail[step] = message[len(PROGRESS_PREFIX) :]
            return
        kind, step = event.event_type_value, event.step_key or step
        if step is None:
            return
        if kind == "STEP_START" and step not in self.running:
            self.running.append(step)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self.finished.add(step)
            if step in self.running:
                self.running.remove(step)

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started_at
        done = min(len(self.finished), self.total_steps)
        text = f"{self.label}: {done}/{self.total_steps} steps"
        if self.running:
            step = self.running[-1]
            text += f", {stage_of(step)}"
            if step in self.detail:
                text += f" ({self.detail[step]})"
        return f"{text}, {elapsed:.0f} s"


class RunProgress:
    """Context manager: while open, keep the progress line of one run on ``stream`` if it is a
    terminal. ``instance`` is the Dagster instance the run writes its events to."""

    def __init__(
        self,
        instance: Any,
        run_id: str,
        state: ProgressState,
        stream: TextIO,
        interval: float = 0.5,
    ) -> None:
        self.instance = instance
        self.run_id = run_id
        self.state = state
        self.stream = stream
        self.interval = interval
        self._cursor: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    @property
    def enabled(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="strata-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._poll()
        self._show(self.state.line())
        self.stream.write("\n")
        self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:  # the run has not written its first event yet, or storage is busy
                continue
            self._show(self.state.line())

    def _poll(self) -> None:
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self._cursor, limit=500)
            for record in page.records:
                self.state.apply(record.event_log_entry)
            self._cursor = page.cursor
            if not page.has_more:
                return

    def _show(self, text: str) -> None:
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + padding)
        self.stream.flush()
