"""Would a small first filter pay? A filter (``--models``) against a cheaper one, side by side.

The 128-wide, 3-layer filter shipped before issue 29's distillation (``git archive 7d51d8b
trackflow/pipeline/models``; the figures in benchmarks/README.md were taken with it) scores every
layer-map pair of a full event, ~2.8M with the 0.5 GeV map: about half of trackflow's time per
event then. A cascade would score every pair
with a small MLP first and give the shipped one only the survivors. On the first event of each
full-density robustness cell (``benchmarks/robustness.py``'s ``cell_config`` / ``ensure_cell``:
held-out kinematics, its cache, simulated if missing) this measures, one thread, best of two:

- both filters' time over every graph-building pair (s);
- for a small-filter cut keeping 99.5 % / 99.9 % of the truth edges of pT > 0.5 GeV particles
  that the shipped filter keeps at its cut: the share of pairs that survive the small filter,
  the share of the shipped filter's kept edges (true or not) that are among them, and the
  cascade's time (small filter on all + shipped filter on the survivors).

The small filter comes from a model directory trained on the same layer map, e.g.::

    trackflow train --data data/map_train --val data/map_val --out data/models_tiny \\
        --gnn-from trackflow/pipeline/models --retrain-filter --layer-map-pt-min 0.5 \\
        --layer-map-field-factor 1 --layer-map-margin 0 --filter-pair-features \\
        --filter-hidden 32 --filter-layers 2 --epochs-filter 10 --epochs-gnn 0 --edge-events 8

    .venv/bin/python benchmarks/filter_cascade.py --small data/models_tiny [--models DIR] \\
        [--cells 55:0.15,5:0.3] [--seed 2718] [--work data/robustness]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from robustness import KAGGLE_DIR, Cell, cell_config, edge_keys, ensure_cell, held_out_dir

from trackflow import metrics
from trackflow.events import list_events
from trackflow.pipeline import Pipeline, model_files

#: full-density cells of the robustness matrix, sigma_z (mm):noise
DEFAULT_CELLS = "55:0.15,5:0.3"
CHUNK = 200_000  # pairs scored at once by the small filter (the shipped stage's own chunk size)


def measure(pipeline: Pipeline, small: torch.nn.Module, cell_dir: Path) -> dict[str, object]:
    """The figures of the module docstring for the first event of ``cell_dir``."""
    event = list_events(cell_dir)[0].load(("hits", "truth", "particles"))
    graph = pipeline.prepare(event.hits_only())
    for name in ("embedding", "graph_building"):
        graph = pipeline.run_stage(name, graph)
    stage = pipeline.stages["filter"]
    big_times, small_times = [], []
    with torch.inference_mode():
        for _ in range(2):
            start = time.perf_counter()
            big = stage.logits(graph)
            big_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            chunks = [
                small(graph.features, graph.edges[:, i : i + CHUNK], graph.embedding)
                for i in range(0, graph.n_edges, CHUNK)
            ]
            small_logits = torch.cat(chunks)
            small_times.append(time.perf_counter() - start)
    big_kept = (torch.sigmoid(big) > stage.config.cut).numpy()
    small_score = torch.sigmoid(small_logits).numpy()
    n = graph.n_hits
    truth = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=0.5)
    true_kept = big_kept & np.isin(edge_keys(graph.edges.numpy(), n), np.unique(edge_keys(truth, n)))
    out: dict[str, object] = {
        "cell": cell_dir.name,
        "pairs": graph.n_edges,
        "shipped_filter_s": round(min(big_times), 2),
        "small_filter_s": round(min(small_times), 2),
    }
    for keep in (0.995, 0.999):
        cut = float(np.quantile(small_score[true_kept], 1.0 - keep))
        survive = small_score >= cut
        out[f"keep_{keep}"] = {
            "small_cut": round(cut, 4),
            "pairs_surviving": round(float(survive.mean()), 3),
            "shipped_kept_among_them": round(float((survive & big_kept).sum() / max(big_kept.sum(), 1)), 4),
            "cascade_s": round(min(small_times) + min(big_times) * float(survive.mean()), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=Path, required=True, help="model directory of the small filter")
    parser.add_argument("--models", type=Path, default=None, help="the filter to compare (default: shipped)")
    parser.add_argument(
        "--cells", default=DEFAULT_CELLS, help="full-density cells as SIGMA_Z:NOISE, comma-separated"
    )
    parser.add_argument("--seed", type=int, default=2718, help="simulation seed (robustness.py's default)")
    parser.add_argument("--held-out", type=Path, default=KAGGLE_DIR, help="folder of the held-out particles")
    parser.add_argument(
        "--work", type=Path, default=Path("data/robustness"), help="cache of the robustness cells"
    )
    args = parser.parse_args()
    pipeline = Pipeline.load(args.models, threads=1)
    small = model_files.load_model(model_files.read_manifest(args.small), "filter").eval()
    particles = held_out_dir(args.work, args.held_out)
    for spec in args.cells.split(","):
        sigma_z, noise = (float(v) for v in spec.split(":"))
        cell = Cell(sigma_z, 1.0, noise)
        directory, _ = ensure_cell(cell, cell_config(cell, args.seed, particles), args.work, 1)
        print(json.dumps(measure(pipeline, small, directory)), flush=True)


if __name__ == "__main__":
    main()
