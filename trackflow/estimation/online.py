"""Latency of a fixed farm against offered rate, and its knee: the prediction ``trackflow stream``
overlays on its measurement (numbers only, no Dask).

The farm is ``servers`` identical servers (worker slots) behind one FCFS queue with Poisson
arrivals, as in :mod:`trackflow.estimation.queueing`; latency = ``network_s`` + wait + service,
percentiles from :func:`~trackflow.estimation.latency.latency_at_load` (the estimate's own
discrete-event simulation drawing the service samples). The *knee* is the offered rate at which
the p95 latency reaches ``factor`` (2) times its value at a low reference rate.

Service samples come from one of two places (:func:`samples_from_bench`, or measured by the
stream itself); either way they are what one server is busy with per event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.estimation import queueing
from trackflow.estimation.bench_file import BenchFileError
from trackflow.estimation.bench_inputs import BenchInputs
from trackflow.estimation.latency import latency_at_load, latency_of, simulated_events

#: p95 at the knee / p95 at low load
KNEE_FACTOR = 2.0


@dataclass
class FarmModel:
    """What the prediction draws from: per-event service samples (s) of one server measured with
    every server busy, the number of servers, the network time outside the queue (s), and
    ``busy_slowdown``: those samples ÷ the time of one server alone (1: servers do not slow each
    other down; else :func:`~trackflow.estimation.queueing.simulate_contended_open_queue`)."""

    samples: np.ndarray
    servers: int
    network_s: float = 0.0
    busy_slowdown: float = 1.0
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def capacity_hz(self) -> float:
        """Events/s the farm finishes when always busy: servers / mean service."""
        return self.servers / float(np.mean(self.samples))

    def latency(self, rate_hz: float, seed: int = 0) -> dict[str, float]:
        """Latency percentiles (s: p50, p95, p99, mean) at ``rate_hz``; ``inf`` at or past capacity."""
        if rate_hz >= self.capacity_hz:
            return dict.fromkeys(("p50", "p95", "p99", "mean", "max", "mean_wait"), math.inf)
        if self.busy_slowdown == 1.0 or self.servers == 1:
            return latency_at_load(rate_hz, self.samples, self.servers, self.network_s, seed=seed)
        simulation = queueing.simulate_contended_open_queue(
            rate_hz, self.samples, self.servers, self.busy_slowdown, jobs=simulated_events(), seed=seed
        )
        return latency_of(simulation, self.network_s)

    def curve(self, rates_hz: Sequence[float]) -> list[dict[str, float]]:
        """:meth:`latency` at each rate, with ``rate_hz`` and ``utilisation`` added."""
        return [
            {"rate_hz": float(r), "utilisation": float(r) / self.capacity_hz, **self.latency(float(r))}
            for r in rates_hz
        ]

    def knee_hz(self, reference_rate_hz: float, factor: float = KNEE_FACTOR) -> float:
        """The rate where the predicted p95 is ``factor`` × the p95 at ``reference_rate_hz``."""
        low = self.latency(reference_rate_hz)["p95"]
        return find_knee(lambda r: self.latency(r)["p95"], reference_rate_hz, self.capacity_hz, factor * low)

    def to_dict(self) -> dict[str, Any]:
        return {
            "servers": self.servers,
            "network_s": self.network_s,
            "service_mean_s": float(np.mean(self.samples)),
            "service_p95_s": float(np.percentile(self.samples, 95)),
            "samples": len(self.samples),
            "capacity_hz": self.capacity_hz,
            "busy_slowdown": self.busy_slowdown,
            "source": self.source,
            "notes": self.notes,
        }


def find_knee(p95_at: Callable[[float], float], low_hz: float, high_hz: float, target_s: float) -> float:
    """Bisection for the rate in (low_hz, high_hz) where ``p95_at`` reaches ``target_s``
    (``p95_at`` grows with the rate; it is infinite at ``high_hz``, the capacity)."""
    if p95_at(low_hz) >= target_s:
        return low_hz
    lo, hi = low_hz, high_hz
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if p95_at(mid) >= target_s:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3 * high_hz:
            break
    return 0.5 * (lo + hi)


def measured_knee(
    rates_hz: Sequence[float], p95_s: Sequence[float], factor: float = KNEE_FACTOR
) -> float | None:
    """The rate where measured p95 first reaches ``factor`` × its value at the lowest rate,
    linear between the two measured rates around the crossing; None when never reached."""
    order = np.argsort(rates_hz)
    rates = np.asarray(rates_hz, dtype=np.float64)[order]
    p95 = np.asarray(p95_s, dtype=np.float64)[order]
    if len(rates) < 2 or not np.isfinite(p95[0]):
        return None
    target = factor * p95[0]
    for i in range(1, len(rates)):
        if p95[i] >= target:
            if not np.isfinite(p95[i]):
                return float(rates[i])
            span = p95[i] - p95[i - 1]
            return float(rates[i - 1] + (rates[i] - rates[i - 1]) * (target - p95[i - 1]) / span)
    return None


def samples_from_bench(bench_json: Path, servers: int, cores: int, event_hits: float | None) -> FarmModel:
    """The farm model of a service on ``servers`` single-thread CPU workers on a machine of
    ``cores`` cores, from a ``trackflow bench`` (fused, 1 thread, the most workers benched).

    Samples: the bench's per-event in-task times less the seconds its tasks spent reading event
    files (the service is sent the hits in memory; building the features stays in), scaled to
    ``event_hits`` (None: as benched), plus the measured Dask overhead per task (client-observed
    latency − in-task time, one task in flight), times the measured contention at ``servers``
    busy cores; network = measured round trip + bytes at the measured transfer rate.

    Where this differs from the batch estimate (:func:`~trackflow.estimation.sizing.estimate`):
    a service slot holds one task at a time (its next task is sent only when the last is back),
    so the per-task overhead is time the slot's worker waits idle, and Dask's own CPU per task
    (client, scheduler) runs inside that wait on the worker's idle core. It is not taken from
    the workers again (:func:`~trackflow.estimation.batch_prediction.shared_cores_service`, which the batch
    estimate needs because its workers hold queued tasks and never wait).
    """
    inputs = BenchInputs.load(Path(bench_json))
    single = [p for p in inputs.profiles_for("cpu") if p.threads == 1]
    if not single:
        raise BenchFileError(bench_json, "no 1-thread CPU service times (bench with 1 thread per worker)")
    profile = single[0]
    hits = float(event_hits) if event_hits is not None else inputs.input_hits
    samples = profile.scaled(inputs.scaling, hits, reading=False)
    busy_fraction = min(servers / max(cores, 1), 1.0)
    contention = inputs.contention_factor(profile, busy_fraction)
    samples = samples * contention
    other_cpu = inputs.client_side_cpu_s + inputs.worker_side_cpu_s
    # the samples are now those of all servers busy; one server alone runs faster by this much.
    # Below 1 (all busy measured faster than one alone) is the probe's noise: busy cores do not
    # speed each other up, and the stream's own measurement is clamped the same way
    slowdown = max(1.0, inputs.contention.at(servers)) if inputs.contention is not None else 1.0
    read = (
        f"less {float(np.mean(profile.per_event_read_s)) * 1e3:.1f} ms reading files (mean)"
        if profile.per_event_read_s is not None
        else "file reading not measured by this bench: left in"
    )
    notes = [
        f"bench {bench_json}: profile {profile.key}, {len(profile.per_event_s)} per-event samples "
        f"({read}), scaled to {hits:,.0f} hits, "
        f"+ Dask overhead {profile.overhead_per_task_s * 1e3:.1f} ms per task",
        f"contention x{contention:.3f} at {servers} busy of {cores} cores",
        f"Dask CPU {other_cpu * 1e3:.1f} ms per task: inside the overhead a slot waits through, "
        "not taken from the workers again",
        f"one busy server runs x{slowdown:.3f} faster than all {servers} busy (bench contention probe)",
    ]
    return FarmModel(
        samples=np.asarray(samples, dtype=np.float64),
        servers=servers,
        network_s=inputs.network_seconds(hits),
        busy_slowdown=slowdown,
        source="bench",
        notes=notes,
    )
