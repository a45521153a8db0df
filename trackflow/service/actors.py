"""Actor dispatch (``service.dispatch: actor``): one pipeline actor per worker, called directly.

A Dask task goes client → scheduler → worker → scheduler → client, and each of those hops is a
batched stream that waits up to its interval (the client's 10 ms, the scheduler's 5 ms, the
worker's 2 ms) before it sends; the tracks are then fetched from the worker in one more round
trip. One request at a time that is 12-16 ms of a trivial task's 16 ms on the 2-core VM
(``benchmarks/vs_triton.py``'s floor), against 0.3 ms of work. A Dask actor is called with one
RPC from the client to its worker, the answer coming back on the same connection: ~2 ms.

So the service creates one :class:`PipelineActor` on every worker (pinned there; it uses the
pipeline the :class:`~trackflow.run.plugin.PipelinePlugin` loaded, nothing is loaded twice) and
sends each batch to a worker with a free thread (:meth:`ActorPool.pick`): an event never waits
behind a busy worker while another is idle. With ``calls_per_slot`` 2, once every thread is busy
one more call per thread may wait on a worker, the one whose running call is oldest, so that its
trip overlaps that call; past that, events wait on the client. ``auto`` (the default) is 2 while
the service has one worker and 1 with several: an event waiting on a lone worker loses nothing
(no other worker could take it sooner) and the worker no longer idles for the round trip between
two events; with several, an event waiting on one worker can lose the race to another that frees
first, so there events wait on the client.

Dask's guarantees stay, counted as Dask counts them. A call whose worker dies (the connection
drops) goes to another worker's actor, until ``distributed.scheduler.allowed-failures`` + 1
workers have died running it: then it fails with :class:`KilledWorker`, as a task would (an
event that kills its workers costs no more workers here than as a task). A call that raises (an
error that may pass) is sent again as an ordinary task, which Dask retries (``retries``). A dead
worker's actor is dropped, and the service creates one on every worker that joins (a restarted
worker included); until a worker has its actor, batches that find no free actor go as tasks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import pickle
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from distributed import KilledWorker as DaskKilledWorker

from trackflow.events import Event
from trackflow.service.clusters import ServiceCluster
from trackflow.service.tasks import ServedBatch, run_batch

if TYPE_CHECKING:
    from distributed import Future as DaskFuture

__all__ = [
    "ActorPool",
    "ActorUnreachable",
    "KilledWorker",
    "PipelineActor",
    "WorkerActor",
    "allowed_failures",
]

logger = logging.getLogger(__name__)

#: s to wait for a connection to an actor's worker (a refused one: the worker is gone)
ACTOR_CONNECT_S = 5.0


class KilledWorker(DaskKilledWorker):
    """Dask's KilledWorker, for a batch whose actor calls killed ``allowed_failures`` + 1
    workers (``last_worker``: the address of the last one)."""

    def __init__(self, batch: str, last_worker: str, allowed_failures: int) -> None:
        # Dask's str() reads only the last worker's address
        super().__init__(batch, SimpleNamespace(address=last_worker), allowed_failures)  # type: ignore[arg-type]


def allowed_failures(cluster: ServiceCluster) -> int:
    """``distributed.scheduler.allowed-failures`` as ``cluster``'s scheduler runs with it (it
    may differ from this process's config: trackflow sets it while a cluster starts); this
    process's value when the scheduler does not say."""
    try:
        return int(cluster.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures))
    except Exception:
        import dask.config

        return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


class ActorUnreachable(OSError):
    """The actor's worker refused the connection: it is gone, and the batch never ran there."""


class PipelineActor:
    """Lives on one worker (a Dask actor): runs batches through the pipeline the plugin
    ``plugin_name`` loaded there, on as many threads as the worker has (``nthreads``)."""

    def __init__(self, plugin_name: str) -> None:
        from distributed import get_worker

        from trackflow.run.plugin import worker_pipeline

        worker = get_worker()
        self.pipeline = worker_pipeline(plugin_name)
        self.address = str(worker.address)
        # Dask runs a synchronous actor method on one thread per worker; the batches run on a
        # pool of the worker's size instead, so a worker of T threads serves T events at once
        threads = max(1, int(worker.state.nthreads))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="trackflow-actor")

    async def run(self, events: list[Event]) -> ServedBatch:
        """Every event of ``events`` through the pipeline (:func:`~trackflow.service.tasks.run_batch`);
        a transient error is raised (the service then sends the batch as a task, which Dask retries)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run_batch, self.pipeline, events, self.address)

    async def run_pickled(self, payload: bytes) -> bytes:
        """:meth:`run` on pickled events, answering the pickled ServedBatch (what the service
        calls, :meth:`ActorPool.call`). Both are unpickled and pickled on the pipeline's thread,
        off the worker's event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _run_pickled, self.pipeline, payload, self.address)


