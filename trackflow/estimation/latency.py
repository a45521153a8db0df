"""Servers and latency of an open FCFS farm under Poisson load, drawn from measured service
samples: what both the batch estimate (:mod:`~trackflow.estimation.sizing`) and the online
prediction (:mod:`~trackflow.estimation.online`) compute with."""

from __future__ import annotations

import math

import numpy as np

from trackflow import config
from trackflow.estimation import queueing
from trackflow.percentiles import summary

__all__ = ["latency_at_load", "latency_of", "servers_for_throughput"]


def servers_for_throughput(rate_hz: float, mean_service_s: float, headroom: float) -> int:
    """Smallest c with utilisation ``λ·E[S]/c <= 1 − headroom`` (at least 1)."""
    return max(1, math.ceil(rate_hz * mean_service_s / (1.0 - headroom) - 1e-9))


def simulated_events() -> int:
    """Events drawn in each queue simulation (setting ``estimate.simulated_events``)."""
    return int(config.get("estimate.simulated_events"))


def latency_of(simulation: queueing.QueueSimulation, network_s: float) -> dict[str, float]:
    """A simulation's latency (s): the summary of its sojourn times (:func:`trackflow.percentiles.summary`:
    p50, p95, p99, mean, max) plus ``network_s``, and the mean wait in the queue (``mean_wait``,
    without the network)."""
    out = {k: float(v) + network_s for k, v in summary(simulation.sojourn_s).items() if v is not None}
    out["mean_wait"] = float(simulation.wait_s.mean())
    return out


def latency_at_load(
    rate_hz: float, samples: np.ndarray, servers: int, network_s: float, seed: int = 0
) -> dict[str, float]:
    """Latency percentiles (s) of an open FCFS queue simulated with the measured samples (s)."""
    simulation = queueing.simulate_open_queue(rate_hz, samples, servers, jobs=simulated_events(), seed=seed)
    return latency_of(simulation, network_s)
