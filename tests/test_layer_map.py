"""Graph building from a layer map (trackflow.pipeline.layer_map): learned from truth, exact cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackflow.errors import ConfigError
from trackflow.pipeline import HitGraph
from trackflow.pipeline.graph_building import GraphBuilding, GraphBuildingConfig
from trackflow.pipeline.layer_map import LayerMap, helix_dphi, intercept_z0, layer_keys, layer_map_edges

BARREL_RADII = (32.0, 72.0, 116.0, 172.0)  # mm: the pixel barrel (volume 8, layers 2, 4, 6, 8)


def straight_tracks(n_tracks: int, z0_range: float, seed: int, bend: float = 0.002):
    """Hits of tracks from vertices z0 ~ U(-z0_range, z0_range) mm through the four pixel-barrel
    layers: (layer keys [N], cylindrical [N, 3], truth edges [2, T], edge pT [T], z0 per track)."""
    rng = np.random.default_rng(seed)
    z0 = rng.uniform(-z0_range, z0_range, n_tracks)
    cot = rng.uniform(-1.0, 1.0, n_tracks)
    phi0 = rng.uniform(-np.pi, np.pi, n_tracks)
    curvature = rng.uniform(-bend, bend, n_tracks)  # rad per mm: a small azimuthal bend
    rows, edges = [], []
    for r in BARREL_RADII:
        phi = (phi0 + curvature * r + np.pi) % (2 * np.pi) - np.pi
        rows.append(np.column_stack([np.full(n_tracks, r), phi, z0 + cot * r]))
    cylindrical = np.concatenate(rows)
    layers = np.repeat(layer_keys(np.full(4, 8), np.array([2, 4, 6, 8])), n_tracks)
    track = np.tile(np.arange(n_tracks), 4)
    for i in range(3):
        edges.append(np.stack([np.arange(n_tracks) + i * n_tracks, np.arange(n_tracks) + (i + 1) * n_tracks]))
    truth = np.concatenate(edges, axis=1)
    return layers, cylindrical, truth, np.full(truth.shape[1], 2.0), z0, track


def undirected(edges: np.ndarray) -> set[tuple[int, int]]:
    return {(int(max(a, b)), int(min(a, b))) for a, b in edges.T}


def test_intercept_is_the_vertex_and_symmetric():
    r_a, z_a, r_b, z_b = np.array([32.0]), np.array([40.0]), np.array([72.0]), np.array([80.0])
    assert intercept_z0(r_a, z_a, r_b, z_b)[0] == pytest.approx(8.0)
    assert intercept_z0(r_b, z_b, r_a, z_a)[0] == pytest.approx(8.0)


def test_learned_map_finds_every_track_within_the_luminous_region():
    layers, cyl, truth, pt, _, _ = straight_tracks(300, 60.0, seed=1)
    layer_map = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0, z0_cover=200.0)
    # the three consecutive layer pairs, nothing else
    pairs = sorted(zip(layer_map.inner.tolist(), layer_map.outer.tolist(), strict=True))
    assert pairs == [(802, 804), (804, 806), (806, 808)]
    # other tracks, vertices spread further than in training but inside the ±200 mm cover
    layers, cyl, truth, _, _, _ = straight_tracks(200, 190.0, seed=2)
    edges = layer_map_edges(layer_map, layers, cyl)
    assert undirected(truth) <= undirected(edges)
    # the convention of every graph-building method: source > target, sorted, no duplicates
    assert (edges[0] > edges[1]).all()
    keys = edges[0] * len(layers) + edges[1]
    assert (np.diff(keys) > 0).all()


def test_cuts_reject_pairs_outside_them():
    layers, cyl, truth, pt, _, _ = straight_tracks(300, 60.0, seed=1)
    layer_map = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0, z0_cover=100.0)
    # a track from z0 = 400 mm: its pairs point outside the accepted luminous region
    far = np.array([[r, 0.3, 400.0 + 0.5 * r] for r in BARREL_RADII])
    edges = layer_map_edges(layer_map, layers[::300], far)
    assert edges.shape[1] == 0
    # two hits far apart in azimuth are never joined
    apart = np.array([[32.0, 0.0, 10.0], [72.0, 1.0, 22.5]])
    assert layer_map_edges(layer_map, np.array([802, 804]), apart).shape[1] == 0
    # the same two hits close in azimuth are, and across phi = ±pi too
    close = np.array([[32.0, np.pi - 0.001, 10.0], [72.0, -np.pi + 0.001, 22.5]])
    assert layer_map_edges(layer_map, np.array([802, 804]), close).shape[1] == 1


def test_edges_do_not_depend_on_hit_order_and_respect_segments():
    layers, cyl, truth, pt, _, _ = straight_tracks(200, 60.0, seed=3)
    layer_map = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0)
    edges = layer_map_edges(layer_map, layers, cyl)
    perm = np.random.default_rng(0).permutation(len(layers))
    permuted = layer_map_edges(layer_map, layers[perm], cyl[perm])
    assert undirected(perm[permuted]) == undirected(edges)
    # two copies of the event fused: each keeps its own edges, none joins the copies
    n = len(layers)
    fused = layer_map_edges(
        layer_map, np.concatenate([layers, layers]), np.concatenate([cyl, cyl]), np.repeat([0, 1], n)
    )
    assert fused.shape[1] == 2 * edges.shape[1]
    assert ((fused[0] < n) == (fused[1] < n)).all()


def test_round_trip_and_bad_specs():
    layers, cyl, truth, pt, _, _ = straight_tracks(100, 60.0, seed=4)
    layer_map = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0)
    again = LayerMap.from_dict(layer_map.to_dict())
    # the manifest's rounding (1e-6 rad, 1e-3 mm) moves no edge
    assert np.array_equal(layer_map_edges(again, layers, cyl), layer_map_edges(layer_map, layers, cyl))
    assert np.array_equal(again.inner, layer_map.inner)
    with pytest.raises(ConfigError, match="layer map"):
        LayerMap.from_dict({"pairs": [[802, 804, 0.1]]})
    with pytest.raises(ConfigError, match="dphi_max"):
        LayerMap.from_dict({"pairs": [[802, 804, -0.1, -200.0, 200.0, 5]]})
    with pytest.raises(ConfigError, match="needs a layer_map"):
        GraphBuildingConfig(method="layer_map")


def test_stage_uses_the_map_and_says_what_it_misses():
    layers, cyl, truth, pt, _, _ = straight_tracks(100, 60.0, seed=5)
    spec = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0).to_dict()
    stage = GraphBuilding(GraphBuildingConfig(method="layer_map", layer_map=spec))
    graph = HitGraph(
        event_id=0,
        hit_ids=np.arange(len(layers)),
        features=torch.zeros(len(layers), 4),
        layers=layers,
        cylindrical=cyl,
    )
    out = stage(graph)
    assert undirected(truth) <= undirected(out.edges.numpy())
    assert out.counts["edges_graph"] == out.n_edges
    bare = HitGraph(event_id=0, hit_ids=np.arange(3), features=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="volume_id and layer_id"):
        stage(bare)


def test_widened_windows_admit_tracks_that_bend_more_and_stop_at_the_cap():
    layers, cyl, truth, pt, _, _ = straight_tracks(300, 60.0, seed=3, bend=0.001)
    learned = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=1.0, z0_cover=200.0)
    wide = learned.widened(2.0)
    assert np.allclose(wide.dphi_max, np.minimum(2.0 * learned.dphi_max, np.maximum(learned.dphi_max, 0.25)))
    # tracks bending twice as much as any seen in training: the learned map loses pairs, the widened one not
    layers, cyl, truth, _, _, _ = straight_tracks(200, 60.0, seed=4, bend=0.002)
    assert not undirected(truth) <= undirected(layer_map_edges(learned, layers, cyl))
    assert undirected(truth) <= undirected(layer_map_edges(wide, layers, cyl))
    # a window learned wider than the cap stays as learned
    table = learned.to_dict()
    table["pairs"][0][2] = 0.4
    assert LayerMap.from_dict(table).widened(3.0).dphi_max[0] == pytest.approx(0.4)
    # the stage setting: the same map, widened
    config = GraphBuildingConfig(method="layer_map", layer_map=learned.to_dict(), dphi_scale=2.0)
    stage = GraphBuilding(config)
    assert stage.layer_map is not None
    assert np.allclose(stage.layer_map.dphi_max, LayerMap.from_dict(learned.to_dict()).widened(2.0).dphi_max)
    with pytest.raises(ConfigError, match="dphi_scale"):
        GraphBuildingConfig(method="layer_map", layer_map=learned.to_dict(), dphi_scale=0.0)


def test_helix_bend_matches_the_circle_through_the_beam_line():
    # a 1 GeV particle in 2 T: circle of radius 1667 mm; at r = 2R it has turned by pi / 2
    radius = 1000.0 / 0.6
    assert helix_dphi(np.array([0.0]), np.array([2 * radius]), 1.0, 2.0)[0] == pytest.approx(np.pi / 2)
    # small angles: dphi ~ dr / 2R, half as much at twice the pT, symmetric in the two radii
    bend = helix_dphi(np.array([32.0]), np.array([72.0]), 1.0, 2.0)[0]
    assert bend == pytest.approx(40.0 / (2 * radius), rel=1e-3)
    assert helix_dphi(np.array([72.0]), np.array([32.0]), 2.0, 2.0)[0] == pytest.approx(bend / 2, rel=1e-3)


def test_field_cap_bounds_windows_learned_from_scattered_tracks():
    layers, cyl, truth, pt, _, _ = straight_tracks(300, 60.0, seed=5, bend=0.0005)
    # a few "scattered" edges of the pair 806 -> 808 with a large azimuth jump open its window
    outer_808 = np.flatnonzero(layers == 808)[:4]
    cyl = cyl.copy()
    cyl[outer_808, 1] = wrap(cyl[outer_808, 1] + 0.8)
    free = LayerMap.from_truth([(layers, cyl, truth, pt)], pt_min=0.5, quantile=0.995, z0_cover=200.0)
    capped = LayerMap.from_truth(
        [(layers, cyl, truth, pt)], pt_min=0.5, quantile=0.995, z0_cover=200.0, b_field=2.0, field_factor=1.0
    )
    row = int(np.flatnonzero((free.inner == 806) & (free.outer == 808))[0])
    assert free.dphi_max[row] > 0.5
    # capped at a 0.5 GeV track's bend between the pair's radii (116 -> 172 mm), ~0.034 rad
    assert capped.dphi_max[row] == pytest.approx(
        float(helix_dphi(np.array([116.0]), np.array([172.0]), 0.5, 2.0)[0])
    )
    # every window is the smaller of what the data give and what the field allows
    radius = dict(zip((802, 804, 806, 808), BARREL_RADII, strict=True))
    bends = helix_dphi(
        np.array([radius[int(k)] for k in capped.inner]),
        np.array([radius[int(k)] for k in capped.outer]),
        0.5,
        2.0,
    )
    assert np.allclose(capped.dphi_max, np.minimum(free.dphi_max, bends))
    assert (free.dphi_max < bends).any()  # so some windows stay as learned
    # the floor: no window closes below field_floor
    floor = LayerMap.from_truth(
        [(layers, cyl, truth, pt)],
        pt_min=1.0,
        z0_cover=200.0,
        b_field=2.0,
        field_factor=0.01,
        field_floor=0.02,
    )
    assert np.allclose(floor.dphi_max, 0.02)


def wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


@pytest.mark.parametrize("z_window", [False, True])
def test_edges_are_every_pair_within_the_cuts(z_window: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against brute force on random hits (most candidate pairs fail a cut), across phi = ±pi and
    within a layer: the azimuth-sorted search, and the (azimuth bin, z) search that full events
    take for barrel targets, give exactly the pairs within the map's cuts."""
    import trackflow.pipeline.layer_map as module

    # the z-window search for every layer pair that admits it, or for none
    monkeypatch.setattr(module, "Z_WINDOW_MIN_CANDIDATES", 0 if z_window else 1 << 62)
    monkeypatch.setattr(module, "Z_WINDOW_MAX_SHARE", 1.0 if z_window else 0.0)
    rng = np.random.default_rng(7)
    radii = {802: (31.0, 33.0), 804: (71.0, 73.0), 1302: (258.0, 262.0)}
    keys = np.repeat(list(radii), 400)
    r = np.concatenate([rng.uniform(*radii[k], 400) for k in radii])
    cyl = np.column_stack([r, rng.uniform(-np.pi, np.pi, len(r)), rng.uniform(-500.0, 500.0, len(r))])
    table = np.array(
        [
            [802, 804, 0.05, -150.0, 150.0, 1],
            [804, 1302, 0.2, -100.0, 60.0, 1],
            [1302, 1302, 0.02, -200.0, 200.0, 1],
            [802, 802, 0.5, -300.0, 300.0, 1],
        ]
    )
    layer_map = LayerMap.from_table(table)
    expected = set()
    for a, b, width, low, high, _ in table:
        ia, ib = np.flatnonzero(keys == a), np.flatnonzero(keys == b)
        src, dst = np.repeat(ia, len(ib)), np.tile(ib, len(ia))
        dphi = np.abs((cyl[dst, 1] - cyl[src, 1] + np.pi) % (2 * np.pi) - np.pi)
        z0 = intercept_z0(cyl[src, 0], cyl[src, 2], cyl[dst, 0], cyl[dst, 2])
        ok = (dphi <= width) & (z0 >= low) & (z0 <= high) & (src != dst)
        expected |= undirected(np.stack([src[ok], dst[ok]]))
    edges = layer_map_edges(layer_map, keys, cyl)
    assert len(expected) > 500
    assert undirected(edges) == expected and len(expected) == edges.shape[1]
