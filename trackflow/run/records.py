"""What a run produces, as data: one record per event, task, failure and batch.

Executors make them, outputs write them, reports and benches summarise them; none of those needs
the executors to read a record.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trackflow.errors import TrackflowError
from trackflow.events.submission import SUBMISSION_COLUMNS
from trackflow.run.batching import Batch

#: pseudo-stages around the five pipeline stages, as they appear in failures and timings
LOAD_STAGE = "load"  # read the event files and build the hit features
#: the part of ``load`` spent reading the files; travels in a graph's timings until the event's
#: record takes it out (it is inside ``load`` already, so summing timings must not see it twice)
READ_PART = "load:read"
FINISH_STAGE = "finish"  # turn track labels into the submission rows


@dataclass(frozen=True)
class EventFailure:
    """Why one event produced no tracks: the stage it failed in, the error type and a one-line
    message (for a bad file: ``"<path>: <problem>"``), the file when known, the task attempts
    (1 = failed on the first try and was not retried), and for an error that is not a
    :class:`~trackflow.errors.TrackflowError` its traceback (text; in report.json, never on the
    terminal)."""

    event_id: int
    stage: str
    error: str
    message: str
    path: str | None = None
    attempts: int = 1
    traceback: str | None = None

    def line(self) -> str:
        """One line for stderr; an internal error names the event's file and where its traceback is."""
        if self.traceback is None:
            return f"event {self.event_id} failed in {self.stage}: {self.message}"
        where = f"{self.path}: " if self.path else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return (
            f"event {self.event_id} failed in {self.stage}: {where}{self.error}: {self.message} "
            f"(internal error{tries}; traceback in report.json and trackflow.log)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "stage": self.stage,
            "error": self.error,
            "message": self.message,
            "path": self.path,
            "attempts": self.attempts,
            "traceback": self.traceback,
        }

    @classmethod
    def from_exception(
        cls, event_id: int, stage: str, error: BaseException, attempts: int = 1, path: str | None = None
    ) -> EventFailure:
        """A TrackflowError's failure (no traceback: its message says it all); any other error's
        with its traceback and ``path``, the event's file."""
        path = getattr(error, "path", None) or path
        message = " ".join(str(error).split()) or type(error).__name__
        trace = None if isinstance(error, TrackflowError) else traceback_text(error)
        return cls(
            event_id,
            stage,
            type(error).__name__,
            message,
            None if path is None else str(path),
            attempts,
            trace,
        )


def traceback_text(error: BaseException) -> str:
    """The formatted traceback of ``error``, as report.json keeps it."""
    return "".join(traceback.format_exception(error)).rstrip()


@dataclass
class EventRecord:
    """One event that went through: hits, tracks, seconds per stage (``load`` = read files and
    build features), the pipeline's counts, the worker that finished it, its wall-clock start
    and stop (Unix s), the resident memory of that worker process when it finished (bytes), and
    ``read_s``: of ``load``, the seconds reading the event's files (a service sent the hits in
    memory does not spend them)."""

    event_id: int
    hits: int
    tracks: int
    timings: dict[str, float]
    counts: dict[str, int]
    worker: str
    start: float
    stop: float
    rss_bytes: int = 0
    read_s: float = 0.0

    @property
    def compute_s(self) -> float:
        return float(sum(self.timings.values()))


@dataclass
class TaskRecord:
    """One task as it ran: its name (``fused``, ``load``, a stage name or ``direct``), the worker,
    its wall-clock start and stop on that worker (Unix s)."""

    name: str
    worker: str
    start: float
    stop: float


@dataclass
class BatchResult:
    """What one batch produced: the tracks of its good events (submission rows in event order),
    a record per good event, a failure per bad event, the tasks that ran, and the client-side
    times (Unix s) the batch was submitted and its result received."""

    batch: Batch
    tracks: pd.DataFrame
    events: list[EventRecord] = field(default_factory=list)
    failures: list[EventFailure] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    submitted: float = math.nan
    received: float = math.nan

    @property
    def event_ids(self) -> tuple[int, ...]:
        return self.batch.event_ids

    @property
    def latency_s(self) -> float:
        """Submission to result at the client (s): what a requester waits for the batch."""
        return self.received - self.submitted


def empty_tracks() -> pd.DataFrame:
    """A submission frame with no rows (the columns and dtypes of a real one)."""
    return pd.DataFrame({c: pd.Series(dtype="int64") for c in SUBMISSION_COLUMNS})
