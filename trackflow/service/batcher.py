"""Dynamic batching with a bounded queue: events wait here until a slot on the cluster is free.

The service keeps its queue on the client, not in Dask's scheduler, so that it can be bounded
and measured. A batch leaves the queue when a slot is free (fewer than ``max_in_flight`` batches
running on the cluster: a slot frees when its task has finished, before its tracks are fetched,
so the worker gets the next batch while the client gathers the last one) and either
``max_batch_events`` events are waiting or the oldest has waited ``max_delay_s``, whichever
comes first (Triton's dynamic batcher: ``max_batch_size`` and
``max_queue_delay``). With ``max_delay_s = 0`` a batch is whatever waits when a slot frees: one
event at low load (no latency added), up to ``max_batch_events`` past the knee (less per-task
overhead when it matters). An event that arrives at an empty queue with a slot free leaves at
once from :meth:`DynamicBatcher.put`'s own thread (the batching thread would send it alone
anyway; waking it costs a thread hop per request).

Backpressure, when ``max_queued`` events already wait (:data:`POLICIES`):

* ``shed``: the new event is refused at once; its future raises :class:`ServiceOverloaded`
  and it is counted in :attr:`BatcherCounts.shed`.
* ``block``: :meth:`DynamicBatcher.put` waits until there is room; after ``block_timeout_s``
  (None: forever) the event is shed and counted as above.

Nothing is dropped silently: every request put here is dispatched, or shed and counted, or —
when the batcher is closed without draining — failed with :class:`ServiceClosed` and counted.
No Dask here: ``dispatch`` is the service's callback.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from trackflow.errors import ConfigError, TrackflowError

#: what happens to an event that arrives at a full queue
POLICIES = ("shed", "block")


class ServiceOverloaded(TrackflowError, RuntimeError):
    """The service's queue was full: the event was shed (counted, never processed)."""


class ServiceClosed(TrackflowError, RuntimeError):
    """The service closed before the event was dispatched (counted, never processed)."""


@dataclass
class Request:
    """One event on its way through the service.

    Times are ``time.monotonic()`` seconds of the client: ``arrived`` (when the event arrived,
    which an open-loop replay sets to the scheduled arrival), ``queued`` (when it entered the
    queue: later than ``arrived`` when ``put`` blocked) and ``dispatched`` (sent to the cluster).
    """

    request_id: int
    payload: Any
    future: Future
    arrived: float
    queued: float = 0.0
    dispatched: float | None = None
    bytes_in: int = 0


