"""Service-time samples of one (mode, workers, threads) configuration, gathered from a sweep's
batch results into bench.json's ``service_times`` record
(:class:`~trackflow.estimation.bench_file.ServiceTimes`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trackflow.estimation.bench_file import ServiceTimes
from trackflow.percentiles import summary
from trackflow.run.records import BatchResult

__all__ = ["ServiceSamples", "service_key"]


def service_key(mode: str, workers: int, threads: int) -> str:
    """The key of a configuration in bench.json's ``service_times``: ``"mode/wW/tT"``."""
    return f"{mode}/w{workers}/t{threads}"


@dataclass
class ServiceSamples:
    """The samples as they are measured (s; hits; worker addresses): per event, in-task time
    (load + pipeline), hits, the part of it reading files, the worker; per batch, the task
    time, its events, its worker, the client-observed latency, the overhead (latency − task
    time) and the batches in flight."""

    mode: str
    workers: int
    threads: int
    device: str
    per_event_s: list[float] = field(default_factory=list)
    per_event_hits: list[int] = field(default_factory=list)
    per_event_read_s: list[float] = field(default_factory=list)
    per_event_worker: list[str] = field(default_factory=list)
    per_batch_s: list[float] = field(default_factory=list)
    per_batch_events: list[int] = field(default_factory=list)
    per_batch_worker: list[str] = field(default_factory=list)
    per_batch_latency_s: list[float] = field(default_factory=list)
    per_batch_overhead_s: list[float] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)

    def add(self, results: Iterable[BatchResult], concurrency: int) -> None:
        """Take the events and batches of one run made with ``concurrency`` batches in flight."""
        for r in results:
            for e in r.events:
                self.per_event_s.append(e.stop - e.start)
                self.per_event_hits.append(e.hits)
                self.per_event_read_s.append(e.read_s)
                self.per_event_worker.append(e.worker)
            if not r.tasks or not r.events:
                continue
            task_s = sum(t.stop - t.start for t in r.tasks)
            self.per_batch_s.append(task_s)
            self.per_batch_events.append(len(r.events))
            self.per_batch_worker.append(r.tasks[-1].worker)
            self.per_batch_latency_s.append(r.latency_s)
            self.per_batch_overhead_s.append(r.latency_s - task_s)
            self.concurrency.append(concurrency)

    def to_record(self) -> ServiceTimes:
        """The bench.json record: the samples, with their percentile summaries overall and per
        worker."""
        by_worker = {}
        for worker in sorted(set(self.per_event_worker) | set(self.per_batch_worker)):
            by_worker[worker] = {
                "events": sum(w == worker for w in self.per_event_worker),
                "per_event_s": summary(
                    s for s, w in zip(self.per_event_s, self.per_event_worker, strict=True) if w == worker
                ),
                "per_batch_s": summary(
                    s for s, w in zip(self.per_batch_s, self.per_batch_worker, strict=True) if w == worker
                ),
            }
        return ServiceTimes(
            mode=self.mode,
            workers=self.workers,
            threads=self.threads,
            device=self.device,
            per_event_s=list(self.per_event_s),
            per_event_hits=list(self.per_event_hits),
            per_event_read_s=list(self.per_event_read_s),
            per_event_worker=list(self.per_event_worker),
            per_batch_s=list(self.per_batch_s),
            per_batch_events=list(self.per_batch_events),
            per_batch_worker=list(self.per_batch_worker),
            per_batch_latency_s=list(self.per_batch_latency_s),
            per_batch_overhead_s=list(self.per_batch_overhead_s),
            concurrency=list(self.concurrency),
            by_worker=by_worker,
            per_event=summary(self.per_event_s),
            per_batch=summary(self.per_batch_s),
        )
