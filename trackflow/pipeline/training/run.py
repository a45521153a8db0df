"""``train(TrainingConfig) -> Path``: embedding, graph building (layer map or radius), filter, GNN,
cuts, manifest."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import trackflow.config
from trackflow.errors import ConfigError, EventFileError
from trackflow.events import list_events
from trackflow.events.acts_setup import B_FIELD_T
from trackflow.files import json_safe
from trackflow.metrics import pooled_counts, score_event, track_rates
from trackflow.pipeline import model_files
from trackflow.pipeline.features import FeatureConfig
from trackflow.pipeline.graph_building import METHODS, build_edges
from trackflow.pipeline.labelling import LabellingConfig, track_labels
from trackflow.pipeline.layer_map import LayerMap, layer_map_edges
from trackflow.pipeline.threads import set_threads
from trackflow.pipeline.training.data import TruthEvent, load_truth_events, prepare_event
from trackflow.pipeline.training.edges import (
    EdgeSet,
    choose_cut_for_efficiency,
    choose_cut_for_purity,
    found_truth,
    truth_edge_keys,
    undirected_keys,
)
from trackflow.pipeline.training.embedding import EmbeddingTrainingConfig, embed, train_embedding
from trackflow.pipeline.training.filter import FilterTrainingConfig, filter_scores, train_filter
from trackflow.pipeline.training.gnn import (
    EmbeddedGNN,
    GNNTrainingConfig,
    gnn_architecture,
    gnn_scores,
    inner_gnn,
    train_gnn,
)
from trackflow.pipeline.triplets import TripletScales

log = logging.getLogger(__name__)

#: hit features of the shipped models: r first (the walkthrough labelling orders hits by column 0)
DEFAULT_FEATURES: tuple[str, ...] = ("r", "cos_phi", "sin_phi", "z")


#: folder of ``out_dir`` holding the per-epoch checkpoints while training runs
CHECKPOINTS = "checkpoints"


def _cfg(key: str, default: Any) -> Any:
    return trackflow.config.get(f"training.{key}", default)


@dataclass
class TrainingConfig:
    """What to train on and how (CLI: ``trackflow train``).

    ``data_dir``: simulated events with truth; ``val_dir``: validation events (default: the last
    ``val_fraction`` of ``data_dir``'s events, never trained on); ``out_dir``: model directory to
    write. ``epochs_*`` override the stage configs' epochs; ``max_events``: use at most this many
    training events; ``edge_events``: at most this many of them for filter and GNN training
    (their graphs are the expensive part); ``pt_min`` (GeV): particles below it weigh less.
    Targets: graph building keeps ``graph_efficiency`` of the pT > ``target_pt`` GeV truth edges,
    the filter ``filter_efficiency`` of those the graph found; GNN edge purity ``gnn_purity``.
    ``filter_cut``: the filter's cut instead of the one chosen for ``filter_efficiency`` (or, with
    a reused filter, kept from its manifest). ``triplet_keep``: learn triplet pruning
    (:mod:`trackflow.pipeline.triplets`) from the training events' truth, each volume's cut
    keeping this fraction of the pT > 0.9 GeV truth edges; ``triplet_cut``: one cut for every
    volume instead; the GNN then trains on the pruned graphs. ``gnn_targets``: ``consecutive``
    (learn the truth edges; true edges that skip a hit weigh 0, fakes ``gnn_fake_weight``) or
    ``same_particle``. ``gnn_max_edges``: edges per training step (the phi sector's size).
    ``gnn_triplet_inputs``: the GNN also reads each edge's triplet agreement
    (:meth:`~trackflow.pipeline.triplets.TripletScales.agreement`; needs pruning). A reused filter
    keeps its triplet pruning unless ``triplet_keep`` or ``triplet_cut`` learns a new one.
    ``graph_from`` (with ``filter_from``): that directory's graph building (its layer map) under
    the kept filter. ``retrain_filter`` (with ``gnn_from``): learn a new graph and filter
    (``filter_hidden`` wide, ``filter_layers`` deep) on ``gnn_from``'s embedding and fine-tune its
    GNN on their graphs.
    ``graph_method``: ``layer_map`` (default: the detector's layer pairs, learned from the
    training events' truth with cuts from particles above ``layer_map_pt_min`` GeV at their
    ``layer_map_quantile``, accepting vertices within ``±layer_map_z0_cover`` mm; see
    :mod:`trackflow.pipeline.layer_map`; ``layer_map_margin`` widens both cuts by that fraction,
    ``layer_map_field_factor`` caps each azimuth window at that many times the bend of a
    ``layer_map_pt_min`` particle in the detector's 2 T field) or ``radius`` (embedding-space
    neighbours, radius chosen for ``graph_efficiency``, at most ``max_neighbours`` per hit).
    """

    data_dir: Path
    out_dir: Path
    val_dir: Path | None = None
    epochs_embedding: int | None = None
    epochs_filter: int | None = None
    epochs_gnn: int | None = None
    max_events: int | None = None
    edge_events: int = field(default_factory=lambda: int(_cfg("edge_events", 8)))
    val_fraction: float = 0.15
    max_val_events: int = 4
    pt_min: float = field(default_factory=lambda: float(_cfg("pt_min", 0.5)))
    seed: int = 0
    threads: int | None = None
    features: tuple[str, ...] = DEFAULT_FEATURES
    max_neighbours: int = field(default_factory=lambda: int(_cfg("max_neighbours", 32)))
    target_pt: float = 1.0
    graph_efficiency: float = 0.98
    filter_efficiency: float = 0.975
    gnn_purity: float = 0.95
    # the labelling is the best efficiency within these (the bars of issue 29; were 5 % and 2 %)
    max_fake_rate: float = 0.01
    max_duplicate_rate: float = 0.01
    walk_loose_cut: float = 0.1
    gnn_uses_embedding: bool = True
    walk_min_hits: int = 3
    embedding_from: Path | None = None
    filter_from: Path | None = None
    graph_from: Path | None = None
    gnn_from: Path | None = None
    gnn_iterations: int | None = None
    gnn_hidden: int | None = None
    gnn_learning_rate: float | None = None
    filter_pair_features: bool | None = None
    graph_method: str = field(default_factory=lambda: str(_cfg("graph_method", "layer_map")))
    layer_map_pt_min: float = 0.9
    layer_map_quantile: float = 0.995
    layer_map_z0_cover: float = 200.0
    layer_map_margin: float = 0.1
    # the layer map's windows capped at this many times the bend of a layer_map_pt_min particle
    # in the detector's field (LayerMap.from_truth's field_factor); None: no cap
    layer_map_field_factor: float | None = None
    # with gnn_from: train a new layer map and filter (on gnn_from's embedding) instead of
    # keeping gnn_from's, and fine-tune the GNN on their graphs
    retrain_filter: bool = False
    filter_hidden: int | None = None
    filter_layers: int | None = None
    filter_cut: float | None = None
    triplet_keep: float | None = None
    triplet_cut: float | None = None
    gnn_targets: str | None = None
    gnn_fake_weight: float | None = None
    gnn_displaced_weight: float | None = None
    gnn_max_edges: int | None = None
    gnn_triplet_inputs: bool = False
    embedding: EmbeddingTrainingConfig = field(default_factory=EmbeddingTrainingConfig)
    filter: FilterTrainingConfig = field(default_factory=FilterTrainingConfig)
    gnn: GNNTrainingConfig = field(default_factory=GNNTrainingConfig)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.out_dir = Path(self.out_dir)
        self.val_dir = None if self.val_dir is None else Path(self.val_dir)
        self.embedding_from = None if self.embedding_from is None else Path(self.embedding_from)
        self.filter_from = None if self.filter_from is None else Path(self.filter_from)
        self.graph_from = None if self.graph_from is None else Path(self.graph_from)
        if self.gnn_from is not None:
            # fine-tuning a GNN keeps the graphs it was trained on (same embedding and filter)
            # unless --filter-from names another filter: the GNN then adapts to that one's graphs
            self.gnn_from = Path(self.gnn_from)
            if self.retrain_filter:
                if self.filter_from is not None:
                    raise ConfigError("training: retrain_filter trains a new filter; do not give filter_from")
                if self.embedding_from is None:
                    self.embedding_from = self.gnn_from
            elif self.filter_from is None:
                self.filter_from = self.gnn_from
        if self.graph_from is not None and self.filter_from is None:
            raise ConfigError(
                "training: graph_from puts a kept filter on another graph; give filter_from (or gnn_from)"
            )
        self.reused_dir()
        self.features = tuple(self.features)
        if self.epochs_embedding is not None:
            self.embedding.epochs = int(self.epochs_embedding)
        if self.epochs_filter is not None:
            self.filter.epochs = int(self.epochs_filter)
        if self.filter_hidden is not None:
            self.filter.hidden = int(self.filter_hidden)
        if self.filter_layers is not None:
            self.filter.n_layers = int(self.filter_layers)
        if self.filter_pair_features is not None:
            self.filter.pair_features = bool(self.filter_pair_features)
        if self.epochs_gnn is not None:
            self.gnn.epochs = int(self.epochs_gnn)
        if self.gnn_iterations is not None:
            self.gnn.n_iterations = int(self.gnn_iterations)
        if self.gnn_hidden is not None:
            # with --gnn-from: a multiple of the source's width (checked when it is read)
            self.gnn.hidden = int(self.gnn_hidden)
        if self.gnn_learning_rate is not None:
            self.gnn.learning_rate = float(self.gnn_learning_rate)
        if self.gnn_targets is not None:
            self.gnn.targets = str(self.gnn_targets)
            self.gnn.__post_init__()
        if self.gnn_fake_weight is not None:
            self.gnn.fake_weight = float(self.gnn_fake_weight)
        if self.gnn_displaced_weight is not None:
            self.gnn.displaced_weight = float(self.gnn_displaced_weight)
            self.gnn.__post_init__()
        if self.gnn_max_edges is not None:
            self.gnn.max_edges_per_step = int(self.gnn_max_edges)
        if self.gnn_triplet_inputs:
            self.gnn.triplet_inputs = True
        if self.triplet_keep is not None and not 0.0 < self.triplet_keep <= 1.0:
            raise ConfigError(f"training.triplet_keep: must be in (0, 1], got {self.triplet_keep}")
        for stage in (self.embedding, self.filter, self.gnn):
            stage.pt_min = self.pt_min
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"training.val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.graph_method not in METHODS:
            raise ConfigError(f"training.graph_method: {self.graph_method!r} is not one of {METHODS}")

    def reused_dir(self) -> Path | None:
        """The model directory whose embedding (and, with ``filter_from``, filter) is reused."""
        if self.filter_from is None:
            return self.embedding_from
        if self.embedding_from not in (None, Path(self.filter_from)):
            raise ConfigError(
                "training: --filter-from reuses that directory's embedding too; "
                "do not give a different --embedding-from"
            )
        return Path(self.filter_from)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in (
            "data_dir",
            "out_dir",
            "val_dir",
            "embedding_from",
            "filter_from",
            "graph_from",
            "gnn_from",
        ):
            out[key] = None if out[key] is None else str(out[key])
        out["features"] = list(self.features)
        return out


@dataclass
class _Split:
    train: list[TruthEvent]
    val: list[TruthEvent]
    val_frames: list[tuple[pd.DataFrame, pd.DataFrame]]  # (truth, particles) per val event
    train_ids: list[int]
    val_ids: list[int]


def _load(config: TrainingConfig, features: FeatureConfig) -> _Split:
    refs = list_events(config.data_dir)
    if not refs:
        raise EventFileError(config.data_dir, "holds no TrackML events to train on")
    if config.max_events is not None:
        refs = refs[: config.max_events]
    if config.val_dir is not None:
        train_refs, val_refs = refs, list_events(config.val_dir)
        if not val_refs:
            raise EventFileError(config.val_dir, "holds no TrackML events to validate on")
    else:
        if len(refs) < 2:
            raise EventFileError(config.data_dir, "needs at least 2 events when no --val is given")
        n_val = max(1, round(config.val_fraction * len(refs)))
        train_refs, val_refs = refs[:-n_val], refs[-n_val:]
    val_refs = val_refs[: config.max_val_events]
    parts = ("hits", "truth", "particles")
    train = load_truth_events(config.data_dir, features, event_ids=[r.event_id for r in train_refs])
    val, frames = [], []
    for ref in val_refs:
        event = ref.load(parts)
        assert event.truth is not None and event.particles is not None  # loaded: ref.load raises if absent
        val.append(prepare_event(event, features))
        frames.append((event.truth, event.particles))
    return _Split(train, val, frames, [r.event_id for r in train_refs], [r.event_id for r in val_refs])


def graph_edges(event: TruthEvent, embedding: torch.Tensor, graph: dict[str, Any]) -> np.ndarray:
    """Edges [2, E] of one event as the pipeline's graph building would give them under the
    manifest config ``graph`` (radius in the embedding space, or the layer map)."""
    if graph.get("method", "radius") == "layer_map":
        if event.layers is None or event.cylindrical is None:
            raise EventFileError(
                Path(f"event {event.event_id}"), "hits need volume_id and layer_id for the layer map"
            )
        return layer_map_edges(LayerMap.from_dict(graph["layer_map"]), event.layers, event.cylindrical)
    return build_edges(embedding, float(graph["radius"]), int(graph["max_neighbours"])).numpy()


def graph_quality(
    events: list[TruthEvent], model: torch.nn.Module, graph: dict[str, Any], pt_min: float
) -> dict[str, float]:
    """Fraction of the pT > ``pt_min`` GeV truth edges the graph keeps, and edges per hit."""
    found = total = n_edges = n_hits = 0
    for event in events:
        edges = graph_edges(event, embed(model, event.features), graph)
        f, n = found_truth(event, edges, pt_min)
        found, total = found + f, total + n
        n_edges, n_hits = n_edges + edges.shape[1], n_hits + event.n_hits
    return {"efficiency": found / max(total, 1), "edges_per_hit": n_edges / max(n_hits, 1)}


def _edge_sets(events: list[TruthEvent], model: torch.nn.Module, graph: dict[str, Any]) -> list[EdgeSet]:
    out = []
    for event in events:
        embedding = embed(model, event.features)
        out.append(EdgeSet.label(event, graph_edges(event, embedding, graph), embedding))
    return out


def choose_radius(
    events: list[TruthEvent],
    model: torch.nn.Module,
    max_neighbours: int,
    target: float,
    pt_min: float,
    max_tries: int = 8,
) -> tuple[float, dict[str, float]]:
    """Smallest radius (about) whose graph, capped at ``max_neighbours``, keeps ``target`` of the
    truth edges of particles above ``pt_min`` GeV over all ``events``.

    Starts at the ``target`` quantile of the truth edges' embedding distances (what an uncapped
    graph would need) and widens by 10 % while the cap costs edges; stops early when widening no
    longer helps (the cap binds). Each try is one graph building per event, as at inference.
    """
    embeddings = [embed(model, e.features) for e in events]
    truth = [e.truth_edges_above(pt_min) for e in events]
    d = (
        np.concatenate(
            [
                (emb[t[0]] - emb[t[1]]).pow(2).sum(1).sqrt().numpy()
                for emb, t in zip(embeddings, truth, strict=True)
            ]
        )
        if events
        else np.zeros(0)
    )
    if not len(d):
        return 0.1, {}
    radius = float(np.quantile(d, target)) * 1.001 + 1e-6
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(max_tries):
        found = total = n_edges = n_hits = 0
        for event, emb in zip(events, embeddings, strict=True):
            edges = build_edges(emb, radius, max_neighbours).numpy()
            f, n = found_truth(event, edges, pt_min)
            found, total = found + f, total + n
            n_edges, n_hits = n_edges + edges.shape[1], n_hits + event.n_hits
        result = (radius, {"efficiency": found / max(total, 1), "edges_per_hit": n_edges / max(n_hits, 1)})
        log.info(
            "graph building at radius %.4f: %.4f of truth edges, %.1f edges/hit",
            radius,
            result[1]["efficiency"],
            result[1]["edges_per_hit"],
        )
        if best is not None and result[1]["efficiency"] <= best[1]["efficiency"] + 1e-4:
            break  # the cap binds: a larger radius adds no truth edges
        best = result
        if result[1]["efficiency"] >= target:
            break
        radius *= 1.1
    assert best is not None
    return best


def _truth_geometry(
    events: list[TruthEvent],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(layers, cylindrical, truth_edges, truth_edge_pt) per event: what the layer map and the
    triplet scales learn from (:func:`~trackflow.pipeline.training.data.prepare_event` sets them)."""
    for event in events:
        assert event.layers is not None and event.cylindrical is not None
        yield event.layers, event.cylindrical, event.truth_edges, event.truth_edge_pt


