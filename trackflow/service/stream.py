"""``trackflow stream``: open-loop Poisson arrivals into the service, latency against the estimate.

For each offered rate λ (Hz) the events of the input directory are replayed, cycling, at Poisson
arrival times over ``duration`` s, whether or not the service keeps up (open loop: an event's
latency counts from its scheduled arrival, even when a ``block`` policy held the source back).
Per rate: latency percentiles from arrival to tracks, split into queueing, transfer and service
(:class:`~trackflow.service.service.EventTiming`); achieved throughput; the backlog (events
waiting on the client, and on the cluster) sampled over time, with the client's resident memory;
the shed and failed counts, and the check that every arrival was answered or counted.

Before the rates:

1. warm-up: two events per worker slot, not measured (first calls in a process are slow);
2. the network: client↔scheduler and scheduler↔worker round trips
   (:mod:`trackflow.cluster.probes`), the hosts of client, scheduler and workers, and the bytes
   per event both ways (hits in, tracks out);
3. the measured capacity: a closed loop with two requests per worker slot (a slot never
   waits for the client) for ``calibration_events`` events; events/s is the capacity, and each
   event's dispatch→result time is what one server is busy with per event; then the same
   events one at a time, whose in-task time against the busy one is how much the slots slow
   each other down on shared cores (``busy_slowdown``). Measured again before every pass of
   the rates and after the last (the capacity is the mean; ``capacity_fractions`` are of the
   first measurement), so the prediction sees the machine the rates saw.

The prediction (:mod:`trackflow.estimation.online`) is the estimate's queue simulation for this
farm (servers = worker slots): from ``bench_json`` when given (the service samples of ``trackflow
bench`` on the same cluster, as ``trackflow estimate`` uses them), else from the capacity
measurement of step 3 — ``stream.json`` says which (``prediction.model.source``).

Optionally a closed-loop sweep, as the study's ``perf_analyzer``: throughput and p95 latency with
K requests in flight (``concurrency``), at each number of workers (``instances``; the cluster is
scaled between them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trackflow import config
from trackflow.cluster.options import ClusterOptions, check_cluster
from trackflow.cluster.probes import worker_memory
from trackflow.errors import ConfigError, EventFileError
from trackflow.estimation.online import FarmModel, measured_knee, samples_from_bench
from trackflow.events import Event
from trackflow.events.trackml import list_events
from trackflow.files import write_json
from trackflow.service.service import EventTiming, Service, ServiceConfig
from trackflow.service.traffic import (
    RatePass,
    closed_loop,
    network_cost,
    open_loop,
    open_loop_pass,
    poisson_arrivals,
    summarise,
    summarise_rate,
)

if TYPE_CHECKING:
    from distributed import Client

    from trackflow.run.plugin import PipelineLoader

# the loads and their summaries live in trackflow.service.traffic; they stay importable from here
__all__ = [
    "StreamConfig",
    "closed_loop",
    "load_events",
    "open_loop",
    "poisson_arrivals",
    "run_stream",
    "summarise",
    "summarise_rate",
]

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class StreamConfig:
    """The options of ``trackflow stream`` (None = the default under ``stream.`` / ``service.``).

    ``rates``: offered rates (Hz), each streamed for ``duration`` s; ``capacity_fractions``:
    more rates, as fractions of the capacity measured first (after ``rates``). ``concurrency``:
    requests in flight for the closed-loop sweep (each for ``sweep_duration`` s, default ``duration``), at
    each count of ``instances`` (workers; default: as opened). ``bench_json``: the prediction's
    service samples (else measured here). ``max_events``: events of ``input_dir`` replayed.
    ``cluster``: where the workers come from and how many (:class:`~trackflow.cluster.ClusterOptions`;
    default 2 local workers of one thread). ``client``: run on this client instead of opening
    ``cluster`` (tests, notebooks).
    ``passes``: the rates take turns this many times, ``duration / passes`` s each (answers
    pooled per rate), so that a drift of the machine's speed hits every rate alike.
    """

    input_dir: Path
    out_dir: Path
    rates: list[float] = field(default_factory=list)
    capacity_fractions: list[float] = field(default_factory=list)
    duration: float = field(default_factory=config.default("stream.duration"))
    concurrency: list[int] = field(default_factory=list)
    instances: list[int] = field(default_factory=list)
    sweep_duration: float | None = None
    bench_json: Path | None = None
    # two workers unless told: the stream's default farm, as `trackflow stream --workers` has it
    cluster: ClusterOptions = field(default_factory=lambda: ClusterOptions(workers=2))
    models_dir: Path | None = None
    device: str | None = None
    max_batch_events: int | None = None
    max_delay_ms: float | None = None
    max_queued: int | None = None
    queue_policy: str | None = None
    max_events: int | None = None
    calibration_events: int = field(default_factory=config.default("stream.calibration_events"))
    seed: int = field(default_factory=config.default("stream.seed"))
    passes: int = 1
    client: Client | None = field(default=None, repr=False)
    pipeline_loader: PipelineLoader | None = field(default=None, repr=False)
    on_rate: Callable[[Service, float], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.input_dir, self.out_dir = Path(self.input_dir), Path(self.out_dir)
        self.cluster = check_cluster(self.cluster)
        self.duration = float(self.duration)
        self.sweep_duration = float(self.sweep_duration if self.sweep_duration is not None else self.duration)
        self.seed = int(self.seed)
        self.calibration_events = int(self.calibration_events)
        if not self.rates and not self.capacity_fractions and not self.concurrency:
            raise ConfigError("rates / concurrency: give at least one rate or one concurrency")
        if any(not r > 0 for r in [*self.rates, *self.capacity_fractions]):
            raise ConfigError(f"rates {','.join(f'{r:g}' for r in self.rates)}: rates must be > 0 Hz")
        if any(k < 1 for k in self.concurrency) or any(n < 1 for n in self.instances):
            raise ConfigError("concurrency / instances: must be >= 1")
        if self.passes < 1:
            raise ConfigError(f"passes {self.passes}: must be >= 1")
        if not self.duration > 0:
            raise ConfigError(f"duration {self.duration:g}: must be > 0 s")

    def service_config(self) -> ServiceConfig:
        return ServiceConfig(
            models_dir=self.models_dir,
            device=self.device,
            threads_per_worker=self.cluster.threads_per_worker,
            max_batch_events=self.max_batch_events,
            max_delay_ms=self.max_delay_ms,
            max_queued=self.max_queued,
            queue_policy=self.queue_policy,
            pipeline_loader=self.pipeline_loader,
        )


# --------------------------------------------------------------------------- the command
@contextlib.contextmanager
def _service(cfg: StreamConfig) -> Iterator[Service]:
    if cfg.client is not None:
        with Service(cfg.client, cfg.service_config()) as service:
            yield service
        return
    with Service.open(
        cfg.cluster.spec, cfg.cluster.worker_count(), cfg.service_config(), **cfg.cluster.open_kwargs()
    ) as service:
        yield service


def load_events(input_dir: Path, max_events: int | None) -> list[Event]:
    """The hits of the events to replay (read once, kept in memory)."""
    refs = list_events(input_dir)[: max_events or None]
    if not refs:
        raise EventFileError(input_dir, "holds no TrackML events (eventNNNNNNNNN-hits.csv[.gz])")
    return [ref.load(("hits",)) for ref in refs]


def _scale(service: Service, workers: int, progress: Progress) -> None:
    handle = service.handle
    if handle is None or handle.cluster is None:
        raise ConfigError("instances: needs a cluster trackflow opened (not a scheduler address or client)")
    progress(f"scaling to {workers} worker(s)")
    handle.cluster.scale(workers)
    deadline = time.monotonic() + float(config.get("workflow.cluster.start_timeout"))
    while service.worker_slots() != workers * service.config.threads_per_worker:
        if time.monotonic() > deadline:
            raise ConfigError(f"instances {workers}: the cluster did not reach {workers} workers")
        time.sleep(0.5)


def run_stream(cfg: StreamConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Everything of the module docstring; writes ``stream.json`` and the PNGs to ``cfg.out_dir``
    and returns the stream.json content (with ``outputs``: the files written)."""
    say = progress or (lambda _line: None)
    events = load_events(cfg.input_dir, cfg.max_events)
    drain = float(config.get("stream.drain_timeout"))
    interval = float(config.get("stream.sample_interval"))
    started = time.time()
    with _service(cfg) as service:
        slots = service.worker_slots()
        say(f"service up: {slots} worker slot(s); warming up")
        closed_loop(service, events, slots, None, count=2 * slots)
        network = network_cost(service)
        say(f"capacity: {cfg.calibration_events} events, {2 * slots} in flight, then one at a time")
        before = _calibrate(service, events, slots, cfg.calibration_events)
        say(f"capacity measured {before['summary']['throughput_hz']:.3g} Hz")
        offered = [*cfg.rates, *(f * before["summary"]["throughput_hz"] for f in cfg.capacity_fractions)]
        # with passes > 1 the rates take turns, duration/passes s each time: a machine whose
        # speed drifts slows every rate alike instead of the last ones
        passes: dict[float, list[RatePass]] = {rate: [] for rate in offered}
        rng = np.random.default_rng(cfg.seed)
        calibrations = [before]
        for turn in range(cfg.passes):
            if turn > 0:  # the capacity in every pass: the prediction sees the machine the rates saw
                calibrations.append(_calibrate(service, events, slots, cfg.calibration_events))
            for rate in offered:
                if cfg.on_rate is not None and turn == 0:
                    cfg.on_rate(service, rate)
                stretch = cfg.duration / cfg.passes
                passes[rate].append(open_loop_pass(service, events, rate, stretch, rng, drain, interval))
                done = sum(t.status == "done" for t in passes[rate][-1].timings)
                say(f"rate {rate:.3g} Hz, pass {turn + 1}/{cfg.passes}: {done} done")
        # the capacity again after the rates: the figures use both, the drift is on record
        if offered:
            calibrations.append(_calibrate(service, events, slots, cfg.calibration_events))
        capacities = [c["summary"]["throughput_hz"] for c in calibrations]
        capacity = statistics.fmean(capacities)
        measured_model = _measured_model(calibrations, slots)
        model = measured_model
        if cfg.bench_json is not None:
            hits = before["summary"]["hits_per_event"]
            model = samples_from_bench(cfg.bench_json, slots, os.cpu_count() or 1, hits)
        listed = ", ".join(f"{c:.3g}" for c in capacities)
        say(
            f"capacity {capacity:.3g} Hz (mean of {listed}); predicted {model.capacity_hz:.3g} Hz "
            f"({model.source})"
        )
        rates = []
        for rate in offered:
            result = summarise_rate(rate, cfg.duration, passes[rate])
            result["worker_memory"] = _safe_worker_memory(service)
            result["predicted"] = model.latency(rate)
            result["predicted_measured"] = measured_model.latency(rate)
            result["utilisation_measured"] = rate / capacity if capacity > 0 else None
            p95 = result["latency_s"]["p95"]
            say(
                f"rate {rate:.3g} Hz: {result['done']} done, {result['shed']} shed, {result['failed']} "
                f"failed of {result['arrivals']}; {result['throughput_hz']:.3g} Hz; p95 "
                + (f"{p95:.3g} s" if p95 is not None else "-")
                + f" (predicted {result['predicted']['p95']:.3g} s)"
            )
            rates.append(result)
        calibration = {
            **before["summary"],
            "throughput_hz": capacity,
            "throughputs_hz": capacities,
            "one_at_a_time": [c["alone"] for c in calibrations],
        }
        sweep = []
        instances: list[int | None] = list(cfg.instances) or ([None] if cfg.concurrency else [])
        for workers in instances:
            if workers is not None:
                _scale(service, workers, say)
                closed_loop(service, events, service.worker_slots(), None, count=2 * service.worker_slots())
            for k in cfg.concurrency:
                point, _ = closed_loop(service, events, k, cfg.sweep_duration)
                point["instances"] = service.worker_slots() // max(1, service.config.threads_per_worker)
                say(
                    f"concurrency {k}, {point['instances']} worker(s): {point['throughput_hz']:.3g} Hz, "
                    f"p95 {point['latency_s']['p95'] or float('nan'):.3g} s"
                )
                sweep.append(point)
        counts = service.counts().to_dict()
        service_config = service.config.to_dict()
    result = _assemble(cfg, rates, sweep, model, capacity, calibration, network, counts, service_config)
    if model is not measured_model and rates:
        offered = [r["offered_rate_hz"] for r in rates]
        result["prediction"]["measured_model"] = measured_model.to_dict()
        result["knee"]["predicted_measured_hz"] = measured_model.knee_hz(min(offered))
    result["duration_s"] = time.time() - started
    from trackflow.service import plots

    result["outputs"] = [str(p) for p in plots.write_plots(result, cfg.out_dir)]
    path = write_json(cfg.out_dir / "stream.json", result, indent=2)
    result["outputs"].insert(0, str(path))
    return result


