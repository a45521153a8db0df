"""The throughput and batch latency of ``trackflow reconstruct`` predicted from measured batch
times (a closed queue): what ``benchmarks/validate_estimate.py`` checks the estimate's model
against. The online estimate (:mod:`~trackflow.estimation.sizing`) does not use it."""

from __future__ import annotations

import numpy as np

from trackflow.errors import ConfigError
from trackflow.estimation import queueing
from trackflow.percentiles import summary

__all__ = ["predict_batch_workflow", "shared_cores_service"]


def shared_cores_service(
    service_s: np.ndarray, workers: float, cores: float, other_cpu_s: float
) -> np.ndarray:
    """Service times (s) of ``workers`` single-core servers sharing ``cores`` cores with other
    work needing ``other_cpu_s`` CPU s per task (Dask's client, scheduler, worker event loops).

    The other work first uses the spare cores (cores − workers); what does not fit is taken
    from the workers evenly. At throughput X = workers / S', the other work needs other·X cores;
    solving ``S' = S / (1 − (other·X − spare)/workers)`` gives ``S' = workers·(S + other)/cores``,
    and never less than S: ``S' = max(S, workers·(S + other)/cores)``. With workers = cores this
    is S + other: every task pays for Dask's CPU.
    """
    service_s = np.asarray(service_s, dtype=np.float64)
    if other_cpu_s <= 0 or cores <= 0:
        return service_s
    shared: np.ndarray = np.maximum(service_s, workers * (service_s + other_cpu_s) / cores)
    return shared


def predict_batch_workflow(
    workers: int,
    in_flight: int,
    per_batch_s: np.ndarray,
    events_per_batch: float,
    overhead_s: float,
    batches: int | None = None,
    replicates: int = 200,
    seed: int = 0,
    contention: float = 1.0,
    cores: int | None = None,
    dask_cpu_per_batch_s: float = 0.0,
) -> dict[str, float]:
    """Throughput (events/s) and batch latency percentiles (s) of ``trackflow reconstruct``.

    A closed queue: ``in_flight`` batches always submitted, ``workers`` servers, batch service
    times drawn from ``per_batch_s`` (s, measured in-task), ``overhead_s`` per batch outside the
    workers (submission, scheduling, result back). With ``batches``, a finite run of that many
    batches all starting at t = 0, as reconstruct does (its throughput = events / (first
    submission → last result)), averaged over ``replicates`` simulated runs; without, the steady
    state. Latency percentiles are per batch, which is each of its events' latency in report.json.
    ``contention``: factor on the service times for workers running beside each other
    (:meth:`trackflow.estimation.contention.NodeContention.factor`; 1 = as fast as benched).
    ``cores`` and ``dask_cpu_per_batch_s``: when the workers and Dask's own processes share
    ``cores`` cores, Dask's CPU per batch outside the task is taken from the workers once they
    leave no core spare (:func:`shared_cores_service`).
    """
    if not contention > 0:
        raise ConfigError(f"contention: must be a positive factor, got {contention}")
    samples = np.asarray(per_batch_s, dtype=np.float64) * contention
    if cores is not None:
        samples = shared_cores_service(samples, workers, cores, dask_cpu_per_batch_s)
    if batches is None:
        simulation = queueing.simulate_closed_queue(
            in_flight, samples, workers, jobs=20_000, overhead_s=overhead_s, seed=seed
        )
        out = {"events_per_second": simulation.throughput * events_per_batch}
        out.update(_quantiles(simulation.sojourn_s))
        return out
    makespans, latencies = [], []
    for replicate in range(replicates):
        simulation = queueing.simulate_closed_queue(
            in_flight,
            samples,
            workers,
            jobs=batches,
            overhead_s=overhead_s,
            warmup_fraction=0.0,
            seed=seed + replicate,
        )
        makespans.append(simulation.duration_s)
        latencies.append(simulation.sojourn_s)
    pooled = np.concatenate(latencies)
    # events over the expected run time (a mean of rates would overweight lucky short runs)
    out = {"events_per_second": float(batches * events_per_batch / np.mean(makespans))}
    out.update(_quantiles(pooled))
    return out


def _quantiles(latencies_s: np.ndarray) -> dict[str, float]:
    """The percentiles of :func:`trackflow.percentiles.summary` (``p50``, ``p95``, ``p99``, s) of
    simulated latencies (never empty, so never None)."""
    return {k: float(v) for k, v in summary(latencies_s).items() if k.startswith("p") and v is not None}
