"""Why the GNN misses long-strip barrel edges: triplet agreement, competitors and a track fit.

Issue 29's seventh round. On each event of each EVENTS_DIR (simulated, with truth), the pipeline runs
up to the GNN (``--models``, default the shipped ones). For the pT > 1 GeV truth edges of the
long-strip barrel (both hits in volume 17) that reach the GNN, kept (score above its cut) and
missed:

- the median of their best triplet chi2 with an edge further in
  (:meth:`trackflow.pipeline.triplets.TripletScales.agreement`, undone from its log form), beside
  that of the edges in the same pair that touch a noise hit;
- for the missed ones: how many have no competitor (another edge from the same inner hit to the
  same layer), and in how many the GNN scored such a competitor higher;
- a track fit: a circle through the beam line and the particle's hits up to the inner hit,
  least squares; a missed edge is *resolved* when no competitor's outer hit lies closer to that
  circle than the true one (then the graph holds what tells them apart).

Writes benchmarks/results/long_strip_misses.md.

    .venv/bin/python benchmarks/long_strip_misses.py data/robustness/cells/sz25_d1_n0.3_* \\
        data/robustness/cells/sz55_d1_n0.3_* [--models DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pipeline_common import machine, write_table

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline

LONG_STRIP = 17


def fit_distance(x: np.ndarray, y: np.ndarray, fit_hits: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Distance (mm) of ``hits`` from the circle through the origin fitted to ``fit_hits``:
    x^2 + y^2 + D x + E y = 0, least squares in D, E."""
    design = np.stack([x[fit_hits], y[fit_hits]], axis=1)
    (d, e), *_ = np.linalg.lstsq(design, -(x[fit_hits] ** 2 + y[fit_hits] ** 2), rcond=None)
    cx, cy = -d / 2.0, -e / 2.0
    return np.abs(np.hypot(x[hits] - cx, y[hits] - cy) - np.hypot(cx, cy))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("events_dirs", nargs="+", type=Path)
    parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    pipeline = Pipeline.load(args.models, threads=1)
    scales = pipeline.stages["filter"].triplets
    if scales is None:
        parser.error("the models' filter has no triplet scales")
    cut = float(pipeline.stages["gnn"].config.cut)
    rows = []
    for directory in args.events_dirs:
        for ref in list_events(directory):
            event = ref.load()
            if event.truth is None or event.particles is None:
                parser.error(f"{directory}: event {event.event_id} has no truth or particles file")
            graph = pipeline.prepare(event.hits_only())
            for name in ("embedding", "graph_building", "filter", "gnn"):
                graph = pipeline.run_stage(name, graph)
            assert graph.edges is not None and graph.edge_scores is not None
            assert graph.layers is not None and graph.cylindrical is not None
            layers, cylindrical = np.asarray(graph.layers), np.asarray(graph.cylindrical)
            r, phi = cylindrical[:, 0], cylindrical[:, 1]
            edges = graph.edges.numpy()
            # outwards, as the agreement orders them
            swap = r[edges[0]] > r[edges[1]]
            inner, outer = np.where(swap, edges[1], edges[0]), np.where(swap, edges[0], edges[1])
            score = graph.edge_scores.numpy()
            agreement = scales.agreement(layers, cylindrical, edges)
            chi_in = np.where(agreement[:, 1] > 0, np.inf, np.expm1(7.0 * agreement[:, 0]))
            particle = (
                event.truth.set_index("hit_id").loc[np.asarray(graph.hit_ids)]["particle_id"].to_numpy()
            )
            n = graph.n_hits
            truth = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=1.0)
            keys = np.minimum(edges[0], edges[1]) * n + np.maximum(edges[0], edges[1])
            is_truth = np.isin(keys, np.minimum(truth[0], truth[1]) * n + np.maximum(truth[0], truth[1]))
            volume = layers // 100
            pair = (volume[inner] == LONG_STRIP) & (volume[outer] == LONG_STRIP)
            kept = pair & is_truth & (score > cut)
            missed = pair & is_truth & (score <= cut)
            noise = pair & ((particle[inner] == 0) | (particle[outer] == 0))
            x, y = r * np.cos(phi), r * np.sin(phi)
            by_particle = np.argsort(particle, kind="stable")
            sorted_particle = particle[by_particle]
            alone = higher = resolved = 0
            for edge in np.flatnonzero(missed):
                a, b = inner[edge], outer[edge]
                rivals = np.flatnonzero((inner == a) & (layers[outer] == layers[b]))
                rivals = rivals[rivals != edge]
                alone += len(rivals) == 0
                higher += bool((score[rivals] > score[edge]).any())
                lo, hi = (
                    np.searchsorted(sorted_particle, particle[a], side="left"),
                    np.searchsorted(sorted_particle, particle[a], side="right"),
                )
                own = by_particle[lo:hi]
                own = own[r[own] <= r[a] + 1.0]
                if len(own) < 3 or len(rivals) == 0:
                    resolved += 1
                    continue
                distance = fit_distance(x, y, own, np.r_[b, outer[rivals]])
                resolved += bool((distance[1:] >= distance[0]).all())
            n_missed = int(missed.sum())
            rows.append(
                [
                    f"{directory.name.split('_seed')[0]} / {event.event_id}",
                    f"{100 * kept.sum() / max(kept.sum() + n_missed, 1):.1f}",
                    str(n_missed),
                    f"{np.median(chi_in[kept]):.2f}",
                    f"{np.median(chi_in[missed]):.2f}" if n_missed else "-",
                    f"{np.median(chi_in[noise]):.2f}",
                    str(alone),
                    str(higher),
                    f"{resolved} ({100 * resolved / max(n_missed, 1):.0f} %)",
                ]
            )
    command = "python benchmarks/long_strip_misses.py " + " ".join(str(d) for d in args.events_dirs)
    write_table(
        "long_strip_misses",
        "Long-strip barrel (17-17) truth edges at the GNN: kept, missed, and what tells them apart",
        [
            "cell / event",
            "GNN keeps %",
            "missed",
            "chi2 in, kept (median)",
            "chi2 in, missed",
            "chi2 in, noise edges",
            "missed with no competitor",
            "missed, a competitor scored higher",
            "missed, resolved by a track fit",
        ],
        rows,
        f"Command: `{command}`. Models: {args.models or 'shipped'} (GNN cut {cut:g}). Machine: {machine()}.",
    )


if __name__ == "__main__":
    main()
