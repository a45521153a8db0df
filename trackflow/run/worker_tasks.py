"""What runs inside the batch tasks, on a worker (or in this process for the direct loop): one
batch of events through the pipeline, whole (``fused``) or one stage at a time (``staged``).

Errors are data: each event's error is classified in one place
(:func:`trackflow.run.event_errors.classify_event_error`): a failure goes into the batch result,
an error that may pass raises :class:`~trackflow.run.event_errors.TransientEventError` so that
Dask retries the task. The client side (:mod:`trackflow.run.executors`,
:mod:`trackflow.run.dask_executors`) submits these tasks and merges their attempts;
the online service (:mod:`trackflow.service.tasks`) runs its own task on the same classification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from trackflow.memory import rss_bytes
from trackflow.run.batching import Batch
from trackflow.run.event_errors import TransientEventError, classify_event_error
from trackflow.run.records import (
    FINISH_STAGE,
    LOAD_STAGE,
    READ_PART,
    BatchResult,
    EventFailure,
    EventRecord,
    TaskRecord,
    empty_tracks,
)

if TYPE_CHECKING:
    from trackflow.events.trackml import EventRef
    from trackflow.pipeline import HitGraph, Pipeline

__all__ = [
    "DIRECT_WORKER",
    "QuietRetries",
    "StagedBatch",
    "event_failure",
    "fused_task",
    "load_task",
    "process_batch",
    "stage_task",
]

#: the worker name of events run in this process (the direct loop)
DIRECT_WORKER = "direct"


def event_failure(event_id: int, stage: str, error: Exception, path: str | None) -> EventFailure:
    """The failure of one event (:func:`~trackflow.run.event_errors.classify_event_error`);
    raises :class:`~trackflow.run.event_errors.TransientEventError` from ``error`` when it may
    pass, failing the task so that Dask retries it."""
    outcome = classify_event_error(event_id, stage, error, path)
    if isinstance(outcome, TransientEventError):
        raise outcome from error
    return outcome


class QuietRetries(logging.Filter):
    """Drops the worker's "Compute Failed" record (a traceback on the terminal) of trackflow tasks
    failing with TransientEventError: the client reports the event, traceback in report.json."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            str(record.msg).startswith("Compute Failed")
            and len(args) > 3
            and str(args[0]).startswith("trackflow-")
            and "TransientEventError" in str(args[3])
        )


def quiet_worker_logs() -> None:
    """Install :class:`QuietRetries` on this process's ``distributed.worker`` logger, once."""
    worker_logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, QuietRetries) for f in worker_logger.filters):
        worker_logger.addFilter(QuietRetries())


def worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not inside a worker
        return DIRECT_WORKER


def load_graph(pipeline: Pipeline, ref: EventRef, parts: Sequence[str]) -> HitGraph:
    """Read one event (never truth) and build its hit graph; times it as the ``load`` stage."""
    tic = time.perf_counter()
    event = ref.load(parts)
    read = time.perf_counter()
    graph = pipeline.prepare(event)
    graph.timings[LOAD_STAGE] = time.perf_counter() - tic
    graph.timings[READ_PART] = read - tic
    return graph


def process_batch(
    pipeline: Pipeline,
    batch: Batch,
    parts: Sequence[str] = ("hits",),
    task_name: str = "fused",
    worker: str | None = None,
) -> BatchResult:
    """Run the whole pipeline on every event of ``batch``, one event after the other.

    Bad event files and deterministic errors become :class:`EventFailure` s; an error of
    :data:`~trackflow.run.event_errors.TRANSIENT_ERRORS` raises :class:`TransientEventError`, so
    the task is retried. ``worker``: the name its records carry (None: this task's worker, or
    ``direct``); a pipeline actor (:mod:`trackflow.run.actors`) passes its worker's address.
    """
    worker = worker_name() if worker is None else worker
    task_start = time.time()
    frames, records, failures = [], [], []
    for ref in batch.events:
        start = time.time()
        stage = LOAD_STAGE
        try:
            graph = load_graph(pipeline, ref, parts)
            for stage in pipeline.stage_names:
                graph = pipeline.run_stage(stage, graph)
            stage = FINISH_STAGE
            tracks = pipeline.finish(graph)
        except Exception as error:
            failures.append(event_failure(ref.event_id, stage, error, str(ref.hits_path)))
            continue
        frames.append(tracks.to_frame())
        records.append(event_record(tracks, graph.timings, worker, start))
    return BatchResult(
        batch=batch,
        tracks=pd.concat(frames, ignore_index=True) if frames else empty_tracks(),
        events=records,
        failures=failures,
        tasks=[TaskRecord(task_name, worker, task_start, time.time())],
    )


