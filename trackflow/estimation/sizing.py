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

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.estimation import queueing
from trackflow.estimation.batch_prediction import predict_batch_workflow, shared_cores_service
from trackflow.estimation.bench_inputs import BenchInputs, ServiceProfile
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.estimate_result import EstimateResult, NodeEstimate, format_bytes, format_seconds
from trackflow.estimation.latency import latency_at_load, servers_for_throughput
from trackflow.estimation.node_types import DEFAULT_NODES, NodeSpec
from trackflow.estimation.option_parsers import parse_bandwidth, parse_bytes, parse_duration, parse_rate
from trackflow.estimation.scheduler import SchedulerModel
from trackflow.estimation.scheduler_plan import SchedulerPlan, plan_schedulers
from trackflow.estimation.size_model import SizeScaling

# Where the names below live now; they stay importable from here, where the CLI, notebooks and
# benchmarks import them: this module is the estimate's public face.
__all__ = [
    "DEFAULT_NODES",
    "BenchInputs",
    "EstimateResult",
    "NodeEstimate",
    "NodeSpec",
    "ServiceProfile",
    "SizeScaling",
    "estimate",
    "estimate_from_inputs",
    "latency_at_load",
    "parse_bandwidth",
    "parse_bytes",
    "parse_duration",
    "parse_rate",
    "predict_batch_workflow",
    "servers_for_throughput",
    "shared_cores_service",
]


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
                    f"{inputs.device!r}); run `trackflow bench` with device cuda on a GPU node, "
                    "or give gpu_speedup to scale from 1-thread CPU times",
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
            note += f"memory-bound: {by_memory} workers of {format_bytes(memory_per_worker)} per node"
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
        p95 = format_seconds(row.latency_s["p95"])
        budget = format_seconds(budget_s)
        missed = f"latency budget {budget} (p95) NOT met by any number of servers: p95 {p95}"
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
    of capacity left free (default: setting ``estimate.headroom``). ``gpu_speedup``: only when
    the bench has no GPU figures, the assumed GPU speed-up over one CPU core. With ``out_dir``,
    writes estimate.json and a plot.
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
    headroom = float(config.get("estimate.headroom") if headroom is None else headroom)
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(f"headroom: must be in [0, 1), got {headroom}")
    if gpu_speedup is not None and not gpu_speedup > 0:
        raise ConfigError(f"gpu_speedup: must be positive, got {gpu_speedup}")
    if event_hits is not None and event_hits < 1:
        raise ConfigError(f"event_hits: must be a positive number of hits, got {event_hits}")
    hits = float(event_hits) if event_hits is not None else inputs.input_hits
    node_types = [NodeSpec.parse(node) if isinstance(node, str) else node for node in nodes or DEFAULT_NODES]

    rows = [
        _estimate_node(node, inputs, rate_hz, latency_budget_s, hits, headroom, gpu_speedup)
        for node in node_types
    ]
    schedulers = _plan_schedulers(rows, inputs, rate_hz, hits)
    scaling = inputs.scaling
    hi = scaling.hits_range[1]
    assumptions = [
        "Poisson arrivals; one event = one task on one server (worker or GPU); identical, "
        "independent servers; FCFS shared queue",
        f"service times: measured per-event samples (bench device {inputs.device!r}) + measured "
        "Dask overhead per task, scaled to the target size by t(H)/t(h) with " + scaling.describe(),
        _contention_assumption(inputs.contention),
        f"Dask's CPU in each worker outside the task, {format_seconds(inputs.worker_side_cpu_s)} per task "
        "(measured), taken from the workers' cores when they fill the node; the client and the "
        "scheduler run elsewhere (the scheduler's own load: next line)",
        _scheduler_assumption(schedulers),
        f"latency = network {format_seconds(inputs.network_seconds(hits))} (measured round trip "
        f"{format_seconds(inputs.round_trip_s)} + {inputs.bytes_per_hit * hits:,.0f} B at "
        f"{format_bytes(inputs.transfer_bytes_per_s)}/s) + queue + service; percentiles from a "
        "discrete-event simulation drawing the measured samples",
        f"memory per worker {format_bytes(inputs.memory_per_worker(hits))} (resident + working "
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
        schedulers=schedulers,
    )
    if out_dir is not None:
        result.write(Path(out_dir))
    return result


def _plan_schedulers(
    rows: list[NodeEstimate], inputs: BenchInputs, rate_hz: float, hits: float
) -> list[SchedulerPlan]:
    """Each measured row's schedulers (:mod:`~trackflow.estimation.scheduler_plan`), its
    scheduler columns filled in: every event's measured bytes pass through the scheduler."""
    plans = []
    for row in rows:
        if not row.measured or not row.servers or row.service_mean_s is None:
            continue
        plan = plan_schedulers(
            row.node.name, rate_hz, row.servers, inputs.bytes_per_hit * hits, row.service_mean_s, hits
        )
        row.scheduler_utilisation = plan.chosen.utilisation_one
        row.clusters = plan.chosen.clusters
        plans.append(plan)
    return plans


def _scheduler_assumption(plans: list[SchedulerPlan]) -> str:
    model = SchedulerModel.from_config()
    split = [p for p in plans if p.chosen.clusters > 1]
    verdict = (
        "; ".join(f"{p.node}: {p.chosen.clusters} clusters" for p in split)
        if split
        else "one cluster suffices for every node type"
    )
    return (
        "one Dask scheduler is one core, and every event's bytes pass through it (the hits in the "
        f"task's graph, the tracks gathered): utilisation = {model.idle_cpu:.2f} idle + "
        f"heartbeats/s (<= 200/s, Dask's adaptive interval) x {format_seconds(model.cpu_per_heartbeat_s)} + "
        f"{model.active_cpu:.2f} once tasks flow + tasks/s x ({format_seconds(model.cpu_per_batch_s)} "
        f"per task + {model.cpu_per_byte_s * 1e9:.2f} ms/MB + "
        f"{format_seconds(model.cpu_per_chained_task_s)} per further chained task) "
        f"(measured by benchmarks/scheduler_limits.py; estimate.scheduler); above "
        f"{float(config.get('estimate.scheduler.threshold')):.0%} the farm splits into K independent "
        f"clusters, each with its own scheduler, client and 1/K of the rate and workers: {verdict}"
    )


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
