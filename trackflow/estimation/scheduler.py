"""One Dask scheduler's CPU at a task rate and a worker count, and how many schedulers a farm
needs (issue 32). Numbers only: the coefficients are measured by
``benchmarks/scheduler_limits.py`` and ship as defaults under ``estimate.scheduler`` in
``trackflow.yaml``.

A Dask scheduler is one Python process whose event loop does all its work on one core, so its
utilisation ``U`` (CPU-s per s) is the load:

``U = idle + h(W) · c_h + W · c_W + [r_b > 0] · a + r_b · (c_b + (k − 1) · c_k + B · c_B)``

* ``r_b`` batches/s, each a chain of ``k`` tasks (1: fused; 6: the batch workflow's staged
  mode; 7: the service's staged mode) moving ``B`` bytes through the scheduler;
* ``a`` (CPU-s/s): what the event loop spends once tasks flow, whatever their rate: its
  wake-ups, which later tasks share (above a few tens of tasks/s a read or a write carries
  several messages: Dask's ``BatchedSend`` streams to workers and clients, the worker's
  ``task-finished`` batches), so the per-task cost falls from ``c_b + a / r`` at low rates
  to ``c_b``; measured as the intercept of the utilisation against the task rate;
* ``c_b`` (s): the marginal scheduler CPU of one independent task from the client's
  ``update-graph`` to its result fetched by the client (the slope of that line): the task's
  transitions (``Scheduler.update_graph``, ``transitions``), the ``compute-task`` and
  ``task-finished`` messages with its worker, the ``gather`` the client sends (a client outside
  the cluster fetches results through the scheduler: ``Client._gather``, ``direct=False``),
  then the release;
* ``c_k`` (s): each further task of a chain, whose input stays on the workers (no gather);
* ``c_B`` (s/B): per byte through the scheduler: ``client.submit`` embeds a batch's argument
  (the service: the events' hits) in the graph the scheduler unpickles and forwards, and the
  result (tracks) comes back through its ``gather``;
* ``h(W)`` heartbeats/s of ``W`` workers: each worker heartbeats at the interval the scheduler
  returns, ``distributed.scheduler.heartbeat_interval(n)`` (0.5 s up to 10 workers, 1 s below 50,
  2 s below 200, then ``n / 200 + 1`` s: "no more than 200 heartbeats a second"), so
  ``h(W) = W / interval(W)`` tends to 200/s however many workers connect; ``c_h`` (s) the CPU
  of one (``Scheduler.heartbeat_worker``);
* ``c_W`` (s/s): any other CPU per connected worker per second (periodic work stealing, TTL
  checks), and ``idle`` (s/s) the scheduler's own periodic callbacks with nothing connected.

The largest batch rate one scheduler sustains is ``(u_max − background(W) − a) / cpu_per_batch``
with ``background(W) = idle + h(W)·c_h + W·c_W`` and ``u_max`` the CPU the scheduler can have
(1: its one core, as Dask's single event loop uses one core at most).

Range of validity (the ranges measured; outside them the model extrapolates): one scheduler on a
core of the measured speed (the CPU seconds scale with the core); the ``distributed`` version
measured; work stealing on, dashboard off; batches of independent chains (no wide graphs, no
shuffles); payloads up to ~6 MB per batch; up to the largest worker count measured (above it,
heartbeats stay capped at 200/s by Dask and ``c_W`` is extrapolated linearly); task rates above
a few tens per second (below, ``a`` overstates the load: the wake-ups are not yet shared).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from trackflow import config
from trackflow.errors import ConfigError

__all__ = [
    "MAX_HEARTBEATS_PER_S",
    "SchedulerLoad",
    "SchedulerModel",
    "heartbeat_interval_s",
    "heartbeats_per_s",
]

#: distributed.scheduler.heartbeat_interval: "no more than 200 heartbeats a second" (Dask's
#: constant, not a setting: its code, not its configuration, fixes it)
MAX_HEARTBEATS_PER_S = 200.0


def heartbeat_interval_s(workers: int) -> float:
    """s between two heartbeats of one worker when ``workers`` are connected: Dask's
    ``distributed.scheduler.heartbeat_interval`` (scheduler.py), which each heartbeat's answer
    sets on the worker (``Worker.heartbeat``: ``response["heartbeat-interval"]``)."""
    if workers <= 10:
        return 0.5
    if workers < 50:
        return 1.0
    if workers < 200:
        return 2.0
    return workers / MAX_HEARTBEATS_PER_S + 1.0


def heartbeats_per_s(workers: int) -> float:
    """Heartbeats the scheduler receives per second from ``workers`` workers (< 200/s)."""
    if workers <= 0:
        return 0.0
    return workers / heartbeat_interval_s(workers)


@dataclass(frozen=True)
class SchedulerLoad:
    """One scheduler's load (module docstring): ``utilisation`` (CPU-s/s, 1 = its one core
    busy), split into ``tasks`` and ``background`` (idle, heartbeats and per-worker); the batch
    rate (batches/s) and workers it serves; ``max_batch_rate`` (batches/s) it would sustain.
    ``tasks`` includes the active event loop's share (``SchedulerModel.active_cpu``)."""

    batch_rate: float
    tasks_per_batch: int
    bytes_per_batch: float
    workers: int
    utilisation: float
    tasks: float
    background: float
    heartbeats_per_s: float
    max_batch_rate: float


