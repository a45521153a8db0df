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

Actor dispatch (``workflow.dispatch: actor``, the default; fused mode): each batch is one call
to the pipeline actor of a worker (:mod:`trackflow.run.actors`: one RPC, ~2 ms, instead of a
task's 9-24 ms through the scheduler on the 2-core VM), the least busy worker first, with the
same guarantees, counted as Dask counts them. A call whose worker dies goes to another worker's
actor until ``allowed-failures`` + 1 workers died running it; then it fails as ``KilledWorker``
and the events run alone as above (an event that kills its workers costs as many of them as a
task would, one more where a call sent again finds no actor and goes as a task, which Dask counts
afresh; the memory restart is looked up the same way). A transient error is retried ``retries``
times on an actor, as Dask retries the task. The batch goes as a task instead where no actor
can serve: no worker has its actor yet (a restarted worker's comes within ~1 s), a call failed
for another reason than the pipeline's (it then goes as a task, which Dask retries), and GPU
clusters (a task asks for the ``GPU`` resource; an actor call would not). The watchdog times
calls out as it times tasks out. ``task`` sends every batch as a task.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackflow import config
from trackflow.cluster.resources import GPU_RESOURCE, gpu_request
from trackflow.errors import ConfigError
from trackflow.pipeline.graph import STAGE_NAMES
from trackflow.pipeline.model_files import MODEL_STAGES
from trackflow.run.actors import (
    ActorPool,
    ActorUnreachable,
    KilledWorker,
    OneCluster,
    WorkerActor,
    allowed_failures,
)
from trackflow.run.attempts import merge_attempts, without_event
from trackflow.run.batching import Batch
from trackflow.run.event_errors import TransientEventError, failure_from_transient
from trackflow.run.records import LOAD_STAGE, BatchResult, EventFailure
from trackflow.run.worker_tasks import fused_task, load_task, process_batch, stage_task

if TYPE_CHECKING:
    from concurrent.futures import Future as CallFuture

    from distributed import Client, Future

    from trackflow.events.trackml import EventRef

__all__ = ["DISPATCHES", "DaskExecutor", "FusedExecutor", "StagedExecutor", "check_dispatch"]

logger = logging.getLogger(__name__)

#: how the fused executor sends a batch to a worker (``workflow.dispatch``): a pipeline actor's
#: call, or a Dask task
DISPATCHES = ("actor", "task")

#: s the executor waits for the pipeline actors when it starts (the plugin has loaded the
#: pipeline already); a worker whose actor is not ready by then gets batches as tasks until it is
ACTOR_START_S = 60.0

#: s to wait for the memory restart of a worker that died under an actor call to reach the
#: scheduler (the client sees the connection drop before the nanny's event is filed)
RESTART_EVENT_WAIT_S = 2.0


def check_dispatch(dispatch: str, option: str = "workflow.dispatch") -> str:
    """``dispatch`` when it is one of :data:`DISPATCHES`; else a ConfigError naming ``option``."""
    if dispatch not in DISPATCHES:
        raise ConfigError(f"{option} {dispatch!r}: choose one of {', '.join(DISPATCHES)}")
    return dispatch


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
    #: actor dispatch: the attempt's call and its actor (None: the attempt is a task)
    call: CallFuture | None = None
    actor: WorkerActor | None = None
    #: the attempt's workers that died under its calls, its calls that raised a transient
    #: error, and whether it goes as a task (a call failed for another reason)
    deaths: list[str] = field(default_factory=list)
    transient_tries: int = 0
    as_task: bool = False

    def new_attempt(self, remaining: Batch) -> None:
        """``remaining`` is the next attempt, counted afresh (as a new task would be)."""
        self.remaining = remaining
        self.deaths, self.transient_tries, self.as_task = [], 0, False


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
    #: actor dispatch: the pipeline actors (None: every batch goes as a task)
    _actors: ActorPool | None = field(default=None, init=False, repr=False)
    _host: OneCluster | None = field(default=None, init=False, repr=False)
    _allowed_failures: int = field(default=1, init=False, repr=False)

    def submit(self, batch: Batch, attempt: int) -> list[Future]:
        """Submit one (sub-)batch; the last future holds its BatchResult."""
        raise NotImplementedError

    def _start_actors(self) -> None:
        """Get the pipeline actors ready, if this executor calls any (actor dispatch)."""

    def _start(self, flight: _Flight, attempt: int) -> Any:
        """Start ``flight``'s attempt: a call to a pipeline actor when one can take it, else its
        task(s). Returns the future whose end ends the attempt."""
        if self._actors is not None and not flight.as_task:
            actor = self._actors.pick(busy_too=True)
            if actor is not None:
                flight.futures, flight.actor = [], actor
                flight.call = self._actors.call(actor, process_batch, flight.remaining, self.parts)
                return flight.call
        flight.call = flight.actor = None
        flight.futures = self.submit(flight.remaining, attempt)
        return flight.futures[-1]

    def close(self) -> None:
        """Release the pipeline actors (they end on their workers); the executor makes new ones
        if it runs again."""
        if self._actors is not None:
            self._actors.close()
            self._actors = None

    def _key(self, what: str, batch: Batch, attempt: int) -> str:
        return f"trackflow-{what}-b{batch.batch_id:05d}-{self._run}-{attempt}"

    def _in_flight_limit(self) -> int:
        if self.max_in_flight is not None:
            return max(1, int(self.max_in_flight))
        workers = len(self.client.run(lambda: None))  # asks the workers, not a cached count
        return max(2, 2 * workers)

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        pending = iter(batches)
        limit = self._in_flight_limit()
        self._start_actors()
        # attempt number -> its flight; an attempt's future puts its number here when it ends
        flights: dict[int, _Flight] = {}
        lock = threading.Lock()
        ended: queue.SimpleQueue[int] = queue.SimpleQueue()
        attempt_counter = 0

        def launch(flight: _Flight) -> None:
            nonlocal attempt_counter
            attempt_counter += 1
            attempt = attempt_counter
            with lock:
                flights[attempt] = flight
            flight.deadline = time.monotonic() + self.task_timeout
            try:
                future = self._start(flight, attempt)
            except BaseException:
                with lock:
                    flights.pop(attempt, None)
                raise
            future.add_done_callback(lambda _f: ended.put(attempt))

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
            while flights:
                try:
                    attempt = ended.get(timeout=1.0)
                except queue.Empty:  # wakes now and then: Ctrl-C is seen here
                    continue
                with lock:
                    flight = flights.pop(attempt)
                retry = self._collect(flight, attempt)
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
                left = list(flights.values())
            leftovers = [f for flight in left for f in flight.futures]
            for flight in left:  # calls still out: not waited for (their workers finish them)
                if flight.call is not None and flight.actor is not None and self._actors is not None:
                    flight.call.cancel()
                    self._actors.done(flight.actor)
            if leftovers and self.client.status not in ("closing", "closed"):
                self.client.cancel(leftovers)

    def _collect(self, flight: _Flight, attempt: int) -> bool:
        """Take a finished attempt into ``flight``; True when (part of) the batch must run again."""
        from distributed import KilledWorker as DaskKilledWorker  # imported when a cluster is used

        if flight.call is not None:
            call, actor = flight.call, flight.actor
            flight.call = flight.actor = None
            if self._actors is not None and actor is not None:
                self._actors.done(actor)
            if not call.cancelled() and call.exception() is None:  # even when about to time out
                flight.parts.append(call.result())
                return self._next_alone(flight)
            error: BaseException | None = None if call.cancelled() else call.exception()
            if error is not None and flight.timeout_reason is None and actor is not None:
                outcome = self._after_failed_call(flight, actor, error, attempt)
                if outcome is None:
                    return True  # the same attempt again: another actor, or a task
                error = outcome
            key = f"actor call {self._key('fused', flight.remaining, attempt)}"
        else:
            future = flight.futures[-1]
            if future.status == "finished":  # even when the watchdog was about to cancel it
                flight.parts.append(future.result())
                return self._next_alone(flight)
            error = None if future.status == "cancelled" else future.exception()
            key = f"task {future.key}"
        if flight.timeout_reason is not None:
            flight.failures += [
                EventFailure(e, "task", "TimeoutError", flight.timeout_reason)
                for e in (*flight.remaining.event_ids, *(ref.event_id for ref in flight.alone))
            ]
            return False
        if error is None:  # cancelled by someone else: a closing client, a restarted cluster
            error = RuntimeError(f"{key} was cancelled")
        if isinstance(error, TransientEventError):
            # Dask already retried the task; this event fails, the others run again without it
            flight.failures.append(failure_from_transient(error, self.retries + 1))
            flight.new_attempt(without_event(flight.remaining, error.event_id))
            return bool(flight.remaining.events) or self._next_alone(flight)
        if isinstance(error, DaskKilledWorker):
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
        message = " ".join(str(error).split()) or type(error).__name__
        flight.failures += [
            EventFailure(e, "task", type(error).__name__, message, attempts=self.retries + 1)
            for e in flight.remaining.event_ids
        ]
        return False

    def _after_failed_call(
        self, flight: _Flight, actor: WorkerActor, error: BaseException, attempt: int
    ) -> BaseException | None:
        """What an actor call that failed with ``error`` means: None when the attempt goes again
        (to another actor, or as a task), else the error the task would have ended with."""
        assert self._actors is not None
        why = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, ActorUnreachable):  # gone before the call: it never ran there
            self._actors.drop(actor)
            logger.warning("%s: its batch goes to another worker", why)
            return None
        if isinstance(error, OSError):  # the connection dropped mid-call: the worker died
            self._actors.drop(actor)
            flight.deaths.append(actor.address)
            if len(flight.deaths) > self._allowed_failures:
                key = self._key("fused", flight.remaining, attempt)
                return KilledWorker(key, actor.address, self._allowed_failures)
            logger.warning("worker %s died running a batch (%s): another worker gets it", actor.address, why)
            return None
        if isinstance(error, TransientEventError):  # retried as Dask retries a task
            flight.transient_tries += 1
            return None if flight.transient_tries <= self.retries else error
        # not the pipeline's error (e.g. the actor gone from its worker): Dask's task way
        logger.warning("actor call on %s failed (%s): its batch goes again as a task", actor.address, why)
        flight.as_task = True
        return None

    @staticmethod
    def _next_alone(flight: _Flight) -> bool:
        """Make the next event waiting to run alone the flight's attempt; False when none is left."""
        if not flight.alone:
            return False
        flight.new_attempt(replace(flight.batch, events=(flight.alone.pop(0),)))
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
        # an actor call's worker: its connection dropped before the nanny's event was filed
        patience = time.monotonic() + (RESTART_EVENT_WAIT_S if isinstance(error, KilledWorker) else 0.0)
        while True:
            try:
                events = self.client.get_events("worker-restart-memory")
            except Exception:  # the cause is a courtesy; the failure stands without it
                return []
            restarts = [dict(event) for _, event in events if dict(event).get("worker") == last]
            if restarts or time.monotonic() >= patience:
                return restarts
            time.sleep(0.2)

    def _watch(self, flights: dict[int, _Flight], lock: threading.Lock, stop: threading.Event) -> None:
        """Cancel batches past their deadline, saying why (e.g. no worker has the resource);
        with actor dispatch, match the actors to the workers (a restarted worker gets one)."""
        while not stop.wait(1.0):
            if self._actors is not None and self._host is not None:
                with contextlib.suppress(Exception):  # a scheduler hiccup: next time
                    self._actors.refresh(self._host, self._host.workers())
            now = time.monotonic()
            with lock:
                late = [f for f in flights.values() if now > f.deadline and f.timeout_reason is None]
            for flight in late:
                call, actor = flight.call, flight.actor
                if call is not None:
                    where = actor.address if actor is not None else "a worker"
                    flight.timeout_reason = (
                        f"batch not finished within task_timeout={self.task_timeout:g} s "
                        f"(an actor call on {where})"
                    )
                    call.cancel()
                    continue
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
    #: ``actor`` (a pipeline actor's call per batch) or ``task`` (module docstring)
    dispatch: str = field(default_factory=config.default("workflow.dispatch"))

    def __post_init__(self) -> None:
        self.dispatch = check_dispatch(str(self.dispatch))

    def _start_actors(self) -> None:
        """Actor dispatch on a CPU cluster: one actor per worker, made once and kept across
        :meth:`execute` calls (until :meth:`close`)."""
        if self.dispatch != "actor" or self.gpu:
            self.close()
            return
        if self._actors is None:
            self._host = OneCluster(self.client)
            self._actors = ActorPool(self.plugin_name, self._run)
            self._allowed_failures = allowed_failures(self._host)
            self._actors.refresh(self._host, self._host.workers(), wait_s=ACTOR_START_S)
        elif self._host is not None:
            self._actors.refresh(self._host, self._host.workers())

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
