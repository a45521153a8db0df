"""Simulation speed: events/s for pileup-20 gun events and for full (~10k particle) real events.

Each case simulates ``--events`` events in this process (one core) after one warm-up event (the
geometry and digitization set-up, reported apart), once for the simulation alone
(``simulate_event``) and once with the TrackML CSV.gz writing (``simulate_and_write``).
Prints a markdown table.

    PYTHONPATH=. .venv/bin/python benchmarks/sim_speed.py [--events 20] [--full-events 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from trackflow.events.simulation import SimulationConfig, simulate_event
from trackflow.run.parallel_simulation import simulate_and_write

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "trackml" / "kaggle_train_1"


def measure(name: str, config: SimulationConfig, events: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="sim-speed-") as tmp:
        start = time.perf_counter()
        simulate_event(config, 10_000)  # warm-up: ACTS geometry, digitization configs
        warmup = time.perf_counter() - start
        hits = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(events):
            hits += simulate_event(config, i).n_hits
        simulated, simulated_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(events):
            simulate_and_write(config, i, Path(tmp))
        written, written_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return [
        f"| {name} | {events} | {hits / events:,.0f} | {events / simulated:.2f} | "
        f"{simulated_cpu / events:.2f} | {events / written:.2f} | {written_cpu / events:.2f} | {warmup:.1f} |"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20, help="pileup-20 events")
    parser.add_argument("--full-events", type=int, default=3, help="full real-particle events")
    parser.add_argument("--data", type=Path, default=SHARED)
    args = parser.parse_args()
    rows = [
        "| case | events | hits/event | events/s (simulate) | CPU s/event (simulate) "
        "| events/s (simulate + write .csv.gz) | CPU s/event (simulate + write) | first-event set-up (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows += measure("gun, pileup 20 x 10 pions", SimulationConfig(seed=1, pileup=20), args.events)
    rows += measure(
        "real TrackML particles (~10k/event)",
        SimulationConfig(seed=1, particles_from=args.data),
        args.full_events,
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        "One process, one thread (2-core machine); noise 15 %, smeared digitization; "
        f"load average at the end {load} (wall-clock rates fall when other work shares the cores, "
        "CPU seconds much less).\n"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
