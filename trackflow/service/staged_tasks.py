"""What runs on a worker in the service's ``staged`` mode: one Dask task per stage of a batch,
chained by Dask (so a batch's stages may run on different workers and its graphs travel between
them, as the ensemble of the study and ``trackflow reconstruct --mode staged`` do).

Errors are data, as in :mod:`trackflow.service.tasks`: an event that fails in a stage carries its
:class:`~trackflow.run.records.EventFailure` through the later stages, which skip it; an error
that may pass (:data:`~trackflow.run.executors.TRANSIENT_ERRORS`) fails the task, which Dask
retries. The last task gives the same :class:`~trackflow.service.tasks.ServedBatch` as the fused
task, so the service answers both alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from trackflow.errors import TrackflowError
from trackflow.events import Event
from trackflow.pipeline.graph import HitGraph
from trackflow.run.executors import TRANSIENT_ERRORS
from trackflow.run.records import FINISH_STAGE, LOAD_STAGE, EventFailure
from trackflow.service.tasks import ServedBatch, ServedEvent


@dataclass
class StagedEvent:
    """One event between two stage tasks: its graph, or its failure; ``service_s``: s spent in
    its stages so far (each task's own time, not the hops between them)."""

    event_id: int
    graph: HitGraph | None
    failure: EventFailure | None
    service_s: float


def _run(plugin_name: str, items: list[StagedEvent], stage: str) -> list[StagedEvent]:
    from trackflow.run.plugin import worker_pipeline

    pipeline = worker_pipeline(plugin_name)
    out = []
    for item in items:
        if item.graph is None:
            out.append(item)
            continue
        start = time.perf_counter()
        try:
            graph = pipeline.run_stage(stage, item.graph)
            out.append(StagedEvent(item.event_id, graph, None, item.service_s + time.perf_counter() - start))
        except TRANSIENT_ERRORS:
            raise  # Dask retries the task
        except (TrackflowError, Exception) as error:
            failure = EventFailure.from_exception(item.event_id, stage, error)
            out.append(
                StagedEvent(item.event_id, None, failure, item.service_s + time.perf_counter() - start)
            )
    return out


def prepare_batch(plugin_name: str, events: list[Event]) -> list[StagedEvent]:
    """Dask task: every event's hits as a graph (its features)."""
    from trackflow.run.plugin import worker_pipeline

    pipeline = worker_pipeline(plugin_name)
    out = []
    for event in events:
        start = time.perf_counter()
        try:
            graph: HitGraph | None = pipeline.prepare(event)
            failure = None
        except TRANSIENT_ERRORS:
            raise
        except (TrackflowError, Exception) as error:
            graph, failure = None, EventFailure.from_exception(int(event.event_id), LOAD_STAGE, error)
        out.append(StagedEvent(int(event.event_id), graph, failure, time.perf_counter() - start))
    return out


def stage_batch(plugin_name: str, stage: str, items: list[StagedEvent]) -> list[StagedEvent]:
    """Dask task: one stage on every event of the batch still going."""
    return _run(plugin_name, items, stage)


def finish_batch(plugin_name: str, items: list[StagedEvent]) -> ServedBatch:
    """Dask task: the tracks of every event that went through all stages."""
    from distributed import get_worker

    from trackflow.run.plugin import worker_pipeline

    pipeline = worker_pipeline(plugin_name)
    served = ServedBatch(worker=str(get_worker().address))
    for item in items:
        tracks, failure = None, item.failure
        if item.graph is not None:
            try:
                tracks = pipeline.finish(item.graph)
            except (TrackflowError, Exception) as error:
                failure = EventFailure.from_exception(item.event_id, FINISH_STAGE, error)
        served.events.append(ServedEvent(item.event_id, tracks, failure, item.service_s))
    served.task_s = sum(item.service_s for item in items)
    return served
