"""Resource estimates for online processing, from ``trackflow bench`` measurements only.

Given a target event rate λ (Hz), the estimate answers, per node type: how many nodes, cores or
GPUs, how much memory and network bandwidth, the cost per event (core-s or GPU-s) and the latency
percentiles expected at that load.

Inputs, all read from ``bench.json`` (nothing is invented):

* per-event service times S (s) of one worker (in-task pipeline time, fused mode, every thread
  count measured), with the number of hits of each event, plus the measured Dask overhead per task;
* the size-scaling model ``t(h)`` (s, h = hits per event; :mod:`trackflow.estimation.size_model`:
  per stage ``a + b·h + c·edges(h)`` with the edge counts a measured power law of h, or
  ``a + b·h^k`` for benches without per-stage data) to extrapolate to bigger events: each measured
  sample is scaled by ``t(H)/t(h_i)``, which keeps the measured spread around the curve;
* Dask's own CPU per task inside a worker process, outside the task (event loop, comms,
  (de)serialisation), measured by the bench: on a node full of workers it has no spare core
  and lengthens each service time (:func:`shared_cores_service`);
* the node contention (:mod:`trackflow.bench.contention`): per-event time with every core of
  the bench machine busy ÷ with one process alone, measured by ``trackflow bench`` without Dask.
  It is a property of the hardware (shared last-level cache, memory bandwidth, clock), measured
  like a matmul peak, so it is a measured input too. Service times measured with ``m`` busy
  cores are multiplied by ``s(busy)/s(m)``, with ``s`` growing linearly from 1 (one busy core) to
  the measured slowdown (all cores busy); a CPU node's busy fraction (workers × threads ÷ cores)
  is mapped onto the bench machine's cores. Benches without it: no contention (printed);
* memory of one worker: resident after loading models, plus the working memory of one event
  (peak above resident, measured per size in the size sweep and fitted like the time; without
  that fit, the sweep's peak above resident scaled linearly with hits);
* network: the measured scheduler–worker round trip, the measured transfer rate (bytes/s) and the
  bytes moved per event (scaled linearly with hits).

The model (assumptions printed with every estimate):

1. Events arrive as a Poisson stream at rate λ; each event is one task on one server (a worker
   process with T threads, or one GPU); servers are identical and independent; FCFS shared queue.
2. Servers needed: the smallest c with utilisation ``λ·E[S]/c <= 1 − headroom`` and, when a latency
   budget is given, with a simulated p95 latency within the budget.
3. Latency = network (round trip + bytes/transfer rate) + queueing wait + service. The percentiles
   come from a discrete-event simulation (:mod:`trackflow.estimation.queueing`) drawing service times
   from the (scaled) measured samples; the Allen–Cunneen M/G/c mean is given as a cross-check.
4. Workers per node = min(cores // T, usable memory // memory per worker) for CPU nodes, one server
   per GPU for GPU nodes. Node counts round up.
5. CPU service times are slowed down by the measured node contention at the node's planned
   occupancy (above); GPU service times are not (the GPU, not the host cores, does the work).
6. GPU figures exist only when the bench ran with ``--device cuda``. Otherwise GPU nodes are
   reported as "not measured", unless the user passes ``gpu_speedup`` (GPU service time = 1-thread
   CPU service time ÷ speedup), which is then printed as an assumption, never used silently.

The default node types are Perlmutter-like (nominal public specs): a CPU node with 2× 64-core
AMD EPYC 7763 (128 cores), 512 GB and one 200 Gbit/s Slingshot NIC; a GPU node with 4 A100 GPUs,
64 cores, 256 GB host memory and 4× 200 Gbit/s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.estimation import queueing
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.node_types import DEFAULT_NODES, NodeSpec
from trackflow.estimation.option_parsers import parse_bandwidth, parse_bytes, parse_duration, parse_rate
from trackflow.estimation.size_model import MemoryScaling, SizeScaling
from trackflow.files import write_json

# re-exported: callers import these from here (the CLI, notebooks, tests)
__all__ = [
    "DEFAULT_NODES",
    "BenchInputs",
    "EstimateResult",
    "NodeEstimate",
    "NodeSpec",
    "SizeScaling",
    "estimate",
    "estimate_from_inputs",
    "parse_bandwidth",
    "parse_bytes",
    "parse_duration",
    "parse_rate",
    "predict_batch_workflow",
]


# ---------------------------------------------------------------------------------------------
# what the estimate reads from bench.json


@dataclass
class ServiceProfile:
    """Measured per-event service of one worker configuration (device, threads)."""

    key: str
    device: str
    threads: int
    workers: int
    per_event_s: np.ndarray
    per_event_hits: np.ndarray
    overhead_per_task_s: float = 0.0
    per_event_read_s: np.ndarray | None = None  # of per_event_s, reading the files (None: not measured)

    def scaled(self, scaling: SizeScaling, target_hits: float | None, reading: bool = True) -> np.ndarray:
        """Service samples (s) moved to ``target_hits`` (unchanged if None), plus task overhead;
        ``reading`` False leaves out the seconds the bench's tasks spent reading event files (a
        service is sent the hits in memory)."""
        samples = self.per_event_s
        if not reading and self.per_event_read_s is not None:
            samples = samples - self.per_event_read_s
        if target_hits is not None:
            samples = samples * scaling.ratio(target_hits, self.per_event_hits)
        return samples + self.overhead_per_task_s


@dataclass
class BenchInputs:
    """The measured inputs of an estimate, read from one bench.json."""

    path: Path | None
    device: str
    profiles: list[ServiceProfile]
    scaling: SizeScaling
    input_hits: float  # mean hits of the events as given to the bench (the default target)
    round_trip_s: float
    transfer_bytes_per_s: float
    bytes_per_hit: float
    worker_rss_bytes: float
    worker_peak_bytes: float
    peak_hits: float
    machine: dict[str, Any] = field(default_factory=dict)
    working_memory: MemoryScaling | None = None  # bytes above resident while an event runs
    contention: NodeContention | None = None  # measured slowdown with all cores busy
    worker_side_cpu_s: float = 0.0  # Dask's CPU per task in a worker process, outside the task

    @classmethod
    def load(cls, path: Path) -> BenchInputs:
        path = Path(path)
        try:
            bench = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"--bench {path}: no such file (run `trackflow bench` first)") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"--bench {path}: not JSON ({error.msg}, line {error.lineno})") from None
        return cls.from_dict(bench, path)

    @classmethod
    def from_dict(cls, bench: dict[str, Any], path: Path | None = None) -> BenchInputs:
        where = str(path) if path else "bench.json"
        for key in ("service_times", "size_scaling", "network", "memory"):
            if key not in bench:
                raise ConfigError(f"--bench {where}: has no {key!r} (written by an older bench?)")
        device = str(bench.get("device", bench.get("machine", {}).get("device", "cpu")))
        overhead = float(bench.get("dask_overhead_per_batch_s") or 0.0)
        profiles = []
        for key, entry in bench["service_times"].items():
            if entry.get("mode", "fused") not in ("fused", "direct"):
                continue  # staged spreads one event over several tasks: not one server's time
            per_event = np.asarray(entry["per_event_s"], dtype=np.float64)
            if per_event.size == 0:
                continue
            profiles.append(
                ServiceProfile(
                    key=key,
                    device=str(entry.get("device", device)),
                    threads=int(entry["threads"]),
                    workers=int(entry["workers"]),
                    per_event_s=per_event,
                    per_event_hits=np.asarray(entry["per_event_hits"], dtype=np.float64),
                    overhead_per_task_s=overhead if entry.get("mode") == "fused" else 0.0,
                    per_event_read_s=(
                        np.asarray(entry["per_event_read_s"], dtype=np.float64)
                        if len(entry.get("per_event_read_s") or []) == per_event.size
                        else None  # a bench from before it was recorded
                    ),
                )
            )
        if not profiles:
            raise ConfigError(f"--bench {where}: no fused or direct service times measured")
        network = bench["network"]
        memory = bench["memory"]
        all_hits = np.concatenate([p.per_event_hits for p in profiles])
        # plan for the events as the user gave them (the bench may have cut them smaller)
        planned = (bench.get("input_hits_per_event") or {}).get("mean") or float(all_hits.mean())
        return cls(
            path=path,
            device=device,
            profiles=profiles,
            scaling=SizeScaling.from_dict(bench["size_scaling"]),
            input_hits=float(planned),
            round_trip_s=float(network["round_trip_s"]["p50"]),
            # null: no transfer was measured (no Dask run); the payload then adds no time
            transfer_bytes_per_s=float(network.get("transfer_bytes_per_s") or math.inf),
            bytes_per_hit=float(network["bytes_per_hit"]),
            worker_rss_bytes=float(memory["worker_rss_bytes"]),
            worker_peak_bytes=float(memory["worker_peak_bytes"]),
            peak_hits=float(memory.get("peak_hits") or all_hits.max()),
            machine=dict(bench.get("machine", {})),
            working_memory=(
                MemoryScaling.from_dict(memory["working_bytes_fit"])
                if memory.get("working_bytes_fit")
                else None
            ),
            contention=NodeContention.from_dict(bench.get("node_contention")),
            worker_side_cpu_s=float((bench.get("dask_cpu_per_batch_s") or {}).get("worker_side") or 0.0),
        )

    def contention_factor(self, profile: ServiceProfile, busy_fraction: float) -> float:
        """Multiplier moving ``profile``'s times (measured with its workers × threads busy on the
        bench machine) to a node with ``busy_fraction`` of its cores busy; 1 when not measured."""
        if self.contention is None:
            return 1.0
        measured_busy = profile.workers * profile.threads if profile.device == "cpu" else 1
        return self.contention.at_fraction(busy_fraction) / self.contention.at(measured_busy)

    def profiles_for(self, device: str) -> list[ServiceProfile]:
        """One profile per thread count: fused preferred, then the most workers (most contention)."""
        best: dict[int, ServiceProfile] = {}
        for profile in self.profiles:
            if profile.device != device:
                continue
            current = best.get(profile.threads)
            rank = (profile.overhead_per_task_s > 0 or "fused" in profile.key, profile.workers)
            if current is None or rank > (
                current.overhead_per_task_s > 0 or "fused" in current.key,
                current.workers,
            ):
                best[profile.threads] = profile
        return [best[t] for t in sorted(best)]

    def memory_per_worker(self, hits: float) -> float:
        """Bytes one worker needs for events of ``hits``: resident + the working memory of one
        event (the size sweep's fit when measured, else (peak − resident)·hits/peak_hits)."""
        if self.working_memory is not None:
            return self.worker_rss_bytes + float(self.working_memory.bytes(hits))
        extra = max(self.worker_peak_bytes - self.worker_rss_bytes, 0.0)
        return self.worker_rss_bytes + extra * hits / max(self.peak_hits, 1.0)

    def network_seconds(self, hits: float) -> float:
        """Network time added to each event's latency (s): round trip + payload/transfer rate."""
        return self.round_trip_s + self.bytes_per_hit * hits / self.transfer_bytes_per_s


# ---------------------------------------------------------------------------------------------
# the estimate


@dataclass
class NodeEstimate:
    """What one node type needs for the target rate (``None`` where not measured)."""

    node: NodeSpec
    measured: bool
    note: str = ""
    threads_per_worker: int | None = None
    servers: int | None = None  # workers (CPU) or GPUs
    workers_per_node: int | None = None
    nodes: int | None = None
    cores: int | None = None
    gpus: int | None = None
    memory_bytes: float | None = None
    network_bytes_per_s: float | None = None
    utilisation: float | None = None
    service_mean_s: float | None = None
    cost_core_s_per_event: float | None = None
    cost_gpu_s_per_event: float | None = None
    latency_s: dict[str, float] = field(default_factory=dict)
    mean_wait_allen_cunneen_s: float | None = None
    meets_budget: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["node"] = asdict(self.node)
        return out


@dataclass
class EstimateResult:
    """Every node type's needs at ``rate_hz``, the inputs used and the assumptions made."""

    rate_hz: float
    latency_budget_s: float | None
    event_hits: float
    headroom: float
    rows: list[NodeEstimate]
    assumptions: list[str]
    inputs: dict[str, Any]
    curve: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_hz": self.rate_hz,
            "latency_budget_s": self.latency_budget_s,
            "event_hits": self.event_hits,
            "headroom": self.headroom,
            "nodes": [row.to_dict() for row in self.rows],
            "assumptions": self.assumptions,
            "inputs": self.inputs,
            "nodes_against_rate": self.curve,
        }

    def table(self) -> str:
        """A plain-text table (one line per node type) followed by the assumptions."""
        header = (
            f"{'node':<8} {'nodes':>7} {'workers':>8} {'thr':>4} {'cores':>8} {'gpus':>6} "
            f"{'memory':>10} {'network':>11} {'util':>5} {'cost/evt':>12} "
            f"{'p50':>9} {'p95':>9} {'p99':>9}"
        )
        lines = [
            f"target rate {self.rate_hz:g} Hz, events of {self.event_hits:,.0f} hits, "
            f"headroom {self.headroom:.0%}"
            + (f", latency budget {_fmt_s(self.latency_budget_s)} (p95)" if self.latency_budget_s else ""),
            header,
            "-" * len(header),
        ]
        for row in self.rows:
            if not row.measured:
                lines.append(f"{row.node.name:<8} not measured: {row.note}")
                continue
            cost = (
                f"{row.cost_gpu_s_per_event:.3g} GPU-s"
                if row.cost_gpu_s_per_event is not None
                else f"{row.cost_core_s_per_event:.3g} core-s"
            )
            lines.append(
                f"{row.node.name:<8} {row.nodes:>7,} {row.servers:>8,} {row.threads_per_worker:>4} "
                f"{row.cores or 0:>8,} {row.gpus or 0:>6,} {_fmt_bytes(row.memory_bytes):>10} "
                f"{_fmt_bytes(row.network_bytes_per_s) + '/s':>11} {row.utilisation:>5.0%} "
                f"{cost:>12} {_fmt_s(row.latency_s['p50']):>9} {_fmt_s(row.latency_s['p95']):>9} "
                f"{_fmt_s(row.latency_s['p99']):>9}"
            )
            if row.note:
                lines.append(f"{'':<8} note: {row.note}")
        lines.append("assumptions:")
        lines.extend(f"  - {a}" for a in self.assumptions)
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """``estimate.json`` and ``nodes_vs_rate.png`` in ``out_dir``; returns the paths."""
        from trackflow.estimation import plots

        out_dir = Path(out_dir)
        json_path = write_json(out_dir / "estimate.json", self.to_dict(), indent=2)  # atomic
        png = plots.plot_nodes_against_rate(self.curve, self.rate_hz, out_dir / "nodes_vs_rate.png")
        return [json_path, png]


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "inf"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"


