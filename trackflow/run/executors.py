"""Three ways to run the pipeline over batches, behind one contract.

Every executor performs the equivalent of ``for batch in batches: acc += process(batch)``: its
``execute(batches)`` yields one :class:`BatchResult` per batch, in the order batches finish.

* :class:`FusedExecutor` — one Dask task per batch runs the whole pipeline on one worker (the
  study's custom backend).
* :class:`StagedExecutor` — one Dask task per stage per batch; the graphs travel from task to task
  through Dask (the study's ensemble of per-stage models).
* :class:`DirectExecutor` — an in-process loop, no Dask (direct inference).

Errors are data. A bad event file (any :class:`~trackflow.errors.TrackflowError`) fails only its
event: the failure (event, stage, file, problem) goes into the batch result at once and is never
retried, because it would fail again. So does any other error that computing on one event's data
raises deterministically (a ``ValueError`` such as "data must be finite", a ``KeyError``, ...):
retrying the same computation on the same data gives the same error, whether the data or the
code is at fault; its traceback is kept in the failure (``report.json``), not shown on the
terminal. Only errors that may pass (:data:`TRANSIENT_ERRORS`: a file system hiccup, memory or
CUDA pressure, a timeout) fail the task so that Dask retries it (``retries``); when the retries
are spent, the event is reported failed and the rest of its batch is resubmitted without it. A
batch that no worker finishes within ``task_timeout`` (e.g. no worker offers the GPU resource it
asks for) is reported failed instead of hanging.

A worker that dies under a task (killed by its nanny past its memory limit, by Slurm's
OUT_OF_MEMORY, or any other way) costs that task one try on another worker: Dask reschedules it
until ``distributed.scheduler.allowed-failures`` workers died (trackflow's clusters: 1, so one
retry on another worker), then fails it as ``KilledWorker``. Which event of the batch did it is
not known, so its events then run one by one; an event that kills its workers alone is reported
failed with its size (hits, file bytes) and the memory restart Dask recorded, and the run goes
on. Without a recorded memory restart (workers lost around the event: a retirement at
``--lifetime`` that could not hand over its work, a node gone) the event first gets one more
task of its own.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from trackflow.cluster.resources import GPU_RESOURCE, gpu_request
from trackflow.errors import ConfigError, TrackflowError
from trackflow.memory import rss_bytes
from trackflow.pipeline.graph import STAGE_NAMES
from trackflow.pipeline.model_files import MODEL_STAGES
from trackflow.run.batching import Batch
from trackflow.run.records import (
    FINISH_STAGE,
    LOAD_STAGE,
    READ_PART,
    BatchResult,
    EventFailure,
    EventRecord,
    TaskRecord,
    empty_tracks,
    traceback_text,
)

if TYPE_CHECKING:
    from distributed import Client, Future

    from trackflow.events.trackml import EventRef
    from trackflow.pipeline import HitGraph, Pipeline

#: the ways to run the pipeline over batches, one executor each (``--mode``)
MODES = ("fused", "staged", "direct")
#: the modes that run on a Dask cluster
DASK_MODES = ("fused", "staged")
DIRECT_WORKER = "direct"
#: errors that may pass on a retry (OSError covers ConnectionError and TimeoutError; torch's
#: CUDA errors, out-of-memory included, are RuntimeErrors); any other error raised on one
#: event's data fails that event at once
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, MemoryError, RuntimeError)


class TransientEventError(RuntimeError):
    """An error that may pass (:data:`TRANSIENT_ERRORS`) while processing one event; Dask
    retries the task that raised it.

    Carries the event, the stage, the original error as text, the event's file and the
    traceback, so the client can report it once the retries are spent.
    """

    def __init__(
        self,
        event_id: int,
        stage: str,
        error: str,
        message: str,
        path: str | None = None,
        traceback_text: str | None = None,
    ) -> None:
        self.event_id, self.stage, self.error, self.message = event_id, stage, error, message
        self.path, self.traceback_text = path, traceback_text
        super().__init__(f"event {event_id}, stage {stage}: {error}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.event_id, self.stage, self.error, self.message, self.path, self.traceback_text),
        )


def _transient(event_id: int, stage: str, error: Exception, path: str | None) -> TransientEventError:
    return TransientEventError(
        event_id, stage, type(error).__name__, " ".join(str(error).split()), path, traceback_text(error)
    )


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


def _quiet_worker_logs() -> None:
    """Install :class:`QuietRetries` on this process's ``distributed.worker`` logger, once."""
    worker_logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, QuietRetries) for f in worker_logger.filters):
        worker_logger.addFilter(QuietRetries())


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not inside a worker
        return DIRECT_WORKER