@dataclass
class BatcherCounts:
    """Events put, dispatched, shed (queue full) and failed at close, and batches dispatched."""

    submitted: int = 0
    dispatched: int = 0
    shed: int = 0
    closed: int = 0
    batches: int = 0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class DynamicBatcher:
    """The bounded queue and the thread that cuts it into batches (module docstring).

    ``dispatch(requests)`` sends one batch; ``in_flight_limit(held)`` gives the batches the
    cluster may run now while the batcher holds ``held`` events (waiting, in flight, and one
    arriving; read again on every decision: workers come and go). For every dispatched
    batch call :meth:`slot_free` when its task has finished (or failed to be sent), then
    :meth:`batch_done` once its events are answered.
    """

    def __init__(
        self,
        dispatch: Callable[[list[Request]], None],
        in_flight_limit: Callable[[int], int],
        max_batch_events: int = 1,
        max_delay_s: float = 0.0,
        max_queued: int = 256,
        policy: str = "shed",
        block_timeout_s: float | None = None,
    ) -> None:
        if max_batch_events < 1:
            raise ConfigError(f"service.max_batch_events {max_batch_events}: must be >= 1")
        if max_delay_s < 0:
            raise ConfigError(f"service.max_delay_ms {max_delay_s * 1e3:g}: must be >= 0")
        if max_queued < 1:
            raise ConfigError(f"service.max_queued {max_queued}: must be >= 1")
        if policy not in POLICIES:
            raise ConfigError(f"service.queue_policy {policy!r}: choose one of {', '.join(POLICIES)}")
        self.dispatch = dispatch
        self.in_flight_limit = in_flight_limit
        self.max_batch_events = int(max_batch_events)
        self.max_delay_s = float(max_delay_s)
        self.max_queued = int(max_queued)
        self.policy = policy
        self.block_timeout_s = block_timeout_s
        self.counts = BatcherCounts()
        self._queue: collections.deque[Request] = collections.deque()
        self._in_flight_batches = 0  # holding a slot: their tasks have not finished
        self._open_batches = 0  # dispatched, events not all answered yet
        self._in_flight_events = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="trackflow-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def put(self, request: Request) -> bool:
        """Queue ``request``; False when it was shed (its future then raises ServiceOverloaded)."""
        with self._cond:
            self.counts.submitted += 1
            if self._closed:
                self.counts.closed += 1
                request.future.set_exception(ServiceClosed("the service is closed"))
                return False
            if len(self._queue) >= self.max_queued and self.policy == "block":
                self._cond.wait_for(
                    lambda: len(self._queue) < self.max_queued or self._closed, self.block_timeout_s
                )
            if self._closed:
                self.counts.closed += 1
                request.future.set_exception(ServiceClosed("the service closed while the event waited"))
                return False
            if len(self._queue) >= self.max_queued:
                self.counts.shed += 1
                request.future.set_exception(
                    ServiceOverloaded(
                        f"queue full ({self.max_queued} events waiting, service.max_queued): event shed"
                    )
                )
                return False
            request.queued = time.monotonic()
            if not self._queue and self._takes_at_once():
                # a free slot and nothing waiting: the batching thread would send this event
                # alone, at once; sending it from here saves waking that thread (a thread hop
                # per request, 0.1 ms idle and ms on busy cores)
                self._take([request])
                inline = True
            else:
                self._queue.append(request)
                self._cond.notify_all()
                inline = False
        if inline:
            self._send([request])
        return True

    def _takes_at_once(self) -> bool:
        """(Under the lock.) An event arriving at an empty queue leaves at once, alone."""
        alone = self.max_batch_events == 1 or self.max_delay_s == 0
        # the limit as it is (the batching thread takes at least 1 to make progress; here a
        # limit of 0, no worker yet, leaves the event to the queue)
        return alone and self._in_flight_batches < self.in_flight_limit(self._held() + 1)

    def _held(self) -> int:
        """(Under the lock.) Events waiting here or dispatched and not yet answered."""
        return len(self._queue) + self._in_flight_events

    def _take(self, batch: list[Request]) -> None:
        """(Under the lock.) Count ``batch`` as dispatched: it holds a slot from now."""
        self._in_flight_batches += 1
        self._open_batches += 1
        self._in_flight_events += len(batch)
        self.counts.dispatched += len(batch)
        self.counts.batches += 1
        self.counts.batch_sizes[len(batch)] += 1

    def slot_free(self) -> None:
        """A dispatched batch's task has finished (done or failed): its slot takes the next one."""
        with self._cond:
            self._in_flight_batches -= 1
            self._cond.notify_all()

    def batch_done(self, events: int) -> None:
        """A dispatched batch of ``events`` events is answered (done or failed); its slot was
        freed before, by :meth:`slot_free`."""
        with self._cond:
            self._open_batches -= 1
            self._in_flight_events -= events
            self._cond.notify_all()

    def backlog(self) -> tuple[int, int]:
        """(events waiting in the queue, events dispatched and not yet back)."""
        with self._cond:
            return len(self._queue), self._in_flight_events

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._open_batches == 0, timeout)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking events. ``drain``: dispatch what waits first (up to ``timeout`` s); what is
        still queued then fails with ServiceClosed, counted in ``counts.closed``."""
        with self._cond:
            if drain:
                self._cond.wait_for(lambda: not self._queue, timeout)
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self.counts.closed += len(left)
            self._cond.notify_all()
        for request in left:
            request.future.set_exception(ServiceClosed("the service closed before the event was dispatched"))
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ the batching thread
    def _next_batch(self) -> list[Request] | None:
        """Block until a batch may leave (module docstring); None once closed and empty."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                if self._in_flight_batches >= max(1, self.in_flight_limit(self._held())):
                    # the limit follows the workers: read it again soon even without a notify
                    self._cond.wait(timeout=0.5)
                    continue
                waited = time.monotonic() - self._queue[0].queued
                if len(self._queue) >= self.max_batch_events or waited >= self.max_delay_s:
                    size = min(len(self._queue), self.max_batch_events)
                    batch = [self._queue.popleft() for _ in range(size)]
                    self._take(batch)
                    self._cond.notify_all()  # room in the queue for a blocked put
                    return batch
                self._cond.wait(timeout=self.max_delay_s - waited)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._send(batch)

    def _send(self, batch: list[Request]) -> None:
        """``dispatch(batch)`` (a batch counted by :meth:`_take`), outside the lock."""
        now = time.monotonic()
        for request in batch:
            request.dispatched = now
        try:
            self.dispatch(batch)
        except Exception as error:  # the service answers every event, even when sending fails
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            self.slot_free()
            self.batch_done(len(batch))
