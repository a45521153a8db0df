"""What :class:`~trackflow.service.Service` is configured with and what it reports:
:class:`ServiceConfig` (how it runs), :class:`EventTiming` (one answered request),
:class:`ServiceCounts` (every request's outcome) and :class:`EventFailed` (a request answered
with a failure). Re-exported by :mod:`trackflow.service.service`, where they are imported from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trackflow import config
from trackflow.errors import ConfigError, TrackflowError
from trackflow.run.dask_executors import DISPATCHES
from trackflow.run.plugin import PipelineLoader
from trackflow.run.records import EventFailure

__all__ = [
    "DISPATCHES",
    "FRONT_END_LOOPS",
    "SERVICE_MODES",
    "EventFailed",
    "EventTiming",
    "ServiceConfig",
    "ServiceCounts",
]

#: how a batch runs on the cluster (ServiceConfig.mode)
SERVICE_MODES = ("fused", "staged")

#: where trackflow serve's HTTP front end runs (ServiceConfig.front_end_loop)
FRONT_END_LOOPS = ("client", "own")


class EventFailed(TrackflowError, RuntimeError):
    """The service answered the event with a failure (``failure``: which stage, and why)."""

    def __init__(self, failure: EventFailure) -> None:
        self.failure = failure
        super().__init__(failure.line())


@dataclass
class ServiceConfig:
    """How the service runs (None = the default under ``service.`` in ``trackflow.yaml``).

    ``max_batch_events``: events per task at most; ``max_delay_ms``: ms the oldest waiting event
    may wait for a batch to fill (0: never wait, batch only what is already there);
    ``max_queued``: events that may wait on the client; ``queue_policy``: ``shed`` or ``block``
    when they do (``block_timeout_s``: then shed; None: wait forever); ``max_in_flight``: batches
    on the cluster at once (None: the workers' threads times ``tasks_per_slot``; 1 keeps the
    queue on the client, 2 keeps one more task waiting on each worker so that Dask's round trip
    of the next event overlaps the running one: ``trackflow serve`` takes ``serve.tasks_per_slot``);
    ``mode``: ``fused`` (a batch is one task through every stage) or ``staged`` (a task per stage,
    chained by Dask: a batch's graphs may hop between workers, as in the study's ensemble);
    ``dispatch`` (fused mode): ``actor`` (a call straight to a pipeline actor on a worker with a
    free thread, :mod:`trackflow.run.actors`; ``calls_per_slot`` calls per worker thread at
    most, the ones past the first waiting on the worker whose running call is oldest; ``auto``:
    2 while the service has one worker, where a waiting event has no other worker to go to, or
    holds two events per worker thread, a backlog every worker takes from as it frees; else 1;
    ``inline_hits``: a batch of at most this many hits runs on the event loop of a one-thread
    worker itself, no thread hop each way (0: always on the pipeline's thread);
    ``tasks_per_slot`` plays no part) or ``task`` (a Dask task through the scheduler);
    ``front_end_loop``: the event loop ``trackflow serve``'s HTTP front end runs on, ``client``
    (the Dask client's: a request, its actor call and its answer on one thread; the front end
    never blocks there, so a ``block`` queue keeps it on its own) or ``own`` (a thread of its
    own: two thread hops per request);
    ``retries``: Dask retries of a task
    failing with a transient error. ``models_dir`` / ``device`` / ``threads_per_worker`` /
    ``settings`` as for ``trackflow reconstruct``; ``pipeline_loader`` replaces ``Pipeline.load``
    (tests, notebooks without trained models).
    """

    models_dir: Path | None = None
    device: str | None = None
    threads_per_worker: int = 1
    max_batch_events: int | None = None
    max_delay_ms: float | None = None
    max_queued: int | None = None
    queue_policy: str | None = None
    block_timeout_s: float | None = None
    max_in_flight: int | None = None
    tasks_per_slot: int = 1
    mode: str = "fused"
    dispatch: str | None = None
    calls_per_slot: int | str | None = None
    inline_hits: int | None = None
    front_end_loop: str | None = None
    retries: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    pipeline_loader: PipelineLoader | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.device = self.device or str(config.get("device", "cpu"))
        self.max_batch_events = int(self._default("max_batch_events", self.max_batch_events, 1))
        self.max_delay_ms = float(self._default("max_delay_ms", self.max_delay_ms, 0.0))
        self.max_queued = int(self._default("max_queued", self.max_queued, 256))
        self.queue_policy = str(self._default("queue_policy", self.queue_policy, "shed"))
        if self.block_timeout_s is None:
            self.block_timeout_s = config.get("service.block_timeout_s", None)
        if self.max_in_flight is None:
            self.max_in_flight = config.get("service.max_in_flight", None)
        self.retries = int(self.retries if self.retries is not None else config.get("workflow.retries", 2))
        self.dispatch = str(self._default("dispatch", self.dispatch, "task"))
        calls = self._default("calls_per_slot", self.calls_per_slot, "auto")
        if str(calls) != "auto":
            try:
                calls = int(calls)
            except (TypeError, ValueError):
                raise ConfigError(f"service.calls_per_slot {calls!r}: a number >= 1, or auto") from None
            if calls < 1:
                raise ConfigError(f"service.calls_per_slot {calls}: must be >= 1")
        self.calls_per_slot = calls
        self.inline_hits = int(self._default("inline_hits", self.inline_hits, 0))
        if self.inline_hits < 0:
            raise ConfigError(f"service.inline_hits {self.inline_hits}: must be >= 0")
        if self.dispatch not in DISPATCHES:
            raise ConfigError(f"service.dispatch {self.dispatch!r}: choose one of {', '.join(DISPATCHES)}")
        self.front_end_loop = str(self._default("front_end_loop", self.front_end_loop, "own"))
        if self.front_end_loop not in FRONT_END_LOOPS:
            loops = ", ".join(FRONT_END_LOOPS)
            raise ConfigError(f"service.front_end_loop {self.front_end_loop!r}: choose one of {loops}")
        if self.mode not in SERVICE_MODES:
            raise ConfigError(f"mode {self.mode!r}: choose one of {', '.join(SERVICE_MODES)}")
        if int(self.tasks_per_slot) < 1:
            raise ConfigError(f"tasks_per_slot {self.tasks_per_slot}: must be >= 1")
        if self.max_in_flight is not None and int(self.max_in_flight) < 1:
            raise ConfigError(f"service.max_in_flight {self.max_in_flight}: must be >= 1")
        if self.settings and self.pipeline_loader is not None:
            raise ConfigError("settings: apply to a model directory, not to a pipeline_loader")

    @staticmethod
    def _default(key: str, value: Any, fallback: Any) -> Any:
        return value if value is not None else config.get(f"service.{key}", fallback)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("pipeline_loader", "settings")}
        out["models_dir"] = None if self.models_dir is None else str(self.models_dir)
        out["pipeline_loader"] = None if self.pipeline_loader is None else repr(self.pipeline_loader)
        return out


@dataclass
class EventTiming:
    """One answered request. Times in s; ``arrived`` / ``finished`` on the client's monotonic
    clock. ``latency_s = queue_s + transfer_s + service_s`` (module docstring). ``status``:
    ``done``, ``failed`` (``error`` says why), ``shed`` (queue full) or ``closed`` (refused: the
    service was closing). ``slot_s``: dispatch to its batch's task finished, the time the batch
    held a slot; ``fetch_s``: from then until its tracks were on the client (the slot is free)."""

    request_id: int
    event_id: int
    hits: int
    status: str
    arrived: float
    finished: float
    latency_s: float = 0.0
    queue_s: float = 0.0
    transfer_s: float = 0.0
    service_s: float = 0.0
    slot_s: float = 0.0
    fetch_s: float = 0.0
    batch_events: int = 0
    worker: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None


@dataclass
class ServiceCounts:
    """Every request is in exactly one of done, failed, shed, closed (refused at close) or
    pending (not answered yet): ``submitted == done + failed + shed + closed + pending``.
    ``resent``: batches sent again (to another cluster after theirs was lost, or as a task after
    their actor's call failed: its worker died), not answers."""

    submitted: int
    done: int
    failed: int
    shed: int
    closed: int
    pending: int
    batches: int
    batch_sizes: dict[int, int]
    resent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
