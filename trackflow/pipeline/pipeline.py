"""The Pipeline: five stages composed, each timed (s) and counted, on CPU or CUDA.

``Pipeline.load()`` reads a model directory (default: the models shipped in the package) with
its settings resolved by :func:`~trackflow.pipeline.settings.resolve_settings` (explicit
overrides, then the user's dask config, then the manifest, then built-in defaults),
``Pipeline.from_settings()`` builds one from settings resolved elsewhere (a Dask client),
``Pipeline.from_modules()`` wraps modules already in memory (training, tests), and
``Pipeline.random_init()`` builds untrained models of the default shapes (benchmarks, tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trackflow.errors import ConfigError, ModelFileError
from trackflow.events import Event
from trackflow.pipeline import model_files
from trackflow.pipeline.embedding import Embedding, EmbeddingNet
from trackflow.pipeline.features import FeatureConfig, hit_features, hit_geometry
from trackflow.pipeline.filter import EdgeFilter, FilterConfig, FilterNet
from trackflow.pipeline.gnn import GNN, GNNConfig, InteractionGNN, shares_embedding
from trackflow.pipeline.graph import COUNT_NAMES, STAGE_NAMES, EventTracks, HitGraph
from trackflow.pipeline.graph_building import GraphBuilding, GraphBuildingConfig
from trackflow.pipeline.labelling import Labelling, LabellingConfig
from trackflow.pipeline.settings import PipelineSettings, resolve_settings
from trackflow.pipeline.threads import set_threads


def _joined(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """The parts end to end, or None when any is missing."""
    return None if any(p is None for p in parts) else np.concatenate(parts)  # type: ignore[arg-type]


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device: must be cpu or cuda, got {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} requested but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: must be cpu or cuda, got {device}")
    return device


class Pipeline:
    """Embedding -> graph building -> filter -> GNN -> labelling for one event at a time.

    ``stages`` maps each name of :data:`STAGE_NAMES` to a callable ``HitGraph -> HitGraph``.
    ``threads`` (if not None) is applied through :func:`set_threads`. ``settings``: what it was
    built from, when it came from a model directory (:class:`PipelineSettings`), else None.
    """

    def __init__(
        self,
        stages: Mapping[str, Any],
        features: FeatureConfig | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        models_dir: Path | None = None,
    ) -> None:
        missing = [name for name in STAGE_NAMES if name not in stages]
        if missing:
            raise ValueError(f"Pipeline needs every stage; missing {missing}")
        self.stages = {name: stages[name] for name in STAGE_NAMES}
        gnn, embedding = self.stages["gnn"], self.stages["embedding"]
        if isinstance(gnn, GNN) and isinstance(embedding, Embedding):
            gnn.share_embedding = shares_embedding(gnn.model, embedding.model)
        edge_filter = self.stages["filter"]
        if isinstance(gnn, GNN) and gnn.triplets is None and isinstance(edge_filter, EdgeFilter):
            # a GNN reading triplet agreement reads it with the scales the filter pruned with
            gnn.triplets = edge_filter.triplets
        self.features = features or FeatureConfig()
        self.device = _resolve_device(device)
        self.threads = None if threads is None else set_threads(threads)
        self.models_dir = models_dir
        self.settings: PipelineSettings | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        models_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = 1,
        overrides: Mapping[str, Any] | None = None,
    ) -> Pipeline:
        """The pipeline of a model directory (None: the models shipped in the package).

        ``overrides``: explicit settings, dotted as in ``trackflow.yaml``
        (``{"pipeline.graph_building.radius": 0.09}``); they win over the user's dask config,
        which wins over the manifest's trained-with values (:mod:`trackflow.pipeline.settings`).
        Checks the manifest's sha256 of every file before loading it (ModelFileError otherwise).
        """
        return cls.from_settings(resolve_settings(models_dir, overrides), device, threads)

    @classmethod
    def from_settings(
        cls, settings: PipelineSettings, device: str | torch.device = "cpu", threads: int | None = 1
    ) -> Pipeline:
        """The pipeline ``settings`` describe, exactly (this process's dask config plays no part).

        Every model file must still have the sha256 recorded in ``settings`` (ModelFileError
        naming the file otherwise: the directory changed since the settings were resolved).
        """
        dev = _resolve_device(device)
        if threads is not None:
            set_threads(threads)
        manifest = model_files.read_manifest(settings.models_dir)
        model_files.verify(manifest)
        models: dict[str, nn.Module | None] = {}
        for name in model_files.MODEL_STAGES:
            recorded = settings.model_files.get(name)
            entry = manifest.stages.get(name)
            if recorded is None:
                models[name] = None
                continue
            if entry is None or entry.sha256 != recorded["sha256"]:
                raise ModelFileError(
                    settings.models_dir / recorded["file"],
                    f"stage {name!r} changed since its settings were resolved (sha256 differs)",
                )
            models[name] = model_files.load_model(manifest, name, dev)
        gnn = models["gnn"]
        assert gnn is not None  # resolve_settings refuses models without a GNN
        pipeline = cls.from_modules(
            models["embedding"],
            models["filter"],
            gnn,
            features=settings.features,
            graph_building=settings.graph_building,
            filter_config=settings.filter,
            gnn_config=settings.gnn,
            labelling=settings.labelling,
            device=dev,
            threads=threads,
            models_dir=settings.models_dir,
        )
        pipeline.settings = settings
        return pipeline

    @classmethod
    def from_modules(
        cls,
        embedding: nn.Module | None,
        filter: nn.Module | None,  # named after the stage
        gnn: nn.Module,
        *,
        features: FeatureConfig | None = None,
        graph_building: GraphBuildingConfig | None = None,
        filter_config: FilterConfig | None = None,
        gnn_config: GNNConfig | None = None,
        labelling: LabellingConfig | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        models_dir: Path | None = None,
    ) -> Pipeline:
        """A pipeline around models in memory (moved to ``device``, set to eval mode).

        ``embedding`` None: no embedding (layer-map graph building only); ``filter`` None: every
        graph edge goes on to the GNN."""
        dev = _resolve_device(device)
        stages = {
            "embedding": Embedding(None if embedding is None else embedding.to(dev)),
            "graph_building": GraphBuilding(graph_building),
            "filter": EdgeFilter(None if filter is None else filter.to(dev), filter_config),
            "gnn": GNN(gnn.to(dev), gnn_config),
            "labelling": Labelling(labelling),
        }
        return cls(stages, features, dev, threads, models_dir)

    @classmethod
    def random_init(
        cls,
        features: FeatureConfig | None = None,
        *,
        hidden: int = 256,
        gnn_hidden: int = 64,
        embedding_dim: int = 8,
        seed: int = 0,
        **kwargs: Any,
    ) -> Pipeline:
        """Untrained models of the default shapes (for tests and benchmarks; tracks are noise)."""
        features = features or FeatureConfig()
        n = features.n_features
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            embedding = EmbeddingNet(n, hidden, 4, embedding_dim)
            filter_net = FilterNet(n, hidden, 4)
            gnn = InteractionGNN(n, gnn_hidden, 8)
        finally:
            torch.random.set_rng_state(generator_state)
        return cls.from_modules(embedding, filter_net, gnn, features=features, **kwargs)

    # ------------------------------------------------------------------ running
    @property
    def stage_names(self) -> tuple[str, ...]:
        return STAGE_NAMES

    def prepare(self, event: Event) -> HitGraph:
        """The event's hits as a HitGraph on this pipeline's device (features from hits only)."""
        hit_ids = event.hits["hit_id"].to_numpy(dtype="int64")
        features = hit_features(event.hits, self.features)
        layers, cylindrical = hit_geometry(event.hits)
        graph = HitGraph(
            event_id=int(event.event_id),
            hit_ids=hit_ids,
            features=features,
            layers=layers,
            cylindrical=cylindrical,
        )
        return graph.to(self.device) if self.device.type != "cpu" else graph

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run_stage(self, name: str, graph: HitGraph) -> HitGraph:
        """Run stage ``name`` on ``graph`` (moved to this pipeline's device if needed); records
        its wall time (s) in ``graph.timings[name]``."""
        if name not in self.stages:
            raise ValueError(f"unknown stage {name!r}; stages are {STAGE_NAMES}")
        if graph.device != self.device:
            graph = graph.to(self.device)
        self._synchronize()
        start = time.perf_counter()
        graph = self.stages[name](graph)
        self._synchronize()
        graph.timings[name] = time.perf_counter() - start
        return graph

    def finish(self, graph: HitGraph) -> EventTracks:
        """The EventTracks of a graph that went through every stage."""
        if graph.track_labels is None:
            raise ValueError(f"event {graph.event_id}: labelling has not run")
        counts = {name: int(graph.counts.get(name, 0)) for name in COUNT_NAMES}
        return EventTracks(
            event_id=graph.event_id,
            hit_ids=graph.hit_ids,
            track_labels=graph.track_labels,
            timings=dict(graph.timings),
            counts=counts,
        )

    def run_graph(self, graph: HitGraph) -> EventTracks:
        """Every stage on a prepared graph (e.g. ``HitGraph.from_features``) -> EventTracks."""
        for name in STAGE_NAMES:
            graph = self.run_stage(name, graph)
        return self.finish(graph)

    def __call__(self, event: Event) -> EventTracks:
        return self.run_graph(self.prepare(event))

    def run_batch(self, events: Iterable[Event], fuse: bool = False) -> list[EventTracks]:
        """Several events. ``fuse=False``: one after the other. ``fuse=True``: as one graph of
        disjoint events (:meth:`run_fused`), which keeps a GPU busy on small events."""
        if fuse:
            return self.run_fused([self.prepare(event) for event in events])
        return [self(event) for event in events]

    def run_fused(self, graphs: Sequence[HitGraph]) -> list[EventTracks]:
        """Prepared graphs run as one graph whose events never share an edge.

        Each event gets the tracks, edges and counts it would get alone (graph building keeps
        segments apart; the models act per hit and per edge; components never cross events).
        Its stage timings are the batch's, shared out in proportion to its hits.
        """
        graphs = list(graphs)
        if not graphs:
            return []
        sizes = [g.n_hits for g in graphs]
        segments = torch.repeat_interleave(
            torch.arange(len(graphs)), torch.tensor(sizes, dtype=torch.int64)
        ).to(self.device)
        fused = HitGraph(
            event_id=graphs[0].event_id,
            hit_ids=np.concatenate([g.hit_ids for g in graphs]),
            features=torch.cat([g.features.to(self.device) for g in graphs]),
            segments=segments,
            layers=_joined([g.layers for g in graphs]),
            cylindrical=_joined([g.cylindrical for g in graphs]),
        )
        per_event: dict[str, np.ndarray] = {}

        def edges_per_event(mask: torch.Tensor | None = None) -> np.ndarray:
            assert fused.edges is not None
            sources = fused.edges[0] if mask is None else fused.edges[0][mask]
            counts = torch.bincount(segments[sources], minlength=len(graphs))
            return counts.cpu().numpy()

        for name in STAGE_NAMES:
            fused = self.run_stage(name, fused)
            if name == "graph_building":
                per_event["edges_graph"] = edges_per_event()
            elif name == "filter":
                per_event["edges_filter"] = edges_per_event()
            elif name == "gnn":
                cut: float = getattr(getattr(self.stages["gnn"], "config", None), "cut", 0.5)
                assert fused.edge_scores is not None  # the GNN stage sets them
                per_event["edges_gnn"] = edges_per_event(fused.edge_scores > cut)
        assert fused.track_labels is not None
        results: list[EventTracks] = []
        start = 0
        total_hits = max(sum(sizes), 1)
        for graph, size in zip(graphs, sizes, strict=True):
            labels = fused.track_labels[start : start + size]
            labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
            counts = {"hits": size, "tracks": int(labels.max()) + 1 if size else 0}
            counts |= {key: int(values[len(results)]) for key, values in per_event.items()}
            share = size / total_hits
            results.append(
                EventTracks(
                    event_id=graph.event_id,
                    hit_ids=graph.hit_ids,
                    track_labels=labels,
                    timings={name: t * share for name, t in fused.timings.items()},
                    counts={name: counts.get(name, 0) for name in COUNT_NAMES},
                )
            )
            start += size
        return results

    def __repr__(self) -> str:
        inner = ", ".join(repr(stage) for stage in self.stages.values())
        return f"Pipeline(device={self.device}, features={list(self.features.names)}, [{inner}])"