def servers_for_throughput(rate_hz: float, mean_service_s: float, headroom: float) -> int:
    """Smallest c with utilisation ``λ·E[S]/c <= 1 − headroom`` (at least 1)."""
    return max(1, math.ceil(rate_hz * mean_service_s / (1.0 - headroom) - 1e-9))


def latency_at_load(
    rate_hz: float, samples: np.ndarray, servers: int, network_s: float, seed: int = 0
) -> dict[str, float]:
    """Latency percentiles (s) of an open FCFS queue simulated with the measured samples."""
    jobs = int(config.get("estimate.simulated_events", 20_000))
    simulation = queueing.simulate_open_queue(rate_hz, samples, servers, jobs=jobs, seed=seed)
    percentiles = simulation.percentiles()
    out = {k: v + network_s for k, v in percentiles.items()}
    out["mean"] = float(simulation.sojourn_s.mean()) + network_s
    out["mean_wait"] = float(simulation.wait_s.mean())
    return out


def _size_servers(
    rate_hz: float,
    samples: np.ndarray,
    headroom: float,
    network_s: float,
    budget_s: float | None,
) -> tuple[int, dict[str, float], bool | None]:
    """Servers for throughput, then more until the simulated p95 meets the budget (bisection)."""
    servers = servers_for_throughput(rate_hz, float(samples.mean()), headroom)
    latency = latency_at_load(rate_hz, samples, servers, network_s)
    if budget_s is None:
        return servers, latency, None
    if latency["p95"] <= budget_s:
        return servers, latency, True
    # with unlimited servers latency tends to network + service: if that misses, nothing helps
    if network_s + float(np.percentile(samples, 95)) > budget_s:
        return servers, latency, False
    low, high = servers, servers
    while True:
        high *= 2
        latency_high = latency_at_load(rate_hz, samples, high, network_s)
        if latency_high["p95"] <= budget_s:
            break
        low = high
        if high > 1e7:
            return servers, latency, False
    while high - low > 1:
        mid = (low + high) // 2
        latency_mid = latency_at_load(rate_hz, samples, mid, network_s)
        if latency_mid["p95"] <= budget_s:
            high, latency_high = mid, latency_mid
        else:
            low = mid
    return high, latency_high, True


