"""The load ``trackflow stream`` offers a :class:`~trackflow.service.service.Service`, and its
summaries: open-loop passes (Poisson arrivals at a rate, whether or not the service keeps up,
the backlog sampled meanwhile), closed loops (K requests always in flight), and the network
between client, scheduler and workers. Times in s, rates in Hz, sizes in bytes.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trackflow.cluster.probes import client_scheduler_rtt, scheduler_worker_rtt
from trackflow.events import Event
from trackflow.memory import rss_bytes
from trackflow.percentiles import summary
from trackflow.service.service import EventTiming, Service

__all__ = [
    "RatePass",
    "closed_loop",
    "network_cost",
    "open_loop",
    "open_loop_pass",
    "poisson_arrivals",
    "summarise",
    "summarise_rate",
]


# --------------------------------------------------------------------------- statistics
def summarise(timings: list[EventTiming], started: float) -> dict[str, Any]:
    """Counts, latency (and its parts) percentiles, throughput and bytes of one run's timings."""
    done = [t for t in timings if t.status == "done"]
    last = max((t.finished for t in done), default=started)
    return {
        "answered": len(timings),
        "done": len(done),
        "failed": sum(t.status == "failed" for t in timings),
        "shed": sum(t.status == "shed" for t in timings),
        "errors": sorted({t.error for t in timings if t.error})[:10],
        "throughput_hz": len(done) / (last - started) if done and last > started else 0.0,
        "latency_s": summary([t.latency_s for t in done]),
        "queue_s": summary([t.queue_s for t in done]),
        "transfer_s": summary([t.transfer_s for t in done]),
        "service_s": summary([t.service_s for t in done]),
        "batch_events_mean": statistics.fmean(t.batch_events for t in done) if done else None,
        "bytes_in_per_event": statistics.fmean(t.bytes_in for t in done) if done else None,
        "bytes_out_per_event": statistics.fmean(t.bytes_out for t in done) if done else None,
        "hits_per_event": statistics.fmean(t.hits for t in done) if done else None,
    }


