"""Interleaved A/B of trackflow serve's per-request floor between git trees (issue 30).

Each tree (a checkout: ``git worktree add --detach /tmp/base <commit>``) serves the trivial model
of benchmarks/vs_triton.py (track_id = zeros) with ``trackflow.Service`` on a 1-worker
LocalCluster behind the HTTP front end, trackflow.yaml's defaults; one tritonclient load generator
alternates its requests between the servers (A B, B A, ...), one in flight, so that every tree
meets the same load on a shared machine. A tree may carry environment settings:
``TREE:NAME=VALUE``. With ``--real`` the servers run the tree's shipped pipeline instead (the
events' own time included).

    .venv/bin/python benchmarks/results/vs_triton/floor_ab/floor_ab.py /tmp/base,/tmp/work 1000 /tmp/vt_events

Prints the load average and each tree's p50 / p95 (ms).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def serve(real: bool) -> None:
    """Child: the trivial (or ``real``) service of the tree on PYTHONPATH; prints host:port,
    serves until SIGTERM."""
    import trackflow

    sys.path.insert(0, str(Path(trackflow.__file__).parents[1] / "benchmarks"))
    import vs_triton

    from trackflow.service import Service, ServiceConfig
    from trackflow.service.kserve import KServeServer, ServeConfig

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = ServiceConfig() if real else ServiceConfig(pipeline_loader=vs_triton.trivial_loader)
    with (
        Service.open("local", 1, config) as service,
        KServeServer(service, ServeConfig(http_port=0, grpc=False)) as server,
    ):
        print(server.url.split("//")[1], flush=True)
        stop.wait()


def main() -> None:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    import vs_triton

    import trackflow

    real = "--real" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--real"]
    trees, n, events = args[0].split(","), int(args[1]), args[2]
    processes = []
    for spec in trees:
        tree, *settings = spec.split(":")
        env = os.environ | {"PYTHONPATH": tree} | dict(s.split("=", 1) for s in settings)
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "_serve", *(["--real"] if real else [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
        )
    refs = trackflow.list_events(events)[: 16 if real else 4]
    requests = [vs_triton.encode(ref.load(("hits",)).hits) for ref in refs]
    try:
        loads = [vs_triton.Load(p.stdout.readline().strip(), requests) for p in processes]  # type: ignore[union-attr]
        for load in loads:
            for i in range(len(requests) + 10):
                load.call(i)
        latencies: list[list[float]] = [[] for _ in trees]
        for i in range(n):
            order = range(len(trees)) if i % 2 == 0 else reversed(range(len(trees)))
            for j in order:
                t0 = time.perf_counter()
                loads[j].call(i)
                latencies[j].append(time.perf_counter() - t0)
        print(
            f"load {os.getloadavg()[0]:.2f}",
            " | ".join(
                f"{t}: p50 {np.median(x) * 1e3:.2f} p95 {np.percentile(x, 95) * 1e3:.2f} ms"
                for t, x in zip(trees, latencies, strict=True)
            ),
            flush=True,
        )
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["_serve"]:
        serve("--real" in sys.argv)
    else:
        main()