def _calibrate(service: Service, events: Sequence[Event], slots: int, count: int) -> dict[str, Any]:
    """Capacity (two requests per slot: a slot never waits for the client), then the same
    events one request at a time; summaries, and each busy event's slot time (dispatch to its
    task finished: what a slot is busy with) and fetch time (tracks to the client, after the
    slot is free) and in-task times busy and alone."""
    summary, timings = closed_loop(service, events, 2 * slots, None, count=count)
    done = [t for t in timings if t.status == "done"]
    if not done:
        raise ConfigError("stream: no event was reconstructed in the capacity measurement")
    alone: dict[str, Any] | None = None
    alone_timings: list[EventTiming] = []
    if slots > 1:
        alone, alone_timings = closed_loop(service, events, 1, None, count=max(2 * slots, count // 3))
    return {
        "summary": summary,
        "alone": alone,
        "busy_s": [t.slot_s for t in done],
        "fetch_s": [t.fetch_s for t in done],
        "busy_service_s": [t.service_s for t in done],
        "alone_service_s": [t.service_s for t in alone_timings if t.status == "done"],
    }


def _measured_model(calibrations: Sequence[dict[str, Any]], slots: int) -> FarmModel:
    """The quick-measurement farm: busy samples of every calibration, and how much faster one
    slot runs alone (in-task time all busy ÷ alone, at least 1)."""
    busy = [x for c in calibrations for x in c["busy_s"]]
    busy_service = [x for c in calibrations for x in c["busy_service_s"]]
    fetch = [x for c in calibrations for x in c["fetch_s"]]
    alone_service = [x for c in calibrations for x in c["alone_service_s"]]
    slowdown = 1.0
    if alone_service:
        slowdown = max(1.0, statistics.fmean(busy_service) / statistics.fmean(alone_service))
    return FarmModel(
        samples=np.asarray(busy, dtype=np.float64),
        servers=slots,
        network_s=statistics.fmean(fetch) if fetch else 0.0,
        busy_slowdown=slowdown,
        source="measured",
        notes=[
            f"quick measurement: {len(busy)} events, two requests per worker slot ({slots}), "
            "before each pass of the rates and after the last; samples = each event's dispatch -> "
            "task finished time, what a slot is busy with; network = the mean fetch of its tracks "
            "after the slot is free, added outside the servers",
            f"one request at a time the in-task time is x{1 / slowdown:.3f} of the all-busy one "
            "(busy_slowdown, applied by the number of busy slots)",
        ],
    )


def _safe_worker_memory(service: Service) -> dict[str, dict[str, int]]:
    try:
        return worker_memory(service.client)
    except Exception as error:  # a lost worker must not lose the stream's figures
        logger.warning("worker memory not read: %s", error)
        return {}


def _assemble(
    cfg: StreamConfig,
    rates: list[dict[str, Any]],
    sweep: list[dict[str, Any]],
    model: FarmModel,
    capacity: float,
    calibration: dict[str, Any],
    network: dict[str, Any],
    counts: dict[str, Any],
    service_config: dict[str, Any],
) -> dict[str, Any]:
    offered = [r["offered_rate_hz"] for r in rates]
    p95 = [r["latency_s"]["p95"] if r["latency_s"]["p95"] is not None else float("inf") for r in rates]
    knee = measured_knee(offered, p95) if len(rates) >= 2 else None
    predicted_knee = model.knee_hz(min(offered)) if offered else None
    bytes_in = calibration.get("bytes_in_per_event") or 0.0
    bytes_out = calibration.get("bytes_out_per_event") or 0.0
    return {
        "input_dir": str(cfg.input_dir),
        "cluster": cfg.cluster.spec if cfg.client is None else "client",
        "service": service_config,
        "rates": rates,
        "capacity": {
            "measured_hz": capacity,
            "predicted_hz": model.capacity_hz,
            "measurement": {k: v for k, v in calibration.items() if k != "errors"},
            "what": "closed loop, two requests per worker slot: events/s (mean of the measurements "
            "before each pass and after the last)",
        },
        "knee": {
            "measured_hz": knee,
            "predicted_hz": predicted_knee,
            "reference_rate_hz": min(offered) if offered else None,
            "what": "offered rate where p95 latency reaches 2x its value at the lowest rate streamed",
        },
        "prediction": {
            "model": model.to_dict(),
            "curve": model.curve(_curve_rates(offered, model.capacity_hz)) if offered else [],
            "what": "trackflow.estimation.online: the estimate's FCFS queue simulation, servers = "
            "worker slots, Poisson arrivals",
        },
        "concurrency_sweep": sweep,
        "network": {
            **network,
            "bytes_in_per_event": bytes_in,
            "bytes_out_per_event": bytes_out,
            "hits_per_event": calibration.get("hits_per_event"),
            "client_and_workers_on_different_hosts": any(
                h not in ("127.0.0.1", "localhost", network["client_host"]) for h in network["worker_hosts"]
            ),
        },
        "counts": counts,
        "every_arrival_answered": all(r["unanswered"] == 0 for r in rates) and counts["pending"] == 0,
    }


def _curve_rates(offered: Sequence[float], capacity: float) -> list[float]:
    top = min(max(offered), 0.99 * capacity)
    return [float(r) for r in np.linspace(min(*offered, top) * 0.5, top, 25)]
