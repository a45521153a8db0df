"""One Dask scheduler's limits with trackflow's task shapes (issue 32): its CPU per task, its CPU
per connected worker, and the largest task rate it sustains before its event loop falls behind.

    .venv/bin/python benchmarks/scheduler_limits.py shapes  [--seconds 20] [--batch-rate 40]
    .venv/bin/python benchmarks/scheduler_limits.py workers [--counts 0,10,50,200,400,800]
    .venv/bin/python benchmarks/scheduler_limits.py ramp    [--rates 100,200,400,...] [--seconds 15]
    .venv/bin/python benchmarks/scheduler_limits.py fit        # coefficients for trackflow.yaml
    .venv/bin/python benchmarks/scheduler_limits.py validate   # the model's max rate vs the ramp's

The scheduler is a separate ``dask scheduler`` process (no dashboard) whose CPU time psutil reads
before and after each phase; the client (this process) and the workers (worker-host processes,
many in-process ``Worker`` objects each, one thread each, profiler off) are other processes.
``--pin`` puts the scheduler alone on CPU 0 and everything else on the other CPUs.

The tasks do no pipeline work, so the scheduler is the only busy thing; their shapes are
trackflow's (``trackflow/run/dask_executors.py``, ``trackflow/service/service.py``):

* ``fused``: one task per batch, no dependency, a Batch of event refs in (~300 B per event),
  a BatchResult out (its tracks frame: 24 B per hit);
* ``staged``: a chain of six tasks per batch (load + five stages), each depending on the last;
  the graphs stay on the workers, the last task's BatchResult comes back;
* ``service``: one task per batch whose argument is the events' hits frame (~43 B per hit) and
  whose result is its tracks (16 B per hit); both pass THROUGH the scheduler: ``client.submit``
  embeds the argument in the graph the scheduler receives, and a client outside the cluster
  gathers results through the scheduler (``Client._gather``: ``direct=False``);
* ``service-staged``: the same hits and tracks, a chain of seven tasks (prepare, five stages,
  finish).

Every batch is submitted with ``client.submit`` one by one and its result fetched with
``future.result()`` in a done callback, as the service does. Results are JSON in
``benchmarks/results/issue32/`` (one file per command), with the machine, the load average and
the ``distributed`` version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

RESULTS = Path(__file__).resolve().parent / "results" / "issue32"
#: bytes per hit of the service's request (hits frame with r, phi, eta: README, 4,280,329 B / 100k)
HITS_BYTES_PER_HIT = 43
#: bytes per hit of the service's answer (hit_ids and track labels, int64)
SERVICE_TRACKS_BYTES_PER_HIT = 16
#: bytes per hit of a batch task's result (the submission frame: event_id, hit_id, track_id int64)
BATCH_TRACKS_BYTES_PER_HIT = 24
#: bytes per event of a batch task's argument (an EventRef: id and paths)
EVENT_REF_BYTES = 300
UNRESPONSIVE = re.compile(r"Event loop was unresponsive in Scheduler for ([0-9.]+)s")

# Dask settings of every process here: the workers' statistical profiler samples every thread
# every 10 ms, which with hundreds of in-process workers would take the CPUs the scheduler needs
ENV = {
    **os.environ,
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "info",
}
#: ``--light-hosts``: the worker hosts' own housekeeping slowed down (never the scheduler's), so
#: thousands of idle workers fit on the CPUs the scheduler leaves: each worker checks its event
#: loop every 20 ms and samples its process every 500 ms, ~4-6 ms CPU/s per worker by default
LIGHT_HOSTS = {
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "10s",
}


@dataclass(frozen=True)
class Shape:
    """A batch's tasks: ``chain`` tasks in a row, ``bytes_in`` B of argument, ``bytes_out`` B back."""

    name: str
    chain: int
    bytes_in: int
    bytes_out: int
    fetch: bool = True