def _is_truth_edge(edge_set: EdgeSet, pt_min: float) -> np.ndarray:
    event = edge_set.event
    return np.isin(undirected_keys(edge_set.edges, event.n_hits), truth_edge_keys(event, pt_min))


def _labels(
    event: TruthEvent, edge_set: EdgeSet, scores: np.ndarray, labelling: dict[str, Any]
) -> np.ndarray:
    """Track labels as the pipeline's labelling stage would give them with ``labelling``."""
    r = event.features[:, 0].numpy()  # column 0 is r: the walk goes outwards
    return track_labels(event.n_hits, edge_set.edges, scores, r, LabellingConfig(**labelling))


def _track_counts(
    val: list[TruthEvent],
    frames: list[tuple[pd.DataFrame, pd.DataFrame]],
    sets: list[EdgeSet],
    scores: list[np.ndarray],
    labelling: dict[str, Any],
) -> dict[str, int]:
    """The validation events' track counts (:attr:`trackflow.metrics.TrackMetrics.counts`) summed,
    with the tracks ``labelling`` gives: pooled, :func:`trackflow.metrics.track_rates` reads them."""
    per_event = []
    for event, (truth, particles), s, sc in zip(val, frames, sets, scores, strict=True):
        labels = _labels(event, s, sc, labelling)
        tracks = pd.DataFrame({"hit_id": event.hit_ids, "track_id": labels})
        per_event.append(score_event(tracks, truth, particles).counts)
    return pooled_counts(per_event)


