"""The online service against the estimate (issue 21), on a 2-worker LocalCluster.

1. ``trackflow bench`` on the events (2 workers, 1 thread, fused and direct, batches of one
   event, with the node-contention probe): the estimate's inputs.
2. ``trackflow stream`` on a fresh 2-worker LocalCluster with that bench.json: capacity measured
   first (closed loop), then open-loop Poisson arrivals at fractions of it, then the closed-loop
   sweep of throughput and p95 against requests in flight at 1 and 2 workers.
3. The comparison: measured p95 at 50 % and 80 % of the measured capacity against the
   prediction from the bench (target: within 25 %) and from the stream's own quick measurement;
   the measured knee (p95 twice its value at the lowest rate) against the predicted one (target:
   within 15 %); what happens past capacity (backlog, client and worker memory), and in a second
   run at twice the capacity with a queue of 16 events (shed count, backlog bound, memory).
4. Whether the machine held still (``machine`` in online.json): the stream's in-task time per
   event against the bench's (the prediction is only as good as the bench's speed is the
   stream's), and the spread of the closed-loop capacity measurements taken between the rates'
   passes. ``steady`` is false past ±15 % or a spread of 1.5×: on a shared VM whose speed moves
   by up to 2× within minutes, such a run says nothing about the model, either way.

Writes ``OUT/bench/bench.json``, ``OUT/stream/stream.json`` and ``OUT/overload/stream.json``
(+ PNGs) and ``OUT/online.json``,
and prints a table. Example (about 15 min on 2 busy cores)::

    .venv/bin/trackflow simulate --out /tmp/svc_events --events 8 --seed 1 --pileup 10 --no-progress
    PYTHONPATH=. .venv/bin/python benchmarks/online_service.py /tmp/svc_events --out /tmp/online
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.bench.sweep import BenchConfig, run_bench
from trackflow.cluster import ClusterOptions
from trackflow.estimation.sizing import BenchInputs
from trackflow.files import write_json
from trackflow.service.stream import StreamConfig, run_stream

LATENCY_TOLERANCE = 0.25
KNEE_TOLERANCE = 0.15
FRACTIONS = [0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0, 1.25]
#: a steady machine: stream in-task time within this of the bench's, capacity spread at most this
STEADY_SPEED, STEADY_SPREAD = 0.15, 1.5
#: the overload run: offered rate ÷ measured capacity, and the queue bound (events)
OVERLOAD, OVERLOAD_QUEUE = 2.0, 16


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or measured == 0:
        return None
    return predicted / measured - 1.0


def _at_fraction(stream: dict[str, Any], fraction: float) -> dict[str, Any]:
    capacity = stream["capacity"]["measured_hz"]
    return min(stream["rates"], key=lambda r: abs(r["offered_rate_hz"] - fraction * capacity))


def compare(stream: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures from one stream.json."""
    out: dict[str, Any] = {"p95": {}, "knee": {}}
    for fraction in (0.5, 0.8):
        rate = _at_fraction(stream, fraction)
        measured = rate["latency_s"]["p95"]
        bench = rate["predicted"]["p95"]
        quick = rate["predicted_measured"]["p95"]
        out["p95"][f"{fraction:.0%}"] = {
            "offered_rate_hz": rate["offered_rate_hz"],
            "events": rate["done"],
            "measured_s": measured,
            "predicted_bench_s": bench,
            "predicted_quick_s": quick,
            "error_bench": relative_error(bench, measured),
            "error_quick": relative_error(quick, measured),
            "within_target_bench": _within(relative_error(bench, measured), LATENCY_TOLERANCE),
            "within_target_quick": _within(relative_error(quick, measured), LATENCY_TOLERANCE),
        }
    knee = stream["knee"]
    quick_knee = knee.get("predicted_measured_hz", knee["predicted_hz"])
    out["knee"] = {
        "measured_hz": knee["measured_hz"],
        "predicted_bench_hz": knee["predicted_hz"],
        "predicted_quick_hz": quick_knee,
        "error_bench": relative_error(knee["predicted_hz"], knee["measured_hz"]),
        "error_quick": relative_error(quick_knee, knee["measured_hz"]),
        "within_target_bench": _within(
            relative_error(knee["predicted_hz"], knee["measured_hz"]), KNEE_TOLERANCE
        ),
        "within_target_quick": _within(relative_error(quick_knee, knee["measured_hz"]), KNEE_TOLERANCE),
    }
    past = [r for r in stream["rates"] if r["offered_rate_hz"] > stream["capacity"]["measured_hz"] * 1.05]
    out["past_capacity"] = [
        {
            "offered_rate_hz": r["offered_rate_hz"],
            "arrivals": r["arrivals"],
            "done": r["done"],
            "shed": r["shed"],
            "failed": r["failed"],
            "unanswered": r["unanswered"],
            "throughput_hz": r["throughput_hz"],
            "max_queued": r["backlog"]["max_queued"],
            "max_client_rss_bytes": r["backlog"]["max_client_rss_bytes"],
            "worker_rss_bytes": {w: m.get("rss") for w, m in r["worker_memory"].items()},
        }
        for r in past
    ]
    return out


