"""The filter, triplet-pruning and labelling cuts chosen for the TrackML score on held-out events.

    .venv/bin/python benchmarks/operating_point.py data/map_val data/map_val_n03
        [--triplet-cuts 6,9,12,16,25] [--cuts 0.5:0.66:0.02] [--max-fake 0.005]
        [--max-duplicate 0.005] [--models DIR]

Training (``trackflow train``) fixes the triplet chi2 cut (``--triplet-cut``, 25 for the shipped
models), then picks the GNN / labelling cut at an edge purity >= 95 % and the best track
efficiency within its fake and duplicate targets. Neither is what the comparison with the CKF
scores. This scans, on every event of the validation folders, the best-chi2 cut of the triplet
pruning (one cut for every pruned volume), the connected-components cut, and cc_extend
(``--extend-cuts``: hits of fragments of up to 3 hits then follow their best looser edge to a
bigger component, so tracks get back hits the cut dropped) against plain cc. The validation
events are simulated from the held-out particles with their own seeds, with truth, and used
neither by the robustness matrix nor by the CKF comparison; the noisiest condition of the matrix
is among them, as it makes the most fakes. The pipeline runs up to the filter's MLP once per
event, then the pruning and the GNN once per triplet cut, then labelling once per setting.

Per setting: the pooled efficiency (pT > 1 and > 0.5 GeV), fake and duplicate rates, the
mean TrackML score, and the edges the GNN scores per hit (its cost). The chosen setting has the best
score with fake and duplicate rates at most the targets (kept below the matrix's 1 % bars); among
settings within ``--score-tolerance`` of that score (differences a few validation events cannot
resolve) the loosest pruning, then the lowest cc cut, then plain cc, is taken. One
thread. Writes benchmarks/results/operating_point.md; to ship it, set the manifest's ``filter``
``cut`` and ``triplets.chi2_cut`` and the ``gnn`` ``cut`` and the ``labelling`` settings.

``--filter-cuts`` also scans the filter's cut (default: the shipped one only). A higher cut sends
fewer edges to the pruning and the GNN, the two largest costs of a full event after the filter's
MLP: the table's "GNN edges / hit" is that cost. ``--max-edges-per-hit`` leaves settings above
that budget out of the choice (the time the comparison with the CKF asks for); ties then go to
the loosest filter cut, then the loosest pruning.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_common import machine, write_table

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline
from trackflow.pipeline.filter import apply_cut, prune_triplets
from trackflow.pipeline.labelling import LabellingConfig, track_labels


def labelling(cut: float, extend: float, min_track: int, join_min_hits: int = 0) -> LabellingConfig:
    """Connected components at ``cut``, or, with ``extend`` > 0, cc_extend: hits of components of
    up to 3 hits then follow their best edge above ``extend`` to a component of at least
    ``min_track`` hits (3 rounds); with ``join_min_hits``, tracks of that many hits then join end
    to end over their mutually best edge above ``extend``."""
    if extend <= 0:
        return LabellingConfig(method="cc", cut=cut)
    return LabellingConfig(
        method="cc_extend",
        cut=cut,
        extend_cut=extend,
        extend_max_hits=3,
        extend_rounds=3,
        extend_min_track=min_track,
        join_min_hits=join_min_hits,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events_dirs", type=Path, nargs="+", help="folders of validation events with truth")
    parser.add_argument("--triplet-cuts", default="6,9,12,16,25", help="best-chi2 cuts of the pruning")
    parser.add_argument("--cuts", default="0.5:0.66:0.02", help="START:STOP:STEP of the cc cuts scanned")
    parser.add_argument(
        "--extend-cuts", default="0", help="cc_extend's extend cuts scanned (0: plain connected components)"
    )
    parser.add_argument(
        "--extend-min-track",
        type=int,
        default=metrics.MIN_HITS,
        help="cc_extend: smallest track a fragment may join (default: the scored track length)",
    )
    parser.add_argument(
        "--join-min-hits",
        type=int,
        default=0,
        help="cc_extend: tracks of at least this many hits join end to end (0: never)",
    )
    parser.add_argument(
        "--filter-cuts", default=None, help="the filter's cuts scanned (default: the models' own)"
    )
    parser.add_argument(
        "--max-edges-per-hit",
        type=float,
        default=None,
        help="settings whose GNN scores more edges per hit (pooled mean) are not chosen (default: no limit)",
    )
    parser.add_argument("--max-fake", type=float, default=0.005, help="fake-rate target (fraction)")
    parser.add_argument("--max-duplicate", type=float, default=0.005, help="duplicate-rate target")
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument(
        "--score-tolerance", type=float, default=0.001, help="scores this close to the best count as tied"
    )
    args = parser.parse_args()
    start, stop, step = (float(v) for v in args.cuts.split(":"))
    pipeline = Pipeline.load(args.models, threads=1)
    shipped = pipeline.stages["labelling"].config
    shipped_point = (
        round(shipped.cut, 4),
        float(shipped.extend_cut) if shipped.method == "cc_extend" else 0.0,
    )
    cuts = sorted({round(c, 4) for c in np.arange(start, stop + step / 2, step)} | {shipped_point[0]})
    extends = [float(x) for x in args.extend_cuts.split(",")]
    stage = pipeline.stages["filter"]
    if stage.triplets is None:
        parser.error(f"{args.models or 'the shipped models'}: the filter has no triplet pruning to scan")
    learned = stage.triplets
    triplet_cuts = [float(c) for c in args.triplet_cuts.split(",")]
    shipped_filter = float(stage.config.cut)
    filter_cuts = (
        [shipped_filter] if args.filter_cuts is None else [float(c) for c in args.filter_cuts.split(",")]
    )
    # (filter cut, triplet cut, cc cut, extend cut) -> the events' metrics
    per_point: dict[tuple[float, float, float, float], list[metrics.TrackMetrics]] = {}
    edges_per_hit: dict[tuple[float, float], list[float]] = {}
    for ref in [ref for directory in args.events_dirs for ref in list_events(directory)]:
        event = ref.load()
        graph = pipeline.prepare(event.hits_only())
        for name in ("embedding", "graph_building"):
            graph = pipeline.run_stage(name, graph)
        assert graph.edges is not None and graph.cylindrical is not None
        logits = stage.logits(graph)
        r = np.asarray(graph.cylindrical[:, 0])
        for filter_cut in filter_cuts:
            filtered = copy.copy(graph)
            filtered.edges, filtered.edge_scores = apply_cut(graph.edges, logits, filter_cut)
            for triplet_cut in triplet_cuts:
                scales = learned.with_cuts(dict.fromkeys(learned.volumes, triplet_cut))
                pruned = pipeline.run_stage("gnn", prune_triplets(copy.copy(filtered), scales))
                assert pruned.edges is not None and pruned.edge_scores is not None
                edges_per_hit.setdefault((filter_cut, triplet_cut), []).append(
                    pruned.n_edges / max(pruned.n_hits, 1)
                )
                edges, scores = pruned.edges.cpu().numpy(), pruned.edge_scores.cpu().numpy()
                for cut in cuts:
                    for extend in extends:
                        if extend >= cut:
                            continue
                        setting = labelling(cut, extend, args.extend_min_track, args.join_min_hits)
                        labels = track_labels(pruned.n_hits, edges, scores, r, setting)
                        frame = pd.DataFrame({"hit_id": np.asarray(pruned.hit_ids), "track_id": labels})
                        per_point.setdefault((filter_cut, triplet_cut, cut, extend), []).append(
                            metrics.score_event(frame, event.truth, event.particles, event_id=event.event_id)
                        )
    rows, within = [], []
    names = ("efficiency", "efficiency_pt05", "fake_rate", "duplicate_rate")
    for (filter_cut, triplet_cut, cut, extend), scored in per_point.items():
        rates = metrics.track_rates(metrics.pooled_counts(m.counts for m in scored))
        score = float(np.mean([m.trackml_score for m in scored]))
        cost = float(np.mean(edges_per_hit[filter_cut, triplet_cut]))
        ok = (
            rates["fake_rate"] <= args.max_fake
            and rates["duplicate_rate"] <= args.max_duplicate
            and (args.max_edges_per_hit is None or cost <= args.max_edges_per_hit)
        )
        if ok:
            within.append((score, filter_cut, triplet_cut, cut, extend))
        rows.append([filter_cut, triplet_cut, cut, extend, *(rates[name] for name in names), score, ok])
    best = None
    if within:
        top = max(score for score, *_ in within)
        # ties: the loosest filter cut, the loosest pruning, the lowest cc cut, then plain cc or
        # the highest extend cut
        tied = [
            (-f, t, -c, -x if x > 0 else -np.inf)
            for score, f, t, c, x in within
            if score >= top - args.score_tolerance
        ]
        minus_f, t, minus_c, minus_x = max(tied)
        best = (-minus_f, t, -minus_c, 0.0 if minus_x == -np.inf else -minus_x)
    shipped_triplet = sorted(set(learned.chi2_cut.values()))
    table = [
        [
            f"{f:g}" + (" (shipped)" if f == shipped_filter else ""),
            f"{t:g}" + (" (shipped)" if [t] == shipped_triplet else ""),
            f"{np.mean(edges_per_hit[f, t]):.2f}",
            f"{cut:.4f}",
            ("cc" if x <= 0 else f"cc_extend {x:g}")
            + (f", join {args.join_min_hits}" if x > 0 and args.join_min_hits else "")
            + (" (shipped)" if (cut, x) == shipped_point else ""),
            f"{100 * eff:.2f}",
            f"{100 * eff05:.2f}",
            f"{100 * fake:.3f}",
            f"{100 * dup:.3f}",
            f"{score:.4f}",
            ("**chosen**" if (f, t, cut, x) == best else ("within" if ok else "")),
        ]
        for f, t, cut, x, eff, eff05, fake, dup, score, ok in rows
    ]
    n_events = len(next(iter(per_point.values())))
    limit = args.max_edges_per_hit
    budget = f" and at most {limit:g} GNN edges per hit" if limit is not None else ""
    command = " ".join(
        [
            "python benchmarks/operating_point.py",
            *map(str, args.events_dirs),
            f"--filter-cuts {','.join(f'{c:g}' for c in filter_cuts)}",
            f"--triplet-cuts {args.triplet_cuts} --cuts {args.cuts} --extend-cuts {args.extend_cuts}",
            *([f"--max-edges-per-hit {limit:g}"] if limit is not None else []),
            f"--extend-min-track {args.extend_min_track} --join-min-hits {args.join_min_hits}",
            f"--max-fake {args.max_fake} --max-duplicate {args.max_duplicate}",
            f"--score-tolerance {args.score_tolerance}",
        ]
    )
    write_table(
        "operating_point",
        "Filter, triplet-pruning and labelling cuts for the TrackML score, on held-out validation events",
        [
            "filter cut",
            "triplet chi2 cut",
            "GNN edges / hit",
            "cc cut",
            "labelling",
            "eff pT>1 %",
            "eff pT>0.5 %",
            "fake %",
            "dup %",
            "TrackML score",
            "targets",
        ],
        table,
        f"Command: `{command}`; {n_events} events. Machine: {machine()}. Chosen: the best mean score "
        f"with fake <= {100 * args.max_fake:.2f} % and duplicates <= {100 * args.max_duplicate:.2f} % "
        f"(pooled over the events){budget}; among scores within the tolerance of it, the loosest filter "
        "cut, then the loosest pruning.",
    )


if __name__ == "__main__":
    main()
