"""``trackflow bench``: sweep workers × threads × batches in flight × mode on the same events.

Like the study's figures (throughput against model instances, against concurrent requests, custom
backend against ensemble against direct inference, per-stage breakdown), measured with trackflow's
own executors (:mod:`trackflow.run.executors`) on one cluster per (workers, threads) pair.

``bench.json`` (times in s, sizes in bytes, rates in events/s; typed, written and read back
through :class:`trackflow.estimation.bench_file.BenchFile`, whose schema version is ``version``)::

    version, created, input_dir, config, machine, device, batch_size, events, hits_per_event
    sweep:          one entry per (mode, workers, threads, concurrency, repeat): replays (times
                    the events ran in the point, bench.min_point_s), events_per_second,
                    hits_per_second, wall_s, latency_s / event_time_s / queueing_s percentiles,
                    stages {stage: mean_s}, stage_share, dask_overhead, utilisation, per_worker,
                    bytes_between_workers, result_bytes, failed
    scaling_efficiency:   fused events/s with W workers (W = 2, else the most measured, 1 thread
                          each, best concurrency) ÷ (W × direct events/s on 1 thread). With
                          bench.scaling_rounds, both measured side by side: after the sweep's points
                          on that cluster, the direct loop and fused at its best concurrency take
                          turns (A B, B A, ...), and the ratio is over all their events (the
                          machine's speed drifts by 10-20 % within seconds); the direct loop in a
                          process of its own (:mod:`trackflow.bench.side_by_side`); the rounds
                          are in scaling_efficiency_detail. Else from the sweep's own points.
                          The rounds also run W plain processes (no Dask) on the same batches:
                          detail's plain_scaling is the node's own (W × 1 thread ÷ W × one alone),
                          fused_over_plain what Dask costs against it
    fused_over_staged:    best fused ÷ best staged events/s at the same workers (the most
                          workers measured); per worker count in fused_over_staged_by_workers
    dask_overhead_fraction: at the default batch size, fused, 1 worker, 1 batch in flight (so no
                          batch waits for a busy worker): Σ(client-observed batch latency − in-task
                          time) ÷ Σ in-task time. Everything Dask adds per batch — submission,
                          scheduling, transfer of the result, the client's own loop — counts.
    dask_overhead_per_batch_s: the mean of that difference (s per batch)
    dask_cpu_per_batch_s: CPU s Dask itself uses per batch outside the task, fused, fewest
                    workers: client_process (client + local scheduler and nannies), worker_side
                    (worker CPU − in-task time); each sweep entry has its cpu_s
    service_times:  per "mode/wW/tT": per-event in-task times (load + pipeline, s) with their
                    hits, worker and the seconds of them spent reading the event's files
                    (per_event_read_s), per-batch task times with their event counts, per-batch
                    overhead, and per-worker percentiles
    size_scaling:   time per event against hits (:mod:`trackflow.estimation.size_model`): per
                    stage a + b·hits + c·edges(hits), edges(hits) a power law of the measured
                    counts, fitted on the size sweep (direct, 1 thread, events subsampled to each
                    size: random hits, a lower pile-up in the same detector); a, b, k: the power
                    law a + b·hits^k alongside (the only model without a size sweep); measured:
                    the sweep's events (hits, seconds, stages, counts, working_bytes)
    node_contention: {cores, slowdown, alone_s, together_s, events, window_s}: in-task seconds
                    per event with every core running a single-threaded pipeline process at once
                    ÷ one process alone, no Dask (:mod:`trackflow.bench.contention`); null
                    when not measured (--device cuda, bench.contention false, or it failed:
                    node_contention_error says why)
    network:        round_trip_s (scheduler→worker→scheduler, p50/mean/min), client_scheduler_s,
                    transfer_bytes_per_s (one 16 MiB payload between two workers, or client→worker),
                    bytes_per_event (input hits file + result rows) and bytes_per_hit
    memory:         worker_rss_bytes (after loading the models), worker_peak_bytes, peak_hits
    plots:          the PNG files written next to bench.json
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import pickle
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trackflow.bench.bench_config import BenchConfig
from trackflow.bench.contention import measure_node_contention
from trackflow.bench.headline import batch_overhead, dask_cpu_per_batch, headline_numbers
from trackflow.bench.machine import machine_info, result_bytes
from trackflow.bench.plots import write_plots
from trackflow.bench.point_batches import PointBatches, warm_up
from trackflow.bench.service_samples import ServiceSamples, service_key
from trackflow.bench.side_by_side import PlainProcesses, scaling_rounds
from trackflow.bench.size_sweep import size_sweep, working_memory_fit
from trackflow.cluster.probes import (
    bytes_between_workers,
    client_scheduler_rtt,
    cpu_seconds,
    scheduler_worker_rtt,
    transfer_rate,
    worker_memory,
    worker_threads,
)
from trackflow.errors import ConfigError
from trackflow.estimation.bench_file import (
    BenchFile,
    DaskCpu,
    HitsPerEvent,
    MemoryFigures,
    NetworkFigures,
    RoundTrip,
)
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.size_model import MemoryScaling, SizeScaling
from trackflow.events.subsample import subsample_event
from trackflow.events.trackml import EventRef, list_events
from trackflow.memory import process_memory
from trackflow.run.batching import AUTO, Batch, count_hits
from trackflow.run.executors import DASK_MODES, DaskExecutor, Executor, make_executor
from trackflow.run.plugin import PipelinePlugin, load_pipeline
from trackflow.run.records import BatchResult
from trackflow.run.report import NetworkStats, RunStats, build_report

__all__ = ["BenchConfig", "run_bench", "write_plots"]

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- one sweep point
def _summarise(report: dict[str, Any], point: dict[str, Any], result_bytes: int) -> dict[str, Any]:
    """The sweep entry of one run: the report's numbers a plot or a ratio needs."""
    stages = report.get("stages") or {}
    overhead = report.get("dask_overhead") or {}
    return {
        **point,
        "events": report["events"]["processed"],
        "failed": report["events"]["failed"],
        "hits": report["hits"],
        "wall_s": report["wall_s"],
        "events_per_second": report["throughput"]["events_per_s"],
        "hits_per_second": report["throughput"]["hits_per_s"],
        "latency_s": report["latency_s"],
        "event_time_s": report["event_time_s"],
        "queueing_s": report["queueing_s"],
        "stages": {name: s["mean_s"] for name, s in stages.items()},
        "stage_share": {name: s["share"] for name, s in stages.items()},
        "dask_overhead": overhead,
        "utilisation": report["workers"]["utilisation"],
        "per_worker": report["workers"]["per_worker"],
        "bytes_between_workers": report["network"]["bytes_between_workers"],
        "result_bytes": result_bytes,
        "failed_events": report["failed_events"][:10],
    }