def _estimate_node(
    node: NodeSpec,
    inputs: BenchInputs,
    rate_hz: float,
    budget_s: float | None,
    hits: float,
    headroom: float,
    gpu_speedup: float | None,
) -> NodeEstimate:
    network_s = inputs.network_seconds(hits)
    bandwidth = inputs.bytes_per_hit * hits * rate_hz
    memory_per_worker = inputs.memory_per_worker(hits)
    if node.kind == "gpu":
        profiles = inputs.profiles_for("cuda")
        assumed = False
        if not profiles:
            cpu_single = [p for p in inputs.profiles_for("cpu") if p.threads == 1]
            if gpu_speedup is None or not cpu_single:
                return NodeEstimate(
                    node,
                    measured=False,
                    note="the bench has no GPU measurements (device "
                    f"{inputs.device!r}); run `trackflow bench --device cuda` on a GPU node, "
                    "or pass gpu_speedup (--gpu-speedup) to scale from 1-thread CPU times",
                )
            profiles, assumed = cpu_single, True
        profile = profiles[0]
        samples = profile.scaled(inputs.scaling, hits)
        if assumed:
            samples = samples / gpu_speedup
        servers, latency, meets = _size_servers(rate_hz, samples, headroom, network_s, budget_s)
        nodes = math.ceil(servers / node.gpus)
        row = NodeEstimate(
            node,
            measured=True,
            note=(
                f"ASSUMED: GPU service time = 1-thread CPU time / {gpu_speedup:g} (not measured)"
                if assumed
                else ""
            ),
            threads_per_worker=profile.threads,
            servers=servers,
            workers_per_node=node.gpus,
            nodes=nodes,
            cores=servers * profile.threads,
            gpus=servers,
            memory_bytes=servers * memory_per_worker,
            network_bytes_per_s=bandwidth,
            utilisation=rate_hz * float(samples.mean()) / servers,
            service_mean_s=float(samples.mean()),
            cost_gpu_s_per_event=float(samples.mean()),
            latency_s=latency,
            mean_wait_allen_cunneen_s=_allen_cunneen(rate_hz, samples, servers),
            meets_budget=meets,
        )
        return _budget_note(row, budget_s)

    profiles = inputs.profiles_for("cpu")
    if not profiles:
        return NodeEstimate(
            node, measured=False, note=f"the bench has no CPU measurements (device {inputs.device!r})"
        )
    candidates = []
    for profile in profiles:
        by_cores = node.cores // profile.threads
        by_memory = int(node.memory_bytes // memory_per_worker) if node.memory_bytes > 0 else by_cores
        workers_per_node = min(by_cores, by_memory)
        if workers_per_node < 1:
            continue
        # a node is planned full of workers: they run beside each other, slower than benched alone
        busy_fraction = workers_per_node * profile.threads / max(node.cores, 1)
        contention = inputs.contention_factor(profile, busy_fraction)
        samples = profile.scaled(inputs.scaling, hits) * contention
        if profile.overhead_per_task_s > 0 and inputs.worker_side_cpu_s > 0:
            # Dask's own CPU in each worker process (event loop, comms) has no spare core on a
            # full node: S' = max(S, W·(T·S + cpu)/cores) (see shared_cores_service)
            busy = workers_per_node * (profile.threads * samples + inputs.worker_side_cpu_s)
            samples = np.maximum(samples, busy / node.cores)
        servers, latency, meets = _size_servers(rate_hz, samples, headroom, network_s, budget_s)
        nodes = math.ceil(servers / workers_per_node)
        note = ""
        if contention != 1.0:
            note = f"contention x{contention:.2f}"
        if by_memory < by_cores:
            note += "; " if note else ""
            note += f"memory-bound: {by_memory} workers of {_fmt_bytes(memory_per_worker)} per node"
        if node.network_bytes_per_s and bandwidth / nodes > node.network_bytes_per_s:
            note += "; " if note else ""
            note += "NIC-bound: more nodes needed than computed for the network"
            nodes = math.ceil(bandwidth / node.network_bytes_per_s)
        candidates.append(
            NodeEstimate(
                node,
                measured=True,
                note=note,
                threads_per_worker=profile.threads,
                servers=servers,
                workers_per_node=workers_per_node,
                nodes=nodes,
                cores=servers * profile.threads,
                gpus=0,
                memory_bytes=servers * memory_per_worker,
                network_bytes_per_s=bandwidth,
                utilisation=rate_hz * float(samples.mean()) / servers,
                service_mean_s=float(samples.mean()),
                cost_core_s_per_event=float(samples.mean()) * profile.threads,
                latency_s=latency,
                mean_wait_allen_cunneen_s=_allen_cunneen(rate_hz, samples, servers),
                meets_budget=meets,
            )
        )
    if not candidates:
        return NodeEstimate(node, measured=False, note="one worker does not fit on this node")
    # the cheapest configuration that meets the budget; if none does, the cheapest of all
    meeting = [c for c in candidates if c.meets_budget is not False] or candidates
    best = min(meeting, key=lambda c: (c.nodes, c.cost_core_s_per_event))
    return _budget_note(best, budget_s)


def _budget_note(row: NodeEstimate, budget_s: float | None) -> NodeEstimate:
    if row.meets_budget is False and budget_s is not None:
        p95 = _fmt_s(row.latency_s["p95"])
        missed = f"latency budget {_fmt_s(budget_s)} (p95) NOT met by any number of servers: p95 {p95}"
        row.note = f"{missed}; {row.note}" if row.note else missed
    return row


def _allen_cunneen(rate_hz: float, samples: np.ndarray, servers: int) -> float:
    mean = float(samples.mean())
    cv2 = float(samples.var() / mean**2) if mean > 0 else 0.0
    return queueing.allen_cunneen_mean_wait(rate_hz, mean, servers, cv2)


def estimate(
    bench_json: Path,
    rate_hz: float,
    latency_budget_s: float | None = None,
    nodes: Sequence[NodeSpec | str] | None = None,
    event_hits: int | None = None,
    headroom: float | None = None,
    out_dir: Path | None = None,
    gpu_speedup: float | None = None,
) -> EstimateResult:
    """Resources needed to reconstruct ``rate_hz`` events/s, per node type, from a bench.json.

    ``latency_budget_s``: the p95 latency (s) to meet, or None. ``nodes``: node types (default
    :data:`DEFAULT_NODES`; strings are parsed by :meth:`NodeSpec.parse`). ``event_hits``: size
    of the events to plan for (default: the mean of the benched events). ``headroom``: fraction
    of capacity left free (default config
    ``estimate.headroom``, 0.2). ``gpu_speedup``: only when the bench has no GPU figures, the
    assumed GPU speed-up over one CPU core. With ``out_dir``, writes estimate.json and a plot.
    """
    inputs = BenchInputs.load(Path(bench_json))
    return estimate_from_inputs(
        inputs, rate_hz, latency_budget_s, nodes, event_hits, headroom, out_dir, gpu_speedup
    )


def estimate_from_inputs(
    inputs: BenchInputs,
    rate_hz: float,
    latency_budget_s: float | None = None,
    nodes: Sequence[NodeSpec | str] | None = None,
    event_hits: int | None = None,
    headroom: float | None = None,
    out_dir: Path | None = None,
    gpu_speedup: float | None = None,
) -> EstimateResult:
    """:func:`estimate` on already-loaded inputs."""
    rate_hz = parse_rate(rate_hz)
    if latency_budget_s is not None:
        latency_budget_s = parse_duration(latency_budget_s)
    headroom = float(config.get("estimate.headroom", 0.2) if headroom is None else headroom)
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(f"--headroom: must be in [0, 1), got {headroom}")
    if gpu_speedup is not None and not gpu_speedup > 0:
        raise ConfigError(f"--gpu-speedup: must be positive, got {gpu_speedup}")
    if event_hits is not None and event_hits < 1:
        raise ConfigError(f"--event-hits: must be a positive number of hits, got {event_hits}")
    hits = float(event_hits) if event_hits is not None else inputs.input_hits
    node_types = [NodeSpec.parse(node) if isinstance(node, str) else node for node in nodes or DEFAULT_NODES]

    rows = [
        _estimate_node(node, inputs, rate_hz, latency_budget_s, hits, headroom, gpu_speedup)
        for node in node_types
    ]
    scaling = inputs.scaling
    hi = scaling.hits_range[1]
    assumptions = [
        "Poisson arrivals; one event = one task on one server (worker or GPU); identical, "
        "independent servers; FCFS shared queue",
        f"service times: measured per-event samples (bench device {inputs.device!r}) + measured "
        "Dask overhead per task, scaled to the target size by t(H)/t(h) with " + scaling.describe(),
        _contention_assumption(inputs.contention),
        f"Dask's CPU in each worker outside the task, {_fmt_s(inputs.worker_side_cpu_s)} per task "
        "(measured), taken from the workers' cores when they fill the node; the client and the "
        "scheduler run elsewhere",
        f"latency = network {_fmt_s(inputs.network_seconds(hits))} (measured round trip "
        f"{_fmt_s(inputs.round_trip_s)} + {inputs.bytes_per_hit * hits:,.0f} B at "
        f"{_fmt_bytes(inputs.transfer_bytes_per_s)}/s) + queue + service; percentiles from a "
        "discrete-event simulation drawing the measured samples",
        f"memory per worker {_fmt_bytes(inputs.memory_per_worker(hits))} (resident + working "
        + (
            "memory fitted against hits in the size sweep)"
            if inputs.working_memory
            else "memory scaled linearly with hits)"
        ),
        f"headroom {headroom:.0%}: utilisation kept <= {1 - headroom:.0%}",
    ]
    if hits > hi > 0:
        assumptions.append(
            f"EXTRAPOLATED: {hits:,.0f} hits is beyond the largest benched event ({hi:,} hits)"
        )
    if gpu_speedup is not None and not inputs.profiles_for("cuda"):
        assumptions.append(f"ASSUMED by the user: GPU service time = 1-thread CPU time / {gpu_speedup:g}")
    result = EstimateResult(
        rate_hz=rate_hz,
        latency_budget_s=latency_budget_s,
        event_hits=hits,
        headroom=headroom,
        rows=rows,
        assumptions=assumptions,
        inputs={
            "bench": str(inputs.path) if inputs.path else None,
            "device": inputs.device,
            "size_scaling": scaling.to_dict(),
            "node_contention": inputs.contention.to_dict() if inputs.contention else None,
            "round_trip_s": inputs.round_trip_s,
            "transfer_bytes_per_s": inputs.transfer_bytes_per_s,
            "bytes_per_event": inputs.bytes_per_hit * hits,
            "memory_per_worker_bytes": inputs.memory_per_worker(hits),
            "machine": inputs.machine,
        },
        curve=_nodes_against_rate(rows, inputs, rate_hz, hits, headroom, gpu_speedup),
    )
    if out_dir is not None:
        result.write(Path(out_dir))
    return result


def _contention_assumption(contention: NodeContention | None) -> str:
    if contention is None:
        return (
            "node contention NOT measured (bench without it): CPU workers assumed as fast "
            "beside each other as alone"
        )
    return (
        f"CPU node contention: measured x{contention.slowdown:.3f} per event with all "
        f"{contention.cores} cores of the bench machine busy (no Dask), linear in the busy cores "
        "from x1 with one; a node's busy fraction is mapped onto the bench machine's cores "
        "(its contention stands in for the target node's)"
    )


def _nodes_against_rate(
    rows: list[NodeEstimate],
    inputs: BenchInputs,
    rate_hz: float,
    hits: float,
    headroom: float,
    gpu_speedup: float | None,
) -> dict[str, list[float]]:
    """Nodes for throughput (with headroom) over rates from rate/100 to rate·100, per node type."""
    rates = np.logspace(math.log10(rate_hz) - 2, math.log10(rate_hz) + 2, 41)
    curve: dict[str, list[float]] = {"rate_hz": rates.tolist()}
    for row in rows:
        if not row.measured or row.service_mean_s is None or not row.workers_per_node:
            continue
        curve[row.node.name] = [
            float(math.ceil(servers_for_throughput(r, row.service_mean_s, headroom) / row.workers_per_node))
            for r in rates
        ]
    return curve


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
    return np.maximum(service_s, workers * (service_s + other_cpu_s) / cores)


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
        out.update(simulation.percentiles())
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
    out.update({f"p{q}": float(np.percentile(pooled, q)) for q in (50, 95, 99)})
    return out