def _run_pickled(pipeline: Any, payload: bytes, address: str) -> bytes:
    events: list[Event] = pickle.loads(payload)
    return pickle.dumps(run_batch(pipeline, events, address), protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class WorkerActor:
    """The actor on one worker of ``cluster``: its key, the worker's threads (``slots``), the
    calls in flight and when each was sent (``time.monotonic()`` s, oldest first), and the Dask
    future that keeps it alive."""

    cluster: ServiceCluster
    address: str
    key: str
    slots: int
    future: DaskFuture
    in_flight: int = 0
    sent: collections.deque[float] = field(default_factory=collections.deque)


class ActorPool:
    """The service's actors, one per worker on every cluster (module docstring). Thread-safe:
    :meth:`refresh` runs on the service's watch thread, :meth:`pick` / :meth:`done` on the
    batcher's and the clients' threads."""

    def __init__(self, plugin_name: str, run_id: str, calls_per_slot: int | str = 1) -> None:
        self.plugin_name = plugin_name
        self.run_id = run_id
        #: ``auto``: :meth:`per_slot` follows the number of workers (module docstring)
        self.auto = str(calls_per_slot) == "auto"
        self.calls_per_slot = 1 if self.auto else max(1, int(calls_per_slot))
        self._actors: dict[tuple[int, str], WorkerActor] = {}
        self._creating: dict[tuple[int, str], DaskFuture] = {}
        self._lock = threading.Lock()
        self._numbers = 0

    # ------------------------------------------------------------------ lifecycle
    def refresh(self, cluster: ServiceCluster, workers: dict[str, int], wait_s: float | None = None) -> None:
        """Match ``cluster``'s actors to its ``workers`` (address → threads, as the scheduler
        reports them): drop those of workers gone, create one on each worker without. With
        ``wait_s``, wait up to that many s for the new actors (at start); otherwise they join
        when ready."""
        with self._lock:
            gone = [k for k in self._actors if k[0] == cluster.index and k[1] not in workers]
            dropped = [self._actors.pop(k).future for k in gone]
            # an actor pinned to a worker that left never starts: forget it too
            stuck = [k for k in self._creating if k[0] == cluster.index and k[1] not in workers]
            dropped += [self._creating.pop(k) for k in stuck]
            new = [
                a
                for a in workers
                if (cluster.index, a) not in self._actors and (cluster.index, a) not in self._creating
            ]
        for future in dropped:
            self._release(future)
        created: list[tuple[DaskFuture, str]] = []
        for address in new:
            with self._lock:
                self._numbers += 1
                key = f"trackflow-actor-{self.run_id}-{self._numbers:04d}"
            try:
                future = cluster.client.submit(
                    PipelineActor,
                    self.plugin_name,
                    key=key,
                    actor=True,
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                )
            except Exception:  # a cluster on its way out: the task way answers its batches
                logger.warning("could not create a pipeline actor on %s", address, exc_info=True)
                continue
            with self._lock:
                self._creating[(cluster.index, address)] = future
            future.add_done_callback(
                lambda f, c=cluster, a=address, n=int(workers[address]): self._created(f, c, a, n)
            )
            created.append((future, address))
        if wait_s and created:
            from distributed import wait

            with contextlib.suppress(Exception):
                wait([f for f, _ in created], timeout=wait_s)
            # registered here too, not only by the done callback (a thread of Dask's that may
            # run later): the service starts with its actors
            for future, address in created:
                if future.done():
                    self._created(future, cluster, address, int(workers[address]))

    def _created(self, future: DaskFuture, cluster: ServiceCluster, address: str, slots: int) -> None:
        """Register the actor ``future`` made on ``address`` (once: called by its done callback
        and, at start, by :meth:`refresh`)."""
        where = (cluster.index, address)
        with self._lock:
            if self._creating.get(where) is not future:
                return  # registered already, or its worker left meanwhile
            del self._creating[where]
            if future.status == "finished":
                self._actors[where] = WorkerActor(cluster, address, str(future.key), slots, future)
        if future.status != "finished":
            logger.warning("no pipeline actor on %s (%s): its batches go as tasks", address, future.status)
            return
        logger.debug("pipeline actor ready on %s", address)

    def drop(self, actor: WorkerActor) -> None:
        """Forget ``actor`` (its worker died, or its call failed); the next refresh creates
        another if the worker is still there."""
        with self._lock:
            if self._actors.get((actor.cluster.index, actor.address)) is actor:
                del self._actors[(actor.cluster.index, actor.address)]
            else:
                return
        self._release(actor.future)

    def close(self) -> None:
        with self._lock:
            actors = list(self._actors.values())
            creating = list(self._creating.values())
            self._actors.clear()
            self._creating.clear()
        for future in [a.future for a in actors] + creating:
            self._release(future)

    @staticmethod
    def _release(future: DaskFuture) -> None:
        # an actor lives as long as its future: releasing it ends the actor on its worker
        with contextlib.suppress(Exception):
            future.release()

    # ------------------------------------------------------------------ calls
    def per_slot(self) -> int:
        """Calls per worker thread now: ``calls_per_slot``, or with ``auto`` 2 while there is
        one usable actor (one worker) and 1 otherwise."""
        with self._lock:
            return self._per_slot()

    def _per_slot(self) -> int:
        """(Under the lock.)"""
        if not self.auto:
            return self.calls_per_slot
        return 2 if sum(1 for a in self._actors.values() if a.cluster.usable()) == 1 else 1

    def pick(self, busy_too: bool = False) -> WorkerActor | None:
        """The actor that takes the next call: one with a free thread (the most free) if any.
        Else, with more than 1 call per slot (:meth:`per_slot`), the call waits on a busy worker,
        the one whose oldest call was sent first (of events alike, the first to finish: the
        worker a queue on the client would have given it to), so that its trip overlaps the
        running call. None when every actor is full (with ``busy_too``: only when there is no
        actor)."""
        with self._lock:
            usable = [a for a in self._actors.values() if a.cluster.usable()]
            free = [a for a in usable if a.in_flight < a.slots]
            per_slot = self._per_slot()
            if free:
                actor = max(free, key=lambda a: (a.slots - a.in_flight, -a.cluster.index))
            else:
                room = [a for a in usable if busy_too or a.in_flight < a.slots * per_slot]
                if not room:
                    return None
                actor = min(room, key=lambda a: (a.in_flight / a.slots, a.sent[0] if a.sent else 0.0))
            actor.in_flight += 1
            actor.sent.append(time.monotonic())
            return actor

    def done(self, actor: WorkerActor) -> None:
        """``actor``'s call has ended (its oldest, as a worker runs its calls in order)."""
        with self._lock:
            actor.in_flight -= 1
            if actor.sent:
                actor.sent.popleft()

    def call(self, actor: WorkerActor, events: list[Event]) -> Future:
        """``actor.run(events)`` with one RPC to its worker, on its client's event loop; a
        :class:`concurrent.futures.Future` of the ServedBatch (an OSError when the worker is
        gone, the call's own error otherwise)."""
        client = actor.cluster.client
        loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop  # type: ignore[union-attr]
        if _running_loop() is not loop:
            return asyncio.run_coroutine_threadsafe(_call(client, actor, events), loop)
        # called on that loop (trackflow serve's front end there): the call starts now, not
        # after a wake-up of the loop through its self-pipe (run_coroutine_threadsafe's way)
        future: Future = Future()
        task = loop.create_task(_call(client, actor, events))
        task.add_done_callback(functools.partial(_settle, future))
        return future


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop this thread runs, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle(future: Future, task: asyncio.Future) -> None:
    """``task``'s outcome into ``future`` (what run_coroutine_threadsafe's chaining does)."""
    if task.cancelled():
        future.cancel()
    if not future.set_running_or_notify_cancel():
        return  # cancelled
    error = task.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())


