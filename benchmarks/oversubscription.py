"""Workers x threads on this machine's cores: throughput, CPU time against wall time, and the
threads that are actually runnable, to show whether trackflow's thread settings oversubscribe.

    .venv/bin/python benchmarks/oversubscription.py [--data data/train] [--hits 10000]
        [--configs 1x1,1x2,2x1,2x2,4x1] [--naive 2x1,1x2] [--models DIR] [--passes 2]

Each configuration ``WxT`` is a LocalCluster of W worker processes with T Dask threads each
(``trackflow.cluster.open.open_cluster``), the pipeline loaded by trackflow's
``PipelinePlugin`` with ``threads=T`` (the default: each task's torch/FAISS/OpenMP pools get
``T // T = 1`` thread) and the events run by the ``FusedExecutor`` with 2 x W x T batches in
flight, as ``trackflow reconstruct``/``bench`` do. ``--naive`` configurations give every task
pools as wide as the machine (what libraries do when nobody sets them), for contrast.

Per configuration: events/s; CPU time of the worker processes (psutil: user + system, every
thread) over the wall time, and CPU seconds per event; the in-task compute time per event (the
pipeline's own stage timings; it grows when threads compete for cores); and the number of
worker threads in state R (running or waiting for a core), sampled every 20 ms from
/proc/<pid>/task/*/stat: more runnable threads than cores is oversubscription. The pools are
read inside a task on each worker (trackflow.pipeline.threads.current_threads).

Events: the simulated events of ``--data`` cut to ``--hits`` random hits each (a lower pile-up;
``trackflow.events.subsample.subsample_event``, as ``trackflow bench`` does), one event per batch,
``--passes`` times over the events. Writes benchmarks/results/oversubscription.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from pipeline_common import REPO, machine, write_table

from trackflow.cluster import open_cluster
from trackflow.events import list_events
from trackflow.events.subsample import subsample_event
from trackflow.run.batching import make_batches
from trackflow.run.executors import FusedExecutor
from trackflow.run.plugin import PipelinePlugin


@dataclass(frozen=True)
class Setting:
    """``workers`` processes x ``threads`` Dask threads; ``pool``: threads of each task's
    torch/FAISS/OpenMP pools (None: trackflow's default, threads // threads = 1)."""

    workers: int
    threads: int
    pool: int | None = None

    @property
    def label(self) -> str:
        return f"{self.workers}x{self.threads}" + ("" if self.pool is None else f" naive ({self.pool}/task)")

    @property
    def plugin_threads(self) -> int:
        # PipelinePlugin gives each task threads // nthreads pool threads
        return self.threads if self.pool is None else self.pool * self.threads

    @property
    def busy_limit(self) -> int:
        """Threads that may compute at once: tasks at once x pool threads per task."""
        return self.workers * self.threads * (self.pool or 1)


def parse_settings(text: str, pool: int | None = None) -> list[Setting]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        workers, threads = (int(v) for v in item.lower().split("x"))
        out.append(Setting(workers, threads, pool))
    return out


class RunnableThreads:
    """Counts threads in state R of the given processes every ``period`` s (a sampler thread)."""

    def __init__(self, pids: list[int], period: float = 0.02) -> None:
        self.pids, self.period = pids, period
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        running = 0
        for pid in self.pids:
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    stat = (task / "stat").read_text()
                except OSError:  # the thread ended meanwhile
                    continue
                # the state follows the command name, which is in parentheses and may hold spaces
                running += stat.rsplit(")", 1)[1].split()[0] == "R"
        return running

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(self._count())

    def __enter__(self) -> RunnableThreads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _task_pools() -> dict[str, Any]:
    """The pools as a task sees them (runs on a worker, in a Dask thread)."""
    from trackflow.pipeline.threads import current_threads

    return current_threads()


def run_setting(setting: Setting, batches: list, models_dir: Path | None) -> dict[str, Any]:
    with open_cluster("local", workers=setting.workers, threads_per_worker=setting.threads) as opened:
        client = opened.client
        plugin = PipelinePlugin(models_dir, "cpu", setting.plugin_threads)
        client.register_plugin(plugin)
        pids = list(client.run(os.getpid).values())
        addresses = list(client.scheduler_info()["workers"])
        pools = [client.submit(_task_pools, pure=False, workers=[a]).result() for a in addresses]
        slots = setting.workers * setting.threads
        executor = FusedExecutor(client, plugin.name, retries=0, task_timeout=600.0, max_in_flight=slots)
        list(executor.execute(batches[:slots]))  # warm-up: a batch per Dask thread
        executor.max_in_flight = 2 * slots
        cpu_before = _cpu_seconds(pids)
        with RunnableThreads(pids) as runnable:
            tic = time.perf_counter()
            results = list(executor.execute(batches))
            wall = time.perf_counter() - tic
        cpu = _cpu_seconds(pids) - cpu_before
    events = [e for r in results for e in r.events]
    failures = sum(len(r.failures) for r in results)
    samples = runnable.samples or [0]
    pool = pools[0]
    return {
        "setting": setting,
        "events": len(events),
        "failures": failures,
        "wall_s": wall,
        "events_per_s": len(events) / wall,
        "cpu_s": cpu,
        "cpu_per_event_s": cpu / max(len(events), 1),
        "compute_per_event_s": statistics.fmean(e.compute_s for e in events) if events else float("nan"),
        "runnable_mean": statistics.fmean(samples),
        "runnable_p95": float(np.percentile(samples, 95)),
        "runnable_max": max(samples),
        "over_cores_fraction": sum(s > (os.cpu_count() or 1) for s in samples) / len(samples),
        "pools": f"torch {pool['torch_intra_op']}, FAISS {pool['faiss_omp']}, "
        f"OMP env {pool['OMP_NUM_THREADS']}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "train")
    parser.add_argument("--events", type=int, default=14, help="first N events of --data")
    parser.add_argument("--hits", type=int, default=10_000, help="cut each event to this many hits")
    parser.add_argument("--passes", type=int, default=2, help="times over the events per setting")
    parser.add_argument("--configs", default="1x1,1x2,2x1,2x2,4x1", help="WORKERSxTHREADS,...")
    parser.add_argument("--naive", default="2x1,1x2", help="settings whose tasks get pools of all cores")
    parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = parse_settings(args.configs) + parse_settings(args.naive, pool=cores)

    refs = list_events(args.data)[: args.events]
    with tempfile.TemporaryDirectory(prefix="oversubscription-") as tmp:
        rng = np.random.default_rng(0)
        refs = [subsample_event(ref, args.hits, rng, Path(tmp)) or ref for ref in refs]
        batches = make_batches(refs * args.passes, batch_size=1)
        runs = []
        for setting in settings:
            run = run_setting(setting, batches, args.models)
            print(setting.label, {k: v for k, v in run.items() if k != "setting"}, flush=True)
            runs.append(run)

    base = runs[0]["events_per_s"]
    rows = []
    for run in runs:
        s: Setting = run["setting"]
        rows.append(
            [
                s.label,
                s.pool or 1,
                f"{s.busy_limit} / {cores}",
                f"{run['events_per_s']:.2f}",
                f"{run['events_per_s'] / base:.2f}",
                f"{run['cpu_s'] / run['wall_s']:.2f}",
                f"{run['cpu_per_event_s']:.3f}",
                f"{run['compute_per_event_s']:.3f}",
                f"{run['runnable_mean']:.2f} / {run['runnable_p95']:.0f} / {run['runnable_max']}",
                f"{100 * run['over_cores_fraction']:.0f} %",
                run["pools"],
                run["failures"],
            ]
        )
    notes = (
        f"Machine: {machine()}. {len(refs)} events of {args.data} cut to {args.hits} hits, "
        f"{args.passes} pass(es), one event per batch, fused mode, 2 x W x T batches in flight "
        f"(after a warm-up batch per Dask thread). Models: {args.models or 'shipped'}. "
        "'may run' = tasks at once x pool threads per task, against the cores. CPU/wall = CPU "
        "seconds of all worker threads over wall seconds (at most the cores when nothing "
        "else runs). Runnable = worker threads in state R, sampled every 20 ms (mean / p95 / "
        "max); '> cores' = share of samples with more runnable threads than cores. Pools: as "
        "seen inside a task. Command: `.venv/bin/python benchmarks/oversubscription.py "
        f"--hits {args.hits} --passes {args.passes} --configs {args.configs} --naive {args.naive}`."
    )
    write_table(
        "oversubscription",
        "Workers x threads on this machine: throughput and oversubscription",
        [
            "setting (W x T)",
            "pool threads/task",
            "may run / cores",
            "events/s",
            "vs 1x1",
            "CPU/wall",
            "CPU s/event",
            "compute s/event (in task)",
            "runnable threads",
            "> cores",
            "pools in a task",
            "failures",
        ],
        rows,
        notes,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
