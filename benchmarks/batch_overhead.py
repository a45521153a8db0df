"""Dask's overhead per batch against the batch size: fixed batches of N events vs ``--batch-size
auto``, side by side on one LocalCluster, on small and on full events.

    .venv/bin/python benchmarks/batch_overhead.py SMALL_EVENTS_DIR [FULL_EVENTS_DIR]
        [--batch-sizes 4,auto] [--rounds 2] [--workers 2]

Each events directory is reconstructed with the shipped models (fused mode, one thread per
worker) once per batch size and round, the batch sizes taking turns within each round, on ONE
LocalCluster opened once (its workers keep their models warm, so the first run's start-up is
not in any figure). Per run: ``report.json``'s ``dask_overhead.fraction`` (the sum over batches
of latency − queueing − task time, over the sum of task times), its mean per batch, the
batches and the throughput. Writes benchmarks/results/batch_overhead.md.

Small events as the study's (about 1.3k points): ``trackflow simulate --out DIR --events 96
--seed 5 --pileup 10`` (particle gun, 10 pions per vertex).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from pipeline_common import machine, write_table

from trackflow.cluster import open_cluster
from trackflow.events import list_events
from trackflow.run.batching import count_hits
from trackflow.run.reconstruct import ReconstructConfig, reconstruct


def run_once(events: Path, out: Path, batch_size: int | str, client: object) -> dict:
    """One reconstruct run on ``client`` (``overwrite``: each run starts afresh); the report's
    overhead, batches and throughput."""
    cfg = ReconstructConfig(
        input_dir=events, out_dir=out, batch_size=batch_size, client=client, progress=False, overwrite=True
    )
    report = reconstruct(cfg).report
    return {
        "fraction": report["dask_overhead"]["fraction"],
        "mean_s": report["dask_overhead"]["mean_s"],
        "batches": report["batches"],
        "events_per_s": report["throughput"]["events_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="events directories (small, then full)")
    parser.add_argument("--batch-sizes", default="4,auto", help="comma-separated: numbers or auto")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sizes: list[int | str] = [s if s == "auto" else int(s) for s in args.batch_sizes.split(",")]

    results: dict[tuple[str, str], list[dict]] = {}
    work = Path(tempfile.mkdtemp(prefix="batch_overhead_"))
    with open_cluster("local", workers=args.workers, threads_per_worker=1) as handle:
        for round_ in range(args.rounds):
            for directory in args.dirs:
                order = sizes if round_ % 2 == 0 else sizes[::-1]
                for size in order:
                    out = work / f"{directory.name}-{size}"
                    results.setdefault((str(directory), str(size)), []).append(
                        run_once(directory, out, size, handle.client)
                    )
    shutil.rmtree(work, ignore_errors=True)

    rows = []
    for (directory, size), runs in results.items():
        refs = list_events(directory)
        hits = statistics.fmean(count_hits(r) for r in refs)
        rows.append(
            [
                Path(directory).name,
                f"{len(refs)} × {hits:,.0f}",
                size,
                runs[0]["batches"],
                " / ".join(f"{100 * r['fraction']:.2f}" for r in runs),
                " / ".join(f"{1000 * r['mean_s']:.0f}" for r in runs),
                " / ".join(f"{r['events_per_s']:.3g}" for r in runs),
            ]
        )
    write_table(
        "batch_overhead",
        "Dask overhead per batch: fixed batch sizes vs auto",
        [
            "events",
            "events × hits",
            "batch size",
            "batches",
            "overhead % of task time (each round)",
            "overhead ms per batch",
            "events/s",
        ],
        rows,
        f"Command: `python benchmarks/batch_overhead.py {' '.join(map(str, args.dirs))} --batch-sizes "
        f"{args.batch_sizes} --rounds {args.rounds} --workers {args.workers}`. Machine: {machine()}. "
        f"One {args.workers}-worker LocalCluster (1 thread each) for every run; fused mode, shipped models.",
    )


if __name__ == "__main__":
    main()