def shapes(events_per_batch: int, hits: int) -> list[Shape]:
    """trackflow's four shapes for batches of ``events_per_batch`` events of ``hits`` hits."""
    hits_total = events_per_batch * hits
    return [
        Shape("fused", 1, EVENT_REF_BYTES * events_per_batch, BATCH_TRACKS_BYTES_PER_HIT * hits_total),
        Shape("staged", 6, EVENT_REF_BYTES * events_per_batch, BATCH_TRACKS_BYTES_PER_HIT * hits_total),
        Shape("service", 1, HITS_BYTES_PER_HIT * hits_total, SERVICE_TRACKS_BYTES_PER_HIT * hits_total),
        Shape(
            "service-staged", 7, HITS_BYTES_PER_HIT * hits_total, SERVICE_TRACKS_BYTES_PER_HIT * hits_total
        ),
    ]


# ---------------------------------------------------------------------------------------- tasks
def first_task(payload: np.ndarray, bytes_out: int, last: bool) -> np.ndarray:
    """The batch's first task: takes the argument, gives the result (when alone) or a token."""
    return np.zeros(bytes_out if last else 8, dtype=np.uint8)


def next_task(previous: np.ndarray, bytes_out: int, last: bool) -> np.ndarray:
    """A later task of a chain: depends on the previous one (its output stays on the workers)."""
    return np.zeros(bytes_out if last else 8, dtype=np.uint8)


# ---------------------------------------------------------------------------------------- processes
def machine() -> dict[str, Any]:
    import distributed

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        ),
        "python": sys.version.split()[0],
        "distributed": distributed.__version__,
        "loadavg_at_start": list(os.getloadavg()),
    }


#: the cgroup v1 cpu controller, where ``--cpu-quota`` caps the scheduler's process
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")


class CpuQuota:
    """A cgroup (v1 ``cpu``) of its own for one process, capped at ``cores`` of CPU time: the
    scheduler's capacity made a known, smaller number, so that one scheduler reaches its limit
    before the client and the workers sharing this machine's two cores reach theirs."""

    def __init__(self, pid: int, cores: float) -> None:
        self.path = CPU_CGROUP / f"trackflow_scheduler_limits_{pid}"
        self.path.mkdir()
        period = int((self.path / "cpu.cfs_period_us").read_text())
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * period)))
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        # the process has exited: the group is empty and goes
        with contextlib.suppress(OSError):
            self.path.rmdir()


class Scheduler:
    """A ``dask scheduler`` process; ``cpu_s()`` its CPU seconds so far (user + system)."""

    def __init__(self, work: Path, pin: bool, cpu_quota: float | None = None) -> None:
        self.file = work / "scheduler.json"
        self.log = work / "scheduler.log"
        cmd = [
            str(Path(sys.executable).with_name("dask")),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.file),
        ]
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=ENV)
        self.ps = psutil.Process(self.proc.pid)
        self.quota = CpuQuota(self.proc.pid, cpu_quota) if cpu_quota else None
        if pin:
            self.ps.cpu_affinity([0])
            others = [c for c in range(os.cpu_count() or 1) if c != 0] or [0]
            psutil.Process().cpu_affinity(others)
        deadline = time.monotonic() + 60
        while not self.file.exists() or not self.file.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"scheduler did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.3)
        self.address = json.loads(self.file.read_text())["address"]

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def unresponsive(self) -> list[float]:
        """Every 'event loop was unresponsive' the scheduler logged so far (s)."""
        return [float(m) for m in UNRESPONSIVE.findall(self.log.read_text())]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        if self.quota is not None:
            self.quota.remove()


