"""The five-stage GNN tracking pipeline (embedding, graph building, filter, GNN, labelling).

Pure computation on one event or a batch; never imports dask. Start with :class:`Pipeline`.
"""

from __future__ import annotations

from trackflow.pipeline.embedding import Embedding, EmbeddingNet
from trackflow.pipeline.features import FeatureConfig, hit_features
from trackflow.pipeline.filter import EdgeFilter, FilterConfig, FilterNet
from trackflow.pipeline.gnn import GNN, GNNConfig, InteractionGNN
from trackflow.pipeline.graph import COUNT_NAMES, STAGE_NAMES, EventTracks, HitGraph
from trackflow.pipeline.graph_building import GraphBuilding, GraphBuildingConfig, build_edges
from trackflow.pipeline.labelling import Labelling, LabellingConfig
from trackflow.pipeline.pipeline import Pipeline
from trackflow.pipeline.threads import set_threads

__all__ = [
    "COUNT_NAMES",
    "GNN",
    "STAGE_NAMES",
    "EdgeFilter",
    "Embedding",
    "EmbeddingNet",
    "EventTracks",
    "FeatureConfig",
    "FilterConfig",
    "FilterNet",
    "GNNConfig",
    "GraphBuilding",
    "GraphBuildingConfig",
    "HitGraph",
    "InteractionGNN",
    "Labelling",
    "LabellingConfig",
    "Pipeline",
    "build_edges",
    "hit_features",
    "set_threads",
]
