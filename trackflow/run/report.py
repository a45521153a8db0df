"""``report.json``: what a reconstruction run did, how fast, where the time went, what failed.

Schema (version 1; times in s, Unix time for instants, bytes for sizes)::

    version, mode, cluster, dashboard, device, workers, threads_per_worker, batch_size,
    max_hits_per_batch, max_in_flight, retries, task_timeout_s
    pipeline:    the effective settings the workers ran (trackflow.pipeline.settings; null with a
                 custom pipeline loader): models_dir, manifest_sha256, features {names, scale},
                 model_files {stage: {file, kind, sha256} or null}, stages {stage: {field: value}}
                 (a layer map as {pairs, sha256}), sources {dotted key: cli | argument | user |
                 manifest | default}
    events:      total, done (tracks written), failed (events in failed_events), resumed
                 (finished by an earlier run), processed (this run)
    hits:        hits of the events processed this run
    tracks:      tracks of every done event (this run and resumed)
    wall_s:      first submission to last result of this run
    throughput:  events_per_s, hits_per_s          (events processed this run / wall_s)
    latency_s:   p50, p95, p99, mean, max  — per event: its batch's submission to result at the client
    event_time_s: p50, p95, p99, mean, max — per event: load + pipeline time inside the task
    queueing_s:  p50, p95, p99, mean, max  — per batch: submission to its first task starting
                 (each summary from trackflow.percentiles: every key null when nothing finished)
    stages:      {stage: {total_s, mean_s, share}}  — load, the five stages, finish (share of their sum)
    dask_overhead: mean_s, fraction — per batch: latency − queueing − task time; fraction of task time
                 (staged: includes the waits between a batch's stage tasks)
    workers:     utilisation (busy / wall / threads), per_worker {address: {batches, events,
                 busy_s, nthreads, utilisation, stages {task name: count}, resources {GPU: 1, ...}}}
    memory:      rss_growth — the largest, over workers, of (median RSS of a worker's last
                 ``window`` events ÷ that of its first ``window`` events − 1), window = min(100,
                 events/4); per_worker {address: {first_bytes, last_bytes, growth}}
    network:     bytes_between_workers (worker transfer logs), result_bytes (results to the client),
                 scheduler_worker_rtt_s {p50, min, max, per_worker}, client_scheduler_rtt_s
    failed_events: [{event_id, stage, error, message, path, attempts, traceback}]   — this run and
                 resumed; stage is load, a pipeline stage, finish, task (the whole task: timeout,
                 worker lost) or score (tracks written, but the event's truth is unusable);
                 traceback: the text of an internal (not a TrackflowError) error, else null
    per_event:   [{event_id, batch_id, worker, hits, tracks, latency_s, timings, counts, rss_bytes}]
                 — this run; rss_bytes: the worker's resident memory after the event
    efficiency:  trackflow.metrics summary when the inputs have truth, else null
    outputs:     submission, manifest, batches, report, performance_report, plots (the PNG and JSON
                 files of trackflow.run.tracking_plots beside report.json)

``null`` stands for "not measured" (e.g. the network in direct mode, latency with no event done).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.files import json_safe
from trackflow.percentiles import summary
from trackflow.run.records import BatchResult, EventFailure

REPORT_VERSION = 1
#: exit codes of ``trackflow reconstruct``
EXIT_OK = 0  # every event done
EXIT_FAILED_EVENTS = 3  # the run finished, some events failed (listed in report.json)


@dataclass
class NetworkStats:
    """What the network did during a run (None = not measured, e.g. direct mode)."""

    bytes_between_workers: int | None = None
    result_bytes: int | None = None
    scheduler_worker_rtt: dict[str, list[float]] | None = None
    client_scheduler_rtt: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        rtt = None
        if self.scheduler_worker_rtt:
            every = [t for times in self.scheduler_worker_rtt.values() for t in times]
            rtt = {
                "p50": statistics.median(every),
                "min": min(every),
                "max": max(every),
                "per_worker": {w: statistics.median(t) for w, t in sorted(self.scheduler_worker_rtt.items())},
            }
        client_rtt = statistics.median(self.client_scheduler_rtt) if self.client_scheduler_rtt else None
        return {
            "bytes_between_workers": self.bytes_between_workers,
            "result_bytes": self.result_bytes,
            "scheduler_worker_rtt_s": rtt,
            "client_scheduler_rtt_s": client_rtt,
        }


# --------------------------------------------------------------------------- the report
@dataclass
class RunStats:
    """Everything a run hands to :func:`build_report`."""

    settings: dict[str, Any]
    results: list[BatchResult]
    resumed_events: list[dict[str, Any]] = field(default_factory=list)
    resumed_failures: list[EventFailure] = field(default_factory=list)
    total_events: int = 0
    wall_s: float = 0.0
    worker_threads: dict[str, int] = field(default_factory=dict)
    worker_resources: dict[str, dict[str, float]] = field(default_factory=dict)
    network: NetworkStats = field(default_factory=NetworkStats)
    efficiency: dict[str, Any] | None = None
    score_failures: list[EventFailure] = field(default_factory=list)
    outputs: dict[str, str | None] = field(default_factory=dict)


def _batch_timing(result: BatchResult) -> tuple[float, float, float]:
    """(queueing, task time, overhead) of one batch in s."""
    if not result.tasks:
        return math.nan, math.nan, math.nan
    first_start = min(t.start for t in result.tasks)
    queueing = max(first_start - result.submitted, 0.0)
    task_s = sum(t.stop - t.start for t in result.tasks)
    overhead = max(result.latency_s - queueing - task_s, 0.0)
    return queueing, task_s, overhead


def _new_worker() -> dict[str, Any]:
    # stages: tasks run per task name (a stage name in staged mode, "fused" or "load" otherwise)
    return {"batches": set(), "events": 0, "busy_s": 0.0, "stages": Counter()}


def build_report(stats: RunStats) -> dict[str, Any]:
    """The report.json dictionary (schema in the module docstring)."""
    results = sorted(stats.results, key=lambda r: r.batch.batch_id)
    events = [(r, e) for r in results for e in r.events]
    failures = sorted(
        [*stats.resumed_failures, *(f for r in results for f in r.failures), *stats.score_failures],
        key=lambda f: f.event_id,
    )
    processed = sum(len(r.batch) for r in results)
    hits = sum(e.hits for _, e in events)
    wall = stats.wall_s

    stage_totals: dict[str, float] = defaultdict(float)
    for _, e in events:
        for stage, seconds in e.timings.items():
            stage_totals[stage] += seconds
    stage_sum = sum(stage_totals.values())
    stages = {
        stage: {
            "total_s": total,
            "mean_s": total / len(events),
            "share": total / stage_sum if stage_sum > 0 else None,
        }
        for stage, total in stage_totals.items()
    }

    timings = [_batch_timing(r) for r in results]
    task_total = sum(t for _, t, _ in timings if math.isfinite(t))
    overheads = [o for _, _, o in timings if math.isfinite(o)]

    per_worker: dict[str, dict[str, Any]] = {}
    for r in results:
        for t in r.tasks:
            w = per_worker.setdefault(t.worker, _new_worker())
            w["batches"].add(r.batch.batch_id)
            w["stages"][t.name] += 1
            w["busy_s"] += t.stop - t.start
        for e in r.events:
            per_worker.setdefault(e.worker, _new_worker())["events"] += 1
    for address, w in per_worker.items():
        w["batches"] = len(w["batches"])
        w["stages"] = dict(sorted(w["stages"].items()))
        w["resources"] = stats.worker_resources.get(address, {})
        w["nthreads"] = stats.worker_threads.get(address, 1)
        w["utilisation"] = w["busy_s"] / (wall * w["nthreads"]) if wall > 0 else None
    total_threads = sum(stats.worker_threads.values()) or sum(w["nthreads"] for w in per_worker.values())
    busy = sum(w["busy_s"] for w in per_worker.values())

    done_events = len(events) + len(stats.resumed_events)
    report = {
        "version": REPORT_VERSION,
        **stats.settings,
        "events": {
            "total": stats.total_events,
            "done": done_events,
            "failed": len({f.event_id for f in failures}),
            "resumed": len(stats.resumed_events) + len(stats.resumed_failures),
            "processed": processed,
        },
        "hits": hits,
        "tracks": sum(e.tracks for _, e in events) + sum(e["tracks"] for e in stats.resumed_events),
        "wall_s": wall,
        "throughput": {
            "events_per_s": processed / wall if wall > 0 else None,
            "hits_per_s": hits / wall if wall > 0 else None,
        },
        "latency_s": summary([r.latency_s for r, _ in events]),
        "event_time_s": summary([e.stop - e.start for _, e in events]),
        "queueing_s": summary([q for q, _, _ in timings]),
        "stages": stages,
        "dask_overhead": {
            "mean_s": statistics.fmean(overheads) if overheads else None,
            "fraction": sum(overheads) / task_total if task_total > 0 and overheads else None,
        },
        "workers": {
            "utilisation": busy / (wall * total_threads) if wall > 0 and total_threads else None,
            "per_worker": dict(sorted(per_worker.items())),
        },
        "memory": memory_growth([e for _, e in events]),
        "network": stats.network.to_dict(),
        "failed_events": [f.to_dict() for f in failures],
        "per_event": [
            {
                "event_id": e.event_id,
                "batch_id": r.batch.batch_id,
                "worker": e.worker,
                "hits": e.hits,
                "tracks": e.tracks,
                "latency_s": r.latency_s,
                "timings": e.timings,
                "counts": e.counts,
                "rss_bytes": e.rss_bytes,
            }
            for r, e in events
        ],
        "efficiency": stats.efficiency,
        "outputs": stats.outputs,
    }
    return json_safe(report)


def memory_growth(events: Sequence[Any], window: int = 100) -> dict[str, Any]:
    """How much each worker's resident memory grew from its first to its last events (a leak
    shows as growth that does not level off; the soak benchmark asks for < 10 %)."""
    by_worker: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        if event.rss_bytes:
            by_worker[event.worker].append(event)
    per_worker = {}
    for worker, records in sorted(by_worker.items()):
        records.sort(key=lambda e: e.stop)
        n = min(window, len(records) // 4)
        if n < 1:
            continue
        first = float(np.median([e.rss_bytes for e in records[:n]]))
        last = float(np.median([e.rss_bytes for e in records[-n:]]))
        per_worker[worker] = {
            "first_bytes": first,
            "last_bytes": last,
            "growth": last / first - 1.0,
            "window": n,
        }
    growth = max((w["growth"] for w in per_worker.values()), default=None)
    return {"rss_growth": growth, "per_worker": per_worker}


@dataclass
class RunReport:
    """What :func:`trackflow.run.reconstruct` returns: the report and where the outputs are.

    ``exit_code``: 0 when every event was done, 3 (:data:`EXIT_FAILED_EVENTS`) when the run
    finished but some events failed.
    """

    report: dict[str, Any]
    report_path: Path
    submission_path: Path
    failures: list[EventFailure] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED_EVENTS if self.failures else EXIT_OK

    def summary_lines(self) -> list[str]:
        """A few lines for the terminal: events, tracks, speed, latency, stage shares, files."""
        r = self.report
        ev = r["events"]
        lines = [
            f"events: {ev['done']} done, {ev['failed']} failed, {ev['resumed']} resumed from an "
            f"earlier run (of {ev['total']}); mode {r.get('mode')}, {r.get('n_workers')} worker(s)",
            f"tracks: {r['tracks']}",
        ]
        eff = r.get("efficiency")
        if eff:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in eff.items() if isinstance(v, float))
            lines.append(f"efficiency: {shown}")
        tp = r["throughput"]
        if tp["events_per_s"] is not None:
            lines.append(
                f"throughput: {tp['events_per_s']:.3g} events/s, {tp['hits_per_s']:.3g} hits/s "
                f"({ev['processed']} events in {r['wall_s']:.3g} s)"
            )
        lat = r["latency_s"]
        if lat["p50"] is not None:
            lines.append(
                f"latency per event: p50 {lat['p50']:.3g} s, p95 {lat['p95']:.3g} s, p99 {lat['p99']:.3g} s"
            )
        if r["stages"]:
            shares = ", ".join(
                f"{name} {100 * s['share']:.0f}%" for name, s in r["stages"].items() if s["share"] is not None
            )
            lines.append(f"stage shares: {shares}")
        lines.append(f"report: {self.report_path}")
        lines.append(f"submission: {self.submission_path}")
        lines.extend(f"plot: {path}" for path in (r.get("outputs") or {}).get("plots") or [])
        return lines
