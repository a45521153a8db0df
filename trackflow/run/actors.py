"""Pipeline actors: one long-lived Dask actor per worker, called with one RPC per batch.

A Dask task goes client → scheduler → worker → scheduler → client, and each of those hops is a
batched stream that waits up to its interval (the client's 10 ms, the scheduler's 5 ms, the
worker's 2 ms) before it sends; the result is then fetched from the worker in one more round
trip. On the 2-core VM that is 9-24 ms per batch (``benchmarks/vs_triton.py``'s floor, and
``trackflow bench``'s Dask overhead on small events), against ~2 ms for a Dask actor, called with
one RPC from the client to its worker, the answer coming back on the same connection.

:class:`PipelineActor` lives on one worker (pinned there) and uses the pipeline the
:class:`~trackflow.run.plugin.PipelinePlugin` loaded: nothing is loaded twice. A call names a
module-level function and its arguments; the actor runs ``function(pipeline, *args,
worker=address)`` on a pool of the worker's threads (the batch workflow's
:func:`~trackflow.run.worker_tasks.process_batch`, the service's
:func:`~trackflow.service.tasks.run_batch`). :class:`ActorPool` keeps one actor per worker of
one or more clusters (:class:`ActorHost`: the batch workflow's one client, the service's
clusters) and picks the one that takes the next call.

What a caller does when a call fails (both callers do the same): :class:`ActorUnreachable`
(the worker refused the connection: gone, the call never ran) sends the call to another actor;
any other :class:`OSError` (the connection dropped mid-call: the worker died) counts a death and
sends it to another actor, until ``distributed.scheduler.allowed-failures`` + 1 workers died
running it, then it fails with :class:`KilledWorker`, as a task would; an error raised by the
call itself is the function's (the batch workflow retries a transient one, the service sends it
again as a task). A dead worker's actor is dropped (:meth:`ActorPool.drop`), and
:meth:`ActorPool.refresh` creates one on every worker that joins (a restarted worker included);
until a worker has its actor, calls that find none go as tasks.
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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from distributed import KilledWorker as DaskKilledWorker

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Future as DaskFuture

__all__ = [
    "ACTOR_CONNECT_S",
    "ActorHost",
    "ActorPool",
    "ActorUnreachable",
    "KilledWorker",
    "OneCluster",
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


class ActorUnreachable(OSError):
    """The actor's worker refused the connection: it is gone, and the call never ran there."""


class ActorHost(Protocol):
    """A cluster the pool keeps actors on: its position among the caller's clusters, its client,
    and whether calls may go to it now."""

    @property
    def index(self) -> int: ...

    @property
    def client(self) -> Client: ...

    def usable(self) -> bool: ...


@dataclass
class OneCluster:
    """The batch workflow's cluster as an :class:`ActorHost`: one client, usable while it runs."""

    client: Client
    index: int = 0

    def usable(self) -> bool:
        return self.client.status == "running"

    def workers(self) -> dict[str, int]:
        """address → threads of the workers the scheduler knows now."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {address: int(w.get("nthreads", 1)) for address, w in info.items()}


def allowed_failures(cluster: ActorHost) -> int:
    """``distributed.scheduler.allowed-failures`` as ``cluster``'s scheduler runs with it (it
    may differ from this process's config: trackflow sets it while a cluster starts); this
    process's value when the scheduler does not say."""
    try:
        return int(cluster.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures))
    except Exception:
        import dask.config

        return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


class PipelineActor:
    """Lives on one worker (a Dask actor): runs calls on the pipeline the plugin ``plugin_name``
    loaded there, on as many threads as the worker has (``nthreads``)."""

    def __init__(self, plugin_name: str) -> None:
        from distributed import get_worker

        from trackflow.run.plugin import worker_pipeline

        worker = get_worker()
        self.pipeline = worker_pipeline(plugin_name)
        self.address = str(worker.address)
        # Dask runs a synchronous actor method on one thread per worker; the calls run on a
        # pool of the worker's size instead, so a worker of T threads serves T batches at once
        self._threads = max(1, int(worker.state.nthreads))
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="trackflow-actor")

    async def run_pickled(self, payload: bytes, inline: bool = False) -> bytes:
        """``function(pipeline, *args, worker=address)`` from the pickled ``(function, args)``,
        answering its pickled result (what :meth:`ActorPool.call` sends). Both are unpickled and
        pickled on the pipeline's thread, off the worker's event loop; with ``inline`` on a
        worker of one thread, on the event loop itself (a short call: it holds the worker's loop
        for as long as it runs). An error the function raises is the call's error."""
        if inline and self._threads == 1:
            # on the worker's event loop itself: no hop to the pipeline's thread and back (a
            # self-pipe wake-up and a GIL hand-over each way: ~10 % of a small event's throughput
            # with 2 workers on 2 busy cores, benchmarks/vs_triton.py); the loop answers nothing
            # else meanwhile, so only calls the caller knows to be short come this way
            return _run_pickled(self.pipeline, payload, self.address)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _run_pickled, self.pipeline, payload, self.address)