# --------------------------------------------------------------------------- the loops
class _BacklogSampler:
    """Samples (t s since start, waiting, on the cluster, client RSS bytes) every ``interval`` s."""

    def __init__(self, service: Service, start: float, interval: float) -> None:
        self.samples: list[tuple[float, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(service, start, interval), name="trackflow-backlog", daemon=True
        )
        self._thread.start()

    def _run(self, service: Service, start: float, interval: float) -> None:
        while not self._stop.wait(interval):
            queued, in_flight = service.backlog()
            self.samples.append((time.monotonic() - start, queued, in_flight, rss_bytes()))

    def stop(self) -> list[tuple[float, int, int, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def poisson_arrivals(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (s from 0) of a Poisson stream at ``rate_hz`` over ``duration_s``."""
    expected = int(rate_hz * duration_s * 1.5 + 20)
    times = np.cumsum(rng.exponential(1.0 / rate_hz, size=expected))
    while times[-1] < duration_s:  # rare: extend until the window is covered
        more = np.cumsum(rng.exponential(1.0 / rate_hz, size=expected))
        times = np.concatenate([times, times[-1] + more])
    return times[times < duration_s]


@dataclass
class RatePass:
    """One stretch of arrivals at one rate: its answers, backlog samples and counters."""

    timings: list[EventTiming]
    backlog: list[tuple[float, int, int, int]]
    arrivals: int
    counts: dict[str, int]
    behind_s: float
    drained: bool
    window_s: float  # first arrival -> last answer (s)


def open_loop_pass(
    service: Service,
    events: Sequence[Event],
    rate_hz: float,
    duration_s: float,
    rng: np.random.Generator,
    drain_timeout_s: float,
    sample_interval_s: float,
) -> RatePass:
    """Arrivals on schedule for ``duration_s`` s (never waiting for answers), then drain."""
    service.take_timings()  # only this stretch's answers count
    arrivals = poisson_arrivals(rate_hz, duration_s, rng)
    before = service.counts()
    start = time.monotonic() + 0.05
    sampler = _BacklogSampler(service, start, sample_interval_s)
    behind = 0.0
    for i, offset in enumerate(arrivals):
        due = start + float(offset)
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        service.submit(events[i % len(events)], arrived=due)
    drained = service.wait_idle(drain_timeout_s)
    backlog = sampler.stop()
    timings = service.take_timings()
    after = service.counts()
    last = max((t.finished for t in timings), default=start)
    return RatePass(
        timings=timings,
        backlog=backlog,
        arrivals=len(arrivals),
        # the service's own counters over this stretch, against the arrivals
        counts={k: getattr(after, k) - getattr(before, k) for k in ("submitted", "done", "failed", "shed")},
        behind_s=behind,
        drained=drained,
        window_s=max(last - start, 1e-9),
    )


def summarise_rate(rate_hz: float, duration_s: float, passes: Sequence[RatePass]) -> dict[str, Any]:
    """One rate's summary over its passes (answers pooled; backlog samples end to end)."""
    timings = [t for p in passes for t in p.timings]
    done = sum(t.status == "done" for t in timings)
    summary = summarise(timings, 0.0)
    summary["throughput_hz"] = done / sum(p.window_s for p in passes) if done else 0.0
    backlog, offset = [], 0.0
    for p in passes:
        backlog += [(t + offset, *rest) for t, *rest in p.backlog]
        offset += p.backlog[-1][0] if p.backlog else 0.0
    arrivals = sum(p.arrivals for p in passes)
    summary.update(
        {
            "offered_rate_hz": rate_hz,
            "duration_s": duration_s,
            "passes": len(passes),
            "arrivals": arrivals,
            "drained": all(p.drained for p in passes),
            "counts": {k: sum(p.counts[k] for p in passes) for k in ("submitted", "done", "failed", "shed")},
            "unanswered": arrivals - len(timings),
            "source_behind_s": max(p.behind_s for p in passes),
            "backlog": {
                "t_s": [round(b[0], 3) for b in backlog],
                "queued": [b[1] for b in backlog],
                "in_flight": [b[2] for b in backlog],
                "client_rss_bytes": [b[3] for b in backlog],
                "max_queued": max((b[1] for b in backlog), default=0),
                "max_client_rss_bytes": max((b[3] for b in backlog), default=rss_bytes()),
            },
        }
    )
    return summary


def open_loop(
    service: Service,
    events: Sequence[Event],
    rate_hz: float,
    duration_s: float,
    rng: np.random.Generator,
    drain_timeout_s: float,
    sample_interval_s: float,
) -> dict[str, Any]:
    """One rate, one pass: arrivals on schedule, then drain; the summary."""
    one = open_loop_pass(service, events, rate_hz, duration_s, rng, drain_timeout_s, sample_interval_s)
    return summarise_rate(rate_hz, duration_s, [one])


def closed_loop(
    service: Service,
    events: Sequence[Event],
    concurrency: int,
    duration_s: float | None,
    count: int | None = None,
) -> tuple[dict[str, Any], list[EventTiming]]:
    """``concurrency`` clients, each submitting its next event when the last one is answered,
    for ``duration_s`` s or until ``count`` events in all; the summary and the timings."""
    service.take_timings()
    start = time.monotonic()
    deadline = start + duration_s if duration_s is not None else None
    taken = iter(range(count if count is not None else 1 << 62))
    lock = threading.Lock()

    def client_loop(offset: int) -> None:
        while deadline is None or time.monotonic() < deadline:
            with lock:
                i = next(taken, None)
            if i is None:
                return
            future = service.submit(events[(i + offset) % len(events)])
            with contextlib.suppress(Exception):  # failures are counted in the timings
                future.result()

    threads = [threading.Thread(target=client_loop, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings = service.take_timings()
    summary = summarise(timings, start)
    summary["concurrency"] = concurrency
    return summary, timings


# --------------------------------------------------------------------------- network
def _host(address: str) -> str:
    return address.rsplit("://", maxsplit=1)[-1].rsplit(":", 1)[0]


def network_cost(service: Service) -> dict[str, Any]:
    """Round trips client↔scheduler and scheduler↔worker (s), and where each party runs."""
    client = service.client
    worker_rtt = scheduler_worker_rtt(client)
    client_rtt = client_scheduler_rtt(client)
    workers = sorted(worker_rtt)
    scheduler_host = _host(client.scheduler.address)
    client_host = socket.gethostname()
    all_worker = [t for times in worker_rtt.values() for t in times]
    return {
        "client_scheduler_rtt_s": {"p50": statistics.median(client_rtt), "min": min(client_rtt)},
        "scheduler_worker_rtt_s": {"p50": statistics.median(all_worker), "min": min(all_worker)},
        "client_host": client_host,
        "scheduler_host": scheduler_host,
        "worker_hosts": sorted({_host(w) for w in workers}),
        "what": "client_scheduler: a no-op run on the scheduler from this process; scheduler_worker: "
        "identity RPCs timed in the scheduler (trackflow.cluster.probes)",
    }
