"""Probes of a running Dask cluster: what its workers offer, round trips, bytes moved between
workers (from their transfer logs), the transfer rate, worker memory and CPU seconds.

``trackflow reconstruct`` records some in report.json, ``trackflow bench`` all of them in bench.json.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import TYPE_CHECKING, Any

from trackflow.memory import process_memory

if TYPE_CHECKING:
    from distributed import Client

TRANSFER_PROBE_BYTES = 16 * 2**20


def worker_threads(client: Client) -> dict[str, int]:
    """Threads of every worker, asked of the workers themselves (not the scheduler's cache)."""
    threads: dict[str, int] = client.run(lambda dask_worker: dask_worker.state.nthreads)
    return threads


def worker_resources(client: Client) -> dict[str, dict[str, float]]:
    """The Dask resources (e.g. ``GPU``) of every worker, asked of the workers themselves."""
    resources: dict[str, dict[str, float]] = client.run(
        lambda dask_worker: dict(dask_worker.state.total_resources)
    )
    return resources


def bytes_between_workers(client: Client, since: float) -> int:
    """Bytes workers fetched from other workers since ``since`` (Unix s), from their transfer logs."""

    def incoming(dask_worker: Any, since: float) -> int:
        return int(sum(e["total"] for e in dask_worker.transfer_incoming_log if e["start"] >= since))

    return int(sum(client.run(incoming, since=since).values()))


def scheduler_worker_rtt(client: Client, repeats: int = 10) -> dict[str, list[float]]:
    """Round trips (s) from the scheduler to each worker and back: ``repeats`` identity calls
    timed inside the scheduler, so the client's own link does not count."""

    async def ping(dask_scheduler: Any, repeats: int) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {}
        for address in list(dask_scheduler.workers):
            rpc = dask_scheduler.rpc(address)
            times = []
            for _ in range(repeats):
                tic = time.perf_counter()
                await rpc.identity()
                times.append(time.perf_counter() - tic)
            samples[address] = times
        return samples

    rtt: dict[str, list[float]] = client.run_on_scheduler(ping, repeats=repeats)
    return rtt


def client_scheduler_rtt(client: Client, repeats: int = 5) -> list[float]:
    """Round trips (s) from the client to the scheduler (a no-op run on the scheduler)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        client.run_on_scheduler(lambda: None)
        times.append(time.perf_counter() - tic)
    return times


def worker_memory(client: Client) -> dict[str, dict[str, int]]:
    """Resident and peak memory (bytes) of every worker process, asked of the workers."""
    memory: dict[str, dict[str, int]] = client.run(process_memory)
    return memory


def _payload(nbytes: int) -> bytes:
    return os.urandom(nbytes)  # random: no compression can shrink it on the wire


def transfer_rate(client: Client, nbytes: int = TRANSFER_PROBE_BYTES) -> dict[str, Any]:
    """Bytes/s of one payload moved between two workers (from the receiver's transfer log), or,
    with a single worker, scattered from the client (minus the client–scheduler round trip)."""
    from distributed import wait

    workers = sorted(client.run(lambda: None))
    if len(workers) >= 2:
        source, target = workers[0], workers[1]
        since = time.time()
        data = client.submit(_payload, nbytes, workers=[source], pure=False)
        wait([data])
        size = client.submit(len, data, workers=[target], pure=False).result()

        def log(dask_worker: Any, since: float) -> list[dict[str, float]]:
            return [
                {"total": e["total"], "duration": e["duration"]}
                for e in dask_worker.transfer_incoming_log
                if e["start"] >= since
            ]

        entries = client.run(log, since=since, workers=[target])[target]
        moved = sum(e["total"] for e in entries)
        seconds = sum(e["duration"] for e in entries)
        del data
        if moved >= size and seconds > 0:
            return {
                "bytes_per_s": moved / seconds,
                "bytes": moved,
                "seconds": seconds,
                "how": "worker-to-worker",
            }
    rtt = statistics.median(client_scheduler_rtt(client, repeats=3))
    payload = _payload(nbytes)
    tic = time.perf_counter()
    future = client.scatter(payload, workers=workers[:1], direct=True)
    seconds = max(time.perf_counter() - tic - rtt, 1e-6)
    del future
    return {"bytes_per_s": nbytes / seconds, "bytes": nbytes, "seconds": seconds, "how": "client-to-worker"}


def _own_cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def cpu_seconds(client: Client) -> dict[str, Any]:
    """CPU seconds (user + system) used so far by this process (the client; with a local
    cluster also the scheduler and the nannies) and by each worker process."""
    return {"client": _own_cpu_seconds(), "workers": client.run(_own_cpu_seconds)}