def machine_steadiness(stream: dict[str, Any], bench_json: Path) -> dict[str, Any]:
    """How far the machine's speed moved between the bench and the stream, and within the stream:
    mean in-task s per event in the stream's rates ÷ the bench's (less reading files, at the
    stream's hits), and max ÷ min of the stream's closed-loop capacity measurements."""
    inputs = BenchInputs.load(bench_json)
    profile = next(p for p in inputs.profiles_for("cpu") if p.threads == 1)
    rates = [r for r in stream["rates"] if r["done"]]
    hits = float(np.mean([r["hits_per_event"] for r in rates]))
    in_task = profile.scaled(inputs.scaling, hits, reading=False) - profile.overhead_per_task_s
    bench_s = float(np.mean(in_task))
    done = np.array([r["done"] for r in rates], dtype=float)
    stream_s = float((done * np.array([r["service_s"]["mean"] for r in rates])).sum() / done.sum())
    capacities = [c for c in stream["capacity"]["measurement"]["throughputs_hz"] if c]
    speed, spread = stream_s / bench_s, max(capacities) / min(capacities)
    return {
        "bench_in_task_s": bench_s,
        "stream_in_task_s": stream_s,
        "stream_over_bench": speed,
        "capacity_measurements_hz": capacities,
        "capacity_spread": spread,
        "steady": abs(speed - 1.0) <= STEADY_SPEED and spread <= STEADY_SPREAD,
    }


def _within(error: float | None, tolerance: float) -> bool | None:
    return None if error is None else abs(error) <= tolerance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=60.0, help="s of arrivals per rate")
    parser.add_argument("--sweep-duration", type=float, default=20.0)
    parser.add_argument("--calibration-events", type=int, default=60)
    parser.add_argument("--bench", type=Path, default=None, help="reuse this bench.json")
    parser.add_argument("--passes", type=int, default=3, help="turns the rates take (drift)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="LocalCluster workers (1 thread each); 1 on a 2-core node leaves a core to the client",
    )
    args = parser.parse_args(argv)

    bench_json = args.bench
    if bench_json is None:
        print(f"bench: {args.workers} workers, fused + direct, batches of 1", flush=True)
        run_bench(
            BenchConfig(
                input_dir=args.events,
                out_dir=args.out / "bench",
                workers=[args.workers],
                threads=[1],
                concurrency=[args.workers],
                modes=["fused", "direct"],
                batch_size=1,
                repeats=2,
                size_sweep=[250, 500, 1000],
                size_events=2,
            ),
            progress=lambda line: print(line, flush=True),
        )
        bench_json = args.out / "bench" / "bench.json"
    stream = run_stream(
        StreamConfig(
            args.events,
            args.out / "stream",
            capacity_fractions=FRACTIONS,
            duration=args.duration,
            concurrency=[1, 2, 4, 8],
            instances=sorted({1, args.workers}),
            sweep_duration=args.sweep_duration,
            bench_json=bench_json,
            cluster=ClusterOptions(workers=args.workers),
            calibration_events=args.calibration_events,
            passes=args.passes,
        ),
        progress=lambda line: print(line, flush=True),
    )
    figures = compare(stream)
    figures["machine"] = machine_steadiness(stream, bench_json)
    # past the knee with a small queue: shedding, counted, with the backlog and memory bounded
    overload = run_stream(
        StreamConfig(
            args.events,
            args.out / "overload",
            capacity_fractions=[OVERLOAD],
            duration=args.duration / 2,
            cluster=ClusterOptions(workers=args.workers),
            max_queued=OVERLOAD_QUEUE,
            calibration_events=max(8, args.calibration_events // 4),
        ),
        progress=lambda line: print(line, flush=True),
    )
    figures["overload"] = compare(overload)["past_capacity"]
    figures["capacity"] = {k: stream["capacity"][k] for k in ("measured_hz", "predicted_hz")}
    figures["network"] = stream["network"]
    figures["every_arrival_answered"] = stream["every_arrival_answered"]
    figures["counts"] = stream["counts"]
    figures["sweep"] = [
        {
            "instances": p["instances"],
            "concurrency": p["concurrency"],
            "throughput_hz": p["throughput_hz"],
            "p95_s": p["latency_s"]["p95"],
        }
        for p in stream["concurrency_sweep"]
    ]
    figures["rates"] = [
        {
            "offered_rate_hz": r["offered_rate_hz"],
            "utilisation": r["utilisation_measured"],
            "done": r["done"],
            "shed": r["shed"],
            "throughput_hz": r["throughput_hz"],
            "p95_s": r["latency_s"]["p95"],
            "predicted_bench_p95_s": r["predicted"]["p95"],
            "predicted_quick_p95_s": r["predicted_measured"]["p95"],
            "queue_p95_s": r["queue_s"]["p95"],
            "transfer_p50_s": r["transfer_s"]["p50"],
            "service_p50_s": r["service_s"]["p50"],
        }
        for r in stream["rates"]
    ]
    write_json(args.out / "online.json", figures, indent=2)
    shown = {k: figures[k] for k in ("capacity", "machine", "p95", "knee", "past_capacity", "overload")}
    print(json.dumps(shown, indent=2, default=str))
    header = ("rate Hz", "util", "done", "shed", "thr Hz", "p95 s", "bench", "quick")
    print(" ".join(f"{h:>8}" for h in header))
    for r in figures["rates"]:
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        print(
            f"{r['offered_rate_hz']:>8.3g} {r['utilisation']:>8.2f} {r['done']:>8} {r['shed']:>8} "
            f"{r['throughput_hz']:>8.3g} {fmt(r['p95_s']):>8} {fmt(r['predicted_bench_p95_s']):>8} "
            f"{fmt(r['predicted_quick_p95_s']):>8}"
        )
    for p in figures["sweep"]:
        print(
            f"instances {p['instances']} concurrency {p['concurrency']}: {p['throughput_hz']:.3g} Hz, "
            f"p95 {p['p95_s']:.3g} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
