"""Actor dispatch (``service.dispatch: actor``): one pipeline actor per worker, called directly.

The actors, their pool and the RPC are :mod:`trackflow.run.actors` (one owner: the batch
workflow's fused executor calls the same actors); the names stay importable from here. The
service calls :func:`~trackflow.service.tasks.run_batch` on them and sends each batch to a worker
with a free thread (:meth:`ActorPool.pick`): an event never waits behind a busy worker while
another is idle. With ``calls_per_slot`` 2, once every thread is busy one more call per thread
may wait on a worker, the one whose running call is oldest, so that its trip overlaps that call;
past that, events wait on the client. ``auto`` (the default) is 2 while the service has one
worker and 1 with several: an event waiting on a lone worker loses nothing (no other worker could
take it sooner) and the worker no longer idles for the round trip between two events; with
several, an event waiting on one worker can lose the race to another that frees first, so there
events wait on the client — unless the service holds two events per worker thread (running and
waiting): then every thread takes a waiting event as soon as it frees anyway, and a second call
per thread only spares each worker the round trip between events.

Dask's guarantees stay, counted as Dask counts them. A call whose worker dies (the connection
drops) goes to another worker's actor, until ``distributed.scheduler.allowed-failures`` + 1
workers have died running it: then it fails with :class:`KilledWorker`, as a task would. A call
that raises (an error that may pass) is sent again as an ordinary task, which Dask retries
(``retries``). A dead worker's actor is dropped, and the service creates one on every worker that
joins (a restarted worker included); until a worker has its actor, batches that find no free
actor go as tasks.
"""

from __future__ import annotations

from trackflow.run.actors import (
    ActorPool,
    ActorUnreachable,
    KilledWorker,
    PipelineActor,
    WorkerActor,
    allowed_failures,
)

__all__ = [
    "ActorPool",
    "ActorUnreachable",
    "KilledWorker",
    "PipelineActor",
    "WorkerActor",
    "allowed_failures",
]
