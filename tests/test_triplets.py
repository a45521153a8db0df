"""Triplet agreement (trackflow.pipeline.triplets): helix parameters of edges, triplets through
overlapping modules, learned scales, and the pruning the filter stage runs.

Hits here are points on exact helices through the barrel radii of the TrackML detector, so every
number the tests check follows from geometry: a particle of transverse momentum pT (GeV) in 2 T
bends on a circle of radius pT / 0.6 m, and keeps one cot(theta).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trackflow.errors import ConfigError
from trackflow.pipeline.filter import EdgeFilter, FilterConfig
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.triplets import TripletScales, edge_helix, junctions, triplet_pairs

#: pixel barrel (volume 8, layers 2-8), short-strip barrel (13), long-strip barrel (17): r in mm
BARREL = [(8, 2, 32.0), (8, 4, 72.0), (8, 6, 116.0), (8, 8, 172.0), (13, 2, 260.0), (13, 4, 360.0),
          (13, 6, 500.0), (13, 8, 660.0), (17, 2, 820.0), (17, 4, 1020.0)]  # fmt: skip


def helix_hits(pt: float, charge: int, phi0: float, cot: float, z0: float) -> np.ndarray:
    """[L, 3] (r mm, phi rad, z mm) where a particle from (0, 0, z0) crosses each barrel layer."""
    radius = pt / 0.6 * 1000.0  # mm
    rows = []
    for _, _, r in BARREL:
        half = math.asin(r / (2.0 * radius))  # half the turning angle up to radius r
        rows.append((r, phi0 - charge * half, z0 + cot * 2.0 * radius * half))
    return np.asarray(rows)


def event_of(particles: list[tuple[float, int, float, float, float]], smear: float = 0.0, seed: int = 0):
    """(layers, cylindrical, truth edges [2, T], truth pT [T]) of the particles' barrel hits."""
    rng = np.random.default_rng(seed)
    layers, points, edges, pts = [], [], [], []
    for pt, charge, phi0, cot, z0 in particles:
        hits = helix_hits(pt, charge, phi0, cot, z0)
        if smear:
            hits[:, 1] += rng.normal(0, smear / hits[:, 0])  # smear mm in r*phi
            hits[:, 2] += rng.normal(0, smear, len(hits))
        start = len(points)
        points.extend(hits.tolist())
        layers.extend(v * 100 + lay for v, lay, _ in BARREL)
        edges.extend((start + i, start + i + 1) for i in range(len(BARREL) - 1))
        pts.extend([pt] * (len(BARREL) - 1))
    return (np.asarray(layers, np.int64), np.asarray(points), np.asarray(edges, np.int64).T,
            np.asarray(pts, np.float32))  # fmt: skip


@pytest.mark.parametrize("pt, charge", [(0.5, 1), (1.0, -1), (5.0, 1)])
def test_an_edge_of_a_helix_gives_its_curvature_and_slope(pt: float, charge: int) -> None:
    _, cylindrical, edges, _ = event_of([(pt, charge, 0.3, 0.7, 12.0)])
    helix = edge_helix(cylindrical, edges, min_dr=5.0)
    # rho = 0.6 / pT per metre, its sign the bending direction; cot exact along the arc
    assert np.allclose(np.abs(helix.rho), 0.6 / pt, rtol=1e-6)
    assert np.all(np.sign(helix.rho) == -charge)
    assert np.allclose(helix.cot, 0.7, rtol=1e-6)
    # whichever way an edge points, it is ordered outwards
    flipped = edge_helix(cylindrical, edges[::-1], min_dr=5.0)
    assert np.array_equal(flipped.inner, helix.inner) and np.allclose(flipped.rho, helix.rho)


def test_triplets_join_edges_across_overlapping_modules() -> None:
    # hits 0 (r 32), 1 and 2 (two overlapping modules of the r 72 layer, 1 mm apart), 3 (r 116)
    cylindrical = np.array([[32.0, 0.0, 0.0], [72.0, 0.0, 0.0], [73.0, 0.0, 0.0], [116.0, 0.0, 0.0]])
    layers = np.array([802, 804, 804, 806])
    edges = np.array([[0, 1, 2], [1, 2, 3]])  # 0->1, the overlap 1->2, 2->3
    helix = edge_helix(cylindrical, edges, min_dr=5.0)
    assert helix.usable.tolist() == [True, False, True]
    junction = junctions(layers, helix, len(layers))
    assert junction[1] == junction[2] and len(set(junction.tolist())) == 3
    first, second = triplet_pairs(helix, junction)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(0, 2)]
    # without the overlap edge, nothing joins 0->1 to 2->3
    apart = edge_helix(cylindrical, edges[:, [0, 2]], min_dr=5.0)
    assert len(triplet_pairs(apart, junctions(layers, apart, len(layers)))[0]) == 0


def learned_scales(keep: float = 0.99) -> TripletScales:
    rng = np.random.default_rng(1)
    particles = [(float(rng.uniform(0.5, 5.0)), int(rng.choice([-1, 1])), float(rng.uniform(-3, 3)),
                  float(rng.uniform(-1, 1)), float(rng.normal(0, 50))) for _ in range(400)]  # fmt: skip
    return TripletScales.from_truth([event_of(particles, smear=0.05, seed=2)], keep=keep)


