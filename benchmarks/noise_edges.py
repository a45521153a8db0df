"""Where noise hits cost tracks: the shipped pipeline against three variants on the same events.

Issue 29's sixth round. On each event of each EVENTS_DIR (simulated, with truth), the graph up to
the filter is built once, then:

- ``shipped``: triplet pruning, GNN, labelling, as the models ship;
- ``oracle``: the same, with every pruned edge that touches a noise hit (truth particle 0) removed
  before the GNN: what a perfect noise veto in front of the GNN would give;
- ``two-pass t``: the GNN run again on the pruned edges it scored above ``t`` (``--two-pass``);
- ``long-strip chi2 c``: the long-strip barrel (volume 17) pruned at triplet chi2 ``c`` instead of
  its shipped cut (``--long-strip-cuts``).

Per variant and events directory: efficiency (pT > 1 and > 0.5 GeV), fake and duplicate rates, the
TrackML score (:func:`trackflow.metrics.score_event`), and, for the pT > 1 GeV truth edges of the
long-strip pairs (17-17, 13-17), how many reach the GNN and the share of those it keeps at its cut.
Writes benchmarks/results/noise_edges.md. The shipped variant also reports the share of the
GNN's edges that touch a noise hit.

    .venv/bin/python benchmarks/noise_edges.py data/robustness/cells/sz25_d1_n0.3_* data/map_val \\
        [--models DIR] [--two-pass 0.1,0.3] [--long-strip-cuts 4,6]
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pipeline_common import machine, write_table

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline
from trackflow.pipeline.filter import apply_cut, prune_triplets
from trackflow.pipeline.graph import HitGraph

LONG_STRIP = 17
PAIRS = {"17-17": (LONG_STRIP, LONG_STRIP), "13-17": (13, LONG_STRIP)}


def keys(edges: np.ndarray, n: int) -> np.ndarray:
    """Undirected keys of edges [2, E] among n hits."""
    return np.minimum(edges[0], edges[1]) * n + np.maximum(edges[0], edges[1])


@dataclass
class EventTruth:
    """One event's truth as the variants are scored against it: ``where`` (its directory's name),
    ``n`` hits, the undirected keys of its pT > 1 GeV truth edges and, per long-strip pair, which
    of them lie in it."""

    where: str
    event_id: int
    truth: pd.DataFrame
    particles: pd.DataFrame
    n: int
    truth_keys: np.ndarray
    in_pair: dict[str, np.ndarray]


@dataclass
class Tally:
    """Scores per (directory, variant) and, per (directory, variant, pair), [kept at the GNN's
    cut, reaching the GNN] counts of long-strip truth edges."""

    pipeline: Pipeline
    gnn_cut: float
    scored: dict[tuple[str, str], list[metrics.TrackMetrics]] = field(
        default_factory=lambda: defaultdict(list)
    )
    kept: dict[tuple[str, str, str], np.ndarray] = field(
        default_factory=lambda: defaultdict(lambda: np.zeros(2, np.int64))
    )


def record(
    tally: Tally, truth: EventTruth, variant: str, before_gnn: HitGraph, scored_graph: HitGraph
) -> None:
    """Count ``variant``'s long-strip truth edges (those in ``before_gnn``, those ``scored_graph``
    scores above the cut) and score its tracks."""
    assert before_gnn.edges is not None and scored_graph.edges is not None
    assert scored_graph.edge_scores is not None
    reached = keys(before_gnn.edges.numpy(), truth.n)
    high = keys(scored_graph.edges.numpy()[:, scored_graph.edge_scores.numpy() > tally.gnn_cut], truth.n)
    for name, mask in truth.in_pair.items():
        tally.kept[(truth.where, variant, name)] += [
            np.isin(truth.truth_keys[mask], high).sum(),
            np.isin(truth.truth_keys[mask], reached).sum(),
        ]
    tracks = tally.pipeline.finish(tally.pipeline.run_stage("labelling", scored_graph)).to_frame()
    tally.scored[(truth.where, variant)].append(
        metrics.score_event(tracks, truth.truth, truth.particles, event_id=truth.event_id)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("events_dirs", nargs="+", type=Path)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--two-pass", default="0.1,0.3", help="first-pass score cuts t (comma list)")
    parser.add_argument("--long-strip-cuts", default="4,6", help="triplet chi2 cuts for volume 17")
    args = parser.parse_args()
    pipeline = Pipeline.load(args.models, threads=1)
    stage = pipeline.stages["filter"]
    if stage.triplets is None:
        parser.error("the models' filter has no triplet pruning")
    gnn_cut = float(pipeline.stages["gnn"].config.cut)
    two_pass = [float(t) for t in args.two_pass.split(",") if t]
    strip_cuts = [float(c) for c in args.long_strip_cuts.split(",") if c]

    tally = Tally(pipeline, gnn_cut)
    scored, kept = tally.scored, tally.kept
    noise_share: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2, np.int64))
    for directory in args.events_dirs:
        where = directory.name
        for ref in list_events(directory):
            event = ref.load()
            if event.truth is None or event.particles is None:
                parser.error(f"{directory}: event {event.event_id} has no truth or particles file")
            graph = pipeline.prepare(event.hits_only())
            for name in ("embedding", "graph_building"):
                graph = pipeline.run_stage(name, graph)
            assert graph.edges is not None
            graph.edges, graph.edge_scores = apply_cut(graph.edges, stage.logits(graph), stage.config.cut)
            n = graph.n_hits
            truth_rows = event.truth.set_index("hit_id").loc[np.asarray(graph.hit_ids)]
            noise = truth_rows["particle_id"].to_numpy() == 0
            volume = event.hits.set_index("hit_id").loc[np.asarray(graph.hit_ids)]["volume_id"].to_numpy()
            truth = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=1.0)
            truth_keys = keys(truth, n)
            in_pair = {
                name: ((volume[truth[0]] == a) & (volume[truth[1]] == b))
                | ((volume[truth[0]] == b) & (volume[truth[1]] == a))
                for name, (a, b) in PAIRS.items()
            }
            pruned = prune_triplets(copy.copy(graph), stage.triplets)

            truth_of = EventTruth(where, event.event_id, event.truth, event.particles, n, truth_keys, in_pair)

            shipped = pipeline.run_stage("gnn", copy.copy(pruned))
            record(tally, truth_of, "shipped", pruned, shipped)
            assert pruned.edges is not None and pruned.edge_scores is not None
            edges = pruned.edges.numpy()
            touches = noise[edges[0]] | noise[edges[1]]
            noise_share[where] += [touches.sum(), len(touches)]

            clean = copy.copy(pruned)
            keep = torch.from_numpy(~touches)
            clean.edges, clean.edge_scores = pruned.edges[:, keep], pruned.edge_scores[keep]
            record(
                tally,
                truth_of,
                "oracle: noise edges removed",
                clean,
                pipeline.run_stage("gnn", copy.copy(clean)),
            )

            assert shipped.edge_scores is not None
            for t in two_pass:
                second = copy.copy(pruned)
                above = shipped.edge_scores > t
                second.edges, second.edge_scores = pruned.edges[:, above], pruned.edge_scores[above]
                record(
                    tally, truth_of, f"two-pass t {t:g}", second, pipeline.run_stage("gnn", copy.copy(second))
                )

            for c in strip_cuts:
                scales = stage.triplets.with_cuts({**stage.triplets.chi2_cut, LONG_STRIP: c})
                tighter = prune_triplets(copy.copy(graph), scales)
                record(
                    tally,
                    truth_of,
                    f"long-strip chi2 {c:g}",
                    tighter,
                    pipeline.run_stage("gnn", copy.copy(tighter)),
                )

    rows = []
    for (where, variant), events in scored.items():
        rates = metrics.track_rates(metrics.pooled_counts(m.counts for m in events))
        pairs = []
        for name in PAIRS:
            at_cut, reached = kept[(where, variant, name)]
            pairs.append(f"{100 * at_cut / max(reached, 1):.1f} of {reached}")
        share = noise_share[where]
        rows.append(
            [
                where,
                variant,
                str(len(events)),
                f"{100 * rates['efficiency']:.2f}",
                f"{100 * rates['efficiency_pt05']:.2f}",
                f"{100 * rates['fake_rate']:.3f}",
                f"{100 * rates['duplicate_rate']:.3f}",
                f"{np.mean([m.trackml_score for m in events]):.4f}",
                *pairs,
                f"{100 * share[0] / max(share[1], 1):.1f}" if variant == "shipped" else "",
            ]
        )
    command = "python benchmarks/noise_edges.py " + " ".join(str(d) for d in args.events_dirs)
    write_table(
        "noise_edges",
        "Noise hits and the GNN: the shipped pipeline against an oracle and two cheap variants",
        [
            "events",
            "variant",
            "n",
            "eff pT>1 %",
            "eff pT>0.5 %",
            "fake %",
            "dup %",
            "TrackML score",
            "GNN 17-17 % of reaching",
            "GNN 13-17 % of reaching",
            "GNN edges touching noise %",
        ],
        rows,
        f"Command: `{command} --two-pass {args.two_pass} --long-strip-cuts {args.long_strip_cuts}`. "
        f"Models: {args.models or 'shipped'} (GNN cut {gnn_cut:g}). Machine: {machine()}.",
    )


if __name__ == "__main__":
    main()
