"""Training: a tiny run writes a loadable, checksummed model directory; losses go down; cuts and
truth edges follow their definitions; the shipped models load and label every hit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trackflow.errors import ConfigError
from trackflow.events import Event, list_events, with_derived
from trackflow.files import sha256_file
from trackflow.pipeline import model_files
from trackflow.pipeline.features import FeatureConfig
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.layer_map import LayerMap, helix_dphi
from trackflow.pipeline.pipeline import Pipeline
from trackflow.pipeline.training import TrainingConfig, train
from trackflow.pipeline.training.data import load_truth_events, prepare_event, truth_edges
from trackflow.pipeline.training.edges import choose_cut_for_efficiency, choose_cut_for_purity, target_weights
from trackflow.pipeline.training.embedding import EmbeddingTrainingConfig, train_embedding
from trackflow.pipeline.training.filter import FilterTrainingConfig
from trackflow.pipeline.training.gnn import GNNTrainingConfig


def tiny_config(data: Path, out: Path, **options: object) -> TrainingConfig:
    """One epoch per stage, small models and few steps: seconds on one core."""
    return TrainingConfig(
        **options,  # type: ignore[arg-type]
        data_dir=data,
        out_dir=out,
        seed=3,
        threads=1,
        max_neighbours=16,
        embedding=EmbeddingTrainingConfig(
            hidden=32,
            n_layers=2,
            out_dim=4,
            epochs=1,
            steps_per_epoch=10,
            events_per_epoch=2,
            positives_per_step=256,
            hard_negatives_per_step=256,
            random_negatives_per_step=128,
        ),
        filter=FilterTrainingConfig(hidden=32, n_layers=2, epochs=1, steps_per_epoch=10, batch_size=512),
        gnn=GNNTrainingConfig(hidden=16, n_iterations=2, epochs=1, steps_per_epoch=4),
    )


# ------------------------------------------------------------------------- pure definitions
def test_truth_edges_join_consecutive_hits_outwards_from_the_vertex() -> None:
    # particle 7: hits at distances 30, 10, 20 mm from its vertex (0, 0, 5); particle 9: one hit;
    # hit 4 is noise
    hits = with_derived(
        pd.DataFrame(
            {
                "hit_id": [1, 2, 3, 4, 5],
                "x": [30.0, 10.0, 20.0, 50.0, 15.0],
                "y": [0.0] * 5,
                "z": [5.0, 5.0, 5.0, 0.0, 0.0],
                "volume_id": [8] * 5,
                "layer_id": [2] * 5,
                "module_id": [1] * 5,
            }
        )
    )
    truth = pd.DataFrame(
        {
            "hit_id": [1, 2, 3, 4, 5],
            "particle_id": [7, 7, 7, 0, 9],
            "tx": hits.x,
            "ty": hits.y,
            "tz": hits.z,
            "tpx": 1.0,
            "tpy": 0.0,
            "tpz": 0.0,
            "weight": 0.0,
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": [7, 9],
            "vx": [0.0, 0.0],
            "vy": [0.0, 3.0],  # 9: a secondary, produced 3 mm from the beam line
            "vz": [5.0, 0.0],
            "px": [2.0, 0.3],
            "py": [0.0, 0.0],
            "pz": [0.0, 0.0],
            "q": [1, -1],
            "nhits": [3, 1],
        }
    )
    event = Event(1, hits, truth=truth, particles=particles)
    edges, pt = truth_edges(event)
    assert edges.T.tolist() == [[1, 2], [2, 0]]  # rows: 10 mm -> 20 mm -> 30 mm
    assert np.allclose(pt, 2.0)
    prepared = prepare_event(event, FeatureConfig())
    assert prepared.particle_id.tolist() == [7, 7, 7, 0, 9]
    assert prepared.truth_edges_above(2.5).shape == (2, 0)
    assert prepared.same_particle(np.array([[0, 3, 4], [1, 3, 0]])).tolist() == [True, False, False]
    assert prepared.vertex_r is not None
    assert prepared.vertex_r.tolist() == [0.0, 0.0, 0.0, 0.0, 3.0]  # noise 0, the secondary 3 mm


def test_targets_of_secondaries_weigh_displaced_weight_times_more() -> None:
    y = np.array([True, True, True, True, False])
    target = np.array([True, True, True, False, False])
    pt = np.array([2.0, 2.0, 0.3, 2.0, 0.0])
    displaced = np.array([False, True, True, True, False])
    weights = target_weights(y, target, pt, 0.5, 0.3, 0.7, displaced, 4.0)
    # a primary target 1, a secondary's 4, a slow secondary's 0.3 x 4, a non-target true edge 0, a fake 0.7
    assert weights.tolist() == pytest.approx([1.0, 4.0, 1.2, 0.0, 0.7])
    assert target_weights(y, target, pt, 0.5, 0.3, 0.7).tolist() == pytest.approx([1.0, 1.0, 0.3, 0.0, 0.7])
    with pytest.raises(ConfigError, match="displaced_weight"):
        GNNTrainingConfig(displaced_weight=-1.0)


def test_filter_cut_keeps_the_target_fraction_of_truth_edges() -> None:
    rng = np.random.default_rng(0)
    scores = [rng.uniform(size=1000), rng.uniform(size=500)]
    flags = [rng.uniform(size=1000) < 0.3, rng.uniform(size=500) < 0.3]
    cut = choose_cut_for_efficiency(scores, flags, 0.97)
    kept = sum(int((s[f] > cut).sum()) for s, f in zip(scores, flags, strict=True))
    total = sum(int(f.sum()) for f in flags)
    assert kept / total >= 0.97
    # the next larger distinct truth score as cut would drop below the target
    truth_scores = np.sort(np.concatenate([s[f] for s, f in zip(scores, flags, strict=True)]))
    higher = truth_scores[truth_scores > cut][0]
    assert (truth_scores > higher).mean() < 0.97


def test_gnn_cut_is_the_loosest_with_the_target_purity() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 1, 0, 1, 0, 0], dtype=bool)
    cut = choose_cut_for_purity(scores, y, 0.8)
    kept = scores > cut
    assert y[kept].mean() >= 0.8
    assert kept.sum() == 5  # top 5: 4 true of 5 = 0.8; top 6 would be 4/6
    assert choose_cut_for_purity(scores, np.zeros(7, bool), 0.8) == 0.5  # no cut reaches it


# ------------------------------------------------------------------------- on simulated events
@pytest.mark.sim
def test_embedding_loss_decreases(tiny_events: Path) -> None:
    features = FeatureConfig(names=("r", "cos_phi", "sin_phi", "z"))
    events = load_truth_events(tiny_events, features, max_events=2)
    config = EmbeddingTrainingConfig(
        hidden=32,
        n_layers=2,
        out_dim=4,
        epochs=1,
        steps_per_epoch=40,
        events_per_epoch=2,
        positives_per_step=512,
        hard_negatives_per_step=512,
        random_negatives_per_step=256,
    )
    torch.set_num_threads(1)
    _, losses = train_embedding(events, config, seed=1)
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])


@pytest.mark.sim
@pytest.mark.parametrize("graph_method", ["layer_map", "radius"])
def test_tiny_training_writes_a_checked_manifest_and_a_pipeline_that_runs(
    tiny_events: Path, tmp_path: Path, graph_method: str
) -> None:
    out = train(tiny_config(tiny_events, tmp_path / "models", graph_method=graph_method))
    manifest = json.loads((out / "manifest.json").read_text())
    files = {name: stage for name, stage in manifest["stages"].items() if "file" in stage}
    assert set(files) == {"embedding", "filter", "gnn"}
    for stage in files.values():
        assert sha256_file(out / stage["file"]) == stage["sha256"]
        if stage["kind"] == "state_dict":  # plain tensors only: loadable with weights_only=True
            state = torch.load(out / stage["file"], weights_only=True)
            assert all(torch.is_tensor(v) for v in state.values())
        else:  # TorchScript: code and tensors, no Python pickle
            assert stage["kind"] == "torchscript"
            assert isinstance(model_files.load_torchscript(out / stage["file"]), torch.jit.ScriptModule)
    config = manifest["stages"]
    graph = config["graph_building"]["config"]
    assert graph["method"] == graph_method
    if graph_method == "radius":
        assert graph["radius"] > 0
        assert graph["max_neighbours"] == 16
    else:  # the map of the training events: pixel-barrel neighbours at least, with real cuts
        pairs = {(row[0], row[1]): row for row in graph["layer_map"]["pairs"]}
        assert (802, 804) in pairs
        assert 0 < pairs[(802, 804)][2] < 1.0  # dphi_max, rad
        assert pairs[(802, 804)][3] <= -200.0 and pairs[(802, 804)][4] >= 200.0  # z0 cover, mm
    assert manifest["metrics"]["graph_building"]["efficiency"] > 0.5
    assert 0 <= config["filter"]["config"]["cut"] < 1
    assert config["labelling"]["config"]["cut"] == config["gnn"]["config"]["cut"]
    training = manifest["training"]
    all_ids = [ref.event_id for ref in list_events(tiny_events)]
    assert sorted(training["train_event_ids"] + training["val_event_ids"]) == all_ids
    assert not set(training["train_event_ids"]) & set(training["val_event_ids"])
    assert {"graph_building", "filter", "gnn", "tracks"} <= set(manifest["metrics"])

    pipeline = Pipeline.load(out)
    event = list_events(tiny_events)[0].load(("hits",))
    tracks = pipeline(event)
    assert len(tracks.track_labels) == event.n_hits
    frame = tracks.to_frame()
    assert frame["hit_id"].is_unique and set(frame["hit_id"]) == set(event.hits["hit_id"])


@pytest.mark.sim
def test_filter_pair_features_are_recorded_and_the_models_run(tiny_events: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    # (--filter-pair-features on the command line)
    out = train(tiny_config(tiny_events, tmp_path / "models", filter_pair_features=True))
    manifest = model_files.read_manifest(out)
    kwargs = manifest.stages["filter"].model["kwargs"]
    assert kwargs["pair_features"] is True
    assert (kwargs["r_scale"], kwargs["z_scale"]) == (
        manifest.features["scale"]["r"],
        manifest.features["scale"]["z"],
    )
    assert model_files.load_model(manifest, "filter").pair_features
    pipeline = Pipeline.load(out)
    event = list_events(tiny_events)[0].load(("hits",))
    assert len(pipeline(event).track_labels) == event.n_hits
    # the pair features read r, cos_phi, sin_phi, z from the first columns: other features refused
    other = tiny_config(tiny_events, tmp_path / "other")
    other.features = ("r", "phi", "z")
    other.filter = replace(other.filter, pair_features=True)
    with pytest.raises(ConfigError, match="pair_features"):
        train(other)


@pytest.mark.sim
def test_filter_from_keeps_embedding_graph_and_filter_and_trains_a_pair_feature_gnn(
    tiny_events: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    first = train(tiny_config(tiny_events, tmp_path / "first"))
    config = tiny_config(tiny_events, tmp_path / "second")
    config.filter_from = first
    config.gnn_uses_embedding = False
    config.gnn = replace(config.gnn, pair_features=True)
    second = train(config)
    old, new = model_files.read_manifest(first), model_files.read_manifest(second)
    for name in ("embedding", "filter"):
        assert new.stages[name].sha256 == old.stages[name].sha256
    assert new.stages["graph_building"].config == old.stages["graph_building"].config
    assert new.stages["filter"].config["cut"] == old.stages["filter"].config["cut"]
    assert new.training["filter_reused_from"]["sha256"] == old.stages["filter"].sha256
    gnn = model_files.load_model(new, "gnn")
    assert gnn.pair_features and new.stages["gnn"].model["kwargs"]["pair_features"] is True
    event = list_events(tiny_events)[0].load(("hits",))
    assert len(Pipeline.load(second)(event).track_labels) == event.n_hits
    with pytest.raises(ConfigError, match="filter-from"):
        TrainingConfig(
            data_dir=tiny_events, out_dir=tmp_path / "x", filter_from=first, embedding_from=tmp_path
        )


def _scored_graph(pipeline: Pipeline, event: Event) -> HitGraph:
    graph = pipeline.prepare(event)
    for name in ("embedding", "graph_building", "filter", "gnn"):
        graph = pipeline.run_stage(name, graph)
    return graph


@pytest.mark.sim
def test_gnn_from_warm_starts_the_gnn_and_may_add_iterations(tiny_events: Path, tmp_path: Path) -> None:
    first = train(tiny_config(tiny_events, tmp_path / "first"))
    event = list_events(tiny_events)[0].load(("hits",))
    # no GNN steps: the warm-started GNN is the first one, edge for edge
    copied = train(tiny_config(tiny_events, tmp_path / "same", gnn_from=first, epochs_gnn=0))
    old, new = model_files.read_manifest(first), model_files.read_manifest(copied)
    assert new.training["gnn_warm_start_from"]["sha256"] == old.stages["gnn"].sha256
    assert new.stages["filter"].sha256 == old.stages["filter"].sha256
    graph_old, graph_new = (_scored_graph(Pipeline.load(d), event) for d in (first, copied))
    assert torch.equal(graph_old.edges, graph_new.edges)
    torch.testing.assert_close(graph_new.edge_scores, graph_old.edge_scores)
    # shared message-passing weights: the same network can run (and train) more iterations
    more = train(tiny_config(tiny_events, tmp_path / "more", gnn_from=first, gnn_iterations=3))
    deeper = model_files.load_model(model_files.read_manifest(more), "gnn")
    assert deeper.gnn.n_iterations == 3
    # without --gnn-iterations a warm start keeps the source's (3 here, not the config's 2)
    kept = train(tiny_config(tiny_events, tmp_path / "kept", gnn_from=more, epochs_gnn=0))
    assert model_files.load_model(model_files.read_manifest(kept), "gnn").gnn.n_iterations == 3
    assert len(Pipeline.load(more)(event).track_labels) == event.n_hits
    # twice as wide, no GNN steps: the same scores from a network of twice the width
    wider = train(tiny_config(tiny_events, tmp_path / "wider", gnn_from=first, gnn_hidden=32, epochs_gnn=0))
    assert model_files.load_model(model_files.read_manifest(wider), "gnn").gnn.hidden == 32
    torch.testing.assert_close(
        _scored_graph(Pipeline.load(wider), event).edge_scores, graph_old.edge_scores, atol=0.02, rtol=0
    )
    with pytest.raises(ConfigError, match="multiple"):
        train(tiny_config(tiny_events, tmp_path / "odd", gnn_from=first, gnn_hidden=24, epochs_gnn=0))
    # another filter (same embedding) under the warm-started GNN: that filter's graphs, this GNN
    config = tiny_config(tiny_events, tmp_path / "refiltered", embedding_from=first, epochs_gnn=0)
    config.filter.steps_per_epoch = 12  # not the first run's filter
    refiltered = train(config)
    mixed = train(
        tiny_config(tiny_events, tmp_path / "mixed", gnn_from=first, filter_from=refiltered, epochs_gnn=0)
    )
    manifest = model_files.read_manifest(mixed)
    assert manifest.stages["filter"].sha256 == model_files.read_manifest(refiltered).stages["filter"].sha256
    assert manifest.training["gnn_warm_start_from"]["sha256"] == old.stages["gnn"].sha256
    assert manifest.stages["filter"].sha256 != old.stages["filter"].sha256
    # ... but not a GNN that read another embedding; nor a differently shaped GNN
    other = tmp_path / "other-embedding"
    shutil.copytree(first, other)
    text = (other / "manifest.json").read_text()
    (other / "manifest.json").write_text(text.replace(old.stages["embedding"].sha256, "0" * 64))
    with pytest.raises(ConfigError, match="another embedding"):
        train(tiny_config(tiny_events, tmp_path / "x", gnn_from=other, filter_from=refiltered, epochs_gnn=0))
    from trackflow.pipeline.gnn import InteractionGNN
    from trackflow.pipeline.training.gnn import _warm_start

    with pytest.raises(ConfigError, match="warm-start"):
        _warm_start(InteractionGNN(in_features=7, hidden=8), model_files.load_model(old, "gnn"))


@pytest.mark.sim
def test_a_gnn_given_triplet_inputs_starts_as_the_gnn_it_came_from(tiny_events: Path, tmp_path: Path) -> None:
    """--gnn-triplet-inputs from a GNN without them: the reused filter keeps its triplet pruning,
    the new inputs start at weight 0 (the same scores), the model reads them at inference, and a
    later warm start keeps them."""
    first = train(tiny_config(tiny_events, tmp_path / "first", triplet_cut=9.0))
    event = list_events(tiny_events)[0].load(("hits",))
    tripled = train(
        tiny_config(tiny_events, tmp_path / "tripled", gnn_from=first, gnn_triplet_inputs=True, epochs_gnn=0)
    )
    old, new = model_files.read_manifest(first), model_files.read_manifest(tripled)
    assert new.stages["filter"].config["triplets"] == old.stages["filter"].config["triplets"]
    pipeline = Pipeline.load(tripled)
    gnn = pipeline.stages["gnn"]
    assert gnn.uses_triplet_inputs and gnn.triplets is pipeline.stages["filter"].triplets
    graph_old, graph_new = (_scored_graph(Pipeline.load(d), event) for d in (first, tripled))
    assert torch.equal(graph_old.edges, graph_new.edges)
    torch.testing.assert_close(graph_new.edge_scores, graph_old.edge_scores, atol=1e-5, rtol=1e-5)
    # trained further, it keeps reading them
    again = train(tiny_config(tiny_events, tmp_path / "again", gnn_from=tripled))
    assert model_files.load_model(model_files.read_manifest(again), "gnn").gnn.uses_triplet_inputs
    # without triplet pruning there is no agreement to read
    with pytest.raises(ConfigError, match="triplet"):
        train(tiny_config(tiny_events, tmp_path / "none", gnn_triplet_inputs=True))


@pytest.mark.parametrize("pair_features", [False, True])
def test_a_widened_gnn_computes_what_the_narrow_one_did(pair_features: bool) -> None:
    from trackflow.pipeline.gnn import InteractionGNN
    from trackflow.pipeline.training.gnn import _warm_start, widen_state

    torch.manual_seed(3)
    narrow = InteractionGNN(
        in_features=5, hidden=8, n_iterations=3, pair_features=pair_features, edge_score_input=pair_features
    )
    for p in narrow.parameters():  # trained-looking weights, not the initial ones
        p.data.add_(0.3 * torch.randn_like(p))
    features = torch.rand(40, 5)
    edges = torch.randint(0, 40, (2, 120))
    scores = torch.rand(120) if pair_features else None
    wide = InteractionGNN(
        in_features=5, hidden=24, n_iterations=3, pair_features=pair_features, edge_score_input=pair_features
    )
    with torch.no_grad():
        expected = narrow(features, edges, scores)
        wide.load_state_dict(widen_state(narrow.state_dict(), 8, 24, noise=0.0))
        torch.testing.assert_close(wide(features, edges, scores), expected, rtol=1e-4, atol=1e-5)
        # the warm start's copies differ (else they would train as one), the output barely
        _warm_start(wide, narrow, torch.Generator().manual_seed(0))
        w = wide.edge_network[0].weight
        assert not torch.equal(w[:8], w[8:16])
        assert (wide(features, edges, scores) - expected).abs().max() < 0.05
    with pytest.raises(ConfigError, match="warm-start"):
        _warm_start(
            InteractionGNN(
                in_features=5,
                hidden=12,
                n_iterations=3,
                pair_features=pair_features,
                edge_score_input=pair_features,
            ),
            narrow,
        )


@pytest.mark.sim
def test_a_changed_weight_file_is_refused(tiny_events: Path, tmp_path: Path) -> None:
    from trackflow.errors import ModelFileError

    out = train(tiny_config(tiny_events, tmp_path / "models"))
    with (out / "gnn.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match="sha256"):
        Pipeline.load(out)


# ------------------------------------------------------------------------- shipped models
def test_shipped_models_load_from_the_manifest() -> None:
    directory = model_files.shipped_models_dir()
    if not (directory / "manifest.json").is_file():
        pytest.fail(f"no shipped models in {directory}")
    manifest = model_files.read_manifest(directory)
    model_files.verify(manifest)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    assert size <= 20 * 2**20
    pipeline = Pipeline.load()
    assert pipeline.models_dir == directory


@pytest.mark.sim
@pytest.mark.slow
def test_shipped_models_find_tracks_on_a_small_simulated_event(tiny_events: Path) -> None:
    from trackflow.metrics import score_event

    pipeline = Pipeline.load()
    event = list_events(tiny_events)[2].load(("hits", "truth", "particles"))
    tracks = pipeline(event.hits_only())
    assert len(tracks.track_labels) == event.n_hits
    metrics = score_event(tracks.to_frame(), event.truth, event.particles)
    # floors well below what the shipped models give (efficiency 0.86, fake rate 0.012 on the
    # held-out data/test; 0.75 and 0.008 on pileup-100 gun events with this 55 mm vertex spread):
    # they catch models that lost their training, not small drifts
    assert metrics.efficiency > 0.5
    assert metrics.fake_rate < 0.1


@pytest.mark.sim
def test_triplet_pruning_and_consecutive_targets_are_learned_and_shipped_in_the_manifest(
    tiny_events: Path, tmp_path: Path
) -> None:
    out = train(tiny_config(tiny_events, tmp_path / "triplets", triplet_cut=25.0, gnn_targets="consecutive",
                            gnn_fake_weight=0.5, filter_cut=0.1))  # fmt: skip
    manifest = model_files.read_manifest(out)
    config = manifest.stages["filter"].config
    assert config["cut"] == 0.1
    assert set(config["triplets"]["chi2_cut"]) == {"8", "13", "17"}
    assert all(cut == 25.0 for cut in config["triplets"]["chi2_cut"].values())
    assert manifest.training["config"]["gnn"]["targets"] == "consecutive"
    assert not (out / "checkpoints").exists()  # a finished run leaves no checkpoint behind
    pipeline = Pipeline.load(out)
    assert pipeline.stages["filter"].triplets is not None
    event = list_events(tiny_events)[0].load(("hits",))
    graph = pipeline.prepare(event)
    for name in ("embedding", "graph_building", "filter"):
        graph = pipeline.run_stage(name, graph)
    assert graph.counts["edges_filter"] <= graph.counts["edges_filter_mlp"]
    assert len(pipeline(event).track_labels) == event.n_hits
    with pytest.raises(ConfigError, match="targets"):
        TrainingConfig(data_dir=tiny_events, out_dir=tmp_path / "x", gnn_targets="neighbours")


def test_retrain_filter_learns_a_new_capped_map_and_filter_under_the_warm_started_gnn(
    tiny_events: Path, tmp_path: Path
) -> None:
    first = train(tiny_config(tiny_events, tmp_path / "first"))
    old = model_files.read_manifest(first)
    slow_map = {"layer_map_pt_min": 0.5, "layer_map_field_factor": 1.0, "layer_map_margin": 0.0}
    config = tiny_config(
        tiny_events,
        tmp_path / "slow",
        gnn_from=first,
        retrain_filter=True,
        epochs_gnn=1,
        filter_hidden=16,
        **slow_map,
    )
    assert config.embedding_from == first and config.filter_from is None
    out = train(config)
    new = model_files.read_manifest(out)
    # the same embedding; a new filter (its own width) and a new, capped map; the GNN warm-started
    assert new.stages["embedding"].sha256 == old.stages["embedding"].sha256
    assert new.stages["filter"].model["kwargs"]["hidden"] == 16
    assert new.training["gnn_warm_start_from"]["sha256"] == old.stages["gnn"].sha256
    learned = LayerMap.from_dict(new.stages["graph_building"].config["layer_map"])
    before = LayerMap.from_dict(old.stages["graph_building"].config["layer_map"])
    assert len(learned) > 0 and len(before) > 0
    # no window wider than a 0.5 GeV track bends across the whole tracker (r 0 -> 1 m), or the floor
    assert (
        learned.dphi_max <= max(float(helix_dphi(np.array([0.0]), np.array([1000.0]), 0.5, 2.0)[0]), 0.01)
    ).all()
    event = list_events(tiny_events)[0].load(("hits",))
    assert len(Pipeline.load(out)(event).track_labels) == event.n_hits
    # the first filter kept, on the new map: that map's graph, that filter, the GNN warm-started
    hybrid = model_files.read_manifest(
        train(
            tiny_config(
                tiny_events,
                tmp_path / "hybrid",
                gnn_from=out,
                filter_from=first,
                graph_from=out,
                epochs_gnn=0,
            )
        )
    )
    assert hybrid.stages["graph_building"].config == new.stages["graph_building"].config
    assert hybrid.stages["filter"].sha256 == old.stages["filter"].sha256
    assert hybrid.training["gnn_warm_start_from"]["sha256"] == new.stages["gnn"].sha256
    with pytest.raises(ConfigError, match="graph_from"):
        TrainingConfig(data_dir=tiny_events, out_dir=tmp_path / "x", graph_from=out)
    with pytest.raises(ConfigError, match="retrain_filter"):
        TrainingConfig(data_dir=tiny_events, out_dir=tmp_path / "x", gnn_from=first, filter_from=first,
                       retrain_filter=True)  # fmt: skip


@pytest.mark.sim
def test_an_interrupted_gnn_training_resumes_from_its_checkpoint_and_ends_where_a_whole_run_does(
    tiny_events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trackflow.pipeline.training import loop
    from trackflow.pipeline.training.edges import EdgeSet
    from trackflow.pipeline.training.gnn import train_gnn

    events = load_truth_events(tiny_events, FeatureConfig())
    rng = np.random.default_rng(0)
    sets = []
    for event in events:  # the truth edges and as many random pairs
        fakes = rng.integers(0, event.n_hits, size=event.truth_edges.shape)
        sets.append(EdgeSet.label(event, np.concatenate([event.truth_edges, fakes], axis=1)))
    phis = [event.phi for event in events]
    config = GNNTrainingConfig(hidden=8, n_iterations=2, epochs=3, steps_per_epoch=3, pair_features=False,
                               edge_score_input=False, targets="consecutive")  # fmt: skip
    whole, whole_losses = train_gnn(sets, phis, config, seed=4, checkpoint=tmp_path / "whole.pt")

    class Interrupted(Exception):
        pass

    real_end_epoch = loop.Optimisation.end_epoch

    def end_epoch_then_stop(self: loop.Optimisation, epoch: int, epochs: int) -> None:
        real_end_epoch(self, epoch, epochs)
        if epoch == 1:
            raise Interrupted  # as a kill after the second epoch's checkpoint

    monkeypatch.setattr(loop.Optimisation, "end_epoch", end_epoch_then_stop)
    with pytest.raises(Interrupted):
        train_gnn(sets, phis, config, seed=4, checkpoint=tmp_path / "resumed.pt")
    monkeypatch.setattr(loop.Optimisation, "end_epoch", real_end_epoch)
    resumed, resumed_losses = train_gnn(sets, phis, config, seed=4, checkpoint=tmp_path / "resumed.pt")
    assert resumed_losses == pytest.approx(whole_losses)
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value)
    # a checkpoint of another run (another seed) is not resumed: that run starts afresh
    _, other_losses = train_gnn(sets, phis, config, seed=5, checkpoint=tmp_path / "resumed.pt")
    assert len(other_losses) == config.epochs * config.steps_per_epoch