def test_scales_learned_from_truth_keep_true_edges_and_drop_wrong_turns() -> None:
    scales = learned_scales()
    assert set(scales.chi2_cut) == {8, 13, 17}
    assert all(np.isfinite(c) and c > 0 for c in scales.chi2_cut.values())
    # held-out particles: their edges survive; edges joining two particles' hits do not
    rng = np.random.default_rng(5)
    particles = [(float(rng.uniform(1.0, 5.0)), 1, float(rng.uniform(-3, 3)), float(rng.uniform(-1, 1)), 0.0)
                 for _ in range(50)]  # fmt: skip
    layers, cylindrical, truth, _ = event_of(particles, smear=0.05, seed=6)
    n_layers = len(BARREL)
    # wrong turns: from particle i's hit on one layer to particle i+1's on the next
    starts = np.arange(len(particles) - 1) * n_layers
    fakes = np.stack([starts + 3, starts + n_layers + 4])
    edges = np.concatenate([truth, fakes], axis=1)
    keep = scales.keep(layers, cylindrical, edges)
    assert keep[: truth.shape[1]].mean() > 0.97
    assert keep[truth.shape[1] :].mean() < 0.1


def test_scales_round_trip_and_a_malformed_table_names_the_setting() -> None:
    scales = learned_scales()
    again = TripletScales.from_dict(scales.to_dict())
    assert np.allclose(again.sigma, scales.sigma, rtol=1e-5)
    assert again.chi2_cut == pytest.approx(scales.chi2_cut, rel=1e-3)
    with pytest.raises(ConfigError, match=r"pipeline\.filter\.triplets"):
        FilterConfig(cut=0.2, triplets={"layers": [804]})
    with pytest.raises(ConfigError, match="triplet_cut"):
        FilterConfig(cut=0.2, triplet_cut=-1.0)


def test_the_filter_stage_prunes_after_its_cut_and_triplet_cut_overrides_the_learned_cuts() -> None:
    scales = learned_scales()
    layers, cylindrical, truth, _ = event_of([(2.0, 1, 0.5, 0.3, 0.0), (2.0, -1, 0.52, -0.2, 30.0)])
    n_layers = len(BARREL)
    fakes = np.array([[3, n_layers + 5], [n_layers + 2, 4]]).T  # two wrong turns between them
    edges = torch.from_numpy(np.concatenate([truth, fakes], axis=1))

    def run(config: FilterConfig) -> HitGraph:
        graph = HitGraph(event_id=7, hit_ids=np.arange(len(layers)), features=torch.zeros(len(layers), 3),
                         layers=layers, cylindrical=cylindrical, edges=edges.clone())  # fmt: skip
        return EdgeFilter(None, config)(graph)  # no MLP: every edge passes the cut, then pruning

    pruned = run(FilterConfig(cut=0.2, triplets=scales.to_dict()))
    kept = {tuple(e) for e in pruned.edges.T.tolist()}
    assert kept == {tuple(e) for e in truth.T.tolist()}
    assert pruned.counts["edges_filter_mlp"] == edges.shape[1]
    assert pruned.counts["edges_filter"] == truth.shape[1]
    # a huge cut keeps everything; no scales: no pruning
    assert run(FilterConfig(cut=0.2, triplets=scales.to_dict(), triplet_cut=1e12)).n_edges == edges.shape[1]
    assert run(FilterConfig(cut=0.2)).n_edges == edges.shape[1]


def test_agreement_tells_the_gnn_which_edge_continues_the_helix() -> None:
    """Each edge's best triplet with an edge further in and one further out, as GNN inputs: the
    helix's own edges agree on both sides (its last edge has nothing further out), an edge to a
    hit 10 mm off the helix in r*phi on the last layer agrees with nothing."""
    from trackflow.pipeline.triplets import AGREEMENT_FEATURES

    scales = learned_scales()
    layers, cylindrical, truth, _ = event_of([(2.0, 1, 0.5, 0.3, 0.0)])
    last = len(layers) - 1
    off = cylindrical[last] + [0.0, 10.0 / cylindrical[last, 0], 0.0]  # 10 mm in r*phi
    layers = np.append(layers, layers[last])
    cylindrical = np.vstack([cylindrical, off])
    wrong = np.array([[last - 1], [last + 1]])  # the 17-2 hit to the off-helix hit
    edges = np.concatenate([truth, wrong], axis=1)
    agreement = scales.agreement(layers, cylindrical, edges)
    assert agreement.shape == (edges.shape[1], len(AGREEMENT_FEATURES))
    log_in, none_in, log_out, none_out = agreement.T
    cap = np.log1p(1000.0) / 7.0
    # the first edge has no inner partner; the middle ones agree on both sides within chi2 ~ 1
    assert none_in[: truth.shape[1]].tolist() == [1.0] + [0.0] * (truth.shape[1] - 1)
    assert np.all(log_in[1 : truth.shape[1]] < np.log1p(1.0) / 7.0)
    assert np.all(log_out[: truth.shape[1] - 1] < np.log1p(1.0) / 7.0)
    assert none_out[truth.shape[1] - 1] == 1.0 and log_out[truth.shape[1] - 1] == pytest.approx(cap)
    # the off-helix edge: no inner triplet within the search window, or one far above any cut
    assert log_in[-1] > np.log1p(25.0) / 7.0
    # edges in any order, any direction: the same inputs
    flipped = scales.agreement(layers, cylindrical, edges[::-1, ::-1])
    assert np.allclose(flipped, agreement[::-1])