# --------------------------------------------------------------------------- work inside tasks
def _load_graph(pipeline: Pipeline, ref: EventRef, parts: Sequence[str]) -> HitGraph:
    """Read one event (never truth) and build its hit graph; times it as the ``load`` stage."""
    tic = time.perf_counter()
    event = ref.load(parts)
    read = time.perf_counter()
    graph = pipeline.prepare(event)
    graph.timings[LOAD_STAGE] = time.perf_counter() - tic
    graph.timings[READ_PART] = read - tic
    return graph


def process_batch(
    pipeline: Pipeline, batch: Batch, parts: Sequence[str] = ("hits",), task_name: str = "fused"
) -> BatchResult:
    """Run the whole pipeline on every event of ``batch``, one event after the other.

    Bad event files and deterministic errors become :class:`EventFailure` s; an error of
    :data:`TRANSIENT_ERRORS` raises :class:`TransientEventError` so the task is retried.
    """
    worker = _worker_name()
    task_start = time.time()
    frames, records, failures = [], [], []
    for ref in batch.events:
        start = time.time()
        stage = LOAD_STAGE
        try:
            graph = _load_graph(pipeline, ref, parts)
            for stage in pipeline.stage_names:
                graph = pipeline.run_stage(stage, graph)
            stage = FINISH_STAGE
            tracks = pipeline.finish(graph)
        except TrackflowError as error:
            failures.append(EventFailure.from_exception(ref.event_id, stage, error))
            continue
        except TRANSIENT_ERRORS as error:
            raise _transient(ref.event_id, stage, error, str(ref.hits_path)) from error
        except Exception as error:
            failures.append(EventFailure.from_exception(ref.event_id, stage, error, path=str(ref.hits_path)))
            continue
        frames.append(tracks.to_frame())
        records.append(_record(tracks, graph.timings, worker, start))
    return BatchResult(
        batch=batch,
        tracks=pd.concat(frames, ignore_index=True) if frames else empty_tracks(),
        events=records,
        failures=failures,
        tasks=[TaskRecord(task_name, worker, task_start, time.time())],
    )


def _record(tracks: Any, timings: dict[str, float], worker: str, start: float) -> EventRecord:
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

    _quiet_worker_logs()
    return process_batch(worker_pipeline(plugin_name), batch, parts)


def load_task(plugin_name: str, batch: Batch, parts: Sequence[str]) -> StagedBatch:
    """Dask task (staged mode): read the batch's events and build their hit graphs."""
    from trackflow.run.plugin import worker_pipeline

    _quiet_worker_logs()
    pipeline = worker_pipeline(plugin_name)
    worker, task_start = _worker_name(), time.time()
    graphs, failures, started = [], [], {}
    for ref in batch.events:
        started[ref.event_id] = time.time()
        try:
            graph = _load_graph(pipeline, ref, parts)
        except TrackflowError as error:
            failures.append(EventFailure.from_exception(ref.event_id, LOAD_STAGE, error))
            continue
        except TRANSIENT_ERRORS as error:
            raise _transient(ref.event_id, LOAD_STAGE, error, str(ref.hits_path)) from error
        except Exception as error:
            failures.append(
                EventFailure.from_exception(ref.event_id, LOAD_STAGE, error, path=str(ref.hits_path))
            )
            continue
        graphs.append(graph.to("cpu"))
    task = TaskRecord(LOAD_STAGE, worker, task_start, time.time())
    return StagedBatch(batch, graphs, failures, [task], started)


