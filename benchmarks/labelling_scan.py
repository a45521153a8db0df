"""Labelling methods and cuts compared on the same GNN scores: each event goes through the
first four stages once, then every labelling setting is scored on those edges (track
efficiency at pT > 1 and > 0.5 GeV, fake and duplicate rates, as in REFERENCE §3; seconds of
labelling per event).

By default on the robustness matrix's hardest cells (full density, sigma_z 5 and 55 mm, noise 15
and 30 %), simulated from the held-out kinematics (cached under ``--work`` as robustness.py
does):

    .venv/bin/python benchmarks/labelling_scan.py [--models DIR] [--events-per-cell 2]
        [--data DIR ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import robustness  # benchmarks/ is sys.path[0] as a script: the matrix's cells and their cache

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline.labelling import LabellingConfig, track_labels
from trackflow.pipeline.pipeline import Pipeline

SETTINGS: tuple[dict[str, Any], ...] = (
    {"method": "cc_extend", "cut": 0.8651, "extend_cut": 0.4},
    *({"method": "chain", "cut": cut, "extend_cut": cut} for cut in (0.1, 0.2, 0.3, 0.5)),
    *({"method": "chain", "cut": cut, "extend_cut": 0.05} for cut in (0.2, 0.3, 0.5)),
)


def scored_events(pipeline: Pipeline, directory: Path, events: int | None) -> list[dict[str, Any]]:
    """Per event: hit ids, GNN edges and scores, scaled r, truth and particles."""
    out = []
    for ref in list_events(directory)[:events]:
        event = ref.load(("hits", "truth", "particles"))
        graph = pipeline.prepare(event)
        for name in ("embedding", "graph_building", "filter", "gnn"):
            graph = pipeline.run_stage(name, graph)
        out.append(
            {
                "event_id": event.event_id,
                "hit_ids": np.asarray(graph.hit_ids),
                "edges": graph.edges.cpu().numpy(),
                "scores": graph.edge_scores.cpu().numpy(),
                "r": graph.features[:, 0].cpu().numpy(),
                "truth": event.truth,
                "particles": event.particles,
            }
        )
    return out


def score_setting(events: Sequence[dict[str, Any]], setting: dict[str, Any]) -> dict[str, Any]:
    config = LabellingConfig(**setting)
    counts: dict[str, int] = {}
    seconds = 0.0
    for e in events:
        start = time.perf_counter()
        labels = track_labels(len(e["hit_ids"]), e["edges"], e["scores"], e["r"], config)
        seconds += time.perf_counter() - start
        tracks = pd.DataFrame({"hit_id": e["hit_ids"], "track_id": labels})
        m = metrics.score_event(tracks, e["truth"], e["particles"], event_id=e["event_id"])
        for key, value in m.counts.items():
            counts[key] = counts.get(key, 0) + int(value)

    def ratio(a: str, b: str) -> float:
        return counts.get(a, 0) / counts[b] if counts.get(b) else float("nan")

    return {
        "setting": setting,
        "efficiency_pt1": ratio("matched", "reconstructable"),
        "efficiency_pt05": ratio("matched_pt05", "reconstructable_pt05"),
        "fake_rate": ratio("fake_tracks", "tracks_min_hits"),
        "duplicate_rate": ratio("duplicated_particles", "matched"),
        "seconds_per_event": seconds / max(len(events), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=None, help="models dir (default: shipped)")
    parser.add_argument(
        "--data", type=Path, action="append", default=[], help="event dirs with truth (instead of cells)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("data/robustness"), help="cell cache (robustness.py's)"
    )
    parser.add_argument(
        "--particles", type=Path, default=robustness.KAGGLE_DIR, help="held-out particles dir"
    )
    parser.add_argument("--events-per-cell", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2718)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    pipeline = Pipeline.load(args.models) if args.models else Pipeline.load()
    groups: dict[str, Path] = {str(d): d for d in args.data}
    if not groups:
        particles = robustness.held_out_dir(args.work, args.particles)
        for cell in robustness.matrix((5, 55), (1.0,), (0.15, 0.3), gun=False):
            config = robustness.cell_config(cell, args.seed, particles)
            groups[cell.name], _ = robustness.ensure_cell(cell, config, args.work, args.events_per_cell)
    results: dict[str, list[dict[str, Any]]] = {}
    for name, directory in groups.items():
        events = scored_events(pipeline, directory, args.events_per_cell)
        results[name] = [score_setting(events, s) for s in SETTINGS]
        print(f"\n{name} ({len(events)} events)")
        print("setting | eff pT>1 | eff pT>0.5 | fake | dup | s/event")
        for row in results[name]:
            rates = (row[k] for k in ("efficiency_pt1", "efficiency_pt05", "fake_rate", "duplicate_rate"))
            print(
                row["setting"],
                *(f"{100 * v:.2f}" for v in rates),
                f"{row['seconds_per_event']:.3f}",
                sep=" | ",
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