class WorkerHosts:
    """Processes hosting in-process workers (one thread each), ``per_host`` per process."""

    def __init__(self, address: str, per_host: int, light: bool = False) -> None:
        self.address = address
        self.per_host = per_host
        self.env = {**ENV, **LIGHT_HOSTS} if light else ENV
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def add(self, n: int) -> None:
        while n > 0:
            take = min(n, self.per_host)
            cmd = [sys.executable, __file__, "host", self.address, str(take)]
            self.procs.append(
                subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            self.count += take
            n -= take

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(proc.pid).memory_info().rss
        return total

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def host_main(address: str, n: int) -> None:
    """``host`` subcommand: ``n`` workers in this process, until terminated."""
    from distributed import Worker

    async def run() -> None:
        workers = [Worker(address, nthreads=1, memory_limit=0, dashboard=False) for _ in range(n)]
        await asyncio.gather(*(w.start() for w in workers))
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@contextlib.contextmanager
def cluster(
    workers: int, per_host: int, pin: bool, light: bool = False, cpu_quota: float | None = None
) -> Iterator[tuple[Scheduler, WorkerHosts, Any]]:
    from distributed import Client

    work = Path(tempfile.mkdtemp(prefix="scheduler_limits_"))
    scheduler = Scheduler(work, pin, cpu_quota)
    hosts = WorkerHosts(scheduler.address, per_host, light)
    client = None
    try:
        hosts.add(workers)
        client = Client(scheduler.address, timeout=60)
        if workers:
            client.wait_for_workers(workers, timeout=300)
        install_heartbeat_counter(client)
        yield scheduler, hosts, client
    finally:
        if client is not None:
            client.close()
        hosts.close()
        scheduler.close()


def install_heartbeat_counter(client: Any) -> None:
    """Count the scheduler's heartbeat_worker calls (a wrapper on its handler, read per phase)."""

    def install(dask_scheduler: Any) -> None:
        handler = dask_scheduler.handlers["heartbeat_worker"]
        dask_scheduler._issue32_heartbeats = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            dask_scheduler._issue32_heartbeats += 1
            return handler(*args, **kwargs)

        dask_scheduler.handlers["heartbeat_worker"] = counted

    client.run_on_scheduler(install)


def scheduler_probe(client: Any) -> dict[str, float]:
    """Heartbeats and the longest event-loop tick since the last probe (both then reset)."""

    def probe(dask_scheduler: Any) -> dict[str, float]:
        out = {
            "heartbeats": float(dask_scheduler._issue32_heartbeats),
            "tick_max_s": float(dask_scheduler.digests_max.get("tick-duration", 0.0)),
            "workers": float(len(dask_scheduler.workers)),
            "heartbeat_interval_s": float(
                __import__("distributed.scheduler").scheduler.heartbeat_interval(len(dask_scheduler.workers))
            ),
        }
        dask_scheduler._issue32_heartbeats = 0
        dask_scheduler.digests_max["tick-duration"] = 0.0
        return out

    result: dict[str, float] = client.run_on_scheduler(probe)
    return result


# ---------------------------------------------------------------------------------------- offered load
def offer(client: Any, shape: Shape, batch_rate: float, seconds: float) -> dict[str, Any]:
    """Submit batches of ``shape`` at ``batch_rate`` per second (evenly spaced, open loop) for
    ``seconds``; each result fetched in a done callback. Returns latencies and counts."""
    payload = np.ones(shape.bytes_in, dtype=np.uint8)
    lock = threading.Lock()
    latencies: list[float] = []
    finished: list[float] = []
    errors: list[str] = []
    keep: dict[str, Any] = {}

    def fetch(future: Any, submitted: float) -> None:
        try:
            if shape.fetch:
                future.result()
        except Exception as error:
            with lock:
                errors.append(type(error).__name__)
        now = time.monotonic()
        with lock:
            latencies.append(now - submitted)
            finished.append(now)
            keep.pop(future.key, None)

    fetchers = ThreadPoolExecutor(8, thread_name_prefix="fetch")
    start = time.monotonic()
    n = int(batch_rate * seconds)
    behind = 0.0
    for i in range(n):
        due = start + i / batch_rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        submitted = time.monotonic()
        future = client.submit(first_task, payload, shape.bytes_out, shape.chain == 1, pure=False)
        for j in range(1, shape.chain):
            future = client.submit(next_task, future, shape.bytes_out, j == shape.chain - 1, pure=False)
        with lock:
            keep[future.key] = future
        # Dask runs every done callback of the process on ONE thread (Future._cb_executor), where
        # the service fetches its results: a fetch waits for the one before, and that thread, not
        # the scheduler, caps the rate near 1 / round trip. Here a pool fetches, as K services would.
        future.add_done_callback(lambda f, s=submitted: fetchers.submit(fetch, f, s))
    offered_end = time.monotonic()
    deadline = offered_end + max(30.0, seconds)
    while time.monotonic() < deadline:
        with lock:
            if len(latencies) >= n:
                break
        time.sleep(0.02)
    end = time.monotonic()
    fetchers.shutdown(wait=False, cancel_futures=True)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    third = max(1, len(latencies) // 3)
    return {
        "batches": n,
        "answered": len(latencies),
        "errors": len(errors),
        "offered_s": offered_end - start,
        "drain_s": end - offered_end,
        "client_behind_max_s": behind,
        "throughput_batches_per_s": len(latencies) / (max(finished) - start) if finished else 0.0,
        "latency_p50_s": float(np.nanpercentile(lat, 50)),
        "latency_p95_s": float(np.nanpercentile(lat, 95)),
        "latency_first_third_p50_s": float(np.median(latencies[:third])) if latencies else None,
        "latency_last_third_p50_s": float(np.median(latencies[-third:])) if latencies else None,
    }


def measured(scheduler: Scheduler, hosts: WorkerHosts, client: Any, run: Any) -> dict[str, Any]:
    """``run()``'s dict with the scheduler's and the workers' CPU seconds over it."""
    scheduler_probe(client)
    warnings_before = len(scheduler.unresponsive())
    cpu0, wcpu0, t0 = scheduler.cpu_s(), hosts.cpu_s(), time.monotonic()
    out: dict[str, Any] = run()
    cpu1, wcpu1, t1 = scheduler.cpu_s(), hosts.cpu_s(), time.monotonic()
    probe = scheduler_probe(client)
    out.update(
        wall_s=t1 - t0,
        scheduler_cpu_s=cpu1 - cpu0,
        scheduler_utilisation=(cpu1 - cpu0) / (t1 - t0),
        workers_cpu_s=wcpu1 - wcpu0,
        heartbeats_per_s=probe["heartbeats"] / (t1 - t0),
        tick_max_s=probe["tick_max_s"],
        heartbeat_interval_s=probe["heartbeat_interval_s"],
        unresponsive_warnings=scheduler.unresponsive()[warnings_before:],
        loadavg=list(os.getloadavg()),
    )
    return out


# ---------------------------------------------------------------------------------------- commands
def cmd_shapes(args: argparse.Namespace) -> dict[str, Any]:
    """CPU per batch and per task of each shape at a moderate rate, and against payload bytes."""
    rows = []
    with cluster(args.workers, args.per_host, args.pin) as (scheduler, hosts, client):
        idle = measured(scheduler, hosts, client, lambda: (time.sleep(args.seconds), {})[1])
        rows.append({"shape": "idle", **idle})
        print(f"idle: scheduler {idle['scheduler_utilisation']:.3f} CPU-s/s", flush=True)
        plan = [(s, args.batch_rate) for s in shapes(args.events, args.hits)]
        # the same fused task with its result left on the worker: the fetch's share of the cost
        plan.append((Shape("fused-no-fetch", 1, EVENT_REF_BYTES, 8, fetch=False), args.batch_rate))
        plan += [
            (Shape(f"service-{kb}kB", 1, kb * 1000, kb * 1000 * 16 // 43), args.batch_rate / 4)
            for kb in (100, 1000, 4300)
        ]
        for shape, rate in plan:
            row = measured(
                scheduler, hosts, client, lambda s=shape, r=rate: offer(client, s, r, args.seconds)
            )
            busy = row["scheduler_cpu_s"] - idle["scheduler_utilisation"] * row["wall_s"]
            row.update(
                shape=shape.name,
                chain=shape.chain,
                bytes_in=shape.bytes_in,
                bytes_out=shape.bytes_out,
                batch_rate=rate,
                cpu_per_batch_s=busy / max(row["answered"], 1),
                cpu_per_task_s=busy / max(row["answered"] * shape.chain, 1),
            )
            rows.append(row)
            print(
                f"{shape.name:>16}: {row['cpu_per_batch_s'] * 1e3:.2f} ms/batch, "
                f"{row['cpu_per_task_s'] * 1e3:.2f} ms/task, p50 {row['latency_p50_s'] * 1e3:.1f} ms",
                flush=True,
            )
    return {"rows": rows}


def cmd_workers(args: argparse.Namespace) -> dict[str, Any]:
    """The idle scheduler's CPU against the number of connected workers."""
    rows = []
    counts = [int(c) for c in args.counts.split(",")]
    with cluster(counts[0], args.per_host, args.pin, args.light_hosts) as (scheduler, hosts, client):
        for count in counts:
            if count > hosts.count:
                hosts.add(count - hosts.count)
                client.wait_for_workers(count, timeout=600)
            # the workers learn the adaptive interval from their first heartbeat's answer
            time.sleep(args.settle)
            row = measured(scheduler, hosts, client, lambda: (time.sleep(args.seconds), {})[1])
            row.update(workers=count, workers_rss_bytes=hosts.rss_bytes())
            rows.append(row)
            print(
                f"{count:>5} workers: scheduler {row['scheduler_utilisation']:.3f} CPU-s/s, "
                f"{row['heartbeats_per_s']:.1f} heartbeats/s (interval {row['heartbeat_interval_s']:g} s), "
                f"workers {row['workers_cpu_s'] / row['wall_s'] / max(count, 1) * 1e3:.2f} ms CPU/s each, "
                f"RSS {row['workers_rss_bytes'] / 2**30:.1f} GiB",
                flush=True,
            )
    return {"rows": rows}


def cmd_ramp(args: argparse.Namespace) -> dict[str, Any]:
    """Offered task rate against throughput, latency and the scheduler's utilisation."""
    rows = []
    shape = next(s for s in shapes(args.events, args.hits) if s.name == args.shape)
    with cluster(args.workers, args.per_host, args.pin, cpu_quota=args.cpu_quota) as (
        scheduler,
        hosts,
        client,
    ):
        for rate in [float(r) for r in args.rates.split(",")]:
            batch_rate = rate / shape.chain
            row = measured(
                scheduler, hosts, client, lambda r=batch_rate: offer(client, shape, r, args.seconds)
            )
            row.update(
                shape=shape.name,
                offered_tasks_per_s=rate,
                tasks_per_s=row["throughput_batches_per_s"] * shape.chain,
            )
            row["sustained"] = sustained(row)
            rows.append(row)
            print(
                f"offered {rate:>6.0f} tasks/s: done {row['tasks_per_s']:>6.0f}/s, scheduler "
                f"{row['scheduler_utilisation']:.2f} CPU-s/s, p50 {row['latency_p50_s'] * 1e3:.1f} ms, "
                f"p95 {row['latency_p95_s'] * 1e3:.1f} ms, last/first third p50 "
                f"{row['latency_last_third_p50_s'] / row['latency_first_third_p50_s']:.1f}x, "
                f"tick max {row['tick_max_s'] * 1e3:.0f} ms, "
                f"client behind {row['client_behind_max_s']:.2f} s "
                f"-> {'sustained' if row['sustained'] else 'NOT sustained'}",
                flush=True,
            )
            if not row["sustained"] and args.stop:
                break
    return {"shape": shape.__dict__, "rows": rows}


def sustained(row: dict[str, Any]) -> bool:
    """The scheduler kept up: every batch answered, at >= 95 % of the offered rate, within the
    offered time plus 1 s, and the median latency of the last third within 3x the first's."""
    first = row["latency_first_third_p50_s"] or 0.0
    last = row["latency_last_third_p50_s"] or 0.0
    return bool(
        row["answered"] == row["batches"]
        and row["errors"] == 0
        and row["tasks_per_s"] >= 0.95 * row["offered_tasks_per_s"]
        and row["drain_s"] < 1.0
        and last <= 3 * max(first, 1e-3)
    )


def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    """The model's coefficients (trackflow.estimation.scheduler), each from the runs that isolate
    it: ``idle``, ``c_h``, ``c_W`` by least squares over the idle-workers runs (``idle + h c_h +
    W c_W``, h the heartbeats/s counted on the scheduler); ``a`` and ``c_b`` as the intercept and
    slope of the utilisation against the task rate over the uncapped ramp's sustained steps
    (less the 4 workers' background); ``c_k`` from the chained shapes against the single ones
    at the same batch rate; ``c_B`` as the slope of CPU per batch against bytes over the service
    payload runs. Prints them as trackflow.yaml's ``estimate.scheduler`` lines."""
    worker_rows = json.loads((RESULTS / f"workers{args.suffix}.json").read_text())["rows"]
    a = np.array([[1.0, r["heartbeats_per_s"], r["workers"]] for r in worker_rows])
    y = np.array([r["scheduler_utilisation"] for r in worker_rows])
    # non-negative least squares by hand: three terms, drop a negative one and refit
    keep = [0, 1, 2]
    while True:
        coef, *_ = np.linalg.lstsq(a[:, keep], y, rcond=None)
        if (coef >= 0).all() or len(keep) == 1:
            break
        keep.pop(int(np.argmin(coef)))
    full = np.zeros(3)
    full[keep] = np.clip(coef, 0, None)
    idle, c_h, c_w = (float(v) for v in full)

    ramp = json.loads((RESULTS / args.ramp_file).read_text())
    steps = [r for r in ramp["rows"] if r["sustained"]]
    rates = np.array([r["tasks_per_s"] for r in steps])
    background = np.array([idle + r["heartbeats_per_s"] * c_h for r in steps])
    busy = np.array([r["scheduler_utilisation"] for r in steps]) - background
    c_b, active = (float(v) for v in np.polyfit(rates, busy, 1))

    shape_rows = {
        r["shape"]: r for r in json.loads((RESULTS / f"shapes{args.suffix}.json").read_text())["rows"]
    }
    c_k = float(
        np.mean(
            [
                (shape_rows["staged"]["cpu_per_batch_s"] - shape_rows["fused"]["cpu_per_batch_s"]) / 5,
                (shape_rows["service-staged"]["cpu_per_batch_s"] - shape_rows["service"]["cpu_per_batch_s"])
                / 6,
            ]
        )
    )
    payload = [shape_rows[n] for n in ("service", "service-100kB", "service-1000kB", "service-4300kB")]
    c_bytes = float(
        np.polyfit(
            [r["bytes_in"] + r["bytes_out"] for r in payload], [r["cpu_per_batch_s"] for r in payload], 1
        )[0]
    )
    coefficients = {
        "cpu_per_batch_s": c_b,
        "cpu_per_chained_task_s": c_k,
        "cpu_per_byte_s": c_bytes,
        "cpu_per_heartbeat_s": c_h,
        "cpu_per_worker_s": c_w,
        "idle_cpu": idle,
        "active_cpu": active,
    }
    for name, value in coefficients.items():
        print(f"      {name}: {value:.3g}")
    return {
        "coefficients": coefficients,
        "ramp_file": args.ramp_file,
        "ramp_fit_residuals": {
            float(r): float(e) for r, e in zip(rates, busy - (active + c_b * rates), strict=True)
        },
        "worker_residuals": {
            int(r["workers"]): float(e) for r, e in zip(worker_rows, y - a @ full, strict=True)
        },
    }


def cmd_validate(args: argparse.Namespace) -> dict[str, Any]:
    """The model's largest sustained rate (trackflow.estimation.scheduler, coefficients from
    trackflow.yaml: ``fit`` of the uncapped runs) against the ramp's, twice: with the CPU the
    scheduler was allowed (``--cpu-quota``, else one core), and with the CPU it could actually
    get on this shared machine, its utilisation where the ramp was not sustained (the most it
    got while falling behind)."""
    from dataclasses import replace

    from trackflow.estimation.scheduler import SchedulerModel

    ramp = json.loads((RESULTS / args.ramp_file).read_text())
    quota = ramp["args"].get("cpu_quota")
    model = SchedulerModel.from_config()
    if quota:  # a scheduler capped at ``quota`` cores can have that much CPU, not a whole core
        model = replace(model, max_utilisation=float(quota))
    workers = int(ramp["args"]["workers"])
    chain = int(ramp["shape"]["chain"])
    per_batch = model.cpu_per_batch(chain, ramp["shape"]["bytes_in"] + ramp["shape"]["bytes_out"])
    rows = ramp["rows"]
    sustained_rates = [r["offered_tasks_per_s"] for r in rows if r["sustained"]]
    measured_tasks = max(sustained_rates) if sustained_rates else 0.0
    first_failed = min(
        (
            r["offered_tasks_per_s"]
            for r in rows
            if not r["sustained"] and r["offered_tasks_per_s"] > measured_tasks
        ),
        default=None,
    )
    obtained = max((r["scheduler_utilisation"] for r in rows if not r["sustained"]), default=None)
    out: dict[str, Any] = {
        "ramp_file": args.ramp_file,
        "shape": ramp["shape"]["name"],
        "workers": workers,
        "cpu_quota": quota,
        "model": model.to_dict(),
        "measured_max_sustained_tasks_per_s": measured_tasks,
        "first_unsustained_tasks_per_s": first_failed,
        "loadavg": [r["loadavg"] for r in rows],
    }
    for label, capacity in (("allowed", model.max_utilisation), ("obtained", obtained)):
        if capacity is None:
            continue
        predicted = replace(model, max_utilisation=float(capacity)).max_batch_rate(per_batch, workers) * chain
        error = predicted / measured_tasks - 1 if measured_tasks else float("inf")
        out[label] = {
            "capacity_cpu": capacity,
            "predicted_max_tasks_per_s": predicted,
            "relative_error": error,
            "within_25_percent": abs(error) <= 0.25,
        }
        print(
            f"{args.ramp_file}: scheduler CPU {label} {capacity:.2f}: predicted {predicted:.0f} tasks/s, "
            f"measured {measured_tasks:.0f} sustained (next step {first_failed} not): {error:+.0%}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--per-host", type=int, default=100, help="workers per worker-host process")
    common.add_argument("--pin", action="store_true", help="scheduler alone on CPU 0, the rest elsewhere")
    common.add_argument("--suffix", default="", help="appended to the result file's name")
    common.add_argument("--events", type=int, default=1, help="events per batch (default 1)")
    common.add_argument("--hits", type=int, default=1000, help="hits per event (default 1000)")
    p = sub.add_parser("shapes", parents=[common], help="CPU per task of each shape")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--batch-rate", type=float, default=40.0, help="batches/s offered (payload runs: /4)")
    p = sub.add_parser("workers", parents=[common], help="idle scheduler CPU against workers")
    p.add_argument("--counts", default="0,10,50,200,400,800")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=10.0, help="s after the workers join")
    p.add_argument("--light-hosts", action="store_true", help="slow the hosts' own housekeeping")
    p = sub.add_parser("ramp", parents=[common], help="offered task rate until the scheduler falls behind")
    p.add_argument("--shape", default="fused", choices=["fused", "staged", "service", "service-staged"])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rates", default="100,200,300,400,500,600,700,800,1000")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--stop", action="store_true", help="stop at the first rate not sustained")
    p.add_argument(
        "--cpu-quota", type=float, default=None, help="cap the scheduler at this many cores (cgroup v1 cpu)"
    )
    p = sub.add_parser("fit", parents=[common], help="the model's coefficients from the runs above")
    p.add_argument("--ramp-file", default="ramp.json", help="the uncapped ramp (results/issue32/)")
    p = sub.add_parser("validate", parents=[common], help="model vs ramp")
    p.add_argument("--ramp-file", default="ramp_quota40.json", help="the ramp to predict (results/issue32/)")
    p = sub.add_parser("host")  # internal: a worker-host process
    p.add_argument("address")
    p.add_argument("n", type=int)
    args = parser.parse_args()
    if args.command == "host":
        host_main(args.address, args.n)
        return
    started = time.time()
    info = machine()
    commands = {
        "shapes": cmd_shapes,
        "workers": cmd_workers,
        "ramp": cmd_ramp,
        "fit": cmd_fit,
        "validate": cmd_validate,
    }
    result = commands[args.command](args)
    out = {
        "command": " ".join([".venv/bin/python", "benchmarks/scheduler_limits.py", *sys.argv[1:]]),
        "args": vars(args),
        "machine": info,
        "loadavg_at_end": list(os.getloadavg()),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "wall_s": time.time() - started,
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"validate_{Path(args.ramp_file).stem}" if args.command == "validate" else args.command
    path = RESULTS / f"{name}{args.suffix}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
