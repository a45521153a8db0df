"""Per-stage time against event size: real TrackML hits subsampled to 1k, 10k and all (~100k).

    .venv/bin/python benchmarks/stage_scaling.py [--sizes 1000,10000,0] [--threads 1] [--models DIR]

Subsampling keeps the detector's geometry and lowers the hit density, as a lower pileup would;
the models (and graph-building radius) stay fixed, as in production. Each size runs once to warm
up and then ``--repeats`` times; the table gives the best time per stage (s), the total, the time
per hit (us), graph and filtered edges per hit and, for the largest size, its time per hit
relative to 10k hits (issue 10's target: <= 1.5), with a second table of where that growth is:
per stage, the growth of its work per hit (edges per hit rise with hit density at a fixed
radius) and of its time per unit of work. ``--models DIR`` times another model directory (e.g.
a retrained, tighter embedding). Writes benchmarks/results/stage_scaling.md.

Random hits are not what a smaller event looks like: each particle keeps a tenth of its hits at
10k, so true neighbours vanish with the fake ones. ``--whole-particles DIR`` instead takes the
first simulated event of DIR (with truth; default ``data/test``, held out from training) and
keeps whole particles at random, plus the same fraction of noise, as a lower pileup would
(``results/stage_scaling_particles.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline_common import (
    REPO,
    RESULTS_DIR,
    benchmark_pipeline,
    calibrate,
    machine,
    real_event,
    subsample,
    subsample_particles,
    write_table,
)

from trackflow.pipeline import STAGE_NAMES, set_threads

#: the count each stage's cost is proportional to (hits when None)
WORK_UNITS = {
    "embedding": None,
    "graph_building": "edges_graph",
    "filter": "edges_graph",
    "gnn": "edges_filter",
    "labelling": "edges_filter",
}


def growth_table(
    small: tuple[dict[str, float], dict[str, int]],
    n_small: int,
    large: tuple[dict[str, float], dict[str, int]],
    n_large: int,
) -> list[list[str]]:
    """Per stage: its share of the total time at the large size, the growth of its time per hit,
    of its work units per hit and of its time per work unit (large / small)."""
    (t_small, c_small), (t_large, c_large) = small, large
    total_large = sum(t_large.values())
    rows = []
    for name in STAGE_NAMES:
        unit = WORK_UNITS.get(name)
        u_small = c_small.get(unit, n_small) if unit else n_small
        u_large = c_large.get(unit, n_large) if unit else n_large
        time_ratio = (t_large[name] / n_large) / (t_small[name] / n_small)
        unit_ratio = (u_large / n_large) / (u_small / n_small) if u_small else float("nan")
        rows.append(
            [
                name,
                f"{100 * t_large[name] / total_large:.0f} %",
                f"{time_ratio:.2f}",
                unit or "hits",
                f"{unit_ratio:.2f}",
                f"{time_ratio / unit_ratio:.2f}" if unit_ratio else "-",
            ]
        )
    return rows


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
    parser.add_argument(
        "--whole-particles",
        type=Path,
        nargs="?",
        const=REPO / "data" / "test",
        default=None,
        metavar="DIR",
        help="subsample whole particles of DIR's first simulated event (default DIR: data/test)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    truth = None
    if args.whole_particles is not None:
        from trackflow.events import list_events

        refs = list_events(args.whole_particles)
        if not refs:
            parser.error(f"{args.whole_particles}: no TrackML events there")
        loaded = refs[0].load(("hits", "truth"))
        event, truth = loaded.hits_only(), loaded.truth
    else:
        event = real_event(0)
    pipeline, description = benchmark_pipeline(
        args.models, device=args.device, threads=args.threads, calibration_event=event
    )
    rows, per_hit, runs = [], {}, {}
    for size in [int(s) for s in args.sizes.split(",")]:
        n_wanted = size or event.n_hits
        sample = subsample(event, n_wanted) if truth is None else subsample_particles(event, truth, n_wanted)
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
        n = sample.n_hits
        per_hit[n] = total / n
        runs[n] = (best, dict(tracks.counts))
        rows.append(
            [n]
            + [f"{best[name]:.4f}" for name in STAGE_NAMES]
            + [
                f"{total:.3f}",
                f"{1e6 * per_hit[n]:.1f}",
                f"{tracks.counts['edges_graph'] / n:.2f}",
                f"{tracks.counts['edges_filter'] / n:.2f}",
            ]
        )
        print(rows[-1], flush=True)
    sizes = sorted(per_hit)
    ratio = ""
    ten_k = [n for n in sizes if 5_000 <= n <= 20_000]  # whole particles give about 10k
    growth_rows = []
    if ten_k and sizes[-1] > ten_k[0]:
        small, large = ten_k[0], sizes[-1]
        ratio = (
            f" Time per hit at {large} hits / at {small} hits: "
            f"{per_hit[large] / per_hit[small]:.2f} (target <= 1.5)."
        )
        growth_rows = growth_table(runs[small], small, runs[large], large)
    notes = (
        f"Machine: {machine()}. {description}"
        f"{'; radius and cut then set again at each size for ~20 edges/hit' if args.same_density else ''}"
        f". Device {args.device}, {args.threads} thread(s). "
        f"Best of {args.repeats} (1 above 50k hits), s.{ratio} Command: `.venv/bin/python "
        f"benchmarks/stage_scaling.py --sizes {args.sizes} --threads {args.threads}"
        f"{'' if args.models is None else f' --models {args.models}'}"
        f"{' --same-density' if args.same_density else ''}"
        f"{'' if truth is None else f' --whole-particles {args.whole_particles}'}`."
        + (
            ""
            if truth is None
            else f" Event {event.event_id} of {args.whole_particles}: whole particles "
            "kept at random with the same fraction of noise hits."
        )
    )
    name = (
        "stage_scaling_same_density"
        if args.same_density
        else "stage_scaling"
        if truth is None
        else "stage_scaling_particles"
    )
    text = write_table(
        name,
        "Per-stage time against event size",
        ["hits", *STAGE_NAMES, "total (s)", "us/hit", "graph edges/hit", "filtered edges/hit"],
        rows,
        notes,
    )
    if growth_rows:
        lines = [
            "",
            f"## Where the growth is ({sizes[-1]} hits against {ten_k[0]})",
            "",
            "Time per hit grows by (work per hit growth) x (time per unit of work growth). The "
            "work unit is what the stage's cost is proportional to: hits for embedding, graph "
            "edges (pairs found) for graph building and the filter (it scores every pair), "
            "filtered edges for the GNN and labelling.",
            "",
            "| stage | share of total at large | time/hit ratio | work unit | units/hit ratio "
            "| time/unit ratio |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in growth_rows]
        extra = "\n".join(lines) + "\n"
        print(extra)
        (RESULTS_DIR / f"{name}.md").write_text(text + extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
