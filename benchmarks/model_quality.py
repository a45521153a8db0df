"""Quality of trained models: edge level per stage and track level, on held-out simulated events;
graph sizes and track counts on real TrackML events (which have no truth here).

Simulated events (``--data``, with truth), per stage, pooled over events:

- graph building: fraction of truth-graph edges (consecutive hits of pT > 1 GeV particles,
  :func:`trackflow.metrics.truth_graph`) in the graph, and edges per hit;
- filter: fraction of the truth-graph edges the graph found that the filter keeps; edge purity;
- GNN: edge purity and true-edge efficiency at the GNN cut;
- tracks (labelling as configured): efficiency (pT > 1 GeV and > 0.5 GeV, >= 5 hits, two-way
  50 % match), fake rate, duplicate rate, TrackML score (:func:`trackflow.metrics.score_event`).

Real events (``--real``): edges per hit after each stage, tracks with >= 5 hits against particles
with nhits >= 5 in the particles file, seconds per stage, peak RSS (GiB).

    PYTHONPATH=. .venv/bin/python benchmarks/model_quality.py --data data/test [--models DIR]
        [--real ../shared/data/trackml/kaggle_train_1] [--max-events N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline.pipeline import Pipeline

STAGES = ("embedding", "graph_building", "filter", "gnn", "labelling")


def _truth_keys(edges: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(edges[0], edges[1]).astype(np.int64) * n + np.maximum(edges[0], edges[1])


def simulated_quality(pipeline: Pipeline, data: Path, max_events: int | None) -> dict:
    """Edge- and track-level metrics pooled over the events of ``data`` (with truth)."""
    refs = list_events(data)[:max_events]
    gnn_cut = pipeline.stages["gnn"].config.cut
    sums = dict.fromkeys(
        (
            "hits",
            "truth",
            "truth_graph",
            "truth_filter",
            "edges_graph",
            "edges_filter",
            "true_filter",
            "gnn_kept",
            "gnn_true_kept",
            "gnn_true",
        ),
        0,
    )
    counts: dict[str, int] = {}
    scores = []
    for ref in refs:
        event = ref.load(("hits", "truth", "particles"))
        graph = pipeline.prepare(event)
        pid = metrics.hit_particle_ids(graph.hit_ids, event.truth)
        truth = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=1.0)
        n = graph.n_hits
        truth_keys = np.unique(_truth_keys(truth, n))
        for name in STAGES:
            graph = pipeline.run_stage(name, graph)
            if name in ("graph_building", "filter"):
                edges = graph.edges.cpu().numpy()
                found = int(np.isin(truth_keys, _truth_keys(edges, n)).sum())
                sums[f"truth_{'graph' if name == 'graph_building' else 'filter'}"] += found
                sums[f"edges_{'graph' if name == 'graph_building' else 'filter'}"] += edges.shape[1]
                if name == "filter":
                    sums["true_filter"] += int(metrics.true_edges(edges, pid).sum())
            if name == "gnn":
                edges = graph.edges.cpu().numpy()
                s = graph.edge_scores.cpu().numpy()
                true = metrics.true_edges(edges, pid)
                kept = s > gnn_cut
                sums["gnn_kept"] += int(kept.sum())
                sums["gnn_true_kept"] += int((true & kept).sum())
                sums["gnn_true"] += int(true.sum())
        sums["hits"] += n
        sums["truth"] += len(truth_keys)
        tracks = pipeline.finish(graph).to_frame()
        m = metrics.score_event(tracks, event.truth, event.particles, event_id=event.event_id)
        scores.append(m.trackml_score)
        for key, value in {**m.counts, **metrics.secondary_counts(m, event.particles)}.items():
            counts[key] = counts.get(key, 0) + int(value)

    def ratio(a: float, b: float) -> float:
        return float(a) / b if b else float("nan")

    return {
        "events": len(refs),
        "hits_per_event": ratio(sums["hits"], len(refs)),
        "graph_building": {
            "truth_efficiency_pt1": ratio(sums["truth_graph"], sums["truth"]),
            "edges_per_hit": ratio(sums["edges_graph"], sums["hits"]),
        },
        "filter": {
            "kept_of_graph_found_pt1": ratio(sums["truth_filter"], sums["truth_graph"]),
            "purity": ratio(sums["true_filter"], sums["edges_filter"]),
            "edges_per_hit": ratio(sums["edges_filter"], sums["hits"]),
        },
        "gnn": {
            "cut": gnn_cut,
            "purity": ratio(sums["gnn_true_kept"], sums["gnn_kept"]),
            "true_edge_efficiency": ratio(sums["gnn_true_kept"], sums["gnn_true"]),
        },
        "tracks": {
            "efficiency_pt1": ratio(counts.get("matched", 0), counts.get("reconstructable", 0)),
            "efficiency_pt05": ratio(counts.get("matched_pt05", 0), counts.get("reconstructable_pt05", 0)),
            "fake_rate": ratio(counts.get("fake_tracks", 0), counts.get("tracks_min_hits", 0)),
            "duplicate_rate": ratio(counts.get("duplicated_particles", 0), counts.get("matched", 0)),
            "efficiency_pt1_primary": ratio(
                counts.get("matched", 0) - counts.get("matched_secondary", 0),
                counts.get("reconstructable", 0) - counts.get("reconstructable_secondary", 0),
            ),
            "efficiency_pt1_secondary": ratio(
                counts.get("matched_secondary", 0), counts.get("reconstructable_secondary", 0)
            ),
            "secondary_share": ratio(
                counts.get("reconstructable_secondary", 0), counts.get("reconstructable", 0)
            ),
            "trackml_score": float(np.mean(scores)) if scores else float("nan"),
            "counts": counts,
        },
    }


def real_quality(pipeline: Pipeline, real: Path, max_events: int | None) -> list[dict]:
    """Per real event: graph sizes per stage, track counts against the particles file, timings."""
    rows = []
    for ref in list_events(real)[:max_events]:
        event = ref.load(("hits", "particles"))
        start = time.perf_counter()
        result = pipeline(event.hits_only())
        seconds = time.perf_counter() - start
        sizes = pd.Series(result.track_labels).value_counts()
        n = result.counts["hits"]
        row = {
            "event_id": event.event_id,
            "hits": n,
            "edges_per_hit_graph": result.counts["edges_graph"] / n,
            "edges_per_hit_filter": result.counts["edges_filter"] / n,
            "edges_per_hit_gnn": result.counts["edges_gnn"] / n,
            "tracks_min5": int((sizes >= 5).sum()),
            "particles_nhits_min5": int((event.particles["nhits"] >= 5).sum()),
            "hits_in_tracks_min5": int(sizes[sizes >= 5].sum()),
            "seconds": seconds,
            "timings": {k: round(v, 3) for k, v in result.timings.items()},
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument("--data", type=Path, default=None, help="simulated events with truth")
    parser.add_argument("--real", type=Path, default=None, help="real TrackML events (no truth)")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    pipeline = Pipeline.load(args.models, threads=args.threads)
    out: dict = {"models": str(pipeline.models_dir), "pipeline": repr(pipeline)}
    if args.data is not None:
        out["simulated"] = simulated_quality(pipeline, args.data, args.max_events)
    if args.real is not None:
        out["real"] = real_quality(pipeline, args.real, args.max_events)
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
