"""What the estimate charges the Dask scheduler (issue 32): for a farm sized by
:mod:`trackflow.estimation.sizing` (a target rate, its workers), the utilisation of one scheduler
driving it all, the number K of independent clusters (each its own scheduler) that keep every
scheduler under ``estimate.scheduler.threshold``, and how both move with the events per task.

Numbers only (:mod:`trackflow.estimation.scheduler` holds the model). Batching trades scheduler
load against latency: a task of ``b`` events is one batch for the scheduler (``b`` times fewer
tasks, its bytes ``b`` times larger), but its events run one after the other on one worker
(``trackflow.service.tasks.serve_batch``), so an event waits for the events before it in the
batch, ``(b − 1) / 2`` service times on average and ``b − 1`` for the last, plus the time the
batch takes to fill at the farm's rate (``(b − 1) / 2`` arrival gaps on average).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.estimation.scheduler import SchedulerModel

__all__ = ["BatchChoice", "SchedulerPlan", "auto_events_per_task", "plan_schedulers"]


@dataclass(frozen=True)
class BatchChoice:
    """The farm with ``events_per_task`` events per task: ``task_rate`` (tasks/s, every task of
    a chain counted), ``utilisation_one`` (CPU-s/s of ONE scheduler driving the whole farm),
    ``clusters`` (K) and ``utilisation`` (each of the K schedulers), the latency batching adds to
    an event on average and to the batch's last event (s)."""

    events_per_task: int
    task_rate: float
    bytes_per_task: float
    utilisation_one: float
    clusters: int
    utilisation: float
    workers_per_cluster: int
    added_latency_mean_s: float
    added_latency_last_s: float
    auto: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SchedulerPlan:
    """One node type's farm and its schedulers: the planned batch size (``chosen``) and the
    sensitivity over ``estimate.scheduler.batch_sizes`` (``choices``)."""

    node: str
    workers: int
    threshold: float
    tasks_per_batch: int
    chosen: BatchChoice
    choices: tuple[BatchChoice, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chosen"] = self.chosen.to_dict()
        out["choices"] = [c.to_dict() for c in self.choices]
        return out

    def summary(self) -> str:
        """One line: one scheduler's utilisation, K, and each cluster's share."""
        c = self.chosen
        split = (
            f"split into {c.clusters} independent clusters (each its own scheduler, "
            f"~{c.workers_per_cluster:,} workers, {c.utilisation:.0%} busy)"
            if c.clusters > 1
            else "one cluster suffices"
        )
        return (
            f"{self.node}: one scheduler for all {self.workers:,} workers at {c.task_rate:,.0f} tasks/s "
            f"({c.events_per_task} event(s) per task) would be {c.utilisation_one:.0%} busy "
            f"(threshold {self.threshold:.0%}): {split}"
        )

    def sensitivity_lines(self) -> list[str]:
        """The batch-size sensitivity as table lines."""
        lines = [
            f"  {'events/task':>11} {'tasks/s':>9} {'1 sched':>8} {'K':>4} {'each':>5} "
            f"{'+latency mean':>14} {'+latency last':>14}"
        ]
        for c in self.choices:
            mark = " (auto batch size)" if c.auto else ""
            lines.append(
                f"  {c.events_per_task:>11} {c.task_rate:>9,.0f} {c.utilisation_one:>8.0%} "
                f"{c.clusters:>4} {c.utilisation:>5.0%} {c.added_latency_mean_s:>13.2f}s "
                f"{c.added_latency_last_s:>13.2f}s{mark}"
            )
        return lines


def auto_events_per_task(hits: float) -> int:
    """About the events ``trackflow reconstruct --batch-size auto`` puts in a batch of events of
    ``hits`` hits: ``workflow.auto_batch.hits_per_batch`` hits, at most ``max_events`` events."""
    hits_per_batch = int(config.get("workflow.auto_batch.hits_per_batch"))
    max_events = int(config.get("workflow.auto_batch.max_events"))
    return max(1, min(max_events, hits_per_batch // max(int(hits), 1)))


def _choice(
    model: SchedulerModel,
    events_per_task: int,
    rate_hz: float,
    workers: int,
    tasks_per_batch: int,
    bytes_per_event: float,
    service_mean_s: float,
    threshold: float,
    auto: int,
) -> BatchChoice:
    batch_rate = rate_hz / events_per_task
    bytes_per_task = bytes_per_event * events_per_task
    one = model.load(batch_rate, tasks_per_batch, bytes_per_task, workers)
    clusters, each = model.clusters_needed(batch_rate, tasks_per_batch, bytes_per_task, workers, threshold)
    gap = 1.0 / rate_hz if rate_hz > 0 else 0.0
    return BatchChoice(
        events_per_task=events_per_task,
        task_rate=batch_rate * tasks_per_batch,
        bytes_per_task=bytes_per_task,
        utilisation_one=one.utilisation,
        clusters=clusters,
        utilisation=each.utilisation,
        workers_per_cluster=math.ceil(workers / clusters),
        added_latency_mean_s=(events_per_task - 1) / 2 * (service_mean_s + gap),
        added_latency_last_s=(events_per_task - 1) * (service_mean_s + gap),
        auto=events_per_task == auto,
    )


def plan_schedulers(
    node: str,
    rate_hz: float,
    workers: int,
    bytes_per_event: float,
    service_mean_s: float,
    hits: float,
    model: SchedulerModel | None = None,
    batch_sizes: Sequence[int] | None = None,
) -> SchedulerPlan:
    """The schedulers a farm of ``workers`` workers at ``rate_hz`` events/s needs. Each event
    moves ``bytes_per_event`` bytes through the scheduler and takes ``service_mean_s`` s on a
    worker; ``hits`` per event picks the auto batch size. Defaults: ``estimate.scheduler.*``."""
    model = model or SchedulerModel.from_config()
    threshold = float(config.get("estimate.scheduler.threshold"))
    tasks_per_batch = int(config.get("estimate.scheduler.tasks_per_batch"))
    planned = int(config.get("estimate.scheduler.events_per_task"))
    sizes = [int(b) for b in (batch_sizes or config.get("estimate.scheduler.batch_sizes"))]
    if planned < 1 or any(b < 1 for b in sizes):
        raise ConfigError(
            f"estimate.scheduler.events_per_task {planned} / batch_sizes {sizes}: need integers >= 1"
        )
    auto = auto_events_per_task(hits)
    sizes = sorted({*sizes, planned, auto})
    choices = tuple(
        _choice(model, b, rate_hz, workers, tasks_per_batch, bytes_per_event, service_mean_s, threshold, auto)
        for b in sizes
    )
    chosen = next(c for c in choices if c.events_per_task == planned)
    return SchedulerPlan(node, workers, threshold, tasks_per_batch, chosen, choices)
