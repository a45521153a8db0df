"""``trackflow.Service``: tracking as a long-lived service on a Dask cluster.

::

    with trackflow.Service.open("local", workers=2) as service:      # or "slurm-cpu", "tls://…",
        future = service.submit(hits)                                # scheduler_file=…
        tracks = future.result()                                     # EventTracks
        answers = [f.result() for f in service.map(events)]

    service = trackflow.Service(client)                              # on a client you already have

The models are loaded once per worker by :class:`~trackflow.run.plugin.PipelinePlugin` when the
service starts (and on workers that join later) and stay warm; a request ships only hits. Events
wait on the client in a bounded queue (:mod:`trackflow.service.batcher`: dynamic batching by
size and time, and the backpressure policy ``shed`` or ``block``); at most ``max_in_flight``
batches run on the cluster at once (default: one per worker thread, so a free worker gets the
next batch and the queue stays where it can be bounded and measured; a batch's slot frees when
its task finishes, before its tracks are fetched).

Every request is answered: its future gives the tracks, or raises :class:`EventFailed` (bad
hits, a task that failed after its retries), :class:`~trackflow.service.batcher.ServiceOverloaded`
(shed: the queue was full) or :class:`~trackflow.service.batcher.ServiceClosed`; each outcome is
counted in :meth:`Service.counts`. A worker lost mid-batch (a cancelled Slurm job) costs nothing
but time: Dask runs its tasks again on the workers left.

How a batch reaches a worker (``service.dispatch``, fused mode): ``actor`` calls the pipeline
actor on a worker directly (:mod:`trackflow.service.actors`: one RPC, ~2 ms a request instead of
the 12-16 ms a task's trip through the scheduler costs), a worker with a free thread first; with
``calls_per_slot`` 2 one more call may wait on the busy worker whose running call is oldest, so
its trip overlaps that call (``auto``, the default: 2 while the service has one worker or holds
two events per worker thread, 1 otherwise); a short batch (``inline_hits``) runs on the event loop
of a one-thread worker, no thread hop. A call whose worker dies goes to another worker's actor
(failing as KilledWorker after as many deaths as a task), one that raises goes again as a Dask task, so
Dask's rescheduling and retries still answer it. ``task`` submits every batch as a Dask task
(``tasks_per_slot`` of them per worker thread).

Several clusters (issue 32: one Dask scheduler drives only so many tasks per second and workers,
``trackflow estimate`` says how many are needed): ``Service([client_a, client_b])`` or
``Service.open(["tls://a:8786", "tls://b:8786"])`` sends each batch to the least-loaded cluster
(:mod:`trackflow.service.clusters`: the smallest share of its worker slots in flight). A cluster
that goes away costs its batches in flight a retry on another cluster, never a lost request;
when no cluster is left, they fail (:class:`EventFailed`, ``no cluster left``).

Each answered event leaves an :class:`EventTiming`: latency from arrival to tracks on the client,
split into queueing (waiting for a slot, and for the other events of its batch), transfer
(dispatch to tracks fetched, minus the task's run time: serialisation, scheduler, network both
ways) and service (its own time in the pipeline).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trackflow.cluster.probes import worker_resources
from trackflow.cluster.resources import gpu_request, offers_gpu
from trackflow.errors import ConfigError
from trackflow.events import Event
from trackflow.events.event import with_derived
from trackflow.events.trackml import EventRef
from trackflow.pipeline.graph import EventTracks
from trackflow.run.plugin import PipelinePlugin
from trackflow.run.records import EventFailure
from trackflow.service.actors import ActorPool, ActorUnreachable, KilledWorker, WorkerActor, allowed_failures
from trackflow.service.batcher import DynamicBatcher, Request, ServiceOverloaded
from trackflow.service.clusters import ServiceCluster, is_cluster_loss, least_loaded
from trackflow.service.service_records import (
    SERVICE_MODES,
    EventFailed,
    EventTiming,
    ServiceConfig,
    ServiceCounts,
)
from trackflow.service.tasks import ServedBatch, run_batch, serve_batch

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Future as DaskFuture

    from trackflow.cluster.handle import ClusterHandle

# the records moved to service_records.py; they stay importable from here
__all__ = [
    "HIT_COLUMNS",
    "SERVICE_MODES",
    "EventFailed",
    "EventTiming",
    "Service",
    "ServiceConfig",
    "ServiceCounts",
]

logger = logging.getLogger(__name__)

#: hits columns a request needs (r, phi and eta are derived when missing)
HIT_COLUMNS = ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id")


def _as_event(hits: pd.DataFrame | Event | EventRef, event_id: int | None, request_id: int) -> Event:
    """The event of a request: an Event as it is (without truth), an EventRef read (hits only),
    or a hits frame checked for its columns (r, phi, eta derived when missing)."""
    if isinstance(hits, EventRef):
        return hits.load(("hits",))
    if isinstance(hits, Event):
        return hits.hits_only()
    if not isinstance(hits, pd.DataFrame):
        got = type(hits).__name__
        raise ConfigError(f"submit: expected a hits DataFrame, an Event or an EventRef, got {got}")
    missing = [c for c in HIT_COLUMNS if c not in hits.columns]
    if missing:
        raise ConfigError(f"submit: the hits frame has no column(s) {', '.join(missing)}")
    if not {"r", "phi", "eta"} <= set(hits.columns):
        hits = with_derived(hits)
    return Event(int(request_id if event_id is None else event_id), hits)


def _hits_bytes(hits: pd.DataFrame) -> int:
    """Bytes of a hits frame's columns: its blocks' arrays' (dask's sizeof walks every column and
    took a tenth of a millisecond per request, the frame's ``dtypes`` Series 16 us), else rows
    times the row's width."""
    blocks = getattr(getattr(hits, "_mgr", None), "blocks", None)
    if blocks is not None:
        with contextlib.suppress(AttributeError, TypeError):
            return int(sum(block.values.nbytes for block in blocks))
    return len(hits) * int(sum(getattr(dtype, "itemsize", 8) for dtype in hits.dtypes))


