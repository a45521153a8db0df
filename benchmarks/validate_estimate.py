"""Validate trackflow's estimates against measurement (issue 8).

1. ``trackflow bench`` with ONE worker (fused and direct, 1 thread) on the chosen events; it
   also probes the node contention (every core running the pipeline at once, no Dask, against
   one process alone: a hardware property, like a matmul peak).
2. Predict, from that bench alone, the throughput and the p95 per-event latency of
   ``trackflow reconstruct`` with TWO workers and K batches in flight: a closed queue
   (:func:`trackflow.estimation.sizing.predict_batch_workflow`) drawing the measured per-batch
   service times, multiplied by the measured contention at 2 busy cores, plus the measured Dask
   overhead per batch outside the workers; the CPU Dask itself uses per batch (client, scheduler,
   worker event loops; measured in the 1-worker bench) comes out of the workers' cores once the
   2 workers fill the 2 cores (:func:`trackflow.estimation.sizing.shared_cores_service`).
3. Measure them: ``reconstruct`` (fused) on a 2-worker LocalCluster, after one warm-up run.
   Targets: throughput within 15 %, p95 latency within 25 %.
4. Size: fit the per-stage model (:mod:`trackflow.estimation.size_model`: per stage
   ``a + b·h + c·edges(h)``, edges a power law of the measured counts) on the bench's size sweep
   only (5 sizes from H/8 to H/2, a factor √2 apart), predict the time ratio t(H)/t(H/2) of
   doubling the event size, then measure it (direct, 1 thread) on fresh subsamples of H/2 and H
   hits. The old power law ``a + b·h^k`` on the same points is reported beside it.

Nothing measured with 2 workers or at H hits enters a prediction.

Writes ``OUT/validation.json`` and prints a table. Example (about 5-10 min on 2 cores)::

    PYTHONPATH=. .venv/bin/python benchmarks/validate_estimate.py \\
        ../shared/data/trackml/kaggle_train_1 --out /tmp/validate --events 8 --hits 4000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from trackflow.bench.sweep import BenchConfig, run_bench
from trackflow.cluster import ClusterOptions, open_cluster
from trackflow.estimation.contention import NodeContention
from trackflow.estimation.sizing import SizeScaling, predict_batch_workflow
from trackflow.events.subsample import subsample_event
from trackflow.events.trackml import list_events
from trackflow.run.batching import Batch, count_hits
from trackflow.run.executors import DirectExecutor
from trackflow.run.plugin import load_pipeline
from trackflow.run.reconstruct import ReconstructConfig, reconstruct

THROUGHPUT_TOLERANCE = 0.15
LATENCY_TOLERANCE = 0.25


def prepare_events(input_dir: Path, out: Path, events: int, hits: int | None, seed: int) -> Path:
    """The first ``events`` events, subsampled to ``hits`` hits when given, as a directory."""
    refs = list_events(input_dir)[:events]
    if hits is None:
        return input_dir
    rng = np.random.default_rng(seed)
    for ref in refs:
        if subsample_event(ref, hits, rng, out) is None:
            raise SystemExit(f"{ref.hits_path}: has fewer than {hits} hits")
    return out


def measure_reconstruct(
    events_dir: Path, out: Path, args: argparse.Namespace, loader: object
) -> list[dict[str, float]]:
    """Throughput (events/s) and p95 latency (s) of reconstruct with 2 workers, per repeat."""
    measured = []
    with open_cluster("local", workers=2, threads_per_worker=1) as opened:
        common = {
            "input_dir": events_dir,
            "event_ids": [r.event_id for r in list_events(events_dir)[: args.events]],
            "models_dir": args.models,
            "mode": "fused",
            "cluster": ClusterOptions(workers=2),
            "batch_size": args.batch_size,
            "max_in_flight": args.in_flight,
            "client": opened.client,
            "pipeline_loader": loader,
            "overwrite": True,
            "progress": False,
        }
        reconstruct(ReconstructConfig(out_dir=out / "warmup", **common))  # loads models, first inference
        for repeat in range(args.repeats):
            run = reconstruct(ReconstructConfig(out_dir=out / f"run-{repeat}", **common))
            report = run.report
            measured.append(
                {
                    "event_time_mean_s": report["event_time_s"]["mean"],
                    "events_per_second": report["throughput"]["events_per_s"],
                    "latency_p95_s": report["latency_s"]["p95"],
                    "latency_p50_s": report["latency_s"]["p50"],
                    "report": str(run.report_path),
                }
            )
            print(f"measured run {repeat}: {measured[-1]}", flush=True)
    return measured


class ReferencePass:
    """The same fixed work (direct, 1 thread, in this process, the validation's events) run at
    several moments: a diagnostic of the machine's own speed drifting between the bench and the
    measurement (other tenants of the host share its cache and memory bandwidth). Never used in
    a prediction."""

    def __init__(self, events_dir: Path, events: int, models: Path | None, loader: object) -> None:
        self.executor = DirectExecutor(load_pipeline(models, "cpu", 1, loader), retries=0)
        self.batches = [Batch(i, (ref,)) for i, ref in enumerate(list_events(events_dir)[:events])]
        list(self.executor.execute(self.batches[:1]))  # warm-up
        self.seconds: dict[str, float] = {}

    def run(self, moment: str) -> float:
        times = [e.stop - e.start for r in self.executor.execute(self.batches) for e in r.events]
        self.seconds[moment] = statistics.fmean(times)
        print(f"reference pass ({moment}): {self.seconds[moment]:.3f} s per event", flush=True)
        return self.seconds[moment]


def measure_size_ratio(
    input_dir: Path, out: Path, args: argparse.Namespace, loader: object, small: int, large: int
) -> dict[str, float]:
    """Mean direct seconds per event at ``small`` and ``large`` hits on fresh subsamples."""
    pipeline = load_pipeline(args.models, "cpu", 1, loader)
    executor = DirectExecutor(pipeline, retries=0)
    rng = np.random.default_rng(args.seed + 1)
    refs = list_events(input_dir)[: args.size_events]
    seconds: dict[int, list[float]] = {}
    for hits in (small, large):
        subsampled = [subsample_event(ref, hits, rng, out / f"size-{hits}-{i}") for i, ref in enumerate(refs)]
        batches = [Batch(i, (ref,)) for i, ref in enumerate(subsampled) if ref is not None]
        list(executor.execute(batches[:1]))  # warm-up at this size
        for _ in range(args.repeats):
            for result in executor.execute(batches):
                seconds.setdefault(hits, []).extend(e.stop - e.start for e in result.events)
    return {
        "small_hits": small,
        "large_hits": large,
        "small_mean_s": statistics.fmean(seconds[small]),
        "large_mean_s": statistics.fmean(seconds[large]),
        "ratio": statistics.fmean(seconds[large]) / statistics.fmean(seconds[small]),
    }


class ForeignCpu:
    """CPU seconds the rest of the machine used while the validation ran: all busy CPU time
    (/proc/stat) minus this process's and its reaped children's (getrusage). Other work on the
    machine slows both the bench and the measurement, differently: a run with more than a few
    percent of foreign CPU is not a clean validation, and is flagged as such."""

    def __init__(self) -> None:
        self.busy0, self.own0, self.wall0 = self._busy(), self._own(), time.monotonic()

    @staticmethod
    def _busy() -> float:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        import resource

        return sum(
            u.ru_utime + u.ru_stime
            for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        )

    def result(self) -> dict[str, float]:
        busy = self._busy() - self.busy0
        own = self._own() - self.own0
        wall = time.monotonic() - self.wall0
        foreign = max(busy - own, 0.0)
        return {
            "busy_cpu_s": busy,
            "own_cpu_s": own,
            "foreign_cpu_s": foreign,
            "foreign_fraction": foreign / (wall * (os.cpu_count() or 1)),
        }


def relative_error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument("--random-init", action="store_true", help="untrained models (no shipped ones)")
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--hits", type=int, default=None, help="subsample events to this many hits")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size-events", type=int, default=3)
    parser.add_argument("--contention-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loader = None
    if args.random_init:
        from trackflow.pipeline.pipeline import Pipeline

        loader = Pipeline.random_init
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = os.getloadavg()  # other work on the machine skews every timing: recorded
    foreign = ForeignCpu()

    events_dir = prepare_events(args.input_dir, args.out / "events", args.events, args.hits, args.seed)
    # the size test doubles from H/2 to H hits: H = --hits, else the smallest event used
    full_hits = args.hits or min(count_hits(r) for r in list_events(events_dir)[: args.events])
    half = full_hits // 2

    reference = ReferencePass(events_dir, args.events, args.models, loader)
    reference.run("before the bench")

    # 1. the 1-worker bench
    bench = run_bench(
        BenchConfig(
            events_dir,
            args.out / "bench-1worker",
            workers=[1],
            threads=[1],
            concurrency=sorted({1, args.in_flight}),
            modes=["fused", "direct"],
            max_events=args.events,
            hits=0,  # the events were cut above already
            batch_size=args.batch_size,
            repeats=args.repeats,
            models_dir=args.models,
            # H/8 .. H/2, a factor sqrt(2) apart: small events are cheap, more sizes constrain
            # the count power laws and the per-stage coefficients
            size_sweep=sorted({round(half / 2 ** (i / 2)) for i in range(5)}),
            size_events=args.size_events,
            loader=loader,
            contention=True,
            contention_seconds=args.contention_seconds,
        )
    )
    contention = NodeContention.from_dict(bench.get("node_contention"))
    if contention is None:
        print(f"node contention not measured: {bench.get('node_contention_error')}", flush=True)
    # 2 workers of 1 thread on this machine, from service times measured with 1 busy core
    factor = contention.factor(busy_cores=2, measured_busy_cores=1) if contention else 1.0
    print(f"node contention: {bench.get('node_contention')}; factor at 2 busy cores {factor:.3f}", flush=True)
    measured_cpu = bench.get("dask_cpu_per_batch_s") or {}
    dask_cpu = float(measured_cpu.get("client_process", 0.0) + measured_cpu.get("worker_side", 0.0))
    print(f"Dask CPU per batch outside the task: {measured_cpu}", flush=True)

    # 2. prediction for 2 workers from it
    fused = bench["service_times"]["fused/w1/t1"]
    per_batch = np.asarray(fused["per_batch_s"])
    n_events = len(list_events(events_dir)[: args.events])
    prediction = predict_batch_workflow(
        workers=2,
        in_flight=args.in_flight,
        per_batch_s=per_batch,
        events_per_batch=float(np.mean(fused["per_batch_events"])),
        overhead_s=float(bench["dask_overhead_per_batch_s"] or 0.0),
        batches=-(-n_events // args.batch_size),  # the finite run reconstruct makes
        contention=factor,
        # the client, the scheduler and both workers share this machine's cores
        cores=os.cpu_count(),
        dask_cpu_per_batch_s=dask_cpu,
    )
    print(f"predicted for 2 workers: {prediction}", flush=True)

    # 3. measurement
    reference.run("before the 2-worker runs")
    measured_runs = measure_reconstruct(events_dir, args.out, args, loader)
    reference.run("after the 2-worker runs")
    measured = {
        "events_per_second": statistics.fmean(m["events_per_second"] for m in measured_runs),
        "latency_p95_s": statistics.fmean(m["latency_p95_s"] for m in measured_runs),
    }

    # diagnostic: the model assumes a worker is as fast beside another as alone; compare the
    # in-task time per event of the 2-worker runs with the 1-worker bench's
    alone = float(np.mean(fused["per_event_s"]))
    beside = statistics.fmean(m["event_time_mean_s"] for m in measured_runs)
    slowdown = beside / alone
    print(
        f"in-task time per event: 1 worker {alone:.3f} s, 2 workers {beside:.3f} s "
        f"(x{slowdown:.2f} measured; x{factor:.2f} predicted by the contention probe)",
        flush=True,
    )

    # 4. size doubling: fit on the subsampled sizes (all <= H/2), extrapolate to H
    points = bench["size_scaling"]["measured"]
    scaling = SizeScaling.fit_points(points)
    power_law = SizeScaling.fit(
        np.array([p["hits"] for p in points]), np.array([p["seconds"] for p in points])
    )
    predicted_ratio = float(scaling.seconds(full_hits) / scaling.seconds(half))
    power_law_ratio = float(power_law.seconds(full_hits) / power_law.seconds(half))
    size = measure_size_ratio(args.input_dir, args.out, args, loader, half, full_hits)

    rows = [
        (
            "throughput 2 workers (events/s)",
            prediction["events_per_second"],
            measured["events_per_second"],
            THROUGHPUT_TOLERANCE,
        ),
        ("p95 latency 2 workers (s)", prediction["p95"], measured["latency_p95_s"], LATENCY_TOLERANCE),
        ("per-event slowdown 2 workers vs 1", factor, slowdown, None),
        (
            "reference pass: 2-worker time / bench time",
            1.0,
            statistics.fmean(
                [reference.seconds["before the 2-worker runs"], reference.seconds["after the 2-worker runs"]]
            )
            / reference.seconds["before the bench"],
            None,
        ),
        (f"time ratio {full_hits} / {half} hits ({scaling.model})", predicted_ratio, size["ratio"], None),
        (f"  same, power law a+b*h^k (k={power_law.k:.2f})", power_law_ratio, size["ratio"], None),
        (
            f"time per event at {full_hits} hits (s)",
            float(scaling.seconds(full_hits)),
            size["large_mean_s"],
            None,
        ),
    ]
    print(f"\n{'quantity':<44} {'predicted':>10} {'measured':>10} {'error':>8}  target")
    table = []
    for name, predicted, actual, tolerance in rows:
        error = relative_error(predicted, actual)
        verdict = "" if tolerance is None else ("PASS" if abs(error) <= tolerance else "MISS")
        target = "" if tolerance is None else f"±{tolerance:.0%}"
        print(f"{name:<44} {predicted:>10.4g} {actual:>10.4g} {error:>+8.1%}  {target} {verdict}")
        table.append(
            {
                "quantity": name,
                "predicted": predicted,
                "measured": actual,
                "relative_error": error,
                "tolerance": tolerance,
                "passed": None if tolerance is None else abs(error) <= tolerance,
            }
        )
    result = {
        "command": " ".join(["benchmarks/validate_estimate.py", *(argv or sys.argv[1:])]),
        "bench": str(args.out / "bench-1worker" / "bench.json"),
        "prediction": prediction,
        "measured_runs": measured_runs,
        "measured": measured,
        "dask_cpu_per_batch_s": measured_cpu,
        "reference_pass_s": reference.seconds,
        "size_fit": scaling.to_dict(),
        "size_fit_power_law": power_law.to_dict(),
        "size_measured": size,
        "table": table,
        "bench_headline": {
            k: bench[k] for k in ("scaling_efficiency", "fused_over_staged", "dask_overhead_fraction")
        },
        "duration_s": time.time() - started,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "foreign_cpu": foreign.result(),
        "contention": {
            "event_time_1_worker_s": alone,
            "event_time_2_workers_s": beside,
            "slowdown": slowdown,
            "predicted_factor": factor,
            "probe": bench.get("node_contention"),
            "what": "in-task time per event with 2 workers (Dask) / with 1 worker (Dask, the "
            "bench), against the factor the bench's contention probe (no Dask) predicts",
        },
    }
    (args.out / "validation.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    other = result["foreign_cpu"]
    clean = other["foreign_fraction"] <= 0.05
    result["clean"] = clean
    print(
        f"other work on the machine: {other['foreign_cpu_s']:.1f} CPU-s of {other['busy_cpu_s']:.1f} busy "
        f"({other['foreign_fraction']:.1%} of the machine): "
        + ("clean run" if clean else "NOT a clean run (more than 5 %), timings disturbed")
    )
    (args.out / "validation.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {args.out / 'validation.json'} ({result['duration_s']:.0f} s)")
    return 0 if all(r["passed"] is not False for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
