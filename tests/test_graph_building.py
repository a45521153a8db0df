"""Graph building: one exact edge definition, the same edge set from every backend."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st

from trackflow.errors import ConfigError
from trackflow.pipeline import GraphBuilding, GraphBuildingConfig, HitGraph, build_edges
from trackflow.pipeline.graph_building import choose_backend
from trackflow.pipeline.threads import set_threads

# faiss-cpu is a dependency (always there in CI); a GPU machine's image may lack it
BACKENDS = ["kdtree", "torch"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    """One thread per pool, as a worker runs (and no OpenMP spinning on a shared machine)."""
    set_threads(1)


def brute_force(points: np.ndarray, radius: float, max_neighbours: int) -> set[tuple[int, int]]:
    """The definition, written out: for each i the closest lower-indexed partners within radius."""
    p = points.astype(np.float64)
    edges = set()
    for i in range(len(p)):
        d2 = ((p[:i] - p[i]) ** 2).sum(1)
        partners = np.nonzero(d2 < radius**2)[0]
        partners = partners[np.lexsort((partners, d2[partners]))][:max_neighbours]
        edges.update((i, int(j)) for j in partners)
    return edges


def edge_set(edges: torch.Tensor) -> set[tuple[int, int]]:
    a = edges.cpu().numpy()
    return set(zip(a[0].tolist(), a[1].tolist(), strict=True))


def clustered_points(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Points in tight clusters, like hits of one particle in a trained embedding space."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 10, 1), dim))
    return (centres[rng.integers(0, len(centres), n)] + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_neighbours", [3, 1000])
def test_backends_give_the_definition(device: str, max_neighbours: int) -> None:
    points = clustered_points(600)
    expected = brute_force(points, 0.25, max_neighbours)
    if max_neighbours == 3:  # the cap binds
        assert len(expected) < len(brute_force(points, 0.25, 1000))
    for backend in BACKENDS:
        edges = build_edges(torch.from_numpy(points).to(device), 0.25, max_neighbours, backend)
        assert edges.device.type == device
        assert edge_set(edges) == expected, backend


def test_edges_sorted_once_per_pair_and_capped() -> None:
    points = torch.from_numpy(clustered_points(800, seed=1))
    edges = build_edges(points, 0.2, 5, "kdtree")
    src, dst = edges.numpy()
    assert (src > dst).all()
    keys = src * len(points) + dst
    assert (np.diff(keys) > 0).all()  # sorted by (source, target), no duplicates
    assert np.bincount(src).max() <= 5


def test_a_tie_at_the_cap_keeps_the_lower_index() -> None:
    # hit 3 is at the same distance from hits 0, 1 and 2; a cap of 2 keeps 0 and 1
    points = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    for backend in BACKENDS:
        edges = edge_set(build_edges(points, 1.5, 2, backend))
        assert {e for e in edges if e[0] == 3} == {(3, 0), (3, 1)}, backend


def test_radius_is_strict() -> None:
    # exactly representable distance 0.5: a pair at distance == radius is not an edge
    points = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.25]])
    for backend in BACKENDS:
        assert edge_set(build_edges(points, 0.5, 10, backend)) == {(2, 0)}, backend


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_points_give_no_edges(n: int) -> None:
    for backend in BACKENDS:
        edges = build_edges(torch.zeros((n, 8)), 0.1, 10, backend)
        assert edges.shape == (2, 0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 120),
    dim=st.integers(1, 6),
    radius=st.floats(0.05, 1.5),
    cap=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_backends_agree_on_random_points(n: int, dim: int, radius: float, cap: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # a coarse grid makes many exactly equal distances: ties at the cap and at the radius
    points = (rng.integers(0, 5, size=(n, dim)) * 0.25).astype(np.float32)
    expected = brute_force(points, radius, cap)
    for backend in BACKENDS:
        assert edge_set(build_edges(torch.from_numpy(points), radius, cap, backend)) == expected


def test_blocks_do_not_change_the_result() -> None:
    points = torch.from_numpy(clustered_points(500, seed=3))
    whole = build_edges(points, 0.2, 50, "torch", block_size=10_000)
    for backend in ("torch", "faiss"):
        assert torch.equal(build_edges(points, 0.2, 50, backend, block_size=7), whole)


def test_stage_sets_edges_and_count() -> None:
    graph = HitGraph.from_features(torch.zeros((300, 3)))
    graph.embedding = torch.from_numpy(clustered_points(300, seed=2))
    stage = GraphBuilding(GraphBuildingConfig(radius=0.2, max_neighbours=16, backend="kdtree"))
    graph = stage(graph)
    assert graph.counts["edges_graph"] == graph.edges.shape[1] > 0
    assert "kdtree" in repr(stage)


def test_bad_settings_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="backend"):
        GraphBuildingConfig(backend="annoy")
    with pytest.raises(ConfigError, match="radius"):
        GraphBuildingConfig(radius=0.0)
    with pytest.raises(ConfigError, match="backend"):
        build_edges(torch.zeros((3, 2)), 0.1, 5, "cuda-magic")


def test_auto_backend_follows_device() -> None:
    assert choose_backend("cpu", 100_000) == "kdtree"
    assert choose_backend("cuda", 1_000) == "torch"


def test_segments_never_share_an_edge() -> None:
    a = torch.from_numpy(clustered_points(300, seed=4))
    b = a + 1e-3  # a second event almost on top of the first
    segments = torch.cat([torch.zeros(300, dtype=torch.int64), torch.ones(300, dtype=torch.int64)])
    alone = build_edges(a, 0.2, 8, "kdtree")
    for backend in BACKENDS:
        both = build_edges(torch.cat([a, b]), 0.2, 8, backend, segments=segments)
        expected = torch.cat([alone, build_edges(b, 0.2, 8, "kdtree") + 300], dim=1)
        assert edge_set(both) == edge_set(expected), backend


@pytest.mark.parametrize("max_neighbours", [None, 1, 40])
def test_kdtree_candidates_do_not_depend_on_its_nearest_neighbour_count(max_neighbours: int | None) -> None:
    # dense points: with a cap of 1 (k = 3) almost every hit's bounded search is full and falls
    # back to a ball search; without a cap k is 65; either way the candidates are all pairs
    # within the radius, as the brute-force distance matrix finds them
    from trackflow.pipeline.graph_building import candidates_kdtree, candidates_torch

    points = torch.from_numpy(np.random.default_rng(5).random((2000, 4), dtype=np.float32))
    pairs = {
        name: set(zip(*(t.tolist() for t in found), strict=True))
        for name, found in (
            ("kdtree", candidates_kdtree(points, 0.06, max_neighbours=max_neighbours)),
            ("brute force", candidates_torch(points, 0.06)),
        )
    }
    assert 2 * len(pairs["brute force"]) > 20 * len(points)  # ~24 partners per hit: k = 3 is full
    assert pairs["kdtree"] == pairs["brute force"]
