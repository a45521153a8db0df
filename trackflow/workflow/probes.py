"""Measurements of the machine and the Dask cluster that ``trackflow bench`` records beside the
sweep: where it ran, worker memory, the worker-to-worker transfer rate, and CPU seconds used by
the client process and the workers (for Dask's own CPU per batch)."""

from __future__ import annotations

import os
import platform
import resource
import socket
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trackflow.workflow.executors import BatchResult
from trackflow.workflow.report import client_scheduler_rtt

if TYPE_CHECKING:
    from distributed import Client

TRANSFER_PROBE_BYTES = 16 * 2**20


def machine_info(device: str) -> dict[str, Any]:
    """Where the bench ran: host, CPU model and count, memory, library versions, the GPU if any."""
    import dask
    import distributed
    import psutil
    import torch

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "device": device,
        "torch": torch.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": np.__version__,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None,
    }
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def _process_memory() -> dict[str, int]:
    """Resident and peak resident memory (bytes) of the calling process."""
    import psutil

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"rss": int(psutil.Process().memory_info().rss), "peak": int(peak)}


def worker_memory(client: Client) -> dict[str, dict[str, int]]:
    """Resident and peak memory (bytes) of every worker process, asked of the workers."""
    return client.run(_process_memory)


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


def _result_bytes(results: Sequence[BatchResult]) -> int:
    from dask.sizeof import sizeof

    return int(sum(sizeof(r.tracks) for r in results))



def _own_cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _cpu_seconds(client: Client) -> dict[str, Any]:
    """CPU seconds (user + system) used so far by this process (the client; with a local
    cluster also the scheduler and the nannies) and by each worker process."""
    return {"client": _own_cpu_seconds(), "workers": client.run(_own_cpu_seconds)}