def _zero_if_nan(rate: float) -> float:
    """A rate as the labelling choice weighs it: an undefined one (NaN: no track of >= 5 hits, no
    matched particle) counts as 0, no fake or duplicate to hold against the setting."""
    return 0.0 if math.isnan(rate) else rate


def train(config: TrainingConfig) -> Path:
    """Train embedding, filter and GNN in turn on ``config.data_dir``; write ``config.out_dir``.

    Returns the model directory (weights + ``manifest.json``, see :mod:`trackflow.pipeline.model_files`).
    """
    start = time.perf_counter()
    # training owns the machine: all cores unless told otherwise
    set_threads(config.threads or os.cpu_count() or 1)
    features = FeatureConfig(names=config.features)
    reused: dict[str, Any] | None = None
    reused_dir = config.reused_dir()
    if reused_dir is not None:
        # keep a trained embedding (and its features); train only the later stages
        source = model_files.read_manifest(reused_dir)
        features = FeatureConfig.from_dict(source.features)
        entry = source.stages["embedding"]
        reused = {
            "models_dir": str(reused_dir.resolve()),
            "sha256": entry.sha256,
            "training": source.training.get("config", {}).get("embedding"),
        }
    gnn_source = None
    if config.gnn_from is not None:
        gnn_source = source
        # TrainingConfig sets filter_from (or, with retrain_filter, embedding_from) with gnn_from
        assert reused_dir is not None
        if Path(config.gnn_from).resolve() != reused_dir.resolve():
            gnn_source = model_files.read_manifest(config.gnn_from)
            # the GNN reads the embedding too (EmbeddedGNN): its weights only fit the same one;
            # checked before any work is done
            if gnn_source.stages["embedding"].sha256 != source.stages["embedding"].sha256:
                raise ConfigError(
                    f"training: the --gnn-from GNN ({config.gnn_from}) was trained with another "
                    f"embedding than {reused_dir}'s; a warm start needs the same"
                )
    for stage_name, stage in (("filter", config.filter), ("gnn", config.gnn)):
        if stage.pair_features:
            # pair features read r, cos_phi, sin_phi, z from the first four columns, in these scales
            if tuple(features.names[:4]) != ("r", "cos_phi", "sin_phi", "z"):
                raise ConfigError(
                    f"training.{stage_name}.pair_features: needs hit features r, cos_phi, sin_phi, z "
                    f"first, got {features.names}"
                )
            stage.r_scale, stage.z_scale = features.scale["r"], features.scale["z"]
    split = _load(config, features)
    log.info("training on %d events, validating on %d", len(split.train), len(split.val))
    timings: dict[str, float] = {}

    # 1. embedding
    t = time.perf_counter()
    emb_losses: list[float] = []
    if reused_dir is not None:
        embedding = model_files.load_model(source, "embedding")
        emb_kwargs = dict(entry.model["kwargs"]) if entry.model else {}
    else:
        embedding, emb_losses = train_embedding(split.train, config.embedding, seed=config.seed)
        e = config.embedding
        emb_kwargs = {
            "in_features": features.n_features,
            "hidden": e.hidden,
            "n_layers": e.n_layers,
            "out_dim": e.out_dim,
            "normalise": embedding.normalise,
        }
    timings["embedding"] = time.perf_counter() - t

    # 2. graph building: the layer map of the training events, or the embedding radius chosen
    # on validation events (kept as it was when the filter is reused: the filter was trained on
    # that graph)
    t = time.perf_counter()
    if config.filter_from is not None:
        # the kept filter's own graph, or (graph_from) another directory's: the same filter then
        # scores the pairs of another layer map
        graph_source = source if config.graph_from is None else model_files.read_manifest(config.graph_from)
        if graph_source.stages["embedding"].sha256 != source.stages["embedding"].sha256:
            raise ConfigError(
                f"training: --graph-from {config.graph_from} was built on another embedding than "
                f"{config.filter_from}'s; a kept filter reads the same one"
            )
        graph = dict(graph_source.stages["graph_building"].config)
        graph.setdefault("method", "radius")
        gb = dict(graph_source.metrics.get("graph_building", {})) if graph_source.metrics else {}
    elif config.graph_method == "layer_map":
        layer_map = LayerMap.from_truth(
            _truth_geometry(split.train),
            pt_min=config.layer_map_pt_min,
            quantile=config.layer_map_quantile,
            z0_cover=config.layer_map_z0_cover,
            margin=config.layer_map_margin,
            b_field=None if config.layer_map_field_factor is None else B_FIELD_T,
            field_factor=config.layer_map_field_factor or 1.0,
        )
        graph = {"method": "layer_map", "layer_map": layer_map.to_dict()}
        gb = graph_quality(split.val, embedding, graph, config.target_pt) | {"layer_pairs": len(layer_map)}
    else:
        radius, gb = choose_radius(
            split.val, embedding, config.max_neighbours, config.graph_efficiency, config.target_pt
        )
        graph = {"method": "radius", "radius": radius, "max_neighbours": config.max_neighbours}
        gb = gb | {"radius": radius}
    log.info(
        "graph building (%s): keeps %.4f of truth edges, %.1f edges/hit",
        graph["method"],
        gb.get("efficiency", float("nan")),
        gb.get("edges_per_hit", float("nan")),
    )
    rng = np.random.default_rng(config.seed)
    edge_events = [split.train[i] for i in sorted(rng.permutation(len(split.train))[: config.edge_events])]
    train_sets = _edge_sets(edge_events, embedding, graph)
    val_sets = _edge_sets(split.val, embedding, graph)
    timings["graph_building"] = time.perf_counter() - t

    # 3. filter
    t = time.perf_counter()
    filter_losses: list[float] = []
    if config.filter_from is not None:
        filter_net = model_files.load_model(source, "filter")
        filter_entry = source.stages["filter"]
        filter_kwargs = dict(filter_entry.model["kwargs"]) if filter_entry.model else {}
    else:
        filter_net, filter_losses = train_filter(train_sets, config.filter, seed=config.seed)
        f = config.filter
        filter_kwargs = {
            "in_features": features.n_features,
            "hidden": f.hidden,
            "n_layers": f.n_layers,
            "use_embedding_distance": f.use_embedding_distance,
        } | ({"pair_features": True, "r_scale": f.r_scale, "z_scale": f.z_scale} if f.pair_features else {})
    val_filter = [filter_scores(filter_net, s) for s in val_sets]
    flags = [_is_truth_edge(s, config.target_pt) for s in val_sets]
    if config.filter_cut is not None:
        filter_cut = float(config.filter_cut)
    elif config.filter_from is not None:
        filter_cut = float(source.stages["filter"].config["cut"])
    else:
        filter_cut = choose_cut_for_efficiency(val_filter, flags, config.filter_efficiency)
    kept_truth = sum(int((sc[f] > filter_cut).sum()) for sc, f in zip(val_filter, flags, strict=True))
    n_truth_found = sum(int(f.sum()) for f in flags)
    # the filtered graphs keep the filter's scores: the GNN may read them
    filtered_train = []
    for s in train_sets:
        sc = filter_scores(filter_net, s)
        filtered_train.append(replace(s, score=sc).subset(sc > filter_cut))
    filtered_val = [
        replace(s, score=sc).subset(sc > filter_cut) for s, sc in zip(val_sets, val_filter, strict=True)
    ]
    filter_config: dict[str, Any] = {"cut": filter_cut}
    triplet_metrics: dict[str, Any] = {}
    scales: TripletScales | None = None
    if config.triplet_keep is not None or config.triplet_cut is not None:
        scales = TripletScales.from_truth(
            _truth_geometry(split.train),
            keep=config.triplet_keep if config.triplet_keep is not None else 0.99,
        )
        if config.triplet_cut is not None:
            scales = scales.with_cuts(dict.fromkeys(scales.volumes, config.triplet_cut))
    elif config.filter_from is not None and source.stages["filter"].config.get("triplets") is not None:
        # a reused filter keeps the pruning it was shipped with
        scales = TripletScales.from_dict(source.stages["filter"].config["triplets"])
    # the warm-start GNN, read once: whether it reads the agreement decides the edge sets' inputs
    init = None if gnn_source is None else model_files.load_model(gnn_source, "gnn")
    if init is not None and bool(getattr(inner_gnn(init), "triplet_inputs", False)):
        config.gnn.triplet_inputs = True  # a GNN that reads the agreement keeps reading it
    if config.gnn.triplet_inputs and scales is None:
        raise ConfigError(
            "training: --gnn-triplet-inputs needs triplet pruning (--triplet-cut or --triplet-keep, "
            "or a reused filter that prunes)"
        )
    if scales is not None:
        before = sum(s.edges.shape[1] for s in filtered_val)
        filtered_train = [_pruned(s, scales) for s in filtered_train]
        filtered_val = [_pruned(s, scales) for s in filtered_val]
        if config.gnn.triplet_inputs:
            filtered_train = [_with_agreement(s, scales) for s in filtered_train]
            filtered_val = [_with_agreement(s, scales) for s in filtered_val]
        filter_config["triplets"] = scales.to_dict()
        triplet_metrics = {
            "chi2_cut": scales.chi2_cut,
            "kept_fraction": sum(s.edges.shape[1] for s in filtered_val) / max(before, 1),
        }
        log.info(
            "triplet pruning: cuts %s keep %.3f of the filtered validation edges",
            scales.chi2_cut,
            triplet_metrics["kept_fraction"],
        )
        kept_truth = sum(int(_is_truth_edge(s, config.target_pt).sum()) for s in filtered_val)
    n_val_hits = sum(e.n_hits for e in split.val)
    filter_metrics = triplet_metrics | {
        "cut": filter_cut,
        "efficiency": kept_truth / max(n_truth_found, 1),
        "purity": float(np.mean(np.concatenate([s.y for s in filtered_val]))) if filtered_val else 0.0,
        "edges_per_hit": sum(s.edges.shape[1] for s in filtered_val) / max(n_val_hits, 1),
    }
    log.info(
        "filter: cut %.4f keeps %.4f of the truth edges found, purity %.3f, %.1f edges/hit",
        filter_cut,
        filter_metrics["efficiency"],
        filter_metrics["purity"],
        filter_metrics["edges_per_hit"],
    )
    timings["filter"] = time.perf_counter() - t

    # 4. GNN
    t = time.perf_counter()
    phis = [e.phi for e in edge_events]
    if config.gnn_uses_embedding:
        # node inputs = hit features + embedding; EmbeddedGNN computes the same at inference
        filtered_train = [_with_embedding(s) for s in filtered_train]
        filtered_val = [_with_embedding(s) for s in filtered_val]
    if init is not None:
        # the warm start fixes the network's shape; iterations, steps and rate stay the config's
        arch = gnn_architecture(init)
        # asked-for triplet inputs start at weight 0 (training.gnn.with_triplet_inputs)
        arch["triplet_inputs"] = config.gnn.triplet_inputs
        if config.gnn_hidden is not None:  # widened (a multiple of the source's width)
            if config.gnn_hidden % arch["hidden"] != 0:
                raise ConfigError(
                    f"training.gnn_hidden: {config.gnn_hidden} is not a multiple of the "
                    f"--gnn-from GNN's width {arch['hidden']}"
                )
            arch["hidden"] = int(config.gnn_hidden)
        for key, value in arch.items():
            setattr(config.gnn, key, value)
        if config.gnn_iterations is None:  # unless told otherwise, as many as the source ran
            config.gnn.n_iterations = int(inner_gnn(init).n_iterations)
        log.info(
            "gnn: warm start from %s (%s), %d iterations", config.gnn_from, arch, config.gnn.n_iterations
        )
    # what the GNN is trained from: a checkpoint of another run must not be resumed
    fingerprint = {
        "edge_events": [(e.event_id, e.n_hits, e.truth_edges.shape[1]) for e in edge_events],
        "filter": filter_config,
        "training": config.to_dict() | {"out_dir": None},
        "init": None if gnn_source is None else gnn_source.stages["gnn"].sha256,
    }
    gnn_net, gnn_losses = train_gnn(
        filtered_train,
        phis,
        config.gnn,
        seed=config.seed,
        init=init,
        checkpoint=config.out_dir / CHECKPOINTS / "gnn.pt",
        fingerprint=fingerprint,
    )
    val_gnn = [gnn_scores(gnn_net, s) for s in filtered_val]
    all_scores = np.concatenate(val_gnn) if val_gnn else np.zeros(0)
    all_y = np.concatenate([s.y for s in filtered_val]) if filtered_val else np.zeros(0, bool)
    purity_cut = choose_cut_for_purity(all_scores, all_y, config.gnn_purity)
    grid = {round(float(c), 4) for c in np.linspace(purity_cut, 0.95, 8)}
    candidates = sorted(grid | {max(purity_cut, 0.5)})
    scan: list[dict[str, Any]] = []
    settings: list[dict[str, Any]] = (
        [{"method": "cc", "cut": c} for c in candidates]
        + [
            {
                "method": "walkthrough",
                "cut": c,
                "walk_cut": c,
                "walk_loose_cut": config.walk_loose_cut,
                "min_hits": config.walk_min_hits,
            }
            for c in candidates
            if c >= 0.5
        ]
        + [
            # cc_extend (see trackflow.pipeline.labelling): tight cut, then lone hits follow looser edges
            {"method": "cc_extend", "cut": c, "extend_cut": x, "extend_max_hits": 3, "extend_rounds": 3}
            for c in candidates
            if c >= 0.5
            for x in (0.2, 0.3, 0.4)
            if x < c
        ]
    )
    for labelling in settings:
        rates = track_rates(_track_counts(split.val, split.val_frames, filtered_val, val_gnn, labelling))
        kept = all_scores > labelling["cut"]
        rates |= {
            "edge_purity": float(all_y[kept].mean()) if kept.any() else 0.0,
            "edge_efficiency": float(all_y[kept].sum() / max(all_y.sum(), 1)),
        }
        scan.append({"labelling": labelling, **rates})
        log.info("%s: %s", labelling, {k: round(v, 4) for k, v in rates.items()})
    # GNN cut: at least the purity target; labelling: the best efficiency within the fake and
    # duplicate targets (the best efficiency - fake rate if none meets them)
    ok = [s for s in scan if s["labelling"]["cut"] >= purity_cut]
    within = [
        s
        for s in ok
        if _zero_if_nan(s["fake_rate"]) <= config.max_fake_rate
        and _zero_if_nan(s["duplicate_rate"]) <= config.max_duplicate_rate
    ]
    ok = within or ok or scan
    best = max(ok, key=lambda s: _zero_if_nan(s["efficiency"]) - _zero_if_nan(s["fake_rate"]))
    gnn_cut = float(best["labelling"]["cut"])
    timings["gnn"] = time.perf_counter() - t

    # 5. write
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    g = config.gnn
    stages = {
        "embedding": model_files.save_model(embedding, out, "embedding", kwargs=emb_kwargs),
        "graph_building": model_files.StageEntry(config=graph),
        "filter": model_files.save_model(
            filter_net, out, "filter", config=filter_config, kwargs=filter_kwargs
        ),
        "gnn": model_files.save_model(
            EmbeddedGNN(embedding, gnn_net).eval(),
            out,
            "gnn",
            kind="torchscript",
            config={"cut": gnn_cut},
        )
        if config.gnn_uses_embedding
        else model_files.save_model(
            gnn_net,
            out,
            "gnn",
            config={"cut": gnn_cut},
            kwargs={
                "in_features": features.n_features,
                "hidden": g.hidden,
                "n_iterations": g.n_iterations,
                "n_mlp_layers": g.n_mlp_layers,
                "edge_score_input": g.edge_score_input,
            }
            | (
                {"pair_features": True, "r_scale": g.r_scale, "z_scale": g.z_scale} if g.pair_features else {}
            ),
        ),
        "labelling": model_files.StageEntry(config=dict(best["labelling"])),
    }
    training = {
        "data_dir": str(config.data_dir.resolve()),
        "train_event_ids": split.train_ids,
        "edge_event_ids": [ev.event_id for ev in edge_events],
        "val_dir": str((config.val_dir or config.data_dir).resolve()),
        "val_event_ids": split.val_ids,
        "seed": config.seed,
        "embedding_reused_from": reused,
        "gnn_warm_start_from": (
            {
                "models_dir": str(config.gnn_from.resolve()),
                "sha256": gnn_source.stages["gnn"].sha256,
                "training": gnn_source.training.get("config", {}).get("gnn"),
            }
            if config.gnn_from is not None and gnn_source is not None
            else None
        ),
        "filter_reused_from": (
            {"models_dir": str(config.filter_from.resolve()), "sha256": source.stages["filter"].sha256}
            if config.filter_from is not None
            else None
        ),
        "simulation": _simulation_config(config.data_dir),
        "config": config.to_dict(),
        "losses": {
            "embedding": _loss_summary(emb_losses),
            "filter": _loss_summary(filter_losses),
            "gnn": _loss_summary(gnn_losses),
        },
        "timings_s": timings | {"total": time.perf_counter() - start},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    metrics = {
        "graph_building": gb,
        "filter": filter_metrics,
        "gnn": {"cut": gnn_cut, "purity_cut": purity_cut, "scan": scan},
        "tracks": {k: best[k] for k in ("efficiency", "efficiency_pt05", "fake_rate", "duplicate_rate")},
    }
    # an undefined rate (NaN) is written null, as trackflow.metrics' summaries have it: strict JSON
    model_files.write_manifest(
        out, stages, features=features.to_dict(), training=training, metrics=json_safe(metrics)
    )
    # the run is complete: its checkpoints would only be resumed by mistake (and are not models)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    log.info("models written to %s in %.0f s", out, time.perf_counter() - start)
    return out


def _pruned(edge_set: EdgeSet, scales: TripletScales) -> EdgeSet:
    """The edges of ``edge_set`` that triplet pruning keeps (as the filter stage prunes them)."""
    event = edge_set.event
    assert event.layers is not None and event.cylindrical is not None
    return edge_set.subset(scales.keep(event.layers, event.cylindrical, edge_set.edges))


def _with_agreement(edge_set: EdgeSet, scales: TripletScales) -> EdgeSet:
    """The same edges with their triplet agreement (GNN inputs), as the GNN stage computes it."""
    event = edge_set.event
    assert event.layers is not None and event.cylindrical is not None
    return replace(edge_set, agreement=scales.agreement(event.layers, event.cylindrical, edge_set.edges))


def _with_embedding(edge_set: EdgeSet) -> EdgeSet:
    """The same edges, on an event whose features are extended by the hits' embedding."""
    assert edge_set.embedding is not None
    event = replace(edge_set.event, features=torch.cat([edge_set.event.features, edge_set.embedding], dim=1))
    return replace(edge_set, event=event)


def _loss_summary(losses: list[float]) -> dict[str, float | int]:
    if not losses:
        return {"steps": 0}
    n = max(1, len(losses) // 10)
    return {"steps": len(losses), "first": float(np.mean(losses[:n])), "last": float(np.mean(losses[-n:]))}


def _simulation_config(data_dir: Path) -> Any:
    """The simulation settings recorded next to the events, if the simulation wrote any."""
    for name in ("simulation.json", "simulation.yaml", "config.json"):
        path = Path(data_dir) / name
        if path.is_file():
            try:
                return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()
            except (OSError, ValueError):
                return str(path)
    return None