def _run_pickled(pipeline: Any, payload: bytes, address: str) -> bytes:
    function, args = pickle.loads(payload)
    return pickle.dumps(function(pipeline, *args, worker=address), protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class WorkerActor:
    """The actor on one worker of ``cluster``: its key, the worker's threads (``slots``), the
    calls in flight and when each was sent (``time.monotonic()`` s, oldest first), and the Dask
    future that keeps it alive."""

    cluster: Any  # an ActorHost (the service's ServiceCluster, the batch workflow's OneCluster)
    address: str
    key: str
    slots: int
    future: DaskFuture
    in_flight: int = 0
    sent: collections.deque[float] = field(default_factory=collections.deque)


class ActorPool:
    """One pipeline actor per worker on every cluster given to :meth:`refresh`. Thread-safe:
    :meth:`refresh` may run on a watch thread while :meth:`pick` / :meth:`done` run on others.

    ``calls_per_slot``: calls per worker thread :meth:`pick` hands out before it answers None;
    ``auto``: 2 while there is one usable actor (a waiting call has no other worker to go to,
    and the worker no longer idles a round trip between calls) or while the caller holds a deep
    backlog (:meth:`per_slot`), 1 otherwise."""

    def __init__(self, plugin_name: str, run_id: str, calls_per_slot: int | str = 1) -> None:
        self.plugin_name = plugin_name
        self.run_id = run_id
        self.auto = str(calls_per_slot) == "auto"
        self.calls_per_slot = 1 if self.auto else max(1, int(calls_per_slot))
        self._actors: dict[tuple[int, str], WorkerActor] = {}
        self._creating: dict[tuple[int, str], DaskFuture] = {}
        self._lock = threading.Lock()
        self._numbers = 0

    # ------------------------------------------------------------------ lifecycle
    def refresh(self, cluster: ActorHost, workers: dict[str, int], wait_s: float | None = None) -> None:
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
            except Exception:  # a cluster on its way out: the task way answers its calls
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
            # run later): the caller starts with its actors
            for future, address in created:
                if future.done():
                    self._created(future, cluster, address, int(workers[address]))

    def _created(self, future: DaskFuture, cluster: ActorHost, address: str, slots: int) -> None:
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
            logger.warning("no pipeline actor on %s (%s): its calls go as tasks", address, future.status)
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

    def __len__(self) -> int:
        """The actors ready now."""
        with self._lock:
            return len(self._actors)

    @staticmethod
    def _release(future: DaskFuture) -> None:
        # an actor lives as long as its future: releasing it ends the actor on its worker
        with contextlib.suppress(Exception):
            future.release()

    # ------------------------------------------------------------------ calls
    def per_slot(self, held: int = 0) -> int:
        """Calls per worker thread now: ``calls_per_slot``, or with ``auto`` 2 while there is
        one usable actor (one worker) or while the caller holds ``held`` >= 2 events per worker
        thread (running and waiting: a backlog every thread takes from as soon as it frees, so a
        call sent ahead to a busy worker takes no event from a worker that would have started it
        sooner, and the worker no longer idles a round trip between calls), 1 otherwise (an
        event waits on the client for the first worker to free: the lowest tail at moderate
        load)."""
        with self._lock:
            return self._per_slot(held)

    def _per_slot(self, held: int) -> int:
        """(Under the lock.)"""
        if not self.auto:
            return self.calls_per_slot
        usable = [a for a in self._actors.values() if a.cluster.usable()]
        deep = bool(usable) and held >= 2 * sum(a.slots for a in usable)
        return 2 if len(usable) == 1 or deep else 1

    def pick(self, busy_too: bool = False, held: int = 0) -> WorkerActor | None:
        """The actor that takes the next call: one with a free thread (the most free) if any.
        Else, with more than 1 call per slot (:meth:`per_slot` of ``held``), the call waits on a
        busy worker, the one whose oldest call was sent first (of calls alike, the first to
        finish), so that its trip overlaps the running call. None when every actor is full
        (with ``busy_too``: only when there is no actor)."""
        with self._lock:
            usable = [a for a in self._actors.values() if a.cluster.usable()]
            free = [a for a in usable if a.in_flight < a.slots]
            per_slot = self._per_slot(held)
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

    def call(
        self, actor: WorkerActor, function: Callable[..., Any], *args: Any, inline: bool = False
    ) -> Future:
        """``function(pipeline, *args, worker=address)`` on ``actor``'s worker with one RPC, on
        its client's event loop (``function``: module level, picklable by reference); a
        :class:`concurrent.futures.Future` of its result (an OSError when the worker is gone,
        the call's own error otherwise). ``inline``: a short call, run on the worker's event
        loop when the worker has one thread (:meth:`PipelineActor.run_pickled`)."""
        client = actor.cluster.client
        loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop
        # pickled here, on the caller's thread, as one bytes argument (the result comes back the
        # same way): Dask's serialisation of the same objects (its dispatch per object, a frame
        # per column, its headers) cost twice plain pickle's time, ~0.4 ms of a small event's trip
        payload = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        if _running_loop() is not loop:
            return asyncio.run_coroutine_threadsafe(_call(client, actor, payload, inline), loop)
        # called on that loop (trackflow serve's front end there): the call starts now, not
        # after a wake-up of the loop through its self-pipe (run_coroutine_threadsafe's way)
        future: Future = Future()
        task = loop.create_task(_call(client, actor, payload, inline))
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


async def _call(client: Any, actor: WorkerActor, payload: bytes, inline: bool = False) -> Any:
    # what distributed.Actor does, without its retry: when the worker is unreachable the Actor
    # waits for the actor's task to run again, which never happens for an actor pinned to a
    # worker that died; here the caller sends the call elsewhere instead. The connection is
    # asked for with a short timeout: a worker that died since the last refresh refuses it, and
    # Dask's connect would retry for distributed.comm.timeouts.connect (30 s) before saying so
    from distributed.core import send_recv

    pool = client.rpc
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
            kwargs={"inline": True} if inline else {},
            serializers=pool.serializers,
            deserializers=pool.deserializers,
        )
    finally:
        pool.reuse(actor.address, comm)
    if answer["status"] == "OK":
        return pickle.loads(answer["result"])
    raise answer["exception"]