def _run_point(
    executor: Executor,
    batches: Sequence[Batch],
    point: dict[str, Any],
    client: Client | None,
    threads_by_worker: dict[str, int],
    rtt: dict[str, list[float]] | None,
) -> tuple[dict[str, Any], list[BatchResult]]:
    since = time.time()
    cpu_before = cpu_seconds(client) if client is not None else None
    tic = time.perf_counter()
    results = list(executor.execute(batches))
    wall = time.perf_counter() - tic
    cpu_after = cpu_seconds(client) if client is not None else None
    network = NetworkStats(
        bytes_between_workers=bytes_between_workers(client, since) if client is not None else None,
        result_bytes=result_bytes(results) if client is not None else None,
        scheduler_worker_rtt=rtt,
    )
    stats = RunStats(
        settings={"mode": point["mode"], "workers": point["workers"]},
        results=results,
        total_events=sum(len(b) for b in batches),
        wall_s=wall,
        worker_threads=threads_by_worker,
        network=network,
    )
    entry = _summarise(build_report(stats), point, result_bytes(results))
    if cpu_before is not None and cpu_after is not None:
        entry["cpu_s"] = {
            "client_process": cpu_after["client"] - cpu_before["client"],
            "workers": sum(cpu_after["workers"].get(w, 0.0) - t for w, t in cpu_before["workers"].items()),
            "in_task": float(sum(t.stop - t.start for r in results for t in r.tasks)),
            "batches": sum(1 for r in results if r.tasks),
        }
    return entry, results


