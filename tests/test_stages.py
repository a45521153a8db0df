"""The stages and the Pipeline on real TrackML hits (subsampled) with untrained models."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEVICES

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.events import Event, list_events, read_event, with_derived
from trackflow.pipeline import (
    GNN,
    STAGE_NAMES,
    EdgeFilter,
    EmbeddingNet,
    FeatureConfig,
    FilterConfig,
    FilterNet,
    GraphBuildingConfig,
    HitGraph,
    InteractionGNN,
    Pipeline,
    hit_features,
    set_threads,
)
from trackflow.pipeline.filter import pair_features
from trackflow.pipeline.model_files import read_manifest, shipped_models_dir


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    """One thread per pool, as a worker runs (and no OpenMP spinning on a shared machine)."""
    set_threads(1)


@pytest.fixture(scope="module")
def real_event(trackml_dir: Path) -> Event:
    """2,000 hits of a real TrackML event (hits only, as a reconstruction job sees them)."""
    event = read_event(list_events(trackml_dir)[0], parts=("hits",))
    hits = event.hits.sample(n=2000, random_state=0).sort_values("hit_id").reset_index(drop=True)
    return Event(event.event_id, hits)


def small_pipeline(device: str = "cpu", **kwargs: object) -> Pipeline:
    # radius chosen so an untrained embedding gives a few edges per hit
    return Pipeline.random_init(
        hidden=32,
        gnn_hidden=16,
        device=device,
        graph_building=GraphBuildingConfig(radius=0.05, max_neighbours=16),
        **kwargs,
    )


# ---------------------------------------------------------------------------- features
def test_features_are_scaled_positions_only(real_event: Event) -> None:
    hits = real_event.hits
    features = hit_features(hits)
    assert features.dtype == torch.float32 and features.shape == (len(hits), 3)
    r = np.hypot(hits["x"], hits["y"]).to_numpy()
    np.testing.assert_allclose(features[:, 0].numpy(), r / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(features[:, 2].numpy(), hits["z"].to_numpy() / 1000.0, rtol=1e-6)
    assert features[:, 1].abs().max() <= 1.0
    # derived columns (with_derived) or not: the same features
    np.testing.assert_allclose(hit_features(with_derived(hits)).numpy(), features.numpy(), atol=1e-6)


def test_extra_features_and_scales(real_event: Event) -> None:
    config = FeatureConfig(names=("r", "phi", "z", "eta", "volume"), scale={"r": 3000.0})
    features = hit_features(real_event.hits, config)
    assert features.shape == (2000, config.n_features) == (2000, 13)
    assert torch.equal(features[:, 4:].sum(1), torch.ones(2000))  # one volume each
    assert float(features[:, 0].max()) < 1100 / 3000
    assert FeatureConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown feature"):
        FeatureConfig(names=("r", "particle_id"))


def test_features_follow_config(real_event: Event) -> None:
    with trackflow.config.set(**{"pipeline.feature_scale": {"r": 500.0, "phi": 1.0, "z": 1.0}}):
        features = hit_features(real_event.hits)
    r = np.hypot(real_event.hits["x"], real_event.hits["y"]).to_numpy()
    np.testing.assert_allclose(features[:, 0].numpy(), r / 500.0, rtol=1e-6)


# ---------------------------------------------------------------------------- models
def test_models_are_torchscript_able() -> None:
    torch.manual_seed(0)
    x = torch.randn(300, 3)
    edges = torch.randint(0, 300, (2, 2000))
    models = [
        (EmbeddingNet(3, 32, 2, 8), (x,)),
        (FilterNet(3, 32, 2), (x, edges)),
        (FilterNet(3, 32, 2, use_embedding_distance=True), (x, edges, torch.randn(300, 8))),
        (InteractionGNN(3, 16, 8), (x, edges)),
        (FilterNet(4, 32, 2, pair_features=True), (torch.randn(300, 4), edges)),
    ]
    for model, inputs in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
            scripted = torch.jit.script(model)
        with torch.inference_mode():
            torch.testing.assert_close(scripted(*inputs), model(*inputs))


def _scaled_hits(r: np.ndarray, phi: np.ndarray, z: np.ndarray) -> torch.Tensor:
    """Hit features r, cos_phi, sin_phi, z at the default scales (r, z / 1000 mm)."""
    columns = [r / 1000.0, np.cos(phi), np.sin(phi), z / 1000.0]
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)


def test_filter_pair_features_are_the_pair_geometry() -> None:
    # a straight line from (r, z) = (0, 40 mm), and a pair across phi = +-pi
    x = _scaled_hits(
        np.array([100.0, 300.0, 500.0, 520.0]),
        np.array([0.1, 0.16, 3.1, -3.1]),
        np.array([60.0, 100.0, 0.0, 0.0]),
    )
    f = pair_features(x[[0, 2]], x[[1, 3]], 1000.0, 1000.0).numpy()
    dr, dphi, dz, deta, curvature, z0 = f[0]
    np.testing.assert_allclose([dr, dphi, dz, z0], [0.2, 0.06, 0.04, 0.04], atol=1e-5)
    np.testing.assert_allclose(curvature, 0.06 / 0.2, rtol=1e-4)  # rad/m
    np.testing.assert_allclose(deta, np.arcsinh(100 / 300) - np.arcsinh(60 / 100), rtol=1e-5)
    np.testing.assert_allclose(f[1, 1], 2 * np.pi - 6.2, atol=1e-5)  # wrapped, not -6.2
    # hits on one disk (dr = 0): finite, clipped
    same = pair_features(x[[2]], x[[2]] + torch.tensor([[0.0, 0.0, 0.0, 0.5]]), 1000.0, 1000.0)
    assert torch.isfinite(same).all() and same[0, 5].abs() <= 3.0


def test_filter_with_pair_features_ignores_edge_direction_and_hit_order() -> None:
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    r, phi, z = rng.uniform(30, 1000, 200), rng.uniform(-np.pi, np.pi, 200), rng.uniform(-2000, 2000, 200)
    x = _scaled_hits(r, phi, z)
    edges = torch.randint(0, 200, (2, 1000))
    model = FilterNet(4, 32, 2, pair_features=True).eval()
    with torch.inference_mode():
        logits = model(x, edges)
        torch.testing.assert_close(model(x, edges.flip(0)), logits)
        perm = torch.randperm(200)  # shuffled hits, the same edges
        inverse = torch.argsort(perm)
        torch.testing.assert_close(model(x[perm], inverse[edges]), logits)
    # without it (the default, as in the shipped models) direction matters
    plain = FilterNet(4, 32, 2).eval()
    with torch.inference_mode():
        assert not torch.allclose(plain(x, edges.flip(0)), plain(x, edges))
    with pytest.raises(ValueError, match="pair_features"):
        FilterNet(3, 32, 2, pair_features=True)


def test_embedding_is_normalised_when_asked() -> None:
    x = torch.randn(50, 3)
    assert torch.allclose(EmbeddingNet(normalise=True)(x).norm(dim=1), torch.ones(50))
    assert not torch.allclose(EmbeddingNet(normalise=False)(x).norm(dim=1), torch.ones(50))


def test_gnn_chunked_inference_equals_textbook_form() -> None:
    torch.manual_seed(1)
    model = InteractionGNN(3, 16, 8).eval()
    x = torch.randn(400, 3)
    edges = torch.randint(0, 400, (2, 3000))
    model.inference_chunk = 257
    with torch.inference_mode():
        torch.testing.assert_close(model(x, edges), model.reference_forward(x, edges))
    # with autograd on, the same numbers and a gradient
    logits = model(x, edges)
    logits.sum().backward()
    assert model.edge_network[0].weight.grad is not None


def _hit_features(n: int) -> torch.Tensor:
    """Scaled hit features r/1000, cos_phi, sin_phi, z/1000 (r in 30..1000 mm) plus 2 extra."""
    r = torch.rand(n) * 0.97 + 0.03
    phi = (torch.rand(n) * 2 - 1) * torch.pi
    return torch.stack([r, phi.cos(), phi.sin(), torch.randn(n) * 0.5, torch.randn(n), torch.randn(n)], 1)


def test_gnn_with_pair_features_ignores_edge_direction() -> None:
    torch.manual_seed(3)
    model = InteractionGNN(6, 16, 4, pair_features=True).eval()
    x = _hit_features(300)
    edges = torch.randint(0, 300, (2, 2000))
    edges = edges[:, edges[0] != edges[1]]
    model.inference_chunk = 333
    with torch.inference_mode():
        logits = model(x, edges)
        torch.testing.assert_close(logits, model.reference_forward(x, edges))
        # graph building's direction is arbitrary: the same pairs reversed score the same
        torch.testing.assert_close(model(x, edges.flip(0)), logits)
    # without orientation the in/out aggregation would tell the two apart
    plain = InteractionGNN(6, 16, 4).eval()
    with torch.inference_mode():
        assert not torch.allclose(plain(x, edges), plain(x, edges.flip(0)))
    with pytest.raises(ValueError, match="pair_features"):
        InteractionGNN(3, 16, pair_features=True)


def test_gnn_reading_filter_scores_gets_them_from_the_stage_and_survives_torchscript() -> None:
    from trackflow.pipeline.training.gnn import EmbeddedGNN

    torch.manual_seed(4)
    x = _hit_features(200)[:, :4]
    edges = torch.randint(0, 200, (2, 1500))
    scores = torch.rand(1500)
    gnn = InteractionGNN(4 + 3, 16, 3, pair_features=True, edge_score_input=True).eval()
    gnn.inference_chunk = 100
    model = EmbeddedGNN(EmbeddingNet(4, 16, 2, 3), gnn).eval()
    with torch.inference_mode():
        logits = model(x, edges, scores)
        embedded = torch.cat([x, model.embedding(x)], 1)
        torch.testing.assert_close(logits, gnn.reference_forward(embedded, edges, scores))
        # the score is an input: other scores, other logits
        assert not torch.allclose(model(x, edges, 1 - scores), logits)
    with pytest.raises(ValueError, match="edge_scores"):
        model(x, edges)
    with warnings.catch_warnings():  # TorchScript is how such models ship (model_files)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    assert scripted.uses_edge_scores
    graph = HitGraph.from_features(x)
    graph.edges, graph.edge_scores = edges, scores
    graph = GNN(scripted)(graph)
    torch.testing.assert_close(torch.logit(graph.edge_scores), logits, atol=1e-4, rtol=1e-4)
    # the block size the stage raises on a GPU lives in the wrapped GNN, scripted or not
    from trackflow.pipeline.gnn import chunked_module

    assert chunked_module(model) is gnn and chunked_module(gnn) is gnn
    chunked_module(scripted).inference_chunk = 77
    assert scripted.gnn.inference_chunk == 77
    assert chunked_module(EmbeddingNet(4, 16, 2, 3)) is None


def test_a_gnn_reading_triplet_agreement_gets_it_from_the_filters_scales() -> None:
    """A GNN with ``triplet_inputs`` reads each edge's agreement (TripletScales.agreement) with the
    filter's score: the stage computes it from the hits' layers and positions with the scales the
    Pipeline hands over from the filter stage, as a plain or TorchScript model."""
    from trackflow.pipeline.training.gnn import with_triplet_inputs

    scales = Pipeline.load(threads=1).stages["filter"].triplets  # the shipped, learned ones
    assert scales is not None
    torch.manual_seed(8)
    n = 400
    layer_keys = torch.tensor([802, 804, 806, 808, 1302, 1304, 1306, 1308, 1702, 1704])
    radius = torch.tensor([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0])
    which = torch.randint(0, 10, (n,))
    phi = (torch.rand(n) * 2 - 1) * 0.2
    z = torch.randn(n) * 100.0
    cylindrical = torch.stack([radius[which], phi, z], 1).double().numpy()
    x = torch.stack([radius[which] / 1000, phi.cos(), phi.sin(), z / 1000], 1)
    edges = torch.randint(0, n, (2, 3000))
    edges = edges[:, which[edges[0]] != which[edges[1]]]
    scores = torch.rand(edges.shape[1])
    graph = HitGraph.from_features(x)
    graph.layers, graph.cylindrical = layer_keys[which].numpy(), cylindrical
    graph.edges, graph.edge_scores = edges, scores

    model = InteractionGNN(4, 16, 3, pair_features=True, edge_score_input=True, triplet_inputs=True).eval()
    for p in model.parameters():  # trained-looking weights: the agreement columns matter
        p.data.add_(0.3 * torch.randn_like(p))
    inputs = torch.cat(
        [scores[:, None], torch.from_numpy(scales.agreement(graph.layers, cylindrical, edges.numpy()))], 1
    )
    with torch.inference_mode():
        expected = model.reference_forward(x, edges, inputs)
        # the agreement is an input: other agreement, other logits
        assert not torch.allclose(
            model(x, edges, torch.cat([scores[:, None], 1 - inputs[:, 1:]], 1)), expected
        )
    stage = GNN(model, triplets=scales)
    torch.testing.assert_close(stage.logits(graph), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="triplet"):
        GNN(model).logits(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    assert scripted.uses_triplet_inputs
    torch.testing.assert_close(GNN(scripted, triplets=scales).logits(graph), expected, atol=1e-5, rtol=1e-5)
    # the Pipeline gives the GNN the filter's scales
    pipeline = Pipeline.random_init(seed=0)
    pipeline = Pipeline(
        {
            **pipeline.stages,
            "filter": EdgeFilter(None, FilterConfig(triplets=scales.to_dict())),
            "gnn": GNN(model),
        }
    )
    assert pipeline.stages["gnn"].triplets is pipeline.stages["filter"].triplets
    # a GNN without the agreement, given it at weight 0: the same function (a warm start)
    plain = InteractionGNN(4, 16, 3, pair_features=True, edge_score_input=True).eval()
    model.load_state_dict(with_triplet_inputs(plain.state_dict()))
    with torch.inference_mode():
        torch.testing.assert_close(model(x, edges, inputs), plain(x, edges, scores))


def test_embedded_gnn_takes_the_embedding_stage_output_when_its_weights_match(tmp_path: Path) -> None:
    from trackflow.pipeline.gnn import shares_embedding
    from trackflow.pipeline.training.gnn import EmbeddedGNN, rebuild_embedded_gnn

    torch.manual_seed(5)
    x = _hit_features(300)[:, :4]
    edges = torch.randint(0, 300, (2, 2000))
    embedding_net = EmbeddingNet(4, 16, 2, 3).eval()
    model = EmbeddedGNN(embedding_net, InteractionGNN(4 + 3, 16, 3, pair_features=True)).eval()
    with torch.inference_mode():
        logits = model(x, edges)
        torch.testing.assert_close(model(x, edges, None, embedding_net(x)), logits)
        # given, it is used: another embedding gives other logits
        assert not torch.allclose(model(x, edges, None, torch.zeros(300, 3)), logits)
    assert shares_embedding(model, embedding_net)
    other = EmbeddingNet(4, 16, 2, 3)
    assert not shares_embedding(model, other)  # other weights: the GNN computes its own
    assert not shares_embedding(InteractionGNN(4, 16, 2), embedding_net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    # rebuilt from its TorchScript with this code's classes: the same function
    rebuilt = rebuild_embedded_gnn(scripted, {"in_features": 4, "hidden": 16, "n_layers": 2, "out_dim": 3})
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x, edges), logits, atol=1e-5, rtol=1e-5)
    graph = HitGraph.from_features(x)
    graph.edges = edges
    graph.embedding = torch.zeros(300, 3)  # not the GNN's own embedding: must not be read
    stage = GNN(scripted)
    assert not stage.share_embedding
    torch.testing.assert_close(torch.logit(stage(graph).edge_scores), logits, atol=1e-4, rtol=1e-4)
    stage.share_embedding = True
    assert not torch.allclose(torch.logit(stage(graph).edge_scores), logits, atol=1e-3)


def test_shipped_gnn_runs_this_code_and_shares_the_embedding() -> None:
    """The shipped gnn.pt is scripted from this code's classes (fast Tanh, shared embedding): a
    re-script of it, as ``rescript_gnn`` writes one, scores a real-size graph the same."""
    from trackflow.pipeline.training.gnn import rebuild_embedded_gnn

    pipeline = Pipeline.load(threads=1)
    assert pipeline.stages["gnn"].share_embedding
    manifest = read_manifest(shipped_models_dir())
    shipped = pipeline.stages["gnn"].model
    rebuilt = rebuild_embedded_gnn(shipped, dict(manifest.stages["embedding"].model["kwargs"]))
    torch.manual_seed(6)
    x = _hit_features(400)[:, :4]
    edges = torch.randint(0, 400, (2, 3000))
    scores = torch.rand(3000)
    # since issue 29's seventh round the shipped GNN also reads each edge's triplet agreement,
    # which the stage computes with the filter's scales
    assert shipped.uses_triplet_inputs
    assert pipeline.stages["gnn"].triplets is pipeline.stages["filter"].triplets is not None
    inputs = torch.cat([scores[:, None], torch.rand(3000, 4)], 1)
    with torch.inference_mode():
        torch.testing.assert_close(shipped(x, edges, inputs), rebuilt(x, edges, inputs), atol=1e-5, rtol=1e-5)
        with pytest.raises(Exception, match="triplet agreement"):
            shipped(x, edges, scores)
    assert "def forward" in shipped.code and "embedding" in shipped.code


def test_rescript_gnn_rewrites_a_model_directory_with_the_same_function(tmp_path: Path) -> None:
    """rescript_gnn on a copy of the shipped models: a new gnn.pt, its sha256 in the manifest, the
    directory loads (checked), and the GNN scores a graph as before."""
    import json
    import shutil

    from trackflow.pipeline import model_files
    from trackflow.pipeline.training.gnn import rescript_gnn

    copy = tmp_path / "models"
    shutil.copytree(shipped_models_dir(), copy)
    before = Pipeline.load(copy, threads=1).stages["gnn"].model
    rescript_gnn(copy)
    manifest = read_manifest(copy)
    model_files.verify(manifest)
    after = Pipeline.load(copy, threads=1)
    assert after.stages["gnn"].share_embedding
    torch.manual_seed(7)
    x = _hit_features(300)[:, :4]
    edges = torch.randint(0, 300, (2, 2000))
    scores = torch.rand(2000, 5)  # the filter's score and the triplet agreement
    with torch.inference_mode():
        torch.testing.assert_close(after.stages["gnn"].model(x, edges, scores), before(x, edges, scores))
    # every other stage and setting is as it was
    shipped = read_manifest(shipped_models_dir())
    for name in ("embedding", "filter"):
        assert manifest.stages[name].sha256 == shipped.stages[name].sha256
    assert manifest.stages["gnn"].config == shipped.stages["gnn"].config
    # a GNN shipped as a state dict (a plain InteractionGNN) is not an EmbeddedGNN to re-script
    bad = tmp_path / "bad"
    shutil.copytree(copy, bad)
    raw = json.loads((bad / "manifest.json").read_text())
    raw["stages"]["gnn"].update(kind="state_dict", model={"class": "InteractionGNN", "kwargs": {}})
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="TorchScript EmbeddedGNN"):
        rescript_gnn(bad)


# ---------------------------------------------------------------------------- stages
def test_filter_in_chunks_equals_filter_at_once() -> None:
    torch.manual_seed(2)
    graph = HitGraph.from_features(torch.randn(500, 3))
    graph.edges = torch.randint(0, 500, (2, 5000))
    model = FilterNet(3, 32, 2)
    whole = EdgeFilter(model, FilterConfig(cut=0.5, chunk_size=10**6))(pickle.loads(pickle.dumps(graph)))
    chunked = EdgeFilter(model, FilterConfig(cut=0.5, chunk_size=333))(graph)
    assert torch.equal(whole.edges, chunked.edges)
    torch.testing.assert_close(whole.edge_scores, chunked.edge_scores)
    assert (chunked.edge_scores > 0.5).all()
    assert 0 < chunked.counts["edges_filter"] < 5000


def test_gnn_stage_scores_every_edge() -> None:
    graph = HitGraph.from_features(torch.randn(100, 3))
    graph.edges = torch.randint(0, 100, (2, 700))
    graph = GNN(InteractionGNN(3, 16))(graph)
    assert graph.edge_scores.shape == (700,)
    assert ((graph.edge_scores >= 0) & (graph.edge_scores <= 1)).all()
    assert graph.counts["edges_gnn"] == int((graph.edge_scores > 0.5).sum())


def test_hitgraph_pickles_and_moves() -> None:
    graph = HitGraph.from_features(np.ones((5, 3)), event_id=7, hit_ids=np.arange(10, 15))
    graph.timings["embedding"] = 0.1
    clone = pickle.loads(pickle.dumps(graph))
    assert clone.event_id == 7 and torch.equal(clone.features, graph.features)
    assert clone.hit_ids.tolist() == [10, 11, 12, 13, 14] and clone.counts["hits"] == 5
    moved = graph.to("cpu")
    moved.timings["filter"] = 1.0
    assert "filter" not in graph.timings  # a copy, not the same dicts


# ---------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("device", DEVICES)
def test_pipeline_labels_every_hit(real_event: Event, device: str) -> None:
    pipeline = small_pipeline(device)
    tracks = pipeline(real_event)
    assert tracks.event_id == real_event.event_id
    assert np.array_equal(tracks.hit_ids, real_event.hits["hit_id"].to_numpy())
    assert tracks.track_labels.shape == (2000,)
    assert set(tracks.timings) == set(STAGE_NAMES)
    counts = tracks.counts
    assert counts["hits"] == 2000
    assert counts["edges_graph"] > 1000  # the radius gives a few edges per hit
    assert counts["edges_filter"] <= counts["edges_graph"]
    assert counts["edges_gnn"] <= counts["edges_filter"]
    assert counts["tracks"] == tracks.n_tracks
    frame = tracks.to_frame()
    assert list(frame.columns) == ["event_id", "hit_id", "track_id"]
    assert frame["hit_id"].is_unique and len(frame) == 2000
    assert all(dtype == np.int64 for dtype in frame.dtypes)


def test_staged_run_equals_fused_run(real_event: Event) -> None:
    pipeline = small_pipeline()
    fused = pipeline(real_event)
    graph = pipeline.prepare(real_event)
    for name in pipeline.stage_names:
        # staged mode moves the graph between workers: pickle it between stages
        graph = pickle.loads(pickle.dumps(pipeline.run_stage(name, graph)))
    staged = pipeline.finish(graph)
    assert np.array_equal(staged.track_labels, fused.track_labels)
    assert staged.counts == fused.counts


def test_prepare_never_needs_truth(real_event: Event) -> None:
    truthy = Event(
        real_event.event_id,
        real_event.hits,
        truth=pd.DataFrame({"hit_id": real_event.hits["hit_id"], "particle_id": 1}),
    )
    pipeline = small_pipeline()
    assert torch.equal(pipeline.prepare(truthy).features, pipeline.prepare(real_event).features)


def test_torchscript_models_give_the_same_tracks(real_event: Event) -> None:
    eager = small_pipeline()
    stages = eager.stages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = Pipeline.from_modules(
            torch.jit.script(stages["embedding"].model),
            torch.jit.script(stages["filter"].model),
            torch.jit.script(stages["gnn"].model),
            graph_building=stages["graph_building"].config,
        )
    assert np.array_equal(scripted(real_event).track_labels, eager(real_event).track_labels)


def test_run_batch(real_event: Event) -> None:
    halves = [
        Event(1, real_event.hits.iloc[:1000].reset_index(drop=True)),
        Event(2, real_event.hits.iloc[1000:].reset_index(drop=True)),
    ]
    results = small_pipeline().run_batch(halves)
    assert [r.event_id for r in results] == [1, 2]
    assert [len(r.hit_ids) for r in results] == [1000, 1000]


def test_unknown_stage_and_device_are_refused(real_event: Event) -> None:
    pipeline = small_pipeline()
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.run_stage("tracking", pipeline.prepare(real_event))
    with pytest.raises(ConfigError, match="device"):
        small_pipeline(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            small_pipeline(device="cuda")


def test_set_threads_sets_every_pool() -> None:
    import faiss

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
        with pytest.raises(ConfigError, match="threads"):
            set_threads(0)
    finally:
        set_threads(before)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_batch_equals_events_one_by_one(real_event: Event, device: str) -> None:
    hits = real_event.hits
    events = [
        Event(11, hits.iloc[:700].reset_index(drop=True)),
        Event(12, hits.iloc[700:1500].reset_index(drop=True)),
        Event(13, hits.iloc[1500:].reset_index(drop=True)),
    ]
    pipeline = small_pipeline(device)
    alone = pipeline.run_batch(events)
    fused = pipeline.run_batch(events, fuse=True)
    assert [t.event_id for t in fused] == [11, 12, 13]
    for one, many in zip(alone, fused, strict=True):
        assert np.array_equal(one.hit_ids, many.hit_ids)
        assert one.counts == many.counts
        # the same grouping of hits (label values may differ)
        pairs = np.unique(np.stack([one.track_labels, many.track_labels]), axis=1).shape[1]
        assert pairs == one.n_tracks == many.n_tracks
        assert set(many.timings) == set(STAGE_NAMES)