def stage_task(plugin_name: str, stage: str, state: StagedBatch, last: bool) -> StagedBatch | BatchResult:
    """Dask task (staged mode): one stage on every graph of the batch; the last stage also turns
    the graphs into tracks and returns the :class:`BatchResult`."""
    from trackflow.run.plugin import worker_pipeline

    _quiet_worker_logs()
    pipeline = worker_pipeline(plugin_name)
    worker, task_start = _worker_name(), time.time()
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
        except TrackflowError as error:
            failures.append(EventFailure.from_exception(graph.event_id, step, error))
            continue
        except TRANSIENT_ERRORS as error:
            raise _transient(graph.event_id, step, error, paths.get(graph.event_id)) from error
        except Exception as error:
            path = paths.get(graph.event_id)
            failures.append(EventFailure.from_exception(graph.event_id, step, error, path=path))
            continue
        if last:
            frames.append(tracks.to_frame())
            records.append(_record(tracks, out.timings, worker, state.started[graph.event_id]))
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


# --------------------------------------------------------------------------- merging attempts
def _merge(batch: Batch, parts: Sequence[BatchResult], failures: Sequence[EventFailure]) -> BatchResult:
    """One result for ``batch`` from the results of its (sub-)batches and the failures found
    between them; rows and records in event order."""
    order = {event_id: i for i, event_id in enumerate(batch.event_ids)}
    frames = [p.tracks for p in parts if len(p.tracks)]
    tracks = pd.concat(frames, ignore_index=True) if frames else empty_tracks()
    if len(parts) > 1:
        # sub-batches keep event order inside; a stable sort by position restores the batch order
        position = tracks["event_id"].map(order)
        tracks = tracks.iloc[position.argsort(kind="stable")].reset_index(drop=True)
    all_failures = sorted(
        [*failures, *(f for p in parts for f in p.failures)], key=lambda f: order[f.event_id]
    )
    return BatchResult(
        batch=batch,
        tracks=tracks,
        events=sorted((e for p in parts for e in p.events), key=lambda e: order[e.event_id]),
        failures=all_failures,
        tasks=[t for p in parts for t in p.tasks],
    )


# --------------------------------------------------------------------------- executors
@dataclass
class DirectExecutor:
    """In-process loop over the batches with one pipeline: no Dask, no network, no queue.

    A transient error is retried ``retries`` times in place; then the event is reported failed
    and the rest of its batch goes on.
    """

    pipeline: Pipeline
    retries: int = 2
    parts: tuple[str, ...] = ("hits",)
    name: str = "direct"

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        for batch in batches:
            submitted = time.time()
            parts: list[BatchResult] = []
            failures: list[EventFailure] = []
            remaining, attempts = batch, 0
            while remaining.events:
                attempts += 1
                try:
                    parts.append(process_batch(self.pipeline, remaining, self.parts, task_name=self.name))
                    break
                except TransientEventError as error:
                    if attempts <= self.retries:
                        continue
                    failures.append(_failure_from_transient(error, attempts))
                    remaining, attempts = _without(remaining, error.event_id), 0
            result = _merge(batch, parts, failures)
            result.submitted, result.received = submitted, time.time()
            yield result


def _failure_from_transient(error: TransientEventError, attempts: int) -> EventFailure:
    return EventFailure(
        error.event_id,
        error.stage,
        error.error,
        error.message,
        error.path,
        attempts,
        error.traceback_text or "(no traceback)",
    )


def _without(batch: Batch, event_id: int) -> Batch:
    return replace(batch, events=tuple(ref for ref in batch.events if ref.event_id != event_id))