async def _call(client: Any, actor: WorkerActor, events: list[Event]) -> ServedBatch:
    # what distributed.Actor does, without its retry: when the worker is unreachable the Actor
    # waits for the actor's task to run again, which never happens for an actor pinned to a
    # worker that died; here the caller sends the batch elsewhere instead. The connection is
    # asked for with a short timeout: a worker that died since the last refresh refuses it, and
    # Dask's connect would retry for distributed.comm.timeouts.connect (30 s) before saying so
    from distributed.core import send_recv

    #
    # The events go pickled, as one bytes argument, and the ServedBatch comes back the same way:
    # Dask's serialisation of the same objects (its dispatch per object, a frame per column, its
    # headers) cost twice plain pickle's time, ~0.4 ms of a small event's round trip
    pool = client.rpc
    payload = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        comm = await pool.connect(actor.address, timeout=ACTOR_CONNECT_S)
    except OSError as error:
        raise ActorUnreachable(f"no connection to {actor.address}: {error}") from error
    try:
        answer = await send_recv(
            comm=comm,
            op="actor_execute",
            function="run_pickled",
            actor=actor.key,
            args=[payload],
            kwargs={},
            serializers=pool.serializers,
            deserializers=pool.deserializers,
        )
    finally:
        pool.reuse(actor.address, comm)
    if answer["status"] == "OK":
        served: ServedBatch = pickle.loads(answer["result"])
        return served
    raise answer["exception"]