# --------------------------------------------------------------------------- the sweep
def _events(cfg: BenchConfig) -> list[EventRef]:
    refs = list_events(cfg.input_dir)
    if cfg.max_events is not None:
        refs = refs[: int(cfg.max_events)]
    if not refs:
        raise ConfigError(f"{cfg.input_dir}: no TrackML events to bench")
    return refs


def _cut_events(cfg: BenchConfig, refs: list[EventRef]) -> list[EventRef]:
    """The events cut down to ``cfg.hits`` random hits each (unchanged when None)."""
    if cfg.hits is None:
        return refs
    rng = np.random.default_rng(0)
    directory = cfg.out_dir / f"events-{cfg.hits}-hits"
    shutil.rmtree(directory, ignore_errors=True)
    # events already smaller than the target are benched as they are
    return [subsample_event(ref, cfg.hits, rng, directory) or ref for ref in refs]


def _sweep_dask(
    cfg: BenchConfig,
    batcher: PointBatches,
    workers: int,
    threads: int,
    sweep: list[dict[str, Any]],
    samples: dict[str, ServiceSamples],
    measurements: dict[str, Any],
    log: Any,
) -> None:
    """The Dask points of one cluster of ``workers`` × ``threads``. With several 1-thread
    workers and the direct mode swept, then the scaling rounds at fused's best concurrency
    (:func:`~trackflow.bench.side_by_side.scaling_rounds`, kept in
    ``measurements["scaling_rounds"][workers]``): the scaling efficiency measured side by side,
    as the machine's speed drifts between points minutes apart."""
    dask_modes = [m for m in cfg.modes if m in DASK_MODES]
    with replace(cfg.cluster, workers=workers, threads_per_worker=threads).open() as opened:
        client = opened.client
        plugin = PipelinePlugin(cfg.models_dir, cfg.device, threads, cfg.loader)
        client.register_plugin(plugin)
        gpu = opened.gpu_worker_count() > 0
        threads_by_worker = worker_threads(client)
        n_workers = len(threads_by_worker)
        slots = sum(threads_by_worker.values())
        memory = worker_memory(client)
        measurements.setdefault("worker_rss_bytes", []).extend(m["rss"] for m in memory.values())
        rtt = scheduler_worker_rtt(client)
        measurements.setdefault("rtt", []).extend(t for ts in rtt.values() for t in ts)
        measurements.setdefault("client_rtt", []).extend(client_scheduler_rtt(client))
        if len(threads_by_worker) >= 2 or "transfer" not in measurements:
            measurements["transfer"] = transfer_rate(client)
        for mode in dask_modes:
            executor = make_executor(
                mode,
                client=client,
                plugin_name=plugin.name,
                max_in_flight=1,
                gpu=gpu,
            )
            assert isinstance(executor, DaskExecutor)  # a Dask mode's: it has max_in_flight
            batcher.calibrate(warm_up(executor, batcher(slots, once=True), slots))
            batches = batcher(slots)
            for concurrency in cfg.concurrency:
                executor.max_in_flight = concurrency
                for repeat in range(cfg.repeats):
                    point = {
                        "mode": mode,
                        "workers": n_workers,
                        "threads": threads,
                        "concurrency": concurrency,
                        "batch_size": cfg.batch_size,
                        "replays": batcher.replays,
                        "repeat": repeat,
                        "device": cfg.device,
                    }
                    entry, results = _run_point(executor, batches, point, client, threads_by_worker, rtt)
                    entry["overhead"] = batch_overhead(results)
                    sweep.append(entry)
                    key = service_key(mode, n_workers, threads)
                    samples.setdefault(key, ServiceSamples(mode, n_workers, threads, cfg.device)).add(
                        results, concurrency
                    )
                    log(entry)
            if (
                "direct" in cfg.modes
                and cfg.scaling_rounds
                and mode == "fused"
                and threads == 1
                # the worker count the headline compares (headline_numbers): 2, else the most
                and n_workers == (2 if 2 in cfg.workers else max(cfg.workers)) >= 2
            ):
                fused = [
                    p
                    for p in sweep
                    if p["mode"] == "fused" and p["workers"] == n_workers and p["threads"] == threads
                ]
                best = max(fused, key=lambda p: p["events_per_second"] or 0.0)["concurrency"]
                executor.max_in_flight = best
                try:
                    # W plain processes (no Dask), the first also the rounds' direct loop
                    with PlainProcesses(
                        (cfg.models_dir, cfg.device, 1, cfg.loader), slots, warm_up=batcher(1, once=True)
                    ) as plain:
                        rounds = scaling_rounds(
                            cfg.scaling_rounds, plain.first, executor, batcher, slots, log, plain=plain
                        )
                    measurements.setdefault("scaling_rounds", {})[n_workers] = rounds
                except (RuntimeError, pickle.PicklingError, TypeError, AttributeError) as error:
                    # the sweep's points still give a scaling efficiency, minutes apart
                    measurements["scaling_rounds_error"] = f"{type(error).__name__}: {error}"
        memory = worker_memory(client)
        measurements.setdefault("worker_peak_bytes", []).extend(m["peak"] for m in memory.values())


