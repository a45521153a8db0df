"""What runs on a worker: one batch of events through the worker's warm pipeline.

Errors are data, classified as the batch tasks classify them
(:func:`trackflow.run.event_errors.classify_event_error`): bad hits (a TrackflowError, or any
error the computation raises deterministically on one event) fail that event only; an error that
may pass fails the task, which Dask retries. The service reports a task that failed after its
retries for every event of the batch, with the original error (it is not split per event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trackflow.events import Event
from trackflow.pipeline.graph import EventTracks
from trackflow.run.event_errors import TransientEventError, classify_event_error
from trackflow.run.records import FINISH_STAGE, LOAD_STAGE, EventFailure

if TYPE_CHECKING:
    from trackflow.pipeline import Pipeline


@dataclass
class ServedEvent:
    """One event's answer: its tracks or its failure, and its in-task time ``service_s`` (s)."""

    event_id: int
    tracks: EventTracks | None
    failure: EventFailure | None
    service_s: float


@dataclass
class ServedBatch:
    """A batch's answers, the task's run time ``task_s`` (s, worker clock) and the worker."""

    events: list[ServedEvent] = field(default_factory=list)
    task_s: float = 0.0
    worker: str = ""


def served_failure(event_id: int, stage: str, error: Exception) -> EventFailure:
    """The failure of an event the service was sent (:func:`~trackflow.run.event_errors.classify_event_error`;
    the events came in memory: no file to name). Call it in an ``except`` block: an error that
    may pass is raised again, itself, so that Dask retries the task."""
    outcome = classify_event_error(event_id, stage, error)
    if isinstance(outcome, TransientEventError):
        raise error
    return outcome


def serve_batch(plugin_name: str, events: list[Event]) -> ServedBatch:
    """Dask task: every event of ``events`` through the pipeline the plugin loaded (one after
    the other, so each event's service time is its own)."""
    from distributed import get_worker

    from trackflow.run.plugin import worker_pipeline

    return run_batch(worker_pipeline(plugin_name), events, str(get_worker().address))


def run_batch(pipeline: Pipeline, events: list[Event], worker: str) -> ServedBatch:
    """Every event of ``events`` through ``pipeline``, one after the other (the body of
    :func:`serve_batch` and of the pipeline actor's call, :mod:`trackflow.run.actors`)."""
    task_start = time.perf_counter()
    served = ServedBatch(worker=worker)
    for event in events:
        start = time.perf_counter()
        stage = LOAD_STAGE
        try:
            graph = pipeline.prepare(event)
            for stage in pipeline.stage_names:
                graph = pipeline.run_stage(stage, graph)
            stage = FINISH_STAGE
            tracks: EventTracks | None = pipeline.finish(graph)
            failure = None
        except Exception as error:
            tracks, failure = None, served_failure(int(event.event_id), stage, error)
        served.events.append(ServedEvent(int(event.event_id), tracks, failure, time.perf_counter() - start))
    served.task_s = time.perf_counter() - task_start
    return served