@dataclass
class _Flight:
    """A batch in flight: the futures of its current attempt (last = the result), what earlier
    attempts already produced, when it was submitted and when it times out (monotonic s)."""

    batch: Batch
    remaining: Batch
    futures: list[Future]
    submitted: float
    deadline: float
    parts: list[BatchResult] = field(default_factory=list)
    failures: list[EventFailure] = field(default_factory=list)
    timeout_reason: str | None = None
    #: events still to run one by one, after the batch killed its workers
    alone: list[EventRef] = field(default_factory=list)
    #: events given a fresh task after killing their workers with no memory restart recorded
    tried_again: set[int] = field(default_factory=set)


@dataclass
class _DaskExecutor:
    """The loop both Dask executors share: bounded batches in flight, results gathered with
    ``as_completed``, a watchdog that fails batches not finished within ``task_timeout`` s."""

    client: Client
    plugin_name: str
    retries: int = 2
    task_timeout: float = 600.0
    max_in_flight: int | None = None
    gpu: bool = False
    parts: tuple[str, ...] = ("hits",)
    name: str = ""
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def submit(self, batch: Batch, attempt: int) -> list[Future]:
        """Submit one (sub-)batch; the last future holds its BatchResult."""
        raise NotImplementedError

    def _key(self, what: str, batch: Batch, attempt: int) -> str:
        return f"trackflow-{what}-b{batch.batch_id:05d}-{self._run}-{attempt}"

    def _in_flight_limit(self) -> int:
        if self.max_in_flight is not None:
            return max(1, int(self.max_in_flight))
        workers = len(self.client.run(lambda: None))  # asks the workers, not a cached count
        return max(2, 2 * workers)

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        from distributed import as_completed

        pending = iter(batches)
        limit = self._in_flight_limit()
        flights: dict[Future, _Flight] = {}
        lock = threading.Lock()
        completed = as_completed(loop=self.client.loop)
        attempt_counter = 0

        def launch(flight: _Flight) -> None:
            nonlocal attempt_counter
            attempt_counter += 1
            flight.futures = self.submit(flight.remaining, attempt_counter)
            flight.deadline = time.monotonic() + self.task_timeout
            with lock:
                flights[flight.futures[-1]] = flight
            completed.add(flight.futures[-1])

        def top_up() -> None:
            while len(flights) < limit:
                batch = next(pending, None)
                if batch is None:
                    return
                launch(_Flight(batch, batch, [], time.time(), 0.0))

        stop = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(flights, lock, stop), name="trackflow-timeouts", daemon=True
        )
        watchdog.start()
        try:
            top_up()
            for future in completed:
                with lock:
                    flight = flights.pop(future)
                retry = self._collect(flight, future)
                if retry:
                    launch(flight)
                else:
                    result = _merge(flight.batch, flight.parts, flight.failures)
                    result.submitted, result.received = flight.submitted, time.time()
                    flight.futures.clear()  # let Dask release the batch's data
                    top_up()
                    yield result
        finally:
            stop.set()
            watchdog.join()
            with lock:
                leftovers = [f for flight in flights.values() for f in flight.futures]
            if leftovers and self.client.status not in ("closing", "closed"):
                self.client.cancel(leftovers)

    def _collect(self, flight: _Flight, future: Future) -> bool:
        """Take a finished attempt into ``flight``; True when (part of) the batch must run again."""
        if future.status == "finished":  # even when the watchdog was about to cancel it
            flight.parts.append(future.result())
            return self._next_alone(flight)
        if flight.timeout_reason is not None:
            flight.failures += [
                EventFailure(e, "task", "TimeoutError", flight.timeout_reason)
                for e in (*flight.remaining.event_ids, *(ref.event_id for ref in flight.alone))
            ]
            return False
        if future.status == "cancelled":  # by someone else: a closing client, a restarted cluster
            error: BaseException = RuntimeError(f"task {future.key} was cancelled")
        else:
            error = future.exception()
        if isinstance(error, TransientEventError):
            # Dask already retried the task; this event fails, the others run again without it
            flight.failures.append(_failure_from_transient(error, self.retries + 1))
            flight.remaining = _without(flight.remaining, error.event_id)
            return bool(flight.remaining.events) or self._next_alone(flight)
        if type(error).__name__ == "KilledWorker":
            if len(flight.remaining.events) > 1:  # which event did it? each runs alone
                flight.alone = [*flight.remaining.events, *flight.alone]
                return self._next_alone(flight)
            ref = flight.remaining.events[0]
            restarts = self._memory_restarts_of(error)
            if not restarts and ref.event_id not in flight.tried_again:
                # no sign of memory: workers lost around it (a retirement at --lifetime that
                # could not hand over, a node gone) may have nothing to do with the event
                flight.tried_again.add(ref.event_id)
                flight.alone.insert(0, ref)
                return self._next_alone(flight)
            flight.failures.append(self._killed_its_workers(ref, error, restarts))
            return self._next_alone(flight)
        # e.g. a cancelled future
        message = " ".join(str(error).split()) or future.status
        flight.failures += [
            EventFailure(e, "task", type(error).__name__, message, attempts=self.retries + 1)
            for e in flight.remaining.event_ids
        ]
        return False

    @staticmethod
    def _next_alone(flight: _Flight) -> bool:
        """Make the next event waiting to run alone the flight's attempt; False when none is left."""
        if not flight.alone:
            return False
        flight.remaining = replace(flight.batch, events=(flight.alone.pop(0),))
        return True

    def _killed_its_workers(
        self, ref: EventRef, error: BaseException, restarts: list[dict[str, Any]]
    ) -> EventFailure:
        """The failure of an event that killed every worker it ran on, alone: its size, and the
        memory restarts Dask's nannies recorded for the last of them (``restarts``), if any."""
        from trackflow.run.batching import count_hits

        tries = int(getattr(error, "allowed_failures", self.retries)) + 1
        last = getattr(getattr(error, "last_worker", None), "address", None)
        path = Path(ref.hits_path)
        try:
            size = f"{path}: {count_hits(ref):,} hits, {path.stat().st_size:,} bytes"
        except OSError:
            size = f"{path}: unreadable"
        if restarts:
            rss = max(int(r.get("rss", 0)) for r in restarts)
            cause = (
                f"out of memory: Dask's nanny restarted the worker at {rss / 2**20:,.0f} MiB RSS, "
                "past 95 % of its memory limit"
            )
        else:
            cause = "no memory restart recorded by Dask (the batch system's OUT_OF_MEMORY kill? a crash?)"
        return EventFailure(
            ref.event_id,
            "task",
            "KilledWorker",
            f"{size}; killed every worker it ran on ({tries} tried, the last {last}): {cause}",
            path=str(ref.hits_path),
            attempts=tries,
        )

    def _memory_restarts_of(self, error: BaseException) -> list[dict[str, Any]]:
        """The ``worker-restart-memory`` events (a nanny's memory kill) of the last worker that
        died under the task that failed with ``error`` (a KilledWorker)."""
        last = getattr(getattr(error, "last_worker", None), "address", None)
        try:
            events = self.client.get_events("worker-restart-memory")
        except Exception:  # the cause is a courtesy; the failure stands without it
            return []
        return [dict(event) for _, event in events if dict(event).get("worker") == last]

    def _watch(self, flights: dict[Future, _Flight], lock: threading.Lock, stop: threading.Event) -> None:
        """Cancel batches past their deadline, saying why (e.g. no worker has the resource)."""
        while not stop.wait(1.0):
            now = time.monotonic()
            with lock:
                late = [f for f in flights.values() if now > f.deadline and f.timeout_reason is None]
            for flight in late:
                states = self._task_states([f.key for f in flight.futures])
                waiting = sorted({s for s in states.values() if s not in ("memory", "released")})
                flight.timeout_reason = (
                    f"batch not finished within task_timeout={self.task_timeout:g} s "
                    f"(task states: {', '.join(waiting) or 'unknown'}"
                    + (
                        f"; no worker offers resources {GPU_RESOURCE}=1"
                        if "no-worker" in waiting and self.gpu
                        else ""
                    )
                    + ")"
                )
                self.client.cancel(flight.futures)

    def _task_states(self, keys: list[str]) -> dict[str, str]:
        def states(dask_scheduler: Any, keys: list[str]) -> dict[str, str]:
            return {k: dask_scheduler.tasks[k].state for k in keys if k in dask_scheduler.tasks}

        try:
            return self.client.run_on_scheduler(states, keys=keys)
        except Exception:  # the reason is a courtesy; the timeout stands without it
            return {}


