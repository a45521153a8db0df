"""The barrel at full density: the shipped models keep the pixel barrel's truth edges to the GNN.

Issue 29 found the loss of the models before triplet pruning in the barrel, at the GNN: of the
pT > 1 GeV truth edges between pixel-barrel layers (volume 8 to 8) of a full-density event with
sigma_z 55 mm, the GNN kept 29 % at its cut (layer 1 to 2: 7 %); tracks were still counted as
found on their strip hits, with their pixel hits missing. This test simulates one such event
from held-out kinematics (TrackML event 1020's particles, every vertex, z drawn from
N(0, 55 mm), noise 0.15) and checks the share of those edges that survive every stage, overall
and for layer 1 to 2 alone. The per-region, per-stage table over the whole matrix of conditions
is ``benchmarks/robustness.py``.

The same event then checks the particles of 0.5-1 GeV: the layer map learned from 0.5 GeV with
windows capped by the field must keep their truth edges, and the GNN most of them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from trackflow import metrics
from trackflow.events import list_events
from trackflow.events.simulation import SimulationConfig
from trackflow.pipeline.graph import STAGE_NAMES
from trackflow.pipeline.pipeline import Pipeline
from trackflow.run.parallel_simulation import simulate

pytestmark = [pytest.mark.sim, pytest.mark.slow]

HELD_OUT_PARTICLES = "event000001020-particles.csv.gz"
#: below what the shipped models keep on this event at the GNN's cut, 92.9 % and 87.8 % (the GNN
#: reads triplet agreement and cuts at 0.68 since issue 29's seventh round; 91.4 % and 85.7 % at
#: 0.74 in the sixth, 91.1 % and 84.7 % at 0.82 in the fifth; triplet pruning at chi2 9 drops edges
#: a track does not need: 94.9 % and 91.5 % at chi2 25; the models before triplet pruning: 24.2 %
#: and 4.0 %)
PIXEL_BARREL_FLOOR = 0.90
PIXEL_LAYER_1_2_FLOOR = 0.84
#: of the truth edges of 0.5-1 GeV particles: in the graph and at the GNN's cut, a few points below
#: what the shipped models keep on this event, 98.6 % and 94.2 % (90.3 % at the GNN's cut before the
#: seventh round; with the layer map learned above 0.9 GeV: ~74 % in the graph)
SLOW_GRAPH_FLOOR = 0.97
SLOW_GNN_FLOOR = 0.90


def test_the_pixel_barrel_keeps_its_truth_edges_at_full_density(
    tmp_path: Path, trackml_dir: Path, detectors_csv: Path
) -> None:
    require(importlib.util.find_spec("acts") is not None, "pyacts is not installed")
    particles = trackml_dir / HELD_OUT_PARTICLES
    require(particles.is_file(), f"held-out particles file not found: {particles}")
    config = SimulationConfig(
        seed=2029, particles_from=particles, beam_sigma_z=55.0, noise_fraction=0.15, detectors=detectors_csv
    )
    simulate(config, tmp_path, 1, workers=1, progress=False)
    (ref,) = list_events(tmp_path)
    event = ref.load(("hits", "truth", "particles"))

    pipeline = Pipeline.load(threads=1)
    graph = pipeline.prepare(event.hits_only())
    for name in STAGE_NAMES[:-1]:
        graph = pipeline.run_stage(name, graph)
        if name == "graph_building":
            built = graph.edges.numpy()
    cut = pipeline.stages["gnn"].config.cut
    edges = graph.edges.numpy()[:, graph.edge_scores.numpy() > cut]
    n = graph.n_hits
    kept = np.minimum(edges[0], edges[1]) * n + np.maximum(edges[0], edges[1])

    truth = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=1.0)
    hits = event.hits.set_index("hit_id").loc[graph.hit_ids]
    volume, layer = hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy()
    in_pixel_barrel = (volume[truth[0]] == 8) & (volume[truth[1]] == 8) & (layer[truth[0]] != layer[truth[1]])
    truth = truth[:, in_pixel_barrel]
    found = np.isin(np.minimum(truth[0], truth[1]) * n + np.maximum(truth[0], truth[1]), kept)
    first_pair = np.minimum(layer[truth[0]], layer[truth[1]]) == 2
    summary = (
        f"pixel barrel: {found.mean():.3f} of {found.size} truth edges kept at the GNN's cut; "
        f"layer 1 to 2: {found[first_pair].mean():.3f} of {int(first_pair.sum())}"
    )
    assert found.size >= 500 and first_pair.sum() >= 200, summary  # a full-density event
    assert found.mean() >= PIXEL_BARREL_FLOOR, summary
    assert found[first_pair].mean() >= PIXEL_LAYER_1_2_FLOOR, summary

    # 0.5-1 GeV particles, everywhere: the layer map learned from 0.5 GeV keeps their truth edges
    # (the map learned above 0.9 GeV kept ~74 %), and the GNN's cut most of them
    slow = metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=0.5)
    slow_keys = np.setdiff1d(
        undirected(slow, n),
        undirected(metrics.truth_graph(graph.hit_ids, event.truth, event.particles, pt_min=1.0), n),
    )
    in_graph = np.isin(slow_keys, undirected(built, n)).mean()
    at_gnn = np.isin(slow_keys, kept).mean()
    summary = (
        f"0.5-1 GeV truth edges: {in_graph:.3f} of {slow_keys.size} in the graph, {at_gnn:.3f} at the GNN's"
    )
    assert slow_keys.size >= 2000, summary
    assert in_graph >= SLOW_GRAPH_FLOOR, summary
    assert at_gnn >= SLOW_GNN_FLOOR, summary


def undirected(edges: np.ndarray, n: int) -> np.ndarray:
    """Undirected keys of edges [2, E] among n hits."""
    return np.unique(np.minimum(edges[0], edges[1]) * n + np.maximum(edges[0], edges[1]))
