"""The labelling cut chosen for the TrackML score on held-out validation events.

    .venv/bin/python benchmarks/labelling_cut.py data/map_val [--cuts 0.5:0.66:0.02]
        [--max-fake 0.005] [--max-duplicate 0.005] [--models DIR]

Training (``trackflow train``) picks the GNN / labelling cut at an edge purity >= 95 % and then the
best track efficiency within its fake and duplicate targets. That is not what the comparison with
the CKF scores: the TrackML score rewards complete tracks, and below the purity-95 % cut the
components gain hits faster than they merge (one full-density event: score 0.522 at 0.647, 0.535 at
0.5; duplicates fall, fakes rise). This scans connected-components cuts on every event of a
validation folder (simulated, with truth, not used for the robustness matrix or the CKF
comparison), runs the pipeline up to the GNN once per event, and reports, per cut, the pooled
efficiency (pT > 1 and > 0.5 GeV), fake and duplicate rates, and the mean TrackML score; the
chosen cut has the best score with fake and duplicate rates at most the given targets (kept below
the matrix's 1 % bars, since noisier conditions raise fakes). One thread. Writes
benchmarks/results/labelling_cut.md; set the chosen cut as the manifest's ``gnn`` and
``labelling`` ``cut`` to ship it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_common import machine, write_table

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline
from trackflow.pipeline.labelling import LabellingConfig, track_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events_dir", type=Path, help="validation events with truth")
    parser.add_argument("--cuts", default="0.5:0.66:0.02", help="START:STOP:STEP of the cc cuts scanned")
    parser.add_argument("--max-fake", type=float, default=0.005, help="fake-rate target (fraction)")
    parser.add_argument("--max-duplicate", type=float, default=0.005, help="duplicate-rate target")
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    args = parser.parse_args()
    start, stop, step = (float(v) for v in args.cuts.split(":"))
    cuts = [round(c, 4) for c in np.arange(start, stop + step / 2, step)]
    pipeline = Pipeline.load(args.models, threads=1)
    shipped = pipeline.stages["labelling"].config.cut
    cuts = sorted(set(cuts) | {round(shipped, 4)})
    per_cut: dict[float, list[metrics.TrackMetrics]] = {c: [] for c in cuts}
    for ref in list_events(args.events_dir):
        event = ref.load()
        graph = pipeline.prepare(event.hits_only())
        for name in ("embedding", "graph_building", "filter", "gnn"):
            graph = pipeline.run_stage(name, graph)
        assert graph.edges is not None and graph.edge_scores is not None and graph.cylindrical is not None
        edges, scores = graph.edges.cpu().numpy(), graph.edge_scores.cpu().numpy()
        r = np.asarray(graph.cylindrical[:, 0])
        for cut in cuts:
            labels = track_labels(graph.n_hits, edges, scores, r, LabellingConfig(method="cc", cut=cut))
            frame = pd.DataFrame({"hit_id": np.asarray(graph.hit_ids), "track_id": labels})
            per_cut[cut].append(
                metrics.score_event(frame, event.truth, event.particles, event_id=event.event_id)
            )
    rows, best = [], None
    for cut in cuts:
        counts: dict[str, float] = {}
        for m in per_cut[cut]:
            for key, value in m.counts.items():
                counts[key] = counts.get(key, 0) + value
        rates = metrics.track_rates(counts)
        score = float(np.mean([m.trackml_score for m in per_cut[cut]]))
        ok = rates["fake_rate"] <= args.max_fake and rates["duplicate_rate"] <= args.max_duplicate
        if ok and (best is None or score > best[1]):
            best = (cut, score)
        names = ("efficiency", "efficiency_pt05", "fake_rate", "duplicate_rate")
        rows.append([cut, *(rates[name] for name in names), score, ok])
    table = [
        [
            f"{cut:.4f}" + (" (shipped)" if cut == round(shipped, 4) else ""),
            f"{100 * eff:.2f}",
            f"{100 * eff05:.2f}",
            f"{100 * fake:.3f}",
            f"{100 * dup:.3f}",
            f"{score:.4f}",
            ("**chosen**" if best is not None and cut == best[0] else ("within" if ok else "")),
        ]
        for cut, eff, eff05, fake, dup, score, ok in rows
    ]
    write_table(
        "labelling_cut",
        "Labelling cut for the TrackML score, on held-out validation events",
        ["cc cut", "eff pT>1 %", "eff pT>0.5 %", "fake %", "dup %", "TrackML score", "targets"],
        table,
        f"Command: `python benchmarks/labelling_cut.py {args.events_dir} --cuts {args.cuts} --max-fake "
        f"{args.max_fake} --max-duplicate {args.max_duplicate}`; {len(per_cut[cuts[0]])} events. "
        f"Machine: {machine()}. Chosen: the best mean score with fake <= {100 * args.max_fake:.2f} % "
        f"and duplicates <= {100 * args.max_duplicate:.2f} % (pooled over the events).",
    )


if __name__ == "__main__":
    main()