def _tracks_bytes(tracks: EventTracks | None) -> int:
    if tracks is None:
        return 0
    return int(np.asarray(tracks.hit_ids).nbytes + np.asarray(tracks.track_labels).nbytes)


#: s between two questions to the scheduler about the workers' slots
SLOT_REFRESH_S = 1.0

#: s the service waits at start for the pipeline actors (service.dispatch: actor); a worker
#: whose actor is not ready by then gets batches as tasks until it is
ACTOR_START_S = 60.0


@dataclass
class _Flight:
    """A batch on a cluster: its requests, the cluster (None before it is sent), whether its
    slot in the batcher was freed (once, when a task first finished), the clusters it was
    sent to, and whether it goes as a task (actor dispatch: after its actor's call raised)."""

    batch: list[Request]
    cluster: ServiceCluster | None = None
    slot_freed: bool = False
    tried: list[ServiceCluster] = field(default_factory=list)
    as_task: bool = False
    #: workers that died running it as an actor call (their addresses)
    deaths: list[str] = field(default_factory=list)


class Service:
    """A tracking service on ``client``'s cluster, or on several clusters' clients (module
    docstring). Starts at once: the pipeline plugin is registered (models loaded on every
    worker) before this returns. ``client`` is the first cluster's client."""

    def __init__(self, client: Client | Sequence[Client], config: ServiceConfig | None = None) -> None:
        clients = list(client) if isinstance(client, Sequence) else [client]
        if not clients:
            raise ConfigError("client: need at least one Dask client")
        self.client = clients[0]
        self.config = config or ServiceConfig()
        self.handle: ClusterHandle | None = None
        self.handles: list[ClusterHandle] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._timings: list[EventTiming] = []
        self._done = self._failed = self._resent = 0
        self._dask_futures: dict[str, DaskFuture] = {}
        self._run = uuid.uuid4().hex[:8]
        self._batch_ids = itertools.count()
        self._stop_watch = threading.Event()
        self._watch: threading.Thread | None = None
        settings = None
        if self.config.pipeline_loader is None:
            from trackflow.pipeline import model_files
            from trackflow.pipeline.settings import resolve_settings

            settings = resolve_settings(
                self.config.models_dir, self.config.settings, override_source="argument"
            )
            model_files.verify(model_files.read_manifest(settings.models_dir))
        self.plugin = PipelinePlugin(
            self.config.models_dir,
            str(self.config.device),
            self.config.threads_per_worker,
            self.config.pipeline_loader,
            settings,
        )
        self.clusters: list[ServiceCluster] = []
        for index, each in enumerate(clients):
            # models load now, on every worker (and later on workers that join): kept warm from here
            each.register_plugin(self.plugin)
            gpu = any(offers_gpu(r) for r in worker_resources(each).values())
            self.clusters.append(ServiceCluster(index, each, gpu))
        self.gpu = any(c.gpu for c in self.clusters)
        if self.config.max_in_flight is None:
            for cluster in self.clusters:
                cluster.slots = cluster.worker_slots()
        self.actors: ActorPool | None = None
        # a failed actor call is sent again as a task from here, off the client's event loop
        self._resend_pool: ThreadPoolExecutor | None = None
        self._allowed_failures: dict[int, int] = {}
        if self.config.dispatch == "actor" and self.config.mode == "fused":
            self.actors = ActorPool(self.plugin.name, self._run, self.config.calls_per_slot or 1)
            self._resend_pool = ThreadPoolExecutor(1, thread_name_prefix="trackflow-service-resend")
            for cluster in self.clusters:
                self.actors.refresh(cluster, cluster.workers(), wait_s=ACTOR_START_S)
                # a batch whose actor calls killed this many workers + 1 fails, as a task would
                self._allowed_failures[cluster.index] = allowed_failures(cluster)
        self.batcher = DynamicBatcher(
            self._dispatch,
            self._in_flight_limit,
            max_batch_events=int(self.config.max_batch_events or 1),
            max_delay_s=float(self.config.max_delay_ms or 0.0) / 1e3,
            max_queued=int(self.config.max_queued or 1),
            policy=str(self.config.queue_policy),
            block_timeout_s=self.config.block_timeout_s,
        )
        if self.config.max_in_flight is None or self.actors is not None:
            self._watch = threading.Thread(
                target=self._watch_slots, name="trackflow-service-slots", daemon=True
            )
            self._watch.start()

    # ------------------------------------------------------------------ opening
    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        cluster: str | Sequence[str] = "local",
        workers: int = 1,
        config: ServiceConfig | None = None,
        **cluster_options: Any,
    ) -> Iterator[Service]:
        """Open a cluster with :func:`~trackflow.cluster.open_cluster` (``cluster``, ``workers``
        and its other options: ``scheduler_file=``, ``insecure=``, ``profile_file=``, …), start
        the service on it, and close both at the end. ``service.handle`` is the cluster.
        ``cluster`` may be several specs (scheduler addresses, profiles, ``local``), and the
        setting ``service.more_clusters`` adds more (so ``trackflow serve`` spans several from a
        config file or ``DASK_TRACKFLOW__SERVICE__MORE_CLUSTERS``): each is opened with the same
        options and the service spans them all (``service.handles``, the first is ``handle``)."""
        from trackflow.cluster import open_cluster

        threads = (config.threads_per_worker if config is not None else None) or 1
        cluster_options.setdefault("threads_per_worker", threads)
        specs = [cluster] if isinstance(cluster, str) else list(cluster)
        # ``config`` is the ServiceConfig here: the settings module under another name
        from trackflow import config as settings

        specs += [str(spec) for spec in settings.get("service.more_clusters") or ()]
        if not specs:
            raise ConfigError("cluster: need at least one cluster")
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(open_cluster(spec, workers, **cluster_options)) for spec in specs]
            for handle in handles:
                for problem in handle.start_problems:
                    logger.warning("%s", problem)
            service = cls([handle.client for handle in handles], config)
            service.handle = handles[0]
            service.handles = handles
            try:
                yield service
            finally:
                service.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        hits: pd.DataFrame | Event | EventRef,
        event_id: int | None = None,
        arrived: float | None = None,
    ) -> Future:
        """Queue one event; returns a :class:`concurrent.futures.Future` of its EventTracks.

        ``hits``: a TrackML hits frame (``hit_id, x, y, z, volume_id, layer_id, module_id``; mm),
        an Event (its truth is not sent) or an EventRef (read here). ``event_id``: the id of the
        tracks (default: the request's number). ``arrived``: ``time.monotonic()`` s the event
        arrived (default now; an open-loop replay passes the scheduled time). A bad request raises
        ConfigError here; a full queue sheds (the future raises ServiceOverloaded) or blocks.
        """
        request_id = next(self._ids)
        event = _as_event(hits, event_id, request_id)
        future: Future = Future()
        request = Request(
            request_id,
            event,
            future,
            arrived=time.monotonic() if arrived is None else float(arrived),
            bytes_in=_hits_bytes(event.hits),
        )
        if not self.batcher.put(request):
            refused = future.exception(timeout=0)
            self._record_unanswered(request, "shed" if isinstance(refused, ServiceOverloaded) else "closed")
        return future

    def map(self, events: Iterable[pd.DataFrame | Event | EventRef]) -> list[Future]:
        """:meth:`submit` for each event (in order); the futures in the same order."""
        return [self.submit(event) for event in events]

    # ------------------------------------------------------------------ state
    def counts(self) -> ServiceCounts:
        """How many requests ended which way (see :class:`ServiceCounts`)."""
        batcher = self.batcher.counts
        with self._lock:
            done, failed, resent = self._done, self._failed, self._resent
        pending = batcher.submitted - done - failed - batcher.shed - batcher.closed
        return ServiceCounts(
            submitted=batcher.submitted,
            done=done,
            failed=failed,
            shed=batcher.shed,
            closed=batcher.closed,
            pending=pending,
            batches=batcher.batches,
            batch_sizes=dict(sorted(batcher.batch_sizes.items())),
            resent=resent,
        )

    def backlog(self) -> tuple[int, int]:
        """(events waiting on the client, events on the cluster)."""
        return self.batcher.backlog()

    def take_timings(self) -> list[EventTiming]:
        """The timings of the requests answered since the last call (and forget them)."""
        with self._lock:
            timings, self._timings = self._timings, []
        return timings

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every request so far is answered; False on timeout."""
        return self.batcher.wait_idle(timeout)

    def worker_slots(self) -> int:
        """Worker threads now connected to the clusters still usable (the default number of
        batches in flight)."""
        return max(1, sum(c.worker_slots() for c in self.clusters if c.usable()))

    def connected_workers(self) -> int:
        """Workers now connected to the clusters still usable, asked of their schedulers (0: the
        service cannot answer yet)."""
        return sum(c.connected_workers() for c in self.clusters if c.usable())

    def close(self, drain: bool = True, timeout: float | None = 60.0) -> None:
        """Stop taking requests; with ``drain`` wait (up to ``timeout`` s) for the queued and the
        running ones to be answered. What is left fails with ServiceClosed (counted)."""
        self.batcher.close(drain=drain, timeout=timeout)
        if drain:
            self.batcher.wait_idle(timeout)
        self._stop_watch.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(timeout=5)
        with self._lock:
            left = list(self._dask_futures.values())
        for cluster in self.clusters:
            mine = [f for f in left if f.client is cluster.client]
            if mine and cluster.usable():
                cluster.client.cancel(mine)
        if self.actors is not None:
            self.actors.close()
        if self._resend_pool is not None:
            self._resend_pool.shutdown(wait=False)

    # ------------------------------------------------------------------ inside
    def _in_flight_limit(self, held: int = 0) -> int:
        """Batches the clusters may run now, while the batcher holds ``held`` events."""
        if self.config.max_in_flight is not None:
            return int(self.config.max_in_flight)
        # actors: calls_per_slot per worker thread (1: events wait on the client for a free
        # worker; auto: 2 while there is one worker or a deep backlog, ActorPool.per_slot)
        per_slot = self.actors.per_slot(held) if self.actors is not None else int(self.config.tasks_per_slot)
        return sum(c.slots for c in self.clusters if c.usable()) * per_slot

    def _watch_slots(self) -> None:
        """The workers' thread count, asked of the scheduler every SLOT_REFRESH_S s on this
        thread: a lost worker lowers the limit, a joining one raises it. The batcher reads the
        last answer and never waits for one: asked from the batcher (under its lock), the round
        trip through the client's event loop held up every put() and dispatch, and on 2 shared
        cores stalled the arrivals by up to 0.5 s at 20 % load."""
        while not self._stop_watch.wait(SLOT_REFRESH_S):
            for cluster in self.clusters:
                if not cluster.usable():
                    continue
                # a scheduler hiccup must not stop the service: keep the last value
                with contextlib.suppress(Exception):
                    workers = cluster.workers()
                    if self.config.max_in_flight is None:
                        cluster.slots = max(1, sum(workers.values()))
                    if self.actors is not None:
                        # drop the actors of workers gone, create them on workers that joined
                        self.actors.refresh(cluster, workers)

    def _dispatch(self, batch: list[Request]) -> None:
        """The batcher's callback: ``batch`` to the least-loaded cluster."""
        self._send(_Flight(batch))

    def _send(self, flight: _Flight) -> None:
        """Submit ``flight`` to the least-loaded usable cluster; a cluster found lost on the way
        is skipped; with none left, the batch is answered with a failure. Actor dispatch: to a
        worker with a free thread, if one has its actor (else as a task)."""
        if self.actors is not None and not flight.as_task:
            # sent again after its worker died: to another worker's actor even if busy
            waiting, in_flight = self.batcher.backlog()
            actor = self.actors.pick(busy_too=bool(flight.deaths), held=waiting + in_flight)
            if actor is not None:
                flight.cluster = actor.cluster
                flight.tried.append(actor.cluster)
                actor.cluster.take()
                events = [r.payload for r in flight.batch]
                limit = int(self.config.inline_hits or 0)  # 0: always the pipeline's thread
                inline = limit > 0 and sum(len(e.hits) for e in events) <= limit
                call = self.actors.call(actor, run_batch, events, inline=inline)
                call.add_done_callback(functools.partial(self._on_called, flight=flight, actor=actor))
                return
        while True:
            cluster = least_loaded(self.clusters, int(self.config.tasks_per_slot))
            if cluster is None:
                gone = "; ".join(f"{c.name}: {c.lost or c.client.status}" for c in self.clusters)
                now = time.monotonic()
                self._answer(flight, None, RuntimeError(f"no cluster left ({gone})"), now, now)
                return
            key = f"trackflow-serve-{self._run}-{next(self._batch_ids):07d}"
            try:
                dask_future = self._submit(cluster, [r.payload for r in flight.batch], key)
            except Exception as error:
                if is_cluster_loss(cluster, error):
                    self._lose(cluster, error)
                    continue
                now = time.monotonic()
                self._answer(flight, None, error, now, now)
                return
            flight.cluster = cluster
            flight.tried.append(cluster)
            cluster.take()
            with self._lock:
                self._dask_futures[key] = dask_future
            dask_future.add_done_callback(lambda f, flight=flight: self._on_done(f, flight))
            return

    def _submit(self, cluster: ServiceCluster, events: list[Event], key: str) -> DaskFuture:
        """The batch's task(s) on ``cluster``; the future of its ServedBatch."""
        client = cluster.client
        options: dict[str, Any] = {
            "retries": self.config.retries,
            "resources": gpu_request() if cluster.gpu else None,
            "pure": False,
        }
        if self.config.mode == "staged":
            from trackflow.pipeline.graph import STAGE_NAMES
            from trackflow.service import staged_tasks

            # one task per stage, each depending on the last: Dask places each where it likes
            items = client.submit(
                staged_tasks.prepare_batch, self.plugin.name, events, key=f"{key}-prepare", **options
            )
            for stage in STAGE_NAMES:
                items = client.submit(
                    staged_tasks.stage_batch, self.plugin.name, stage, items, key=f"{key}-{stage}", **options
                )
            return client.submit(staged_tasks.finish_batch, self.plugin.name, items, key=key, **options)
        return client.submit(serve_batch, self.plugin.name, events, key=key, **options)

    def _on_called(self, call: Future, flight: _Flight, actor: WorkerActor) -> None:
        """An actor call ended (on the client's event loop: answer at once, no thread hop). Its
        worker died: to another actor, or failed as KilledWorker once allowed-failures + 1 died
        (as Dask counts a task's). It raised: sent again as a task, which Dask retries."""
        received = time.monotonic()
        assert self.actors is not None
        self.actors.done(actor)
        actor.cluster.give_back()
        error = call.exception()
        if error is None:
            self._answer(flight, call.result(), None, received, received)
            return
        why = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, ActorUnreachable):  # gone before the call: it never ran there
            self.actors.drop(actor)
            logger.warning("%s: its batch goes to another worker", why)
        elif isinstance(error, OSError):  # the connection dropped mid-call: the worker died
            self.actors.drop(actor)
            flight.deaths.append(actor.address)
            allowed = self._allowed_failures.get(actor.cluster.index, 3)
            if len(flight.deaths) > allowed:
                event_ids = ",".join(str(r.payload.event_id) for r in flight.batch)
                died = KilledWorker(f"trackflow-serve-{self._run} events {event_ids}", actor.address, allowed)
                self._answer(flight, None, died, received, received)
                return
            logger.warning("worker %s died running a batch (%s): another worker gets it", actor.address, why)
        else:
            logger.warning("actor call on %s failed (%s): its batch goes again as a task", actor.address, why)
            flight.as_task = True
        with self._lock:
            self._resent += 1
        assert self._resend_pool is not None
        try:
            self._resend_pool.submit(self._send, flight)
        except RuntimeError:  # closing: answer rather than leave it hanging
            self._answer(flight, None, error, received, received)

    def _lose(self, cluster: ServiceCluster, error: BaseException | None) -> None:
        why = " ".join(str(error).split()) or type(error).__name__ if error is not None else "gone"
        if cluster.mark_lost(f"client {cluster.client.status}: {why}"):
            left = sum(c.usable() for c in self.clusters)
            logger.warning(
                "%s lost (%s); its batches in flight go to the %d cluster(s) left", cluster.name, why, left
            )

    def _on_done(self, dask_future: DaskFuture, flight: _Flight) -> None:
        # The task has finished, so its worker thread is free: the next batch goes out while this
        # one's tracks are fetched (held through the fetch and the bookkeeping, a slot idled
        # 20-30 ms per event: a 1-worker service saturated at 7-8 Hz against 11 Hz in a loop).
        task_finished = time.monotonic()
        if dask_future.status == "finished" and not flight.slot_freed:
            flight.slot_freed = True
            self.batcher.slot_free()
        try:
            # result() fetches the tracks from the worker: the latency ends when they are here
            served: ServedBatch | None = dask_future.result()
            error: BaseException | None = None
        except BaseException as caught:  # KilledWorker, cancelled, a task failing after its retries
            served, error = None, caught
        received = time.monotonic()
        with self._lock:
            self._dask_futures.pop(str(dask_future.key), None)  # submitted under a str key
        cluster = flight.cluster
        if cluster is not None:
            cluster.give_back()
            if served is None and is_cluster_loss(cluster, error):
                # the cluster went away, not the batch: it runs again elsewhere (or fails when
                # no cluster is left), so no request is lost with a cluster
                self._lose(cluster, error)
                with self._lock:
                    self._resent += 1
                self._send(flight)
                return
        self._answer(flight, served, error, task_finished, received)

    def _answer(
        self,
        flight: _Flight,
        served: ServedBatch | None,
        error: BaseException | None,
        task_finished: float,
        received: float,
    ) -> None:
        """Answer every request of ``flight`` (tracks, or a failure from ``error``) and free its
        slot in the batcher if that is not done yet."""
        batch = flight.batch
        if not flight.slot_freed:
            flight.slot_freed = True
            self.batcher.slot_free()
        answers = list(served.events) if served is not None else [None] * len(batch)
        task_s = served.task_s if served is not None else 0.0
        for request, answer in zip(batch, answers, strict=True):
            event: Event = request.payload
            dispatched = request.dispatched if request.dispatched is not None else received
            timing = EventTiming(
                request_id=request.request_id,
                event_id=int(event.event_id),
                hits=len(event.hits),
                status="done",
                arrived=request.arrived,
                finished=received,
                latency_s=received - request.arrived,
                batch_events=len(batch),
                worker=served.worker if served is not None else "",
                bytes_in=request.bytes_in,
                slot_s=task_finished - dispatched,
                fetch_s=received - task_finished,
            )
            if answer is not None:
                timing.service_s = answer.service_s
                # waiting for a slot, then for the other events of the batch
                timing.queue_s = (dispatched - request.arrived) + max(task_s - answer.service_s, 0.0)
                timing.transfer_s = timing.latency_s - timing.queue_s - timing.service_s
                timing.bytes_out = _tracks_bytes(answer.tracks)
            else:
                timing.queue_s = dispatched - request.arrived
                timing.transfer_s = received - dispatched
            if answer is not None and answer.tracks is not None:
                outcome: Any = answer.tracks
            else:
                timing.status = "failed"
                if answer is not None and answer.failure is not None:
                    failure = answer.failure
                else:
                    message = " ".join(str(error).split()) or type(error).__name__
                    failure = EventFailure(int(event.event_id), "task", type(error).__name__, message)
                timing.error = failure.line()
                outcome = EventFailed(failure)
            with self._lock:
                self._timings.append(timing)
                if timing.status == "done":
                    self._done += 1
                else:
                    self._failed += 1
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        self.batcher.batch_done(len(batch))

    def _record_unanswered(self, request: Request, status: str) -> None:
        event: Event = request.payload
        now = time.monotonic()
        with self._lock:
            self._timings.append(
                EventTiming(
                    request.request_id,
                    int(event.event_id),
                    len(event.hits),
                    status,
                    request.arrived,
                    now,
                    latency_s=now - request.arrived,
                    bytes_in=request.bytes_in,
                )
            )