def _sweep_direct(
    cfg: BenchConfig,
    batcher: PointBatches,
    sweep: list[dict[str, Any]],
    samples: dict[str, ServiceSamples],
    log: Any,
) -> None:
    for threads in cfg.threads:
        pipeline = load_pipeline(cfg.models_dir, cfg.device, threads, cfg.loader)
        executor = make_executor("direct", pipeline=pipeline)
        batcher.calibrate(warm_up(executor, batcher(1, once=True), 1))
        for repeat in range(cfg.repeats):
            point = {
                "mode": "direct",
                "workers": 1,
                "threads": threads,
                "concurrency": 1,
                "batch_size": cfg.batch_size,
                "replays": batcher.replays,
                "repeat": repeat,
                "device": cfg.device,
            }
            entry, results = _run_point(executor, batcher(1), point, None, {"direct": threads}, None)
            entry["overhead"] = None
            sweep.append(entry)
            key = service_key("direct", 1, threads)
            samples.setdefault(key, ServiceSamples("direct", 1, threads, cfg.device)).add(results, 1)
            log(entry)


def _config_record(cfg: BenchConfig) -> dict[str, Any]:
    """bench.json's ``config``: the BenchConfig as it was run, its cluster options flat beside
    the rest (``cluster`` the spec, ``scheduler_file``, ``adapt``, ``profile_file``,
    ``insecure``), paths as strings; the sweep's workers and threads are the config's lists."""
    record: dict[str, Any] = {}
    for f in fields(cfg):
        if f.name == "cluster":
            cluster = cfg.cluster
            record.update(
                cluster=cluster.spec,
                scheduler_file=cluster.scheduler_file,
                adapt=cluster.adapt,
                profile_file=cluster.profile_file,
                insecure=cluster.insecure,
            )
        elif f.name != "loader":
            record[f.name] = getattr(cfg, f.name)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in record.items()}