@dataclass
class FusedExecutor(_DaskExecutor):
    """One task per batch runs the whole pipeline on one worker (asks for a GPU on GPU clusters)."""

    name: str = "fused"

    def submit(self, batch: Batch, attempt: int) -> list[Future]:
        resources = gpu_request() if self.gpu else None
        future = self.client.submit(
            fused_task,
            self.plugin_name,
            batch,
            self.parts,
            key=self._key("fused", batch, attempt),
            retries=self.retries,
            resources=resources,
            pure=False,
        )
        return [future]


@dataclass
class StagedExecutor(_DaskExecutor):
    """One task per stage per batch, chained through Dask; the neural-network stages ask for a
    GPU on GPU clusters, graph building and labelling run on any worker."""

    name: str = "staged"
    stage_names: tuple[str, ...] = STAGE_NAMES

    def submit(self, batch: Batch, attempt: int) -> list[Future]:
        futures = [
            self.client.submit(
                load_task,
                self.plugin_name,
                batch,
                self.parts,
                key=self._key(LOAD_STAGE, batch, attempt),
                retries=self.retries,
                pure=False,
            )
        ]
        for i, stage in enumerate(self.stage_names):
            resources = gpu_request() if self.gpu and stage in MODEL_STAGES else None
            futures.append(
                self.client.submit(
                    stage_task,
                    self.plugin_name,
                    stage,
                    futures[-1],
                    i == len(self.stage_names) - 1,
                    key=self._key(stage.replace("_", "-"), batch, attempt),
                    retries=self.retries,
                    resources=resources,
                    pure=False,
                )
            )
        return futures


