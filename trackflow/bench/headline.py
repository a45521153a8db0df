"""The headline numbers of a ``trackflow bench`` sweep (definitions in
:mod:`trackflow.bench.sweep`): scaling efficiency, fused over staged, Dask's overhead per
batch (wall) and Dask's own CPU per batch."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from trackflow.run.records import BatchResult


def _mean_throughput(sweep: Sequence[dict[str, Any]], **where: Any) -> dict[tuple, float]:
    """Mean events/s over repeats, keyed by (workers, threads, concurrency), for matching points."""
    grouped: dict[tuple, list[float]] = defaultdict(list)
    for p in sweep:
        if all(p.get(k) == v for k, v in where.items()) and p["events_per_second"]:
            grouped[(p["workers"], p["threads"], p["concurrency"])].append(p["events_per_second"])
    return {k: statistics.fmean(v) for k, v in grouped.items()}


def _rate(rounds: Sequence[dict[str, Any]], which: str) -> float | None:
    """Events/s of ``which`` (direct, plain or fused) over all the rounds: Σ events ÷ Σ wall."""
    wall = sum(r[which]["wall_s"] for r in rounds)
    return sum(r[which]["events"] for r in rounds) / wall if wall > 0 else None


def _scaling_breakdown(rounds: Sequence[dict[str, Any]], workers: int | None) -> dict[str, Any]:
    """Where the rounds' scaling loss is: ``fused_utilisation`` (the workers' busy share of W ×
    wall: lost to Dask's dispatch, the batches' ends, or one worker finishing its half later than
    the other — on the 2-core VM the last, 3-15 %, benchmarks/README.md) and
    ``event_time_ratio`` (in-task time per event on the W workers ÷ in the direct process: the
    cores' contention and what else runs on them); the efficiency is about their quotient.
    With plain processes in the rounds (no Dask, the same batches): ``plain_scaling`` (their
    events/s ÷ W × the direct loop's: the node's own scaling), ``plain_utilisation``,
    ``plain_event_time_ratio``, and ``fused_over_plain`` (what Dask's workers reach of it). Empty
    without rounds."""
    if not rounds or not workers or not all("busy_s" in r[m] for r in rounds for m in ("direct", "fused")):
        return {}

    def total(which: str, what: str) -> float:
        return float(sum(r[which][what] for r in rounds))

    modes = ("direct", "plain", "fused") if all("plain" in r for r in rounds) else ("direct", "fused")
    per_event = {m: total(m, "busy_s") / total(m, "events") for m in modes if total(m, "events")}
    complete = len(per_event) == len(modes)
    out: dict[str, Any] = {
        "fused_utilisation": total("fused", "busy_s") / (workers * total("fused", "wall_s")),
        "event_time_ratio": per_event["fused"] / per_event["direct"] if complete else None,
    }
    if "plain" in modes:
        plain, direct, fused = _rate(rounds, "plain"), _rate(rounds, "direct"), _rate(rounds, "fused")
        out |= {
            "plain_scaling": plain / (workers * direct) if plain and direct else None,
            "plain_utilisation": total("plain", "busy_s") / (workers * total("plain", "wall_s")),
            "plain_event_time_ratio": per_event["plain"] / per_event["direct"] if complete else None,
            "fused_over_plain": fused / plain if fused and plain else None,
        }
    return out


def _best_over_concurrency(throughput: dict[tuple, float], workers: int, threads: int) -> float | None:
    values = [v for (w, t, _), v in throughput.items() if w == workers and t == threads]
    return max(values) if values else None


def headline_numbers(
    sweep: Sequence[dict[str, Any]],
    batch_size: int | str,
    scaling_rounds: dict[int, list[dict[str, Any]]] | None = None,
    scaling_rounds_error: str | None = None,
) -> dict[str, Any]:
    """scaling_efficiency, fused_over_staged and dask_overhead_fraction from the sweep entries
    (definitions in the module docstring), each with what it was computed from.
    ``scaling_rounds``: per worker count, the rounds of direct and fused measured side by side
    (:func:`trackflow.bench.side_by_side.scaling_rounds`); the scaling efficiency is theirs when
    they exist for its worker count (``scaling_rounds_error``: why they do not)."""
    fused = _mean_throughput(sweep, mode="fused", batch_size=batch_size)
    staged = _mean_throughput(sweep, mode="staged", batch_size=batch_size)
    direct = _mean_throughput(sweep, mode="direct", threads=1)
    out: dict[str, Any] = {}

    multi = sorted({w for (w, t, _) in fused if t == 1 and w > 1})
    scaling_workers = 2 if 2 in multi else (multi[-1] if multi else None)
    rounds = (scaling_rounds or {}).get(scaling_workers) if scaling_workers else None
    if rounds:
        # every event of every round counts: a ratio of sums, not a mean of per-round ratios
        fused_w: float | None = _rate(rounds, "fused")
        direct_1: float | None = _rate(rounds, "direct")
        definition = (
            "fused events/s with W workers (1 thread each, the sweep's best concurrency) / "
            "(W x direct events/s, 1 thread), both over rounds taking turns (A B, B A, ...)"
        )
    else:
        direct_1 = max(direct.values()) if direct else None
        fused_w = _best_over_concurrency(fused, scaling_workers, 1) if scaling_workers else None
        definition = (
            "fused events/s with W workers (1 thread each, best concurrency) / "
            "(W x direct events/s, 1 thread), from the sweep's points"
        )
    out["scaling_efficiency"] = (
        fused_w / (scaling_workers * direct_1) if scaling_workers and fused_w and direct_1 else None
    )
    out["scaling_efficiency_detail"] = {
        "workers": scaling_workers,
        "fused_events_per_second": fused_w,
        "direct_1_thread_events_per_second": direct_1,
        "rounds": rounds or [],
        "round_ratios": [
            r["fused"]["events_per_second"] / (scaling_workers * r["direct"]["events_per_second"])
            for r in rounds or []
            if scaling_workers
        ],
        "definition": definition,
        "rounds_error": scaling_rounds_error,
        **_scaling_breakdown(rounds or [], scaling_workers),
    }

    by_workers: dict[int, float] = {}
    for workers in sorted({w for (w, _, _) in fused} & {w for (w, _, _) in staged}):
        threads = min(t for (w, t, _) in fused if w == workers)
        f = _best_over_concurrency(fused, workers, threads)
        s = _best_over_concurrency(staged, workers, threads)
        if f and s:
            by_workers[workers] = f / s
    out["fused_over_staged"] = by_workers[max(by_workers)] if by_workers else None
    out["fused_over_staged_by_workers"] = {str(w): r for w, r in by_workers.items()}

    # overhead: fused, fewest workers, 1 batch in flight (no batch waits for a busy worker)
    candidates = [
        p for p in sweep if p["mode"] == "fused" and p["batch_size"] == batch_size and p["overhead"]
    ]
    if candidates:
        workers = min(p["workers"] for p in candidates)
        threads = min(p["threads"] for p in candidates if p["workers"] == workers)
        chosen = [p for p in candidates if p["workers"] == workers and p["threads"] == threads]
        k = min(p["concurrency"] for p in chosen)
        chosen = [p for p in chosen if p["concurrency"] == k]
        overhead = sum(p["overhead"]["sum_s"] for p in chosen)
        task = sum(p["overhead"]["task_sum_s"] for p in chosen)
        batches = sum(p["overhead"]["batches"] for p in chosen)
        out["dask_overhead_fraction"] = overhead / task if task > 0 else None
        out["dask_overhead_per_batch_s"] = overhead / batches if batches else None
        out["dask_overhead_detail"] = {
            "workers": workers,
            "threads": threads,
            "concurrency": k,
            "batch_size": batch_size,
            "batches": batches,
            "mean_task_s": task / batches if batches else None,
            "worker_side_s_per_batch": statistics.fmean(p["overhead"]["worker_side_mean_s"] for p in chosen),
            "definition": "sum over batches of (client-observed batch latency - in-task time) / "
            "sum of in-task time; fused, fewest workers, lowest concurrency",
        }
    else:
        out["dask_overhead_fraction"] = None
        out["dask_overhead_per_batch_s"] = None
        out["dask_overhead_detail"] = {"definition": "no fused run in the sweep"}
    return out


def batch_overhead(results: Sequence[BatchResult]) -> dict[str, Any] | None:
    """Per-batch Dask overhead of one run: client latency − task time, and inside the task the
    time not spent on events (task wall − Σ event wall)."""
    pairs = [
        (r.latency_s, sum(t.stop - t.start for t in r.tasks), sum(e.stop - e.start for e in r.events))
        for r in results
        if r.tasks and r.events and math.isfinite(r.latency_s)
    ]
    if not pairs:
        return None
    return {
        "batches": len(pairs),
        "sum_s": float(sum(max(lat - task, 0.0) for lat, task, _ in pairs)),
        "task_sum_s": float(sum(task for _, task, _ in pairs)),
        "worker_side_mean_s": float(statistics.fmean(max(task - ev, 0.0) for _, task, ev in pairs)),
    }


def dask_cpu_per_batch(sweep: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """CPU seconds Dask itself uses per batch, outside the task, from the fused runs with the
    fewest workers: ``client_process`` (client, and the scheduler and nannies of a local
    cluster) and ``worker_side`` (worker process CPU − in-task time: event loop, comms,
    (de)serialisation, profiler). On a node whose cores the workers fill, that CPU is taken from
    the workers' cores: the estimate adds it to the service time."""
    fused = [p for p in sweep if p["mode"] == "fused" and p.get("cpu_s") and p["cpu_s"]["batches"]]
    if not fused:
        return None
    workers = min(p["workers"] for p in fused)
    chosen = [p["cpu_s"] for p in fused if p["workers"] == workers]
    batches = sum(c["batches"] for c in chosen)
    return {
        "workers": workers,
        "batches": batches,
        "client_process": sum(c["client_process"] for c in chosen) / batches,
        "worker_side": max(sum(c["workers"] - c["in_task"] for c in chosen) / batches, 0.0),
        "what": "CPU s per batch outside the task: client_process = client (+ scheduler and "
        "nannies of a local cluster); worker_side = worker CPU - in-task time",
    }