def _size_scaling(points: Sequence[dict[str, Any]], samples: dict[str, ServiceSamples]) -> SizeScaling:
    """The per-stage model on the size sweep (3 sizes or more); else the power law through the
    sweep and the direct 1-thread events; else through any measured events."""
    if len({p["hits"] for p in points}) >= 3:
        return SizeScaling.fit_points(points)
    direct_1 = samples.get("direct/w1/t1")
    hits = [p["hits"] for p in points] + (direct_1.per_event_hits if direct_1 else [])
    seconds = [p["seconds"] for p in points] + (direct_1.per_event_s if direct_1 else [])
    if not hits:  # no direct run: fall back on the fused per-event times
        any_samples = next(iter(samples.values()))
        hits, seconds = any_samples.per_event_hits, any_samples.per_event_s
    return SizeScaling.fit(np.asarray(hits), np.asarray(seconds))


def _node_contention(
    cfg: BenchConfig, refs: Sequence[EventRef], log: Any
) -> tuple[NodeContention | None, str | None]:
    """The measured node contention, or None and why it was not measured."""
    if not cfg.contention:
        return None, "not asked for (bench.contention false)"
    if cfg.device != "cpu":
        return None, f"measured on CPU only (device {cfg.device!r})"
    try:
        contention = measure_node_contention(
            refs, cfg.models_dir, cfg.device, cfg.loader, window_s=float(cfg.contention_seconds)
        )
    except (RuntimeError, ValueError, TypeError, AttributeError, pickle.PicklingError) as error:
        # the bench's other figures stand without it; the estimate then assumes no contention
        return None, f"{type(error).__name__}: {error}"
    log(
        {
            "mode": "contention",
            "workers": contention.cores,
            "threads": 1,
            "events": contention.events.get("together"),
            "hits": f"slowdown x{contention.slowdown:.3f}",
        }
    )
    return contention, None


def describe_point(entry: dict[str, Any]) -> str:
    """One line for a measured point of the sweep (mode, workers, threads, in flight, speed)."""
    rate = entry.get("events_per_second")
    shown = f"{rate:.3g} events/s" if rate else f"{entry.get('events')} events"
    return (
        f"bench: {entry['mode']:<6} workers={entry.get('workers', '-')} "
        f"threads={entry.get('threads', '-')} in-flight={entry.get('concurrency', '-')} "
        f"hits={entry.get('hits', '-')}: {shown}"
    )


