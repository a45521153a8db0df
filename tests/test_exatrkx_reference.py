"""trackflow's stages reproduce the Exa.TrkX service's stored stage outputs (REFERENCE.md §4).

One 314-point event: the stored embedding, FRNN edges (radius 1.6, <= 500 neighbours), filter
logits (cut 0.21 -> 584 edges), GNN logits of the TorchScript ``gnn.pt`` (cut 0.75) and component
labels (313 rows: hit 313 has none and is left out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES

from trackflow.pipeline import (
    GNN,
    GraphBuilding,
    GraphBuildingConfig,
    HitGraph,
    Labelling,
    LabellingConfig,
    build_edges,
)
from trackflow.pipeline.filter import apply_cut
from trackflow.pipeline.gnn import GNNConfig
from trackflow.pipeline.model_files import load_torchscript
from trackflow.pipeline.threads import set_threads

RADIUS = 1.6
MAX_NEIGHBOURS = 500
FILTER_CUT = 0.21
GNN_CUT = 0.75


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    """One thread per pool, as a worker runs (and no OpenMP spinning on a shared machine)."""
    set_threads(1)


class Reference:
    def __init__(self, root: Path) -> None:
        data = root / "exatrkx_pipeline" / "datanmodels"
        outputs = root / "triton_service" / "model_repos" / "inputs"
        self.features = np.loadtxt(data / "in_e1000.csv", delimiter=",", dtype=np.float32)
        self.gnn_file = data / "torchscript" / "gnn.pt"

        def load(name: str, dtype: type) -> np.ndarray:
            return np.loadtxt(outputs / name, delimiter=",").astype(dtype)

        self.embedding = load("embed_output_OUTPUT__0.csv", np.float32)
        self.frnn_edges = load("frnn_output_OUTPUT0.csv", np.int64)
        self.filter_logits = load("filter_output_OUTPUT__0.csv", np.float32)
        self.filter_edges = load("applyfilter_output_EDGE_LIST_AFTER_FILTER.csv", np.int64)
        self.gnn_logits = load("gnn_output_OUTPUT__0.csv", np.float32)
        self.labels = load("exatrkx_output_LABELS.csv", np.int64)


@pytest.fixture(scope="module")
def reference(exatrkx_dir: Path) -> Reference:
    return Reference(exatrkx_dir)


def edge_set(edges: np.ndarray | torch.Tensor) -> set[tuple[int, int]]:
    array = edges.cpu().numpy() if torch.is_tensor(edges) else edges
    return set(zip(array[0].tolist(), array[1].tolist(), strict=True))


def same_grouping(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two labellings put the same hits together (label values aside)."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


def test_reference_data_is_what_the_tests_expect(reference: Reference) -> None:
    assert reference.features.shape == (314, 3)
    assert reference.embedding.shape == (314, 8)
    assert reference.frnn_edges.shape == (2, 2334)
    assert reference.filter_edges.shape == (2, 584)
    assert reference.gnn_logits.shape == (584,)
    assert reference.labels.shape == (313,)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["faiss", "kdtree", "torch", "auto"])
def test_graph_building_reproduces_stored_edges(reference: Reference, backend: str, device: str) -> None:
    if backend == "faiss" and device == "cuda":
        pytest.skip("the faiss backend searches on the CPU (its result is moved back)")
    embedding = torch.from_numpy(reference.embedding).to(device)
    edges = build_edges(embedding, RADIUS, MAX_NEIGHBOURS, backend)
    assert edges.device.type == device
    assert edges.dtype == torch.int64
    assert (edges[0] > edges[1]).all()
    assert edge_set(edges) == edge_set(reference.frnn_edges)
    assert edges.shape[1] == len(edge_set(edges))  # each pair once


def test_filter_cut_reproduces_stored_edges(reference: Reference) -> None:
    edges, scores = apply_cut(
        torch.from_numpy(reference.frnn_edges), torch.from_numpy(reference.filter_logits), FILTER_CUT
    )
    assert edges.shape == (2, 584)
    assert np.array_equal(edges.numpy(), reference.filter_edges)
    assert (scores > FILTER_CUT).all()


@pytest.mark.parametrize("device", DEVICES)
def test_gnn_stage_runs_reference_torchscript(reference: Reference, device: str) -> None:
    model = load_torchscript(reference.gnn_file, device)
    graph = HitGraph.from_features(reference.features).to(device)
    graph.edges = torch.from_numpy(reference.filter_edges).to(device)
    stage = GNN(model, GNNConfig(cut=GNN_CUT))
    logits = stage.logits(graph).cpu().numpy()
    np.testing.assert_allclose(logits, reference.gnn_logits, rtol=0, atol=5e-4)
    graph = stage(graph)
    assert graph.counts["edges_gnn"] == int((reference.gnn_logits > np.log(3.0)).sum())  # 0.75


def test_labelling_groups_hits_as_stored(reference: Reference) -> None:
    graph = HitGraph.from_features(reference.features)
    graph.edges = torch.from_numpy(reference.filter_edges)
    graph.edge_scores = torch.sigmoid(torch.from_numpy(reference.gnn_logits))
    graph = Labelling(LabellingConfig(method="cc", cut=GNN_CUT))(graph)
    labels = graph.track_labels
    assert labels is not None and labels.shape == (314,)
    assert same_grouping(labels[:313], reference.labels)
    assert not same_grouping(labels[:313], np.roll(reference.labels, 1))  # the check can fail


@pytest.mark.parametrize("device", DEVICES)
def test_stages_chained_from_stored_embedding(reference: Reference, device: str) -> None:
    """Our graph building -> stored filter logits (looked up by edge) -> our GNN stage running
    gnn.pt -> our labelling: the same tracks as the service."""
    graph = HitGraph.from_features(reference.features).to(device)
    graph.embedding = torch.from_numpy(reference.embedding).to(device)
    graph = GraphBuilding(GraphBuildingConfig(radius=RADIUS, max_neighbours=MAX_NEIGHBOURS))(graph)
    stored = {
        (int(s), int(t)): float(v)
        for s, t, v in zip(*reference.frnn_edges, reference.filter_logits, strict=True)
    }
    ours = graph.edges.cpu().numpy()
    logits = torch.tensor([stored[(s, t)] for s, t in zip(*ours.tolist(), strict=True)])
    graph.edges, graph.edge_scores = apply_cut(graph.edges, logits.to(device), FILTER_CUT)
    assert edge_set(graph.edges) == edge_set(reference.filter_edges)

    graph = GNN(load_torchscript(reference.gnn_file, device), GNNConfig(cut=GNN_CUT))(graph)
    graph = Labelling(LabellingConfig(method="cc", cut=GNN_CUT))(graph)
    assert same_grouping(graph.track_labels[:313], reference.labels)
