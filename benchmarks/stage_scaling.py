"""Per-stage time against event size: real TrackML hits subsampled to 1k, 10k and all (~100k).

    .venv/bin/python benchmarks/stage_scaling.py [--sizes 1000,10000,0] [--threads 1] [--models DIR]

Subsampling keeps the detector's geometry and lowers the hit density, as a lower pileup would;
the models (and graph-building radius) stay fixed, as in production. Each size runs once to warm
up and then ``--repeats`` times; the table gives the best time per stage (s), the total, the time
per hit (us) and, for the largest size, its time per hit relative to 10k hits (issue 10's target:
<= 1.5). Writes benchmarks/results/stage_scaling.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline_common import (
    benchmark_pipeline,
    calibrate,
    machine,
    real_event,
    subsample,
    write_table,
)

from trackflow.pipeline import STAGE_NAMES, set_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,0", help="hits; 0 = the full event")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (1 above 50k hits)")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--same-density",
        action="store_true",
        help="untrained models: set radius and cut per size for ~20 edges/hit (algorithmic scaling)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    event = real_event(0)
    pipeline, description = benchmark_pipeline(
        args.models, device=args.device, threads=args.threads, calibration_event=event
    )
    rows, per_hit = [], {}
    for size in [int(s) for s in args.sizes.split(",")]:
        sample = subsample(event, size or event.n_hits)
        if args.same_density and "untrained" in description:
            calibrate(pipeline, [pipeline.prepare(sample)], 20.0, 0.2)
        repeats = 1 if sample.n_hits > 50_000 else args.repeats
        if sample.n_hits <= 50_000:
            pipeline(sample)  # warm-up
        best = {name: float("inf") for name in STAGE_NAMES}
        for _ in range(repeats):
            tracks = pipeline(sample)
            best = {name: min(best[name], tracks.timings[name]) for name in STAGE_NAMES}
        total = sum(best.values())
        per_hit[sample.n_hits] = total / sample.n_hits
        rows.append(
            [sample.n_hits]
            + [f"{best[name]:.4f}" for name in STAGE_NAMES]
            + [f"{total:.3f}", f"{1e6 * per_hit[sample.n_hits]:.1f}", tracks.counts["edges_graph"]]
        )
        print(rows[-1], flush=True)
    sizes = sorted(per_hit)
    ratio = ""
    ten_k = [n for n in sizes if 5_000 <= n <= 20_000]
    if ten_k and sizes[-1] > ten_k[0]:
        ratio = (
            f" Time per hit at {sizes[-1]} hits / at {ten_k[0]} hits: "
            f"{per_hit[sizes[-1]] / per_hit[ten_k[0]]:.2f} (target <= 1.5)."
        )
    notes = (
        f"Machine: {machine()}. {description}"
        f"{'; radius and cut then set again at each size for ~20 edges/hit' if args.same_density else ''}"
        f". Device {args.device}, {args.threads} thread(s). "
        f"Best of {args.repeats} (1 above 50k hits), s.{ratio} Command: `.venv/bin/python "
        f"benchmarks/stage_scaling.py --sizes {args.sizes} --threads {args.threads}"
        f"{' --same-density' if args.same_density else ''}`."
    )
    write_table(
        "stage_scaling_same_density" if args.same_density else "stage_scaling",
        "Per-stage time against event size",
        ["hits", *STAGE_NAMES, "total (s)", "us/hit", "edges_graph"],
        rows,
        notes,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