def run_bench(config_: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep, write ``bench.json`` and the PNG plots to ``out_dir``; return bench.json's
    content (schema in the module docstring).

    ``progress`` gets one line per measured point (:func:`describe_point`) as the sweep goes;
    without it the lines go to this module's logger at INFO. Nothing is printed here.
    """
    cfg = config_
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    originals = _events(cfg)
    refs = _cut_events(cfg, originals)
    batcher = PointBatches(refs, cfg.batch_size, cfg.min_point_s, max(cfg.workers) * max(cfg.threads))

    def log(entry: dict[str, Any]) -> None:
        line = describe_point(entry)
        if progress is not None:
            progress(line)
        else:
            logger.info("%s", line)

    started = time.time()
    load_start = os.getloadavg()  # other work on the machine skews every timing: recorded
    sweep: list[dict[str, Any]] = []
    samples: dict[str, ServiceSamples] = {}
    measurements: dict[str, Any] = {}
    if "direct" in cfg.modes:
        _sweep_direct(cfg, batcher, sweep, samples, log)
    if any(m in DASK_MODES for m in cfg.modes):
        for workers in cfg.workers:
            for threads in cfg.threads:
                _sweep_dask(cfg, batcher, workers, threads, sweep, samples, measurements, log)

    # the size sweep cuts the original events: the fit then reaches their full size
    sizes = (
        size_sweep(originals, cfg.size_sweep, cfg.size_events, cfg.models_dir, cfg.device, cfg.loader, log)
        if cfg.size_sweep
        else {"points": []}
    )
    scaling = _size_scaling(sizes["points"], samples)
    contention, contention_error = _node_contention(cfg, refs, log)

    hits_per_event = [h for s in samples.values() for h in s.per_event_hits]
    mean_hits = statistics.fmean(hits_per_event) if hits_per_event else 0.0
    input_bytes = statistics.fmean(ref.size_bytes() for ref in refs)
    input_hits = [count_hits(ref) for ref in originals]
    results_points = [p for p in sweep if p.get("result_bytes") and p["events"]]
    result_bytes = (
        statistics.fmean(p["result_bytes"] / p["events"] for p in results_points) if results_points else None
    )
    bytes_per_event = input_bytes + (result_bytes or 0.0)
    rtt = measurements.get("rtt") or []
    local_memory = process_memory()
    fit = working_memory_fit(sizes["points"])
    dask_cpu = dask_cpu_per_batch(sweep)
    bench = BenchFile(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        duration_s=None,
        input_dir=str(cfg.input_dir),
        config=_config_record(cfg),
        machine={**machine_info(cfg.device), "load_average": {"start": load_start, "end": os.getloadavg()}},
        device=str(cfg.device),
        # "auto": the most events one batch of the sweep held (config.batch_size says "auto")
        batch_size=int(cfg.batch_size) if cfg.batch_size != AUTO else batcher.largest,
        events=len(refs),
        hits_per_event=HitsPerEvent(
            mean_hits, min(hits_per_event, default=0), max(hits_per_event, default=0)
        ),
        # the events as given, before any cut: what an estimate plans for by default
        input_hits_per_event=HitsPerEvent(statistics.fmean(input_hits), min(input_hits), max(input_hits)),
        **headline_numbers(
            sweep,
            cfg.batch_size,
            measurements.get("scaling_rounds"),
            measurements.get("scaling_rounds_error"),
        ),
        sweep=sweep,
        service_times={key: s.to_record() for key, s in samples.items()},
        size_scaling=scaling,
        size_measured=sizes["points"],
        node_contention=contention,
        dask_cpu_per_batch_s=DaskCpu(**dask_cpu) if dask_cpu else None,
        node_contention_error=contention_error,
        network=NetworkFigures(
            round_trip_s=RoundTrip(
                p50=statistics.median(rtt) if rtt else 0.0,
                mean=statistics.fmean(rtt) if rtt else 0.0,
                min=min(rtt) if rtt else 0.0,
                samples=len(rtt),
                what="scheduler -> worker -> scheduler (identity RPC); 0 when no Dask run",
            ),
            client_scheduler_s=(
                statistics.median(measurements["client_rtt"]) if measurements.get("client_rtt") else None
            ),
            transfer=measurements.get("transfer"),
            transfer_bytes_per_s=(measurements.get("transfer") or {}).get("bytes_per_s") or math.inf,
            input_bytes_per_event=input_bytes,
            result_bytes_per_event=result_bytes,
            bytes_per_event=bytes_per_event,
            bytes_per_hit=bytes_per_event / mean_hits if mean_hits else 0.0,
        ),
        memory=MemoryFigures(
            worker_rss_bytes=min(measurements.get("worker_rss_bytes") or [local_memory["rss"]]),
            worker_peak_bytes=max(measurements.get("worker_peak_bytes") or [local_memory["peak"]]),
            peak_hits=max(hits_per_event, default=0),
            working_bytes_fit=MemoryScaling.from_dict(fit) if fit else None,
            what="resident after loading the models; peak resident after the sweep; "
            "working_bytes_fit: peak memory above resident while one event runs, against hits "
            "(bytes = a + b*hits**k, from the size sweep)",
        ),
        plots=[],
    )
    if cfg.plots:
        bench.plots = [str(p.name) for p in write_plots(bench.to_dict(), cfg.out_dir)]
    bench.duration_s = time.time() - started
    bench.write(cfg.out_dir / "bench.json")
    return bench.to_dict()