def event_record(tracks: Any, timings: dict[str, float], worker: str, start: float) -> EventRecord:
    merged = {**timings, **tracks.timings}
    read_s = float(merged.pop(READ_PART, 0.0))
    counts = {k: int(v) for k, v in tracks.counts.items()}
    return EventRecord(
        event_id=int(tracks.event_id),
        hits=len(tracks.hit_ids),
        tracks=int(counts.get("tracks", tracks.n_tracks)),
        timings={k: float(v) for k, v in merged.items()},
        counts=counts,
        worker=worker,
        start=start,
        stop=time.time(),
        rss_bytes=rss_bytes(),
        read_s=read_s,
    )


@dataclass
class StagedBatch:
    """A batch between two staged tasks: the graphs still going, failures so far, tasks so far,
    and when each event started (Unix s)."""

    batch: Batch
    graphs: list[HitGraph]
    failures: list[EventFailure]
    tasks: list[TaskRecord]
    started: dict[int, float]


def fused_task(plugin_name: str, batch: Batch, parts: Sequence[str]) -> BatchResult:
    """Dask task: the whole pipeline on one batch, with the worker's pipeline."""
    from trackflow.run.plugin import worker_pipeline

    quiet_worker_logs()
    return process_batch(worker_pipeline(plugin_name), batch, parts)


def load_task(plugin_name: str, batch: Batch, parts: Sequence[str]) -> StagedBatch:
    """Dask task (staged mode): read the batch's events and build their hit graphs."""
    from trackflow.run.plugin import worker_pipeline

    quiet_worker_logs()
    pipeline = worker_pipeline(plugin_name)
    worker, task_start = worker_name(), time.time()
    graphs, failures, started = [], [], {}
    for ref in batch.events:
        started[ref.event_id] = time.time()
        try:
            graph = load_graph(pipeline, ref, parts)
        except Exception as error:
            failures.append(event_failure(ref.event_id, LOAD_STAGE, error, str(ref.hits_path)))
            continue
        graphs.append(graph.to("cpu"))
    task = TaskRecord(LOAD_STAGE, worker, task_start, time.time())
    return StagedBatch(batch, graphs, failures, [task], started)


def stage_task(plugin_name: str, stage: str, state: StagedBatch, last: bool) -> StagedBatch | BatchResult:
    """Dask task (staged mode): one stage on every graph of the batch; the last stage also turns
    the graphs into tracks and returns the :class:`BatchResult`."""
    from trackflow.run.plugin import worker_pipeline

    quiet_worker_logs()
    pipeline = worker_pipeline(plugin_name)
    worker, task_start = worker_name(), time.time()
    device = getattr(pipeline, "device", "cpu")
    paths = {ref.event_id: str(ref.hits_path) for ref in state.batch.events}
    graphs, failures = [], list(state.failures)
    frames, records = [], []
    for graph in state.graphs:
        step = stage
        try:
            out = pipeline.run_stage(stage, graph.to(device))
            if last:
                step = FINISH_STAGE
                tracks = pipeline.finish(out)
        except Exception as error:
            failures.append(event_failure(graph.event_id, step, error, paths.get(graph.event_id)))
            continue
        if last:
            frames.append(tracks.to_frame())
            records.append(event_record(tracks, out.timings, worker, state.started[graph.event_id]))
        else:
            # graphs leave the task on the host: the next stage may run on a CPU-only worker
            graphs.append(out.to("cpu"))
    tasks = [*state.tasks, TaskRecord(stage, worker, task_start, time.time())]
    if not last:
        return StagedBatch(state.batch, graphs, failures, tasks, state.started)
    return BatchResult(
        batch=state.batch,
        tracks=pd.concat(frames, ignore_index=True) if frames else empty_tracks(),
        events=records,
        failures=failures,
        tasks=tasks,
    )
