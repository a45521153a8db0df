"""The two Dask executors (client side): :class:`FusedExecutor` (one task per batch) and
:class:`StagedExecutor` (one task per stage per batch), sharing one loop (:class:`DaskExecutor`).

The loop keeps a bounded number of batches in flight, gathers results with ``as_completed``, and
runs a watchdog thread that fails a batch no worker finishes within ``task_timeout`` (e.g. no
worker offers the GPU resource it asks for) instead of hanging.

A task that failed after Dask's retries with a
:class:`~trackflow.run.event_errors.TransientEventError` fails that event; the rest of its batch
is submitted again without it. A worker that dies under a task (killed by its nanny past its
memory limit, by Slurm's OUT_OF_MEMORY, or any other way) costs that task one try on another
worker: Dask reschedules it until ``distributed.scheduler.allowed-failures`` workers died
(trackflow's clusters: 1, so one retry on another worker), then fails it as ``KilledWorker``.
Which event of the batch did it is not known, so its events then run one by one; an event that
kills its workers alone is reported failed with its size (hits, file bytes) and the memory
restart Dask recorded, and the run goes on. Without a recorded memory restart (workers lost
around the event: a retirement at ``--lifetime`` that could not hand over its work, a node gone)
the event first gets one more task of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackflow import config
from trackflow.cluster.resources import GPU_RESOURCE, gpu_request
from trackflow.pipeline.graph import STAGE_NAMES
from trackflow.pipeline.model_files import MODEL_STAGES
from trackflow.run.attempts import merge_attempts, without_event
from trackflow.run.batching import Batch
from trackflow.run.event_errors import TransientEventError, failure_from_transient
from trackflow.run.records import LOAD_STAGE, BatchResult, EventFailure
from trackflow.run.worker_tasks import fused_task, load_task, stage_task

if TYPE_CHECKING:
    from distributed import Client, Future

    from trackflow.events.trackml import EventRef

__all__ = ["DaskExecutor", "FusedExecutor", "StagedExecutor"]


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
class DaskExecutor:
    """The loop both Dask executors share: bounded batches in flight, results gathered with
    ``as_completed``, a watchdog that fails batches not finished within ``task_timeout`` s."""

    client: Client
    plugin_name: str
    retries: int = field(default_factory=config.default("workflow.retries"))
    task_timeout: float = field(default_factory=config.default("workflow.task_timeout"))  # s
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
                    result = merge_attempts(flight.batch, flight.parts, flight.failures)
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
        from distributed import KilledWorker  # distributed is imported when a cluster is used

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
            flight.failures.append(failure_from_transient(error, self.retries + 1))
            flight.remaining = without_event(flight.remaining, error.event_id)
            return bool(flight.remaining.events) or self._next_alone(flight)
        if isinstance(error, KilledWorker):
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
        message = " ".join(str(error).split()) or str(future.status)
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
                states = self._task_states([str(f.key) for f in flight.futures])
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
class FusedExecutor(DaskExecutor):
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
class StagedExecutor(DaskExecutor):
    """One task per stage per batch, chained through Dask; the neural-network stages ask for a
    GPU on GPU clusters, graph building and labelling run on any worker."""

    name: str = "staged"
    stage_names: tuple[str, ...] = STAGE_NAMES

    def submit(self, batch: Batch, attempt: int) -> list[Future]:
        futures: list[Future] = [
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