@dataclass(frozen=True)
class SchedulerModel:
    """The coefficients of the scheduler's CPU (module docstring; defaults: ``estimate.scheduler``
    in ``trackflow.yaml``). Times in s of one core, ``cpu_per_byte_s`` in s per byte,
    ``cpu_per_worker_s``, ``idle_cpu``, ``active_cpu`` and ``max_utilisation`` in CPU-s per s."""

    cpu_per_batch_s: float = field(default_factory=config.default("estimate.scheduler.cpu_per_batch_s"))
    cpu_per_chained_task_s: float = field(
        default_factory=config.default("estimate.scheduler.cpu_per_chained_task_s")
    )
    cpu_per_byte_s: float = field(default_factory=config.default("estimate.scheduler.cpu_per_byte_s"))
    cpu_per_heartbeat_s: float = field(
        default_factory=config.default("estimate.scheduler.cpu_per_heartbeat_s")
    )
    cpu_per_worker_s: float = field(default_factory=config.default("estimate.scheduler.cpu_per_worker_s"))
    idle_cpu: float = field(default_factory=config.default("estimate.scheduler.idle_cpu"))
    active_cpu: float = field(default_factory=config.default("estimate.scheduler.active_cpu"))
    max_utilisation: float = field(default_factory=config.default("estimate.scheduler.max_utilisation"))

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"estimate.scheduler.{name} {value!r}: must be a number >= 0")
        if not 0 < self.max_utilisation <= 1:
            raise ConfigError(f"estimate.scheduler.max_utilisation {self.max_utilisation}: must be in (0, 1]")
        if self.cpu_per_batch_s <= 0:
            raise ConfigError(f"estimate.scheduler.cpu_per_batch_s {self.cpu_per_batch_s}: must be > 0")

    @classmethod
    def from_config(cls) -> SchedulerModel:
        """The model with every coefficient from the settings (``estimate.scheduler.*``)."""
        return cls()

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}

    def cpu_per_batch(self, tasks_per_batch: int, bytes_per_batch: float) -> float:
        """Scheduler CPU s for one batch: a chain of ``tasks_per_batch`` tasks whose argument and
        result (``bytes_per_batch`` bytes together) pass through the scheduler."""
        if tasks_per_batch < 1:
            raise ConfigError(f"tasks_per_batch {tasks_per_batch}: must be >= 1")
        return (
            self.cpu_per_batch_s
            + (tasks_per_batch - 1) * self.cpu_per_chained_task_s
            + max(bytes_per_batch, 0.0) * self.cpu_per_byte_s
        )

    def background(self, workers: int) -> float:
        """CPU-s/s the scheduler spends with ``workers`` connected and no task: its own periodic
        work, the workers' heartbeats and the per-worker rest."""
        return (
            self.idle_cpu
            + heartbeats_per_s(workers) * self.cpu_per_heartbeat_s
            + max(workers, 0) * self.cpu_per_worker_s
        )

    def max_batch_rate(self, cpu_per_batch_s: float, workers: int) -> float:
        """Batches/s one scheduler sustains at ``cpu_per_batch_s`` s each with ``workers``
        connected: what is left of ``max_utilisation`` after the background and the active
        event loop, per batch; 0 when those alone fill it."""
        left = self.max_utilisation - self.background(workers) - self.active_cpu
        return max(left, 0.0) / cpu_per_batch_s

    def load(
        self, batch_rate: float, tasks_per_batch: int, bytes_per_batch: float, workers: int
    ) -> SchedulerLoad:
        """One scheduler's load at ``batch_rate`` batches/s over ``workers`` workers."""
        per_batch = self.cpu_per_batch(tasks_per_batch, bytes_per_batch)
        tasks = (self.active_cpu if batch_rate > 0 else 0.0) + batch_rate * per_batch
        background = self.background(workers)
        return SchedulerLoad(
            batch_rate=batch_rate,
            tasks_per_batch=tasks_per_batch,
            bytes_per_batch=bytes_per_batch,
            workers=workers,
            utilisation=tasks + background,
            tasks=tasks,
            background=background,
            heartbeats_per_s=heartbeats_per_s(workers),
            max_batch_rate=self.max_batch_rate(per_batch, workers),
        )

    def clusters_needed(
        self,
        batch_rate: float,
        tasks_per_batch: int,
        bytes_per_batch: float,
        workers: int,
        threshold: float,
    ) -> tuple[int, SchedulerLoad]:
        """The fewest independent clusters K (each its own scheduler, ``batch_rate / K`` and
        ``ceil(workers / K)`` workers) that keep each scheduler's utilisation <= ``threshold``,
        and the load of one of them. A farm whose per-scheduler background alone passes the
        threshold at one worker per cluster has no answer (ConfigError)."""
        if not 0 < threshold <= self.max_utilisation:
            raise ConfigError(
                f"estimate.scheduler.threshold {threshold}: must be in (0, max_utilisation "
                f"{self.max_utilisation:g}]"
            )
        per_batch = self.cpu_per_batch(tasks_per_batch, bytes_per_batch)
        # the task load alone sets a floor on K; heartbeats only add (they are capped per scheduler)
        clusters = max(1, math.ceil(batch_rate * per_batch / threshold))
        while True:
            load = self.load(
                batch_rate / clusters, tasks_per_batch, bytes_per_batch, math.ceil(workers / clusters)
            )
            if load.utilisation <= threshold:
                return clusters, load
            if self.background(1) + self.active_cpu + per_batch * batch_rate / max(workers, 1) > threshold:
                raise ConfigError(
                    f"estimate.scheduler.threshold {threshold}: one scheduler per worker still passes it"
                )
            clusters += 1