class Executor(Protocol):
    """The one contract of the three executors: ``execute(batches)`` yields one
    :class:`~trackflow.run.records.BatchResult` per batch, in the order batches finish (the
    equivalent of ``for batch in batches: acc += process(batch)``), failures inside the results
    as data. ``name`` is the mode it implements."""

    name: str

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]: ...


def check_mode(mode: str, option: str = "--mode") -> str:
    """``mode`` when it is one of :data:`MODES`; else a ConfigError naming ``option``."""
    if mode not in MODES:
        raise ConfigError(f"{option} {mode}: choose one of {', '.join(MODES)}")
    return mode


def make_executor(
    mode: str,
    *,
    pipeline: Pipeline | None = None,
    client: Client | None = None,
    plugin_name: str | None = None,
    retries: int = 2,
    task_timeout: float = 600.0,
    max_in_flight: int | None = None,
    gpu: bool = False,
    parts: tuple[str, ...] = ("hits",),
) -> Executor:
    """The executor of ``mode``: ``direct`` runs ``pipeline`` in this process; ``fused`` and
    ``staged`` run on ``client``'s workers with the pipeline of the registered plugin
    ``plugin_name`` (``gpu``: the neural-network tasks ask for the GPU resource)."""
    check_mode(mode)
    if mode == "direct":
        if pipeline is None:
            raise ValueError("the direct executor needs a pipeline")
        return DirectExecutor(pipeline, retries=retries, parts=parts)
    if client is None or plugin_name is None:
        raise ValueError(f"the {mode} executor needs a client and a registered plugin's name")
    cls = FusedExecutor if mode == "fused" else StagedExecutor
    return cls(
        client,
        plugin_name,
        retries=retries,
        task_timeout=task_timeout,
        max_in_flight=max_in_flight,
        gpu=gpu,
        parts=parts,
    )
