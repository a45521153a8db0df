"""Time and peak memory (RSS) to read one full real TrackML event (hits + particles).

    .venv/bin/python benchmarks/read_event.py [--event PREFIX] [--repeat 5] [--parts hits,particles]

Run it as its own process: the peak RSS is the process's high-water mark (VmHWM) right after the
first read, so it includes the interpreter and the imported libraries; the table also gives the
RSS after the imports and the in-memory size of the event's frames. Times are wall-clock seconds
of :func:`trackflow.events.read_event` (read, validate, derive r/phi/eta). Writes a markdown table
to stdout and to ``benchmarks/results/read_event.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EVENT = REPO.parent / "shared" / "data" / "trackml" / "kaggle_train_1" / "event000001001"
RESULTS = REPO / "benchmarks" / "results" / "read_event.md"


def rss_mib(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS: now, VmHWM: peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", type=Path, default=DEFAULT_EVENT, help="event prefix or one of its files")
    parser.add_argument("--repeat", type=int, default=5, help="timed reads after the first one")
    parser.add_argument("--parts", default="hits,particles", help="comma-separated parts to read")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.parts.split(",") if p)

    import pandas as pd
    import pyarrow as pa

    from trackflow.events import read_event

    rss_imports = rss_mib("VmRSS")
    start = time.perf_counter()
    event = read_event(args.event, parts=parts)
    first_s = time.perf_counter() - start
    peak_first = rss_mib("VmHWM")
    frames = [f for f in (event.hits, event.cells, event.truth, event.particles) if f is not None]
    frame_mib = sum(f.memory_usage(deep=True).sum() for f in frames) / 2**20
    n_hits = event.n_hits
    n_particles = 0 if event.particles is None else len(event.particles)
    del event, frames

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        read_event(args.event, parts=parts)
        times.append(time.perf_counter() - start)

    files = sorted(Path(args.event).parent.glob(f"{Path(args.event).name.split('-')[0]}-*"))
    on_disk = sum(f.stat().st_size for f in files if f.name.split("-")[1].split(".")[0] in parts)
    command = f"{Path(sys.executable).name} benchmarks/read_event.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    rows = [
        ("event", f"`{Path(args.event).name}` ({', '.join(parts)})"),
        ("hits / particles", f"{n_hits:,} / {n_particles:,}"),
        ("files on disk (gzip)", f"{on_disk / 2**20:.1f} MiB"),
        ("first read (s)", f"{first_s:.3f}"),
        (
            f"next {args.repeat} reads: median / min (s)",
            f"{statistics.median(times):.3f} / {min(times):.3f}" if times else "n/a",
        ),
        ("hits per second (median read)", f"{n_hits / statistics.median(times):,.0f}" if times else "n/a"),
        ("RSS after imports (MiB)", f"{rss_imports:.0f}"),
        ("peak RSS after the first read (MiB)", f"{peak_first:.0f}"),
        ("peak RSS increase from the read (MiB)", f"{peak_first - rss_imports:.0f}"),
        ("event frames in memory (MiB)", f"{frame_mib:.1f}"),
        ("peak RSS at exit (MiB)", f"{rss_mib('VmHWM'):.0f}"),
    ]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs (pyarrow uses {pa.cpu_count()} threads), "
        f"Python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pa.__version__}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows the reads)"
    )
    table = "\n".join(
        [
            "# Reading one full TrackML event",
            "",
            f"Command: `{command.strip()}` (from the repository root)  ",
            f"Machine: {machine}",
            "",
            "| measure | value |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in rows),
            "",
        ]
    )
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
